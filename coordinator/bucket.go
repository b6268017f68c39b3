package coordinator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// grantInfo is one grant Redis reported for this proxy.
type grantInfo struct {
	id          string
	ticket, seq int64
}

// view is the bucket as the last successful Redis reply described it.
type view struct {
	ok                         bool
	at                         time.Time
	epoch                      string
	held, proxies, cap, queued int
	graceUntil                 time.Time
	state                      State
	capBy, stateBy             string
	capAt, stateAt             time.Time
}

// bucket is one bucket's local state plus its worker goroutine, the only
// goroutine that calls Redis for the bucket. Serialising the calls keeps the
// order that matters: a heartbeat that re-asserts a lease always runs before
// the release that drops it.
type bucket struct {
	c    *Coordinator
	name string
	keys []string
	wake chan struct{}

	mu       sync.Mutex
	cfg      BucketConfig
	capDirty bool
	waitq    []*Ticket          // undecided tickets, arrival (= ticket) order; may hold decided ones until compacted
	byID     map[string]*Ticket // undecided tickets
	held     map[string]*Lease
	drop     map[string]struct{} // ids to remove from Redis (releases, cancels, orphans)
	// owned: leases Redis counts for this proxy as far as we know: added on
	// a Redis grant or a successful re-assert, removed when a release call
	// carrying the id returns, successfully or not (a failed call may have
	// run). It outlives local releases not yet sent, so it is the safe base
	// of the fallback quota.
	owned      map[string]struct{}
	hbDue      bool
	infoDirty  map[string]struct{} // held ids whose holder Redis must hear again (re-assert)
	fs         fleetState          // holder changes and client records for the fleet view (clients.go)
	fallback   bool
	failStreak int
	lastErr    error
	quota      int // fallback quota: leases at entry + share
	share      int // the part of quota taken from free slots
	v          view
}

func newBucket(c *Coordinator, name string, bc BucketConfig) *bucket {
	return &bucket{
		c:     c,
		name:  name,
		keys:  c.cfg.keys(name),
		wake:  make(chan struct{}, 1),
		cfg:   bc,
		byID:  make(map[string]*Ticket),
		held:  make(map[string]*Lease),
		drop:  make(map[string]struct{}),
		owned: make(map[string]struct{}),

		infoDirty: make(map[string]struct{}),
	}
}

