package integration

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"reflect"
	"testing"
	"time"

	mssql "github.com/microsoft/go-mssqldb"

	"github.com/tdspool/tdspool/standin"
	"github.com/tdspool/tdspool/standin/compat"
)

// TestSessionPoolConnectTwiceEveryDriverAndEncryption: every driver of the compatibility
// tests in every client encryption mode it has (go-mssqldb: none, login-only, full TDS 7 and
// TDS 8 strict; python-tds: none, login-only, full; pymssql/FreeTDS: none, request, require;
// tedious: none, full, strict; mssql-jdbc: login-only, full, strict; pyodbc on FreeTDS ODBC:
// none, request, require)
// connects to a pooled bucket on the module leg, reads @@SPID, its database, its application
// name and a table, closes, and connects again with the same DSN. The stand-in's audit log
// is the oracle: the first connection is one backend login; the second is none, on the same
// backend session, whose first request carries RESETCONNECTION; both read the same rows.
// Each combination has its own application name, so its own pool key. mssql-jdbc asks for
// connection resiliency: neither connection may have it acknowledged.
func TestSessionPoolConnectTwiceEveryDriverAndEncryption(t *testing.T) {
	python := compat.FindPython()
	if python == "" {
		t.Fatal("no project Python (.venv): run `make setup`")
	}
	// Cap above the number of combinations: no key's idle backend is evicted for another's.
	st := startTDSStack(t, tdsStackOptions{capacity: 16, tls: true, leg: "module", bucket: sessionPool})
	seedPoolMatrixTable(t, st.backend)
	want := [][]any{{float64(1), "alpha"}, {float64(2), "βeta"}}

	type connectTwice func(ctx context.Context, mode, app string, between func()) ([]compat.ConnectResult, error)
	goDriver := func(ctx context.Context, mode, app string, between func()) ([]compat.ConnectResult, error) {
		var rs []compat.ConnectResult
		for i := range 2 {
			if i == 1 {
				between()
			}
			r, err := goConnectOnce(ctx, st, mode, app)
			if err != nil {
				return rs, err
			}
			rs = append(rs, r)
		}
		return rs, nil
	}
	node, modules := compat.FindTedious()
	tedious := func(ctx context.Context, mode, app string, between func()) ([]compat.ConnectResult, error) {
		if node == "" || modules == "" {
			return nil, fmt.Errorf("tedious not installed (node %q, modules %q): run `make setup`", node, modules)
		}
		rs, _, err := compat.RunTediousConnectTwice(ctx, node, modules, st.target(), mode, app, between)
		return rs, err
	}
	jdbc, jdbcRequired, jdbcErr := compat.FindJDBC()
	jdbcDriver := func(ctx context.Context, mode, app string, between func()) ([]compat.ConnectResult, error) {
		rs, _, err := compat.RunJDBCConnectTwice(ctx, jdbc, st.target(), mode, app, between)
		return rs, err
	}
	odbc, odbcErr := compat.FindODBC()
	odbcDriver := func(ctx context.Context, mode, app string, between func()) ([]compat.ConnectResult, error) {
		if odbcErr != nil {
			return nil, odbcErr
		}
		rs, _, err := compat.RunODBCConnectTwice(ctx, odbc, st.target(), mode, app, between)
		return rs, err
	}
	pyDriver := func(driver string) connectTwice {
		return func(ctx context.Context, mode, app string, between func()) ([]compat.ConnectResult, error) {
			rs, _, err := compat.RunConnectTwice(ctx, python, driver, st.target(), mode, app, between)
			return rs, err
		}
	}
	for _, drv := range []struct {
		name   string
		module string            // Python module the driver needs, "" for go-mssqldb
		modes  map[string]string // driver mode → the tdspool stat that proves the client leg's mode
		run    connectTwice
	}{
		{"go-mssqldb", "", map[string]string{"disable": "tls_none_total", "false": "tls_login_only_total", "true": "tls_full_total", "strict": "tls_strict_total"}, goDriver},
		{"python-tds", "pytds", map[string]string{"off": "tls_none_total", "login-only": "tls_login_only_total", "full": "tls_full_total"}, pyDriver("pytds")},
		{"pymssql", "pymssql", map[string]string{"off": "tls_none_total", "request": "tls_login_only_total", "require": "tls_full_total"}, pyDriver("pymssql")},
		{"tedious", "", map[string]string{"false": "tls_none_total", "true": "tls_full_total", "strict": "tls_strict_total"}, tedious},
		{"mssql-jdbc", "", jdbcStat, jdbcDriver},
		{"pyodbc", "", odbcStat, odbcDriver},
	} {
		if drv.module != "" && !compat.HasPythonModule(python, drv.module) {
			t.Fatalf("%s not installed in %s: run `make setup`", drv.name, python)
		}
		for mode, stat := range drv.modes {
			t.Run(drv.name+"/"+mode, func(t *testing.T) {
				if drv.name == "mssql-jdbc" && jdbcErr != nil {
					if jdbcRequired {
						t.Fatal(jdbcErr)
					}
					t.Skip(jdbcErr)
				}
				statsBefore, _ := st.envoy.Stats()
				app := "pm-" + drv.name + "-" + mode
				ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
				defer cancel()
				start := st.backend.Stats()
				var mid standin.Stats
				var midSeq int64
				rs, err := drv.run(ctx, mode, app, func() {
					// The first client's close has reached the filter, which pools its backend.
					waitStat(t, st.envoy, "tdspool.connections_active", 0)
					mid, midSeq = st.backend.Stats(), lastAuditSeq(st.backend)
				})
				if err != nil {
					t.Fatal(err)
				}
				end := st.backend.Stats()
				statsAfter, _ := st.envoy.Stats()
				if n := statsAfter["tdspool."+stat] - statsBefore["tdspool."+stat]; n != 2 {
					t.Errorf("tdspool.%s moved by %d, want 2: the %s mode was not used by both connections", stat, n, mode)
				}
				first, second := rs[0], rs[1]
				t.Logf("first: spid %d, %d backend login(s); second: spid %d, %d backend login(s)",
					first.SPID, mid.Logins-start.Logins, second.SPID, end.Logins-mid.Logins)
				if n := mid.Logins - start.Logins; n != 1 {
					t.Errorf("first connection: %d backend logins, want 1 (a new pool key)", n)
				}
				if n := end.Logins - mid.Logins; n != 0 {
					t.Errorf("second connection: %d backend logins, want 0 (served from the pool)", n)
				}
				if second.SPID != first.SPID {
					t.Errorf("second connection on backend session %d, first on %d: not the pooled one", second.SPID, first.SPID)
				}
				for i, r := range rs {
					if r.DB != "tenant_a" || r.App != app || !reflect.DeepEqual(r.Rows, want) {
						t.Errorf("connection %d read db %q app %q rows %v; want tenant_a, %q, %v", i+1, r.DB, r.App, r.Rows, app, want)
					}
					if r.Recovery {
						t.Errorf("connection %d: SESSIONRECOVERY acknowledged by a pooled bucket", i+1)
					}
				}
				// The audit log: no login after the first close, and the second client's first
				// request on that session carries the reset.
				firstReq := firstRequestOn(t, st.backend, midSeq, first.SPID)
				switch {
				case firstReq == nil:
					t.Errorf("audit: no request on session %d after the first close", first.SPID)
				case !firstReq.ResetConnection:
					t.Errorf("audit: the second client's first request on session %d carries no RESETCONNECTION: %+v", first.SPID, *firstReq)
				}
			})
		}
	}
}

