package pool

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tdspool/tdspool/tds"
)

// fakeConn is a backend connection; closes and slot releases are counted
// so every test can check that each slot came back exactly once.
type fakeConn struct {
	name       string
	dead       atomic.Bool
	closes     atomic.Int32
	releases   atomic.Int32
	panicClose bool
}

func (c *fakeConn) Close() {
	c.closes.Add(1)
	if c.panicClose {
		panic("close failed")
	}
}
func (c *fakeConn) Alive() bool { return !c.dead.Load() }
func (c *fakeConn) release()    { c.releases.Add(1) }

// harness is a pool with a clock and the connections it was given.
type harness struct {
	t     *testing.T
	p     *Pool[*fakeConn]
	h     *Hasher
	now   time.Time
	conns []*fakeConn
	reply *tds.LoginReply
}

func newHarness(t *testing.T, cfg Config) *harness {
	t.Helper()
	var b []byte
	b = tds.EnvChangeDatabase("tenant_a", "master").AppendEnvChange(b)
	b = tds.LoginAck{Interface: 1, TDSVersion: tds.TDSVersion74, ProgName: "Microsoft SQL Server"}.AppendLoginAck(b)
	b = tds.Done{Token: tds.TokenDone}.AppendDone(b)
	reply, err := tds.ParseLoginReply(b)
	if err != nil {
		t.Fatal(err)
	}
	hs := &harness{t: t, p: New[*fakeConn](cfg), h: mustHasher(t), now: time.Unix(1_700_000_000, 0), reply: reply}
	t.Cleanup(hs.checkSlots)
	return hs
}

// key returns the key of a login by user with password, in db.
func (hs *harness) key(user, password, db string) Key {
	l := baseLogin()
	l.UserName, l.Password, l.Database = user, tds.NewPassword(password), db
	k, d := KeyFromLogin7("bucket-001", l, hs.h)
	if d != Poolable {
		hs.t.Fatalf("dedicated %s", d)
	}
	return k
}

// login adopts a new backend as if a real login of key had succeeded.
func (hs *harness) login(k Key) *Lease[*fakeConn] {
	c := &fakeConn{name: fmt.Sprintf("c%d", len(hs.conns))}
	hs.conns = append(hs.conns, c)
	return hs.p.Adopt(k, c, hs.reply, c.release, hs.now)
}

func (hs *harness) advance(d time.Duration) { hs.now = hs.now.Add(d) }

// checkSlots: a closed connection released its slot exactly once, an open
// one not at all, and the pool's gauges count exactly the open ones.
func (hs *harness) checkSlots() {
	open := 0
	for _, c := range hs.conns {
		cl, rel := c.closes.Load(), c.releases.Load()
		if cl > 1 || rel != cl {
			hs.t.Errorf("%s: closed %d times, released %d times", c.name, cl, rel)
		}
		if cl == 0 {
			open++
		}
	}
	if st := hs.p.Stats(); st.Pooled != open || st.Idle+st.Active != st.Pooled {
		hs.t.Errorf("pool holds %d (idle %d, active %d), %d connections open", st.Pooled, st.Idle, st.Active, open)
	}
}

func (hs *harness) borrow(k Key, want Miss) *Lease[*fakeConn] {
	hs.t.Helper()
	l, miss := hs.p.Borrow(k, hs.now)
	if miss != want || (l != nil) != (want == Hit) {
		hs.t.Fatalf("Borrow = %v, %s; want %s", l != nil, miss, want)
	}
	return l
}

func TestBorrowReuseLIFO(t *testing.T) {
	hs := newHarness(t, Config{})
	k := hs.key("demo", "pw", "tenant_a")
	hs.borrow(k, MissEmpty)
	a, b := hs.login(k), hs.login(k)
	if a.Reused() || a.Reply() != hs.reply {
		t.Fatal("adopted lease must not be marked reused, and carries the reply")
	}
	a.Return(hs.now)
	hs.advance(time.Second)
	b.Return(hs.now)
	l := hs.borrow(k, Hit)
	if l.Conn() != hs.conns[1] || !l.Reused() || l.Reply() != hs.reply {
		t.Fatalf("borrowed %s, want the most recently returned c1", l.Conn().name)
	}
	l.ResetDone(true)
	l2 := hs.borrow(k, Hit)
	if l2.Conn() != hs.conns[0] {
		t.Fatal("second borrow should get c0")
	}
	hs.borrow(k, MissEmpty)
	st := hs.p.Stats()
	if st.Borrowed != 2 || st.LoginsSaved != 1 || st.Created != 2 || st.Active != 2 || st.Idle != 0 {
		t.Fatalf("stats %+v", st)
	}
	l.Return(hs.now)
	l2.Return(hs.now)
	l2.Return(hs.now) // a second Return does nothing
	l2.Discard()      // nor does a Discard after it
	if st := hs.p.Stats(); st.Idle != 2 || st.Returned != 4 {
		t.Fatalf("stats %+v", st)
	}
}

