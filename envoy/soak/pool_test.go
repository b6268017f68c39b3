package soak

import (
	"cmp"
	"context"
	"crypto/tls"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/url"
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
	"github.com/tdspool/tdspool/internal/testcert"
	"github.com/tdspool/tdspool/tds"
)

// The pooled fleet: two Envoys, one Redis, and a stand-in per pooled bucket (so each
// backend's peak and open connections are that bucket's alone). bucket-ses pools sessions
// (min_idle warm-up, hidden re-logins, reset on reuse); bucket-tx pools transactions.
const (
	sesBucket, sesDatabase = "bucket-ses", "tenant_s"
	txBucket, txDatabase   = "bucket-tx", "tenant_t"
	poolCapacity           = 5
	warmupPasswordEnv      = "TDSPOOL_SOAK_WARMUP_PASSWORD"
)

// pooledBucket is one pooled bucket of the fleet and its backend.
type pooledBucket struct {
	name, database string
	tx             bool
	backend        *backendProc
}

type pooledFleet struct {
	t       *testing.T
	redis   *stack.Redis
	redisMu sync.Mutex
	buckets []*pooledBucket
	proxies []*proxyProc
	// certFile and keyFile: the listener's certificate when clients use TLS.
	certFile, keyFile string
}

// The pooled soaks' TLS knobs (both legs plaintext without them):
// TDSPOOL_SOAK_CLIENT_ENCRYPT is go-mssqldb's encrypt for the soak's clients ("true": TDS 7.x
// TLS for the whole session; "strict": TDS 8), and TDSPOOL_SOAK_BACKEND_ENCRYPTION the
// buckets' backend_encryption (TDS7_LOGIN_ONLY, TDS7_FULL, TDS8).
func clientEncrypt() string { return cmp.Or(os.Getenv("TDSPOOL_SOAK_CLIENT_ENCRYPT"), "disable") }

func backendEncryption() string {
	return cmp.Or(os.Getenv("TDSPOOL_SOAK_BACKEND_ENCRYPTION"), "PLAINTEXT")
}

// listenerTLS gives the listener a certificate (TDS 7 in-band and TDS 8) when clients use TLS.
func (f *pooledFleet) listenerTLS() {
	if clientEncrypt() == "disable" || f.certFile != "" {
		return
	}
	var err error
	if f.certFile, f.keyFile, err = testcert.Write(f.t.TempDir()); err != nil {
		f.t.Fatal(err)
	}
}

// flushProbe opens and closes one connection per filter chain of the proxy at addr, which
// carries measurements made off the worker into Envoy's stats. It sends a PRELOGIN (with a
// TDS 8 chain, tls_inspector holds a silent connection back from every chain) and, with TLS
// on the listener, also completes a TDS 8 handshake.
func (f *pooledFleet) flushProbe(addr string) {
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		rc := &rawConn{c: c}
		if rc.send(tds.PacketPrelogin, preloginBytes()) == nil {
			_ = rc.preloginReply()
		}
		c.Close()
	}
	if f.certFile == "" {
		return
	}
	d := &net.Dialer{Timeout: time.Second}
	if c, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"tds/8.0"}}); err == nil {
		c.Close()
	}
}

func (f *pooledFleet) redisAddr() string {
	f.redisMu.Lock()
	defer f.redisMu.Unlock()
	return f.redis.Addr
}

func startPooledFleet(t *testing.T, proxies int) *pooledFleet {
	t.Helper()
	f := &pooledFleet{t: t}
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
	f.startBackends()
	for i := 1; i <= proxies; i++ {
		f.proxies = append(f.proxies, f.startProxy(fmt.Sprintf("pool-envoy-%d", i)))
	}
	return f
}

// startBackends starts the session-pooled and the transaction-pooled bucket's stand-ins
// (closed at the end of the test) and seeds their tables.
func (f *pooledFleet) startBackends() {
	t := f.t
	for _, b := range []*pooledBucket{{name: sesBucket, database: sesDatabase}, {name: txBucket, database: txDatabase, tx: true}} {
		b.backend = &backendProc{t: t, dir: t.TempDir(), server: b.name, database: b.database}
		b.backend.start()
		t.Cleanup(func() { b.backend.current().Close() })
		f.buckets = append(f.buckets, b)
	}
	f.seedTables()
}

