package coordinator

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/tdspool/tdspool/internal/redistest"
)

// countMetrics counts hook calls.
type countMetrics struct {
	NopMetrics
	mu       sync.Mutex
	outcomes map[string]int
	fallback []bool
	calls    int
	errs     int
	renewed  int
	reassert int
	expired  int
}

func (m *countMetrics) AcquireDone(_ string, o Outcome, fb bool, _ time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := o.String()
	if fb {
		k += "/fallback"
	}
	m.outcomes[k]++
}
func (m *countMetrics) QueueLength(string, int, int) {}
func (m *countMetrics) RedisCall(_, _ string, _ time.Duration, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls++
	if err != nil {
		m.errs++
	}
}
func (m *countMetrics) FallbackActive(_ string, on bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.fallback = append(m.fallback, on)
}
func (m *countMetrics) LeasesRenewed(_ string, n, re int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.renewed += n
	m.reassert += re
}
func (m *countMetrics) LeasesExpired(_ string, n int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.expired += n
}
func (m *countMetrics) get(k string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.outcomes[k]
}

func zcard(t *testing.T, srv *redistest.Server, c *Coordinator, bucket string, key int) int64 {
	t.Helper()
	n, err := srv.Client().ZCard(context.Background(), c.cfg.keys(bucket)[key]).Result()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestAcquireFastPathReleaseSnapshot(t *testing.T) {
	srv := redistest.Start(t)
	m := &countMetrics{outcomes: map[string]int{}}
	cfg := fastConfig("p1", map[string]BucketConfig{"b1": {Cap: 2}})
	cfg.Metrics = m
	c := newCoord(t, srv, cfg)
	seed(t, srv.Client(), c.cfg, "b1")
	rs := newResults()

	c.Acquire("b1", time.Time{}, rs.cb("a"))
	r := rs.wait(t, "a", 2*time.Second)
	if r.Outcome != Granted || r.Lease == nil || r.Fallback || r.GrantSeq == 0 {
		t.Fatalf("result %+v", r)
	}
	s, _ := c.Snapshot("b1")
	if s.Held != 1 || s.Cap != 2 || s.LocalHeld != 1 || s.Mode != ModeNormal || s.LiveProxies != 1 {
		t.Fatalf("snapshot %+v", s)
	}
	c.Release(r.Lease)
	c.Release(r.Lease)
	eventually(t, 2*time.Second, "lease gone from Redis", func() bool { return zcard(t, srv, c, "b1", keyHolders) == 0 })
	if m.get("granted") != 1 {
		t.Fatalf("metrics outcomes %v", m.outcomes)
	}

	c.Acquire("nope", time.Time{}, rs.cb("unknown"))
	if r := rs.wait(t, "unknown", time.Second); r.Outcome != Refused || !errors.Is(r.Err, ErrUnknownBucket) {
		t.Fatalf("unknown bucket: %+v", r)
	}
}

func TestFIFOAcrossProxiesWithHandoff(t *testing.T) {
	srv := redistest.Start(t)
	buckets := map[string]BucketConfig{"b1": {Cap: 1}}
	a := newCoord(t, srv, fastConfig("pa", buckets))
	b := newCoord(t, srv, fastConfig("pb", buckets))
	seed(t, srv.Client(), a.cfg, "b1")
	rs := newResults()

	a.Acquire("b1", time.Time{}, rs.cb("a0"))
	first := rs.wait(t, "a0", 2*time.Second)
	order := []struct {
		c    *Coordinator
		name string
	}{{b, "b1"}, {a, "a2"}, {b, "b3"}, {a, "a4"}}
	tickets := map[string]*Ticket{}
	for i, o := range order {
		tickets[o.name] = o.c.Acquire("b1", time.Time{}, rs.cb(o.name))
		eventually(t, 2*time.Second, "queued", func() bool { return zcard(t, srv, a, "b1", keyQueue) == int64(i+1) })
	}
	// a2 withdraws while queued: no callback, its place is skipped.
	if !a.Cancel(tickets["a2"]) {
		t.Fatal("cancel of a queued ticket returned false")
	}
	hold := first.Lease
	var got []string
	for _, name := range []string{"b1", "b3", "a4"} {
		hold.b.c.Release(hold)
		r := rs.wait(t, name, 3*time.Second)
		if r.Outcome != Granted || r.Ticket == 0 {
			t.Fatalf("%s: %+v", name, r)
		}
		got = append(got, name)
		hold = r.Lease
	}
	eq(t, "grant order", got, []string{"b1", "b3", "a4"})
	if _, ok := rs.get("a2"); ok {
		t.Fatal("cancelled ticket got a callback")
	}
	hold.b.c.Release(hold)
	eventually(t, 2*time.Second, "empty at the end", func() bool {
		return zcard(t, srv, a, "b1", keyHolders) == 0 && zcard(t, srv, a, "b1", keyQueue) == 0
	})
}

func TestTimeoutAndCancelAfterGrant(t *testing.T) {
	srv := redistest.Start(t)
	buckets := map[string]BucketConfig{"b1": {Cap: 1}}
	a := newCoord(t, srv, fastConfig("pa", buckets))
	b := newCoord(t, srv, fastConfig("pb", buckets))
	seed(t, srv.Client(), a.cfg, "b1")
	rs := newResults()

	a.Acquire("b1", time.Time{}, rs.cb("hold"))
	hold := rs.wait(t, "hold", 2*time.Second)
	start := time.Now()
	b.Acquire("b1", start.Add(400*time.Millisecond), rs.cb("late"))
	r := rs.wait(t, "late", 3*time.Second)
	if r.Outcome != TimedOut || time.Since(start) < 400*time.Millisecond {
		t.Fatalf("timeout: %+v after %v", r, time.Since(start))
	}
	eventually(t, 2*time.Second, "timed-out waiter left the queue", func() bool { return zcard(t, srv, a, "b1", keyQueue) == 0 })

	// Cancel after the grant was delivered: the lease is released and the
	// slot goes to the next waiter.
	tk := b.Acquire("b1", time.Time{}, rs.cb("w1"))
	eventually(t, 2*time.Second, "w1 queued", func() bool { return zcard(t, srv, a, "b1", keyQueue) == 1 })
	b.Acquire("b1", time.Time{}, rs.cb("w2"))
	eventually(t, 2*time.Second, "w2 queued", func() bool { return zcard(t, srv, a, "b1", keyQueue) == 2 })
	a.Release(hold.Lease)
	if r := rs.wait(t, "w1", 3*time.Second); r.Outcome != Granted {
		t.Fatalf("w1 %+v", r)
	}
	if b.Cancel(tk) {
		t.Fatal("cancel after delivery returned true")
	}
	r = rs.wait(t, "w2", 3*time.Second)
	if r.Outcome != Granted {
		t.Fatalf("w2 %+v", r)
	}
	b.Release(r.Lease)
	eventually(t, 2*time.Second, "all released", func() bool { return zcard(t, srv, a, "b1", keyHolders) == 0 })
}

func TestSetCapRaiseGrantsLowerKillsNothing(t *testing.T) {
	srv := redistest.Start(t)
	c := newCoord(t, srv, fastConfig("p1", map[string]BucketConfig{"b1": {Cap: 1}}))
	seed(t, srv.Client(), c.cfg, "b1")
	rs := newResults()
	c.Acquire("b1", time.Time{}, rs.cb("a"))
	rs.wait(t, "a", 2*time.Second)
	c.Acquire("b1", time.Time{}, rs.cb("b"))
	eventually(t, 2*time.Second, "b queued", func() bool { return zcard(t, srv, c, "b1", keyQueue) == 1 })
	c.SetCap("b1", 2)
	if r := rs.wait(t, "b", 2*time.Second); r.Outcome != Granted {
		t.Fatalf("after raise: %+v", r)
	}
	c.SetCap("b1", 1)
	eventually(t, 2*time.Second, "cap lowered", func() bool { s, _ := c.Snapshot("b1"); return s.Cap == 1 })
	if n := zcard(t, srv, c, "b1", keyHolders); n != 2 {
		t.Fatalf("lowering the cap removed leases: %d held", n)
	}
	c.Acquire("b1", time.Now().Add(500*time.Millisecond), rs.cb("c"))
	if r := rs.wait(t, "c", 2*time.Second); r.Outcome != TimedOut || r.Cap != 1 {
		t.Fatalf("grant above the lowered cap: %+v", r)
	}
	// A proxy that loads its config later sets the fleet's cap (the most recently loaded
	// config wins).
	d := newCoord(t, srv, fastConfig("p2", map[string]BucketConfig{"b1": {Cap: 3}}))
	d.Acquire("b1", time.Now().Add(time.Second), rs.cb("d"))
	if r := rs.wait(t, "d", 2*time.Second); r.Outcome != Granted || r.Cap != 3 {
		t.Fatalf("after a newer config with cap 3: %+v", r)
	}
}

func TestEpochReassertAfterRedisRestart(t *testing.T) {
	srv := redistest.Start(t)
	m := &countMetrics{outcomes: map[string]int{}}
	cfg := fastConfig("p1", map[string]BucketConfig{"b1": {Cap: 2}})
	cfg.Metrics = m
	c := newCoord(t, srv, cfg)
	other := newCoord(t, srv, fastConfig("p2", map[string]BucketConfig{"b1": {Cap: 2}}))
	seed(t, srv.Client(), c.cfg, "b1")
	rs := newResults()
	c.Acquire("b1", time.Time{}, rs.cb("a"))
	c.Acquire("b1", time.Time{}, rs.cb("b"))
	rs.wait(t, "a", 2*time.Second)
	rs.wait(t, "b", 2*time.Second)

	srv.Restart() // persistence off: every key is gone
	// A proxy arriving first must not be granted: the leases come back.
	other.Acquire("b1", time.Now().Add(3*time.Second), rs.cb("x"))
	eventually(t, 3*time.Second, "leases re-asserted", func() bool { return zcard(t, srv, c, "b1", keyHolders) == 2 })
	r := rs.wait(t, "x", 5*time.Second)
	if r.Outcome != TimedOut {
		t.Fatalf("granted over the re-asserted leases: %+v", r)
	}
	m.mu.Lock()
	re := m.reassert
	m.mu.Unlock()
	if re < 2 {
		t.Fatalf("reasserted %d", re)
	}
}

func TestFallbackQuotaThenReconcile(t *testing.T) {
	srv := redistest.Start(t)
	buckets := map[string]BucketConfig{"b1": {Cap: 4}}
	m := &countMetrics{outcomes: map[string]int{}}
	cfgA := fastConfig("pa", buckets)
	cfgA.Metrics = m
	a := newCoord(t, srv, cfgA)
	b := newCoord(t, srv, fastConfig("pb", buckets))
	seed(t, srv.Client(), a.cfg, "b1")
	rs := newResults()
	a.Acquire("b1", time.Time{}, rs.cb("a0"))
	b.Acquire("b1", time.Time{}, rs.cb("b0"))
	rs.wait(t, "a0", 2*time.Second)
	rs.wait(t, "b0", 2*time.Second)
	// Let both see H=2, N=2 (heartbeats run while they hold leases).
	eventually(t, 2*time.Second, "views", func() bool {
		sa, _ := a.Snapshot("b1")
		sb, _ := b.Snapshot("b1")
		return sa.Held == 2 && sa.LiveProxies == 2 && sb.Held == 2 && sb.LiveProxies == 2
	})

	srv.Stop()
	// Quota per proxy = own 1 + floor((4-2)/2) = 2: one more each, no more.
	for _, n := range []string{"a1", "a2"} {
		a.Acquire("b1", time.Now().Add(2*time.Second), rs.cb(n))
	}
	b.Acquire("b1", time.Now().Add(2*time.Second), rs.cb("b1"))
	r1 := rs.wait(t, "a1", 3*time.Second)
	if r1.Outcome != Granted || !r1.Fallback || r1.Err == nil {
		t.Fatalf("a1 %+v", r1)
	}
	if r := rs.wait(t, "b1", 3*time.Second); r.Outcome != Granted || !r.Fallback {
		t.Fatalf("b1 %+v", r)
	}
	if r := rs.wait(t, "a2", 4*time.Second); r.Outcome != TimedOut {
		t.Fatalf("a2 over quota: %+v", r)
	}
	if s, _ := a.Snapshot("b1"); s.Mode != ModeFallback || s.Quota != 2 {
		t.Fatalf("snapshot in outage %+v", s)
	}
	// Recovery (an empty Redis): the fallback leases are re-asserted.
	srv.Restart()
	eventually(t, 5*time.Second, "4 leases re-asserted", func() bool { return zcard(t, srv, a, "b1", keyHolders) == 4 })
	eventually(t, 2*time.Second, "normal mode", func() bool { s, _ := a.Snapshot("b1"); return s.Mode != ModeFallback })
	a.Release(r1.Lease)
	eventually(t, 2*time.Second, "released after recovery", func() bool { return zcard(t, srv, a, "b1", keyHolders) == 3 })
	m.mu.Lock()
	fb := append([]bool(nil), m.fallback...)
	m.mu.Unlock()
	eq(t, "fallback transitions", fb, []bool{true, false})
}

func TestCloseReleasesEverything(t *testing.T) {
	srv := redistest.Start(t)
	cfg := fastConfig("p1", map[string]BucketConfig{"b1": {Cap: 2}})
	cfg.Redis.Addrs = []string{srv.Addr}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	seed(t, srv.Client(), c.cfg, "b1")
	rs := newResults()
	for _, n := range []string{"a", "b", "c"} {
		c.Acquire("b1", time.Time{}, rs.cb(n))
	}
	rs.wait(t, "a", 2*time.Second)
	rs.wait(t, "b", 2*time.Second)
	eventually(t, 2*time.Second, "c queued", func() bool { return zcard(t, srv, c, "b1", keyQueue) == 1 })
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if r := rs.wait(t, "c", time.Second); r.Outcome != Refused || !errors.Is(r.Err, ErrClosed) {
		t.Fatalf("pending at close: %+v", r)
	}
	if h, q := zcard(t, srv, c, "b1", keyHolders), zcard(t, srv, c, "b1", keyQueue); h != 0 || q != 0 {
		t.Fatalf("after close: %d held, %d queued", h, q)
	}
	c.Acquire("b1", time.Time{}, rs.cb("after"))
	if r := rs.wait(t, "after", time.Second); r.Outcome != Refused {
		t.Fatalf("after close: %+v", r)
	}
}

func TestConfigValidateReportsAll(t *testing.T) {
	err := Config{ProxyID: "a:b", Prefix: "x{", LeaseTTL: time.Second, Heartbeat: time.Second,
		Buckets: map[string]BucketConfig{"b": {Cap: -1}}}.Validate()
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"proxy_id", "prefix", "buckets[b].cap", "lease_ttl"} {
		if !contains(err.Error(), want) {
			t.Errorf("missing %q in %v", want, err)
		}
	}
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

// A callback that panics costs that one delivery, not the process (the coordinator runs
// inside Envoy); the coordinator keeps serving.
func TestPanickingCallbackIsContained(t *testing.T) {
	srv := redistest.Start(t)
	var where []string
	var mu sync.Mutex
	cfg := fastConfig("p1", map[string]BucketConfig{"b": {Cap: 2}})
	cfg.OnPanic = func(w string, v any) { mu.Lock(); where = append(where, w); mu.Unlock() }
	c := newCoord(t, srv, cfg)
	seed(t, srv.Client(), c.cfg, "b")
	done := make(chan Result, 1)
	c.Acquire("b", time.Now().Add(5*time.Second), func(Result) { panic("callback bug") })
	c.Acquire("b", time.Now().Add(5*time.Second), func(r Result) { done <- r })
	select {
	case res := <-done:
		if res.Outcome != Granted {
			t.Fatalf("second acquire: %v", res.Outcome)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("coordinator stopped serving after a panicking callback")
	}
	deadline := time.Now().Add(5 * time.Second)
	for c.Panics() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if c.Panics() != 1 || len(where) != 1 || where[0] != "deliver" {
		t.Fatalf("panics=%d where=%v", c.Panics(), where)
	}
}
