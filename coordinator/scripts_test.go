package coordinator

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/tdspool/tdspool/internal/redistest"
)

// scriptRig calls the scripts directly through a bucket of a Coordinator
// whose own goroutines stay idle (its local state is never touched).
type scriptRig struct {
	t *testing.T
	b *bucket
}

func rig(t *testing.T, srv *redistest.Server, proxy string, cap int) scriptRig {
	// The tests drive the scripts by hand with ids the coordinator never acquired. Its
	// Pub/Sub listener must not hear their grant hints: it would release such a grant as
	// unknown, racing the test (seen under load in CI).
	cfg := fastConfig(proxy, map[string]BucketConfig{"b1": {Cap: cap, MaxQueue: 3}})
	cfg.RefreshEvery = time.Hour // no background calls: the test makes every call
	c, err := NewWithClient(cfg, deafRedis{srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return scriptRig{t: t, b: c.bucket("b1")}
}

// deafRedis subscribes to a channel nobody publishes to.
type deafRedis struct{ *redis.Client }

func (d deafRedis) Subscribe(ctx context.Context, _ ...string) *redis.PubSub {
	return d.Client.Subscribe(ctx, "scripts-test-nobody-publishes-here")
}

func (r scriptRig) acquire(ids ...string) (reply, []int64) {
	r.t.Helper()
	args := []any{r.b.cfg.MaxQueue, int64(1000)}
	for _, id := range ids {
		args = append(args, id, int64(5000), `{"proxy":"test"}`)
	}
	rep, err := r.b.call("acquire", scriptAcquire, args)
	if err != nil {
		r.t.Fatal(err)
	}
	codes := make([]int64, len(ids))
	for i := range ids {
		codes[i] = toInt(rep.status[3*i])
	}
	return rep, codes
}

func (r scriptRig) release(ids ...string) (reply, int64) {
	r.t.Helper()
	args := make([]any, len(ids))
	for i, id := range ids {
		args[i] = id
	}
	rep, err := r.b.call("release", scriptRelease, args)
	if err != nil {
		r.t.Fatal(err)
	}
	return rep, toInt(rep.status[0])
}

func (r scriptRig) heartbeat(held []string, waiting ...any) reply {
	r.t.Helper()
	args := []any{int64(1000), len(held)}
	for _, id := range held {
		args = append(args, id, "")
	}
	args = append(args, waiting...)
	rep, err := r.b.call("heartbeat", scriptHeartbeat, args)
	if err != nil {
		r.t.Fatal(err)
	}
	return rep
}

func (r scriptRig) setCap(n int) reply {
	r.t.Helper()
	rep, err := r.b.call("setcap", scriptSetCap, []any{n, "test"})
	if err != nil {
		r.t.Fatal(err)
	}
	return rep
}

func ids(gs []grantInfo) []string {
	var out []string
	for _, g := range gs {
		out = append(out, g.id)
	}
	return out
}

func eq[T comparable](t *testing.T, what string, got, want []T) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: got %v, want %v", what, got, want)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("%s: got %v, want %v", what, got, want)
		}
	}
}

func TestScriptGrantAtCapBoundary(t *testing.T) {
	srv := redistest.Start(t)
	r := rig(t, srv, "p1", 3)
	seed(t, srv.Client(), r.b.c.cfg, "b1")

	rep, codes := r.acquire("p1:1", "p1:2") // cap-1 held after
	eq(t, "codes", codes, []int64{1, 1})
	if rep.held != 2 || rep.cap != 3 {
		t.Fatalf("held %d cap %d", rep.held, rep.cap)
	}
	_, codes = r.acquire("p1:3") // reaches cap
	eq(t, "codes at cap", codes, []int64{1})
	rep, codes = r.acquire("p1:4") // cap+1 queues
	eq(t, "codes over cap", codes, []int64{2})
	if rep.held != 3 || rep.queued != 1 {
		t.Fatalf("held %d queued %d", rep.held, rep.queued)
	}
	// Re-sending ids (a retried call) does not count twice.
	rep, codes = r.acquire("p1:3", "p1:4")
	eq(t, "codes on retry", codes, []int64{1, 2})
	if rep.held != 3 || rep.queued != 1 {
		t.Fatalf("after retry held %d queued %d", rep.held, rep.queued)
	}
	// Queue bound (MaxQueue 3): two more fit, the next is refused at once.
	_, codes = r.acquire("p1:5", "p1:6", "p1:7")
	eq(t, "codes at max queue", codes, []int64{2, 2, 3})
}

func TestScriptReleaseIdempotentAndHandoff(t *testing.T) {
	srv := redistest.Start(t)
	r := rig(t, srv, "p1", 2)
	seed(t, srv.Client(), r.b.c.cfg, "b1")
	r.acquire("p1:1", "p1:2", "p1:3", "p1:4")

	rep, removed := r.release("p1:1")
	if removed != 1 {
		t.Fatalf("first release removed %d", removed)
	}
	eq(t, "handoff to head", ids(rep.mine), []string{"p1:3"})
	rep, removed = r.release("p1:1")
	if removed != 0 || len(rep.mine) != 0 || rep.held != 2 {
		t.Fatalf("double release: removed %d mine %v held %d", removed, ids(rep.mine), rep.held)
	}
	rep, removed = r.release("nobody:42")
	if removed != 0 || rep.held != 2 || rep.queued != 1 {
		t.Fatalf("unknown id: removed %d held %d queued %d", removed, rep.held, rep.queued)
	}
}

