// Command proxysim is one simulated proxy for the coordinator's
// multi-process tests: M clients hammer one bucket through a Coordinator,
// and every granted client holds a TCP connection to the test's oracle for
// as long as it holds the slot, so the oracle counts slots from the clients'
// side. It prints "READY <proxyID>" when started and, after SIGTERM, its
// counters as one JSON line.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tdspool/tdspool/coordinator"
)

// Stats is what proxysim prints at exit.
type Stats struct {
	ProxyID        string `json:"proxy_id"`
	Granted        int64  `json:"granted"`
	Released       int64  `json:"released"`
	FallbackGrants int64  `json:"fallback_grants"`
	TimedOut       int64  `json:"timed_out"`
	QueueFull      int64  `json:"queue_full"`
	Abandoned      int64  `json:"abandoned"`
	Refused        int64  `json:"refused"`
	MaxLateMs      int64  `json:"max_late_ms"` // decision later than the deadline by
	MaxShare       int64  `json:"max_share"`   // largest fallback share seen
	FallbackSeen   bool   `json:"fallback_seen"`
	GraceSeen      bool   `json:"grace_seen"`
	MaxWaitMs      int64  `json:"max_wait_ms"`
	SumWaitMs      int64  `json:"sum_wait_ms"`
}

func main() {
	var (
		addr     = flag.String("redis", "127.0.0.1:6379", "redis address")
		id       = flag.String("id", "", "proxy id (default random)")
		bucket   = flag.String("bucket", "b1", "bucket")
		capN     = flag.Int("cap", 8, "bucket cap")
		clients  = flag.Int("clients", 20, "simulated clients")
		holdMin  = flag.Duration("hold-min", 5*time.Millisecond, "min hold")
		holdMax  = flag.Duration("hold-max", 40*time.Millisecond, "max hold")
		qt       = flag.Duration("queue-timeout", 3*time.Second, "queue timeout")
		lease    = flag.Duration("lease", 0, "lease TTL (0: default)")
		hb       = flag.Duration("heartbeat", 0, "heartbeat (0: default)")
		grace    = flag.Duration("grace", 0, "grace (0: default)")
		waiter   = flag.Duration("waiter-ttl", 0, "waiter TTL (0: default)")
		gap      = flag.Duration("silence-gap", 0, "silence gap (0: default)")
		callTO   = flag.Duration("call-timeout", 0, "Redis call timeout (0: default)")
		abandon  = flag.Float64("abandon", 0, "probability that a client gives up while queued")
		oracle   = flag.String("oracle", "", "oracle address")
		strict   = flag.Bool("strict", false, "FallbackStrict")
		maxQueue = flag.Int("max-queue", 1000, "max queue")
	)
	flag.Parse()
	c, err := coordinator.New(coordinator.Config{
		Redis:          coordinator.RedisConfig{Addrs: []string{*addr}},
		Prefix:         "sim",
		ProxyID:        *id,
		Buckets:        map[string]coordinator.BucketConfig{*bucket: {Cap: *capN, MaxQueue: *maxQueue}},
		QueueTimeout:   *qt,
		LeaseTTL:       *lease,
		Heartbeat:      *hb,
		Grace:          *grace,
		WaiterTTL:      *waiter,
		SilenceGap:     *gap,
		CallTimeout:    *callTO,
		FallbackStrict: *strict,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	st := &Stats{ProxyID: c.ProxyID()}
	fmt.Println("READY", c.ProxyID())

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var maxLate, maxWait, maxShare atomic.Int64
	var fbSeen, graceSeen atomic.Bool
	bump := func(a *atomic.Int64, v int64) {
		for o := a.Load(); v > o && !a.CompareAndSwap(o, v); o = a.Load() {
		}
	}
	go func() { // watch the bucket's mode for the report
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			s, _ := c.Snapshot(*bucket)
			if s.Mode == coordinator.ModeFallback {
				fbSeen.Store(true)
				bump(&maxShare, int64(s.Share))
			}
			if s.Mode == coordinator.ModeGrace {
				graceSeen.Store(true)
			}
		}
	}()
	for i := 0; i < *clients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				done := make(chan coordinator.Result, 1)
				deadline := time.Now().Add(*qt)
				t := c.Acquire(*bucket, deadline, func(r coordinator.Result) { done <- r })
				var r coordinator.Result
				var giveUp <-chan time.Time
				if rand.Float64() < *abandon {
					giveUp = time.After(time.Duration(rand.Int64N(int64(*qt))))
				}
				select {
				case r = <-done:
				case <-giveUp:
					if c.Cancel(t) {
						atomic.AddInt64(&st.Abandoned, 1)
						continue
					}
					r = <-done
					if r.Outcome == coordinator.Granted {
						atomic.AddInt64(&st.Granted, 1)
						atomic.AddInt64(&st.Released, 1) // Cancel released it
					}
					continue
				case <-stop:
					if c.Cancel(t) {
						return
					}
					r = <-done
					if r.Outcome == coordinator.Granted {
						atomic.AddInt64(&st.Granted, 1)
						c.Release(r.Lease)
						atomic.AddInt64(&st.Released, 1)
					}
					return
				}
				bump(&maxLate, time.Since(deadline).Milliseconds())
				switch r.Outcome {
				case coordinator.Granted:
					atomic.AddInt64(&st.Granted, 1)
					if r.Fallback {
						atomic.AddInt64(&st.FallbackGrants, 1)
					}
					bump(&maxWait, r.Waited.Milliseconds())
					atomic.AddInt64(&st.SumWaitMs, r.Waited.Milliseconds())
					hold(*oracle, c.ProxyID(), r, *holdMin+time.Duration(rand.Int64N(int64(*holdMax-*holdMin)+1)))
					c.Release(r.Lease)
					atomic.AddInt64(&st.Released, 1)
				case coordinator.TimedOut:
					atomic.AddInt64(&st.TimedOut, 1)
				case coordinator.QueueFull:
					atomic.AddInt64(&st.QueueFull, 1)
					time.Sleep(10 * time.Millisecond)
				default:
					atomic.AddInt64(&st.Refused, 1)
					time.Sleep(10 * time.Millisecond)
				}
			}
		}()
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	close(stop)
	wg.Wait()
	c.Close()
	st.MaxLateMs, st.MaxWaitMs, st.MaxShare = maxLate.Load(), maxWait.Load(), maxShare.Load()
	st.FallbackSeen, st.GraceSeen = fbSeen.Load(), graceSeen.Load()
	json.NewEncoder(os.Stdout).Encode(st)
}

// hold keeps an oracle connection open while the slot is held. The first
// line tells the oracle who holds it and where the grant sits in Redis's
// order: "<proxy> <ticket> <grantSeq> <fallback>". Before the slot is
// released the client says "R" and waits for the oracle's "ok", so the
// oracle has stopped counting it before anyone else can be granted it.
func hold(oracle, proxy string, r coordinator.Result, d time.Duration) {
	if oracle == "" {
		time.Sleep(d)
		return
	}
	conn, err := net.Dial("tcp", oracle)
	if err != nil {
		fmt.Fprintln(os.Stderr, "oracle:", err)
		time.Sleep(d)
		return
	}
	defer conn.Close()
	fmt.Fprintf(conn, "%s %d %d %t\n", proxy, r.Ticket, r.GrantSeq, r.Fallback)
	time.Sleep(d)
	fmt.Fprintf(conn, "R\n")
	var ack string
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fscanln(conn, &ack); err != nil || ack != "ok" {
		fmt.Fprintln(os.Stderr, "oracle ack:", ack, err)
	}
}