func TestKeysNeverShare(t *testing.T) {
	hs := newHarness(t, Config{})
	k := hs.key("demo", "pw", "tenant_a")
	hs.login(k).Return(hs.now)
	for name, other := range map[string]Key{
		"other user":     hs.key("demo2", "pw", "tenant_a"),
		"other database": hs.key("demo", "pw", "tenant_b"),
	} {
		if l, miss := hs.p.Borrow(other, hs.now); l != nil || miss != MissEmpty {
			t.Errorf("%s: borrowed=%v miss=%s", name, l != nil, miss)
		}
	}
	// A wrong password never reuses: the server must judge it.
	hs.borrow(hs.key("demo", "wrong", "tenant_a"), MissCredential)
	hs.p.LoginRefused(hs.key("demo", "wrong", "tenant_a")) // the server said no: nothing changes
	hs.borrow(k, Hit).Return(hs.now)
}

func TestPasswordChangeAndReauth(t *testing.T) {
	hs := newHarness(t, Config{ReauthAfter: time.Minute})
	old := hs.key("demo", "old", "tenant_a")
	hs.login(old).Return(hs.now)
	hs.login(old).Return(hs.now)

	// Inside the window the old password keeps working from the pool.
	hs.advance(59 * time.Second)
	l := hs.borrow(old, Hit)
	l.ResetDone(true)
	// Past it the next borrow must log in for real; the server refuses the
	// old password now: the key is forgotten and its idle backends closed.
	hs.advance(time.Second)
	hs.borrow(old, MissReauth)
	hs.p.LoginRefused(old)
	if hs.conns[0].closes.Load() != 1 {
		t.Fatal("idle backend of a refused credential still open")
	}
	hs.borrow(old, MissCredential) // the pool trusts no credential for the key now
	// The one lent out is closed when it comes back.
	l.Return(hs.now)
	if hs.conns[1].closes.Load() != 1 {
		t.Fatal("lent backend of a refused credential went back to the pool")
	}

	// The new password logs in for real, then is served from the pool.
	newKey := hs.key("demo", "new", "tenant_a")
	hs.login(newKey).Return(hs.now)
	hs.borrow(newKey, Hit).Return(hs.now)
	if st := hs.p.Stats(); st.RefusedKeys != 1 || st.Misses[MissReauth] != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// A real login with a new password that the server accepts replaces the
// credential: backends of the old one are not lent again.
func TestNewCredentialReplacesOld(t *testing.T) {
	hs := newHarness(t, Config{})
	old, cur := hs.key("demo", "old", "tenant_a"), hs.key("demo", "new", "tenant_a")
	hs.login(old).Return(hs.now)
	lent := hs.login(old)
	hs.borrow(cur, MissCredential)
	hs.login(cur).Return(hs.now)
	if hs.conns[0].closes.Load() != 1 {
		t.Fatal("idle backend of the old credential still open")
	}
	hs.borrow(old, MissCredential)
	lent.Return(hs.now)
	if hs.conns[1].closes.Load() != 1 {
		t.Fatal("backend of the old credential went back to the pool")
	}
	if l := hs.borrow(cur, Hit); l.Conn() != hs.conns[2] {
		t.Fatal("wrong backend")
	} else {
		l.Discard()
	}
}

func TestBorrowSkipsUnusable(t *testing.T) {
	tests := []struct {
		name  string
		cfg   Config
		spoil func(hs *harness, c *fakeConn)
		why   string
	}{
		{"died while idle", Config{}, func(hs *harness, c *fakeConn) { c.dead.Store(true) }, "died"},
		{"idle too long", Config{MaxIdleTime: time.Minute}, func(hs *harness, c *fakeConn) { hs.advance(time.Minute) }, "idle_time"},
		{"lived too long", Config{MaxLifetime: time.Hour}, func(hs *harness, c *fakeConn) { hs.advance(time.Hour) }, "lifetime"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			hs := newHarness(t, tc.cfg)
			k := hs.key("demo", "pw", "tenant_a")
			bad := hs.login(k)
			bad.Return(hs.now)
			tc.spoil(hs, hs.conns[0])
			good := hs.login(k)
			good.Return(hs.now)
			// Put the spoiled one on top of the stack, where Borrow looks first.
			hs.p.mu.Lock()
			idle := hs.p.keys[k.Identity].idle
			idle[0], idle[1] = idle[1], idle[0] // spoiled one on top
			hs.p.mu.Unlock()
			l := hs.borrow(k, Hit)
			if l.Conn() != hs.conns[1] || hs.conns[0].closes.Load() != 1 {
				t.Fatalf("borrowed %s; spoiled closed %d times", l.Conn().name, hs.conns[0].closes.Load())
			}
			if st := hs.p.Stats(); st.ClosedIdle[tc.why] != 1 {
				t.Fatalf("closed idle %v, want 1 %s", st.ClosedIdle, tc.why)
			}
			l.Return(hs.now)
		})
	}
}

