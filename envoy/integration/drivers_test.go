package integration

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tdspool/tdspool/standin/compat"
)

// TestGoMssqldbThroughEnvoy runs the backend compatibility workload through Envoy + tdspool
// in every go-mssqldb encryption mode: disable (no TLS), false (login-only TLS in the
// filter), true (full TLS in the filter) and strict (TDS 8, TLS in Envoy).
func TestGoMssqldbThroughEnvoy(t *testing.T) {
	st := startTDSStack(t, tdsStackOptions{capacity: 4, redis: true, tls: true,
		extra: map[string]any{"routes": []map[string]any{{"database": "tenant_a", "bucket": "bucket-001"}}}})
	e, target := st.envoy, st.target()
	for _, mode := range compat.GoEncryptModes {
		t.Run("encrypt="+mode, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			if err := compat.RunGo(ctx, target, mode, t.Logf); err != nil {
				t.Fatal(err)
			}
		})
	}

	// Everything is given back: backend sessions, Envoy sessions, slots and Redis leases.
	st.waitIdle(t)
	stats, _ := e.Stats()
	for _, k := range []string{"tls_none_total", "tls_login_only_total", "tls_full_total", "tls_strict_total"} {
		if stats["tdspool."+k] == 0 {
			t.Errorf("tdspool.%s = 0: that encryption mode was not exercised", k)
		}
	}
	t.Logf("sessions by TLS mode: none=%d login-only=%d full=%d strict=%d", stats["tdspool.tls_none_total"],
		stats["tdspool.tls_login_only_total"], stats["tdspool.tls_full_total"], stats["tdspool.tls_strict_total"])
}

// runDriverWorkloads runs the compatibility workload against target with go-mssqldb in each
// of its encryption modes, with mssql-jdbc in each of its (one JVM for all three) and, when
// python is set, with python-tds and pymssql in theirs, each as a subtest. recoveryAcked is
// whether mssql-jdbc's connection resiliency must be acknowledged: yes when the backend's
// own login reply reaches the client, never from a pool.
func runDriverWorkloads(t *testing.T, target compat.Target, python string, recoveryAcked bool) {
	t.Run("mssql-jdbc", func(t *testing.T) {
		j := requireJDBC(t)
		ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
		defer cancel()
		out, err := compat.RunJDBC(ctx, j, target, compat.JDBCModes...)
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		got, err := compat.JDBCRecoveryNegotiated(out)
		if err != nil || len(got) != len(compat.JDBCModes) {
			t.Fatalf("session recovery per mode: %v (%v)", got, err)
		}
		for i, acked := range got {
			if acked != recoveryAcked {
				t.Errorf("mssql-jdbc encrypt=%s: SESSIONRECOVERY acknowledged %v, want %v", compat.JDBCModes[i], acked, recoveryAcked)
			}
		}
	})
	for _, mode := range compat.GoEncryptModes {
		t.Run("go-mssqldb/"+mode, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			if err := compat.RunGo(ctx, target, mode, t.Logf); err != nil {
				t.Fatal(err)
			}
		})
	}
	if python == "" {
		return
	}
	for _, drv := range []struct {
		name  string
		run   func(context.Context, string, compat.Target, string) (string, error)
		modes []string
	}{{"python-tds", compat.RunPytds, compat.PytdsModes}, {"pymssql", compat.RunPymssql, compat.PymssqlModes}} {
		for _, mode := range drv.modes {
			t.Run(drv.name+"/"+mode, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
				defer cancel()
				if out, err := drv.run(ctx, python, target, mode); err != nil {
					t.Fatalf("%v\n%s", err, out)
				}
			})
		}
	}
}

