package integration

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tdspool/tdspool/deployments/envoyconfig"
	"github.com/tdspool/tdspool/internal/stack"
	"github.com/tdspool/tdspool/tds"
)

type proxyOptions struct {
	redisAddr    string
	cap          int
	queueTimeout string // e.g. "5s"
	maxQueue     int
	backendPort  int
	extra        map[string]any // merged into the filter config
}

type proxy struct {
	envoy    *stack.Envoy
	listener string
}

// startProxy starts one Envoy with tdspool in front of a single bucket "bucket-001".
func startProxy(t *testing.T, o proxyOptions) *proxy {
	t.Helper()
	listenPort, _ := stack.FreePort()
	adminPort, _ := stack.FreePort()
	cfg := map[string]any{
		"listener": map[string]any{"encryption": "OFF_ALLOWED"},
		"buckets": []map[string]any{{"name": "bucket-001", "cluster": "bucket_001",
			"max_connections": o.cap, "queue_timeout": o.queueTimeout, "max_queue": o.maxQueue}},
		"default_bucket": "bucket-001",
		"timeouts":       map[string]any{"backend_handshake_timeout": "2s"},
	}
	if o.redisAddr != "" {
		cfg["redis"] = map[string]any{"addresses": []string{o.redisAddr}, "lease_ttl": "5s", "heartbeat_interval": "1s"}
	}
	for k, v := range o.extra {
		cfg[k] = v
	}
	js, _ := json.Marshal(cfg)
	yaml, err := envoyconfig.Render(envoyconfig.Params{
		ListenerPort: listenPort, AdminPort: adminPort, FilterConfigJSON: string(js),
		Buckets: []envoyconfig.Bucket{{Cluster: "bucket_001", Port: o.backendPort, MaxConnections: 1000}},
	})
	if err != nil {
		t.Fatal(err)
	}
	e, err := stack.StartEnvoy(stack.EnvoyOptions{Config: yaml, AdminPort: adminPort})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		e.Stop()
		if t.Failed() {
			n := 60
			if os.Getenv("TDSPOOL_ENVOY_LOG") != "" {
				n = 100000
			}
			t.Logf("envoy output (tail):\n%s", tailLines(e.Output(), n))
		}
	})
	return &proxy{envoy: e, listener: fmt.Sprintf("127.0.0.1:%d", listenPort)}
}

func startRedis(t *testing.T) *stack.Redis {
	t.Helper()
	r, err := stack.StartRedis(0, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Stop)
	return r
}

func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// TestFleetCapHoldsAcrossTwoEnvoys: two Envoy processes share one Redis; the bucket's cap is 5;
// 40 clients each hold a session for a while. The backend never sees more than 5 sessions at
// once, every client is served (the queue is long enough), the queue grants in ticket order
// across both proxies, and every slot comes back.
func TestFleetCapHoldsAcrossTwoEnvoys(t *testing.T) {
	redis := startRedis(t)
	backend := startBucket(t, "bucket-one")
	const capacity, clients = 5, 40
	proxies := []*proxy{
		startProxy(t, proxyOptions{redisAddr: redis.Addr, cap: capacity, queueTimeout: "20s", maxQueue: 64, backendPort: backend.Port()}),
		startProxy(t, proxyOptions{redisAddr: redis.Addr, cap: capacity, queueTimeout: "20s", maxQueue: 64, backendPort: backend.Port()}),
	}
	// Warm the bucket up (its first grant waits out the coordinator's grace period).
	warm := dialRaw(t, proxies[0].listener)
	if !hasLoginAck(warm.login(t, "app", "")) {
		t.Fatal("warm-up login failed")
	}
	warm.c.Close()
	queue := watchQueue(t, redis.Addr, "bucket-001")

	var peak atomic.Int64
	stop := make(chan struct{})
	var sampler sync.WaitGroup
	sampler.Add(1)
	go func() { // the oracle: sessions the backend holds, sampled continuously
		defer sampler.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if n := int64(backend.OpenConnections()); n > peak.Load() {
				peak.Store(n)
			}
			time.Sleep(time.Millisecond)
		}
	}()

	var wg sync.WaitGroup
	var served, failed, admitted atomic.Int64
	admission := make([]int64, clients) // order in which client i got its LOGINACK
	for i := 0; i < clients; i++ {
		wg.Add(1)
		// Staggered starts give the queue a known arrival order across both proxies.
		time.Sleep(15 * time.Millisecond)
		go func(i int) {
			defer wg.Done()
			p := proxies[i%2]
			c, err := net.Dial("tcp", p.listener)
			if err != nil {
				failed.Add(1)
				return
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(40 * time.Second))
			rc := &rawClient{c: c}
			if evs := rc.loginNoFatal("app", ""); !hasLoginAck(evs) {
				if m, ok := firstError(evs); ok {
					t.Logf("client %d refused: %d %s", i, m.Number, m.Text)
				} else {
					t.Logf("client %d: login failed without an error token (%d events)", i, len(evs))
				}
				failed.Add(1)
				return
			}
			admission[i] = admitted.Add(1)
			time.Sleep(150 * time.Millisecond) // hold the session
			served.Add(1)
		}(i)
	}
	wg.Wait()
	close(stop)
	sampler.Wait()
	if got := peak.Load(); got > capacity {
		t.Fatalf("backend saw %d concurrent sessions, cap is %d", got, capacity)
	}
	if served.Load() != clients {
		t.Fatalf("served %d of %d clients (%d failed)", served.Load(), clients, failed.Load())
	}
	// Fairness, at the queue: tickets against grants, both read from Redis. The clients' own
	// order (start order against LOGINACK order) is logged only: it also measures how soon
	// each Envoy got to enqueue a client and how long the backend login took after the grant.
	clientInversions := 0
	for i := 0; i < clients; i++ {
		for j := i + 1; j < clients; j++ {
			if admission[i] > admission[j] {
				clientInversions++
			}
		}
	}
	inv, pairs, queued := queue.inversions()
	t.Logf("peak backend sessions %d (cap %d), %d clients served through 2 Envoys; queue: %d of %d pairs of the %d queued clients granted out of ticket order (%d Redis polls); client-side order: %d of %d pairs",
		peak.Load(), capacity, served.Load(), inv, pairs, queued, queue.polls, clientInversions, clients*(clients-1)/2)
	if queued < clients/2 {
		t.Errorf("only %d clients seen queued and granted: the queue was not exercised", queued)
	}
	if inv > 0 {
		t.Errorf("queue not FIFO: %d of %d pairs granted out of ticket order", inv, pairs)
	}
	for _, p := range proxies {
		waitStat(t, p.envoy, "tdspool.connections_active", 0)
		stats, _ := p.envoy.Stats()
		g, r := stats["tdspool.bucket.bucket-001.slot_granted_total"], stats["tdspool.bucket.bucket-001.slot_released_total"]
		if g != r || g == 0 {
			t.Errorf("slots granted %d, released %d", g, r)
		}
	}
}

