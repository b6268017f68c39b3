package integration

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"slices"
	"testing"
	"time"

	"github.com/tdspool/tdspool/tds"
)

// sessionPool is a bucket's pool block for session pooling.
var sessionPool = map[string]any{"pool": map[string]any{"mode": "POOL_MODE_SESSION"}}

// One DSN connecting, querying and closing 100 times, back to back, through a pooled bucket:
// the stand-in (the oracle) sees at most two logins and one backend connection, and every
// client reads the right answer. A client's close and its reconnect's login run on different
// Envoy workers, in either order; a login whose backend is still lent waits for it (up to
// 10 ms) instead of opening a second one (before that wait, 3 runs in 5 needed two backends).
// The resets alone prove little with this driver (go-mssqldb flags its own first request
// too); TestSessionPoolIsolatesClients counts the proxy's own. Once the idle backend is closed
// (max_idle_time), every slot granted has been released, the pool's included.
func TestSessionPoolReusesOneBackend(t *testing.T) {
	st := startTDSStack(t, tdsStackOptions{capacity: 4, leg: "module",
		bucket: map[string]any{"pool": map[string]any{"mode": "POOL_MODE_SESSION", "max_idle_time": "1s"}}})
	dsn := fmt.Sprintf("sqlserver://demo:Demo-Passw0rd@127.0.0.1:%d?database=tenant_a&encrypt=disable&dial+timeout=5&connection+timeout=20", st.port)
	before := st.backend.Stats()
	const cycles = 100
	for i := range cycles {
		db, err := sql.Open("sqlserver", dsn)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		var n int
		var dbName string
		err = db.QueryRowContext(ctx, "SELECT @@SPID + 0 * "+fmt.Sprint(i)+", DB_NAME()").Scan(&n, &dbName)
		cancel()
		db.Close()
		if err != nil {
			t.Fatalf("cycle %d: %v", i, err)
		}
		if dbName != "tenant_a" {
			t.Fatalf("cycle %d: DB_NAME() = %q", i, dbName)
		}
	}
	after := st.backend.Stats()
	logins := after.Logins - before.Logins
	t.Logf("%d cycles: %d backend logins, peak %d backend connections", cycles, logins, st.backend.PeakConnections())
	if logins > 2 || st.backend.PeakConnections() != 1 {
		t.Fatalf("%d cycles: %d backend logins (want <= 2), peak %d backend connections (want 1)",
			cycles, logins, st.backend.PeakConnections())
	}
	// The sweeper closes the idle backend after max_idle_time; its slot's release is counted.
	deadline := time.Now().Add(5 * time.Second)
	for st.backend.OpenConnections() > 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if n := st.backend.OpenConnections(); n != 0 {
		t.Fatalf("%d backend connections open after max_idle_time", n)
	}
	// Stats reach Envoy through a connection (the ABI's rule): a bare TCP connect carries the
	// pool's counts.
	deadline = time.Now().Add(5 * time.Second)
	for {
		if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", st.port)); err == nil {
			c.Close()
		}
		stats, _ := st.envoy.Stats()
		g, r := stats["tdspool.bucket.bucket-001.slot_granted_total"], stats["tdspool.bucket.bucket-001.slot_released_total"]
		if g == r && g > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("slot_granted_total %d, slot_released_total %d after the pool closed its backend", g, r)
		}
		time.Sleep(50 * time.Millisecond)
	}
	st.waitIdle(t)
}

// poolLogin is a raw client's LOGIN7; zero fields take the stand-in's demo login.
type poolLogin struct {
	user, password, db, app, lang string
	tdsVersion                    uint32
}

