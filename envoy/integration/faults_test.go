package integration

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	mssql "github.com/microsoft/go-mssqldb"

	"github.com/tdspool/tdspool/deployments/envoyconfig"
	"github.com/tdspool/tdspool/internal/stack"
	"github.com/tdspool/tdspool/internal/testcert"
	"github.com/tdspool/tdspool/standin"
	"github.com/tdspool/tdspool/standin/compat"
	"github.com/tdspool/tdspool/standin/standintest"
)

// tdsStack is Envoy + tdspool in front of one standin backend (bucket-001, database
// tenant_a, login demo / Demo-Passw0rd), optionally with Redis and client TLS.
type tdsStack struct {
	backend *standin.Server
	envoy   *stack.Envoy
	redis   *stack.Redis
	port    int
	cert    string // the listener's certificate when tls is on
}

type tdsStackOptions struct {
	capacity  int
	redis     bool
	tls       bool           // TDS 7 TLS in the filter and a TDS 8 chain in Envoy
	extra     map[string]any // merged into the filter config
	envoyEnv  []string       // extra environment for the Envoy process
	moduleDir string         // a module build other than bin/ (e.g. bin/stackmove)
	// The backend leg (see backendleg_test.go); zero values: the leg named by
	// TDSPOOL_BACKEND_LEG (tcp_proxy when unset), plaintext, a stand-in with optional TLS.
	leg        string
	backendEnc string
	standinEnc standin.Encryption
	legTLS     map[string]any // merged into the module leg's backend_tls
	lean       bool           // the stand-in's lean mode (SELECT 1, STREAM <bytes>)
	bucket     map[string]any // merged into the bucket's config (e.g. its pool)
}

func startTDSStack(t *testing.T, o tdsStackOptions) *tdsStack {
	t.Helper()
	backend := standintest.Start(t, standin.Config{
		ServerName: "bucket-001", Users: map[string]string{"demo": "Demo-Passw0rd"},
		Databases: []string{"tenant_a"}, DataDir: t.TempDir(), Encryption: o.standinEnc, Lean: o.lean,
	})
	s := &tdsStack{backend: backend}
	listener := map[string]any{"encryption": "OFF_ALLOWED"}
	params := envoyconfig.Params{Buckets: []envoyconfig.Bucket{{Cluster: "bucket_001", Port: backend.Port()}}}
	if o.tls {
		cert, key, err := testcert.Write(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		s.cert = cert
		listener["tls_cert_file"], listener["tls_key_file"] = cert, key
		params.TDS8CertFile, params.TDS8KeyFile = cert, key
	}
	bucket := map[string]any{"name": "bucket-001", "cluster": "bucket_001", "max_connections": o.capacity,
		"queue_timeout": "5s"}
	configureLeg(t, bucket, &params.Buckets[0], backend, o)
	for k, v := range o.bucket {
		bucket[k] = v
	}
	cfg := map[string]any{
		"listener":       listener,
		"buckets":        []map[string]any{bucket},
		"default_bucket": "bucket-001",
	}
	if o.redis {
		s.redis = startRedis(t)
		cfg["redis"] = map[string]any{"addresses": []string{s.redis.Addr}, "heartbeat_interval": "0.5s",
			"lease_ttl": "3s", "call_timeout": "0.2s"}
	}
	for k, v := range o.extra {
		cfg[k] = v
	}
	js, _ := json.Marshal(cfg)
	params.FilterConfigJSON = string(js)
	params.ListenerPort, _ = stack.FreePort()
	params.AdminPort, _ = stack.FreePort()
	s.port = params.ListenerPort
	yaml, err := envoyconfig.Render(params)
	if err != nil {
		t.Fatal(err)
	}
	s.envoy, err = stack.StartEnvoy(stack.EnvoyOptions{Config: yaml, AdminPort: params.AdminPort, Env: o.envoyEnv, ModuleDir: o.moduleDir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.envoy.Stop()
		if t.Failed() {
			t.Logf("envoy output (tail):\n%s", tailLines(s.envoy.Output(), 60))
		}
	})
	return s
}

// target is where the compatibility workloads connect.
func (s *tdsStack) target() compat.Target {
	return compat.Target{Host: "127.0.0.1", Port: s.port, User: "demo", Password: "Demo-Passw0rd",
		Database: "tenant_a", CAFile: s.cert, HostInCert: "localhost"}
}

func (s *tdsStack) db(t *testing.T, maxConns int) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlserver", fmt.Sprintf(
		"sqlserver://demo:Demo-Passw0rd@127.0.0.1:%d?database=tenant_a&encrypt=disable&dial+timeout=5&connection+timeout=20", s.port))
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(maxConns)
	db.SetMaxIdleConns(maxConns)
	t.Cleanup(func() { db.Close() })
	return db
}

// waitIdle waits until the proxy and the backend hold no session and slots balance.
func (s *tdsStack) waitIdle(t *testing.T) {
	t.Helper()
	waitStat(t, s.envoy, "tdspool.connections_active", 0)
	deadline := time.Now().Add(5 * time.Second)
	for s.backend.Sessions() != 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := s.backend.Sessions(); n != 0 {
		t.Fatalf("backend still holds %d sessions", n)
	}
	stats, _ := s.envoy.Stats()
	if g, r := stats["tdspool.bucket.bucket-001.slot_granted_total"], stats["tdspool.bucket.bucket-001.slot_released_total"]; g != r {
		t.Fatalf("slots granted %d, released %d", g, r)
	}
	if s.redis != nil {
		assertNoLeases(t, s.redis.Addr, "bucket-001")
	}
}

