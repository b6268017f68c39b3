package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tdspool/tdspool/deployments/envoyconfig"
	"github.com/tdspool/tdspool/internal/stack"
	"github.com/tdspool/tdspool/standin"
)

// Drains: Envoy's own drains (the parent of a hot restart, /drain_listeners?graceful, an LDS
// update of the listener) reach tdspool through its bootstrap extension; a session in a
// transaction then closes when it ends, the others at timeouts.drain_timeout.

// drainTimeout is the listeners' timeouts.drain_timeout in these tests: long enough that an
// early close stands out, short enough for the suite.
const drainTimeout = 5 * time.Second

type drainStack struct {
	backend *standin.Server
	redis   *stack.Redis
	params  envoyconfig.Params
	yaml    []byte
}

// newDrainStack renders the config of a listener named "tds" whose tdspool config has
// stat_prefix "tds" (so an LDS update of it drains it), in front of one stand-in, with Redis.
func newDrainStack(t *testing.T) *drainStack {
	t.Helper()
	d := &drainStack{backend: startBucket(t, "bucket-001"), redis: startRedis(t)}
	d.params = envoyconfig.Params{Buckets: []envoyconfig.Bucket{{Cluster: "bucket_001", Port: d.backend.Port()}}}
	d.params.FilterConfigJSON = d.filterConfig(t, "drain-a")
	d.params.ListenerPort, _ = stack.FreePort()
	d.params.AdminPort, _ = stack.FreePort()
	var err error
	if d.yaml, err = envoyconfig.Render(d.params); err != nil {
		t.Fatal(err)
	}
	return d
}

