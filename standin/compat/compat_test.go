package compat

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tdspool/tdspool/standin"
	"github.com/tdspool/tdspool/standin/standintest"
)

// startServer starts a backend in the given encryption mode with the
// database the workloads use.
func startServer(t *testing.T, enc standin.Encryption) (*standin.Server, Target) {
	t.Helper()
	srv := standintest.Start(t, standin.Config{
		ServerName: "compat-bucket",
		Users:      map[string]string{"demo": "Demo-Passw0rd"},
		Databases:  []string{"tenant_a"},
		DataDir:    t.TempDir(),
		Encryption: enc,
		Logf:       t.Logf,
	})
	ca, err := srv.WriteCertPEM(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return srv, Target{Host: "127.0.0.1", Port: srv.Port(), User: "demo", Password: "Demo-Passw0rd", Database: "tenant_a", CAFile: ca}
}

func TestGoMssqldb(t *testing.T) {
	t.Parallel()
	srv, target := startServer(t, standin.EncryptionOptional)
	want := map[string]string{"disable": "plain", "false": "login-only", "true": "full", "strict": "strict"}
	for _, mode := range GoEncryptModes {
		t.Run("encrypt="+mode, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			before := srv.Stats()
			if err := RunGo(ctx, target, mode, t.Logf); err != nil {
				t.Fatal(err)
			}
			expectTransport(t, before, srv.Stats(), want[mode])
		})
	}
}

// TestPythonDrivers runs the workload with python-tds and with pymssql (FreeTDS), in every
// encryption mode each supports.
func TestPythonDrivers(t *testing.T) {
	t.Parallel()
	python := FindPython()
	for _, drv := range []struct {
		name, module string
		run          func(context.Context, string, Target, string) (string, error)
		modes        []string
		transport    map[string]string // mode → transport the server must see
	}{
		{"python-tds", "pytds", RunPytds, PytdsModes, map[string]string{"off": "plain", "login-only": "login-only", "full": "full"}},
		{"pymssql", "pymssql", RunPymssql, PymssqlModes, map[string]string{"off": "plain", "request": "login-only", "require": "full"}},
	} {
		t.Run(drv.name, func(t *testing.T) {
			if python == "" || !HasPythonModule(python, drv.module) {
				t.Skipf("%s not installed: run `make setup` (it installs the Python drivers into .venv), or set TDSPOOL_PYTHON", drv.name)
			}
			srv, target := startServer(t, standin.EncryptionOptional)
			for _, mode := range drv.modes {
				t.Run(mode, func(t *testing.T) {
					ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
					defer cancel()
					before := srv.Stats()
					out, err := drv.run(ctx, python, target, mode)
					defer expectTransport(t, before, srv.Stats(), drv.transport[mode])
					if err != nil {
						t.Fatal(err)
					}
					t.Log(out)
				})
			}
		})
	}
}

// expectTransport checks that every login between two Stats snapshots used
// the expected transport security, so a "pass" cannot hide a silent
// fallback to plaintext.
func expectTransport(t *testing.T, before, after standin.Stats, want string) {
	t.Helper()
	got := map[string]int64{
		"plain":      after.Plain - before.Plain,
		"login-only": after.LoginOnly - before.LoginOnly,
		"full":       after.FullTLS - before.FullTLS,
		"strict":     after.Strict - before.Strict,
	}
	for k, n := range got {
		if (k == want) != (n > 0) {
			t.Errorf("logins by transport %v, want only %s", got, want)
			return
		}
	}
}

// TestGoMssqldbServerPolicies runs go-mssqldb against servers that force
// encryption: "required" upgrades encrypt=false to full TLS and refuses
// encrypt=disable; "strict" accepts only TDS 8.
func TestGoMssqldbServerPolicies(t *testing.T) {
	t.Parallel()
	cases := []struct {
		policy standin.Encryption
		mode   string
		want   string // transport, or "" when the connection must fail
	}{
		{standin.EncryptionRequired, "false", "full"},
		{standin.EncryptionRequired, "true", "full"},
		{standin.EncryptionRequired, "disable", ""},
		{standin.EncryptionStrict, "strict", "strict"},
		{standin.EncryptionStrict, "true", ""},
		{standin.EncryptionOff, "disable", "plain"},
		{standin.EncryptionOff, "true", ""},
	}
	for _, tc := range cases {
		t.Run(tc.policy.String()+"/encrypt="+tc.mode, func(t *testing.T) {
			srv, target := startServer(t, tc.policy)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			before := srv.Stats()
			err := RunGo(ctx, target, tc.mode, nil)
			if tc.want == "" {
				if err == nil || !strings.Contains(err.Error(), "connect and identify") {
					t.Fatalf("got %v, want a connection failure", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			expectTransport(t, before, srv.Stats(), tc.want)
		})
	}
}

// TestTedious runs the workload with tedious (Node.js) in each of its encrypt settings.
func TestTedious(t *testing.T) {
	t.Parallel()
	node, modules := FindTedious()
	if node == "" || modules == "" {
		t.Skipf("tedious not installed (node %q, modules %q): run `make setup`", node, modules)
	}
	var pkg struct{ Version string }
	if js, err := os.ReadFile(filepath.Join(modules, "tedious", "package.json")); err != nil || json.Unmarshal(js, &pkg) != nil || pkg.Version != TediousVersion {
		t.Fatalf("tedious %q installed in %s, the tests pin %s (%v): run `make setup`", pkg.Version, modules, TediousVersion, err)
	}
	srv, target := startServer(t, standin.EncryptionOptional)
	want := map[string]string{"false": "plain", "true": "full", "strict": "strict"}
	for _, mode := range TediousModes {
		t.Run("encrypt="+mode, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			before := srv.Stats()
			out, err := RunTedious(ctx, node, modules, target, mode)
			defer expectTransport(t, before, srv.Stats(), want[mode])
			if err != nil {
				t.Fatal(err)
			}
			t.Log(out)
		})
	}
}

// requireJDBC returns the installed mssql-jdbc, or skips the test when it is not set up in a
// local run; under make (TDSPOOL_JAVA_DIR set) a missing driver fails.
func requireJDBC(t *testing.T) JDBC {
	t.Helper()
	j, required, err := FindJDBC()
	if err != nil {
		if required {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	return j
}

// TestJDBC runs the workload with mssql-jdbc (Java) in each of its encrypt settings.
func TestJDBC(t *testing.T) {
	t.Parallel()
	j := requireJDBC(t)
	srv, target := startServer(t, standin.EncryptionOptional)
	target.HostInCert = "localhost"
	for _, mode := range JDBCModes {
		t.Run("encrypt="+mode, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			before := srv.Stats()
			out, err := RunJDBC(ctx, j, target, mode)
			defer expectTransport(t, before, srv.Stats(), JDBCTransport[mode])
			if err != nil {
				t.Fatal(err)
			}
			// The driver asks for connection resiliency and SQL Server acknowledges it.
			if got, err := JDBCRecoveryNegotiated(out); err != nil || len(got) != 1 || !got[0] {
				t.Errorf("session recovery negotiated: %v (%v), want [true]", got, err)
			}
			t.Log(out)
		})
	}
}
