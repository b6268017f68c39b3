package integration

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tdspool/tdspool/deployments/envoyconfig"
	"github.com/tdspool/tdspool/internal/stack"
	"github.com/tdspool/tdspool/standin"
	"github.com/tdspool/tdspool/tds"
)

type spineEnv struct {
	envoy    *stack.Envoy
	listener string
}

// startSpine starts Envoy with two buckets whose clusters reach the two echo backends.
func startSpine(t *testing.T, moduleDir, defaultBucket, fallbackCluster string, b1, b2 *standin.Server) *spineEnv {
	t.Helper()
	listenPort, _ := stack.FreePort()
	adminPort, _ := stack.FreePort()
	filterCfg := fmt.Sprintf(`{
  "listener": {"encryption": "OFF_ALLOWED"},
  "buckets": [
    {"name": "bucket-001", "cluster": "bucket_001", "max_connections": 10},
    {"name": "bucket-002", "cluster": "bucket_002", "max_connections": 10}
  ],
  "default_bucket": %q
}`, defaultBucket)
	cfg, err := envoyconfig.Render(envoyconfig.Params{
		ListenerPort: listenPort, AdminPort: adminPort, FilterConfigJSON: filterCfg,
		FallbackCluster: fallbackCluster,
		Buckets: []envoyconfig.Bucket{
			{Cluster: "bucket_001", Port: b1.Port()},
			{Cluster: "bucket_002", Port: b2.Port()},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	e, err := stack.StartEnvoy(stack.EnvoyOptions{Config: cfg, AdminPort: adminPort, ModuleDir: moduleDir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		e.Stop()
		if t.Failed() {
			t.Logf("envoy output:\n%s", e.Output())
		}
	})
	assertABIMatched(t, e)
	return &spineEnv{envoy: e, listener: fmt.Sprintf("127.0.0.1:%d", listenPort)}
}

// assertABIMatched waits (bounded) for Envoy's ABI line: Envoy can answer /ready before the
// line it logged at load has been copied from its stderr pipe into the output buffer.
func assertABIMatched(t *testing.T, e *stack.Envoy) {
	t.Helper()
	abiLine := regexp.MustCompile(`Dynamic module ABI version \S+ (matched|is deprecated)[^\n]*`)
	var line string
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if line = abiLine.FindString(e.Output()); line != "" || time.Now().After(deadline) {
			break
		}
	}
	if line == "" {
		t.Fatalf("no ABI version line in the Envoy log")
	}
	if !strings.Contains(line, "matched") {
		t.Fatalf("module/Envoy ABI mismatch: %s", line)
	}
	t.Logf("envoy: %s", line)
}

func TestRelaysThroughTheClusterTheFilterChose(t *testing.T) {
	b1, b2 := startBucket(t, "bucket-one"), startBucket(t, "bucket-two")
	for _, tc := range []struct {
		defaultBucket, fallback, wantTag string
	}{
		// tcp_proxy's own cluster points at the other bucket each time: only the filter's
		// choice can explain which backend answers.
		{"bucket-002", "bucket_001", "bucket-two"},
		{"bucket-001", "bucket_002", "bucket-one"},
	} {
		t.Run(tc.defaultBucket, func(t *testing.T) {
			env := startSpine(t, "", tc.defaultBucket, tc.fallback, b1, b2)
			rc := dialRaw(t, env.listener)
			if evs := rc.login(t, "app", ""); !hasLoginAck(evs) {
				t.Fatalf("no LOGINACK through the proxy: %v", evs)
			}
			for i := 0; i < 3; i++ {
				if got := rc.batch(t, "PRINT @@SERVERNAME"); got != tc.wantTag {
					t.Fatalf("batch %d answered by %q, want %q", i, got, tc.wantTag)
				}
			}
			rc.c.Close()

			bucket := tc.defaultBucket
			waitStat(t, env.envoy, "tdspool.connections_active", 0)
			stats, err := env.envoy.Stats()
			if err != nil {
				t.Fatal(err)
			}
			for name, want := range map[string]uint64{
				"tdspool.connections_total":                              1,
				"tdspool.bucket." + bucket + ".sessions_total":           1,
				"tdspool.bucket." + bucket + ".sessions_active":          0,
				"tdspool.bucket." + bucket + ".slot_granted_total":       1,
				"tdspool.bucket." + bucket + ".slot_released_total":      1,
				"tdspool.bucket." + bucket + ".requests_sql_batch_total": 3,
				"tdspool.bucket." + bucket + ".responses_total":          3,
				"tdspool.bucket." + bucket + ".login_ok_total":           1,
				"tdspool.bucket." + bucket + ".max_connections":          10,
				"tdspool.panics_total":                                   0,
			} {
				if got, ok := stats[name]; !ok || got != want {
					t.Errorf("%s = %d (present=%v), want %d", name, got, ok, want)
				}
			}
			prom, err := env.envoy.Admin("/stats/prometheus")
			if err != nil {
				t.Fatal(err)
			}
			series := regexp.MustCompile(`(?m)^\S*tdspool_bucket_rx_bytes_total\{[^}]*bucket="` + bucket + `"[^}]*\} [1-9]\d*`).FindString(prom)
			if series == "" {
				t.Fatalf("no per-bucket tdspool series in /stats/prometheus:\n%s", grepLines(prom, "tdspool"))
			}
			t.Logf("prometheus: %s", series)
		})
	}
}

func TestPanicInFilterClosesOnlyThatConnection(t *testing.T) {
	dir, err := stack.ModuleDir()
	if err != nil {
		t.Fatal(err)
	}
	panicDir := filepath.Join(dir, "panictest")
	if _, err := os.Stat(filepath.Join(panicDir, "libtdspool.so")); err != nil {
		t.Fatalf("panic-test module missing (make build-panictest): %v", err)
	}
	b1, b2 := startBucket(t, "bucket-one"), startBucket(t, "bucket-two")
	env := startSpine(t, panicDir, "bucket-001", "bucket_001", b1, b2)

	for i := 0; i < 3; i++ {
		rc := dialRaw(t, env.listener)
		if _, err := rc.c.Write([]byte("TDSPOOL-PANIC")); err != nil {
			t.Fatal(err)
		}
		rc.expectClosed(t)

		// Envoy is alive and the next connection is served.
		next := dialRaw(t, env.listener)
		if evs := next.login(t, "app", ""); !hasLoginAck(evs) {
			t.Fatalf("login after a panic failed: %v", evs)
		}
		if got := next.batch(t, "PRINT @@SERVERNAME"); got != "bucket-one" {
			t.Fatalf("batch after panic answered by %q", got)
		}
		next.c.Close()
	}
	// A panic in the middle of a logged-in session (slot held) gives the slot back.
	rc := dialRaw(t, env.listener)
	if evs := rc.login(t, "app", ""); !hasLoginAck(evs) {
		t.Fatalf("login failed: %v", evs)
	}
	if err := rc.send(tds.PacketSQLBatch, []byte("select 'TDSPOOL-PANIC'")); err != nil {
		t.Fatal(err)
	}
	rc.expectClosed(t)
	if exited, err := env.envoy.Exited(); exited {
		t.Fatalf("Envoy exited: %v", err)
	}
	waitStat(t, env.envoy, "tdspool.panics_total", 4)
	waitStat(t, env.envoy, "tdspool.connections_active", 0)
	stats, _ := env.envoy.Stats()
	if g, r := stats["tdspool.bucket.bucket-001.slot_granted_total"], stats["tdspool.bucket.bucket-001.slot_released_total"]; g != r || g == 0 {
		t.Fatalf("after panics: slots granted %d, released %d", g, r)
	}
	if !strings.Contains(env.envoy.Output(), "panic in on_read") {
		t.Errorf("panic not logged")
	}
}

func TestEnvoyRefusesABadConfigWithTheReason(t *testing.T) {
	adminPort, _ := stack.FreePort()
	listenPort, _ := stack.FreePort()
	cfg, err := envoyconfig.Render(envoyconfig.Params{
		ListenerPort: listenPort, AdminPort: adminPort,
		FilterConfigJSON: `{"buckets": [{"name": "Bad Name", "cluster": "bucket_001"}], "default_bucket": "nope"}`,
		Buckets:          []envoyconfig.Bucket{{Cluster: "bucket_001", Port: 1}},
	})
	if err != nil {
		t.Fatal(err)
	}
	out, err := stack.Validate(cfg, "")
	if err == nil {
		t.Fatalf("envoy --mode validate accepted a bad config:\n%s", out)
	}
	for _, want := range []string{
		`buckets[0].name: "Bad Name" must match`,
		"buckets[0].max_connections: required",
		`default_bucket: "nope" is not a configured bucket`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("validate output lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("validate output:\n%s", out)
	}

	// A serving Envoy refuses it too (exits instead of starting the listener).
	if e, err := stack.StartEnvoy(stack.EnvoyOptions{Config: cfg, AdminPort: adminPort, ReadyWait: 15 * time.Second}); err == nil {
		e.Stop()
		t.Fatal("Envoy started with a bad tdspool config")
	} else if !strings.Contains(err.Error(), "is not a configured bucket") {
		t.Errorf("Envoy's refusal does not carry the reason: %v", err)
	}
}

func waitStat(t *testing.T, e *stack.Envoy, name string, want uint64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	var got uint64
	for time.Now().Before(deadline) {
		stats, err := e.Stats()
		if err == nil {
			if got = stats[name]; got == want {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s = %d, want %d", name, got, want)
}

func grepLines(s, sub string) string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		if strings.Contains(sc.Text(), sub) {
			out = append(out, sc.Text())
		}
	}
	return strings.Join(out, "\n")
}