func (d *drainStack) filterConfig(t *testing.T, proxyID string) string {
	t.Helper()
	js, err := json.Marshal(map[string]any{
		"proxy_id":    proxyID,
		"stat_prefix": "tds",
		"listener":    map[string]any{"encryption": "OFF_ALLOWED"},
		"buckets": []map[string]any{{"name": "bucket-001", "cluster": "bucket_001", "max_connections": 4,
			"queue_timeout": "5s"}},
		"default_bucket": "bucket-001",
		"timeouts":       map[string]any{"drain_timeout": drainTimeout.String()},
		"redis": map[string]any{"addresses": []string{d.redis.Addr}, "heartbeat_interval": "0.5s",
			"lease_ttl": "3s", "call_timeout": "0.2s"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return string(js)
}

func (d *drainStack) addr() string { return fmt.Sprintf("127.0.0.1:%d", d.params.ListenerPort) }

func (d *drainStack) start(t *testing.T, yaml []byte, args ...string) *stack.Envoy {
	t.Helper()
	e, err := stack.StartEnvoy(stack.EnvoyOptions{Config: yaml, AdminPort: d.params.AdminPort, Args: args})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		e.Stop()
		if t.Failed() {
			t.Logf("envoy %v output (tail):\n%s", args, tailLines(e.Output(), 60))
		}
	})
	return e
}

// drainSessions opens the two sessions every drain test follows: idle (logged in, one query
// answered, then quiet) and inTx (inside an open transaction with a row written).
func (d *drainStack) drainSessions(t *testing.T) (idle, inTx *rawClient) {
	t.Helper()
	idle, inTx = dialRaw(t, d.addr()), dialRaw(t, d.addr())
	for _, c := range []*rawClient{idle, inTx} {
		_ = c.c.SetDeadline(time.Now().Add(60 * time.Second))
		if !hasLoginAck(c.login(t, "app", "tenant_a")) {
			t.Fatal("login through the proxy failed")
		}
	}
	if msg := idle.batch(t, "SELECT 1"); msg != "" {
		t.Fatalf("SELECT 1: %s", msg)
	}
	if msg := inTx.batch(t, "CREATE TABLE drained (id int); BEGIN TRAN; INSERT INTO drained VALUES (1)"); msg != "" {
		t.Fatalf("open transaction: %s", msg)
	}
	return idle, inTx
}

// closedWithin reads until the proxy closes c, and says how long that took from since.
func closedWithin(c *rawClient, since time.Time, limit time.Duration) (time.Duration, error) {
	_ = c.c.SetReadDeadline(since.Add(limit))
	_, err := io.Copy(io.Discard, c.c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return 0, fmt.Errorf("still open after %s", limit)
	}
	return time.Since(since), nil
}

// checkDrainedSessions is what every drain must do to the two sessions: the one in a
// transaction gets its COMMIT answered and is closed right after; the idle one is left alone
// until the drain timeout and closed then (the drain began after before); tdspool counted both,
// and nothing stays leased. newConn, when not nil, must be served (by the new listener or
// process) and see the committed row.
func (d *drainStack) checkDrainedSessions(t *testing.T, before time.Time, idle, inTx *rawClient, draining, stats *stack.Envoy, newConn func() *rawClient) {
	t.Helper()
	waitFor(t, 10*time.Second, "tdspool's drain to begin", func() bool {
		return strings.Contains(draining.Output(), "draining config (stat_prefix \"tds\")")
	})
	time.Sleep(200 * time.Millisecond) // the drain reaches the sessions (posted to their workers)
	if msg := inTx.batch(t, "COMMIT"); msg != "" {
		t.Fatalf("COMMIT while draining: %s", msg)
	}
	if took, err := closedWithin(inTx, time.Now(), time.Second); err != nil {
		t.Fatalf("session in a transaction after its COMMIT: %v", err)
	} else {
		t.Logf("session in a transaction: COMMIT answered, closed %s after it", took.Round(time.Millisecond))
	}
	took, err := closedWithin(idle, before, drainTimeout+10*time.Second)
	if err != nil {
		t.Fatalf("idle session: %v", err)
	}
	t.Logf("idle session closed %s after the drain was asked for (drain_timeout %s)", took.Round(time.Millisecond), drainTimeout)
	if took < drainTimeout {
		t.Fatalf("idle session closed after %s, before the drain timeout %s", took, drainTimeout)
	}
	if newConn != nil {
		c := newConn()
		if !hasLoginAck(c.login(t, "app", "tenant_a")) {
			t.Fatal("a new login after the drain failed")
		}
		if msg := c.batch(t, "IF (SELECT COUNT(*) FROM drained) <> 1 RAISERROR('row lost', 16, 1)"); msg != "" {
			t.Fatalf("after the drain: %s", msg)
		}
		c.c.Close()
	}
	const done, timeout = "tdspool.listener.tds.drain_sessions_closed_total", "tdspool.listener.tds.drain_sessions_timed_out_total"
	var st map[string]uint64
	waitFor(t, 10*time.Second, "drain stats 1 and 1", func() bool {
		st, _ = stats.Stats()
		return st[done] == 1 && st[timeout] == 1
	})
	deadline := time.Now().Add(5 * time.Second)
	for d.backend.Sessions() != 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := d.backend.Sessions(); n != 0 {
		t.Fatalf("backend still has %d sessions", n)
	}
	assertNoLeases(t, d.redis.Addr, "bucket-001")
}

func adminPost(t *testing.T, port int, path string) {
	t.Helper()
	resp, err := http.Post(fmt.Sprintf("http://127.0.0.1:%d%s", port, path), "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST %s: %s %s", path, resp.Status, body)
	}
}