func TestPinReasonsCountedForRealDriverTraffic(t *testing.T) {
	s := startTDSStack(t, tdsStackOptions{capacity: 4})
	db := s.db(t, 1)
	ctx := context.Background()
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct{ what, sql string }{
		{"set option", "SET NOCOUNT ON"},
		{"temp table", "CREATE TABLE #pins (id INT)"},
		{"prepare", "DECLARE @h INT; EXEC sp_prepare @h OUTPUT, N'@p INT', N'SELECT @p'; SELECT @h"},
	}
	for _, st := range steps {
		if _, err := conn.ExecContext(ctx, st.sql); err != nil {
			t.Fatalf("%s: %v", st.what, err)
		}
	}
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO #pins VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	stats, _ := s.envoy.Stats()
	for _, reason := range []string{"set_option", "temp_table", "prepared", "transaction"} {
		if stats["tdspool.bucket.bucket-001.pinned_"+reason] != 1 || stats["tdspool.bucket.bucket-001.pin_"+reason+"_total"] != 1 {
			t.Errorf("pin %s: gauge %d, total %d", reason, stats["tdspool.bucket.bucket-001.pinned_"+reason],
				stats["tdspool.bucket.bucket-001.pin_"+reason+"_total"])
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	stats, _ = s.envoy.Stats()
	if stats["tdspool.bucket.bucket-001.pinned_transaction"] != 0 || stats["tdspool.bucket.bucket-001.sessions_pinned"] != 1 {
		t.Errorf("after commit: pinned_transaction=%d sessions_pinned=%d",
			stats["tdspool.bucket.bucket-001.pinned_transaction"], stats["tdspool.bucket.bucket-001.sessions_pinned"])
	}
	conn.Close()
	db.Close()
	s.waitIdle(t)
	stats, _ = s.envoy.Stats()
	if stats["tdspool.bucket.bucket-001.sessions_pinned"] != 0 {
		t.Errorf("sessions_pinned = %d after close", stats["tdspool.bucket.bucket-001.sessions_pinned"])
	}
}

func TestClientKilledMidQueryReleasesEverything(t *testing.T) {
	s := startTDSStack(t, tdsStackOptions{capacity: 2, redis: true})
	db := s.db(t, 2)
	// Warm the bucket up in Redis (first grants wait out the coordinator's grace period).
	if err := db.Ping(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := conn.ExecContext(context.Background(), "WAITFOR DELAY '00:00:05'")
		done <- err
	}()
	time.Sleep(300 * time.Millisecond)
	// Kill the client's socket under the running query (no ATTENTION, no goodbye).
	if err := conn.Raw(func(dc any) error { return dc.(*mssql.Conn).Close() }); err != nil {
		t.Logf("close: %v", err)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("query did not end after the socket closed")
	}
	db.Close()
	s.waitIdle(t)
}

func TestRedisDownExistingSessionsContinueNewOnesWithinQuota(t *testing.T) {
	const capacity = 4
	s := startTDSStack(t, tdsStackOptions{capacity: capacity, redis: true})
	db := s.db(t, capacity)
	if err := db.Ping(); err != nil { // warm-up through the grace period
		t.Fatal(err)
	}
	ctx := context.Background()
	var held []*sql.Conn
	for i := 0; i < 2; i++ {
		c, err := db.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.PingContext(ctx); err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	s.redis.Kill()

	// Existing sessions are untouched by the outage.
	for i, c := range held {
		var n int
		if err := c.QueryRowContext(ctx, "SELECT 1").Scan(&n); err != nil || n != 1 {
			t.Fatalf("held session %d broke after Redis died: %v", i, err)
		}
	}
	// New sessions: admitted by the local fallback quota, never beyond the cap.
	var wg sync.WaitGroup
	var mu sync.Mutex
	admitted, refused := 0, 0
	for i := 0; i < 6; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			db2 := s.db(t, 1)
			defer db2.Close()
			cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
			defer cancel()
			c, err := db2.Conn(cctx)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				refused++
				if !strings.Contains(err.Error(), "pool exhausted") {
					t.Errorf("refusal is not the pool-exhausted error: %v", err)
				}
				return
			}
			admitted++
			time.Sleep(200 * time.Millisecond)
			c.Close()
		}()
	}
	peak := 0
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			mu.Lock()
			if n := s.backend.Sessions(); n > peak {
				peak = n
			}
			mu.Unlock()
			time.Sleep(2 * time.Millisecond)
		}
	}()
	wg.Wait()
	close(stop)
	t.Logf("Redis down: %d new sessions admitted, %d refused, backend peak %d (cap %d)", admitted, refused, peak, capacity)
	if peak > capacity {
		t.Fatalf("backend saw %d sessions during the outage, cap %d", peak, capacity)
	}
	stats, _ := s.envoy.Stats()
	if stats["tdspool.bucket.bucket-001.slot_fallback_total"] == 0 && admitted > 0 {
		t.Errorf("sessions admitted during the outage but none counted as fallback grants")
	}
	for _, c := range held {
		c.Close()
	}
	db.Close()
	waitStat(t, s.envoy, "tdspool.connections_active", 0)
}
