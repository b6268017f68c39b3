package integration

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mssql "github.com/microsoft/go-mssqldb"
	"github.com/redis/go-redis/v9"

	"github.com/tdspool/tdspool/deployments/envoyconfig"
	"github.com/tdspool/tdspool/internal/stack"
	"github.com/tdspool/tdspool/standin"
	"github.com/tdspool/tdspool/standin/standintest"
)

// fleetStack is two Envoys (proxy ids envoy-a and envoy-b) with tdspool in front of one
// stand-in (bucket-001), sharing one Redis; tdspoolctl is built and pointed at that Redis.
type fleetStack struct {
	backend *standin.Server
	redis   *stack.Redis
	envoys  []*stack.Envoy
	ports   []int
	admins  []string
	ctl     string

	queueTimeout string
}

var (
	ctlOnce sync.Once
	ctlPath string
	ctlErr  error
)

func buildCtl(t *testing.T) string {
	t.Helper()
	ctlOnce.Do(func() {
		// Into the repository's bin/ (ignored by git), like the module: nothing left in /tmp.
		ctlPath, ctlErr = filepath.Abs(filepath.Join("..", "..", "bin", "tdspoolctl"))
		if ctlErr != nil {
			return
		}
		out, err := exec.Command("go", "build", "-o", ctlPath, "github.com/tdspool/tdspool/tdspoolctl").CombinedOutput()
		if err != nil {
			ctlErr = fmt.Errorf("build tdspoolctl: %v\n%s", err, out)
		}
	})
	if ctlErr != nil {
		t.Fatal(ctlErr)
	}
	return ctlPath
}

func startFleet(t *testing.T, capacity int, queueTimeout string) *fleetStack {
	t.Helper()
	backend := standintest.Start(t, standin.Config{
		ServerName: "bucket-001", Users: map[string]string{"demo": "Demo-Passw0rd"},
		Databases: []string{"tenant_a"}, DataDir: t.TempDir(), Encryption: standin.EncryptionOptional,
	})
	f := &fleetStack{backend: backend, redis: startRedis(t), ctl: buildCtl(t), queueTimeout: queueTimeout}
	for _, id := range []string{"envoy-a", "envoy-b"} {
		e, port, admin := f.startEnvoy(t, id, capacity)
		f.envoys = append(f.envoys, e)
		f.ports = append(f.ports, port)
		f.admins = append(f.admins, admin)
	}
	// The bucket's first grant waits out the coordinator's new-epoch grace: pay it here.
	s, err := f.open(0)
	if err != nil {
		t.Fatalf("warm-up login: %v", err)
	}
	s.close()
	return f
}

// startEnvoy starts one Envoy of the fleet with its own config (proxy id, cap).
func (f *fleetStack) startEnvoy(t *testing.T, id string, capacity int) (e *stack.Envoy, port int, admin string) {
	t.Helper()
	queueTimeout, backend := f.queueTimeout, f.backend
	{
		cfg := map[string]any{
			"proxy_id": id,
			"listener": map[string]any{"encryption": "OFF_ALLOWED"},
			"buckets": []map[string]any{{"name": "bucket-001", "cluster": "bucket_001", "max_connections": capacity,
				"queue_timeout": queueTimeout, "max_queue": 64}},
			"default_bucket": "bucket-001",
			"redis": map[string]any{"addresses": []string{f.redis.Addr}, "heartbeat_interval": "0.5s",
				"lease_ttl": "3s", "call_timeout": "0.2s"},
		}
		js, _ := json.Marshal(cfg)
		params := envoyconfig.Params{Buckets: []envoyconfig.Bucket{{Cluster: "bucket_001", Port: backend.Port()}},
			FilterConfigJSON: string(js)}
		params.ListenerPort, _ = stack.FreePort()
		params.AdminPort, _ = stack.FreePort()
		yaml, err := envoyconfig.Render(params)
		if err != nil {
			t.Fatal(err)
		}
		e, err = stack.StartEnvoy(stack.EnvoyOptions{Config: yaml, AdminPort: params.AdminPort})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			e.Stop()
			if t.Failed() {
				t.Logf("envoy %s output (tail):\n%s", id, tailLines(e.Output(), 40))
			}
		})
		return e, params.ListenerPort, fmt.Sprintf("127.0.0.1:%d", params.AdminPort)
	}
}