func TestReturnCloses(t *testing.T) {
	tests := []struct {
		name   string
		cfg    Config
		before func(hs *harness, l *Lease[*fakeConn])
		why    string
	}{
		{"app role", Config{}, func(hs *harness, l *Lease[*fakeConn]) { l.Taint(TaintAppRole) }, "tainted"},
		{"unparsed stream", Config{}, func(hs *harness, l *Lease[*fakeConn]) { l.Taint(TaintUnparsed) }, "tainted"},
		{"request in flight", Config{}, func(hs *harness, l *Lease[*fakeConn]) { l.Taint(TaintRequestInFlight) }, "tainted"},
		{"dead", Config{}, func(hs *harness, l *Lease[*fakeConn]) { l.Conn().dead.Store(true) }, "died"},
		{"past lifetime", Config{MaxLifetime: time.Hour}, func(hs *harness, l *Lease[*fakeConn]) { hs.advance(time.Hour) }, "lifetime"},
		{"draining", Config{}, func(hs *harness, l *Lease[*fakeConn]) { hs.p.Drain() }, "draining"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			hs := newHarness(t, tc.cfg)
			l := hs.login(hs.key("demo", "pw", "tenant_a"))
			tc.before(hs, l)
			l.Return(hs.now)
			st := hs.p.Stats()
			if hs.conns[0].closes.Load() != 1 || st.ClosedOnReturn[tc.why] != 1 || st.Idle != 0 {
				t.Fatalf("closes=%d stats %+v", hs.conns[0].closes.Load(), st)
			}
		})
	}
}

func TestNoRecording(t *testing.T) {
	hs := newHarness(t, Config{})
	k := hs.key("demo", "pw", "tenant_a")
	c := &fakeConn{name: "c0"}
	hs.conns = append(hs.conns, c)
	l := hs.p.Adopt(k, c, nil, c.release, hs.now)
	hs.borrow(k, MissNoRecording)
	l.Return(hs.now)
	if c.closes.Load() != 1 {
		t.Fatal("a backend whose login reply could not be recorded was pooled")
	}
	// A later login of the key that could be recorded makes it poolable.
	hs.login(k).Return(hs.now)
	hs.borrow(k, Hit).Return(hs.now)
}

