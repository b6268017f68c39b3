package filter

import (
	"strings"
	"testing"
	"time"

	"github.com/tdspool/tdspool/envoy/host"
	"github.com/tdspool/tdspool/tds"
)

// A backend coming back goes to the oldest waiter of its key by a post to that session's
// worker. Envoy drops what is posted to a connection and not run yet when it destroys the
// connection, so a waiter whose client leaves in between never runs the handoff: the backend
// was then neither in the pool nor closed, and kept its slot for good (the hostile pooled soak:
// 1 backend connection and 1 slot at rest). Each way out of the wait must take the handed
// backend back: the client's close (with or without a close event first), the queue
// timeout and the client's ATTENTION.
func TestTransactionModeBackendHandedToALeavingWaiter(t *testing.T) {
	capOne := strings.Replace(txConfig, `"max_connections": 2`, `"max_connections": 1`, 1)
	var clock time.Time
	for _, tc := range []struct {
		name  string
		leave func(b *client)
	}{
		{"close event, then destroy", func(b *client) {
			b.s.OnEvent(host.RemoteClose)
			b.conn.Destroy()
			b.s.OnDestroy()
		}},
		{"destroy without a close event", func(b *client) {
			b.conn.Destroy()
			b.s.OnDestroy()
		}},
		{"queue timeout, then close", func(b *client) {
			clock = clock.Add(time.Second)
			b.conn.ToClient = nil
			txOf(b).onWaitTimeout()
			if len(b.conn.ToClient) == 0 {
				t.Fatal("no refusal at the queue timeout")
			}
			b.s.OnEvent(host.RemoteClose)
			b.conn.Destroy()
			b.s.OnDestroy()
		}},
		{"attention, then close", func(b *client) {
			b.fromClient(tds.AppendPackets(nil, tds.PacketAttention, 0, nil, 8192))
			b.s.OnEvent(host.RemoteClose)
			b.conn.Destroy()
			b.s.OnDestroy()
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newTxHarnessConfig(t, capOne)
			clock = time.Now()
			h.f.now = func() time.Time { return clock }
			a := h.connect()
			fb, _ := a.pooledLogin(t, &h.dialed, "app", "pw")
			b := h.connect()
			b.fromClient(preloginMsg(tds.EncryptOff))
			b.fromClient(loginFor("app", "pw"))
			ta, tb := txOf(a), txOf(b)

			a.fromClient(batch("select 1", 0))
			if ta.bind == nil || ta.bind.c != fb {
				t.Fatal("A did not borrow the idle backend")
			}
			b.fromClient(batch("select 2", 0))
			if tb.waiter == nil {
				t.Fatal("B is not waiting for a backend (cap 1, the backend is A's)")
			}
			// A's response ends: the backend is handed to B, by a post B's worker has not run.
			fb.h.Data(doneReply(tds.EnvChangeResetAck().AppendEnvChange(nil)))
			runUntil(t, a, "A released", func() bool { return ta.bind == nil })
			if b.conn.Pending() == 0 || tb.bind != nil {
				t.Fatal("the backend was not handed to B by a post")
			}
			tc.leave(b)
			b.conn.RunPosted() // after Destroy: nothing (Envoy dropped it)
			a.gone(host.RemoteClose)

			st := h.f.buckets["p1"].pool.Stats()
			if fb.closed {
				if h.held() != 0 {
					t.Fatalf("the backend is closed and %d slots are held", h.held())
				}
			} else if st.Idle != 1 || st.Active != 0 || fb.h != nil || h.held() != 1 {
				t.Fatalf("backend open, pool idle %d active %d, handler %v, slots %d; want it idle in the pool with its slot",
					st.Idle, st.Active, fb.h, h.held())
			}
			h.f.drainPools()
			if !fb.closed || h.held() != 0 {
				t.Fatalf("after the drain: backend closed=%v, %d slots held; want closed, 0", fb.closed, h.held())
			}
		})
	}
}