func (b *bucket) kick() {
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

func (b *bucket) loop() {
	defer b.c.wg.Done()
	for {
		select {
		case <-b.wake:
			b.c.safely("bucket step", b.step)
		case <-b.c.done:
			b.flushDrops()
			if b.fleetWanted(true) {
				b.syncFleet() // the client records go with the proxy
			}
			return
		}
	}
}

// ---- caller-facing transitions (any goroutine; never call Redis) ----

func (b *bucket) enqueue(t *Ticket) {
	var out []*Ticket
	b.mu.Lock()
	if b.fallback && len(b.byID) >= b.cfg.MaxQueue {
		t.done = true
		t.res = Result{Outcome: QueueFull, Fallback: true, Err: b.lastErr}
		out = append(out, t)
	} else {
		t.needSend = true
		b.waitq = append(b.waitq, t)
		b.byID[t.id] = t
		t.timer = time.AfterFunc(time.Until(t.deadline), func() { b.c.safely("expire", func() { b.expire(t) }) })
	}
	b.mu.Unlock()
	if out != nil {
		go b.deliver(out)
		return
	}
	b.kick()
}

func (b *bucket) expire(t *Ticket) {
	b.mu.Lock()
	if t.done {
		b.mu.Unlock()
		return
	}
	b.finishLocked(t, Result{Outcome: TimedOut, Ticket: t.rticket, Fallback: b.fallback, Err: b.errIfFallback()})
	b.mu.Unlock()
	b.kick()
	b.deliver([]*Ticket{t})
}

func (b *bucket) cancel(t *Ticket) bool {
	b.mu.Lock()
	defer b.kick()
	defer b.mu.Unlock()
	if t.cancelled {
		return false
	}
	t.cancelled = true
	if !t.done {
		t.done = true
		t.timer.Stop()
		delete(b.byID, t.id)
		if t.sent {
			b.drop[t.id] = struct{}{}
		}
		return true
	}
	if t.res.Outcome == Granted {
		b.releaseLocked(t.id)
	}
	return false
}

func (b *bucket) release(id string) {
	b.mu.Lock()
	b.releaseLocked(id)
	b.mu.Unlock()
	b.kick()
}

func (b *bucket) releaseLocked(id string) {
	if _, ok := b.held[id]; ok {
		delete(b.held, id)
		delete(b.infoDirty, id)
		delete(b.fs.holderDirty, id)
		b.drop[id] = struct{}{}
	}
}

func (b *bucket) setPins(l *Lease, pins string) {
	b.mu.Lock()
	if _, ok := b.held[l.id]; ok && l.holder.Pins != pins {
		l.holder.Pins = pins
		fs := b.fleetLocked()
		fs.holderDirty[l.id] = fs.holderDirty[l.id] // keeps a pending restamp
		b.armFleetFlushLocked()
	}
	b.mu.Unlock()
}

// refresh runs a heartbeat now, work or not (operator actions, idle refresh).
func (b *bucket) refresh() {
	b.mu.Lock()
	b.hbDue = true
	b.mu.Unlock()
	b.kick()
}

func (b *bucket) setCap(cap int) {
	b.mu.Lock()
	b.cfg.Cap = cap
	b.capDirty = true
	b.mu.Unlock()
	b.kick()
}

func (b *bucket) heartbeatDue() {
	b.mu.Lock()
	active := len(b.held) > 0 || len(b.byID) > 0 || len(b.drop) > 0 || b.fallback || b.capDirty || len(b.fs.clients) > 0
	b.hbDue = b.hbDue || active
	b.mu.Unlock()
	if active {
		b.kick()
	}
}

// hinted handles a Pub/Sub grant hint. A grant to a waiting ticket is not
// delivered yet: it lives in Redis only for the claim window, so the worker
// claims it first (a heartbeat, which renews it to a full lease and reports
// it granted). A hint for an id no ticket waits for is an orphan: released.
func (b *bucket) hinted(g grantInfo) {
	b.mu.Lock()
	t := b.byID[g.id]
	_, held := b.held[g.id]
	switch {
	case t != nil:
		t.hintSeq = g.seq
		b.hbDue = true
	case !held:
		b.drop[g.id] = struct{}{}
	}
	b.mu.Unlock()
	if t != nil || !held {
		b.kick()
	}
}

// granted applies grants Redis made for this proxy (script replies,
// heartbeat polls). A grant for a ticket already decided (timed out,
// cancelled) is dropped so the slot moves on.
func (b *bucket) granted(gs []grantInfo) {
	var out []*Ticket
	orphan := false
	b.mu.Lock()
	for _, g := range gs {
		if _, ok := b.held[g.id]; ok {
			continue
		}
		if t := b.byID[g.id]; t != nil {
			if g.seq == 0 {
				g.seq = t.hintSeq
			}
			b.finishLocked(t, Result{Outcome: Granted, Ticket: g.ticket, GrantSeq: g.seq})
			out = append(out, t)
			continue
		}
		b.drop[g.id] = struct{}{}
		orphan = true
	}
	b.mu.Unlock()
	if orphan {
		b.kick()
	}
	b.deliver(out)
}

// finishLocked decides t. A Granted result gets its lease here.
func (b *bucket) finishLocked(t *Ticket, r Result) {
	t.done = true
	if t.timer != nil {
		t.timer.Stop()
	}
	delete(b.byID, t.id)
	if r.State == "" && r.Cap == 0 {
		r.State, r.Cap = b.v.state, b.capLocked()
	}
	if r.StateBy == "" && r.State == b.v.state {
		r.StateBy, r.StateAt = b.v.stateBy, b.v.stateAt
	}
	if r.Outcome == Granted {
		l := &Lease{b: b, id: t.id, holder: t.holder, onKill: t.onKill}
		b.held[t.id] = l
		r.Lease = l
		if !r.Fallback {
			b.owned[t.id] = struct{}{}
		}
	} else if t.sent {
		b.drop[t.id] = struct{}{}
	}
	r.Waited = time.Since(t.start)
	t.res = r
}

// capLocked is the enforced cap as last heard, or the configured one.
func (b *bucket) capLocked() int {
	if b.v.ok {
		return b.v.cap
	}
	return b.cfg.Cap
}

func (b *bucket) isFallback() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.fallback
}

