package filter

import (
	"sync"
	"testing"
	"time"

	"github.com/tdspool/tdspool/envoy/host"
	"github.com/tdspool/tdspool/filter/backend"
	"github.com/tdspool/tdspool/tds"
)

const txConfig = `{
  "listener": {"encryption": "OFF_ALLOWED", "max_packet_size": 8192},
  "buckets": [{"name": "p1", "max_connections": 2, "queue_timeout": "0.3s",
    "backend_leg": "MODULE", "backend_addresses": ["db.internal:1433"],
    "pool": {"mode": "POOL_MODE_TRANSACTION"}}],
  "default_bucket": "p1"
}`

// txHarness is a TRANSACTION bucket whose dials (the sessions' and the hidden logins') are
// recorded fakes.
type txHarness struct {
	*harness
	mu     sync.Mutex
	dialed []*fakeBackend
}

func newTxHarness(t *testing.T) *txHarness { return newTxHarnessConfig(t, txConfig) }

func newTxHarnessConfig(t *testing.T, cfg string) *txHarness {
	h := &txHarness{harness: newHarness(t, cfg)}
	h.f.dial = func(tg backend.Target, hd backend.Handler) backendConn {
		h.mu.Lock()
		defer h.mu.Unlock()
		fb := &fakeBackend{target: tg, h: hd}
		h.dialed = append(h.dialed, fb)
		return fb
	}
	return h
}

func (h *txHarness) dials() []*fakeBackend {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]*fakeBackend(nil), h.dialed...)
}

// waitDial waits for the n-th dial (1-based), running c's posted callbacks meanwhile.
func (h *txHarness) waitDial(t *testing.T, c *client, n int) *fakeBackend {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for len(h.dials()) < n && time.Now().Before(deadline) {
		c.conn.RunPosted()
		time.Sleep(time.Millisecond)
	}
	d := h.dials()
	if len(d) < n {
		t.Fatalf("%d dials, want %d", len(d), n)
	}
	return d[n-1]
}

// runUntil runs c's posted callbacks until cond holds (or fails after 2 s).
func runUntil(t *testing.T, c *client, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		c.conn.RunPosted()
		time.Sleep(time.Millisecond)
	}
}

func batch(text string, status tds.PacketStatus) []byte {
	q := tds.SQLBatch{Headers: tds.AllHeaders{HasTransaction: true, OutstandingRequests: 1}, Text: text}
	return tds.AppendPackets(nil, tds.PacketSQLBatch, status, q.AppendSQLBatch(nil), 8192)
}

func txOf(c *client) *txLeg { return c.s.(*session).leg.(*txLeg) }

// replyEvents parses what reached the client into token events.
func replyEvents(t *testing.T, b []byte) []tds.Event {
	t.Helper()
	var sc tds.ResponseScanner
	ev, err := sc.Feed(b)
	if err != nil {
		t.Fatalf("client got an unparseable stream: %v", err)
	}
	return append([]tds.Event(nil), ev...)
}

