package integration

import (
	"context"
	"database/sql"
	"errors"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	mssql "github.com/microsoft/go-mssqldb"

	"github.com/tdspool/tdspool/standin/compat"
)

// proxyLoginErrorCases are the proxy's own login errors a driver test provokes on a stack of
// capacity 1: the pool exhausted (10928, the only slot held by another client for the length
// of the test) and the backend gone (40613). setup returns what undoes it.
var proxyLoginErrorCases = []struct {
	name, stat, text string
	code             int
	setup            func(t *testing.T, st *tdsStack) func()
}{
	{"pool exhausted", "slot_timed_out_total", "pool exhausted for bucket 'bucket-001'", 10928,
		func(t *testing.T, st *tdsStack) func() {
			conn, err := st.db(t, 1).Conn(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if _, err := conn.ExecContext(context.Background(), "SELECT 1"); err != nil {
				t.Fatal(err)
			}
			return func() { conn.Close() }
		}},
	{"backend unavailable", "backend_unavailable_total", "is not currently available", 40613,
		func(t *testing.T, st *tdsStack) func() {
			st.backend.Close()
			return func() {}
		}},
}

// loginFailures are logins the backend itself refuses, with the messages SQL Server (and the
// stand-in) sends for them. They must reach the client unchanged, through every chain.
var loginFailures = []struct {
	name, password, database string
	numbers                  []int32 // every ERROR the backend sends, in order
	text                     string  // in the last one
}{
	{"wrong password", "not-the-password", "tenant_a", []int32{18456}, "Login failed for user 'demo'."},
	{"unknown database", "Demo-Passw0rd", "no_such_db", []int32{4060, 18456}, "Login failed for user 'demo'."},
}

// TestBackendLoginErrorsReachGoMssqldb: a wrong password or an unknown database gives the
// driver the backend's own ERROR tokens (numbers and text), in every encryption mode, never
// a bare EOF; the slot is given back.
func TestBackendLoginErrorsReachGoMssqldb(t *testing.T) {
	s := startTDSStack(t, tdsStackOptions{capacity: 2, tls: true})
	for _, lf := range loginFailures {
		for _, mode := range compat.GoEncryptModes {
			t.Run(lf.name+"/encrypt="+mode, func(t *testing.T) {
				target := s.target()
				target.Password, target.Database = lf.password, lf.database
				db, err := sql.Open("sqlserver", compat.GoDSN(target, mode))
				if err != nil {
					t.Fatal(err)
				}
				defer db.Close()
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				err = db.PingContext(ctx)
				var me mssql.Error
				if !errors.As(err, &me) {
					t.Fatalf("want the backend's login error, got %v", err)
				}
				var got []int32
				for _, e := range me.All {
					got = append(got, e.Number)
				}
				if !equalNumbers(got, lf.numbers) || me.All[len(me.All)-1].Message != lf.text {
					t.Fatalf("driver got errors %v %q, want %v ending in %q", got, me.Message, lf.numbers, lf.text)
				}
			})
		}
	}
	s.waitIdle(t)
	stats, _ := s.envoy.Stats()
	if n, want := stats["tdspool.bucket.bucket-001.login_failed_total"], uint64(len(loginFailures)*len(compat.GoEncryptModes)); n != want {
		t.Errorf("login_failed_total = %d, want %d", n, want)
	}
}

// TestBackendLoginErrorsReachPythonTDS is the same through python-tds in its three modes.
func TestBackendLoginErrorsReachPythonTDS(t *testing.T) {
	python := compat.FindPython()
	if python == "" || !compat.HasPythonModule(python, "pytds") {
		t.Fatal("no project Python with python-tds (.venv): run `make setup`")
	}
	s := startTDSStack(t, tdsStackOptions{capacity: 2, tls: true})
	const script = `
import sys, pytds
host, port, user, password, database, mode, cafile = sys.argv[1:8]
kw = dict(server=host, port=int(port), user=user, password=password, database=database,
          login_timeout=15, timeout=15, autocommit=True)
if mode != "off":
    kw.update(cafile=cafile, validate_host=False, enc_login_only=(mode == "login-only"))
try:
    pytds.connect(**kw).close()
    print("CONNECTED")
except pytds.Error as e:
    print("ERROR|%s|%s" % (getattr(e, "number", None), getattr(e, "text", str(e))))
`
	for _, lf := range loginFailures {
		for _, mode := range compat.PytdsModes {
			t.Run(lf.name+"/"+mode, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
				defer cancel()
				tg := s.target()
				out, err := exec.CommandContext(ctx, python, "-c", script, tg.Host, strconv.Itoa(tg.Port), tg.User,
					lf.password, lf.database, mode, tg.CAFile).CombinedOutput()
				if err != nil {
					t.Fatalf("python-tds: %v\n%s", err, out)
				}
				last := lf.numbers[len(lf.numbers)-1]
				want := "ERROR|" + strconv.Itoa(int(last)) + "|" + lf.text
				if got := strings.TrimSpace(string(out)); got != want {
					t.Fatalf("python-tds got %q, want %q", got, want)
				}
			})
		}
	}
	s.waitIdle(t)
}

func equalNumbers(a, b []int32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
