package coordinator

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/tdspool/tdspool/internal/redistest"
)

func TestLoadedConfigCapWinsAndOperatorCap(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	fleet := NewFleet(srv.Client(), "t")
	a := newCoord(t, srv, fastConfig("pa", map[string]BucketConfig{"b1": {Cap: 2}}))
	eventually(t, 3*time.Second, "a's cap in Redis", func() bool {
		bi, _ := fleet.Bucket(ctx, "b1")
		return bi.Cap == 2 && strings.HasPrefix(bi.CapBy, "pa ")
	})
	// A proxy that loads a config later wins, and the other proxy's view
	// follows within its refresh.
	b := newCoord(t, srv, fastConfig("pb", map[string]BucketConfig{"b1": {Cap: 5}}))
	eventually(t, 3*time.Second, "b's cap enforced and seen by a", func() bool {
		bi, _ := fleet.Bucket(ctx, "b1")
		sa, _ := a.Snapshot("b1")
		return bi.Cap == 5 && strings.HasPrefix(bi.CapBy, "pb ") && sa.Cap == 5 && sa.CapBy == bi.CapBy
	})
	_ = b
	// An operator's cap reaches both at once (control channel).
	if err := fleet.SetCap(ctx, "b1", 1, "tester"); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Second, "operator cap seen", func() bool {
		sa, _ := a.Snapshot("b1")
		sb, _ := b.Snapshot("b1")
		return sa.Cap == 1 && sb.Cap == 1 && sa.CapBy == "tester" && !sa.CapAt.IsZero()
	})
	rs := newResults()
	a.Acquire("b1", time.Time{}, rs.cb("x"))
	x := rs.wait(t, "x", 2*time.Second)
	b.Acquire("b1", time.Now().Add(400*time.Millisecond), rs.cb("y"))
	if r := rs.wait(t, "y", 2*time.Second); r.Outcome != TimedOut || r.Cap != 1 {
		t.Fatalf("second acquire under cap 1: %+v", r)
	}
	// Raising grants the queued waiter at once.
	b.Acquire("b1", time.Time{}, rs.cb("z"))
	eventually(t, 2*time.Second, "z queued", func() bool { return zcard(t, srv, a, "b1", keyQueue) == 1 })
	start := time.Now()
	if err := fleet.SetCap(ctx, "b1", 2, "tester"); err != nil {
		t.Fatal(err)
	}
	z := rs.wait(t, "z", 2*time.Second)
	if z.Outcome != Granted || time.Since(start) > 150*time.Millisecond+b.cfg.Heartbeat {
		t.Fatalf("after raising: %+v in %v", z, time.Since(start))
	}
	a.Release(x.Lease)
	b.Release(z.Lease)
}

func TestPauseResumeDrainDisable(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	fleet := NewFleet(srv.Client(), "t")
	c := newCoord(t, srv, fastConfig("p1", map[string]BucketConfig{"b1": {Cap: 2}}))
	seed(t, srv.Client(), c.cfg, "b1")
	rs := newResults()
	c.Acquire("b1", time.Time{}, rs.cb("held"))
	held := rs.wait(t, "held", 2*time.Second)

	// Paused: a free slot is not granted; the request queues.
	if err := fleet.SetState(ctx, "b1", Paused, "tester"); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Second, "paused seen", func() bool { s, _ := c.Snapshot("b1"); return s.State == Paused })
	c.Acquire("b1", time.Time{}, rs.cb("w1"))
	c.Acquire("b1", time.Now().Add(500*time.Millisecond), rs.cb("w-timeout"))
	if r := rs.wait(t, "w-timeout", 2*time.Second); r.Outcome != TimedOut || r.State != Paused {
		t.Fatalf("paused wait: %+v", r)
	}
	if _, ok := rs.get("w1"); ok {
		t.Fatal("granted while paused")
	}
	// Resume: the waiter is granted at once.
	if err := fleet.SetState(ctx, "b1", Serving, "tester"); err != nil {
		t.Fatal(err)
	}
	w1 := rs.wait(t, "w1", time.Second)
	if w1.Outcome != Granted {
		t.Fatalf("after resume: %+v", w1)
	}
	c.Release(w1.Lease)

	// Draining: a waiter is refused when the proxy hears of it, a new request
	// at once; the held lease lives on (renewed).
	c.Release(held.Lease)
	c.Acquire("b1", time.Time{}, rs.cb("h2"))
	c.Acquire("b1", time.Time{}, rs.cb("h3"))
	h2, h3 := rs.wait(t, "h2", time.Second), rs.wait(t, "h3", time.Second)
	c.Acquire("b1", time.Time{}, rs.cb("w2"))
	eventually(t, 2*time.Second, "w2 queued", func() bool { return zcard(t, srv, c, "b1", keyQueue) == 1 })
	if err := fleet.SetState(ctx, "b1", StateDraining, "tester"); err != nil {
		t.Fatal(err)
	}
	if r := rs.wait(t, "w2", time.Second); r.Outcome != Draining {
		t.Fatalf("waiter while draining: %+v", r)
	}
	c.Acquire("b1", time.Time{}, rs.cb("new"))
	if r := rs.wait(t, "new", time.Second); r.Outcome != Draining || r.State != StateDraining {
		t.Fatalf("new while draining: %+v", r)
	}
	time.Sleep(3 * c.cfg.LeaseTTL / 2)
	if n := zcard(t, srv, c, "b1", keyHolders); n != 2 {
		t.Fatalf("held leases while draining: %d, want 2 (renewed)", n)
	}
	c.Release(h2.Lease)
	c.Release(h3.Lease)
	eventually(t, time.Second, "drained", func() bool { return zcard(t, srv, c, "b1", keyHolders) == 0 })

	if err := fleet.SetState(ctx, "b1", StateDisabled, "ops"); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Second, "disabled seen", func() bool { s, _ := c.Snapshot("b1"); return s.State == StateDisabled })
	c.Acquire("b1", time.Time{}, rs.cb("d"))
	if r := rs.wait(t, "d", time.Second); r.Outcome != Disabled {
		t.Fatalf("disabled: %+v", r)
	}
	bi, err := fleet.Bucket(ctx, "b1")
	if err != nil || bi.State != StateDisabled || bi.StateBy != "ops" || bi.StateAt.IsZero() || bi.Held != 0 || bi.Queued != 0 {
		t.Fatalf("fleet view %+v %v", bi, err)
	}
}