// ctlRun runs tdspoolctl against the fleet's Redis (and both admin addresses).
func (f *fleetStack) ctlRun(t *testing.T, args ...string) string {
	t.Helper()
	all := append([]string{"-redis", f.redis.Addr, "-admin", strings.Join(f.admins, ","), "-by", "it-test"}, args...)
	out, err := exec.Command(f.ctl, all...).CombinedOutput()
	if err != nil {
		t.Fatalf("tdspoolctl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func (f *fleetStack) ctlJSON(t *testing.T, into any, args ...string) {
	t.Helper()
	out := f.ctlRun(t, append([]string{"-json"}, args...)...)
	if err := json.Unmarshal([]byte(out), into); err != nil {
		t.Fatalf("tdspoolctl %v: %v in %s", args, err, out)
	}
}

// session is one logged-in client connection (its own database/sql pool of one).
type session struct {
	db   *sql.DB
	conn *sql.Conn
}

func (f *fleetStack) open(i int) (*session, error) {
	db, err := sql.Open("sqlserver", fmt.Sprintf(
		"sqlserver://demo:Demo-Passw0rd@127.0.0.1:%d?database=tenant_a&encrypt=disable&dial+timeout=5&connection+timeout=30&app+name=fleet-it", f.ports[i]))
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := db.Conn(ctx)
	if err == nil {
		err = conn.PingContext(ctx)
	}
	if err != nil {
		db.Close()
		return nil, err
	}
	return &session{db: db, conn: conn}, nil
}

func (s *session) query() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var n int
	return s.conn.QueryRowContext(ctx, "SELECT 1").Scan(&n)
}

func (s *session) close() { s.conn.Close(); s.db.Close() }

// errNumber is the SQL error number a driver error carries (0 if none).
func errNumber(err error) int32 {
	var me mssql.Error
	if errors.As(err, &me) {
		return me.Number
	}
	return 0
}

type ctlPool struct {
	Bucket   string                                `json:"bucket"`
	Cap      int                                   `json:"cap"`
	CapBy    string                                `json:"cap_set_by"`
	State    string                                `json:"state"`
	InUse    int                                   `json:"in_use"`
	Queued   int                                   `json:"queued"`
	PerProxy map[string]struct{ Held, Queued int } `json:"per_proxy"`
	Sessions map[string]uint64                     `json:"envoy_sessions_active"`
}

type ctlClient struct {
	ID     string `json:"id"`
	Proxy  string `json:"proxy"`
	Held   bool   `json:"held"`
	Holder struct {
		Client, User, App, Pins string
		Database                string `json:"db"`
	} `json:"holder"`
}

func (f *fleetStack) pool(t *testing.T) ctlPool {
	t.Helper()
	var v struct{ Pools []ctlPool }
	f.ctlJSON(t, &v, "pools")
	if len(v.Pools) != 1 {
		t.Fatalf("pools: %+v", v.Pools)
	}
	return v.Pools[0]
}

func (f *fleetStack) clients(t *testing.T) []ctlClient {
	t.Helper()
	var v struct{ Clients []ctlClient }
	f.ctlJSON(t, &v, "clients")
	return v.Clients
}

func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", within, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestFleetViewMatchesBackendAndKillEndsOneClient: three sessions through two Envoys; the
// fleet view's counts equal the stand-in's own session count, its clients carry who they
// are, and kill ends exactly the named client with an error while the others go on.
func TestFleetViewMatchesBackendAndKillEndsOneClient(t *testing.T) {
	f := startFleet(t, 4, "4s")
	var ss []*session
	for _, i := range []int{0, 0, 1} {
		s, err := f.open(i)
		if err != nil {
			t.Fatal(err)
		}
		defer s.close()
		ss = append(ss, s)
	}
	// Under load a driver may give up on a login attempt and retry (database/sql retries a bad
	// connection); the abandoned session holds its slot until Envoy sees that client's close,
	// so the view converges on the stand-in's count rather than matching it at once.
	p := f.pool(t)
	for deadline := time.Now().Add(10 * time.Second); p.InUse != 3 || p.InUse != f.backend.Sessions(); p = f.pool(t) {
		if time.Now().After(deadline) {
			t.Fatalf("pools %+v; the stand-in holds %d sessions", p, f.backend.Sessions())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if p.Cap != 4 || p.State != "serving" {
		t.Fatalf("pools %+v", p)
	}
	waitFor(t, 3*time.Second, "both Envoys' sessions_active in the view", func() bool {
		p = f.pool(t)
		return p.Sessions[f.admins[0]] == 2 && p.Sessions[f.admins[1]] == 1
	})
	cs := f.clients(t)
	byProxy := map[string]int{}
	var victim ctlClient
	for _, c := range cs {
		byProxy[strings.SplitN(c.Proxy, "~", 2)[0]]++
		if c.Holder.User != "demo" || c.Holder.Database != "tenant_a" || c.Holder.App != "fleet-it" || c.Holder.Client == "" || !c.Held {
			t.Fatalf("client record %+v", c)
		}
		if strings.HasPrefix(c.Proxy, "envoy-b~") {
			victim = c
		}
	}
	if len(cs) != 3 || byProxy["envoy-a"] != 2 || byProxy["envoy-b"] != 1 {
		t.Fatalf("clients %+v", cs)
	}
	// An open transaction shows as a pin reason in the view (the proxy sends it with its next
	// heartbeat).
	if _, err := ss[0].conn.ExecContext(context.Background(), "BEGIN TRANSACTION"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 3*time.Second, "the transaction in the fleet view", func() bool {
		n := 0
		for _, c := range f.clients(t) {
			if c.Holder.Pins == "transaction" {
				n++
			}
		}
		return n == 1
	})
	t.Logf("pools:\n%s", f.ctlRun(t, "pools"))
	t.Logf("clients:\n%s", f.ctlRun(t, "clients"))
	t.Logf("servers:\n%s", f.ctlRun(t, "servers"))
	t.Logf("proxies:\n%s", f.ctlRun(t, "proxies"))

	// Kill the envoy-b client by its address: exactly that session ends, with an error.
	t.Logf("kill: %s", f.ctlRun(t, "kill", victim.Holder.Client))
	var killedErr error
	waitFor(t, 3*time.Second, "the killed session fails", func() bool {
		killedErr = ss[2].query()
		return killedErr != nil
	})
	for i, s := range ss[:2] {
		if err := s.query(); err != nil {
			t.Fatalf("session %d (not killed) failed: %v", i, err)
		}
	}
	waitFor(t, 3*time.Second, "backend down to 2 sessions", func() bool { return f.backend.Sessions() == 2 })
	waitStat(t, f.envoys[1], "tdspool.bucket.bucket-001.sessions_killed_total", 1)
	if stats, _ := f.envoys[0].Stats(); stats["tdspool.bucket.bucket-001.sessions_killed_total"] != 0 {
		t.Fatal("envoy-a killed a session too")
	}
	t.Logf("the killed client saw: %v (number %d)", killedErr, errNumber(killedErr))
	if p := f.pool(t); p.InUse != 2 {
		t.Fatalf("after kill the view shows %d in use", p.InUse)
	}
}

// TestCapChangesUnderLoadAcrossTwoEnvoys: clients churn through both Envoys while an operator
// lowers the cap from 4 to 1 and raises it to 3. Once the sessions held above the new cap have
// ended, the stand-in never holds more than the cap in force; raising admits waiters at once;
// both Envoys' max_connections gauges show the enforced cap; every client is served or told
// why.
func TestCapChangesUnderLoadAcrossTwoEnvoys(t *testing.T) {
	f := startFleet(t, 4, "5s")
	var cur atomic.Int64 // the cap in force, as the test last set it; 0 while draining down
	var violations, samples atomic.Int64
	var peakAfterRaise, longestOver atomic.Int64 // longestOver: µs
	var overSince time.Time
	var oracleErr atomic.Value
	stop := make(chan struct{})
	var bg sync.WaitGroup
	bg.Add(1)
	go func() { // the oracle: the stand-in's own session count
		defer bg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond):
			}
			n := int64(f.backend.Sessions())
			c := cur.Load()
			if c > 0 && n > c { // confirm with the kernel's view (reading it takes milliseconds)
				live, err := liveSessions(f.backend)
				if err != nil {
					oracleErr.Store(err.Error())
					return
				}
				n = int64(live)
			}
			if c > 0 {
				samples.Add(1)
				if n > c {
					violations.Add(1)
					if overSince.IsZero() {
						overSince = time.Now()
					}
					longestOver.Store(max(longestOver.Load(), time.Since(overSince).Microseconds()))
				} else {
					overSince = time.Time{}
				}
				if c == 3 && n > peakAfterRaise.Load() {
					peakAfterRaise.Store(n)
				}
			}
		}
	}()
	var served, refused atomic.Int64
	var otherErr atomic.Value
	for w := 0; w < 8; w++ {
		bg.Add(1)
		go func(w int) {
			defer bg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				s, err := f.open(w % 2)
				if err != nil {
					if n := errNumber(err); n == 10928 {
						refused.Add(1) // pool exhausted: told why
						continue
					}
					otherErr.Store(err.Error())
					return
				}
				if err := s.query(); err != nil {
					otherErr.Store(err.Error())
				}
				time.Sleep(30 * time.Millisecond)
				s.close()
				served.Add(1)
			}
		}(w)
	}
	cur.Store(4)
	time.Sleep(1500 * time.Millisecond)
	cur.Store(0)
	t.Logf("$ tdspoolctl set-cap bucket-001 1\n%s", f.ctlRun(t, "set-cap", "bucket-001", "1"))
	waitFor(t, 5*time.Second, "held sessions drained under the new cap", func() bool { return f.backend.Sessions() <= 1 })
	cur.Store(1)
	for _, e := range f.envoys {
		waitStat(t, e, "tdspool.bucket.bucket-001.max_connections", 1)
	}
	time.Sleep(1500 * time.Millisecond)
	if p := f.pool(t); p.Cap != 1 || p.CapBy != "it-test" {
		t.Fatalf("view after lowering: %+v", p)
	}
	t.Logf("$ tdspoolctl pools (cap lowered under load)\n%s", f.ctlRun(t, "pools"))
	f.ctlRun(t, "set-cap", "bucket-001", "3")
	cur.Store(3)
	for _, e := range f.envoys {
		waitStat(t, e, "tdspool.bucket.bucket-001.max_connections", 3)
	}
	time.Sleep(1500 * time.Millisecond)
	close(stop)
	bg.Wait()
	t.Logf("served %d, refused with 10928 %d; %d oracle samples, %d above the cap in force (longest run %d µs); peak after raising to 3: %d",
		served.Load(), refused.Load(), samples.Load(), violations.Load(), longestOver.Load(), peakAfterRaise.Load())
	if e := otherErr.Load(); e != nil {
		t.Fatalf("a client failed without a pool error: %v", e)
	}
	if e := oracleErr.Load(); e != nil {
		t.Fatalf("the oracle could not read the socket table: %v", e)
	}
	// The oracle counts the stand-in's sessions whose socket is still established (the
	// kernel's view of the proxy's close, not the stand-in goroutine's, which lagged up to
	// 278 ms at load average 15-20). A slot goes back as the client leaves, a moment before
	// tcp_proxy has closed that session's upstream, so the next login can overlap it briefly
	// (the hand-off). Anything longer is the cap not holding.
	if longestOver.Load() > (25 * time.Millisecond).Microseconds() {
		t.Fatalf("the stand-in held more sessions than the cap in force for %d µs (%d samples)", longestOver.Load(), violations.Load())
	}
	if peakAfterRaise.Load() < 2 {
		t.Fatalf("raising the cap to 3 admitted no more than %d at once", peakAfterRaise.Load())
	}
	waitFor(t, 5*time.Second, "all sessions gone", func() bool { return f.backend.Sessions() == 0 && f.pool(t).InUse == 0 })
}