// seedTables creates, straight on each backend, the table the clients tag rows in and a big
// table whose result is cut off by killed clients.
func (f *pooledFleet) seedTables() {
	for _, b := range f.buckets {
		db, err := sql.Open("sqlserver", fmt.Sprintf("sqlserver://%s:%s@127.0.0.1:%d?database=%s&encrypt=disable",
			demoUser, demoPassword, b.backend.port, b.database))
		if err != nil {
			f.t.Fatal(err)
		}
		defer db.Close()
		stmts := []string{"CREATE TABLE soak_rows (client int, v int)", "CREATE TABLE big (id int, pad varchar(400))"}
		pad := strings.Repeat("x", 400)
		for i := 0; i < 30; i++ {
			var vals []string
			for j := 0; j < 100; j++ {
				vals = append(vals, fmt.Sprintf("(%d, '%s')", i*100+j, pad))
			}
			stmts = append(stmts, "INSERT INTO big VALUES "+strings.Join(vals, ","))
		}
		for _, s := range stmts {
			if _, err := db.Exec(s); err != nil {
				f.t.Fatalf("seed %s: %v", b.name, err)
			}
		}
	}
}

func (f *pooledFleet) startProxy(id string) *proxyProc {
	t := f.t
	t.Helper()
	var buckets []map[string]any
	var clusters []envoyconfig.Bucket
	for i, b := range f.buckets {
		pool := map[string]any{"mode": "POOL_MODE_SESSION", "min_idle": 1, "warmup": map[string]any{"user": demoUser,
			"database": b.database, "app_name": "go-mssqldb", "password_env": warmupPasswordEnv}}
		if b.tx {
			pool = map[string]any{"mode": "POOL_MODE_TRANSACTION", "max_idle_time": "2s"}
		}
		cluster := fmt.Sprintf("pool_%d", i)
		buckets = append(buckets, map[string]any{"name": b.name, "cluster": cluster, "max_connections": poolCapacity,
			"queue_timeout": fmt.Sprintf("%gs", queueTimeout.Seconds()), "max_queue": 200,
			"backend_leg": "MODULE", "backend_addresses": []string{fmt.Sprintf("127.0.0.1:%d", b.backend.port)},
			"backend_encryption": backendEncryption(), "pool": pool})
		if backendEncryption() != "PLAINTEXT" {
			buckets[len(buckets)-1]["backend_tls"] = map[string]any{"trust_any_certificate": true}
		}
		clusters = append(clusters, envoyconfig.Bucket{Cluster: cluster, Port: b.backend.port})
	}
	f.listenerTLS()
	listener := map[string]any{"encryption": "OFF_ALLOWED"}
	if f.certFile != "" {
		listener["tls_cert_file"], listener["tls_key_file"] = f.certFile, f.keyFile
	}
	cfg := map[string]any{
		"proxy_id":       id,
		"listener":       listener,
		"buckets":        buckets,
		"routes":         []map[string]any{{"database": txDatabase, "bucket": txBucket}},
		"default_bucket": sesBucket,
		"redis":          map[string]any{"addresses": []string{f.redisAddr()}, "call_timeout": redisCallWait},
		"timeouts":       map[string]any{"first_byte_timeout": "2s", "login_timeout": "8s"},
	}
	js, _ := json.Marshal(cfg)
	listen, _ := stack.FreePort()
	admin, _ := stack.FreePort()
	yaml, err := envoyconfig.Render(envoyconfig.Params{ListenerPort: listen, AdminPort: admin, FilterConfigJSON: string(js),
		HealthCheckInterval: "1s", Buckets: clusters, TDS8CertFile: f.certFile, TDS8KeyFile: f.keyFile})
	if err != nil {
		t.Fatal(err)
	}
	e, err := stack.StartEnvoy(stack.EnvoyOptions{Config: yaml, AdminPort: admin, ComponentLogLevel: envoyLogLevels,
		Env: []string{warmupPasswordEnv + "=" + demoPassword}})
	if err != nil {
		t.Fatal(err)
	}
	p := &proxyProc{id: id, envoy: e, port: listen, pid: e.Pid()}
	p.alive.Store(true)
	t.Cleanup(e.Stop)
	return p
}