func TestTransactionModeBindsPerRequest(t *testing.T) {
	h := newTxHarness(t)

	// A: the key's first login is real; then its backend goes to the pool with its slot.
	a := h.connect()
	fb0, reused := a.pooledLogin(t, &h.dialed, "app", "pw")
	if reused {
		t.Fatal("first login of a key served from the pool")
	}
	ta := txOf(a)
	if ta.bind != nil || fb0.h != nil || h.held() != 1 {
		t.Fatalf("after the login: bound=%v handler=%v slots=%d; want unbound, backend idle with its slot", ta.bind != nil, fb0.h, h.held())
	}

	// B: same key, answered from the recorded reply: no dial, no slot.
	b := h.connect()
	b.fromClient(preloginMsg(tds.EncryptOff))
	b.conn.ToClient = nil
	b.fromClient(loginFor("app", "pw"))
	if len(b.conn.ToClient) == 0 || len(h.dials()) != 1 || h.held() != 1 {
		t.Fatalf("B's login: reply %d bytes, %d dials, %d slots; want a replayed reply, 1 dial, 1 slot", len(b.conn.ToClient), len(h.dials()), h.held())
	}
	tb := txOf(b)

	// A's request borrows fb0 (reset, as it went through the pool), its ack never reaches A.
	a.conn.ToClient = nil
	a.fromClient(batch("select 1", 0))
	if ta.bind == nil || fb0.h != ta.bind || tds.PacketStatus(fb0.written[1])&tds.StatusResetConnection == 0 {
		t.Fatalf("A's request: bound=%v, reset bit=%v", ta.bind != nil, len(fb0.written) > 1 && fb0.written[1]&8 != 0)
	}

	// B's request meanwhile: no idle backend, under the cap → a hidden login on a new one.
	b.conn.ToClient = nil
	b.fromClient(batch("select 2", 0))
	if tb.waiter == nil {
		t.Fatal("B is not waiting for a backend")
	}
	fb1 := h.waitDial(t, b, 2)
	fb1.h.Ready(&tds.Prelogin{}, tds.EncryptionNone)
	fb1.h.Data(loginAckReply())
	runUntil(t, b, "B bound to the new backend", func() bool { return tb.bind != nil })
	if tb.bind.c != fb1 || len(fb1.written) == 0 || h.held() != 2 {
		t.Fatalf("B bound to %v, wrote %d bytes, %d slots; want fb1, the batch, 2 slots", tb.bind.c, len(fb1.written), h.held())
	}

	// fb0 answers A: reset ack taken out; A is released; fb0 idle again.
	fb0.h.Data(doneReply(tds.EnvChangeResetAck().AppendEnvChange(nil)))
	runUntil(t, a, "A released", func() bool { return ta.bind == nil })
	for _, ev := range replyEvents(t, a.conn.ToClient) {
		if ev.Token == tds.TokenEnvChange && ev.EnvChange.Type == tds.EnvResetAck {
			t.Fatal("the proxy's reset acknowledgement reached the client")
		}
	}
	if fb0.h != nil || fb0.closed {
		t.Fatal("fb0 not back in the pool")
	}

	// C: a third client; both backends: fb0 idle, fb1 busy. C borrows fb0. Then D waits: cap
	// reached, nothing idle → 10928 after the queue timeout, request not run, session alive.
	c := h.connect()
	c.fromClient(preloginMsg(tds.EncryptOff))
	c.fromClient(loginFor("app", "pw"))
	tc := txOf(c)
	c.fromClient(batch("begin tran", 0))
	if tc.bind == nil || tc.bind.c != fb0 {
		t.Fatal("C did not borrow the idle backend")
	}
	// The server opens a transaction: C is pinned, keeps fb0 after the response.
	fb0.h.Data(doneReply(tds.EnvChangeResetAck().AppendEnvChange(nil), tds.EnvChangeBeginTran(7).AppendEnvChange(nil)))
	runUntil(t, c, "C's response", func() bool { return len(c.conn.ToClient) > 0 })
	c.conn.RunPosted()
	if tc.bind == nil || !tc.binding.PinnedBy(0) {
		t.Fatal("C released its backend with a transaction open")
	}

	d := h.connect()
	d.fromClient(preloginMsg(tds.EncryptOff))
	d.fromClient(loginFor("app", "pw"))
	d.conn.ToClient = nil
	written0, written1 := len(fb0.written), len(fb1.written)
	d.fromClient(batch("select 4", 0))
	runUntil(t, d, "D's refusal", func() bool { return len(d.conn.ToClient) > 0 })
	if len(h.dials()) != 2 || len(fb0.written) != written0 || len(fb1.written) != written1 {
		t.Fatal("D's request went somewhere (or a backend beyond the cap was dialed)")
	}
	var sawErr bool
	for _, ev := range replyEvents(t, d.conn.ToClient) {
		if ev.Token == tds.TokenError {
			sawErr = ev.Message.Number == 10928 && ev.Message.Class == 16
		}
	}
	if !sawErr || d.conn.Closed {
		t.Fatalf("D: want 10928 (class 16) and the session open; closed=%v", d.conn.Closed)
	}

	// D's late ATTENTION, with nothing bound: the proxy answers DONE(ATTN).
	d.conn.ToClient = nil
	d.fromClient(tds.AppendPackets(nil, tds.PacketAttention, 0, nil, 8192))
	evs := replyEvents(t, d.conn.ToClient)
	if len(evs) == 0 || evs[0].Token != tds.TokenDone || evs[0].Done.Status&tds.DoneAttn == 0 {
		t.Fatalf("D's attention answered with %v", evs)
	}

	// C commits: released. B's backend answers and B is released too. Everyone leaves; the
	// pool keeps both backends and their slots; nothing is left bound.
	c.fromClient(batch("commit", 0))
	fb0.h.Data(doneReply(tds.EnvChangeCommitTran(7).AppendEnvChange(nil)))
	runUntil(t, c, "C released", func() bool { return tc.bind == nil })
	fb1.h.Data(doneReply(tds.EnvChangeResetAck().AppendEnvChange(nil)))
	runUntil(t, b, "B released", func() bool { return tb.bind == nil })
	for _, cl := range []*client{a, b, c, d} {
		cl.gone(host.RemoteClose)
	}
	if st := h.f.buckets["p1"].pool.Stats(); st.Idle != 2 || st.Active != 0 || h.held() != 2 {
		t.Fatalf("pool idle %d active %d, slots %d; want 2 idle backends holding 2 slots", st.Idle, st.Active, h.held())
	}
	h.f.drainPools()
	if h.held() != 0 {
		t.Fatalf("%d slots held after the drain", h.held())
	}
}