// assertNoLeases checks the coordinator left no lease behind for bucket in Redis.
func assertNoLeases(t *testing.T, addr, bucket string) {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	defer rdb.Close()
	key := fmt.Sprintf("tdspool:{%s}:h", bucket)
	deadline := time.Now().Add(5 * time.Second)
	for {
		n, err := rdb.ZCard(context.Background(), key).Result()
		if err != nil {
			t.Fatalf("ZCARD %s: %v", key, err)
		}
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d leases left in %s", n, key)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestPythonDriversThroughEnvoy runs the compatibility workload with python-tds and pymssql
// (FreeTDS) through Envoy + tdspool, in each encryption mode those drivers have, and checks
// from tdspool's stats that the mode really was used on the client leg.
func TestPythonDriversThroughEnvoy(t *testing.T) {
	python := compat.FindPython()
	if python == "" {
		t.Fatal("no project Python (.venv): run `make setup`")
	}
	st := startTDSStack(t, tdsStackOptions{capacity: 4, tls: true})
	e, target := st.envoy, st.target()

	type run func(context.Context, string, compat.Target, string) (string, error)
	for _, drv := range []struct {
		name, module string
		run          run
		modes        map[string]string // driver mode → tdspool stat that must move
	}{
		{"python-tds", "pytds", compat.RunPytds, map[string]string{"off": "tls_none_total", "login-only": "tls_login_only_total", "full": "tls_full_total"}},
		{"pymssql", "pymssql", compat.RunPymssql, map[string]string{"off": "tls_none_total", "request": "tls_login_only_total", "require": "tls_full_total"}},
	} {
		if !compat.HasPythonModule(python, drv.module) {
			t.Fatalf("%s not installed in %s: run `make setup`", drv.name, python)
		}
		for mode, stat := range drv.modes {
			t.Run(drv.name+"/"+mode, func(t *testing.T) {
				before, _ := e.Stats()
				ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
				defer cancel()
				out, err := drv.run(ctx, python, target, mode)
				if err != nil {
					t.Fatalf("%v\n%s", err, out)
				}
				after, _ := e.Stats()
				if after["tdspool."+stat] == before["tdspool."+stat] {
					t.Errorf("tdspool.%s did not move: the %s mode was not used", stat, mode)
				}
			})
		}
	}
	st.waitIdle(t)
}

// TestTediousThroughEnvoy runs the compatibility workload with tedious (Node.js) through
// Envoy + tdspool in each of its encrypt settings, and checks the mode from tdspool's stats.
func TestTediousThroughEnvoy(t *testing.T) {
	node, modules := compat.FindTedious()
	if node == "" || modules == "" {
		t.Fatalf("tedious not installed (node %q, modules %q): run `make setup`", node, modules)
	}
	st := startTDSStack(t, tdsStackOptions{capacity: 4, tls: true})
	for _, mode := range compat.TediousModes {
		stat := map[string]string{"false": "tls_none_total", "true": "tls_full_total", "strict": "tls_strict_total"}[mode]
		t.Run("encrypt="+mode, func(t *testing.T) {
			before, _ := st.envoy.Stats()
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			if out, err := compat.RunTedious(ctx, node, modules, st.target(), mode); err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			after, _ := st.envoy.Stats()
			if after["tdspool."+stat] == before["tdspool."+stat] {
				t.Errorf("tdspool.%s did not move: the %s mode was not used", stat, mode)
			}
		})
	}
	st.waitIdle(t)
}

// requireJDBC returns the installed mssql-jdbc; without it the test is skipped in a local run
// and fails under make (which sets TDSPOOL_JAVA_DIR and installs it).
func requireJDBC(t *testing.T) compat.JDBC {
	t.Helper()
	j, required, err := compat.FindJDBC()
	if err != nil {
		if required {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	return j
}

// jdbcStat is the tdspool stat that proves the client leg used a JDBC encrypt mode.
var jdbcStat = map[string]string{"false": "tls_login_only_total", "true": "tls_full_total", "strict": "tls_strict_total"}

// TestJDBCThroughEnvoy runs the compatibility workload with mssql-jdbc (Java) through Envoy +
// tdspool in each of its encrypt settings (false: TLS for the login only; true; strict: TDS 8),
// and checks the mode from tdspool's stats. The workload's query timeout and
// Statement.cancel send ATTENTION through the proxy.
func TestJDBCThroughEnvoy(t *testing.T) {
	j := requireJDBC(t)
	st := startTDSStack(t, tdsStackOptions{capacity: 4, tls: true})
	for _, mode := range compat.JDBCModes {
		t.Run("encrypt="+mode, func(t *testing.T) {
			before, _ := st.envoy.Stats()
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			out, err := compat.RunJDBC(ctx, j, st.target(), mode)
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			// Not pooled: the backend's own login reply, its SESSIONRECOVERY acknowledgement
			// included, reaches the driver.
			if got, err := compat.JDBCRecoveryNegotiated(out); err != nil || len(got) != 1 || !got[0] {
				t.Errorf("session recovery negotiated: %v (%v), want [true]", got, err)
			}
			after, _ := st.envoy.Stats()
			if stat := jdbcStat[mode]; after["tdspool."+stat] == before["tdspool."+stat] {
				t.Errorf("tdspool.%s did not move: the %s mode was not used", stat, mode)
			}
		})
	}
	st.waitIdle(t)
}
