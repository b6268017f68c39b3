package integration

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tdspool/tdspool/standin"
	"github.com/tdspool/tdspool/standin/compat"
)

// pyodbc on FreeTDS's ODBC driver: parameters bound as RPCs (sp_executesql, sp_prepexec),
// autocommit off as TM requests, SQLGetTypeInfo as a procedure batch, query timeout and
// cursor.cancel as ATTENTION. One Python process per test runs every mode.

// odbcStat is the tdspool stat that proves the client leg used a FreeTDS encryption mode.
var odbcStat = map[string]string{"off": "tls_none_total", "request": "tls_login_only_total", "require": "tls_full_total"}

// requireODBC returns pyodbc and the driver; `make setup` installs both, so a missing one
// fails the test.
func requireODBC(t *testing.T) compat.ODBC {
	t.Helper()
	o, err := compat.FindODBC()
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// TestODBCThroughEnvoy runs the workload in each FreeTDS encryption mode through Envoy +
// tdspool (TDS 7 chain) and checks from tdspool's stats that each mode was used.
func TestODBCThroughEnvoy(t *testing.T) {
	o := requireODBC(t)
	st := startTDSStack(t, tdsStackOptions{capacity: 4, tls: true})
	before, _ := st.envoy.Stats()
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	if out, err := compat.RunODBC(ctx, o, st.target(), compat.ODBCModes...); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	after, _ := st.envoy.Stats()
	for mode, stat := range odbcStat {
		if after["tdspool."+stat] == before["tdspool."+stat] {
			t.Errorf("tdspool.%s did not move: encryption=%s was not used", stat, mode)
		}
	}
	st.waitIdle(t)
}

// The proxy's own login errors reach pyodbc with their numbers in the message: 10928 when
// the bucket's only slot is held past queue_timeout, 40613 when the backend is down. FreeTDS
// does not retry a login. On the module-owned backend leg: on the tcp_proxy leg a backend
// that refuses the connection before its health check notices makes tcp_proxy close the
// client without an error (go-mssqldb sees the same EOF), as the README's backend-leg rules say.
func TestODBCProxyLoginErrors(t *testing.T) {
	o := requireODBC(t)
	for _, tc := range proxyLoginErrorCases {
		t.Run(tc.name, func(t *testing.T) {
			st := startTDSStack(t, tdsStackOptions{capacity: 1, tls: true, leg: "module", bucket: map[string]any{"queue_timeout": "1s"}})
			done := tc.setup(t, st)
			defer done()
			before, _ := st.envoy.Stats()
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			got, out, err := compat.RunODBCLoginError(ctx, o, st.target(), "require", "odbc-refused")
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("pyodbc saw: %+v", got)
			if got.Code != tc.code || !strings.Contains(got.Message, tc.text) {
				t.Errorf("error %d %q, want %d saying %q\n%s", got.Code, got.Message, tc.code, tc.text, out)
			}
			after, _ := st.envoy.Stats()
			if stat := "tdspool.bucket.bucket-001." + tc.stat; after[stat] == before[stat] {
				t.Errorf("%s did not move", stat)
			}
		})
	}
}

// TestODBCSessionPool: per encryption mode, pyodbc's client A leaves a temp table and SET
// options behind (client B gets its backend, reset, and sees neither), then an open
// transaction (autocommit off: A's backend is closed, not pooled, and B does not see the
// uncommitted update). pyodbc's connect-twice is a row of
// TestSessionPoolConnectTwiceEveryDriverAndEncryption.
func TestODBCSessionPool(t *testing.T) {
	o := requireODBC(t)
	st := startTDSStack(t, tdsStackOptions{capacity: 8, tls: true, leg: "module", bucket: sessionPool})
	seedPoolMatrixTable(t, st.backend)
	for _, mode := range compat.ODBCModes {
		t.Run("isolation/"+mode, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			var marks []standin.Stats // backend stats after each client closed
			got, out, err := compat.RunODBCIsolation(ctx, o, st.target(), mode, "iso-odbc-"+mode, func() {
				waitStat(t, st.envoy, "tdspool.connections_active", 0)
				marks = append(marks, st.backend.Stats())
			})
			if err != nil {
				t.Fatal(err)
			}
			for i, r := range got {
				loginsB := marks[2*i+1].Logins - marks[2*i].Logins
				t.Logf("round %s: client A on %d, client B on %d (%d backend logins for B): %+v", r.Round, r.SPIDA, r.SPID, loginsB, r)
				if r.TranCount != 0 || r.S1 != "alpha" {
					t.Errorf("round %s: client B sees @@TRANCOUNT %d, pm_data row 1 %q; want 0 and alpha", r.Round, r.TranCount, r.S1)
				}
				if r.DateFirst != 7 || r.LockTimeout != -1 || r.AnsiNulls != 32 {
					t.Errorf("round %s: client B sees DATEFIRST %d, LOCK_TIMEOUT %d, ANSI_NULLS bit %d; want 7, -1, 32",
						r.Round, r.DateFirst, r.LockTimeout, r.AnsiNulls)
				}
				if r.TempTable != nil {
					t.Errorf("round %s: client B sees client A's #left_behind (object %d)", r.Round, *r.TempTable)
				}
				switch r.Round {
				case "state": // pooled: B gets A's backend, reset
					if r.SPID != r.SPIDA || loginsB != 0 {
						t.Errorf("round state: client B on %d with %d logins, A on %d: want A's pooled backend\n%s", r.SPID, loginsB, r.SPIDA, out)
					}
				case "transaction": // closed with a transaction open: not pooled, B logs in anew
					if loginsB != 1 {
						t.Errorf("round transaction: %d backend logins for client B, want 1 (A's backend closed)\n%s", loginsB, out)
					}
				}
			}
		})
	}
}

// TestODBCThroughTransactionPool runs the workload in every mode through a transaction-pooled
// bucket of cap 2 while sampling the pool's backends (active + idle), which must stay within
// the cap: the workload holds three connections at once (one with autocommit off) and sends
// ATTENTION twice per mode.
func TestODBCThroughTransactionPool(t *testing.T) {
	o := requireODBC(t)
	const capacity = 2
	st := startTDSStack(t, tdsStackOptions{capacity: capacity, tls: true, leg: "module", bucket: txPool})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var peak uint64
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			s, err := st.envoy.Stats()
			if err != nil {
				continue
			}
			if n := s["tdspool.bucket.bucket-001.pool_active"] + s["tdspool.bucket.bucket-001.pool_idle"]; n > peak {
				peak = n
			}
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 180*time.Second)
	defer cancel()
	out, err := compat.RunODBC(ctx, o, st.target(), compat.ODBCModes...)
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	stats, _ := st.envoy.Stats()
	pool := func(k string) uint64 { return stats["tdspool.bucket.bucket-001.pool_"+k+"_total"] }
	t.Logf("pool backends peak %d (cap %d); stand-in logins %d; pool created %d, borrowed %d, closed %d",
		peak, capacity, st.backend.Stats().Logins, pool("created"), pool("borrowed"), pool("closed"))
	if peak == 0 || peak > capacity {
		t.Errorf("pool backends peaked at %d, want 1..%d", peak, capacity)
	}
	waitStat(t, st.envoy, "tdspool.connections_active", 0)
}