func (b *bucket) errIfFallback() error {
	if b.fallback {
		return b.lastErr
	}
	return nil
}

// deliver runs callbacks; called without b.mu.
func (b *bucket) deliver(ts []*Ticket) {
	for _, t := range ts {
		b.c.safely("deliver", func() {
			b.c.metrics.AcquireDone(b.name, t.res.Outcome, t.res.Fallback, t.res.Waited)
			t.cb(t.res)
		})
	}
}

func (b *bucket) snapshot() Snapshot {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := Snapshot{
		Bucket: b.name, Cap: b.cfg.Cap, LocalHeld: len(b.held), LocalQueued: len(b.byID),
		Quota: b.quota, Share: b.share, Epoch: b.v.epoch,
	}
	if b.v.ok {
		s.Cap, s.Held, s.Queued, s.LiveProxies, s.AsOf = b.v.cap, b.v.held, b.v.queued, b.v.proxies, b.v.at
		s.State, s.CapBy, s.CapAt, s.StateBy, s.StateAt = b.v.state, b.v.capBy, b.v.capAt, b.v.stateBy, b.v.stateAt
	}
	switch {
	case b.fallback:
		s.Mode = ModeFallback
	case time.Now().Before(b.v.graceUntil):
		s.Mode = ModeGrace
	}
	return s
}

// ---- the worker ----

// step does the bucket's pending Redis work in a fixed order: cap, releases,
// acquires, heartbeat. After a failed call it probes Redis with the heartbeat
// first; in fallback it probes once per Heartbeat and otherwise admits from
// the local quota.
func (b *bucket) step() {
	b.mu.Lock()
	fb, hb := b.fallback, b.hbDue
	probing := fb || b.failStreak > 0
	b.hbDue = false
	b.compactLocked()
	b.mu.Unlock()
	beat := hb
	defer func() {
		// After the slot work, whatever its outcome: holder changes and client records
		// (renewed, and checked for kills, with every heartbeat). Not while Redis is known
		// to be unreachable, where each call would only wait out its timeout.
		if !b.isFallback() && b.fleetWanted(beat) {
			b.syncFleet()
		}
	}()

	// After a failure only the heartbeat goes out until Redis answers: a
	// release that times out may or may not have run, so each one sent into
	// an outage shrinks the fallback quota (see owned).
	if probing {
		if fb && !hb {
			b.admitLocal()
			return
		}
		if err := b.heartbeat(); err != nil {
			b.fail(err)
			return
		}
		hb = false
	}
	b.mu.Lock()
	capDirty, cap := b.capDirty, b.cfg.Cap
	drops := make([]any, 0, len(b.drop))
	for id := range b.drop {
		drops = append(drops, id)
	}
	b.mu.Unlock()

	if capDirty {
		r, err := b.call("setcap", scriptSetCap, []any{cap, b.c.cfg.ProxyID + " config"})
		if err != nil {
			b.fail(err)
			return
		}
		b.mu.Lock()
		b.capDirty = b.cfg.Cap != cap
		b.mu.Unlock()
		b.absorb(r)
	}
	if len(drops) > 0 {
		r, err := b.call("release", scriptRelease, drops)
		b.mu.Lock()
		for _, id := range drops {
			delete(b.owned, id.(string))
		}
		b.mu.Unlock()
		if err != nil {
			b.fail(err)
			return
		}
		b.mu.Lock()
		for _, id := range drops {
			delete(b.drop, id.(string))
		}
		b.mu.Unlock()
		b.absorb(r)
	}
	if more, err := b.sendAcquires(); err != nil {
		b.fail(err)
		return
	} else if more {
		b.kick()
	}
	if hb {
		if err := b.heartbeat(); err != nil {
			b.fail(err)
		}
	}
}

func (b *bucket) compactLocked() {
	q := b.waitq[:0]
	for _, t := range b.waitq {
		if !t.done {
			q = append(q, t)
		}
	}
	clear(b.waitq[len(q):])
	b.waitq = q
}