// TestPauseResumeDrainDisableAcrossTwoEnvoys: clients wait while the bucket is paused and
// are all served on resume; a paused wait that outlives the queue timeout, a draining bucket
// and a disabled one each give the client a TDS error that says so; sessions already in
// go on through a drain. Nothing hangs.
func TestPauseResumeDrainDisableAcrossTwoEnvoys(t *testing.T) {
	// Queue timeout 5 s: after resume the four waiters share one free slot, one after another,
	// and at load 15 on two cores that took 3.6 s (10928 with a 3 s timeout).
	f := startFleet(t, 2, "5s")
	held, err := f.open(0)
	if err != nil {
		t.Fatal(err)
	}
	defer held.close()

	// Pause: four clients (two per Envoy) wait; none gets in; resume serves them all.
	f.ctlRun(t, "pause", "bucket-001")
	type result struct {
		err  error
		took time.Duration
	}
	results := make(chan result, 4)
	start := time.Now()
	for i := 0; i < 4; i++ {
		go func(i int) {
			s, err := f.open(i % 2)
			if err == nil {
				err = s.query()
				time.Sleep(100 * time.Millisecond)
				s.close()
			}
			results <- result{err, time.Since(start)}
		}(i)
	}
	time.Sleep(1 * time.Second)
	if n := f.backend.Sessions(); n != 1 {
		t.Fatalf("paused, yet the stand-in holds %d sessions", n)
	}
	if p := f.pool(t); p.State != "paused" || p.Queued != 4 {
		t.Fatalf("view while paused: %+v", p)
	}
	f.ctlRun(t, "resume", "bucket-001")
	for i := 0; i < 4; i++ {
		r := <-results
		if r.err != nil {
			t.Fatalf("a paused client was not served after resume: %v", r.err)
		}
		if r.took > 5*time.Second {
			t.Fatalf("a client was served %v after it came (queue timeout 5s)", r.took)
		}
	}

	// A paused wait runs into the queue timeout: the client is told the bucket is paused.
	f.ctlRun(t, "pause", "bucket-001")
	t0 := time.Now()
	_, err = f.open(1)
	if n := errNumber(err); n != 40613 || !strings.Contains(err.Error(), "paused") || time.Since(t0) > 7*time.Second {
		t.Fatalf("paused past the queue timeout: %v (number %d) after %v", err, n, time.Since(t0))
	}
	t.Logf("paused past the queue timeout: %v", err)
	f.ctlRun(t, "resume", "bucket-001")

	// Drain: a waiter and a newcomer are refused with a clear error; sessions in go on.
	second, err := f.open(1)
	if err != nil {
		t.Fatal(err)
	}
	waiter := make(chan error, 1)
	go func() {
		s, err := f.open(0)
		if err == nil {
			s.close()
		}
		waiter <- err
	}()
	waitFor(t, 3*time.Second, "a waiter queued", func() bool { return f.pool(t).Queued == 1 })
	t.Logf("$ tdspoolctl drain bucket-001\n%s", f.ctlRun(t, "drain", "bucket-001"))
	select {
	case err := <-waiter:
		if n := errNumber(err); n != 40613 || !strings.Contains(err.Error(), "drained") {
			t.Fatalf("waiter during drain: %v (number %d)", err, n)
		}
		t.Logf("waiter during drain: %v", err)
	case <-time.After(2 * time.Second):
		t.Fatal("the waiter was not told of the drain within 2 s")
	}
	t0 = time.Now()
	_, err = f.open(1)
	if n := errNumber(err); n != 40613 || time.Since(t0) > time.Second {
		t.Fatalf("newcomer during drain: %v (number %d) after %v", err, n, time.Since(t0))
	}
	for _, s := range []*session{held, second} {
		if err := s.query(); err != nil {
			t.Fatalf("a session in the bucket failed during the drain: %v", err)
		}
	}
	t.Logf("$ tdspoolctl pools (draining)\n%s", f.ctlRun(t, "pools"))
	second.close()
	held.close()
	waitFor(t, 3*time.Second, "drained to zero", func() bool {
		p := f.pool(t)
		return p.InUse == 0 && p.State == "draining" && f.backend.Sessions() == 0
	})

	// Disable: refused at once, not transient.
	f.ctlRun(t, "disable", "bucket-001")
	for i := range f.envoys {
		_, err = f.open(i)
		if n := errNumber(err); n != 40532 || !strings.Contains(err.Error(), "disabled") {
			t.Fatalf("disabled: %v (number %d)", err, n)
		}
	}
	t.Logf("disabled: %v", err)
	// The gauges move when a connection calls in (the ABI gives no other way to set them).
	for _, e := range f.envoys {
		waitStat(t, e, "tdspool.bucket.bucket-001.state", 3)
	}
	f.ctlRun(t, "resume", "bucket-001")
	s, err := f.open(1)
	if err != nil {
		t.Fatalf("after resume: %v", err)
	}
	s.close()
}