func TestScriptCancelAfterGrantPassesSlotOn(t *testing.T) {
	srv := redistest.Start(t)
	a := rig(t, srv, "pa", 1)
	b := rig(t, srv, "pb", 1)
	seed(t, srv.Client(), a.b.c.cfg, "b1")
	a.acquire("pa:1")
	_, codes := b.acquire("pb:1", "pb:2")
	eq(t, "queued", codes, []int64{2, 2})

	// A's release grants pb:1 to proxy B (published, not in A's reply).
	rep, _ := a.release("pa:1")
	if len(rep.mine) != 0 || rep.held != 1 {
		t.Fatalf("release: mine %v held %d", ids(rep.mine), rep.held)
	}
	// B's client gave up before learning of the grant: cancel is a release,
	// and the slot goes to the next waiter.
	rep, removed := b.release("pb:1")
	if removed != 1 {
		t.Fatalf("cancel after grant removed %d leases", removed)
	}
	eq(t, "next waiter", ids(rep.mine), []string{"pb:2"})
}

func TestScriptLoweredCapStopsGrantsKillsNothing(t *testing.T) {
	srv := redistest.Start(t)
	r := rig(t, srv, "p1", 3)
	seed(t, srv.Client(), r.b.c.cfg, "b1")
	r.acquire("p1:1", "p1:2", "p1:3", "p1:w")
	rep := r.setCap(1)
	if rep.held != 3 || rep.cap != 1 {
		t.Fatalf("after lowering: held %d cap %d", rep.held, rep.cap)
	}
	rep, _ = r.release("p1:1")
	if len(rep.mine) != 0 {
		t.Fatalf("granted %v with 2 held and cap 1", ids(rep.mine))
	}
	rep, _ = r.release("p1:2")
	if len(rep.mine) != 0 {
		t.Fatalf("granted %v with 1 held and cap 1", ids(rep.mine))
	}
	rep, _ = r.release("p1:3")
	eq(t, "grant once drained", ids(rep.mine), []string{"p1:w"})
	// Raising the cap grants at once.
	r.acquire("p1:x", "p1:y")
	rep = r.setCap(3)
	eq(t, "grants on raise", ids(rep.mine), []string{"p1:x", "p1:y"})
}

func TestScriptSurvivesScriptFlush(t *testing.T) {
	srv := redistest.Start(t)
	r := rig(t, srv, "p1", 2)
	rdb := srv.Client()
	seed(t, rdb, r.b.c.cfg, "b1")
	r.acquire("p1:1")
	if err := rdb.ScriptFlush(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	_, codes := r.acquire("p1:2") // EVALSHA gets NOSCRIPT, EVAL follows
	eq(t, "after flush", codes, []int64{1})
	ex, err := rdb.ScriptExists(context.Background(), scriptAcquire.Hash()).Result()
	if err != nil || !ex[0] {
		t.Fatalf("script not cached again: %v %v", ex, err)
	}
}

func TestScriptEpochGraceAfterDataLoss(t *testing.T) {
	srv := redistest.Start(t)
	a := rig(t, srv, "pa", 2)
	b := rig(t, srv, "pb", 2)
	rdb := srv.Client()
	seed(t, rdb, a.b.c.cfg, "b1")
	rep, _ := a.acquire("pa:1", "pa:2")
	oldEpoch := rep.epoch

	if err := rdb.FlushAll(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	// B comes first after the loss: new epoch, grace, no grant although
	// Redis shows 0 held.
	rep, codes := b.acquire("pb:1")
	eq(t, "during grace", codes, []int64{2})
	ticket := toInt(rep.status[1])
	if rep.epoch == oldEpoch || rep.graceLeft <= 0 {
		t.Fatalf("epoch %q (old %q), grace left %v", rep.epoch, oldEpoch, rep.graceLeft)
	}
	// A re-asserts its two leases.
	rep = a.heartbeat([]string{"pa:1", "pa:2"})
	if rep.reasserted != 2 || rep.held != 2 {
		t.Fatalf("re-assert: reasserted %d held %d", rep.reasserted, rep.held)
	}
	// After grace, B still waits: the re-asserted leases fill the cap.
	time.Sleep(rep.graceLeft + 50*time.Millisecond)
	rep = b.heartbeat(nil, "pb:1", ticket, int64(5000))
	if len(rep.status) != 0 || len(rep.mine) != 0 || rep.held != 2 {
		t.Fatalf("after grace: status %v mine %v held %d", rep.status, ids(rep.mine), rep.held)
	}
	rep, _ = a.release("pa:1")
	if rep.held != 2 {
		t.Fatalf("held %d after release + handoff", rep.held)
	}
}

func TestScriptSilenceStartsGraceAndLeasesExpire(t *testing.T) {
	srv := redistest.Start(t)
	r := rig(t, srv, "p1", 1)
	seed(t, srv.Client(), r.b.c.cfg, "b1")
	r.acquire("p1:1", "p1:w")
	cfg := r.b.c.cfg
	// Nobody calls for longer than the lease and the silence gap: the
	// lease's score is past, but the next call starts grace instead of
	// reaping (the owner may only have been cut off).
	time.Sleep(cfg.LeaseTTL + 200*time.Millisecond)
	rep, codes := r.acquire("p1:z")
	if rep.graceLeft <= 0 || rep.reaped != 0 || codes[0] != 2 {
		t.Fatalf("after silence: grace %v reaped %d code %d", rep.graceLeft, rep.reaped, codes[0])
	}
	// The owner does not come back: after grace its lease is reaped. Its
	// waiter p1:w was not renewed either and is gone, so p1:z is served.
	time.Sleep(rep.graceLeft + 50*time.Millisecond)
	rep = r.heartbeat(nil, "p1:z", int64(toInt(rep.status[1])), int64(5000))
	if rep.reaped != 1 {
		t.Fatalf("reaped %d", rep.reaped)
	}
	eq(t, "granted after reap", ids(rep.mine), []string{"p1:z"})
}
