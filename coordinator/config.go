package coordinator

import (
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Config configures a Coordinator. Zero durations take the defaults noted on
// each field; Validate reports every problem at once.
type Config struct {
	// Redis says how to reach Redis (ignored by NewWithClient).
	Redis RedisConfig

	// Prefix starts every key and channel name. Default "tdspool".
	// Keys are "<Prefix>:{<bucket>}:<name>", so one bucket's keys share a
	// Redis Cluster hash slot.
	Prefix string

	// ProxyID names this proxy process in lease ids. Default: random, fresh
	// per process, so a restarted proxy never renews a dead one's leases.
	// Must not contain ':' or whitespace.
	ProxyID string

	// Buckets maps a bucket name to its limits. Acquire on a bucket that is
	// not here is refused with ErrUnknownBucket.
	Buckets map[string]BucketConfig

	// QueueTimeout bounds a wait when Acquire gets a zero deadline. Default 30s.
	QueueTimeout time.Duration
	// LeaseTTL is how long a lease lives without renewal. Default 10s.
	// A killed proxy's slots return within LeaseTTL + Heartbeat.
	LeaseTTL time.Duration
	// Heartbeat is the renew / poll period per bucket. Default 1s.
	Heartbeat time.Duration
	// WaiterTTL drops a queued waiter whose proxy stopped renewing it. Default 5s.
	WaiterTTL time.Duration
	// ClaimTTL bounds how long a proxy may go without calling Redis for a
	// bucket and still be granted a slot for one of its queued waiters, and
	// how long such a grant waits to be claimed (the owner claims it at once
	// when the Pub/Sub hint arrives, or at its next heartbeat). It is what
	// keeps a dead proxy's waiters from catching slots. Default Heartbeat +
	// 2 × CallTimeout; at least Heartbeat + CallTimeout.
	ClaimTTL time.Duration
	// Grace pauses grants after Redis lost a bucket's data or after a silence
	// longer than SilenceGap, so that live proxies can re-assert their leases
	// first. Default 5s; must exceed Heartbeat + CallTimeout.
	Grace time.Duration
	// SilenceGap: no call from any proxy for this long while leases exist
	// starts a grace period. Default 3 × Heartbeat (at least 3s).
	SilenceGap time.Duration
	// CallTimeout bounds every Redis call. Default 300ms.
	CallTimeout time.Duration
	// FallbackAfter consecutive failed calls switch a bucket to the local
	// fallback quota. Default 2.
	FallbackAfter int
	// MetaTTL is the lifetime of a bucket's meta hash (cap, epoch) after its
	// last use. Default 24h. When it lapses the next use starts a new epoch
	// (and a grace period), exactly as after data loss.
	MetaTTL time.Duration
	// BatchMax bounds how many acquires one script call carries. Default 128.
	BatchMax int
	// FallbackStrict limits the fallback quota to the leases this proxy
	// holds when Redis becomes unreachable (slots are recycled, none added):
	// the cap then holds through any Redis outage. Default false: each proxy
	// also takes an equal share of the free slots the last reply showed.
	FallbackStrict bool
	// CloseTimeout bounds Close's final releases. Default 2s.
	CloseTimeout time.Duration
	// RefreshEvery: a bucket with no leases, waiters or pending work still
	// calls Redis this often, so that its view (enforced cap, operator state,
	// fleet queue) and the gauges fed from it stay current on an idle proxy.
	// Default 5 × Heartbeat.
	RefreshEvery time.Duration

	// Labels go into this proxy's entry in the fleet's proxy table (for the
	// fleet view): listener, config generation, admin address...
	Labels map[string]string

	// Metrics receives counters and gauges. Default: none.
	Metrics Metrics

	// OnPanic is told about a panic recovered inside a coordinator goroutine (the coordinator
	// runs inside Envoy: a panic must never end the process). Default: ignored, but counted
	// in Coordinator.Panics.
	OnPanic func(where string, v any)
}

// BucketConfig holds one bucket's limits.
type BucketConfig struct {
	// Cap is the fleet-wide number of concurrent slots. It seeds Redis when
	// the bucket has no cap there yet; SetCap overwrites it for the fleet.
	Cap int
	// MaxQueue is the fleet-wide queue length beyond which Acquire is
	// refused at once (also the bound of the local queue in fallback).
	// Default 1000.
	MaxQueue int
}

// RedisConfig maps onto go-redis UniversalOptions: one address for a single
// server, several for Cluster, MasterName for Sentinel.
type RedisConfig struct {
	Addrs      []string
	MasterName string // Sentinel: the monitored master's name
	Cluster    bool   // force Cluster mode with a single seed address
	Username   string // ACL user
	Password   string
	DB         int
	// SentinelUsername and SentinelPassword authenticate to Sentinels.
	SentinelUsername string
	SentinelPassword string
	TLS              *tls.Config
	PoolSize         int
}

func (r RedisConfig) options(callTimeout time.Duration) *redis.UniversalOptions {
	return &redis.UniversalOptions{
		Addrs:            r.Addrs,
		MasterName:       r.MasterName,
		IsClusterMode:    r.Cluster,
		Username:         r.Username,
		Password:         r.Password,
		DB:               r.DB,
		SentinelUsername: r.SentinelUsername,
		SentinelPassword: r.SentinelPassword,
		TLSConfig:        r.TLS,
		PoolSize:         r.PoolSize,
		DialTimeout:      callTimeout,
		ReadTimeout:      callTimeout,
		WriteTimeout:     callTimeout,
		// The coordinator retries on its own schedule; a hidden retry would
		// stretch a call past CallTimeout.
		MaxRetries:            -1,
		ContextTimeoutEnabled: true,
	}
}

// withDefaults returns cfg with zero fields filled in.
func (cfg Config) withDefaults() Config {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	if cfg.Prefix == "" {
		cfg.Prefix = "tdspool"
	}
	if cfg.ProxyID == "" {
		var b [8]byte
		_, _ = rand.Read(b[:])
		cfg.ProxyID = hex.EncodeToString(b[:])
	}
	def(&cfg.QueueTimeout, 30*time.Second)
	def(&cfg.LeaseTTL, 10*time.Second)
	def(&cfg.Heartbeat, time.Second)
	def(&cfg.WaiterTTL, 5*time.Second)
	def(&cfg.Grace, 5*time.Second)
	def(&cfg.SilenceGap, max(3*cfg.Heartbeat, 3*time.Second))
	def(&cfg.CallTimeout, 300*time.Millisecond)
	def(&cfg.ClaimTTL, cfg.Heartbeat+2*cfg.CallTimeout)
	def(&cfg.MetaTTL, 24*time.Hour)
	def(&cfg.CloseTimeout, 2*time.Second)
	def(&cfg.RefreshEvery, 5*cfg.Heartbeat)
	if cfg.FallbackAfter == 0 {
		cfg.FallbackAfter = 2
	}
	if cfg.BatchMax == 0 {
		cfg.BatchMax = 128
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NopMetrics{}
	}
	b := make(map[string]BucketConfig, len(cfg.Buckets))
	for name, bc := range cfg.Buckets {
		if bc.MaxQueue == 0 {
			bc.MaxQueue = 1000
		}
		b[name] = bc
	}
	cfg.Buckets = b
	return cfg
}

// Validate reports every problem in cfg (after defaults), with field paths.
func (cfg Config) Validate() error {
	cfg = cfg.withDefaults()
	var errs []error
	bad := func(field, format string, a ...any) {
		errs = append(errs, fmt.Errorf("coordinator.%s: %s", field, fmt.Sprintf(format, a...)))
	}
	if strings.ContainsAny(cfg.ProxyID, ": \t\r\n") {
		bad("proxy_id", "%q must not contain ':' or whitespace", cfg.ProxyID)
	}
	if strings.ContainsAny(cfg.Prefix, "{}") {
		bad("prefix", "%q must not contain braces (they are the bucket's hash tag)", cfg.Prefix)
	}
	for name, bc := range cfg.Buckets {
		if name == "" || strings.ContainsAny(name, "{}\n") {
			bad("buckets", "name %q must be non-empty without braces or newlines", name)
		}
		if bc.Cap < 0 {
			bad("buckets["+name+"].cap", "must be >= 0, got %d", bc.Cap)
		}
		if bc.MaxQueue < 0 {
			bad("buckets["+name+"].max_queue", "must be >= 0, got %d", bc.MaxQueue)
		}
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"queue_timeout", cfg.QueueTimeout}, {"lease_ttl", cfg.LeaseTTL},
		{"heartbeat", cfg.Heartbeat}, {"waiter_ttl", cfg.WaiterTTL},
		{"grace", cfg.Grace}, {"silence_gap", cfg.SilenceGap},
		{"call_timeout", cfg.CallTimeout}, {"meta_ttl", cfg.MetaTTL},
		{"close_timeout", cfg.CloseTimeout}, {"claim_ttl", cfg.ClaimTTL},
	} {
		if d.v < 0 {
			bad(d.name, "must be positive, got %v", d.v)
		}
	}
	if cfg.LeaseTTL < 2*cfg.Heartbeat {
		bad("lease_ttl", "%v must be at least twice heartbeat (%v)", cfg.LeaseTTL, cfg.Heartbeat)
	}
	if cfg.WaiterTTL < 2*cfg.Heartbeat {
		bad("waiter_ttl", "%v must be at least twice heartbeat (%v)", cfg.WaiterTTL, cfg.Heartbeat)
	}
	if cfg.ClaimTTL < cfg.Heartbeat+cfg.CallTimeout {
		bad("claim_ttl", "%v must be at least heartbeat + call_timeout (%v)", cfg.ClaimTTL, cfg.Heartbeat+cfg.CallTimeout)
	}
	if cfg.Grace <= cfg.Heartbeat+cfg.CallTimeout {
		bad("grace", "%v must exceed heartbeat + call_timeout (%v)", cfg.Grace, cfg.Heartbeat+cfg.CallTimeout)
	}
	if cfg.SilenceGap <= cfg.Heartbeat {
		bad("silence_gap", "%v must exceed heartbeat (%v)", cfg.SilenceGap, cfg.Heartbeat)
	}
	if cfg.MetaTTL < cfg.LeaseTTL {
		bad("meta_ttl", "%v must be at least lease_ttl (%v)", cfg.MetaTTL, cfg.LeaseTTL)
	}
	if cfg.FallbackAfter < 1 {
		bad("fallback_after", "must be >= 1, got %d", cfg.FallbackAfter)
	}
	if cfg.BatchMax < 1 {
		bad("batch_max", "must be >= 1, got %d", cfg.BatchMax)
	}
	return errors.Join(errs...)
}

// keys returns the bucket's keys in script KEYS order.
func (cfg Config) keys(bucket string) []string { return bucketKeys(cfg.Prefix, bucket) }

// Indexes into keys(): the scripts' KEYS order.
const (
	keyHolders = iota
	keyQueue
	keyAlive
	keySeq
	keyProxies
	keyMeta
	keyInfo
	keyKill
)

func bucketKeys(prefix, bucket string) []string {
	p := prefix + ":{" + bucket + "}:"
	return []string{p + "h", p + "q", p + "qa", p + "seq", p + "px", p + "meta", p + "i", p + "kill"}
}

// channel is the Pub/Sub channel on which proxyID hears of its grants.
func (cfg Config) channel(proxyID string) string {
	return cfg.Prefix + ":grant:" + proxyID
}

// controlChannel carries operator actions (a bucket name): every proxy that
// knows the bucket runs its heartbeat at once, so a resumed bucket or a raised
// cap grants queued waiters without waiting for the next tick, and a kill
// reaches its proxy.
func controlChannel(prefix string) string { return prefix + ":control" }

// proxiesKey is the fleet's proxy table (see registerLua).
func proxiesKey(prefix string) string { return prefix + ":proxies" }
