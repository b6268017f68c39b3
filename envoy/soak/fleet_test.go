package soak

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	mssql "github.com/microsoft/go-mssqldb"
	"github.com/redis/go-redis/v9"

	"github.com/tdspool/tdspool/deployments/envoyconfig"
	"github.com/tdspool/tdspool/internal/stack"
	"github.com/tdspool/tdspool/standin"
)

const (
	bucket        = "bucket-001"
	demoUser      = "demo"
	demoPassword  = "Demo-Passw0rd"
	demoDatabase  = "tenant_a"
	leaseTTL      = 8 * time.Second // the coordinator's default, so reclaim is measured as shipped
	reclaimBound  = 11 * time.Second
	queueTimeout  = 3 * time.Second
	answerSlack   = time.Second // "within queue timeout + 1 s"
	redisCallWait = "0.25s"
)

// long reports whether this is `make soak` (every phase for minutes) rather than the short
// version `make test` runs.
func long() bool { return os.Getenv("TDSPOOL_SOAK") != "" }

func phase(short, soak time.Duration) time.Duration {
	if long() {
		return soak
	}
	return short
}

// backendProc is the stand-in on a fixed port, so it can be killed and started again where
// Envoy's cluster points.
type backendProc struct {
	t    *testing.T
	port int
	dir  string
	// server and database name the instance; empty: the fleet soak's bucket-001 and tenant_a.
	server, database string
	mu               sync.Mutex
	srv              *standin.Server
	peak             int64 // highest session count of earlier incarnations
}

