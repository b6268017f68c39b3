package compat

import (
	"context"
	"testing"
	"time"

	"github.com/tdspool/tdspool/tds/tdstest"
)

// startServer starts a backend in the given encryption mode with the
// database the workloads use.
func startServer(t *testing.T, enc tdstest.Encryption) (*tdstest.Server, Target) {
	t.Helper()
	srv, err := tdstest.New(tdstest.Config{
		ServerName: "compat-bucket",
		Users:      map[string]string{"demo": "Demo-Passw0rd"},
		Databases:  []string{"tenant_a"},
		DataDir:    t.TempDir(),
		Encryption: enc,
		Logf:       t.Logf,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	ca, err := srv.WriteCertPEM(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return srv, Target{Host: "127.0.0.1", Port: srv.Port(), User: "demo", Password: "Demo-Passw0rd", Database: "tenant_a", CAFile: ca}
}

func TestGoMssqldb(t *testing.T) {
	t.Parallel()
	_, target := startServer(t, tdstest.EncryptionOptional)
	for _, mode := range GoEncryptModes {
		t.Run("encrypt="+mode, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			if err := RunGo(ctx, target, mode, t.Logf); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestPytds(t *testing.T) {
	t.Parallel()
	python := FindPython()
	if python == "" || !HasPythonModule(python, "pytds") {
		t.Skip("python-tds not installed: run `make setup` (or pip install python-tds pyOpenSSL into .venv), or set TDSPOOL_PYTHON")
	}
	_, target := startServer(t, tdstest.EncryptionOptional)
	for _, mode := range PytdsModes {
		t.Run(mode, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			out, err := RunPytds(ctx, python, target, mode)
			if err != nil {
				t.Fatal(err)
			}
			t.Log(out)
		})
	}
}

func TestPymssql(t *testing.T) {
	t.Parallel()
	python := FindPython()
	if python == "" || !HasPythonModule(python, "pymssql") {
		t.Skip("pymssql not installed: run `make setup` (or pip install pymssql into .venv), or set TDSPOOL_PYTHON")
	}
	_, target := startServer(t, tdstest.EncryptionOptional)
	for _, mode := range PymssqlModes {
		t.Run(mode, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			out, err := RunPymssql(ctx, python, target, mode)
			if err != nil {
				t.Fatal(err)
			}
			t.Log(out)
		})
	}
}