// TestDrainListenersGraceful: /drain_listeners?graceful starts Envoy's server-wide drain (the
// listener then takes no new connection). It is asked as the Kubernetes preStop hook asks it,
// &inboundonly on an INBOUND listener: the event tdspool gets is the same.
func TestDrainListenersGraceful(t *testing.T) {
	d := newDrainStack(t)
	inbound := strings.Replace(string(d.yaml), "\n  - name: tds\n", "\n  - name: tds\n    traffic_direction: INBOUND\n", 1)
	e := d.start(t, []byte(inbound), "--drain-time-s", "30")
	idle, inTx := d.drainSessions(t)
	before := time.Now()
	adminPost(t, d.params.AdminPort, "/drain_listeners?graceful&inboundonly")
	d.checkDrainedSessions(t, before, idle, inTx, e, e, nil)

	// The stat_prefix is a label in Prometheus, beside the bucket (the template's stats_tags).
	prom, err := e.Admin("/stats/prometheus")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`envoy_tdspool_drain_sessions_closed_total{listener="tds"} 1`,
		`envoy_tdspool_bucket_slot_granted_total{listener="tds",bucket="bucket-001"} 2`} {
		if !strings.Contains(prom, want+"\n") {
			t.Errorf("/stats/prometheus has no line %s:\n%s", want, grepLines(prom, "tdspool_bucket_slot_granted"))
		}
	}
}

// TestDrainHotRestart: a second Envoy started with --restart-epoch 1 takes the listener over
// and tells the first to drain; the first's sessions finish as above while the second serves
// new connections. The parent lives on for --parent-shutdown-time-s (60 s here), so every
// close seen here is tdspool's.
func TestDrainHotRestart(t *testing.T) {
	d := newDrainStack(t)
	baseID := fmt.Sprint(d.params.AdminPort) // unique per run: the shared memory and sockets are named by it
	hot := []string{"--base-id", baseID, "--drain-time-s", "30", "--parent-shutdown-time-s", "60"}
	parent := d.start(t, d.yaml, append(hot, "--restart-epoch", "0")...)
	idle, inTx := d.drainSessions(t)
	before := time.Now()
	// The child's config differs only in proxy_id, which its leases carry.
	childParams := d.params
	childParams.FilterConfigJSON = d.filterConfig(t, "drain-child")
	childYAML, err := envoyconfig.Render(childParams)
	if err != nil {
		t.Fatal(err)
	}
	child := d.start(t, childYAML, append(hot, "--restart-epoch", "1")...)
	d.checkDrainedSessions(t, before, idle, inTx, parent, child, func() *rawClient { return dialRaw(t, d.addr()) })
	// A new session is the child's: its lease carries the child's proxy_id.
	c := dialRaw(t, d.addr())
	if !hasLoginAck(c.login(t, "app", "tenant_a")) {
		t.Fatal("login after the hot restart failed")
	}
	rdb := redis.NewClient(&redis.Options{Addr: d.redis.Addr})
	defer rdb.Close()
	leases, err := rdb.ZRange(context.Background(), "tdspool:{bucket-001}:h", 0, -1).Result()
	if err != nil || len(leases) != 1 || !strings.HasPrefix(leases[0], "drain-child~") {
		t.Fatalf("leases while a new session is open: %v (%v), want one of drain-child", leases, err)
	}
	c.c.Close()
	assertNoLeases(t, d.redis.Addr, "bucket-001")
	if exited, _ := parent.Exited(); exited {
		t.Fatal("the parent exited before its shutdown time: the closes were not tdspool's")
	}
}

// ldsConfig turns the rendered bootstrap into file-based LDS: the bootstrap keeps the clusters
// and the bootstrap extension, and the listener moves to a file Envoy watches.
func ldsConfig(t *testing.T, rendered []byte, ldsPath string) (bootstrap, lds []byte) {
	t.Helper()
	s := string(rendered)
	head, rest, ok1 := strings.Cut(s, "static_resources:\n  listeners:\n")
	listeners, clusters, ok2 := strings.Cut(rest, "  clusters:\n")
	if !ok1 || !ok2 || !strings.Contains(listeners, "\n  - name: tds\n") {
		t.Fatal("the rendered config does not have the expected listener layout")
	}
	bootstrap = []byte(head + "node: {id: drain-test, cluster: drain-test}\ndynamic_resources:\n  lds_config:\n    path_config_source: {path: " + ldsPath + "}\n" +
		"    resource_api_version: V3\nstatic_resources:\n  clusters:\n" + clusters)
	lds = []byte("resources:\n" + strings.Replace(listeners, "\n  - name: tds\n",
		"\n  - \"@type\": type.googleapis.com/envoy.config.listener.v3.Listener\n    name: tds\n", 1))
	return bootstrap, lds
}