// sendAcquires sends up to BatchMax unsent tickets in one script call.
func (b *bucket) sendAcquires() (more bool, err error) {
	b.mu.Lock()
	var batch []*Ticket
	args := []any{b.cfg.MaxQueue, b.c.cfg.WaiterTTL.Milliseconds()}
	for _, t := range b.waitq {
		if t.done || !t.needSend {
			continue
		}
		if len(batch) == b.c.cfg.BatchMax {
			more = true
			break
		}
		t.sent = true
		batch = append(batch, t)
		args = append(args, t.id, max(time.Until(t.deadline).Milliseconds(), 1), b.holderJSON(t.holder))
	}
	b.mu.Unlock()
	if len(batch) == 0 {
		return false, nil
	}
	r, err := b.call("acquire", scriptAcquire, args)
	if err != nil {
		return false, err
	}
	if len(r.status) != 3*len(batch) {
		return false, fmt.Errorf("bucket %s: acquire: %d status fields for %d requests", b.name, len(r.status), len(batch))
	}
	var out []*Ticket
	b.mu.Lock()
	for i, t := range batch {
		code, ticket, g := toInt(r.status[3*i]), toInt(r.status[3*i+1]), toInt(r.status[3*i+2])
		if t.done {
			continue // decided meanwhile; a grant here is dropped by finishLocked's drop entry
		}
		t.needSend = false
		switch code {
		case 1:
			b.finishLocked(t, Result{Outcome: Granted, Ticket: ticket, GrantSeq: g})
			out = append(out, t)
		case 2:
			t.rticket = ticket
		case 3:
			t.sent = false // never entered the queue
			b.finishLocked(t, Result{Outcome: QueueFull})
			out = append(out, t)
		case 4:
			t.sent = false
			st := State(r.state)
			b.finishLocked(t, Result{Outcome: st.outcome(), State: st, Cap: r.cap, StateBy: r.stateBy, StateAt: r.stateAt})
			out = append(out, t)
		}
	}
	b.mu.Unlock()
	b.deliver(out)
	b.absorb(r)
	return more, nil
}

// heartbeat renews every lease, keeps waiters alive and polls for grants.
func (b *bucket) heartbeat() error {
	b.mu.Lock()
	args := []any{b.c.cfg.WaiterTTL.Milliseconds(), len(b.held)}
	heldIDs := make([]string, 0, len(b.held))
	for id, l := range b.held {
		info := ""
		if _, dirty := b.infoDirty[id]; dirty {
			info = b.holderJSON(l.holder)
			delete(b.infoDirty, id)
		}
		args = append(args, id, info)
		heldIDs = append(heldIDs, id)
	}
	for _, t := range b.waitq {
		if !t.done && t.rticket > 0 {
			args = append(args, t.id, t.rticket, max(time.Until(t.deadline).Milliseconds(), 1))
		}
	}
	b.mu.Unlock()
	r, err := b.call("heartbeat", scriptHeartbeat, args)
	if err != nil {
		b.mu.Lock()
		for _, id := range heldIDs {
			if _, ok := b.held[id]; ok {
				b.infoDirty[id] = struct{}{} // may not have been written
			}
		}
		b.mu.Unlock()
		return err
	}
	var killed []func()
	b.mu.Lock()
	for _, id := range heldIDs {
		b.owned[id] = struct{}{}
		if r.reasserted > 0 {
			// Redis had lost some of them (data loss, expiry): their holder
			// records went too.
			if _, ok := b.held[id]; ok {
				b.infoDirty[id] = struct{}{}
			}
		}
	}
	for _, id := range r.kills {
		if l := b.held[id]; l != nil && l.onKill != nil {
			killed = append(killed, l.onKill)
		}
	}
	b.mu.Unlock()
	for _, f := range killed {
		b.c.safely("kill", f)
	}
	b.c.metrics.LeasesRenewed(b.name, r.renewed, r.reasserted)
	gs := make([]grantInfo, 0, len(r.status)/3)
	for i := 0; i+2 < len(r.status); i += 3 {
		id, _ := r.status[i].(string)
		gs = append(gs, grantInfo{id: id, ticket: toInt(r.status[i+1])})
	}
	b.granted(gs)
	b.absorb(r)
	return nil
}