// dbFor is a connection pool of one client to one bucket through p: every sql.Conn is a new
// client session.
func (f *pooledFleet) dbFor(p *proxyProc, b *pooledBucket) *sql.DB {
	verify := ""
	if f.certFile != "" {
		verify = "&certificate=" + url.QueryEscape(f.certFile) + "&hostNameInCertificate=localhost"
	}
	connector, err := mssql.NewConnector(fmt.Sprintf(
		"sqlserver://%s:%s@127.0.0.1:%d?database=%s&encrypt=%s%s&dial+timeout=3&connection+timeout=%d",
		demoUser, demoPassword, p.port, b.database, clientEncrypt(), verify, int((queueTimeout + 5*time.Second).Seconds())))
	if err != nil {
		panic(err)
	}
	connector.Dialer = &tracingDialer{}
	db := sql.OpenDB(connector)
	db.SetMaxIdleConns(0)
	return db
}

// leases counts the leases Redis holds for bucket.
func (f *pooledFleet) leases(ctx context.Context, bucket string) ([]string, error) {
	rdb := redis.NewClient(&redis.Options{Addr: f.redisAddr(), DialTimeout: time.Second, ReadTimeout: time.Second})
	defer rdb.Close()
	return rdb.ZRange(ctx, fmt.Sprintf("tdspool:{%s}:h", bucket), 0, -1).Result()
}

// errIsolation marks a client that saw another client's data or state.
var errIsolation = errors.New("isolation broken")

// pooledSession is one client session that proves its backend came clean and keeps its own
// state: at the start no open transaction, default options, no temp table, the login
// database; then it tags state with its own id (SET NOCOUNT, CONTEXT_INFO, a temp table in
// session mode, a row in a transaction) and reads back exactly its own. In transaction mode
// the statements are separate requests, so the session moves between backends in between
// (except inside the transaction and once the temp table pins it). Sometimes it leaves with
// a transaction open, which the next borrower must not see.
func pooledSession(ctx context.Context, db *sql.DB, b *pooledBucket, id int, baseOptions int64, rng *rand.Rand) error {
	return pooledSessionTimed(ctx, db, b, id, baseOptions, rng, new(time.Duration))
}

// pooledSessionTimed is pooledSession that also sets *slowest to its longest single step (the
// login or one statement): in transaction mode every request may wait for a backend up to
// the queue timeout, so the bound applies per step, not to the whole session.
func pooledSessionTimed(ctx context.Context, db *sql.DB, b *pooledBucket, id int, baseOptions int64, rng *rand.Rand, slowest *time.Duration) error {
	last := time.Now()
	lap := func() {
		*slowest = max(*slowest, time.Since(last))
		last = time.Now()
	}
	defer lap()
	cctx, cancel := context.WithTimeout(ctx, queueTimeout+10*time.Second)
	defer cancel()
	conn, err := db.Conn(cctx)
	if err != nil {
		return err
	}
	lap()
	defer conn.Close()
	var tran, opts, temp int64
	var dbName string
	var ctxInfo []byte
	if err := conn.QueryRowContext(cctx, "SELECT @@TRANCOUNT, @@OPTIONS, ISNULL(OBJECT_ID('tempdb..#mine'), 0), DB_NAME(), CONTEXT_INFO()").
		Scan(&tran, &opts, &temp, &dbName, &ctxInfo); err != nil {
		return err
	}
	lap()
	if tran != 0 || opts != baseOptions || temp != 0 || dbName != b.database || len(strings.Trim(string(ctxInfo), "\x00")) != 0 {
		return fmt.Errorf("%w: client %d starts with @@TRANCOUNT %d, @@OPTIONS %d (want %d), #mine %d, DB_NAME %q, CONTEXT_INFO %x",
			errIsolation, id, tran, opts, baseOptions, temp, dbName, ctxInfo)
	}
	steps := []string{"SET NOCOUNT ON", fmt.Sprintf("SET CONTEXT_INFO 0x%08x", id)}
	if !b.tx || rng.IntN(4) == 0 { // a temp table pins a transaction-pooled session
		steps = append(steps, "CREATE TABLE #mine (id int)", fmt.Sprintf("INSERT INTO #mine VALUES (%d)", id))
	}
	for _, s := range steps {
		if _, err := conn.ExecContext(cctx, s); err != nil {
			return err
		}
		lap()
	}
	check := func() error {
		var got []byte
		if err := conn.QueryRowContext(cctx, "SELECT @@OPTIONS & 512, CONTEXT_INFO()").Scan(&opts, &got); err != nil {
			return err
		}
		lap()
		if want := fmt.Sprintf("%08x", id); opts != 512 || !strings.HasPrefix(fmt.Sprintf("%x", got), want) {
			return fmt.Errorf("%w: client %d reads NOCOUNT bit %d, CONTEXT_INFO %x", errIsolation, id, opts, got)
		}
		if len(steps) > 2 {
			var mine int
			if err := conn.QueryRowContext(cctx, "SELECT id FROM #mine").Scan(&mine); err != nil {
				return err
			}
			lap()
			if mine != id {
				return fmt.Errorf("%w: client %d reads #mine = %d", errIsolation, id, mine)
			}
		}
		return nil
	}
	if err := check(); err != nil {
		return err
	}
	lap()
	if _, err := conn.ExecContext(cctx, fmt.Sprintf("BEGIN TRANSACTION; INSERT INTO soak_rows VALUES (%d, 1)", id)); err != nil {
		return err
	}
	lap()
	var n int
	if err := conn.QueryRowContext(cctx, fmt.Sprintf("SELECT COUNT(*) FROM soak_rows WHERE client = %d", id)).Scan(&n); err != nil {
		return err
	}
	lap()
	if n != 1 {
		return fmt.Errorf("%w: client %d sees %d of its rows inside its transaction", errIsolation, id, n)
	}
	if rng.IntN(3) == 0 {
		return nil // leaves with the transaction open: the backend must roll it back before reuse
	}
	if _, err := conn.ExecContext(cctx, "ROLLBACK"); err != nil {
		return err
	}
	lap()
	if err := conn.QueryRowContext(cctx, fmt.Sprintf("SELECT COUNT(*) FROM soak_rows WHERE client = %d", id)).Scan(&n); err != nil {
		return err
	}
	lap()
	if n != 0 {
		return fmt.Errorf("%w: client %d sees %d rows after its rollback", errIsolation, id, n)
	}
	time.Sleep(time.Duration(rng.IntN(100)) * time.Millisecond)
	return check()
}

