package filter

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tdspool/tdspool/coordinator"
	"github.com/tdspool/tdspool/envoy/host"
	"github.com/tdspool/tdspool/tds"
)

// recordingSlots wraps the harness's local slots with what the Redis coordinator adds for the
// fleet view: each grant's holder record (SetHolder, SetPins) and client records.
type recordingSlots struct {
	Slots
	mu      sync.Mutex
	leases  []*fleetRecord
	clients []*fleetRecord
}

// fleetRecord is one lease's or client's record as Redis would hold it.
type fleetRecord struct {
	s       *recordingSlots
	holder  coordinator.Holder
	kill    func()
	removed bool
}

func (r *fleetRecord) get() coordinator.Holder {
	r.s.mu.Lock()
	defer r.s.mu.Unlock()
	return r.holder
}

func (s *recordingSlots) Acquire(req SlotRequest, done func(SlotResult)) func() bool {
	return s.Slots.Acquire(req, func(r SlotResult) {
		if r.Granted() {
			rec := &fleetRecord{s: s, holder: req.Holder, kill: req.OnKill}
			s.mu.Lock()
			s.leases = append(s.leases, rec)
			s.mu.Unlock()
			r.SetHolder = func(h coordinator.Holder) { s.mu.Lock(); rec.holder = h; s.mu.Unlock() }
			r.SetPins = func(p string) { s.mu.Lock(); rec.holder.Pins = p; s.mu.Unlock() }
		}
		done(r)
	})
}

func (s *recordingSlots) AddClient(bucket string, h coordinator.Holder, onKill func()) fleetClient {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec := &fleetRecord{s: s, holder: h, kill: onKill}
	s.clients = append(s.clients, rec)
	return recordedClient{rec}
}

type recordedClient struct{ r *fleetRecord }

func (c recordedClient) ID() string { return "p:c1" }
func (c recordedClient) SetPins(p string) {
	c.r.s.mu.Lock()
	c.r.holder.Pins = p
	c.r.s.mu.Unlock()
}
func (c recordedClient) Remove() { c.r.s.mu.Lock(); c.r.removed = true; c.r.s.mu.Unlock() }

func (s *recordingSlots) lease(t *testing.T, i int) *fleetRecord {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if i >= len(s.leases) {
		t.Fatalf("%d leases, want #%d", len(s.leases), i)
	}
	return s.leases[i]
}

// held is how many slots of bucket p1 are taken.
func (s *recordingSlots) held() int {
	ls := s.Slots.(*localSlots)
	ls.mu.Lock()
	defer ls.mu.Unlock()
	return ls.buckets["p1"].held
}

func recordSlots(h *harness) *recordingSlots {
	rs := &recordingSlots{Slots: h.f.slots}
	h.f.slots = rs
	return rs
}

// A session-pooled backend's lease follows the backend: the creating session, idle in the
// pool (no client), then the borrower with the borrower's pins (a transaction begun on the
// reused backend), then idle again.
func TestFleetRecordFollowsSessionPooledBackend(t *testing.T) {
	h, dialed := pooledHarness(t)
	rs := recordSlots(h)
	a := h.connect()
	fb, _ := a.pooledLogin(t, dialed, "app", "pw")
	rec := rs.lease(t, 0)
	if got := rec.get(); got.Client == "" || got.User != "app" || got.State != "" {
		t.Fatalf("the creating session's record: %+v", got)
	}
	a.s.OnEvent(host.RemoteClose)
	if got := rec.get(); got.State != coordinator.HolderIdle || got.Client != "" || got.User != "app" || got.App != "test" {
		t.Fatalf("idle in the pool: %+v", got)
	}
	b := h.connect()
	if _, reused := b.pooledLogin(t, dialed, "app", "pw"); !reused {
		t.Fatal("B not served from the pool")
	}
	if got := rec.get(); got.State != "" || got.Client == "" || got.Pins != "" {
		t.Fatalf("lent to B: %+v", got)
	}
	b.roundTrip(t, fb, doneReply(tds.EnvChangeResetAck().AppendEnvChange(nil), tds.EnvChangeBeginTran(1).AppendEnvChange(nil)))
	if got := rec.get(); got.Pins != "transaction" {
		t.Fatalf("B's transaction not on the lease: %+v", got)
	}
	b.roundTrip(t, fb, doneReply(tds.EnvChangeCommitTran(1).AppendEnvChange(nil)))
	b.s.OnEvent(host.RemoteClose)
	if got := rec.get(); got.State != coordinator.HolderIdle || got.Pins != "" || got.Client != "" {
		t.Fatalf("back in the pool: %+v", got)
	}
	if len(rs.leases) != 1 {
		t.Fatalf("%d slots taken, want 1", len(rs.leases))
	}
}