// absorb records a successful reply: the view behind Snapshot and the
// fallback quota, the end of fallback, the grants the pump made for us.
func (b *bucket) absorb(r reply) {
	b.granted(r.mine)
	now := time.Now()
	b.mu.Lock()
	epochChanged := b.v.ok && b.v.epoch != r.epoch
	b.v = view{
		ok: true, at: now, epoch: r.epoch, held: r.held, proxies: r.proxies, cap: r.cap,
		queued: r.queued, graceUntil: now.Add(r.graceLeft), state: State(r.state),
		capBy: r.capBy, capAt: r.capAt, stateBy: r.stateBy, stateAt: r.stateAt,
	}
	var refused []*Ticket
	if st := State(r.state); st.refusing() {
		// Waiting sessions of a draining or disabled bucket are told now
		// rather than at their deadline.
		for _, t := range b.waitq {
			if !t.done {
				b.finishLocked(t, Result{Outcome: st.outcome(), State: st, Cap: r.cap, StateBy: r.stateBy, StateAt: r.stateAt})
				refused = append(refused, t)
			}
		}
	}
	b.failStreak = 0
	left := b.fallback
	b.fallback = false
	if epochChanged {
		b.hbDue = true // re-assert at once rather than at the next tick
	}
	local := len(b.byID)
	b.mu.Unlock()
	b.deliver(refused)
	b.c.metrics.Enforced(b.name, r.cap, State(r.state))
	if left {
		b.c.metrics.FallbackActive(b.name, false)
	}
	if epochChanged {
		b.kick()
	}
	if r.reaped > 0 {
		b.c.metrics.LeasesExpired(b.name, r.reaped)
	}
	b.c.metrics.QueueLength(b.name, local, r.queued)
}

// fail counts a failed call; FallbackAfter in a row switch to the local
// quota. Work stays queued and is retried.
func (b *bucket) fail(err error) {
	b.mu.Lock()
	b.failStreak++
	b.lastErr = err
	entered := false
	if !b.fallback && b.failStreak >= b.c.cfg.FallbackAfter {
		b.fallback = true
		entered = true
		share := 0
		if b.v.ok && b.v.proxies > 0 && time.Since(b.v.at) <= b.c.cfg.LeaseTTL &&
			!time.Now().Before(b.v.graceUntil) && !b.c.cfg.FallbackStrict {
			share = max(0, b.v.cap-b.v.held) / b.v.proxies
		}
		// The leases Redis still counts for us, not our holdings at the last
		// reply (a slot released since then may be counted by another proxy
		// now) nor our holdings now (sessions that ended while the outage
		// was being detected still hold their slots in Redis).
		b.quota = len(b.owned) + share
		b.share = share
	}
	fb := b.fallback
	b.mu.Unlock()
	if entered {
		b.c.metrics.FallbackActive(b.name, true)
	}
	if fb {
		b.admitLocal()
		return
	}
	time.AfterFunc(b.c.cfg.Heartbeat/4, b.kick)
}

// admitLocal grants waiters, oldest first, while this proxy holds fewer
// leases than its fallback quota.
func (b *bucket) admitLocal() {
	var out []*Ticket
	b.mu.Lock()
	if st := b.v.state; b.fallback && st.refusing() {
		for _, t := range b.waitq {
			if !t.done {
				b.finishLocked(t, Result{Outcome: st.outcome(), Fallback: true, Err: b.lastErr})
				out = append(out, t)
			}
		}
	}
	if b.fallback && b.v.state == Serving {
		for _, t := range b.waitq {
			if len(b.held) >= b.quota {
				break
			}
			if t.done {
				continue
			}
			b.finishLocked(t, Result{Outcome: Granted, Fallback: true, Ticket: t.rticket, Err: b.lastErr})
			out = append(out, t)
		}
	}
	b.mu.Unlock()
	b.deliver(out)
}

// flushDrops is Close's last call: remove every dropped id from Redis.
func (b *bucket) flushDrops() {
	b.mu.Lock()
	drops := make([]any, 0, len(b.drop))
	for id := range b.drop {
		drops = append(drops, id)
	}
	b.mu.Unlock()
	if len(drops) == 0 {
		return
	}
	deadline := time.Now().Add(b.c.cfg.CloseTimeout)
	for time.Now().Before(deadline) {
		if _, err := b.call("release", scriptRelease, drops); err == nil {
			return
		}
		time.Sleep(b.c.cfg.CallTimeout)
	}
}

