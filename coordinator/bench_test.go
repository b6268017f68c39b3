package coordinator

import (
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/tdspool/tdspool/internal/redistest"
)

// Benchmarks against a local redis-server (not timed tests):
//
//	go test -run '^$' -bench . -benchtime 2000x ./coordinator/
//
// Each reports p50/p99 of the measured latency as extra metrics.

func reportLatency(b *testing.B, name string, d []time.Duration) {
	if len(d) == 0 {
		return
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	b.ReportMetric(float64(d[len(d)/2].Microseconds()), name+"-p50-µs")
	b.ReportMetric(float64(d[len(d)*99/100].Microseconds()), name+"-p99-µs")
}

func benchCoord(b *testing.B, cap int) (*Coordinator, *redistest.Server) {
	srv := redistest.Start(b)
	cfg := fastConfig("bench", map[string]BucketConfig{"b1": {Cap: cap, MaxQueue: 100000}})
	cfg.QueueTimeout = 30 * time.Second
	cfg.Redis.Addrs = []string{srv.Addr}
	c, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	if err := srv.Client().HSet(b.Context(), c.cfg.keys("b1")[5], "epoch", "1").Err(); err != nil {
		b.Fatal(err)
	}
	return c, srv
}

// BenchmarkAcquireReleaseUncontended: one client, free slots; the acquire
// latency is Acquire → Granted callback (one script round trip).
func BenchmarkAcquireReleaseUncontended(b *testing.B) {
	c, _ := benchCoord(b, 1000)
	lat := make([]time.Duration, 0, b.N)
	done := make(chan Result, 1)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		c.Acquire("b1", time.Time{}, func(r Result) { done <- r })
		r := <-done
		lat = append(lat, time.Since(start))
		if r.Outcome != Granted {
			b.Fatalf("%+v", r)
		}
		c.Release(r.Lease)
	}
	b.StopTimer()
	reportLatency(b, "acquire", lat)
}

// BenchmarkAcquireReleaseParallel: 64 clients, free slots (batching).
func BenchmarkAcquireReleaseParallel(b *testing.B) {
	c, _ := benchCoord(b, 1000)
	var mu sync.Mutex
	lat := make([]time.Duration, 0, b.N)
	b.SetParallelism(32)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		done := make(chan Result, 1)
		for pb.Next() {
			start := time.Now()
			c.Acquire("b1", time.Time{}, func(r Result) { done <- r })
			r := <-done
			d := time.Since(start)
			mu.Lock()
			lat = append(lat, d)
			mu.Unlock()
			c.Release(r.Lease)
		}
	})
	b.StopTimer()
	reportLatency(b, "acquire", lat)
}

// BenchmarkAtCapHandoff: cap 4, 32 clients, so a queue always exists; the
// metric "handoff" pairs each Release, oldest first, with the next grant of
// a queued waiter (each release at cap frees exactly one handoff).
func BenchmarkAtCapHandoff(b *testing.B) {
	c, _ := benchCoord(b, 4)
	var mu sync.Mutex
	var releases []time.Time
	var handoff, wait []time.Duration
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		done := make(chan Result, 1)
		for pb.Next() {
			c.Acquire("b1", time.Time{}, func(r Result) { done <- r })
			r := <-done
			now := time.Now()
			if r.Outcome != Granted {
				b.Errorf("%+v", r)
				return
			}
			mu.Lock()
			wait = append(wait, r.Waited)
			if r.Ticket > 0 && len(releases) > 0 {
				handoff = append(handoff, now.Sub(releases[0]))
				releases = releases[1:]
			}
			releases = append(releases, time.Now())
			mu.Unlock()
			c.Release(r.Lease)
		}
	})
	b.StopTimer()
	reportLatency(b, "handoff", handoff)
	reportLatency(b, "wait", wait)
}

// BenchmarkLeaseSetHolder: what a pooled login or a transaction-mode bind pays to update the
// fleet view (lend, then idle again): a mutex and a map write; Redis is written by the
// bucket's worker at most once per holderFlushDelay, off this path.
func BenchmarkLeaseSetHolder(b *testing.B) {
	c, _ := benchCoord(b, 10)
	done := make(chan Result, 1)
	c.Acquire("b1", time.Time{}, func(r Result) { done <- r })
	r := <-done
	if r.Outcome != Granted {
		b.Fatalf("%+v", r)
	}
	defer c.Release(r.Lease)
	lent := Holder{Client: "127.0.0.1:50000", User: "u", App: "a", Database: "d"}
	idle := Holder{User: "u", App: "a", Database: "d", State: HolderIdle}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r.Lease.SetHolder(lent)
		r.Lease.SetHolder(idle)
	}
}
