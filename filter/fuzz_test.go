package filter

import (
	"testing"

	"github.com/tdspool/tdspool/envoy/host"
	"github.com/tdspool/tdspool/tds"
)

// FuzzSessionClientBytes drives a session with arbitrary client bytes (cut into arbitrary
// chunks) and arbitrary backend bytes, which may end with the backend's close: it must never
// panic, and whatever happens, every slot
// it took is given back when the connection closes.
func FuzzSessionClientBytes(f *testing.F) {
	f.Add(append(preloginMsg(tds.EncryptOff), login7Msg("app", "tenant_b", "x")...), []byte{}, uint8(7))
	f.Add(preloginMsg(tds.EncryptNotSup), backendPreloginReply(), uint8(1))
	f.Add([]byte{0x12, 0x01, 0x00, 0x08, 0, 0, 0, 0}, loginResponse(true), uint8(3))
	f.Add(append(preloginMsg(tds.EncryptOff), login7Msg("app", "", "x")...), append(backendPreloginReply(), loginResponse(true)...), uint8(13))
	f.Add(append(preloginMsg(tds.EncryptOff), login7Msg("app", "", "x")...), backendPreloginReply(), uint8(0x80|13))
	f.Fuzz(func(t *testing.T, client, backend []byte, chunk uint8) {
		h := newHarness(t, testConfig)
		c := h.connect()
		step := int(chunk%64) + 1
		for off := 0; off < len(client) && !c.conn.Closed; off += step {
			c.fromClient(client[off:min(off+step, len(client))])
			c.conn.RunPosted()
		}
		// The high bit of chunk: the backend's stream ends with its last bytes (its close).
		ends := chunk&0x80 != 0
		for off := 0; off < len(backend) && !c.conn.Closed; off += step {
			end := min(off+step, len(backend))
			if ends && end == len(backend) {
				c.conn.Write = append([]byte(nil), backend[off:end]...)
				c.s.OnWrite(len(c.conn.Write), true)
				c.conn.Write = nil
			} else {
				c.fromBackend(backend[off:end])
			}
			c.conn.RunPosted()
		}
		c.s.OnEvent(host.RemoteClose)
		c.conn.RunPosted()
		c.s.OnDestroy()
		for _, b := range []string{"b1", "b2"} {
			g, r := h.metrics.Value("bucket."+b+".slot_granted_total"), h.metrics.Value("bucket."+b+".slot_released_total")
			if g != r {
				t.Fatalf("bucket %s: granted %d released %d", b, g, r)
			}
		}
		if v := h.metrics.Value("connections_active"); v != 0 {
			t.Fatalf("connections_active = %d", v)
		}
	})
}
