package coordinator

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis is the narrow slice of go-redis the coordinator uses: scripts and
// one Pub/Sub subscription. redis.UniversalClient (single, Sentinel,
// Cluster) satisfies it.
type Redis interface {
	redis.Scripter
	Subscribe(ctx context.Context, channels ...string) *redis.PubSub
}

// Sentinels callers act on (in Result.Err).
var (
	ErrUnknownBucket = errors.New("coordinator: unknown bucket")
	ErrClosed        = errors.New("coordinator: closed")
)

// Outcome is how an acquire ended.
type Outcome uint8

const (
	// Granted: Result.Lease holds a slot; Release it when the session ends.
	Granted Outcome = iota + 1
	// QueueFull: the bucket's queue was at MaxQueue; refused at once.
	QueueFull
	// TimedOut: no slot before the deadline.
	TimedOut
	// Refused: the bucket is unknown or the coordinator is closed (see Err).
	Refused
)

func (o Outcome) String() string {
	switch o {
	case Granted:
		return "granted"
	case QueueFull:
		return "queue_full"
	case TimedOut:
		return "timed_out"
	case Refused:
		return "refused"
	}
	return "outcome(" + strconv.Itoa(int(o)) + ")"
}

// Mode is how a bucket currently decides grants.
type Mode uint8

const (
	// ModeNormal: Redis decides, the cap is exact.
	ModeNormal Mode = iota
	// ModeGrace: Redis lost data or was silent; grants pause while live
	// proxies re-assert their leases.
	ModeGrace
	// ModeFallback: Redis is unreachable from this proxy; the local quota
	// decides.
	ModeFallback
)

func (m Mode) String() string {
	switch m {
	case ModeNormal:
		return "normal"
	case ModeGrace:
		return "grace"
	case ModeFallback:
		return "fallback"
	}
	return "mode(" + strconv.Itoa(int(m)) + ")"
}

// Result is delivered once per Acquire (unless Cancel returned true).
type Result struct {
	Outcome Outcome
	// Lease is the slot when Outcome == Granted.
	Lease *Lease
	// Waited is the time from Acquire to the decision.
	Waited time.Duration
	// Fallback is true when the local fallback quota decided (Redis
	// unreachable); Err then holds the last Redis error.
	Fallback bool
	// Ticket is the fleet-wide queue ticket if the request queued in Redis
	// (0 if granted at once or decided locally).
	Ticket int64
	// GrantSeq numbers grants of a bucket in the order Redis made them
	// (0 when unknown: local grants, grants seen by the heartbeat poll).
	GrantSeq int64
	Err      error
}

// Lease is one held slot. Release it exactly when the session ends; more
// calls are no-ops.
type Lease struct {
	b  *bucket
	id string
}

// ID is the lease id in Redis ("<proxyId>:<n>").
func (l *Lease) ID() string { return l.id }

// Bucket is the lease's bucket.
func (l *Lease) Bucket() string { return l.b.name }

// Ticket is a pending or finished Acquire.
type Ticket struct {
	b        *bucket
	id       string
	cb       func(Result)
	start    time.Time
	deadline time.Time
	timer    *time.Timer

	// Guarded by b.mu.
	done      bool  // decided (result set, callback due or delivered)
	sent      bool  // may exist in Redis (included in a call)
	needSend  bool  // must be (re)sent in an acquire call
	rticket   int64 // Redis ticket once queued there
	hintSeq   int64 // grant sequence from a Pub/Sub hint, until the claim confirms it
	cancelled bool
	res       Result
}

// ID is the request's id, which becomes the lease id when granted.
func (t *Ticket) ID() string { return t.id }

// Coordinator hands out fleet-wide bucket slots. All methods are safe for
// concurrent use and never block on Redis.
type Coordinator struct {
	cfg     Config
	rdb     Redis
	owned   redis.UniversalClient // closed by Close when New built it
	metrics Metrics

	mu      sync.Mutex
	buckets map[string]*bucket

	seq    atomic.Uint64
	panics atomic.Uint64
	closed atomic.Bool
	done   chan struct{}
	wg     sync.WaitGroup
	pubsub *redis.PubSub
}

// New connects to Redis as cfg.Redis says and starts the coordinator.
func New(cfg Config) (*Coordinator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if len(cfg.Redis.Addrs) == 0 {
		return nil, errors.New("coordinator.redis.addrs: at least one address is required")
	}
	cl := redis.NewUniversalClient(cfg.Redis.options(cfg.withDefaults().CallTimeout))
	c, err := NewWithClient(cfg, cl)
	if err != nil {
		cl.Close()
		return nil, err
	}
	c.owned = cl
	return c, nil
}