// TestRestartWithNewCapSetsTheFleetCap: an Envoy restarted with a config carrying a new cap
// sets the cap Redis enforces for the whole fleet (the most recently loaded config wins), the
// other Envoy's gauge follows, and the fleet view says who set it.
func TestRestartWithNewCapSetsTheFleetCap(t *testing.T) {
	f := startFleet(t, 2, "3s")
	if p := f.pool(t); p.Cap != 2 {
		t.Fatalf("cap %d, want 2", p.Cap)
	}
	f.envoys[1].Stop()
	e, port, admin := f.startEnvoy(t, "envoy-b", 5)
	f.envoys[1], f.ports[1], f.admins[1] = e, port, admin
	start := time.Now()
	waitFor(t, 2*time.Second, "the restarted Envoy's cap enforced", func() bool {
		p := f.pool(t)
		return p.Cap == 5 && strings.HasPrefix(p.CapBy, "envoy-b~")
	})
	t.Logf("cap 5 in Redis %v after the restarted Envoy was ready", time.Since(start).Round(time.Millisecond))
	// Five sessions at once through envoy-a, whose own config still says 2.
	var ss []*session
	for i := 0; i < 5; i++ {
		s, err := f.open(0)
		if err != nil {
			t.Fatalf("session %d of 5 through the other Envoy: %v", i+1, err)
		}
		defer s.close()
		ss = append(ss, s)
	}
	if n := f.backend.Sessions(); n != 5 {
		t.Fatalf("the stand-in holds %d sessions, want 5", n)
	}
	for i, s := range ss { // each of the five is served while all five hold their slots
		if err := s.query(); err != nil {
			t.Fatalf("session %d of 5, all open: %v", i+1, err)
		}
	}
	waitStat(t, f.envoys[0], "tdspool.bucket.bucket-001.max_connections", 5)
}

