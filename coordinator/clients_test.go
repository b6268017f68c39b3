package coordinator

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tdspool/tdspool/internal/redistest"
)

// leaseInfo finds id in the fleet view of bucket b1.
func leaseInfo(t *testing.T, fleet *Fleet, id string) (LeaseInfo, BucketInfo, bool) {
	t.Helper()
	bi, err := fleet.Bucket(context.Background(), "b1")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range bi.Leases {
		if l.ID == id {
			return l, bi, true
		}
	}
	return LeaseInfo{}, bi, false
}

// A lease's holder changes hands (a pooled backend lent to another client, then idle) and its
// pins move, all within a flush delay and well before the next heartbeat; the heartbeat does
// not undo it.
func TestLeaseHolderChangesReachTheFleetView(t *testing.T) {
	srv := redistest.Start(t)
	fleet := NewFleet(srv.Client(), "t")
	cfg := fastConfig("p1", map[string]BucketConfig{"b1": {Cap: 2}})
	cfg.Heartbeat, cfg.LeaseTTL, cfg.WaiterTTL, cfg.Grace, cfg.SilenceGap = time.Second, 5*time.Second, 3*time.Second, 2*time.Second, 4*time.Second
	c := newCoord(t, srv, cfg)
	seed(t, srv.Client(), c.cfg, "b1")
	rs := newResults()
	c.AcquireRequest(Request{Bucket: "b1", Holder: Holder{Client: "10.0.0.1:1000", User: "u", App: "a", Database: "d"}}, rs.cb("x"))
	x := rs.wait(t, "x", 2*time.Second)
	if x.Outcome != Granted {
		t.Fatalf("%+v", x)
	}
	id := x.Lease.ID()
	if l, _, _ := leaseInfo(t, fleet, id); l.Holder.Client != "10.0.0.1:1000" || l.Kind != KindLease {
		t.Fatalf("first holder: %+v", l)
	}
	first, _, _ := leaseInfo(t, fleet, id)
	time.Sleep(20 * time.Millisecond)
	x.Lease.SetHolder(Holder{User: "u", App: "a", Database: "d", State: HolderIdle})
	eventually(t, 500*time.Millisecond, "idle holder", func() bool {
		l, _, _ := leaseInfo(t, fleet, id)
		return l.Holder.State == HolderIdle && l.Holder.Client == "" && l.Since.After(first.Since)
	})
	x.Lease.SetHolder(Holder{Client: "10.0.0.2:2000", User: "u", App: "a", Database: "d"})
	x.Lease.SetPins("transaction")
	eventually(t, 500*time.Millisecond, "borrower's holder with its pins", func() bool {
		l, _, _ := leaseInfo(t, fleet, id)
		return l.Holder.Client == "10.0.0.2:2000" && l.Holder.State == "" && l.Holder.Pins == "transaction"
	})
	time.Sleep(cfg.Heartbeat + 200*time.Millisecond) // a heartbeat in between keeps it
	if l, _, _ := leaseInfo(t, fleet, id); l.Holder.Client != "10.0.0.2:2000" || l.Holder.Pins != "transaction" {
		t.Fatalf("after a heartbeat: %+v", l)
	}
	c.Release(x.Lease)
	x.Lease.SetHolder(Holder{Client: "late"}) // after release: nothing is written
	time.Sleep(3 * holderFlushDelay)
	if _, _, ok := leaseInfo(t, fleet, id); ok {
		t.Fatal("a released lease came back in the fleet view")
	}
}

// Client records: listed with their holder and pins, never counted toward the cap, killed by an
// operator like a lease, removed when the session ends, and gone with a dead proxy.
func TestClientRecordsListKillAndExpire(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	fleet := NewFleet(srv.Client(), "t")
	c := newCoord(t, srv, fastConfig("p1", map[string]BucketConfig{"b1": {Cap: 1}}))
	seed(t, srv.Client(), c.cfg, "b1")
	var killed atomic.Int32
	a := c.AddClient("b1", Holder{Client: "10.0.0.1:1", User: "u"}, func() { killed.Add(1) })
	b := c.AddClient("b1", Holder{Client: "10.0.0.2:2", User: "u"}, func() { t.Error("b killed") })
	if c.AddClient("nope", Holder{}, nil) != nil {
		t.Fatal("a client record for an unknown bucket")
	}
	a.SetPins("prepared")
	eventually(t, time.Second, "two client records", func() bool {
		bi, _ := fleet.Bucket(ctx, "b1")
		return bi.Clients == 2 && bi.PerProxy["p1"].Clients == 2
	})
	rec, bi, _ := leaseInfo(t, fleet, a.ID())
	if rec.Kind != KindClient || rec.Held || rec.Holder.Client != "10.0.0.1:1" || rec.Holder.Pins != "prepared" || rec.Since.IsZero() {
		t.Fatalf("client record %+v", rec)
	}
	if bi.Held != 0 || bi.Queued != 0 {
		t.Fatalf("client records counted as slots: %+v", bi)
	}
	// The cap (1) is untouched by two client records.
	rs := newResults()
	c.Acquire("b1", time.Time{}, rs.cb("slot"))
	if r := rs.wait(t, "slot", 2*time.Second); r.Outcome != Granted {
		t.Fatalf("acquire beside client records: %+v", r)
	} else {
		defer c.Release(r.Lease)
	}
	if err := fleet.Kill(ctx, "b1", a.ID()); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Second, "the kill delivered", func() bool { return killed.Load() == 1 })
	a.Remove()
	eventually(t, time.Second, "the killed client's record removed", func() bool {
		_, _, ok := leaseInfo(t, fleet, a.ID())
		return !ok
	})
	if err := fleet.Kill(ctx, "b1", "p1:cnothing"); err == nil || !strings.Contains(err.Error(), "no lease or client") {
		t.Fatalf("kill of an unknown id: %v", err)
	}
	// Redis loses the hash: the proxy writes its records again.
	srv.Client().Del(ctx, clientKey("t", "b1", "p1"))
	eventually(t, 2*time.Second, "b's record written again", func() bool {
		_, _, ok := leaseInfo(t, fleet, b.ID())
		return ok
	})
	// The proxy goes: its records go with it.
	c.Close()
	eventually(t, 2*time.Second, "records gone with the proxy", func() bool {
		n, _ := srv.Client().Exists(ctx, clientKey("t", "b1", "p1")).Result()
		return n == 0
	})
	if killed.Load() != 1 {
		t.Fatalf("kills delivered: %d", killed.Load())
	}
}