// killMidResult logs in raw, asks for the big table and hangs up after the first packet of
// the answer: the backend is mid-result when its client disappears.
func killMidResult(addr, database string) {
	rc, err := rawLogin(addr, demoUser, demoPassword, database)
	if err != nil {
		return
	}
	defer rc.c.Close()
	if rc.send(tds.PacketSQLBatch, (&tds.SQLBatch{Headers: tds.AllHeaders{HasTransaction: true, OutstandingRequests: 1}, Text: "SELECT id, pad FROM big"}).AppendSQLBatch(nil)) != nil {
		return
	}
	_ = rc.c.SetReadDeadline(time.Now().Add(3 * time.Second))
	_, _ = rc.c.Read(make([]byte, 600))
	if tc, ok := rc.c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0) // a killed process's socket: reset, not a polite FIN
	}
}

// TestPooledFleetChaos drives a session-pooled and a transaction-pooled bucket on the
// module leg through two Envoys sharing Redis while idle pooled backends are killed, a
// backend is killed mid-transaction, clients die mid-result, an Envoy is SIGKILLed, Redis is
// paused and restarted empty and both backends die and come back. Oracles: no client ever
// sees another's state or rows; every session is served or gets a TDS error, each of its
// steps (the login, a statement) within queue timeout + 1 s, unless a kill broke it; the backend killed under a transaction-mode client
// mid-transaction is told (a TDS error, or the close SQL Server itself gives a killed
// session), never served as if its transaction lived on; each backend's peak ≤ the cap; once quiet
// the session bucket's Redis leases are exactly its idle pooled backends, which are exactly
// the stand-in's open connections and the survivors' granted − released; the transaction
// bucket drains (max_idle_time) to no lease, no backend connection, granted == released.
func TestPooledFleetChaos(t *testing.T) {
	f := startPooledFleet(t, 2)
	clients := 3 * poolCapacity
	if long() {
		clients = 6 * poolCapacity
	}
	dbs := map[*proxyProc]map[*pooledBucket]*sql.DB{}
	for _, p := range f.proxies {
		dbs[p] = map[*pooledBucket]*sql.DB{}
		for _, b := range f.buckets {
			db := f.dbFor(p, b)
			t.Cleanup(func() { db.Close() })
			dbs[p][b] = db
		}
	}
	// The options a fresh session reads (go-mssqldb's login settings), from a direct login.
	baseOptions := map[*pooledBucket]int64{}
	for _, b := range f.buckets {
		db, _ := sql.Open("sqlserver", fmt.Sprintf("sqlserver://%s:%s@127.0.0.1:%d?database=%s&encrypt=disable",
			demoUser, demoPassword, b.backend.port, b.database))
		var o int64
		if err := db.QueryRow("SELECT @@OPTIONS").Scan(&o); err != nil {
			t.Fatal(err)
		}
		db.Close()
		baseOptions[b] = o
	}

	var chaos chaosLog
	chaos.set(chaosState{label: "steady"})
	setChaos := func(label string, excusable bool) {
		chaos.set(chaosState{label: label, excusable: excusable})
		t.Logf("%s phase: %s", time.Now().Format("15:04:05.000"), label)
	}
	outs := map[*pooledBucket]*outcome{}
	for _, b := range f.buckets {
		outs[b] = &outcome{byNumber: map[int32]int64{}, excused: map[string]int64{}}
	}
	var isolationMu sync.Mutex
	var isolation []string

	// Warm-up: every Envoy serves both buckets once Redis grants.
	for _, p := range f.proxies {
		for _, b := range f.buckets {
			var err error
			rng := rand.New(rand.NewPCG(1, 1))
			for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
				if err = pooledSession(context.Background(), dbs[p][b], b, 0, baseOptions[b], rng); err == nil || errors.Is(err, errIsolation) {
					break
				}
			}
			if err != nil {
				t.Fatalf("%s %s warm-up: %v", p.id, b.name, err)
			}
		}
	}

	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var wg sync.WaitGroup
	var nextID atomic.Int64
	for w := 0; w < 2*clients; w++ {
		b := f.buckets[w%2]
		wg.Add(1)
		go func(seed uint64) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, 11))
			for ctx.Err() == nil {
				live := f.live()
				if len(live) == 0 {
					return
				}
				p := live[rng.IntN(len(live))]
				from := chaos.now()
				tctx, tr := withTrace(ctx)
				var took time.Duration // the longest step: each is bounded by the queue timeout
				err := pooledSessionTimed(tctx, dbs[p][b], b, int(nextID.Add(1)), baseOptions[b], rng, &took)
				if errors.Is(err, errIsolation) {
					isolationMu.Lock()
					isolation = append(isolation, fmt.Sprintf("%s via %s: %v", b.name, p.id, err))
					isolationMu.Unlock()
				}
				if ctx.Err() != nil {
					return
				}
				label, broken, startedInKill := chaos.span(from, chaos.now())
				dead := !p.alive.Load()
				outs[b].add(err, took, tr, label, broken || dead, startedInKill || dead)
			}
		}(uint64(w))
	}
	// Clients killed mid-result, on both buckets, all along.
	var midResult atomic.Int64
	wg.Add(1)
	go func() {
		defer wg.Done()
		rng := rand.New(rand.NewPCG(5, 5))
		for ctx.Err() == nil {
			live := f.live()
			if len(live) == 0 {
				return
			}
			p := live[rng.IntN(len(live))]
			killMidResult(fmt.Sprintf("127.0.0.1:%d", p.port), f.buckets[rng.IntN(2)].database)
			midResult.Add(1)
			time.Sleep(time.Duration(50+rng.IntN(200)) * time.Millisecond)
		}
	}()

	steady := phase(3*time.Second, 20*time.Second)
	time.Sleep(steady)

	// 1. Idle pooled backends killed (KILL by SPID on the stand-ins): a borrower must not
	// notice an idle one's death; a busy one's client may break.
	setChaos("pooled backends killed", true)
	killed := 0
	for _, b := range f.buckets {
		spids := b.backend.current().SPIDs()
		rand.Shuffle(len(spids), func(i, j int) { spids[i], spids[j] = spids[j], spids[i] })
		for _, s := range spids[:min(len(spids), 2)] {
			if b.backend.current().Kill(s) {
				killed++
			}
		}
	}
	time.Sleep(500 * time.Millisecond)
	setChaos("after the pooled kills", false)

	// 2. A transaction-mode client's backend killed mid-transaction: the client gets a TDS
	// error, not a bare reset, and its next session is served.
	midTx := f.killMidTransaction(dbs[f.proxies[0]][f.buckets[1]], f.buckets[1], baseOptions[f.buckets[1]])
	time.Sleep(phase(2*time.Second, 10*time.Second))

	// 3. An Envoy dies: its pooled backends die with it, its slots come back.
	victim := f.proxies[len(f.proxies)-1]
	setChaos("envoy SIGKILLed", true)
	victim.alive.Store(false)
	victim.envoy.Kill()
	time.Sleep(time.Second)
	setChaos("after the envoy kill", false)
	time.Sleep(phase(2*time.Second, 10*time.Second))

	// 4. Redis paused, then restarted empty: the idle pooled backends' leases are lost with it.
	setChaos("redis paused", false)
	f.redisMu.Lock()
	_ = syscall.Kill(f.redis.Pid(), syscall.SIGSTOP)
	f.redisMu.Unlock()
	time.Sleep(phase(2*time.Second, 10*time.Second))
	f.redisMu.Lock()
	_ = syscall.Kill(f.redis.Pid(), syscall.SIGCONT)
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
	setChaos("redis restarted empty", false)
	time.Sleep(phase(3*time.Second, 15*time.Second))

	// 5. Both backends die and come back on their ports.
	setChaos("backends killed", true)
	for _, b := range f.buckets {
		b.backend.kill()
	}
	time.Sleep(time.Second)
	for _, b := range f.buckets {
		b.backend.start()
	}
	time.Sleep(2 * time.Second)
	setChaos("steady after the backend restarts", false)
	time.Sleep(steady)

	stop()
	wg.Wait()

	// Quiescence: the survivors' stats reach Envoy through a connection, so a bare TCP
	// connect carries them.
	type settled struct {
		leases           []string
		open, sessions   int
		granted, release uint64
	}
	read := func(b *pooledBucket) settled {
		var s settled
		s.leases, _ = f.leases(context.Background(), b.name)
		s.open, s.sessions = b.backend.current().OpenConnections(), b.backend.current().Sessions()
		for _, p := range f.live() {
			f.flushProbe(fmt.Sprintf("127.0.0.1:%d", p.port))
			stats, _ := p.envoy.Stats()
			s.granted += stats["tdspool.bucket."+b.name+".slot_granted_total"]
			s.release += stats["tdspool.bucket."+b.name+".slot_released_total"]
		}
		return s
	}
	final := map[*pooledBucket]settled{}
	for _, b := range f.buckets {
		var s settled
		for deadline := time.Now().Add(leaseTTL + 8*time.Second); ; time.Sleep(250 * time.Millisecond) {
			s = read(b)
			good := len(s.leases) == s.open && s.open == s.sessions && uint64(s.open) == s.granted-s.release
			if b.tx {
				good = good && s.open == 0
			}
			if good || time.Now().After(deadline) {
				break
			}
		}
		final[b] = s
	}

	var failed []string
	for _, b := range f.buckets {
		out := outs[b]
		numbers := []string{}
		for n, c := range out.byNumber {
			numbers = append(numbers, fmt.Sprintf("%d×%d", n, c))
		}
		sort.Strings(numbers)
		s := final[b]
		t.Logf("FIGURES %s: peak/cap %d/%d; served %d; TDS errors [%s]; broken by kills %v; slowest %s; "+
			"at rest %d leases, %d backend connections, %d sessions, granted %d released %d",
			b.name, b.backend.peakSessions(), poolCapacity, out.served, strings.Join(numbers, " "), out.excused,
			out.slowest.Round(time.Millisecond), len(s.leases), s.open, s.sessions, s.granted, s.release)
		failed = append(failed, out.failedAddrs...)
	}
	t.Logf("FIGURES %d pooled backends killed, %d clients killed mid-result; mid-transaction kill: %s", killed, midResult.Load(), midTx)
	defer func() {
		if t.Failed() {
			for _, p := range f.proxies {
				t.Logf("%s output (tail):\n%s", p.id, tail(p.envoy.Output(), 40))
			}
			outputs := map[string]string{}
			for _, p := range f.proxies {
				outputs[p.id] = p.envoy.Output()
			}
			dir, excerpts, _ := saveLogs(outputs, failed)
			t.Logf("full Envoy logs kept in %s; the failed sessions' connections:\n%s", dir, excerpts)
		}
	}()

	for _, iso := range isolation {
		t.Errorf("%s", iso)
	}
	if !strings.HasPrefix(midTx, "ended:") {
		t.Errorf("the client whose backend was killed mid-transaction: %s", midTx)
	}
	for _, b := range f.buckets {
		out, s := outs[b], final[b]
		if peak := b.backend.peakSessions(); peak > poolCapacity {
			t.Errorf("%s: the backend held %d sessions at once, cap %d", b.name, peak, poolCapacity)
		}
		if out.served == 0 {
			t.Errorf("%s: no client served", b.name)
		}
		for _, u := range out.unexplained {
			t.Errorf("%s: a client got no TDS error: %s", b.name, u)
		}
		for _, l := range out.late {
			t.Errorf("%s: late: %s", b.name, l)
		}
		if len(s.leases) != s.open || s.open != s.sessions || uint64(s.open) != s.granted-s.release {
			t.Errorf("%s at rest: %d leases %v, %d backend connections, %d logged-in sessions, granted − released %d: want all equal (the pool's idle backends)",
				b.name, len(s.leases), s.leases, s.open, s.sessions, s.granted-s.release)
		}
		if b.tx && (s.open != 0 || s.granted != s.release) {
			t.Errorf("%s at rest after max_idle_time: %d backend connections, granted %d released %d", b.name, s.open, s.granted, s.release)
		}
		if !b.tx && s.open > poolCapacity {
			t.Errorf("%s: %d idle backends, cap %d", b.name, s.open, poolCapacity)
		}
	}
	for _, p := range f.live() {
		if exited, err := p.envoy.Exited(); exited || p.envoy.Pid() != p.pid {
			t.Errorf("%s died (%v)", p.id, err)
			continue
		}
		if strings.Contains(p.envoy.Output(), "fatal error") {
			t.Errorf("%s logged a fatal error", p.id)
		}
		stats, _ := p.envoy.Stats()
		for name, v := range stats {
			if strings.HasSuffix(name, "panics_total") && v != 0 {
				t.Errorf("%s: %s = %d", p.id, name, v)
			}
		}
		if v := statSum(stats, "connections_active"); v != 0 {
			t.Errorf("%s: connections_active = %d at the end", p.id, v)
		}
	}
}

