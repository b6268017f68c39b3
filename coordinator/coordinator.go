package coordinator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
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
	// Draining: an operator is draining the bucket; new sessions are refused
	// (at once, or when the proxy learns of it while they wait).
	Draining
	// Disabled: an operator disabled the bucket; new sessions are refused.
	Disabled
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
	case Draining:
		return "draining"
	case Disabled:
		return "disabled"
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

// State is a bucket's operator state, kept in Redis for the whole fleet and
// set by the fleet view (tdspoolctl) or Fleet.SetState.
type State string

const (
	// Serving: slots are granted up to the cap.
	Serving State = ""
	// Paused: nothing is granted; new requests queue (bounded by their
	// deadline) and are granted in ticket order on resume.
	Paused State = "paused"
	// StateDraining: new requests are refused with Draining; sessions that
	// hold slots go on until they end.
	StateDraining State = "draining"
	// StateDisabled: new requests are refused with Disabled; sessions that
	// hold slots go on (kill ends one).
	StateDisabled State = "disabled"
)

func (s State) String() string {
	if s == Serving {
		return "serving"
	}
	return string(s)
}

// MarshalText names Serving "serving" (JSON and text output).
func (s State) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText reads what MarshalText wrote.
func (s *State) UnmarshalText(b []byte) error {
	st, err := ParseState(string(b))
	if err == nil {
		*s = st
	}
	return err
}

// ParseState reads a state name ("serving" or "" for Serving).
func ParseState(s string) (State, error) {
	switch st := State(strings.ToLower(s)); st {
	case Serving, Paused, StateDraining, StateDisabled:
		return st, nil
	case "serving", "resume", "resumed":
		return Serving, nil
	}
	return "", fmt.Errorf("unknown bucket state %q (serving, paused, draining, disabled)", s)
}

// refusing: the state refuses new requests.
func (s State) refusing() bool { return s == StateDraining || s == StateDisabled }

// outcome is the refusal a refusing state gives.
func (s State) outcome() Outcome {
	if s == StateDisabled {
		return Disabled
	}
	return Draining
}

// Holder says who a lease (or a waiter) is for; it is stored in Redis beside
// the lease for the fleet view. Never put secrets here.
type Holder struct {
	Client   string `json:"client,omitempty"` // client address host:port
	User     string `json:"user,omitempty"`
	App      string `json:"app,omitempty"`
	Database string `json:"db,omitempty"`
	Pins     string `json:"pins,omitempty"` // why the session is pinned, comma separated
	// State is "" while the lease serves a client, HolderIdle while its backend connection
	// waits in a pool (Client is then empty: nobody is using it).
	State string `json:"state,omitempty"`
	// Session is the client record (Client.ID) a transaction-pooled backend serves now.
	Session string `json:"session,omitempty"`
}

// holderRecord is the JSON stored per lease.
type holderRecord struct {
	Proxy string `json:"proxy"`
	Holder
}

// Request is one Acquire with everything the fleet view and operators need.
type Request struct {
	Bucket string
	// Deadline bounds the wait; zero means now + QueueTimeout.
	Deadline time.Time
	Holder   Holder
	// OnKill is called once, on a coordinator goroutine, when an operator
	// kills the granted lease (Fleet.Kill). The owner must end the session
	// and Release the lease. Nil: kills are ignored.
	OnKill func()
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
	// State and Cap are the bucket's operator state and enforced cap as this
	// proxy last heard them from Redis (Cap is the configured one before any
	// reply): what an error text should tell the client.
	State State
	Cap   int
	// StateBy and StateAt say who set State and when (for error texts).
	StateBy string
	StateAt time.Time
	Err     error
}

// Lease is one held slot. Release it exactly when the session ends; more
// calls are no-ops.
type Lease struct {
	b      *bucket
	id     string
	holder Holder
	onKill func()
}

// ID is the lease id in Redis ("<proxyId>:<n>").
func (l *Lease) ID() string { return l.id }

// Bucket is the lease's bucket.
func (l *Lease) Bucket() string { return l.b.name }

// SetPins records why the session is pinned (for the fleet view); Redis hears
// of it at the next heartbeat. Cheap; safe from any goroutine.
func (l *Lease) SetPins(pins string) { l.b.setPins(l, pins) }

// Ticket is a pending or finished Acquire.
type Ticket struct {
	b        *bucket
	id       string
	cb       func(Result)
	holder   Holder
	onKill   func()
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
	started time.Time

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
// leaves open). Its first calls write the configured caps (see SetCap).
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
		started: time.Now(),
	}
	for name, bc := range cfg.Buckets {
		// A config just loaded: its caps win over what Redis holds (the most
		// recently loaded config sets the fleet's cap).
		c.addBucket(name, bc).setCap(bc.Cap)
	}
	c.pubsub = rdb.Subscribe(context.Background(), cfg.channel(cfg.ProxyID), controlChannel(cfg.Prefix))
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
	return c.AcquireRequest(Request{Bucket: bucket, Deadline: deadline}, cb)
}