// closeAll ends every undecided ticket with ErrClosed and drops every lease.
func (b *bucket) closeAll() {
	var out []*Ticket
	b.mu.Lock()
	for _, t := range b.waitq {
		if !t.done {
			b.finishLocked(t, Result{Outcome: Refused, Err: ErrClosed})
			out = append(out, t)
		}
	}
	for id := range b.held {
		b.releaseLocked(id)
	}
	for id := range b.fs.clients {
		delete(b.fs.clients, id)
		b.fs.clientGone[id] = struct{}{}
	}
	b.mu.Unlock()
	b.deliver(out)
}

// ---- Redis calls ----

type reply struct {
	epoch                       string
	held, proxies, cap, queued  int
	graceLeft                   time.Duration
	reaped, reasserted, renewed int
	state, capBy, stateBy       string
	capAt, stateAt              time.Time
	mine                        []grantInfo
	status                      []any
	kills                       []string
}

// holderJSON is what Redis stores about a lease's holder.
func (b *bucket) holderJSON(h Holder) string {
	js, err := json.Marshal(holderRecord{Proxy: b.c.cfg.ProxyID, Holder: h})
	if err != nil {
		return "{}"
	}
	return string(js)
}

func (b *bucket) commonArgs() []any {
	cfg := &b.c.cfg
	b.mu.Lock()
	cap := b.cfg.Cap
	b.mu.Unlock()
	return []any{
		cfg.ProxyID, cap, cfg.LeaseTTL.Milliseconds(), cfg.Grace.Milliseconds(),
		cfg.SilenceGap.Milliseconds(), 2 * max(cfg.LeaseTTL, cfg.WaiterTTL).Milliseconds(),
		cfg.MetaTTL.Milliseconds(), cfg.channel(""), b.name, cfg.ClaimTTL.Milliseconds(),
	}
}

// call runs one script with the per-call timeout. go-redis's Script.Run
// sends EVALSHA and falls back to EVAL on NOSCRIPT (restart, failover,
// SCRIPT FLUSH).
func (b *bucket) call(op string, s *redis.Script, args []any) (reply, error) {
	ctx, cancel := context.WithTimeout(context.Background(), b.c.cfg.CallTimeout)
	defer cancel()
	start := time.Now()
	v, err := s.Run(ctx, b.c.rdb, b.keys, append(b.commonArgs(), args...)...).Result()
	var r reply
	if err == nil {
		r, err = parseReply(v)
	}
	if err != nil {
		err = fmt.Errorf("bucket %s: %s: %w", b.name, op, err)
	}
	b.c.metrics.RedisCall(b.name, op, time.Since(start), err)
	return r, err
}

var errReply = errors.New("unexpected script reply")

// msTime reads a Redis-time millisecond stamp (0: never).
func msTime(ms int64) time.Time {
	if ms <= 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms)
}

func parseReply(v any) (reply, error) {
	top, ok := v.([]any)
	if !ok || len(top) != 4 {
		return reply{}, errReply
	}
	h, ok1 := top[0].([]any)
	mine, ok2 := top[1].([]any)
	status, ok3 := top[2].([]any)
	kills, ok4 := top[3].([]any)
	if !ok1 || !ok2 || !ok3 || !ok4 || len(h) != 14 {
		return reply{}, errReply
	}
	str := func(v any) string { s, _ := v.(string); return s }
	r := reply{
		held: int(toInt(h[1])), proxies: int(toInt(h[2])), cap: int(toInt(h[3])),
		queued: int(toInt(h[4])), graceLeft: time.Duration(toInt(h[5])) * time.Millisecond,
		reaped: int(toInt(h[6])), reasserted: int(toInt(h[7])), renewed: int(toInt(h[8])),
		state: str(h[9]), capBy: str(h[10]), capAt: msTime(toInt(h[11])),
		stateBy: str(h[12]), stateAt: msTime(toInt(h[13])),
		status: status,
	}
	for _, k := range kills {
		if id, ok := k.(string); ok {
			r.kills = append(r.kills, id)
		}
	}
	switch e := h[0].(type) {
	case string:
		r.epoch = e
	case int64:
		r.epoch = strconv.FormatInt(e, 10)
	}
	for i := 0; i+2 < len(mine); i += 3 {
		id, _ := mine[i].(string)
		r.mine = append(r.mine, grantInfo{id: id, ticket: toInt(mine[i+1]), seq: toInt(mine[i+2])})
	}
	return r, nil
}