// TestStatPrefixNamesTheListener: with stat_prefix the stats carry the listener's name, and
// /stats/prometheus shows it as a label beside the bucket, so two listeners never merge.
func TestStatPrefixNamesTheListener(t *testing.T) {
	s := startTDSStack(t, tdsStackOptions{capacity: 2, extra: map[string]any{"stat_prefix": "orders"}})
	db := s.db(t, 1)
	if err := db.Ping(); err != nil {
		t.Fatal(err)
	}
	waitStat(t, s.envoy, "tdspool.listener.orders.bucket.bucket-001.sessions_active", 1)
	stats, _ := s.envoy.Stats()
	if _, merged := stats["tdspool.bucket.bucket-001.sessions_active"]; merged {
		t.Fatal("an unprefixed bucket stat exists next to the prefixed one")
	}
	body, err := s.envoy.Admin("/stats/prometheus")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`envoy_tdspool_bucket_sessions_active{listener="orders",bucket="bucket-001"} 1`,
		`envoy_tdspool_connections_active{listener="orders"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Fatalf("no %s in /stats/prometheus:\n%s", want, grepLines(body, "tdspool_connections_active"))
		}
	}
}

// queueWatch records, from Redis itself, the order in which the coordinator queued and
// granted a bucket's waiters: each waiter's ticket (P:{b}:q) and the Redis-clock millisecond
// its grant restamped on its holder record (P:{b}:i). This is the FIFO oracle: a client's
// own send and LOGINACK times also carry Envoy's scheduling before the enqueue and the
// backend login after the grant, which on a loaded machine reorder clients that the queue
// served in order.
type queueWatch struct {
	mu      sync.Mutex
	ticket  map[string]float64 // waiter id -> ticket, seen while it waited
	granted map[string]int64   // id -> grant time (Redis ms), first seen held
	client  map[string]string  // id -> holder's client address
	polls   int
	stop    chan struct{}
	done    chan struct{}
}

func watchQueue(t *testing.T, redisAddr, bucket string) *queueWatch {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr})
	w := &queueWatch{ticket: map[string]float64{}, granted: map[string]int64{}, client: map[string]string{},
		stop: make(chan struct{}), done: make(chan struct{})}
	qKey, iKey := fmt.Sprintf("tdspool:{%s}:q", bucket), fmt.Sprintf("tdspool:{%s}:i", bucket)
	go func() {
		defer close(w.done)
		defer rdb.Close()
		ctx := context.Background()
		for {
			select {
			case <-w.stop:
				return
			default:
			}
			var q *redis.ZSliceCmd
			var info *redis.MapStringStringCmd
			_, err := rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
				q = p.ZRangeWithScores(ctx, qKey, 0, -1)
				info = p.HGetAll(ctx, iKey)
				return nil
			})
			if err == nil {
				w.record(q.Val(), info.Val())
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	t.Cleanup(w.close)
	return w
}

func (w *queueWatch) record(queued []redis.Z, info map[string]string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.polls++
	waiting := map[string]bool{}
	for _, z := range queued {
		id := z.Member.(string)
		waiting[id] = true
		w.ticket[id] = z.Score
	}
	for id, v := range info {
		since, holder, ok := strings.Cut(v, " ")
		if !ok {
			continue
		}
		var rec struct {
			Client string `json:"client"`
		}
		if json.Unmarshal([]byte(holder), &rec) == nil && rec.Client != "" {
			w.client[id] = rec.Client
		}
		if _, seen := w.granted[id]; !seen && !waiting[id] {
			if ms, err := strconv.ParseInt(since, 10, 64); err == nil {
				w.granted[id] = ms
			}
		}
	}
}

func (w *queueWatch) close() {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	<-w.done
}

// inversions stops the watch and counts pairs of queued waiters granted against ticket
// order (a grant in the same Redis millisecond is not an inversion), out of the pairs
// compared; queued is how many waiters were seen both queued and granted.
func (w *queueWatch) inversions() (inv, pairs, queued int) {
	w.close()
	w.mu.Lock()
	defer w.mu.Unlock()
	type waiter struct {
		ticket  float64
		granted int64
	}
	var ws []waiter
	for id, tk := range w.ticket {
		if g, ok := w.granted[id]; ok {
			ws = append(ws, waiter{tk, g})
		}
	}
	for i := range ws {
		for j := range ws {
			if ws[i].ticket < ws[j].ticket {
				pairs++
				if ws[i].granted > ws[j].granted {
					inv++
				}
			}
		}
	}
	return inv, pairs, len(ws)
}

// The FIFO oracle itself: grants against ticket order, ties in one millisecond not counted,
// waiters never seen queued left out.
func TestQueueWatchCountsInversions(t *testing.T) {
	w := &queueWatch{ticket: map[string]float64{}, granted: map[string]int64{}, client: map[string]string{},
		stop: make(chan struct{}), done: make(chan struct{})}
	close(w.done)
	w.record([]redis.Z{{Score: 1, Member: "a"}, {Score: 2, Member: "b"}, {Score: 3, Member: "c"}},
		map[string]string{"a": `100 {"client":"x:1"}`, "b": `100 {}`, "c": `100 {}`, "early": `90 {}`})
	w.record(nil, map[string]string{"a": `205 {}`, "b": `200 {}`, "c": `205 {}`, "early": `90 {}`})
	inv, pairs, queued := w.inversions()
	if inv != 1 || pairs != 3 || queued != 3 {
		t.Fatalf("inversions %d of %d pairs, %d queued; want 1 (a after b) of 3, 3", inv, pairs, queued)
	}
}

// pooledFleet is one Envoy with Redis and a pooled bucket-001 (session or transaction mode,
// module leg) in front of the stand-in, with tdspoolctl pointed at that Redis.
type pooledFleet struct {
	*tdsStack
	ctl string
}

func startPooledFleet(t *testing.T, capacity int, bucket map[string]any, timeouts map[string]any) *pooledFleet {
	t.Helper()
	o := tdsStackOptions{capacity: capacity, redis: true, leg: "module", bucket: bucket}
	if timeouts != nil {
		o.extra = map[string]any{"timeouts": timeouts}
	}
	return &pooledFleet{tdsStack: startTDSStack(t, o), ctl: buildCtl(t)}
}

func (f *pooledFleet) ctlRun(t *testing.T, args ...string) string {
	t.Helper()
	all := append([]string{"-redis", f.redis.Addr, "-by", "it-test"}, args...)
	out, err := exec.Command(f.ctl, all...).CombinedOutput()
	if err != nil {
		t.Fatalf("tdspoolctl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// fleetClient is a client row of tdspoolctl clients -json.
type fleetClient struct {
	ctlClient
	Kind    string `json:"kind"`
	State   string `json:"state"`
	Backend string `json:"backend_lease"`
}

func (f *pooledFleet) clients(t *testing.T) []fleetClient {
	t.Helper()
	var v struct{ Clients []fleetClient }
	out := f.ctlRun(t, "-json", "clients")
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("clients: %v in %s", err, out)
	}
	return v.Clients
}

// fleetLogin is a row of tdspoolctl servers -json's per-login table.
type fleetLogin struct {
	User, Database, App string
	Backends, Idle      int
	InUse               int `json:"in_use"`
}

func (f *pooledFleet) logins(t *testing.T) []fleetLogin {
	t.Helper()
	var v struct{ Logins []fleetLogin }
	out := f.ctlRun(t, "-json", "servers")
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("servers: %v in %s", err, out)
	}
	return v.Logins
}

// leaseHolders reads the holder records straight from Redis: lease id -> holder JSON.
func (f *pooledFleet) leaseHolders(t *testing.T) map[string]map[string]any {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: f.redis.Addr})
	defer rdb.Close()
	ctx := context.Background()
	ids, err := rdb.ZRange(ctx, "tdspool:{bucket-001}:h", 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	info, err := rdb.HGetAll(ctx, "tdspool:{bucket-001}:i").Result()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string]any{}
	for _, id := range ids {
		_, js, _ := strings.Cut(info[id], " ")
		var h map[string]any
		_ = json.Unmarshal([]byte(js), &h)
		out[id] = h
	}
	return out
}

// addrConn is a go-mssqldb client session whose local address (what the proxy sees as the
// client's address) is known.
type addrConn struct {
	db    *sql.DB
	conn  *sql.Conn
	local string
}

type recordingDialer struct{ local chan string }

func (d recordingDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	if err == nil {
		select {
		case d.local <- c.LocalAddr().String():
		default:
		}
	}
	return c, err
}

func openAddrConn(t *testing.T, port int, app string) *addrConn {
	t.Helper()
	cn, err := mssql.NewConnector(fmt.Sprintf(
		"sqlserver://demo:Demo-Passw0rd@127.0.0.1:%d?database=tenant_a&encrypt=disable&dial+timeout=5&connection+timeout=20&app+name=%s", port, app))
	if err != nil {
		t.Fatal(err)
	}
	d := recordingDialer{local: make(chan string, 8)}
	cn.Dialer = d
	db := sql.OpenDB(cn)
	db.SetMaxOpenConns(1)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := db.Conn(ctx)
	if err == nil {
		err = conn.PingContext(ctx)
	}
	if err != nil {
		db.Close()
		t.Fatal(err)
	}
	c := &addrConn{db: db, conn: conn}
	for len(d.local) > 0 { // the last dial is the session's (a driver may retry)
		c.local = <-d.local
	}
	t.Cleanup(c.close)
	return c
}

func (c *addrConn) exec(q string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := c.conn.ExecContext(ctx, q)
	return err
}

func (c *addrConn) close() { c.conn.Close(); c.db.Close() }

// TestFleetViewFollowsSessionPooledBackend: a session-pooled backend's lease shows the client
// it is lent to, not the client that logged it in; idle in the pool it shows as idle (no
// client, not listed by clients) and in servers' per-login idle count; the borrower's pins
// (a transaction) reach the fleet view. Oracles: the stand-in's audit log (one backend login,
// one session), Redis's holder records and the clients' own socket addresses.
func TestFleetViewFollowsSessionPooledBackend(t *testing.T) {
	f := startPooledFleet(t, 2, map[string]any{"pool": map[string]any{"mode": "POOL_MODE_SESSION"}}, nil)
	a := openAddrConn(t, f.port, "fleet-pool")
	if err := a.exec("SELECT 1"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "client A in the fleet view", func() bool {
		cs := f.clients(t)
		return len(cs) == 1 && cs[0].Holder.Client == a.local && cs[0].State == "active"
	})
	a.close()
	waitFor(t, 5*time.Second, "the backend idle in the pool: no client, idle in servers", func() bool {
		ls := f.logins(t)
		return len(f.clients(t)) == 0 && len(ls) == 1 && ls[0].Idle == 1 && ls[0].InUse == 0 && ls[0].App == "fleet-pool"
	})
	for id, h := range f.leaseHolders(t) {
		if h["state"] != "idle" || h["client"] != nil {
			t.Fatalf("idle lease %s in Redis: %v", id, h)
		}
	}
	b := openAddrConn(t, f.port, "fleet-pool")
	if b.local == a.local {
		t.Fatalf("both clients on %s", a.local)
	}
	if err := b.exec("BEGIN TRANSACTION"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "client B (not A) with its transaction on the one lease", func() bool {
		cs := f.clients(t)
		return len(cs) == 1 && cs[0].Holder.Client == b.local && cs[0].Holder.Pins == "transaction"
	})
	hs := f.leaseHolders(t)
	if len(hs) != 1 {
		t.Fatalf("leases in Redis: %v", hs)
	}
	for _, h := range hs {
		if h["client"] != b.local || h["pins"] != "transaction" || h["state"] != nil {
			t.Fatalf("lease holder in Redis: %v (client B %s, A was %s)", h, b.local, a.local)
		}
	}
	if ls := f.logins(t); len(ls) != 1 || ls[0].Idle != 0 || ls[0].InUse != 1 {
		t.Fatalf("servers per login: %+v", ls)
	}
	logins := 0
	for _, r := range f.backend.Audit() {
		if r.Kind == standin.AuditLogin {
			logins++
		}
	}
	if logins != 1 || f.backend.Sessions() != 1 {
		t.Fatalf("backend logins %d, sessions %d: B was not served from the pool", logins, f.backend.Sessions())
	}
	if err := b.exec("COMMIT"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the pin gone from the fleet view", func() bool {
		cs := f.clients(t)
		return len(cs) == 1 && cs[0].Holder.Pins == ""
	})
	t.Logf("clients:\n%s", f.ctlRun(t, "clients"))
	t.Logf("servers:\n%s", f.ctlRun(t, "servers"))
}

// TestFleetViewListsAndKillsTransactionPooledClients: transaction-pooled clients hold no slot
// between requests, yet each is listed (a client record, not counted toward the cap: three
// clients on cap 1) and can be killed: an idle one gets the kill's ERROR on its next request;
// one bound in a transaction is ended and its backend closed (the server rolls back). The
// bound backend's lease names the client record it serves.
func TestFleetViewListsAndKillsTransactionPooledClients(t *testing.T) {
	f := startPooledFleet(t, 1, txPool, nil)
	var cs []*addrConn
	for range 3 {
		c := openAddrConn(t, f.port, "fleet-tx")
		if err := c.exec("SELECT 1"); err != nil {
			t.Fatal(err)
		}
		cs = append(cs, c)
	}
	byAddr := func() map[string]fleetClient {
		m := map[string]fleetClient{}
		for _, c := range f.clients(t) {
			m[c.Holder.Client] = c
		}
		return m
	}
	waitFor(t, 5*time.Second, "three client records without a backend", func() bool {
		m := byAddr()
		for _, c := range cs {
			if r, ok := m[c.local]; !ok || r.Kind != "client" || r.State != "no-backend" || r.Holder.User != "demo" || r.Holder.App != "fleet-tx" {
				return false
			}
		}
		return len(m) == 3
	})
	var pools struct{ Pools []ctlPool }
	if err := json.Unmarshal([]byte(f.ctlRun(t, "-json", "pools")), &pools); err != nil || len(pools.Pools) != 1 || pools.Pools[0].InUse != 1 {
		t.Fatalf("pools: %+v %v (want 1 backend in use for 3 clients)", pools.Pools, err)
	}
	// Client 0 opens a transaction: its record is bound to the one backend, with the pin.
	if err := cs[0].exec("BEGIN TRANSACTION"); err != nil {
		t.Fatal(err)
	}
	var bound fleetClient
	waitFor(t, 5*time.Second, "client 0 bound with its transaction", func() bool {
		bound = byAddr()[cs[0].local]
		return bound.State == "bound" && bound.Backend != "" && strings.Contains(bound.Holder.Pins, "transaction")
	})
	if h := f.leaseHolders(t)[bound.Backend]; h["session"] != bound.ID || h["client"] != cs[0].local {
		t.Fatalf("bound lease holder %v, want session %s", h, bound.ID)
	}
	t.Logf("clients:\n%s", f.ctlRun(t, "clients"))
	// Kill client 1 (no backend) by its address. (Its next request is sent once the proxy has
	// taken the kill: sent before, it would wait for the pinned backend and get the ERROR
	// as its answer.)
	t.Logf("kill: %s", f.ctlRun(t, "kill", cs[1].local))
	waitStat(t, f.envoy, "tdspool.bucket.bucket-001.sessions_killed_total", 1)
	waitStat(t, f.envoy, "tdspool.client_errors_killed_total", 1)
	var killedErr error
	waitFor(t, 5*time.Second, "client 1 killed", func() bool {
		killedErr = cs[1].exec("SELECT 1")
		return killedErr != nil
	})
	// The kill's ERROR is written while the client is idle; whether the driver reads it or
	// the close first depends on timing (as for a session-mode kill), so the proxy's count of
	// ERRORs sent is the oracle.
	t.Logf("killed client 1 saw: %v", killedErr)
	if err := cs[2].exec("SELECT 1"); err == nil {
		t.Fatal("client 2 ran while client 0 holds the only backend in a transaction")
	} else if errNumber(err) != 10928 {
		t.Logf("client 2 (waiting for the pinned backend): %v", err)
	}
	// Kill client 0 (bound, in a transaction) by its record id: its session ends and its
	// backend is closed rather than returned with an open transaction.
	before := f.backend.Sessions()
	t.Logf("kill: %s", f.ctlRun(t, "kill", bound.ID))
	waitStat(t, f.envoy, "tdspool.bucket.bucket-001.sessions_killed_total", 2)
	waitFor(t, 5*time.Second, "client 0 killed", func() bool { return cs[0].exec("SELECT 1") != nil })
	waitFor(t, 5*time.Second, "client 0's backend closed", func() bool { return f.backend.Sessions() < before })
	if err := cs[2].exec("SELECT 1"); err != nil {
		t.Fatalf("client 2 after the kills: %v", err)
	}
	waitFor(t, 5*time.Second, "only client 2 listed", func() bool {
		m := byAddr()
		_, ok := m[cs[2].local]
		return len(m) == 1 && ok
	})
	waitStat(t, f.envoy, "tdspool.bucket.bucket-001.sessions_killed_total", 2)
	waitStat(t, f.envoy, "tdspool.client_errors_killed_total", 2)
	t.Logf("clients:\n%s", f.ctlRun(t, "clients"))
}

// TestTxPoolIdleTimeoutClosesIdleClients: timeouts.idle_timeout closes a transaction-pooled
// client session that has had no traffic either way for that long, as on the other legs
// (the connection closes, no error is sent), and its client record goes; a client that keeps
// sending is left alone.
func TestTxPoolIdleTimeoutClosesIdleClients(t *testing.T) {
	f := startPooledFleet(t, 2, txPool, map[string]any{"idle_timeout": "1s"})
	idle := openAddrConn(t, f.port, "fleet-idle")
	busy := openAddrConn(t, f.port, "fleet-idle")
	start := time.Now()
	for time.Since(start) < 2500*time.Millisecond {
		if err := busy.exec("SELECT 1"); err != nil {
			t.Fatalf("a busy client was closed: %v", err)
		}
		time.Sleep(300 * time.Millisecond)
	}
	waitStat(t, f.envoy, "tdspool.connections_active", 1)
	if err := idle.exec("SELECT 1"); err == nil {
		t.Fatal("the idle client's session is still open after idle_timeout")
	}
	waitFor(t, 5*time.Second, "only the busy client listed", func() bool {
		cs := f.clients(t)
		return len(cs) == 1 && cs[0].Holder.Client == busy.local
	})
	if err := busy.exec("SELECT 1"); err != nil {
		t.Fatal(err)
	}
}