// AcquireRequest is Acquire with the holder recorded for the fleet view (in
// the same Redis call) and a kill hook.
func (c *Coordinator) AcquireRequest(r Request, cb func(Result)) *Ticket {
	now := time.Now()
	deadline, bucket := r.Deadline, r.Bucket
	if deadline.IsZero() {
		deadline = now.Add(c.cfg.QueueTimeout)
	}
	b := c.bucket(bucket)
	t := &Ticket{b: b, cb: cb, holder: r.Holder, onKill: r.OnKill, start: now, deadline: deadline}
	if b == nil || c.closed.Load() {
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
// writer wins; retried until Redis takes it). New does it for every
// configured bucket: the most recently loaded config sets the fleet's cap. Raising it grants queued
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

// Snapshot is a bucket's state as this proxy knows it, without a Redis call.
type Snapshot struct {
	Bucket string
	Mode   Mode
	// Cap, Held (leases fleet-wide), Queued (fleet-wide) and LiveProxies
	// come from the last Redis reply (AsOf); Cap is the configured one
	// before any reply.
	Cap, Held, Queued, LiveProxies int
	// State is the operator state; CapBy/CapAt and StateBy/StateAt say who
	// set the cap and the state, and when (Redis time).
	State          State
	CapBy, StateBy string
	CapAt, StateAt time.Time
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
	c.unregister()
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
			if msg.Channel == controlChannel(c.cfg.Prefix) {
				if b := c.bucket(msg.Payload); b != nil {
					c.safely("control", b.refresh)
				}
				continue
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
// or pending work renews them in one call, and every RefreshEvery an idle
// bucket calls too, so its view (cap, state, queue) and the gauges fed from
// it stay current. It also keeps this proxy in the fleet's proxy table.
func (c *Coordinator) tick() {
	defer c.wg.Done()
	tk := time.NewTicker(c.cfg.Heartbeat)
	defer tk.Stop()
	c.safely("register", c.register)
	n := 0
	every := max(1, int(c.cfg.RefreshEvery/c.cfg.Heartbeat))
	for {
		select {
		case <-c.done:
			return
		case <-tk.C:
			n++
			c.mu.Lock()
			bs := make([]*bucket, 0, len(c.buckets))
			for _, b := range c.buckets {
				bs = append(bs, b)
			}
			c.mu.Unlock()
			for _, b := range bs {
				if n%every == 0 {
					c.safely("refresh", b.refresh)
				} else {
					c.safely("heartbeat", b.heartbeatDue)
				}
			}
			c.safely("register", c.register)
		}
	}
}

// proxyRecord is this proxy's entry in the fleet's proxy table.
type proxyRecord struct {
	ID          string            `json:"id"`
	Host        string            `json:"host,omitempty"`
	PID         int               `json:"pid"`
	Started     int64             `json:"started_ms"` // proxy clock
	HeartbeatMs int64             `json:"heartbeat_ms"`
	LeaseMs     int64             `json:"lease_ms"`
	Buckets     []string          `json:"buckets"`
	Labels      map[string]string `json:"labels,omitempty"`
}

// register writes this proxy's record (one small script on the fleet's
// proxy table; never in a bucket's path).
func (c *Coordinator) register() {
	host, _ := os.Hostname()
	rec := proxyRecord{ID: c.cfg.ProxyID, Host: host, PID: os.Getpid(), Started: c.started.UnixMilli(),
		HeartbeatMs: c.cfg.Heartbeat.Milliseconds(), LeaseMs: c.cfg.LeaseTTL.Milliseconds(), Labels: c.cfg.Labels}
	c.mu.Lock()
	for name := range c.buckets {
		rec.Buckets = append(rec.Buckets, name)
	}
	c.mu.Unlock()
	sort.Strings(rec.Buckets)
	js, err := json.Marshal(rec)
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.CallTimeout)
	defer cancel()
	_ = scriptRegister.Run(ctx, c.rdb, []string{proxiesKey(c.cfg.Prefix)}, c.cfg.ProxyID, string(js),
		forgetProxyAfter.Milliseconds(), c.cfg.MetaTTL.Milliseconds()).Err()
}

// forgetProxyAfter drops a silent proxy from the proxy table.
const forgetProxyAfter = 10 * time.Minute

func (c *Coordinator) unregister() {
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.CallTimeout)
	defer cancel()
	_ = scriptRegister.Run(ctx, c.rdb, []string{proxiesKey(c.cfg.Prefix)}, c.cfg.ProxyID, "", 0, 0).Err()
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
