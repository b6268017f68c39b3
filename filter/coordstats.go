package filter

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/tdspool/tdspool/coordinator"
	"github.com/tdspool/tdspool/envoy/host"
)

// coordStats collects the coordinator's measurements, which arrive on coordinator
// goroutines, and hands them to Envoy from the next connection callback on a worker: this
// ABI only lets a filter touch stats through a live connection. Counters are flushed as
// deltas, gauges as their latest value. A quiet proxy therefore shows coordinator stats
// late, never wrong.
type coordStats struct {
	f       *Factory
	mu      sync.Mutex // guards each bucket's capShown and stateShown (flush runs on every worker)
	buckets map[string]*coordBucketStats

	redisCalls, redisErrors atomic.Uint64
	capsPublished           atomic.Bool
	releasedOnDestroy       atomic.Uint64
	panics                  atomic.Uint64 // recovered in coordinator goroutines

	latMu     sync.Mutex
	latencies []uint64 // µs, bounded
}

type coordBucketStats struct {
	acquires, renewed, expired atomic.Uint64
	fallback                   atomic.Int64 // 0/1, -1 unknown
	fleetQueue                 atomic.Int64
	cap, state                 atomic.Int64 // as Redis last reported; -1 unknown
	// Slots granted and released outside any session (warm-up logins, the pool closing a
	// backend whose session is long gone): counted in slot_granted/released_total here.
	offSessionGranted, offSessionReleased atomic.Uint64
	capShown, stateShown                  int64 // what the gauges show (flush, under mu)
}

var _ coordinator.Metrics = (*coordStats)(nil)

const maxBufferedLatencies = 4096

func newCoordStats(f *Factory, buckets []string) *coordStats {
	c := &coordStats{f: f, buckets: map[string]*coordBucketStats{}}
	for _, b := range buckets {
		bs := &coordBucketStats{}
		bs.fallback.Store(-1)
		bs.fleetQueue.Store(-1)
		bs.cap.Store(-1)
		bs.state.Store(-1)
		bs.capShown, bs.stateShown = -1, -1
		c.buckets[b] = bs
	}
	return c
}

func (c *coordStats) bucket(name string) *coordBucketStats { return c.buckets[name] }

func (c *coordStats) AcquireDone(bucket string, o coordinator.Outcome, fallback bool, waited time.Duration) {
	if b := c.bucket(bucket); b != nil {
		b.acquires.Add(1)
	}
}

func (c *coordStats) QueueLength(bucket string, local, fleet int) {
	if b := c.bucket(bucket); b != nil {
		b.fleetQueue.Store(int64(fleet))
	}
}

func (c *coordStats) RedisCall(bucket, op string, d time.Duration, err error) {
	c.redisCalls.Add(1)
	if err != nil {
		c.redisErrors.Add(1)
	}
	c.latMu.Lock()
	if len(c.latencies) < maxBufferedLatencies {
		c.latencies = append(c.latencies, uint64(d.Microseconds()))
	}
	c.latMu.Unlock()
}

func (c *coordStats) FallbackActive(bucket string, active bool) {
	if b := c.bucket(bucket); b != nil {
		v := int64(0)
		if active {
			v = 1
		}
		b.fallback.Store(v)
	}
}

func (c *coordStats) LeasesRenewed(bucket string, renewed, reasserted int) {
	if b := c.bucket(bucket); b != nil {
		b.renewed.Add(uint64(renewed))
	}
}

func (c *coordStats) LeasesExpired(bucket string, n int) {
	if b := c.bucket(bucket); b != nil {
		b.expired.Add(uint64(n))
	}
}

// flush moves what accumulated into Envoy stats through conn (worker thread).
func (c *coordStats) flush(conn host.Conn) {
	g := &c.f.stats
	if c.capsPublished.CompareAndSwap(false, true) {
		// Until Redis answers, the configured caps are the best known.
		for _, b := range c.f.buckets {
			conn.SetGauge(b.stats.maxConnections, uint64(b.cfg.MaxConnections))
		}
	}
	c.mu.Lock()
	for name, b := range c.buckets {
		st := &c.f.buckets[name].stats
		if v := b.cap.Load(); v >= 0 && v != b.capShown {
			conn.SetGauge(st.maxConnections, uint64(v))
			b.capShown = v
		}
		if v := b.state.Load(); v >= 0 && v != b.stateShown {
			conn.SetGauge(st.bucketState, uint64(v))
			b.stateShown = v
		}
	}
	c.mu.Unlock()
	if n := c.redisCalls.Swap(0); n > 0 {
		conn.IncCounter(g.redisCalls, n)
	}
	if n := c.redisErrors.Swap(0); n > 0 {
		conn.IncCounter(g.redisErrors, n)
	}
	if n := c.releasedOnDestroy.Swap(0); n > 0 {
		conn.IncCounter(g.releasedOnDestroy, n)
	}
	if n := c.panics.Swap(0); n > 0 {
		conn.IncCounter(g.coordinatorPanics, n)
	}
	c.latMu.Lock()
	lat := c.latencies
	c.latencies = nil
	c.latMu.Unlock()
	for _, us := range lat {
		conn.RecordHistogram(g.redisLatencyUs, us)
	}
	for name, b := range c.buckets {
		st := &c.f.buckets[name].stats
		if n := b.acquires.Swap(0); n > 0 {
			conn.IncCounter(st.coordinatorAcquires, n)
		}
		if n := b.renewed.Swap(0); n > 0 {
			conn.IncCounter(st.leasesRenewed, n)
		}
		if n := b.expired.Swap(0); n > 0 {
			conn.IncCounter(st.leasesExpired, n)
		}
		if n := b.offSessionGranted.Swap(0); n > 0 {
			conn.IncCounter(st.slotGranted, n)
		}
		if n := b.offSessionReleased.Swap(0); n > 0 {
			conn.IncCounter(st.slotReleased, n)
		}
		if v := b.fallback.Swap(-1); v >= 0 {
			conn.SetGauge(st.fallbackActive, uint64(v))
		}
		if v := b.fleetQueue.Swap(-1); v >= 0 {
			conn.SetGauge(st.queueFleet, uint64(v))
		}
	}
}

// Enforced keeps the cap and operator state Redis reported; flush turns them into the
// max_connections and state gauges.
func (c *coordStats) Enforced(bucket string, cap int, state coordinator.State) {
	if b := c.bucket(bucket); b != nil {
		b.cap.Store(int64(cap))
		b.state.Store(int64(stateGauge(state)))
	}
}

// stateGauge is the state gauge's value: 0 serving, 1 paused, 2 draining, 3 disabled.
func stateGauge(s coordinator.State) int {
	switch s {
	case coordinator.Paused:
		return 1
	case coordinator.StateDraining:
		return 2
	case coordinator.StateDisabled:
		return 3
	}
	return 0
}

// countedRelease wraps a slot's release for the pool: the slot outlives the session that
// acquired it, so its release is counted in slot_released_total when it happens, once.
func (c *coordStats) countedRelease(bucket string, release func()) func() {
	var once sync.Once
	b := c.bucket(bucket)
	return func() {
		once.Do(func() {
			release()
			if b != nil {
				b.offSessionReleased.Add(1)
			}
		})
	}
}