// NewWithClient starts a coordinator on an existing client (which Close
// leaves open). It does not touch Redis before the first call.
func NewWithClient(cfg Config, rdb Redis) (*Coordinator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	c := &Coordinator{
		cfg:     cfg,
		rdb:     rdb,
		metrics: cfg.Metrics,
		buckets: make(map[string]*bucket),
		done:    make(chan struct{}),
	}
	for name, bc := range cfg.Buckets {
		c.addBucket(name, bc)
	}
	c.pubsub = rdb.Subscribe(context.Background(), cfg.channel(cfg.ProxyID))
	c.wg.Add(2)
	go c.listen()
	go c.tick()
	return c, nil
}

// ProxyID is this proxy's id in lease ids.
func (c *Coordinator) ProxyID() string { return c.cfg.ProxyID }

func (c *Coordinator) addBucket(name string, bc BucketConfig) *bucket {
	b := newBucket(c, name, bc)
	c.buckets[name] = b
	c.wg.Add(1)
	go b.loop()
	return b
}

func (c *Coordinator) bucket(name string) *bucket {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buckets[name]
}

// Acquire asks for a slot in bucket and returns at once. cb is called
// exactly once, from a coordinator goroutine, with the decision: Granted,
// QueueFull, TimedOut (at deadline; zero means now + QueueTimeout) or
// Refused. It is never called from inside Acquire. cb must be cheap (hand the
// result to the caller's own thread) and must not wait for the Coordinator;
// calling Release or Cancel from it is fine.
//
// When Redis is healthy and the bucket has a free slot, the decision takes
// one Redis round trip (concurrent acquires of a bucket share it).
func (c *Coordinator) Acquire(bucket string, deadline time.Time, cb func(Result)) *Ticket {
	now := time.Now()
	if deadline.IsZero() {
		deadline = now.Add(c.cfg.QueueTimeout)
	}
	b := c.bucket(bucket)
	t := &Ticket{b: b, cb: cb, start: now, deadline: deadline}
	if b == nil || b.removed.Load() || c.closed.Load() {
		err := ErrClosed
		if !c.closed.Load() {
			err = fmt.Errorf("bucket %s: %w", bucket, ErrUnknownBucket)
		}
		t.done = true
		t.res = Result{Outcome: Refused, Err: err}
		go cb(t.res)
		return t
	}
	t.id = c.cfg.ProxyID + ":" + strconv.FormatUint(c.seq.Add(1), 36)
	b.enqueue(t)
	return t
}

// Cancel withdraws an Acquire. If the decision was not yet delivered, it
// never will be, any slot granted meanwhile goes to the next waiter, and
// Cancel returns true. If it was already delivered, a granted lease is
// released (as Release does) and Cancel returns false.
func (c *Coordinator) Cancel(t *Ticket) bool {
	if t == nil || t.b == nil {
		return false
	}
	return t.b.cancel(t)
}

// Release returns a lease's slot. Idempotent; safe from any goroutine.
func (c *Coordinator) Release(l *Lease) {
	if l != nil {
		l.b.release(l.id)
	}
}

// SetCap changes a bucket's cap for the whole fleet (stored in Redis, last
// writer wins; retried until Redis takes it). Raising it grants queued
// waiters at once; lowering it removes no lease, grants stop until the count
// drains below the new cap. An unknown bucket is added.
func (c *Coordinator) SetCap(bucket string, cap int) {
	c.mu.Lock()
	b := c.buckets[bucket]
	if b == nil {
		b = c.addBucket(bucket, BucketConfig{Cap: cap, MaxQueue: 1000})
	}
	c.mu.Unlock()
	b.setCap(cap)
}

// Reload applies a new bucket table: changed caps go to Redis (SetCap),
// MaxQueue changes apply at once, new buckets are added, and removed buckets
// refuse new acquires while their leases live on until released.
func (c *Coordinator) Reload(buckets map[string]BucketConfig) {
	for name, bc := range buckets {
		if bc.MaxQueue == 0 {
			bc.MaxQueue = 1000
		}
		c.mu.Lock()
		b := c.buckets[name]
		if b == nil {
			c.addBucket(name, bc)
			c.mu.Unlock()
			continue
		}
		c.mu.Unlock()
		b.removed.Store(false)
		b.reconfigure(bc)
	}
	c.mu.Lock()
	for name, b := range c.buckets {
		if _, ok := buckets[name]; !ok {
			b.removed.Store(true)
		}
	}
	c.mu.Unlock()
}

