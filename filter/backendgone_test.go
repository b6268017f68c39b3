package filter

import (
	"testing"
	"time"

	"github.com/tdspool/tdspool/envoy/host"
	"github.com/tdspool/tdspool/tds"
)

// TestBackendEndOfStreamDuringLoginAnswers40613: on the tcp_proxy leg a backend's close
// arrives as the end of its stream in OnWrite. Before any of its login reply reached the
// client (the close came with the PRELOGIN answer, or after our LOGIN7) the client gets 40613
// at once, the slot goes back, and the end of stream is not passed on as a bare close.
func TestBackendEndOfStreamDuringLoginAnswers40613(t *testing.T) {
	for _, tc := range []struct {
		name          string
		withPrelogin  bool // the end of stream comes with the PRELOGIN answer
		afterPrelogin bool // the end of stream comes alone, after the PRELOGIN answer
	}{
		{name: "with the PRELOGIN answer", withPrelogin: true},
		{name: "alone before the PRELOGIN answer"},
		{name: "alone after the LOGIN7", afterPrelogin: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, testConfig)
			c := h.connect()
			c.fromClient(preloginMsg(tds.EncryptOff))
			c.fromClient(login7Msg("app", "tenant_b", "proxy"))
			c.waitPosted(time.Second)
			c.conn.Read, c.conn.ToClient = nil, nil
			var st host.Status
			switch {
			case tc.withPrelogin:
				c.conn.Write = backendPreloginReply()
				st = c.s.OnWrite(len(c.conn.Write), true)
			case tc.afterPrelogin:
				if out := c.fromBackend(backendPreloginReply()); len(out) != 0 {
					t.Fatalf("PRELOGIN answer leaked: % x", out)
				}
				c.conn.Write = nil
				st = c.s.OnWrite(0, true)
			default:
				c.conn.Write = nil
				st = c.s.OnWrite(0, true)
			}
			if st != host.StopIteration {
				t.Errorf("OnWrite = %s: the end of stream went on to the client as a bare close", st)
			}
			if got := assertClientError(t, c.conn, "closed the connection during the login"); got.Number != 40613 {
				t.Errorf("error %d, want 40613", got.Number)
			}
			if v := h.metrics.Value("bucket.b2.backend_unavailable_total"); v != 1 {
				t.Errorf("backend_unavailable_total = %d, want 1", v)
			}
			c.gone(host.LocalClose)
			if v := h.metrics.Value("bucket.b2.slot_released_total"); v != h.metrics.Value("bucket.b2.slot_granted_total") || v == 0 {
				t.Errorf("slots granted %d released %d", h.metrics.Value("bucket.b2.slot_granted_total"), v)
			}
		})
	}
}