// FuzzTxSessionBytes drives a transaction-pooled session, after its login, with arbitrary
// client bytes and arbitrary backend answers, cut into arbitrary chunks: it must never panic;
// once the client has left every backend is idle in the pool or closed, the slots held are
// the idle ones', and once the pool is drained every slot is back (the session's, the pool's
// and any hidden login's).
func FuzzTxSessionBytes(f *testing.F) {
	ack := tds.EnvChangeResetAck().AppendEnvChange(nil)
	attn := tds.AppendPackets(nil, tds.PacketAttention, 0, nil, 8192)
	f.Add(batch("select 1", 0), doneReply(ack), uint8(5))
	f.Add(append(batch("begin tran", 0), attn...), doneReply(ack, tds.EnvChangeBeginTran(3).AppendEnvChange(nil)), uint8(3))
	f.Add(append(batch("set dateformat dmy; use other", 0), batch("select 2", 0)...), append(doneReply(ack), doneReply()...), uint8(17))
	f.Add(attn, []byte{}, uint8(1))
	f.Fuzz(func(t *testing.T, client, backendBytes []byte, chunk uint8) {
		h := newTxHarness(t)
		h.f.loginTimeout = 50 * time.Millisecond // hidden logins nobody answers end soon
		a := h.connect()
		if _, reused := a.pooledLogin(t, &h.dialed, "app", "pw"); reused {
			t.Fatal("first login reused")
		}
		step := int(chunk%64) + 1
		feedBackend := func(b []byte) {
			for _, fb := range h.dials() {
				if hd, ok := fb.h.(*txBind); ok && !a.conn.Closed {
					hd.Data(append([]byte(nil), b...))
				}
			}
		}
		for off := 0; off < len(client) && !a.conn.Closed; off += step {
			a.fromClient(client[off:min(off+step, len(client))])
			a.conn.RunPosted()
			if off < len(backendBytes) {
				feedBackend(backendBytes[off:min(off+step, len(backendBytes))])
				a.conn.RunPosted()
			}
		}
		for off := len(client); off < len(backendBytes) && !a.conn.Closed; off += step {
			feedBackend(backendBytes[off:min(off+step, len(backendBytes))])
			a.conn.RunPosted()
		}
		a.gone(host.RemoteClose)
		a.conn.RunPosted()
		deadline := time.Now().Add(2 * time.Second)
		for h.f.buckets["p1"].tx.creatingNow() > 0 && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		// At rest every backend is idle in the pool or closed, and the slots held are the
		// idle backends' (granted = released + idle).
		st, open := h.f.buckets["p1"].pool.Stats(), 0
		for _, fb := range h.dials() {
			if !fb.closed {
				open++
			}
		}
		if st.Active != 0 || open != st.Idle || h.held() != st.Idle {
			t.Fatalf("at rest: pool active %d idle %d, %d backends open, %d slots held; want 0 active, open = held = idle",
				st.Active, st.Idle, open, h.held())
		}
		h.f.drainPools()
		if n := h.held(); n != 0 {
			t.Fatalf("%d slots held after the client left and the pool drained", n)
		}
		if w := h.f.buckets["p1"].tx.waiting(); w != 0 {
			t.Fatalf("%d waiters left", w)
		}
	})
}

