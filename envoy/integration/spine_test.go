package integration

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tdspool/tdspool/deployments/envoyconfig"
	"github.com/tdspool/tdspool/internal/stack"
)

// tagEcho is a TCP backend that echoes every read prefixed with its tag, so a test can tell
// which bucket answered.
type tagEcho struct {
	l    net.Listener
	tag  string
	wg   sync.WaitGroup
	port int
}

func startTagEcho(t *testing.T, tag string) *tagEcho {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := &tagEcho{l: l, tag: tag, port: l.Addr().(*net.TCPAddr).Port}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			e.wg.Add(1)
			go func() {
				defer e.wg.Done()
				defer c.Close()
				buf := make([]byte, 64<<10)
				for {
					n, err := c.Read(buf)
					if n > 0 {
						if _, werr := c.Write(append([]byte(e.tag), buf[:n]...)); werr != nil {
							return
						}
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() { l.Close(); e.wg.Wait() })
	return e
}

type spineEnv struct {
	envoy    *stack.Envoy
	listener string
}

// startSpine starts Envoy with two buckets whose clusters reach the two echo backends.
func startSpine(t *testing.T, moduleDir, defaultBucket, fallbackCluster string, b1, b2 *tagEcho) *spineEnv {
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
			{Cluster: "bucket_001", Port: b1.port},
			{Cluster: "bucket_002", Port: b2.port},
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
	assertABIMatched(t, e.Output())
	return &spineEnv{envoy: e, listener: fmt.Sprintf("127.0.0.1:%d", listenPort)}
}

func assertABIMatched(t *testing.T, log string) {
	t.Helper()
	line := regexp.MustCompile(`Dynamic module ABI version \S+ (matched|is deprecated)[^\n]*`).FindString(log)
	if line == "" {
		t.Fatalf("no ABI version line in the Envoy log")
	}
	if !strings.Contains(line, "matched") {
		t.Fatalf("module/Envoy ABI mismatch: %s", line)
	}
	t.Logf("envoy: %s", line)
}

// roundTrip sends msg and reads the echo of len(tag)+len(msg) bytes.
func roundTrip(t *testing.T, c net.Conn, msg string, tagLen int) string {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatalf("write: %v", err)
	}
	buf := make([]byte, tagLen+len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatalf("read echo: %v", err)
	}
	return string(buf)
}

func TestRelaysThroughTheClusterTheFilterChose(t *testing.T) {
	b1, b2 := startTagEcho(t, "B1:"), startTagEcho(t, "B2:")
	for _, tc := range []struct {
		defaultBucket, fallback, wantTag string
	}{
		// tcp_proxy's own cluster points at the other bucket each time: only the filter's
		// choice can explain which backend answers.
		{"bucket-002", "bucket_001", "B2:"},
		{"bucket-001", "bucket_002", "B1:"},
	} {
		t.Run(tc.defaultBucket, func(t *testing.T) {
			env := startSpine(t, "", tc.defaultBucket, tc.fallback, b1, b2)
			c, err := net.Dial("tcp", env.listener)
			if err != nil {
				t.Fatal(err)
			}
			// A TDS-framed first message (PRELOGIN header + 4 bytes), then plain bytes back.
			first := "\x12\x01\x00\x0c\x00\x00\x01\x00ping"
			if got := roundTrip(t, c, first, 3); got != tc.wantTag+first {
				t.Fatalf("first echo = %q, want tag %q", got, tc.wantTag)
			}
			second := "\x01\x01\x00\x0e\x00\x00\x01\x00second" // a SQL_BATCH-typed packet
			if got := roundTrip(t, c, second, 3); got != tc.wantTag+second {
				t.Fatalf("second echo = %q", got)
			}
			c.Close()

			bucket := tc.defaultBucket
			waitStat(t, env.envoy, "tdspool.connections_active", 0)
			stats, err := env.envoy.Stats()
			if err != nil {
				t.Fatal(err)
			}
			for name, want := range map[string]uint64{
				"tdspool.connections_total":                      1,
				"tdspool.bucket." + bucket + ".sessions_total":   1,
				"tdspool.bucket." + bucket + ".sessions_active":  0,
				"tdspool.bucket." + bucket + ".rx_bytes_total":   uint64(len(first) + len(second)),
				"tdspool.bucket." + bucket + ".tx_bytes_total":   uint64(2*3 + len(first) + len(second)),
				"tdspool.bucket." + bucket + ".rx_packets_total": 2,
				"tdspool.panics_total":                           0,
			} {
				if got, ok := stats[name]; !ok || got != want {
					t.Errorf("%s = %d (present=%v), want %d", name, got, ok, want)
				}
			}
			prom, err := env.envoy.Admin("/stats/prometheus")
			if err != nil {
				t.Fatal(err)
			}
			series := regexp.MustCompile(`(?m)^\S*tdspool_bucket_rx_bytes_total\{[^}]*bucket="` + bucket + `"[^}]*\} \d+`).FindString(prom)
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
	b1, b2 := startTagEcho(t, "B1:"), startTagEcho(t, "B2:")
	env := startSpine(t, panicDir, "bucket-001", "bucket_001", b1, b2)

	for i := 0; i < 3; i++ {
		c, err := net.Dial("tcp", env.listener)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write([]byte("TDSPOOL-PANIC")); err != nil {
			t.Fatal(err)
		}
		// The connection must end (EOF or reset), not hang and not echo.
		n, err := c.Read(make([]byte, 16))
		if n != 0 || err == nil || isTimeout(err) {
			t.Fatalf("panicking connection: read n=%d err=%v, want closed", n, err)
		}
		c.Close()

		// Envoy is alive and the next connection is served.
		c2, err := net.Dial("tcp", env.listener)
		if err != nil {
			t.Fatalf("Envoy stopped accepting after a panic: %v", err)
		}
		if got := roundTrip(t, c2, "after", 3); got != "B1:after" {
			t.Fatalf("echo after panic = %q", got)
		}
		c2.Close()
	}
	if exited, err := env.envoy.Exited(); exited {
		t.Fatalf("Envoy exited: %v", err)
	}
	waitStat(t, env.envoy, "tdspool.panics_total", 3)
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

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
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