// writeLDS replaces the LDS file the way Envoy expects to see it change: a rename over it.
func writeLDS(t *testing.T, path string, lds []byte) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, lds, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// TestDrainListenerUpdate: an LDS update of listener "tds" (a new tdspool config) drains the
// configs it replaced, and new connections get the new config; removing the listener drains
// that one.
func TestDrainListenerUpdate(t *testing.T) {
	d := newDrainStack(t)
	ldsPath := filepath.Join(t.TempDir(), "lds.yaml")
	bootstrap, lds := ldsConfig(t, d.yaml, ldsPath)
	writeLDS(t, ldsPath, lds)
	e := d.start(t, bootstrap, "--drain-time-s", "30")
	waitFor(t, 10*time.Second, "the LDS listener", func() bool {
		c, err := net.Dial("tcp", d.addr())
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	idle, inTx := d.drainSessions(t)

	newParams := d.params
	newParams.FilterConfigJSON = d.filterConfig(t, "drain-updated")
	rendered, err := envoyconfig.Render(newParams)
	if err != nil {
		t.Fatal(err)
	}
	_, newLDS := ldsConfig(t, rendered, ldsPath)
	before := time.Now()
	writeLDS(t, ldsPath, newLDS)
	waitFor(t, 10*time.Second, "the listener update", func() bool {
		st, _ := e.Stats()
		return st["listener_manager.lds.update_success"] >= 2
	})
	d.checkDrainedSessions(t, before, idle, inTx, e, e, func() *rawClient { return dialRaw(t, d.addr()) })
	// A new session is the new config's: its lease carries the new proxy_id.
	c := dialRaw(t, d.addr())
	if !hasLoginAck(c.login(t, "app", "tenant_a")) {
		t.Fatal("login after the update failed")
	}
	rdb := redis.NewClient(&redis.Options{Addr: d.redis.Addr})
	defer rdb.Close()
	leases, err := rdb.ZRange(context.Background(), "tdspool:{bucket-001}:h", 0, -1).Result()
	if err != nil || len(leases) != 1 || !strings.HasPrefix(leases[0], "drain-updated~") {
		t.Fatalf("leases while a new session is open: %v (%v), want one of drain-updated", leases, err)
	}

	// Removing the listener drains the new config: a transaction open on it gets its COMMIT
	// answered, then the connection closes (Envoy alone would wait for its 30 s drain time).
	if msg := c.batch(t, "BEGIN TRAN; INSERT INTO drained VALUES (2)"); msg != "" {
		t.Fatalf("open transaction: %s", msg)
	}
	writeLDS(t, ldsPath, []byte("resources: []\n"))
	waitFor(t, 10*time.Second, "tdspool's drain of the removed listener", func() bool {
		return strings.Contains(e.Output(), "listener tds removed: draining config")
	})
	time.Sleep(200 * time.Millisecond)
	if msg := c.batch(t, "COMMIT"); msg != "" {
		t.Fatalf("COMMIT while the removed listener drains: %s", msg)
	}
	if took, err := closedWithin(c, time.Now(), time.Second); err != nil {
		t.Fatalf("session after its COMMIT on a removed listener: %v", err)
	} else {
		t.Logf("removed listener: COMMIT answered, closed %s after it", took.Round(time.Millisecond))
	}
	waitFor(t, 5*time.Second, "drain_sessions_closed_total 2", func() bool {
		st, _ := e.Stats()
		return st["tdspool.listener.tds.drain_sessions_closed_total"] == 2
	})
	assertNoLeases(t, d.redis.Addr, "bucket-001")
}