// poolClient logs in over a raw TDS connection, which never sets RESETCONNECTION itself:
// any reset the stand-in counts is the proxy's. It returns the login reply's events; a
// refused login is not fatal (the events carry the server's ERROR).
func poolClient(t *testing.T, st *tdsStack, o poolLogin) (*rawClient, []tds.Event) {
	t.Helper()
	if o.user == "" {
		o.user, o.password = "demo", "Demo-Passw0rd"
	}
	if o.db == "" {
		o.db = "tenant_a"
	}
	if o.app == "" {
		o.app = "pool-test"
	}
	if o.tdsVersion == 0 {
		o.tdsVersion = tds.TDSVersion74
	}
	rc := dialRaw(t, fmt.Sprintf("127.0.0.1:%d", st.port))
	pre := tds.Prelogin{HasVersion: true, Version: 0x0C000000, HasEncryption: true, Encryption: tds.EncryptNotSup}
	if err := rc.send(tds.PacketPrelogin, pre.AppendPrelogin(nil)); err != nil {
		t.Fatal(err)
	}
	if _, err := rc.recv(); err != nil {
		t.Fatal(err)
	}
	l := tds.Login7{TDSVersion: o.tdsVersion, PacketSize: 4096, OptionFlags1: 0xE0, OptionFlags2: 0x03,
		UserName: o.user, Password: tds.NewPassword(o.password), Database: o.db, AppName: o.app, Language: o.lang,
		HostName: "h", CltIntName: "raw", ServerName: "bucket-001"}
	if err := rc.send(tds.PacketLogin7, l.AppendLogin7(nil)); err != nil {
		t.Fatal(err)
	}
	msg, err := rc.recv()
	if err != nil {
		t.Fatalf("login reply: %v", err)
	}
	return rc, events(t, msg)
}

// mustPoolClient is poolClient for a login that must succeed.
func mustPoolClient(t *testing.T, st *tdsStack, o poolLogin) *rawClient {
	t.Helper()
	rc, evs := poolClient(t, st, o)
	if !hasLoginAck(evs) {
		t.Fatalf("login %s refused: %v", o.user, evs)
	}
	return rc
}

// loginsDuring counts the stand-in's backend logins while f runs.
func loginsDuring(st *tdsStack, f func()) int64 {
	before := st.backend.Stats().Logins
	f()
	return st.backend.Stats().Logins - before
}