// Clients of a key arriving together: only the first logs in for real; the others wait for
// its recorded reply instead of each taking a slot and a backend.
func TestTransactionModeFirstLoginOfAKeyIsShared(t *testing.T) {
	h := newTxHarness(t)
	a, b := h.connect(), h.connect()
	a.fromClient(preloginMsg(tds.EncryptOff))
	a.fromClient(loginFor("app", "pw"))
	fb := h.waitDial(t, a, 1)
	b.fromClient(preloginMsg(tds.EncryptOff))
	b.conn.ToClient = nil
	b.fromClient(loginFor("app", "pw"))
	time.Sleep(50 * time.Millisecond)
	b.conn.RunPosted()
	if len(h.dials()) != 1 || len(b.conn.ToClient) != 0 {
		t.Fatalf("B: %d dials, %d bytes answered while A's login is under way; want 1 dial, no answer yet", len(h.dials()), len(b.conn.ToClient))
	}
	fb.h.Ready(&tds.Prelogin{}, tds.EncryptionNone)
	a.waitPosted(time.Second)
	fb.h.Data(loginAckReply())
	a.waitPosted(time.Second)
	runUntil(t, b, "B answered from A's recorded login", func() bool { return len(b.conn.ToClient) > 0 })
	if len(h.dials()) != 1 || h.held() != 1 || b.conn.Closed {
		t.Fatalf("after A's login: %d dials, %d slots, B closed=%v; want 1, 1, open", len(h.dials()), h.held(), b.conn.Closed)
	}
	if _, ok := b.s.(*session).leg.(*txLeg); !ok {
		t.Fatal("B is not a transaction-pooled session")
	}
	a.gone(host.RemoteClose)
	b.gone(host.RemoteClose)
	h.f.drainPools()
	if h.held() != 0 {
		t.Fatalf("%d slots held after the drain", h.held())
	}
}

// A message that is not a request (a PRELOGIN again, MARS framing the proxy turned off) ends
// the session; no backend is borrowed for it and the pool keeps its backend.
func TestTransactionModeRefusesNonRequests(t *testing.T) {
	h := newTxHarness(t)
	a := h.connect()
	fb, _ := a.pooledLogin(t, &h.dialed, "app", "pw")
	a.fromClient(preloginMsg(tds.EncryptOff))
	if !a.conn.Closed || fb.h != nil || len(fb.written) != 0 {
		t.Fatalf("closed=%v, backend handler %v, %d bytes written; want closed, backend untouched", a.conn.Closed, fb.h, len(fb.written))
	}
	a.gone(host.RemoteClose)
	if st := h.f.buckets["p1"].pool.Stats(); st.Idle != 1 || h.held() != 1 {
		t.Fatalf("pool idle %d, slots %d; want the backend idle with its slot", st.Idle, h.held())
	}
	h.f.drainPools()
}

// interruptedReply is how SQL Server ends a response an ATTENTION cut short: DONE(ERROR) as
// a message of its own (what the request had produced, the reset's acknowledgement among it,
// may be dropped); the DONE(ATTN) (attnReply) follows as the next message.
func interruptedReply() []byte {
	return tds.AppendPacketsSPID(nil, tds.PacketReply, 0, 57, tds.Done{Token: tds.TokenDone, Status: tds.DoneError}.AppendDone(nil), 8192)
}