// firstRequestOn is the first audit record on session spid after seq, ATTENTION aside; a
// backend login after seq is an error.
func firstRequestOn(t *testing.T, backend *standin.Server, seq int64, spid int) *standin.AuditRecord {
	t.Helper()
	var first *standin.AuditRecord
	for _, rec := range backend.AuditSince(seq) {
		if rec.Kind == standin.AuditLogin || rec.Kind == standin.AuditLoginFailed {
			t.Errorf("audit: a backend login after the first close: %+v", rec)
		}
		if rec.SPID == spid && first == nil && rec.Kind != standin.AuditAttention {
			first = &rec
		}
	}
	return first
}

// seedPoolMatrixTable creates the table every connection reads, directly on the stand-in.
func seedPoolMatrixTable(t *testing.T, backend *standin.Server) {
	t.Helper()
	db, err := sql.Open("sqlserver", compat.GoDSN(compat.Target{Host: "127.0.0.1", Port: backend.Port(),
		User: "demo", Password: "Demo-Passw0rd", Database: "tenant_a"}, "disable"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec("CREATE TABLE pm_data (id INT NOT NULL PRIMARY KEY, s NVARCHAR(20) NOT NULL); " +
		"INSERT INTO pm_data VALUES (1, N'alpha'), (2, N'βeta')"); err != nil {
		t.Fatal(err)
	}
}

// goConnectOnce opens a database/sql pool on the DSN, runs the connection's queries on one
// new connection and closes the pool (so the session ends), as a short-lived process would.
func goConnectOnce(ctx context.Context, st *tdsStack, mode, app string) (compat.ConnectResult, error) {
	u, err := url.Parse(compat.GoDSN(st.target(), mode))
	if err != nil {
		return compat.ConnectResult{}, err
	}
	q := u.Query()
	q.Set("app name", app)
	u.RawQuery = q.Encode()
	connector, err := mssql.NewConnector(u.String())
	if err != nil {
		return compat.ConnectResult{}, err
	}
	db := sql.OpenDB(connector)
	defer db.Close()
	var r compat.ConnectResult
	if err := db.QueryRowContext(ctx, "SELECT @@SPID, DB_NAME(), APP_NAME()").Scan(&r.SPID, &r.DB, &r.App); err != nil {
		return r, fmt.Errorf("@@SPID: %w", err)
	}
	rows, err := db.QueryContext(ctx, "SELECT id, s FROM pm_data ORDER BY id")
	if err != nil {
		return r, fmt.Errorf("pm_data: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id int
		var s string
		if err := rows.Scan(&id, &s); err != nil {
			return r, err
		}
		r.Rows = append(r.Rows, []any{float64(id), s}) // as JSON decodes the Python drivers' rows
	}
	return r, rows.Err()
}

// lastAuditSeq is the newest audit record's sequence number (0 if none).
func lastAuditSeq(s *standin.Server) int64 {
	recs := s.Audit()
	if len(recs) == 0 {
		return 0
	}
	return recs[len(recs)-1].Seq
}