func (b *backendProc) start() {
	b.t.Helper()
	addr := "127.0.0.1:0"
	if b.port != 0 {
		addr = fmt.Sprintf("127.0.0.1:%d", b.port)
	}
	server, database := cmp.Or(b.server, bucket), cmp.Or(b.database, demoDatabase)
	var srv *standin.Server
	var err error
	for i := 0; i < 50; i++ { // the old socket may linger a moment after a kill
		srv, err = standin.New(standin.Config{Addr: addr, ServerName: server, Users: map[string]string{demoUser: demoPassword},
			Databases: []string{database}, DataDir: b.dir, Encryption: standin.EncryptionOptional})
		if err == nil {
			if err = srv.Start(); err == nil {
				break
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		b.t.Fatalf("start the stand-in: %v", err)
	}
	b.mu.Lock()
	b.srv = srv
	b.port = srv.Port()
	b.mu.Unlock()
}

func (b *backendProc) kill() {
	b.mu.Lock()
	srv := b.srv
	b.mu.Unlock()
	b.peak = max(b.peak, srv.Stats().PeakSessions)
	srv.ResetAll() // every session's socket reset, as a crashing server's would be
	srv.Close()
}

func (b *backendProc) current() *standin.Server {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.srv
}

func (b *backendProc) peakSessions() int64 { return max(b.peak, b.current().Stats().PeakSessions) }

// proxyProc is one Envoy of the fleet.
type proxyProc struct {
	id    string
	envoy *stack.Envoy
	port  int
	pid   int
	db    *sql.DB
	alive atomic.Bool
}

type fleet struct {
	t        *testing.T
	redis    *stack.Redis
	redisMu  sync.Mutex
	backend  *backendProc
	proxies  []*proxyProc
	capacity int
}

func (f *fleet) redisAddr() string {
	f.redisMu.Lock()
	defer f.redisMu.Unlock()
	return f.redis.Addr
}

func startFleet(t *testing.T, proxies, capacity int) *fleet {
	t.Helper()
	f := &fleet{t: t, capacity: capacity, backend: &backendProc{t: t, dir: t.TempDir()}}
	r, err := stack.StartRedis(0, nil)
	if err != nil {
		t.Fatal(err)
	}
	f.redis = r
	t.Cleanup(func() {
		f.redisMu.Lock()
		defer f.redisMu.Unlock()
		_ = syscall.Kill(f.redis.Pid(), syscall.SIGCONT)
		f.redis.Stop()
	})
	f.backend.start()
	t.Cleanup(func() { f.backend.current().Close() })
	for i := 1; i <= proxies; i++ {
		f.proxies = append(f.proxies, f.startProxy(fmt.Sprintf("soak-envoy-%d", i)))
	}
	return f
}

func (f *fleet) startProxy(id string) *proxyProc {
	t := f.t
	t.Helper()
	cfg := map[string]any{
		"proxy_id": id,
		"listener": map[string]any{"encryption": "OFF_ALLOWED"},
		"buckets": []map[string]any{{"name": bucket, "cluster": "bucket_001", "max_connections": f.capacity,
			"queue_timeout": fmt.Sprintf("%gs", queueTimeout.Seconds()), "max_queue": 200}},
		"default_bucket": bucket,
		"redis":          map[string]any{"addresses": []string{f.redisAddr()}, "call_timeout": redisCallWait},
	}
	js, _ := json.Marshal(cfg)
	listen, _ := stack.FreePort()
	admin, _ := stack.FreePort()
	yaml, err := envoyconfig.Render(envoyconfig.Params{ListenerPort: listen, AdminPort: admin, FilterConfigJSON: string(js),
		HealthCheckInterval: "1s",
		Buckets:             []envoyconfig.Bucket{{Cluster: "bucket_001", Port: f.backend.port}}})
	if err != nil {
		t.Fatal(err)
	}
	e, err := stack.StartEnvoy(stack.EnvoyOptions{Config: yaml, AdminPort: admin, ComponentLogLevel: envoyLogLevels})
	if err != nil {
		t.Fatal(err)
	}
	p := &proxyProc{id: id, envoy: e, port: listen, pid: e.Pid()}
	p.alive.Store(true)
	connector, err := mssql.NewConnector(fmt.Sprintf(
		"sqlserver://%s:%s@127.0.0.1:%d?database=%s&encrypt=disable&dial+timeout=3&connection+timeout=%d",
		demoUser, demoPassword, listen, demoDatabase, int((queueTimeout + 5*time.Second).Seconds())))
	if err != nil {
		t.Fatal(err)
	}
	connector.Dialer = &tracingDialer{}
	p.db = sql.OpenDB(connector)
	p.db.SetMaxIdleConns(0) // every session is a new connection: connect → query → close
	t.Cleanup(func() {
		p.db.Close()
		e.Stop()
	})
	return p
}

// leases lists the lease ids Redis holds for the bucket.
func (f *fleet) leases(ctx context.Context) ([]string, error) {
	rdb := redis.NewClient(&redis.Options{Addr: f.redisAddr(), DialTimeout: time.Second, ReadTimeout: time.Second})
	defer rdb.Close()
	return rdb.ZRange(ctx, fmt.Sprintf("tdspool:{%s}:h", bucket), 0, -1).Result()
}

// outcome tallies what the clients saw.
type outcome struct {
	mu          sync.Mutex
	served      int64
	byNumber    map[int32]int64
	excused     map[string]int64 // broken by a deliberate kill, by phase
	unexplained []string
	late        []string // answered (served or error) later than queue timeout + 1 s
	failedAddrs []string // client addresses of the unexplained and late sessions
	slowest     time.Duration
	// The slowest PRELOGIN and LOGIN7 answer waits of sessions no kill broke: the filter
	// answers PRELOGIN itself; LOGIN7 waits for a slot and the backend's login.
	slowestPrelogin, slowestLogin time.Duration
}

// add records one session. broken: a deliberate kill happened while it ran, so a failure
// without a TDS error is the kill's doing. startedInKill: it started while something was
// dead, so how long it took says nothing either; a session that merely lived through a kill
// must still be answered within queue timeout + 1 s (a kill resets connections at once).
func (o *outcome) add(err error, took time.Duration, tr *loginTrace, chaos string, broken, startedInKill bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.slowest = max(o.slowest, took)
	if !broken {
		pre, login := tr.waits()
		o.slowestPrelogin, o.slowestLogin = max(o.slowestPrelogin, pre), max(o.slowestLogin, login)
	}
	var me mssql.Error
	switch {
	case err == nil:
		o.served++
	case errors.As(err, &me):
		o.byNumber[me.Number]++
	case broken:
		o.excused[chaos]++
	default:
		if len(o.unexplained) < 20 {
			o.unexplained = append(o.unexplained, fmt.Sprintf("[%s] %v (%s)", chaos, err, tr))
			o.failedAddrs = append(o.failedAddrs, tr.local)
		}
		return
	}
	if took > queueTimeout+answerSlack && !startedInKill && len(o.late) < 20 {
		o.late = append(o.late, fmt.Sprintf("[%s] answered after %s: %v (%s)", chaos, took.Round(time.Millisecond), err, tr))
		o.failedAddrs = append(o.failedAddrs, tr.local)
	}
}

// chaosState is one phase of deliberate failure; excusable failures (a killed Envoy or
// backend breaks the sessions it carried) are told apart from the ones tdspool must answer.
type chaosState struct {
	label     string
	excusable bool
}

// chaosLog is every phase so far, in order. A session is labelled with the phase it started
// in, and excused if any phase it lived through killed something: a login that started while
// Redis restarted and was still waiting when the backend was killed is broken by the kill,
// not by the restart, and is neither the restart's failure nor the next phase's.
type chaosLog struct {
	mu     sync.Mutex
	phases []chaosState
}

func (l *chaosLog) set(c chaosState) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.phases = append(l.phases, c)
}

// now is the index of the current phase.
func (l *chaosLog) now() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.phases) - 1
}

