package coordinator

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/tdspool/tdspool/internal/redistest"
)

// fastConfig is a configuration with short timings for tests.
func fastConfig(proxyID string, buckets map[string]BucketConfig) Config {
	return Config{
		Prefix:       "t",
		ProxyID:      proxyID,
		Buckets:      buckets,
		QueueTimeout: 5 * time.Second,
		LeaseTTL:     2 * time.Second,
		Heartbeat:    200 * time.Millisecond,
		WaiterTTL:    time.Second,
		Grace:        600 * time.Millisecond,
		SilenceGap:   time.Second,
		CallTimeout:  250 * time.Millisecond,
	}
}

func newCoord(t *testing.T, srv *redistest.Server, cfg Config) *Coordinator {
	t.Helper()
	cfg.Redis.Addrs = []string{srv.Addr}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// seed marks a bucket as established (an epoch exists), so the first call
// does not start the new-epoch grace period.
func seed(t *testing.T, rdb *redis.Client, cfg Config, bucket string) {
	t.Helper()
	// grace_until 0: a config's cap written before the seed may have started a new epoch.
	if err := rdb.HSet(context.Background(), cfg.withDefaults().keys(bucket)[5], "epoch", "1", "grace_until", "0").Err(); err != nil {
		t.Fatal(err)
	}
}

// results collects callbacks.
type results struct {
	mu  sync.Mutex
	got map[string]Result
	ch  chan Result
}

func newResults() *results { return &results{got: map[string]Result{}, ch: make(chan Result, 1000)} }

func (r *results) cb(name string) func(Result) {
	return func(res Result) {
		r.mu.Lock()
		if _, dup := r.got[name]; dup {
			panic("callback delivered twice for " + name)
		}
		r.got[name] = res
		r.mu.Unlock()
		r.ch <- res
	}
}

func (r *results) get(name string) (Result, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	res, ok := r.got[name]
	return res, ok
}

// wait waits for name's result.
func (r *results) wait(t *testing.T, name string, within time.Duration) Result {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if res, ok := r.get(name); ok {
			return res
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("no result for %s within %v", name, within)
	return Result{}
}

func eventually(t *testing.T, within time.Duration, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("not true within %v: %s", within, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