// Snapshot is a bucket's state as this proxy knows it, without a Redis call.
type Snapshot struct {
	Bucket string
	Mode   Mode
	// Cap, Held (leases fleet-wide), Queued (fleet-wide) and LiveProxies
	// come from the last Redis reply (AsOf); Cap is the configured one
	// before any reply.
	Cap, Held, Queued, LiveProxies int
	// LocalHeld and LocalQueued count this proxy's leases and waiters.
	LocalHeld, LocalQueued int
	// Quota is the local fallback quota (meaningful in ModeFallback):
	// the leases held when fallback began plus Share, this proxy's part of
	// the free slots the last reply showed.
	Quota, Share int
	Epoch        string
	AsOf         time.Time
}

// Snapshot returns bucket's state; ok is false for an unknown bucket.
func (c *Coordinator) Snapshot(bucket string) (Snapshot, bool) {
	b := c.bucket(bucket)
	if b == nil {
		return Snapshot{}, false
	}
	return b.snapshot(), true
}

// Close refuses new acquires, ends pending ones with Refused/ErrClosed,
// releases every lease this proxy holds in Redis (bounded by CloseTimeout)
// and stops the coordinator's goroutines.
func (c *Coordinator) Close() error {
	if c.closed.Swap(true) {
		return nil
	}
	c.mu.Lock()
	bs := make([]*bucket, 0, len(c.buckets))
	for _, b := range c.buckets {
		bs = append(bs, b)
	}
	c.mu.Unlock()
	for _, b := range bs {
		b.closeAll()
	}
	close(c.done)
	_ = c.pubsub.Close()
	waited := make(chan struct{})
	go func() { c.wg.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-time.After(c.cfg.CloseTimeout + c.cfg.CallTimeout):
	}
	if c.owned != nil {
		return c.owned.Close()
	}
	return nil
}

// listen turns grant hints from Pub/Sub into claims. Hints are only hints:
// the heartbeat poll finds (and claims) any grant whose message was lost.
func (c *Coordinator) listen() {
	defer c.wg.Done()
	ch := c.pubsub.Channel()
	for {
		select {
		case <-c.done:
			return
		case msg, ok := <-ch:
			if !ok {
				return
			}
			f := strings.Split(msg.Payload, "\n")
			if len(f) != 4 {
				continue
			}
			if b := c.bucket(f[0]); b != nil {
				c.safely("grant hint", func() {
					b.hinted(grantInfo{id: f[1], ticket: toInt(f[2]), seq: toInt(f[3])})
				})
			}
		}
	}
}

// tick drives heartbeats: every Heartbeat, each bucket with leases, waiters
// or pending work renews them in one call.
func (c *Coordinator) tick() {
	defer c.wg.Done()
	tk := time.NewTicker(c.cfg.Heartbeat)
	defer tk.Stop()
	for {
		select {
		case <-c.done:
			return
		case <-tk.C:
			c.mu.Lock()
			bs := make([]*bucket, 0, len(c.buckets))
			for _, b := range c.buckets {
				bs = append(bs, b)
			}
			c.mu.Unlock()
			for _, b := range bs {
				c.safely("heartbeat", b.heartbeatDue)
			}
		}
	}
}

// recovered is deferred by every coordinator goroutine's unit of work: a bug must cost that
// piece of work, never the process (the coordinator runs inside Envoy).
func (c *Coordinator) recovered(where string) {
	if v := recover(); v != nil {
		c.panics.Add(1)
		if c.cfg.OnPanic != nil {
			c.cfg.OnPanic(where, v)
		}
	}
}

// Panics counts panics recovered in coordinator goroutines.
func (c *Coordinator) Panics() uint64 { return c.panics.Load() }

// safely runs f under recovered.
func (c *Coordinator) safely(where string, f func()) {
	defer c.recovered(where)
	f()
}

// toInt reads an integer that Redis returned as a number or a string.
func toInt(v any) int64 {
	switch x := v.(type) {
	case int64:
		return x
	case string:
		if n, err := strconv.ParseInt(x, 10, 64); err == nil {
			return n
		}
		f, _ := strconv.ParseFloat(x, 64)
		return int64(f)
	}
	return 0
}