func TestPoolExhaustedErrorReachesTheClient(t *testing.T) {
	redis := startRedis(t)
	backend := startBucket(t, "bucket-one")
	p := startProxy(t, proxyOptions{redisAddr: redis.Addr, cap: 1, queueTimeout: "0.3s", backendPort: backend.Port()})

	// The bucket is new to this Redis: its first grants wait out the coordinator's grace
	// period (see "Data loss" in the coordinator's package comment), longer than this test's queue timeout. Retry until admitted.
	var holder *rawClient
	for deadline := time.Now().Add(10 * time.Second); ; {
		holder = dialRaw(t, p.listener)
		if hasLoginAck(holder.login(t, "app", "")) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("first login never admitted")
		}
		time.Sleep(100 * time.Millisecond)
	}
	before, _ := p.envoy.Stats()
	start := time.Now()
	waiter := dialRaw(t, p.listener)
	evs := waiter.login(t, "app", "")
	msg, ok := firstError(evs)
	if !ok || hasLoginAck(evs) {
		t.Fatalf("want a login error, got %v", evs)
	}
	if msg.Number != 10928 || msg.Class != 20 || !strings.Contains(msg.Text, "pool exhausted for bucket 'bucket-001' (cap 1 connections)") {
		t.Fatalf("error = %d/%d %q", msg.Number, msg.Class, msg.Text)
	}
	if waited := time.Since(start); waited < 250*time.Millisecond {
		t.Fatalf("refused after %s, before the queue timeout", waited)
	}
	waiter.expectClosed(t)
	t.Logf("client saw: %d %q", msg.Number, msg.Text)
	holder.c.Close()
	waitStat(t, p.envoy, "tdspool.connections_active", 0)
	stats, _ := p.envoy.Stats()
	timedOut := stats["tdspool.bucket.bucket-001.slot_timed_out_total"] - before["tdspool.bucket.bucket-001.slot_timed_out_total"]
	if timedOut != 1 || stats["tdspool.bucket.bucket-001.slot_released_total"] != stats["tdspool.bucket.bucket-001.slot_granted_total"] {
		t.Fatalf("stats: timed_out=%d granted=%d released=%d", timedOut, stats["tdspool.bucket.bucket-001.slot_granted_total"],
			stats["tdspool.bucket.bucket-001.slot_released_total"])
	}
}