// span labels a session that ran through phases from..to and says whether a kill happened
// meanwhile (broken) and whether it started during one.
func (l *chaosLog) span(from, to int) (label string, broken, startedInKill bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	label = l.phases[from].label
	for i := from; i <= to; i++ {
		if l.phases[i].excusable {
			if i != from {
				label += " (spanning " + l.phases[i].label + ")"
			}
			return label, true, i == from
		}
	}
	return label, false, false
}

// TestFleetSoak: churning clients against three Envoys sharing one Redis and one backend
// while an Envoy is SIGKILLed, Redis is paused, Redis restarts empty and the backend is
// killed and restarted. Oracle: the backend never holds more sessions than the cap; every
// login is served or answered with a TDS error within queue timeout + 1 s (a session a
// deliberate kill broke may end without a TDS error, and one that started during a kill may
// take longer; each is labelled with the phase it started in); the dead Envoy's slots come back within 11 s; at the end no lease
// and no backend session is left and the survivors are ready with no panic.
func TestFleetSoak(t *testing.T) {
	const capacity = 6
	f := startFleet(t, 3, capacity)
	clients := 4 * capacity
	if long() {
		clients = 6 * capacity
	}

	var chaos chaosLog
	chaos.set(chaosState{label: "steady"})
	setChaos := func(label string, excusable bool) {
		chaos.set(chaosState{label: label, excusable: excusable})
		t.Logf("%s phase: %s", time.Now().Format("15:04:05.000"), label)
	}
	out := &outcome{byNumber: map[int32]int64{}, excused: map[string]int64{}}

	// Warm-up: the first grant from a fresh Redis waits out the coordinator's start-up grace.
	for _, p := range f.proxies {
		var err error
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
			if err = session(context.Background(), p.db, 0); err == nil {
				break
			}
		}
		if err != nil {
			t.Fatalf("%s warm-up: %v", p.id, err)
		}
	}

	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var wg sync.WaitGroup
	for w := 0; w < clients; w++ {
		wg.Add(1)
		go func(seed uint64) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, 7))
			for ctx.Err() == nil {
				live := f.live()
				if len(live) == 0 {
					return
				}
				p := live[rng.IntN(len(live))]
				from := chaos.now()
				start := time.Now()
				tctx, tr := withTrace(ctx)
				err := session(tctx, p.db, time.Duration(rng.IntN(150))*time.Millisecond)
				took := time.Since(start)
				if ctx.Err() != nil {
					return
				}
				label, broken, startedInKill := chaos.span(from, chaos.now())
				dead := !p.alive.Load() // its Envoy was the one killed
				out.add(err, took, tr, label, broken || dead, startedInKill || dead)
			}
		}(uint64(w))
	}

	steady := phase(4*time.Second, 20*time.Second)
	time.Sleep(steady)

	// 1. An Envoy dies (SIGKILL): its sessions break; its slots must come back to the fleet.
	victim := f.proxies[len(f.proxies)-1]
	setChaos("envoy SIGKILLed", true)
	victim.alive.Store(false)
	killedAt := time.Now()
	victim.envoy.Kill()
	time.Sleep(time.Second)
	setChaos("reclaiming the dead envoy's slots", false)
	reclaim, reclaimed := f.waitNoLeasesOf(victim.id, killedAt, 20*time.Second)
	time.Sleep(phase(2*time.Second, 10*time.Second))

	// 2. Redis pauses (SIGSTOP): calls time out, the proxies fall back to local quotas.
	setChaos("redis paused", false)
	f.redisMu.Lock()
	_ = syscall.Kill(f.redis.Pid(), syscall.SIGSTOP)
	f.redisMu.Unlock()
	time.Sleep(phase(3*time.Second, 10*time.Second))
	f.redisMu.Lock()
	_ = syscall.Kill(f.redis.Pid(), syscall.SIGCONT)
	f.redisMu.Unlock()
	setChaos("after redis resumed", false)
	time.Sleep(phase(3*time.Second, 10*time.Second))

	// 3. Redis restarts with its data lost.
	setChaos("redis restarted empty", false)
	f.redisMu.Lock()
	port := strings.TrimPrefix(f.redis.Addr, "127.0.0.1:")
	f.redis.Kill()
	var portN int
	fmt.Sscan(port, &portN)
	r, err := stack.StartRedis(portN, nil)
	if err != nil {
		f.redisMu.Unlock()
		t.Fatalf("restart Redis: %v", err)
	}
	f.redis = r
	f.redisMu.Unlock()
	time.Sleep(phase(4*time.Second, 15*time.Second))

	// 4. The backend dies and comes back on the same port.
	setChaos("backend killed", true)
	f.backend.kill()
	time.Sleep(2 * time.Second)
	f.backend.start()
	time.Sleep(3 * time.Second) // health checks see it again
	setChaos("steady after the backend restart", false)
	time.Sleep(steady)

	stop()
	wg.Wait()
	peak := f.backend.peakSessions()

	// Leaks: nothing may be left once the clients are gone.
	var leftLeases []string
	deadline := time.Now().Add(leaseTTL + 5*time.Second)
	for {
		leftLeases, err = f.leases(context.Background())
		if (err == nil && len(leftLeases) == 0) || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	for deadline := time.Now().Add(5 * time.Second); f.backend.current().Sessions() != 0 && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
	leftSessions := f.backend.current().Sessions()

	numbers := make([]string, 0, len(out.byNumber))
	for n, c := range out.byNumber {
		numbers = append(numbers, fmt.Sprintf("%d×%d", n, c))
	}
	sort.Strings(numbers)
	t.Logf("FIGURES peak/cap %d/%d; served %d; TDS errors by number [%s]; broken by deliberate kills %v; "+
		"reclaim %.1f s (reclaimed=%v, bound %s); leaks: %d leases %v, %d backend sessions; slowest answer %s "+
		"(slowest PRELOGIN answer %s, slowest LOGIN7 answer %s)",
		peak, capacity, out.served, strings.Join(numbers, " "), out.excused, reclaim.Seconds(), reclaimed, reclaimBound,
		len(leftLeases), leftLeases, leftSessions, out.slowest.Round(time.Millisecond),
		out.slowestPrelogin.Round(time.Millisecond), out.slowestLogin.Round(time.Millisecond))
	defer f.keepLogsOnFailure(out.failedAddrs)

	if peak > int64(capacity) {
		t.Errorf("the backend held %d sessions at once, cap %d", peak, capacity)
	}
	if out.served == 0 {
		t.Errorf("no client was served")
	}
	for _, u := range out.unexplained {
		t.Errorf("a client got no TDS error: %s", u)
	}
	for _, l := range out.late {
		t.Errorf("late: %s", l)
	}
	if !reclaimed || reclaim > reclaimBound {
		t.Errorf("the dead Envoy's slots came back after %.1f s (reclaimed=%v), bound %s", reclaim.Seconds(), reclaimed, reclaimBound)
	}
	if err != nil || len(leftLeases) != 0 {
		t.Errorf("leases left in Redis: %v (%v)", leftLeases, err)
	}
	if leftSessions != 0 {
		t.Errorf("%d backend sessions left", leftSessions)
	}
	for _, p := range f.proxies {
		if p == victim {
			continue
		}
		f.checkSurvivor(p)
	}
}