// A transaction-pooled session has a client record; the backend bound to it shows it (with the
// record's id and its pins) and shows idle once released; the record goes with the session.
// An operator's kill of the bound backend's lease ends the session and closes that backend.
func TestFleetRecordsOfTransactionPooledSessions(t *testing.T) {
	h := newTxHarness(t)
	rs := recordSlots(h.harness)
	a := h.connect()
	fb0, _ := a.pooledLogin(t, &h.dialed, "app", "pw")
	rec := rs.lease(t, 0)
	if got := rec.get(); got.State != coordinator.HolderIdle || got.Client != "" {
		t.Fatalf("after the real login the backend is idle in the pool: %+v", got)
	}
	if len(rs.clients) != 1 || rs.clients[0].get().User != "app" || rs.clients[0].get().Client == "" {
		t.Fatalf("client records: %d", len(rs.clients))
	}
	ta := txOf(a)
	a.fromClient(batch("begin tran", 0))
	if ta.bind == nil {
		t.Fatal("not bound")
	}
	if got := rec.get(); got.Session != "p:c1" || got.Client == "" || got.State != "" {
		t.Fatalf("bound backend's record: %+v", got)
	}
	fb0.h.Data(doneReply(tds.EnvChangeResetAck().AppendEnvChange(nil), tds.EnvChangeBeginTran(1).AppendEnvChange(nil)))
	runUntil(t, a, "the transaction seen", func() bool { return ta.binding.Pinned() })
	if got, cr := rec.get(), rs.clients[0].get(); got.Pins != "transaction" || cr.Pins != "transaction" {
		t.Fatalf("pins: lease %+v, client %+v", got, cr)
	}
	// The operator kills the backend's lease (coordinator goroutine): the session ends with
	// the kill's ERROR and the backend is closed, not pooled.
	a.conn.ToClient = nil
	rec.kill()
	runUntil(t, a, "the session killed", func() bool { return a.conn.Closed })
	if !fb0.closed || !rs.clients[0].removed {
		t.Fatalf("backend closed %v, client record removed %v", fb0.closed, rs.clients[0].removed)
	}
	if h.metrics.Value("client_errors_killed_total") != 1 {
		t.Fatal("no kill ERROR sent")
	}
}

// idle_timeout closes a transaction-pooled session after that long without traffic either
// way; traffic pushes it back (gaps of 200 ms on a 1 s timeout, for 1.2 s).
func TestTransactionModeIdleTimeout(t *testing.T) {
	h := newTxHarnessConfig(t, strings.Replace(txConfig, `"listener"`, `"timeouts": {"idle_timeout": "1s"}, "listener"`, 1))
	a := h.connect()
	fb0, _ := a.pooledLogin(t, &h.dialed, "app", "pw")
	ta := txOf(a)
	for range 6 {
		time.Sleep(200 * time.Millisecond)
		a.fromClient(batch("select 1", 0))
		fb0.h.Data(doneReply(tds.EnvChangeResetAck().AppendEnvChange(nil)))
		runUntil(t, a, "released", func() bool { return ta.bind == nil })
		if a.conn.Closed {
			t.Fatal("closed while active")
		}
	}
	deadline := time.Now().Add(3 * time.Second)
	for !a.conn.Closed && time.Now().Before(deadline) {
		a.conn.RunPosted()
		time.Sleep(5 * time.Millisecond)
	}
	if !a.conn.Closed || ta.client == nil {
		t.Fatal("an idle transaction-pooled session outlived idle_timeout")
	}
}