func TestHolderRecordProxyTableAndKill(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	fleet := NewFleet(srv.Client(), "t")
	cfg := fastConfig("host-1", map[string]BucketConfig{"b1": {Cap: 1}})
	cfg.Labels = map[string]string{"listener": "sql"}
	c := newCoord(t, srv, cfg)
	seed(t, srv.Client(), c.cfg, "b1")
	rs := newResults()
	killed := make(chan struct{}, 2)
	h := Holder{Client: "127.0.0.1:5000", User: "alice", App: "report", Database: "tenant_a"}
	c.AcquireRequest(Request{Bucket: "b1", Holder: h, OnKill: func() { killed <- struct{}{} }}, rs.cb("a"))
	a := rs.wait(t, "a", 2*time.Second)
	c.AcquireRequest(Request{Bucket: "b1", Holder: Holder{User: "bob"}}, rs.cb("b"))
	eventually(t, 2*time.Second, "b queued", func() bool { return zcard(t, srv, c, "b1", keyQueue) == 1 })

	bi, err := fleet.Bucket(ctx, "b1")
	if err != nil || bi.Held != 1 || bi.Queued != 1 || len(bi.Leases) != 2 {
		t.Fatalf("bucket %+v %v", bi, err)
	}
	l := bi.Leases[0]
	if !l.Held || l.ID != a.Lease.ID() || l.Proxy != "host-1" || l.Holder != h || l.Since.IsZero() || l.Expires.IsZero() {
		t.Fatalf("held lease %+v", l)
	}
	if w := bi.Leases[1]; w.Held || w.Holder.User != "bob" || w.Ticket == 0 {
		t.Fatalf("waiter %+v", w)
	}
	a.Lease.SetPins("transaction")
	eventually(t, 2*time.Second, "pins reach Redis", func() bool {
		bi, _ := fleet.Bucket(ctx, "b1")
		return len(bi.Leases) > 0 && bi.Leases[0].Holder.Pins == "transaction" && bi.Leases[0].Holder.User == "alice"
	})

	ps, err := fleet.Proxies(ctx)
	if err != nil || len(ps) != 1 || ps[0].ID != "host-1" || !ps[0].Alive || ps[0].Labels["listener"] != "sql" ||
		len(ps[0].Buckets) != 1 || ps[0].Buckets[0] != "b1" {
		t.Fatalf("proxies %+v %v", ps, err)
	}

	if err := fleet.Kill(ctx, "b1", "host-1:nope"); err == nil {
		t.Fatal("kill of an unknown lease succeeded")
	}
	if err := fleet.Kill(ctx, "b1", a.Lease.ID()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-killed:
	case <-time.After(time.Second):
		t.Fatal("kill not delivered within a second")
	}
	c.Release(a.Lease)
	b := rs.wait(t, "b", 2*time.Second)
	c.Release(b.Lease)
	eventually(t, 2*time.Second, "records gone with the leases", func() bool {
		bi, _ := fleet.Bucket(ctx, "b1")
		n, _ := srv.Client().HLen(ctx, c.cfg.keys("b1")[keyInfo]).Result()
		return bi.Held == 0 && n == 0
	})
	select {
	case <-killed:
		t.Fatal("kill delivered twice")
	default:
	}
	c.Close()
	ps, _ = fleet.Proxies(ctx)
	if len(ps) != 0 {
		t.Fatalf("closed proxy still in the table: %+v", ps)
	}
}
