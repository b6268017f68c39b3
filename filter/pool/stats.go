package pool

import (
	"slices"
	"time"
)

// counters are kept under the pool's lock.
type counters struct {
	borrowed, returned, created, warmed, loginsSaved, resetFailures uint64
	evictions, discarded, refusedKeys                               uint64
	returnWaits                                                     uint64
	misses                                                          [missCount]uint64
	tainted                                                         [taintCount]uint64
	closedIdleBy                                                    map[string]uint64
	closedOnReturn                                                  map[string]uint64
	wait                                                            Histogram
}

func (c *counters) closedIdle(why string) {
	if c.closedIdleBy == nil {
		c.closedIdleBy = map[string]uint64{}
	}
	c.closedIdleBy[why]++
}

// Stats is a snapshot of one bucket's pool, in plain Go values for the
// filter's metrics to read. Gauges describe the moment of the snapshot;
// counters are cumulative since the pool was created.
type Stats struct {
	// Gauges.
	Idle   int // backends on idle stacks
	Active int // backends lent to clients
	Pooled int // Idle + Active: the slots the pool holds
	Keys   int // keys with a backend or a remembered credential
	// PooledKeys counts the keys holding at least one backend (idle or
	// lent): how many distinct logins the pool serves now.
	PooledKeys int

	// Counters.
	Borrowed      uint64 // idle backends lent to a client
	Returned      uint64 // backends put back on an idle stack
	Created       uint64 // backends adopted after a real login (warm-ups included)
	Warmed        uint64 // of which warm-up logins
	LoginsSaved   uint64 // client logins answered from the pool (reset succeeded)
	ResetFailures uint64 // reused backends whose reset failed (closed, borrow retried)
	Evictions     uint64 // idle backends closed to free a slot for a waiter
	Discarded     uint64 // lent backends closed by the session instead of returned
	RefusedKeys   uint64 // keys forgotten because the server refused their credential
	// Closed counts every backend the pool closed, for any reason: Discarded,
	// Evictions, ClosedIdle and ClosedOnReturn summed.
	Closed uint64
	// ReturnWaits counts clients that found every backend of their key lent
	// out and waited for one to come back (WaitReturn).
	ReturnWaits uint64
	// Misses by reason (index: Miss); Misses[Hit] stays 0.
	Misses []uint64
	// Tainted by reason (index: Taint).
	Tainted []uint64
	// ClosedIdle by reason ("died", "idle_time", "lifetime", "credential",
	// "draining"); ClosedOnReturn likewise plus "tainted", "no_recording".
	ClosedIdle, ClosedOnReturn map[string]uint64
	// BorrowWait is the time from a client's LOGIN7 to its backend being
	// ready, as reported with ObserveBorrowWait.
	BorrowWait Histogram
}

// KeyStats is one key's share of the pool; Key prints with its credential
// redacted.
type KeyStats struct {
	Key          Identity
	Idle, Active int
}

// Stats returns a snapshot.
func (p *Pool[C]) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := p.totals()
	c := &p.stats
	st.Misses, st.Tainted = slices.Clone(c.misses[:]), slices.Clone(c.tainted[:])
	st.ClosedIdle, st.ClosedOnReturn = cloneMap(c.closedIdleBy), cloneMap(c.closedOnReturn)
	st.BorrowWait = c.wait.clone()
	return st
}

// Totals is Stats without the breakdowns by reason and the histogram (nil), and allocates
// nothing: for a reader that runs at every session's end.
func (p *Pool[C]) Totals() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.totals()
}

// totals is Totals with the lock held.
func (p *Pool[C]) totals() Stats {
	c := &p.stats
	pooledKeys := 0
	for _, kp := range p.keys {
		if len(kp.idle) > 0 || kp.active > 0 {
			pooledKeys++
		}
	}
	closed := c.discarded + c.evictions
	for _, n := range c.closedIdleBy {
		closed += n
	}
	for _, n := range c.closedOnReturn {
		closed += n
	}
	return Stats{
		Idle: p.idle, Active: p.active, Pooled: p.idle + p.active, Keys: len(p.keys), PooledKeys: pooledKeys,
		Borrowed: c.borrowed, Returned: c.returned, Created: c.created, Warmed: c.warmed,
		LoginsSaved: c.loginsSaved, ResetFailures: c.resetFailures, Evictions: c.evictions,
		Discarded: c.discarded, RefusedKeys: c.refusedKeys, ReturnWaits: c.returnWaits, Closed: closed,
	}
}

// KeyStats lists every key's idle and active backends.
func (p *Pool[C]) KeyStats() []KeyStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]KeyStats, 0, len(p.keys))
	for id, kp := range p.keys {
		out = append(out, KeyStats{Key: id, Idle: len(kp.idle), Active: kp.active})
	}
	return out
}

// ObserveBorrowWait records how long a client waited for its backend.
func (p *Pool[C]) ObserveBorrowWait(d time.Duration) {
	p.mu.Lock()
	p.stats.wait.Observe(d)
	p.mu.Unlock()
}

func cloneMap(m map[string]uint64) map[string]uint64 {
	out := make(map[string]uint64, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// WaitBounds are the upper bounds of the borrow-wait histogram's buckets;
// a last bucket counts everything above.
var WaitBounds = []time.Duration{
	time.Millisecond, 2 * time.Millisecond, 5 * time.Millisecond, 10 * time.Millisecond,
	25 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond, 250 * time.Millisecond,
	500 * time.Millisecond, time.Second, 2500 * time.Millisecond, 5 * time.Second, 10 * time.Second,
}

// Histogram counts durations in WaitBounds buckets.
type Histogram struct {
	// Counts[i] counts observations <= WaitBounds[i] (and above the bound
	// before); the last element counts those above every bound.
	Counts []uint64
	Count  uint64
	Sum    time.Duration
}

// Observe adds one duration.
func (h *Histogram) Observe(d time.Duration) {
	if h.Counts == nil {
		h.Counts = make([]uint64, len(WaitBounds)+1)
	}
	i, _ := slices.BinarySearch(WaitBounds, d)
	h.Counts[i]++
	h.Count++
	h.Sum += d
}

func (h *Histogram) clone() Histogram {
	return Histogram{Counts: slices.Clone(h.Counts), Count: h.Count, Sum: h.Sum}
}