// A client cancels the first request of a borrow (a query timeout) and the server drops the
// response, reset acknowledgement included. The session stays bound until the DONE(ATTN), so
// the acknowledgement can reach no other client; then the backend goes back to the pool (its
// next borrower resets it again) instead of being closed, and the client's next request and
// its leaving do not close it either.
func TestTransactionModeCancelledFirstRequestKeepsBackend(t *testing.T) {
	h := newTxHarness(t)
	h.f.loginTimeout = 50 * time.Millisecond // B's hidden login, never answered, ends soon
	a := h.connect()
	fb, _ := a.pooledLogin(t, &h.dialed, "app", "pw")
	ta := txOf(a)
	b := h.connect()
	b.fromClient(preloginMsg(tds.EncryptOff))
	b.fromClient(loginFor("app", "pw"))
	tb := txOf(b)

	a.conn.ToClient = nil
	a.fromClient(batch("waitfor delay '00:00:10'", 0))
	if ta.bind == nil || ta.bind.c != fb || tds.PacketStatus(fb.written[1])&tds.StatusResetConnection == 0 {
		t.Fatal("A's request did not borrow the pooled backend with a reset")
	}
	a.fromClient(tds.AppendPackets(nil, tds.PacketAttention, 0, nil, 8192))
	fb.h.Data(interruptedReply())
	runUntil(t, a, "A's interrupted response", func() bool { return len(a.conn.ToClient) > 0 })
	a.conn.RunPosted()
	if ta.bind == nil || fb.h != ta.bind {
		t.Fatal("A released its backend before the ATTENTION's acknowledgement")
	}

	// B asks meanwhile: the backend is A's until the DONE(ATTN); B waits (a new backend is
	// dialed for it, never answered here).
	b.fromClient(batch("select 2", 0))
	if tb.bind != nil {
		t.Fatal("B was given A's backend with A's DONE(ATTN) still to come")
	}
	fb.h.Data(attnReply())
	runUntil(t, a, "A released", func() bool { return ta.bind == nil })
	for _, ev := range replyEvents(t, a.conn.ToClient) {
		if ev.Token == tds.TokenEnvChange && ev.EnvChange.Type == tds.EnvResetAck {
			t.Fatal("the proxy's reset acknowledgement reached the client")
		}
	}
	var attnAcked bool
	for _, ev := range replyEvents(t, a.conn.ToClient) {
		attnAcked = attnAcked || ev.Token == tds.TokenDone && ev.Done.Status&tds.DoneAttn != 0
	}
	if !attnAcked || fb.closed {
		t.Fatalf("A: DONE(ATTN) relayed=%v, backend closed=%v; want relayed, backend kept", attnAcked, fb.closed)
	}

	// The backend went to B, the waiter, and is reset again on the way.
	runUntil(t, b, "B bound to the backend", func() bool { return tb.bind != nil })
	if tb.bind.c != fb {
		t.Fatal("B was not given the released backend")
	}
	n := len(fb.written) - len(batch("select 2", 0))
	if tds.PacketStatus(fb.written[n+1])&tds.StatusResetConnection == 0 {
		t.Fatal("the backend whose reset was cancelled was lent without a new reset")
	}
	fb.h.Data(doneReply(tds.EnvChangeResetAck().AppendEnvChange(nil)))
	runUntil(t, b, "B released", func() bool { return tb.bind == nil })

	a.gone(host.RemoteClose)
	b.gone(host.RemoteClose)
	st := h.f.buckets["p1"].pool.Stats()
	if fb.closed || st.Discarded != 0 || st.ResetFailures != 0 {
		t.Fatalf("backend closed=%v, pool discarded %d, reset failures %d, tainted %v; want it kept", fb.closed, st.Discarded, st.ResetFailures, st.Tainted)
	}
	for _, n := range st.Tainted {
		if n != 0 {
			t.Fatalf("tainted %v; want none", st.Tainted)
		}
	}
	for deadline := time.Now().Add(2 * time.Second); h.f.buckets["p1"].tx.creatingNow() > 0 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	h.f.drainPools()
}

// The cancelled first request's backend is closed when the reset's outcome stays unknown in a
// way that matters: the server answered with an ERROR where the acknowledgement should be (the
// reset itself may have failed), or the client left before the DONE(ATTN) came (it would
// reach the next borrower).
func TestTransactionModeCancelledFirstRequestDiscards(t *testing.T) {
	errReply := tds.AppendPacketsSPID(nil, tds.PacketReply, 0, 57, tds.Done{Token: tds.TokenDone, Status: tds.DoneError}.AppendDone(
		tds.ServerMessage{Token: tds.TokenError, Number: 18056, State: 29, Class: 20, Text: "reset failed"}.AppendMessage(nil)), 8192)
	for _, tc := range []struct {
		name       string
		replies    [][]byte
		leaveEarly bool
	}{
		{"error instead of the acknowledgement", [][]byte{errReply, attnReply()}, false},
		{"client gone before the DONE(ATTN)", [][]byte{interruptedReply()}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newTxHarness(t)
			a := h.connect()
			fb, _ := a.pooledLogin(t, &h.dialed, "app", "pw")
			ta := txOf(a)
			a.fromClient(batch("waitfor delay '00:00:10'", 0))
			a.fromClient(tds.AppendPackets(nil, tds.PacketAttention, 0, nil, 8192))
			for _, r := range tc.replies {
				fb.h.Data(r)
				a.conn.RunPosted()
			}
			if !tc.leaveEarly && ta.bind != nil {
				t.Fatal("A still bound after the DONE(ATTN)")
			}
			a.gone(host.RemoteClose)
			if !fb.closed {
				t.Fatal("the backend went back to the pool")
			}
			h.f.drainPools()
		})
	}
}