// live lists the Envoys not deliberately killed.
func (f *pooledFleet) live() []*proxyProc {
	var live []*proxyProc
	for _, p := range f.proxies {
		if p.alive.Load() {
			live = append(live, p)
		}
	}
	return live
}

// killMidTransaction opens a transaction-mode session, begins a transaction, kills its
// backend by SPID and runs the next statement; it says what the client saw. Being served
// would mean the transaction silently moved to another backend (its work lost unseen).
func (f *pooledFleet) killMidTransaction(db *sql.DB, b *pooledBucket, baseOptions int64) string {
	ctx, cancel := context.WithTimeout(context.Background(), queueTimeout+10*time.Second)
	defer cancel()
	conn, err := db.Conn(ctx)
	if err != nil {
		return fmt.Sprintf("no session: %v", err)
	}
	defer conn.Close()
	var spid int
	if err := conn.QueryRowContext(ctx, "BEGIN TRANSACTION; INSERT INTO soak_rows VALUES (-1, 1); SELECT @@SPID").Scan(&spid); err != nil {
		return fmt.Sprintf("no transaction: %v", err)
	}
	if !b.backend.current().Kill(spid) {
		return fmt.Sprintf("SPID %d not found", spid)
	}
	time.Sleep(200 * time.Millisecond)
	start := time.Now()
	var n int
	err = conn.QueryRowContext(ctx, "SELECT COUNT(*) FROM soak_rows WHERE client = -1").Scan(&n)
	var me mssql.Error
	switch {
	case err == nil:
		return fmt.Sprintf("served after its backend died (%d rows): the transaction moved", n)
	case errors.As(err, &me):
		return fmt.Sprintf("ended: TDS error %d after %s: %s", me.Number, time.Since(start).Round(time.Millisecond), me.Message)
	case time.Since(start) > answerSlack:
		return fmt.Sprintf("answered only after %s: %v", time.Since(start).Round(time.Millisecond), err)
	}
	// SQL Server itself closes a killed idle session's connection without a word: a close is
	// what the client would have seen without tdspool. Its next session must be served.
	if next := pooledSession(context.Background(), db, b, 1<<30, baseOptions, rand.New(rand.NewPCG(2, 2))); next != nil {
		return fmt.Sprintf("closed (%v), and the next session failed: %v", err, next)
	}
	return fmt.Sprintf("ended: closed after %s (%v); the next session served", time.Since(start).Round(time.Millisecond), err)
}
