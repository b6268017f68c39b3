package filter

import (
	"testing"
	"time"

	"github.com/tdspool/tdspool/envoy/host"
	"github.com/tdspool/tdspool/tds"
)

// A slot granted to a waiting session reaches it by a post to its worker. When the client
// leaves before that post runs, Envoy drops the post at the connection's destroy: the slot
// must go back all the same (it was held for good).
func TestSlotGrantedToALeavingSessionGoesBack(t *testing.T) {
	for _, closeEvent := range []bool{true, false} {
		h, dialed := moduleHarness(t)
		a := h.connect()
		a.loginModule(t, dialed) // holds the bucket's one slot
		b := h.connect()
		b.fromClient(preloginMsg(tds.EncryptOff))
		b.fromClient(login7Msg("app", "db", "proxy"))
		a.gone(host.RemoteClose) // A's slot goes to B
		deadline := time.Now().Add(2 * time.Second)
		for b.conn.Pending() == 0 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		if b.conn.Pending() == 0 {
			t.Fatal("B was not granted the slot")
		}
		if closeEvent {
			b.s.OnEvent(host.RemoteClose)
		}
		b.conn.Destroy()
		b.s.OnDestroy()
		ls := h.f.slots.(*localSlots)
		ls.mu.Lock()
		held := ls.buckets["m1"].held
		ls.mu.Unlock()
		if held != 0 {
			t.Fatalf("close event %v: %d slots held after both clients left", closeEvent, held)
		}
	}
}

// A pooled session whose reused backend failed its reset logs a new one in (hidden): the
// login's start (with the failed backend's slot) and then the new backend with its slot reach
// the session by posts to its worker. A client that leaves before such a post runs (Envoy
// drops it at the destroy) must leave no backend and no slot behind.
func TestReloginPostedToALeavingSessionGoesBack(t *testing.T) {
	for _, tc := range []struct {
		name                  string
		beforeStart, closeEvt bool
	}{
		{"start dropped, close event", true, true},
		{"start dropped, destroy only", true, false},
		{"new backend dropped, close event", false, true},
		{"new backend dropped, destroy only", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, dialed := pooledHarness(t)
			a := h.connect()
			fb, _ := a.pooledLogin(t, dialed, "app", "pw")
			a.s.OnEvent(host.RemoteClose)
			b := h.connect()
			b.pooledLogin(t, dialed, "app", "pw")
			b.fromClient(tds.AppendPackets(nil, tds.PacketSQLBatch, 0, (&tds.SQLBatch{Text: "select 1"}).AppendSQLBatch(nil), 8192))
			fb.h.Data(doneReply()) // no reset acknowledgement: a hidden login replaces the backend
			b.waitPosted(time.Second)
			if b.conn.Pending() == 0 {
				t.Fatal("the login's start was not posted")
			}
			var nb *fakeBackend
			if !tc.beforeStart {
				b.conn.RunPosted()
				if len(*dialed) != 2 || h.held() != 1 {
					t.Fatalf("%d dials, %d slots; want the re-login's dial holding the slot", len(*dialed), h.held())
				}
				nb = (*dialed)[1]
				nb.h.Ready(&tds.Prelogin{}, tds.EncryptionNone)
				nb.h.Data(loginAckReply())
				if b.conn.Pending() == 0 {
					t.Fatal("the new backend was not delivered by a post")
				}
			}
			if tc.closeEvt {
				b.s.OnEvent(host.RemoteClose)
			}
			b.conn.Destroy()
			b.s.OnDestroy()
			a.s.OnDestroy()
			if h.held() != 0 || nb != nil && !nb.closed || nb == nil && len(*dialed) != 1 {
				t.Fatalf("after the client left: %d slots held, %d dials, new backend open %v; want 0 slots, no backend open",
					h.held(), len(*dialed), nb != nil && !nb.closed)
			}
		})
	}
}
