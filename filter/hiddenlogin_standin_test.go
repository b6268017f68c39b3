package filter

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tdspool/tdspool/standin"
	"github.com/tdspool/tdspool/standin/standintest"
	"github.com/tdspool/tdspool/tds"
)

// TestHiddenLoginAgainstStandin logs in through the real backend.Dial (PRELOGIN, TLS) to the
// stand-in in every backend encryption: the server's audit log shows the login, and a refused
// one carries the server's own 18456.
func TestHiddenLoginAgainstStandin(t *testing.T) {
	for _, enc := range []struct {
		backend string
		server  standin.Encryption
	}{
		{"PLAINTEXT", standin.EncryptionOff},
		{"TDS7_LOGIN_ONLY", standin.EncryptionOptional},
		{"TDS7_FULL", standin.EncryptionRequired},
		{"TDS8", standin.EncryptionStrict},
	} {
		t.Run(enc.backend, func(t *testing.T) {
			srv := standintest.Start(t, standin.Config{ServerName: "hidden", Users: map[string]string{"app": "pw"},
				Databases: []string{"db"}, Encryption: enc.server})
			tlsCfg := `, "backend_tls": {"trust_any_certificate": true}`
			if enc.backend == "PLAINTEXT" {
				tlsCfg = ""
			}
			h := newHarness(t, fmt.Sprintf(`{
  "listener": {"encryption": "OFF_ALLOWED", "max_packet_size": 8192},
  "buckets": [{"name": "p1", "max_connections": 2, "backend_leg": "MODULE", "backend_addresses": [%q],
    "backend_encryption": %q%s, "pool": {"mode": "POOL_MODE_SESSION"}}],
  "default_bucket": "p1"
}`, srv.Addr(), enc.backend, tlsCfg))
			for _, tc := range []struct {
				password string
				ok       bool
			}{{"pw", true}, {"wrong", false}} {
				var released atomic.Int32
				done := make(chan hiddenLoginResult, 1)
				seq := srv.AuditSeq()
				h.f.startHiddenLogin(hiddenLoginRequest{Bucket: h.f.buckets["p1"], Login7: loginFor("app", tc.password),
					Release: func() { released.Add(1) }, Done: func(r hiddenLoginResult) { done <- r }})
				var r hiddenLoginResult
				select {
				case r = <-done:
				case <-time.After(10 * time.Second):
					t.Fatal("no outcome")
				}
				if r.OK() != tc.ok {
					t.Fatalf("password %q: ok=%v err=%v", tc.password, r.OK(), r.Err)
				}
				var recs []standin.AuditRecord
				waitFor(t, func() bool { recs = srv.AuditSince(seq); return len(recs) > 0 }, "the audit record")
				if len(recs) != 1 || recs[0].Login != "app" || (recs[0].Kind == standin.AuditLogin) != tc.ok {
					t.Fatalf("audit %+v", recs)
				}
				if !tc.ok {
					if len(r.Refused) == 0 || r.Refused[0].Number != 18456 {
						t.Fatalf("refusal %+v", r.Refused)
					}
					waitFor(t, func() bool { return released.Load() == 1 }, "the refused login's slot")
					continue
				}
				if r.Reply == nil || int(r.SPID) != recs[0].SPID || !r.Conn.Alive() {
					t.Fatalf("reply %v spid %d (audit %d) alive %v", r.Reply, r.SPID, recs[0].SPID, r.Conn.Alive())
				}
				// The connection is logged in: a batch on it is answered by the same SPID.
				m := &probeHandler{data: make(chan []byte, 4)}
				r.Conn.SetHandler(m)
				if _, err := r.Conn.Write(tds.AppendPackets(nil, tds.PacketSQLBatch, 0,
					(&tds.SQLBatch{Text: "select @@SPID"}).AppendSQLBatch(nil), 8192)); err != nil {
					t.Fatal(err)
				}
				select {
				case b := <-m.data:
					r.Conn.Consumed(len(b))
					if hd, err := tds.DecodeHeader(b); err != nil || hd.SPID != r.SPID {
						t.Fatalf("answer header %+v %v", hd, err)
					}
				case <-time.After(5 * time.Second):
					t.Fatal("no answer on the hidden login's connection")
				}
				closeReleasing(r.Conn, r.Release)
				waitFor(t, func() bool { return released.Load() == 1 }, "the slot after close")
			}
		})
	}
}

type probeHandler struct{ data chan []byte }

func (p *probeHandler) Ready(*tds.Prelogin, tds.EncryptionResult) {}
func (p *probeHandler) Data(b []byte)                             { p.data <- b }
func (p *probeHandler) Drained()                                  {}
func (p *probeHandler) Closed(error)                              {}

func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 5 s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