func TestResetFailureRetries(t *testing.T) {
	hs := newHarness(t, Config{})
	k := hs.key("demo", "pw", "tenant_a")
	a, b := hs.login(k), hs.login(k)
	a.Return(hs.now)
	b.Return(hs.now)
	l := hs.borrow(k, Hit)
	l.ResetDone(false)
	if l.Conn().closes.Load() != 1 {
		t.Fatal("backend with a failed reset not closed")
	}
	l.Return(hs.now) // the lease is over; nothing happens
	l2 := hs.borrow(k, Hit)
	l2.ResetDone(true)
	l2.Return(hs.now)
	if st := hs.p.Stats(); st.ResetFailures != 1 || st.LoginsSaved != 1 || st.Idle != 1 || st.Discarded != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// A caller replacing a failed backend itself takes it out unclosed, with its slot's release.
func TestDetachFailed(t *testing.T) {
	hs := newHarness(t, Config{})
	k := hs.key("demo", "pw", "tenant_a")
	hs.login(k).Return(hs.now)
	l := hs.borrow(k, Hit)
	release := l.DetachFailed()
	c := l.Conn()
	if c.closes.Load() != 0 || release == nil {
		t.Fatal("DetachFailed closed the backend or kept its slot")
	}
	if again := l.DetachFailed(); again != nil {
		t.Fatal("a second DetachFailed handed the slot out again")
	}
	l.Return(hs.now)
	if st := hs.p.Stats(); st.ResetFailures != 1 || st.Pooled != 0 {
		t.Fatalf("stats %+v", st)
	}
	c.Close()
	release() // the caller's part; checkSlots counts it
	hs.borrow(k, MissEmpty)
}

// afterCloser is a connection whose close completes later.
type afterCloser struct {
	fakeConn
	after []func()
}

func (c *afterCloser) AfterClose(fn func()) { c.after = append(c.after, fn) }

// A connection that finishes closing later gets its slot released through AfterClose.
func TestReleaseAfterClose(t *testing.T) {
	p := New[*afterCloser](Config{})
	h := mustHasher(t)
	l := baseLogin()
	k, _ := KeyFromLogin7("b", l, h)
	c := &afterCloser{}
	p.Adopt(k, c, nil, c.release, time.Unix(0, 0)).Discard()
	if c.closes.Load() != 1 || c.releases.Load() != 0 || len(c.after) != 1 {
		t.Fatalf("closed %d, released %d, deferred %d", c.closes.Load(), c.releases.Load(), len(c.after))
	}
	c.after[0]()
	if c.releases.Load() != 1 {
		t.Fatal("the deferred release did not release")
	}
}

func TestEvictIdle(t *testing.T) {
	hs := newHarness(t, Config{})
	a, b, w := hs.key("a", "pw", "db"), hs.key("b", "pw", "db"), hs.key("w", "pw", "db")
	hs.login(a).Return(hs.now) // c0: oldest
	hs.advance(time.Second)
	hs.login(b).Return(hs.now) // c1
	hs.advance(time.Second)
	hs.login(a).Return(hs.now) // c2
	hs.advance(time.Second)
	hs.login(w).Return(hs.now) // c3: the waiter's own

	for _, want := range []int{0, 1, 2, 3} {
		if !hs.p.EvictIdle(w.Identity) {
			t.Fatalf("nothing evicted, want c%d", want)
		}
		if hs.conns[want].closes.Load() != 1 {
			t.Fatalf("c%d not evicted (others' oldest first, the waiter's own last)", want)
		}
	}
	if hs.p.EvictIdle(w.Identity) {
		t.Fatal("evicted from an empty pool")
	}
	if st := hs.p.Stats(); st.Evictions != 4 || st.Pooled != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestSweep(t *testing.T) {
	hs := newHarness(t, Config{MaxIdleTime: time.Minute, MaxLifetime: time.Hour})
	k := hs.key("demo", "pw", "tenant_a")
	old := hs.login(k)
	hs.advance(59 * time.Minute)
	young := hs.login(k)
	old.Return(hs.now)
	young.Return(hs.now)
	hs.login(k).Return(hs.now)
	hs.conns[2].dead.Store(true)
	if n := hs.p.Sweep(hs.now); n != 1 {
		t.Fatalf("swept %d, want the dead one", n)
	}
	hs.advance(time.Minute)
	if n := hs.p.Sweep(hs.now); n != 2 {
		t.Fatalf("swept %d, want 2 (one past its lifetime, one idle a minute)", n)
	}
	if st := hs.p.Stats(); st.ClosedIdle["died"] != 1 || st.ClosedIdle["idle_time"]+st.ClosedIdle["lifetime"] != 2 {
		t.Fatalf("stats %+v", st.ClosedIdle)
	}
}

func TestDrainAndWarmup(t *testing.T) {
	hs := newHarness(t, Config{MinIdle: 3})
	k := hs.key("demo", "pw", "tenant_a")
	if n := hs.p.WarmupNeeded(); n != 3 {
		t.Fatalf("warm-up needed %d", n)
	}
	c := &fakeConn{name: "warm"}
	hs.conns = append(hs.conns, c)
	hs.p.AdoptIdle(k, c, hs.reply, c.release, hs.now)
	lent := hs.login(k)
	if n := hs.p.WarmupNeeded(); n != 2 {
		t.Fatalf("warm-up needed %d", n)
	}
	if l := hs.borrow(k, Hit); l.Conn() != c {
		t.Fatal("warm backend not lent")
	} else {
		l.Return(hs.now)
	}
	if n := hs.p.Drain(); n != 1 {
		t.Fatalf("drained %d", n)
	}
	hs.borrow(k, MissDraining)
	if n := hs.p.WarmupNeeded(); n != 0 {
		t.Fatalf("warm-up while draining: %d", n)
	}
	late := &fakeConn{name: "late"}
	hs.conns = append(hs.conns, late)
	hs.p.AdoptIdle(k, late, hs.reply, late.release, hs.now)
	lent.Return(hs.now)
	if late.closes.Load() != 1 || hs.conns[1].closes.Load() != 1 {
		t.Fatal("backends kept after drain")
	}
	if st := hs.p.Stats(); st.Warmed != 2 || st.Pooled != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// A Close that panics still gives its slot back, and the other closes in
// the same sweep happen; the panic reaches the caller's barrier.
func TestPanickingCloseReleases(t *testing.T) {
	hs := newHarness(t, Config{})
	k := hs.key("demo", "pw", "tenant_a")
	hs.login(k).Return(hs.now)
	hs.login(k).Return(hs.now)
	hs.conns[0].panicClose, hs.conns[1].panicClose = true, true
	func() {
		defer func() {
			if recover() == nil {
				t.Fatal("panic swallowed")
			}
		}()
		hs.p.Drain()
	}()
	for _, c := range hs.conns {
		if c.releases.Load() != 1 {
			t.Fatalf("%s released %d times", c.name, c.releases.Load())
		}
	}
}

func TestBorrowWaitHistogram(t *testing.T) {
	hs := newHarness(t, Config{})
	for _, d := range []time.Duration{0, time.Millisecond, 3 * time.Millisecond, time.Minute} {
		hs.p.ObserveBorrowWait(d)
	}
	st := hs.p.Stats()
	h := st.BorrowWait
	if h.Count != 4 || h.Sum != time.Minute+4*time.Millisecond || h.Counts[0] != 2 || h.Counts[2] != 1 || h.Counts[len(WaitBounds)] != 1 {
		t.Fatalf("histogram %+v", h)
	}
	hs.p.ObserveBorrowWait(time.Second)
	if st.BorrowWait.Count != 4 {
		t.Fatal("snapshot shares memory with the pool")
	}
}

func TestKeyStats(t *testing.T) {
	hs := newHarness(t, Config{})
	a, b := hs.key("a", "pw", "db"), hs.key("b", "pw", "db")
	hs.login(a).Return(hs.now)
	la := hs.login(a)
	lb := hs.login(b)
	got := map[string][2]int{}
	for _, ks := range hs.p.KeyStats() {
		got[ks.Key.User] = [2]int{ks.Idle, ks.Active}
	}
	if got["a"] != [2]int{1, 1} || got["b"] != [2]int{0, 1} || len(got) != 2 {
		t.Fatalf("key stats %v", got)
	}
	if st := hs.p.Stats(); st.PooledKeys != 2 {
		t.Fatalf("pooled keys %d, want 2", st.PooledKeys)
	}
	la.Return(hs.now)
	lb.Discard()
	// b's only backend is gone: its key may still be remembered, but it pools nothing.
	if st := hs.p.Stats(); st.PooledKeys != 1 || st.Idle != 2 {
		t.Fatalf("after b's discard: pooled keys %d (of %d known), idle %d; want 1 key with 2 idle", st.PooledKeys, st.Keys, st.Idle)
	}
}

// Many sessions borrowing, returning, tainting and logging in at once,
// with sweeps and evictions beside them; every slot comes back once. Run
// with -race.
func TestConcurrentUse(t *testing.T) {
	hs := newHarness(t, Config{MaxIdleTime: 50 * time.Millisecond, ReauthAfter: time.Hour})
	keys := []Key{hs.key("a", "pw", "db"), hs.key("b", "pw", "db"), hs.key("c", "pw", "db")}
	var mu sync.Mutex
	newConn := func() *fakeConn {
		mu.Lock()
		defer mu.Unlock()
		c := &fakeConn{name: fmt.Sprintf("c%d", len(hs.conns))}
		hs.conns = append(hs.conns, c)
		return c
	}
	start := hs.now
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 300 {
				now := start.Add(time.Duration(i) * time.Millisecond)
				k := keys[(g+i)%len(keys)]
				l, _ := hs.p.Borrow(k, now)
				if l == nil {
					c := newConn()
					l = hs.p.Adopt(k, c, hs.reply, c.release, now)
				} else {
					l.ResetDone(i%17 != 0)
				}
				switch i % 11 {
				case 0:
					l.Taint(TaintUnparsed)
				case 1:
					l.Conn().dead.Store(true)
				}
				l.Return(now)
				if i%23 == 0 {
					hs.p.Sweep(now)
					hs.p.EvictIdle(k.Identity)
				}
			}
		}()
	}
	wg.Wait()
	hs.p.Drain()
	if st := hs.p.Stats(); st.Pooled != 0 || int(st.Created) != len(hs.conns) {
		t.Fatalf("stats %+v, %d connections", st, len(hs.conns))
	}
}

// WaitReturn: a client that found every backend of its key lent is woken by the next one
// to come back (returned or closed), one waiter per return; a second waiter of the key is
// refused (the caller logs in a new backend), and so is one of a key with nothing lent.
func TestWaitReturnWakesOnReturn(t *testing.T) {
	hs := newHarness(t, Config{})
	k := hs.key("app", "pw", "db")
	woken := map[string]int{}
	wake := func(name string) func() { return func() { woken[name]++ } }

	if _, ok := hs.p.WaitReturn(k, wake("none")); ok {
		t.Fatal("a wait registered for a key with nothing lent")
	}
	a, b := hs.login(k), hs.login(k)
	cancelFirst, ok := hs.p.WaitReturn(k, wake("first"))
	if !ok {
		t.Fatal("no wait registered with two backends lent")
	}
	if _, ok := hs.p.WaitReturn(k, wake("second")); ok {
		t.Fatal("a second waiter of the key registered: it should log a new backend in")
	}
	if other := hs.key("app", "other-pw", "db"); func() bool { _, ok := hs.p.WaitReturn(other, wake("x")); return ok }() {
		t.Fatal("a wait registered with another credential")
	}
	a.Return(hs.now)
	if woken["first"] != 1 || len(woken) != 1 {
		t.Fatalf("woken %v after a return, want the first waiter once", woken)
	}
	if cancelFirst() {
		t.Fatal("cancel of a woken wait reported withdrawn")
	}
	if l, _ := hs.p.Borrow(k, hs.now); l == nil {
		t.Fatal("the returned backend is not idle")
	} else {
		l.Return(hs.now)
	}

	// A discarded backend wakes a waiter too (it stops waiting for nothing); with nothing
	// lent any more every waiter is woken.
	if _, ok := hs.p.WaitReturn(k, wake("third")); !ok {
		t.Fatal("no wait registered with one backend lent")
	}
	b.Taint(TaintAppRole)
	b.Return(hs.now)
	if woken["third"] != 1 {
		t.Fatalf("woken %v after a tainted return", woken)
	}

	// Cancelled before any return: never woken.
	l, _ := hs.p.Borrow(k, hs.now)
	cancel, ok := hs.p.WaitReturn(k, wake("cancelled"))
	if !ok || !cancel() {
		t.Fatal("a registered wait was not withdrawn")
	}
	l.Discard()
	if woken["cancelled"] != 0 {
		t.Fatalf("a cancelled wait was woken: %v", woken)
	}
	if n := hs.p.Stats().ReturnWaits; n != 3 {
		t.Fatalf("ReturnWaits = %d, want 3", n)
	}
	// Totals (what the filter reads at every session's end) agrees with Stats.
	st, tot := hs.p.Stats(), hs.p.Totals()
	closed := st.Discarded + st.Evictions
	for _, m := range []map[string]uint64{st.ClosedIdle, st.ClosedOnReturn} {
		for _, n := range m {
			closed += n
		}
	}
	if st.Closed != closed || tot.Closed != closed || closed != 2 || tot.ReturnWaits != st.ReturnWaits || tot.Idle != st.Idle ||
		tot.Borrowed != st.Borrowed || tot.Misses != nil {
		t.Fatalf("Totals %+v, Stats %+v: want the same totals (2 closed), no breakdowns", tot, st)
	}
}