// keepLogsOnFailure saves every Envoy's whole log when the test failed and prints the lines of
// the failed sessions' connections.
func (f *fleet) keepLogsOnFailure(clients []string) {
	t := f.t
	if !t.Failed() {
		return
	}
	outputs := map[string]string{}
	for _, p := range f.proxies {
		outputs[p.id] = p.envoy.Output()
		t.Logf("%s output (tail):\n%s", p.id, tail(p.envoy.Output(), 40))
	}
	dir, excerpts, err := saveLogs(outputs, clients)
	if err != nil {
		t.Logf("saving the Envoy logs: %v", err)
	}
	t.Logf("full Envoy logs kept in %s; the failed sessions' connections:\n%s", dir, excerpts)
}

// live lists the Envoys not deliberately killed.
func (f *fleet) live() []*proxyProc {
	var live []*proxyProc
	for _, p := range f.proxies {
		if p.alive.Load() {
			live = append(live, p)
		}
	}
	return live
}

// session logs in, runs a query, holds the session a moment and closes it.
func session(ctx context.Context, db *sql.DB, hold time.Duration) error {
	cctx, cancel := context.WithTimeout(ctx, queueTimeout+10*time.Second)
	defer cancel()
	conn, err := db.Conn(cctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	var n int
	if err := conn.QueryRowContext(cctx, "SELECT 1").Scan(&n); err != nil {
		return err
	}
	time.Sleep(hold)
	return nil
}

// waitNoLeasesOf waits until Redis holds no lease of proxy id and returns how long after
// since that took.
func (f *fleet) waitNoLeasesOf(id string, since time.Time, limit time.Duration) (time.Duration, bool) {
	deadline := since.Add(limit)
	for time.Now().Before(deadline) {
		ids, err := f.leases(context.Background())
		if err == nil {
			held := false
			for _, l := range ids {
				if strings.HasPrefix(l, id) {
					held = true
					break
				}
			}
			if !held {
				return time.Since(since), true
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return time.Since(since), false
}

func (f *fleet) checkSurvivor(p *proxyProc) {
	t := f.t
	t.Helper()
	if exited, err := p.envoy.Exited(); exited || p.envoy.Pid() != p.pid {
		t.Errorf("%s died (%v)", p.id, err)
		return
	}
	if out := p.envoy.Output(); strings.Contains(out, "fatal error") {
		t.Errorf("%s logged a fatal error", p.id)
	}
	if body, err := p.envoy.Admin("/ready"); err != nil || strings.TrimSpace(body) != "LIVE" {
		t.Errorf("%s not ready: %q %v", p.id, body, err)
	}
	stats, err := p.envoy.Stats()
	if err != nil {
		t.Errorf("%s stats: %v", p.id, err)
		return
	}
	for name, v := range stats {
		if (strings.HasSuffix(name, "panics_total")) && v != 0 {
			t.Errorf("%s: %s = %d", p.id, name, v)
		}
	}
	if v := statSum(stats, "connections_active"); v != 0 {
		t.Errorf("%s: connections_active = %d at the end", p.id, v)
	}
	if g, r := statSum(stats, "slot_granted_total"), statSum(stats, "slot_released_total"); g != r {
		t.Errorf("%s: slots granted %d, released %d", p.id, g, r)
	}
}

// statSum adds every tdspool stat whose name ends in suffix (per-listener or per-bucket).
func statSum(stats map[string]uint64, suffix string) uint64 {
	var n uint64
	for name, v := range stats {
		if strings.HasPrefix(name, "tdspool.") && strings.HasSuffix(name, "."+suffix) {
			n += v
		}
	}
	return n
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