// returned waits until a closed client's backend is back in the pool: a probe login of the
// same key is served without a backend login (the probe then closes, giving it back again).
func returned(t *testing.T, st *tdsStack, o poolLogin) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		var rc *rawClient
		if loginsDuring(st, func() { rc = mustPoolClient(t, st, o) }) == 0 {
			rc.c.Close()
			time.Sleep(50 * time.Millisecond) // the probe's own close
			return
		}
		rc.c.Close()
		if time.Now().After(deadline) {
			t.Fatal("a closed client's backend never came back to the pool")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// exec runs a batch and returns its events.
func (rc *rawClient) exec(t *testing.T, sql string) []tds.Event {
	t.Helper()
	if err := rc.send(tds.PacketSQLBatch, (&tds.SQLBatch{Text: sql}).AppendSQLBatch(nil)); err != nil {
		t.Fatal(err)
	}
	msg, err := rc.recv()
	if err != nil {
		t.Fatalf("%q: %v", sql, err)
	}
	return events(t, msg)
}

func printed(evs []tds.Event) []string {
	var out []string
	for _, ev := range evs {
		if ev.Token == tds.TokenInfo || ev.Token == tds.TokenError {
			out = append(out, ev.Message.Text)
		}
	}
	return out
}

// Client A leaves a temp table, another database and changed options behind; client B, served
// by the same backend without a login, sees none of it and never sees the reset's tokens. Over
// each backend encryption of the module-owned leg.
func TestSessionPoolIsolatesClients(t *testing.T) {
	for _, lc := range backendLegCases {
		if lc.leg != "module" {
			continue
		}
		t.Run(lc.name, func(t *testing.T) {
			st := startTDSStack(t, tdsStackOptions{capacity: 4, leg: "module", backendEnc: lc.enc, standinEnc: lc.standin, bucket: sessionPool})
			before := st.backend.Stats()
			a := mustPoolClient(t, st, poolLogin{})
			for _, q := range []string{"CREATE TABLE #left_behind (x int)", "SET NOCOUNT ON", "USE master"} {
				if evs := a.exec(t, q); len(evs) == 0 {
					t.Fatalf("%q: no reply", q)
				}
			}
			a.c.Close()

			// B logs in until the pool has A's backend back (A's close reaches the proxy on
			// another worker); each miss is a real login, counted below.
			var b *rawClient
			var loginEvents []tds.Event
			deadline := time.Now().Add(5 * time.Second)
			for {
				b, loginEvents = poolClient(t, st, poolLogin{})
				if st.backend.Stats().Logins-before.Logins == 1 || time.Now().After(deadline) {
					break
				}
				b.c.Close()
				time.Sleep(20 * time.Millisecond)
			}
			if got := st.backend.Stats().Logins - before.Logins; got != 1 {
				t.Fatalf("%d backend logins; the second client was never served from the pool", got)
			}
			for _, ev := range loginEvents {
				if ev.Token == tds.TokenEnvChange && ev.EnvChange.Type == tds.EnvDatabase && ev.EnvChange.New != "tenant_a" {
					t.Fatalf("replayed login reply names database %q", ev.EnvChange.New)
				}
			}
			evs := b.exec(t, "IF DB_NAME() = 'tenant_a' PRINT 'db ok' ELSE PRINT 'db leaked'")
			for _, ev := range evs {
				if ev.Token == tds.TokenEnvChange {
					t.Fatalf("the client saw the reset's %v", ev.EnvChange)
				}
			}
			evs = append(evs, b.exec(t, "IF OBJECT_ID('tempdb..#left_behind') IS NULL PRINT 'temp ok' ELSE PRINT 'temp leaked'")...)
			if got := fmt.Sprint(printed(evs)); got != "[db ok temp ok]" {
				t.Fatalf("second client on the reused backend printed %s", got)
			}
			if got := st.backend.Stats().Resets - before.Resets; got != 1 {
				t.Fatalf("the stand-in saw %d resets, want 1 (the proxy's, on the reuse)", got)
			}
			if n := lc.logins(st.backend.Stats()) - lc.logins(before); n != 1 {
				t.Fatalf("%d logins over the leg's transport, want 1", n)
			}
		})
	}
}

// Logins that differ in user, database, app name, language or TDS version never share a
// backend: each logs in for real.
func TestSessionPoolKeysNeverShare(t *testing.T) {
	st := startTDSStack(t, tdsStackOptions{capacity: 8, leg: "module", bucket: sessionPool})
	st.backend.AddLogin("other", "Other-Passw0rd")
	base := poolLogin{}
	mustPoolClient(t, st, base).c.Close()
	returned(t, st, base)
	for _, o := range []poolLogin{
		{user: "other", password: "Other-Passw0rd"},
		{db: "master"},
		{app: "another-app"},
		{lang: "us_english"},
		{tdsVersion: tds.TDSVersion73B},
	} {
		var rc *rawClient
		if n := loginsDuring(st, func() { rc = mustPoolClient(t, st, o) }); n != 1 {
			t.Errorf("%+v: %d backend logins, want 1 (no other key's backend)", o, n)
		}
		rc.c.Close()
	}
}

// A wrong password on a warm key gets the server's own login error; a password changed on
// the server keeps working from the pool until reauth_after, then fails with the server's
// error, and the new one works.
func TestSessionPoolPasswordsAndReauth(t *testing.T) {
	const reauth = 2 * time.Second
	st := startTDSStack(t, tdsStackOptions{capacity: 4, leg: "module",
		bucket: map[string]any{"pool": map[string]any{"mode": "POOL_MODE_SESSION", "reauth_after": "2s"}}})
	old := poolLogin{}
	start := time.Now()
	mustPoolClient(t, st, old).c.Close()
	returned(t, st, old)

	wrong := poolLogin{user: "demo", password: "not-the-password"}
	rc, evs := poolClient(t, st, wrong)
	if m, ok := firstError(evs); !ok || m.Number != 18456 || hasLoginAck(evs) {
		t.Fatalf("wrong password on a warm key: %v", evs)
	}
	rc.c.Close()

	if !st.backend.SetPassword("demo", "New-Passw0rd") {
		t.Fatal("SetPassword")
	}
	var served *rawClient
	if n := loginsDuring(st, func() { served = mustPoolClient(t, st, old) }); n != 0 || time.Since(start) >= reauth {
		t.Skipf("the machine is too slow for the window (%s, %d logins)", time.Since(start), n)
	}
	served.c.Close()
	time.Sleep(reauth - time.Since(start) + 100*time.Millisecond)
	rc, evs = poolClient(t, st, old)
	if m, ok := firstError(evs); !ok || m.Number != 18456 {
		t.Fatalf("old password after reauth_after: %v", evs)
	}
	rc.c.Close()
	mustPoolClient(t, st, poolLogin{user: "demo", password: "New-Passw0rd"}).c.Close()
}

// A pooled backend killed while idle is absorbed: the next login logs in anew and works.
func TestSessionPoolIdleBackendKilled(t *testing.T) {
	st := startTDSStack(t, tdsStackOptions{capacity: 4, leg: "module", bucket: sessionPool})
	o := poolLogin{}
	mustPoolClient(t, st, o).c.Close()
	returned(t, st, o)
	for _, spid := range st.backend.SPIDs() {
		st.backend.Kill(spid)
	}
	time.Sleep(100 * time.Millisecond)
	var rc *rawClient
	if n := loginsDuring(st, func() { rc = mustPoolClient(t, st, o) }); n != 1 {
		t.Fatalf("%d backend logins after the idle backend was killed, want 1", n)
	}
	if got := fmt.Sprint(printed(rc.exec(t, "PRINT 'alive'"))); got != "[alive]" {
		t.Fatalf("printed %s", got)
	}
}

// A reused backend whose reset fails (the stand-in refuses it with 18059 and drops the
// connection), or that was killed just before its borrow, with no other idle backend of the
// key: the proxy logs a new backend in behind the client's back with the client's own login
// and resends the request. The client gets its answer and its session goes on.
func TestSessionPoolResetFailureLogsInANewBackend(t *testing.T) {
	for _, tc := range []struct {
		name   string
		break_ func(st *tdsStack)
	}{
		{"reset refused", func(st *tdsStack) { st.backend.FailResets(1) }},
		{"idle backend killed just before", func(st *tdsStack) {
			for _, spid := range st.backend.SPIDs() {
				st.backend.Kill(spid)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := startTDSStack(t, tdsStackOptions{capacity: 1, leg: "module", bucket: sessionPool})
			o := poolLogin{}
			mustPoolClient(t, st, o).c.Close()
			returned(t, st, o)
			tc.break_(st)
			before := st.backend.Stats()
			rc := mustPoolClient(t, st, o)
			for i, q := range []string{"PRINT 'first'", "PRINT 'second'"} {
				evs := rc.exec(t, q)
				want := fmt.Sprintf("[%s]", []string{"first", "second"}[i])
				if got := fmt.Sprint(printed(evs)); got != want {
					t.Fatalf("%q printed %s (events %v)", q, got, evs)
				}
			}
			if n := st.backend.Stats().Logins - before.Logins; n != 1 {
				t.Fatalf("%d backend logins for the client, want 1 (a new backend in place of the broken one)", n)
			}
			rc.c.Close()
			returned(t, st, o)
			if peak := st.backend.PeakConnections(); peak > 1 {
				t.Fatalf("backend peak %d connections with a cap of 1", peak)
			}
		})
	}
}

// Cap 1: a login of a key whose only backend is lent out waits for the slot; when the
// holder leaves, its backend comes back idle still holding that slot, and the waiter is
// served by it at once (no backend login), long before queue_timeout (5s).
func TestSessionPoolWaiterGetsItsKeysReturnedBackend(t *testing.T) {
	st := startTDSStack(t, tdsStackOptions{capacity: 1, leg: "module", bucket: sessionPool})
	o := poolLogin{}
	holder := mustPoolClient(t, st, o)
	before := st.backend.Stats().Logins
	type result struct {
		rc     *rawClient
		evs    []tds.Event
		waited time.Duration
	}
	done := make(chan result, 1)
	go func() {
		begin := time.Now()
		rc, evs := poolClient(t, st, o)
		done <- result{rc, evs, time.Since(begin)}
	}()
	time.Sleep(300 * time.Millisecond) // the waiter is queued for the slot by now
	holder.c.Close()
	var r result
	select {
	case r = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the waiting login never finished")
	}
	if !hasLoginAck(r.evs) {
		t.Fatalf("the waiter was refused after %s: %v", r.waited, r.evs)
	}
	defer r.rc.c.Close()
	if r.waited > 3*time.Second {
		t.Fatalf("the waiter was served after %s; the returned backend should serve it at once", r.waited)
	}
	if n := st.backend.Stats().Logins - before; n != 0 {
		t.Fatalf("%d backend logins for the waiter, want 0 (its key's backend came back)", n)
	}
	if got := fmt.Sprint(printed(r.rc.exec(t, "PRINT 'ok'"))); got != "[ok]" {
		t.Fatalf("printed %s", got)
	}
}

// Cap 2, three logins taking turns: a login that finds the bucket full of other logins' idle
// backends gets a slot by eviction, well within the queue timeout, and the stand-in never
// holds more than two backends (an evicted one gives its slot back once it is gone).
func TestSessionPoolEvictsForWaiters(t *testing.T) {
	st := startTDSStack(t, tdsStackOptions{capacity: 2, leg: "module", bucket: sessionPool})
	st.backend.AddLogin("u2", "Pw-u2-secret")
	st.backend.AddLogin("u3", "Pw-u3-secret")
	users := []poolLogin{{}, {user: "u2", password: "Pw-u2-secret"}, {user: "u3", password: "Pw-u3-secret"}}
	for round := range 3 {
		for _, u := range users {
			begin := time.Now()
			rc := mustPoolClient(t, st, u)
			if waited := time.Since(begin); waited > 2*time.Second {
				t.Fatalf("round %d %s: login took %s (queue_timeout is 5s; eviction should be immediate)", round, u.user, waited)
			}
			if got := fmt.Sprint(printed(rc.exec(t, "PRINT 'ok'"))); got != "[ok]" {
				t.Fatalf("printed %s", got)
			}
			rc.c.Close()
			deadline := time.Now().Add(2 * time.Second)
			for st.backend.OpenConnections() > 2 && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if n := st.backend.OpenConnections(); n > 2 {
				t.Fatalf("round %d %s: %d backend connections open with a cap of 2", round, u.user, n)
			}
		}
	}
	// An evicted backend's slot goes back only once its connection is gone, so the stand-in
	// never sees a third.
	if peak := st.backend.PeakConnections(); peak > 2 {
		t.Fatalf("backend peak %d connections with a cap of 2", peak)
	}
}

// TestSessionPoolLoginFigures measures (it asserts nothing about speed): the time of a
// go-mssqldb connect + SELECT 1 + close straight to the stand-in, through the unpooled module
// leg and through a pooled bucket, with the stand-in's login costing nothing and 5 ms. Run
// with
//
//	TDSPOOL_POOL_FIGURES=1 go test ./envoy/integration -run TestSessionPoolLoginFigures -v
func TestSessionPoolLoginFigures(t *testing.T) {
	if os.Getenv("TDSPOOL_POOL_FIGURES") == "" {
		t.Skip("a measurement; set TDSPOOL_POOL_FIGURES=1")
	}
	const cycles = 200
	for _, delay := range []time.Duration{0, 5 * time.Millisecond} {
		for _, path := range []string{"direct", "module leg", "pooled"} {
			o := tdsStackOptions{capacity: 4, leg: "module"}
			if path == "pooled" {
				o.bucket = sessionPool
			}
			st := startTDSStack(t, o)
			st.backend.SetLoginDelay(delay)
			addr := fmt.Sprintf("127.0.0.1:%d", st.port)
			if path == "direct" {
				addr = st.backend.Addr()
			}
			dsn := fmt.Sprintf("sqlserver://demo:Demo-Passw0rd@%s?database=tenant_a&encrypt=disable", addr)
			var took []time.Duration
			before := st.backend.Stats().Logins
			for range cycles {
				begin := time.Now()
				db, err := sql.Open("sqlserver", dsn)
				if err != nil {
					t.Fatal(err)
				}
				var n int
				if err := db.QueryRow("SELECT 1").Scan(&n); err != nil {
					t.Fatal(err)
				}
				db.Close()
				took = append(took, time.Since(begin))
			}
			slices.Sort(took)
			t.Logf("login cost %s, %s: connect+SELECT 1+close p50 %s p90 %s over %d cycles; %d backend logins",
				delay, path, took[cycles/2].Round(time.Microsecond), took[cycles*9/10].Round(time.Microsecond), cycles,
				st.backend.Stats().Logins-before)
		}
	}
}

// min_idle 2 with the operator's warm-up login: right after start the stand-in's audit log
// shows two logins of the warm-up user, and the first go-mssqldb client of that login is
// served by a warm backend without any backend login.
func TestSessionPoolWarmup(t *testing.T) {
	const secretEnv = "TDSPOOL_TEST_WARMUP_PASSWORD"
	t.Setenv(secretEnv, "Demo-Passw0rd")
	st := startTDSStack(t, tdsStackOptions{capacity: 4, leg: "module", envoyEnv: []string{secretEnv + "=Demo-Passw0rd"},
		bucket: map[string]any{"pool": map[string]any{"mode": "POOL_MODE_SESSION", "min_idle": 2,
			"warmup": map[string]any{"user": "demo", "database": "tenant_a", "app_name": "go-mssqldb", "password_env": secretEnv}}}})
	deadline := time.Now().Add(10 * time.Second)
	var warm []int
	for len(warm) < 2 && time.Now().Before(deadline) {
		warm = warm[:0]
		for _, r := range st.backend.Audit() {
			if r.Kind == "login" && r.Login == "demo" {
				warm = append(warm, r.SPID)
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	if len(warm) != 2 {
		t.Fatalf("audit shows %d warm-up logins (SPIDs %v) within 10 s of start, want 2", len(warm), warm)
	}
	time.Sleep(200 * time.Millisecond) // no third
	if n := st.backend.Stats().Logins; n != 2 {
		t.Fatalf("%d backend logins after warm-up, want 2", n)
	}
	dsn := fmt.Sprintf("sqlserver://demo:Demo-Passw0rd@127.0.0.1:%d?database=tenant_a&encrypt=disable&dial+timeout=5", st.port)
	db, err := sql.Open("sqlserver", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var spid int
	if err := db.QueryRow("SELECT @@SPID").Scan(&spid); err != nil {
		t.Fatal(err)
	}
	if n := st.backend.Stats().Logins; n != 2 || !slices.Contains(warm, spid) {
		t.Fatalf("first client: %d backend logins in all (want 2), @@SPID %d (warm backends %v)", n, spid, warm)
	}
}

// tdspoolctl kill of the lease an idle pooled backend holds (its id from tdspoolctl servers,
// which shows it idle, serving nobody) closes that backend and frees its slot.
func TestSessionPoolKillIdleLease(t *testing.T) {
	st := startTDSStack(t, tdsStackOptions{capacity: 2, leg: "module", redis: true, bucket: sessionPool})
	ctl := buildCtl(t)
	o := poolLogin{}
	rc := mustPoolClient(t, st, o)
	rc.c.Close()
	returned(t, st, o)
	if n := st.backend.OpenConnections(); n != 1 {
		t.Fatalf("%d backend connections, want the idle pooled one", n)
	}
	var lease string
	for deadline := time.Now().Add(3 * time.Second); lease == "" && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		var v struct {
			Backends []struct{ ID, State string }
		}
		out, err := exec.Command(ctl, "-redis", st.redis.Addr, "-json", "servers").CombinedOutput()
		if err != nil || json.Unmarshal(out, &v) != nil {
			t.Fatalf("tdspoolctl servers: %v\n%s", err, out)
		}
		if len(v.Backends) == 1 && v.Backends[0].State == "idle" {
			lease = v.Backends[0].ID
		}
	}
	if lease == "" {
		t.Fatal("the idle pooled backend is not shown idle by tdspoolctl servers")
	}
	out, err := exec.Command(ctl, "-redis", st.redis.Addr, "-by", "pool-test", "kill", lease).CombinedOutput()
	if err != nil {
		t.Fatalf("tdspoolctl kill %s: %v\n%s", lease, err, out)
	}
	deadline := time.Now().Add(3 * time.Second)
	for st.backend.OpenConnections() > 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := st.backend.OpenConnections(); n != 0 {
		t.Fatalf("%d backend connections 3 s after the kill, want 0 (tdspoolctl: %s)", n, out)
	}
	assertNoLeases(t, st.redis.Addr, "bucket-001")
	// The next client logs in for real on a new backend.
	if n := loginsDuring(st, func() { mustPoolClient(t, st, o).c.Close() }); n != 1 {
		t.Fatalf("%d backend logins after the kill, want 1", n)
	}
}