// A kill that finds a transaction-pooled session's request waiting for a backend (none idle,
// the new one's login still under way) answers that request with the kill's ERROR, which it
// can do cleanly because nothing of it reached a backend.
func TestTransactionModeKillAnswersAWaitingRequest(t *testing.T) {
	h := newTxHarness(t)
	rs := recordSlots(h.harness)
	a := h.connect()
	fb0, _ := a.pooledLogin(t, &h.dialed, "app", "pw")
	ta := txOf(a)
	a.fromClient(batch("begin tran", 0))
	fb0.h.Data(doneReply(tds.EnvChangeResetAck().AppendEnvChange(nil), tds.EnvChangeBeginTran(1).AppendEnvChange(nil)))
	runUntil(t, a, "A pinned", func() bool { return ta.binding.Pinned() })
	b := h.connect()
	b.fromClient(preloginMsg(tds.EncryptOff))
	b.fromClient(loginFor("app", "pw"))
	tb := txOf(b)
	b.conn.ToClient = nil
	b.fromClient(batch("select 2", 0))
	h.waitDial(t, b, 2) // B's new backend is dialed and never answers
	if tb.waiter == nil {
		t.Fatal("B's request is not waiting")
	}
	rs.mu.Lock()
	kill := rs.clients[1].kill
	rs.mu.Unlock()
	kill()
	runUntil(t, b, "B killed", func() bool { return b.conn.Closed })
	if !bytes.Contains(b.conn.ToClient, []byte{byte(tds.TokenError)}) || h.metrics.Value("client_errors_killed_total") != 1 {
		t.Fatalf("B's waiting request got % x", b.conn.ToClient)
	}
	if a.conn.Closed {
		t.Fatal("A was killed too")
	}
}

// An operator's kill of an idle transaction-mode backend's lease closes that backend (and
// frees its slot); the sessions go on, and the next request gets another backend.
func TestTransactionModeKillOfAnIdleBackend(t *testing.T) {
	h := newTxHarness(t)
	rs := recordSlots(h.harness)
	a := h.connect()
	fb0, _ := a.pooledLogin(t, &h.dialed, "app", "pw")
	ta := txOf(a)
	// A request on a new backend grown by the pool (its lease is the grow's, not the login's).
	a.fromClient(batch("select 1", 0))
	fb0.h.Data(doneReply(tds.EnvChangeResetAck().AppendEnvChange(nil)))
	runUntil(t, a, "released", func() bool { return ta.bind == nil })
	for i, rec := range []*fleetRecord{rs.lease(t, 0)} {
		if got := rec.get(); got.State != coordinator.HolderIdle {
			t.Fatalf("lease %d not idle: %+v", i, got)
		}
		rec.kill()
	}
	runUntil(t, a, "the idle backend closed", func() bool { return fb0.closed && rs.held() == 0 })
	if a.conn.Closed {
		t.Fatal("the session was killed with the idle backend")
	}
	a.fromClient(batch("select 2", 0))
	fb1 := h.waitDial(t, a, 2)
	fb1.h.Ready(&tds.Prelogin{}, tds.EncryptionNone)
	fb1.h.Data(loginAckReply())
	runUntil(t, a, "bound to a new backend", func() bool { return ta.bind != nil && ta.bind.c == fb1 })
	if got := rs.lease(t, 1).get(); got.Session != "p:c1" {
		t.Fatalf("the grown backend's lease while bound: %+v", got)
	}
	fb1.h.Data(doneReply())
	runUntil(t, a, "released again", func() bool { return ta.bind == nil })
	rs.lease(t, 1).kill()
	runUntil(t, a, "the grown idle backend closed", func() bool { return fb1.closed })
	if a.conn.Closed {
		t.Fatal("the session was killed with the grown idle backend")
	}
}

// A warm-up backend's lease shows the warm-up app while its login runs and, once warm, an idle
// backend of the warm-up login (the pool key it serves), so the fleet view counts it with that
// login's other backends.
func TestFleetRecordOfAWarmBackend(t *testing.T) {
	wh := newWarmHarness(t, warmConfig)
	rs := recordSlots(wh.harness)
	wh.warm(t, time.Now(), 2, loginAckReply)
	for i := range 2 {
		got := rs.lease(t, i).get()
		if got.State != coordinator.HolderIdle || got.User != "app" || got.App != "test" || got.Database != "db" || got.Client != "" {
			t.Fatalf("warm backend %d: %+v", i, got)
		}
	}
}