func TestBackendDownGivesBackendUnavailable(t *testing.T) {
	deadPort, _ := stack.FreePort() // nothing listens here
	p := startProxy(t, proxyOptions{cap: 2, queueTimeout: "1s", backendPort: deadPort})
	rc := dialRaw(t, p.listener)
	evs := rc.login(t, "app", "")
	msg, ok := firstError(evs)
	if !ok || msg.Number != 40613 || !strings.Contains(msg.Text, "bucket 'bucket-001' is not currently available") {
		t.Fatalf("want 40613 backend unavailable, got %v", evs)
	}
	t.Logf("client saw: %d %q", msg.Number, msg.Text)
	waitStat(t, p.envoy, "tdspool.connections_active", 0)
	stats, _ := p.envoy.Stats()
	if stats["tdspool.bucket.bucket-001.backend_unavailable_total"] != 1 || stats["tdspool.bucket.bucket-001.slot_granted_total"] != 0 {
		t.Fatalf("backend_unavailable=%d granted=%d", stats["tdspool.bucket.bucket-001.backend_unavailable_total"],
			stats["tdspool.bucket.bucket-001.slot_granted_total"])
	}
}

func TestMalformedClientsAreClosedAndEnvoyServesOn(t *testing.T) {
	backend := startBucket(t, "bucket-one")
	p := startProxy(t, proxyOptions{cap: 2, queueTimeout: "1s", backendPort: backend.Port()})
	pre := tds.Prelogin{HasVersion: true, HasEncryption: true, Encryption: tds.EncryptNotSup, HasMARS: true}
	preMsg := tds.AppendPackets(nil, tds.PacketPrelogin, 0, pre.AppendPrelogin(nil), 4096)
	for name, payload := range map[string][]byte{
		"http":             []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
		"bad packet len":   {0x12, 0x01, 0x00, 0x03, 0, 0, 0, 0},
		"truncated login7": append(append([]byte(nil), preMsg...), tds.AppendPackets(nil, tds.PacketLogin7, 0, []byte{0x10, 0, 0, 0, 1, 2}, 4096)...),
		// VERSION option pointing past the end of the message.
		"garbage prelogin": tds.AppendPackets(nil, tds.PacketPrelogin, 0, []byte{0x00, 0x00, 0x50, 0x00, 0x06, 0xff}, 4096),
	} {
		t.Run(name, func(t *testing.T) {
			rc := dialRaw(t, p.listener)
			if _, err := rc.c.Write(payload); err != nil {
				t.Fatal(err)
			}
			// Drain whatever comes (a PRELOGIN reply for the truncated LOGIN7), then EOF.
			_ = rc.c.SetReadDeadline(time.Now().Add(5 * time.Second))
			buf := make([]byte, 4096)
			for {
				if _, err := rc.c.Read(buf); err != nil {
					if ne, ok := err.(net.Error); ok && ne.Timeout() {
						t.Fatal("connection left open")
					}
					break
				}
			}
		})
	}
	ok := dialRaw(t, p.listener)
	if !hasLoginAck(ok.login(t, "app", "")) {
		t.Fatal("Envoy stopped serving after malformed clients")
	}
	ok.c.Close()
	waitStat(t, p.envoy, "tdspool.connections_active", 0)
	stats, _ := p.envoy.Stats()
	if stats["tdspool.protocol_errors_total"] < 3 || stats["tdspool.bucket.bucket-001.slot_granted_total"] != stats["tdspool.bucket.bucket-001.slot_released_total"] {
		t.Fatalf("protocol_errors=%d granted=%d released=%d", stats["tdspool.protocol_errors_total"],
			stats["tdspool.bucket.bucket-001.slot_granted_total"], stats["tdspool.bucket.bucket-001.slot_released_total"])
	}
	if !strings.Contains(p.envoy.Output(), "closing:") {
		t.Error("no log line for the closed malformed connections")
	}
}

func TestIdleTimeoutIsOffByDefaultAndConfigurable(t *testing.T) {
	backend := startBucket(t, "bucket-one")
	quiet := startProxy(t, proxyOptions{cap: 2, queueTimeout: "1s", backendPort: backend.Port()})
	strict := startProxy(t, proxyOptions{cap: 2, queueTimeout: "1s", backendPort: backend.Port(),
		extra: map[string]any{"timeouts": map[string]any{"idle_timeout": "0.4s"}}})

	kept := dialRaw(t, quiet.listener)
	dropped := dialRaw(t, strict.listener)
	for _, rc := range []*rawClient{kept, dropped} {
		if !hasLoginAck(rc.login(t, "app", "")) {
			t.Fatal("login failed")
		}
	}
	time.Sleep(1200 * time.Millisecond)
	if got := kept.batch(t, "PRINT @@SERVERNAME"); got != "bucket-one" {
		t.Fatalf("idle session without idle_timeout broke: %q", got)
	}
	dropped.expectClosed(t)
	waitStat(t, strict.envoy, "tdspool.connections_active", 0)
}
