package compat

import (
	"context"
	"testing"
	"time"

	"github.com/tdspool/tdspool/standin"
)

// TestODBC runs the workload with pyodbc on FreeTDS's ODBC driver directly against the
// stand-in, every encryption mode in one process, and checks the server saw each transport.
func TestODBC(t *testing.T) {
	t.Parallel()
	o, err := FindODBC()
	if err != nil {
		t.Skip(err)
	}
	srv, target := startServer(t, standin.EncryptionOptional)
	before := srv.Stats()
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	if out, err := RunODBC(ctx, o, target, ODBCModes...); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	after := srv.Stats()
	for mode, moved := range map[string]int64{
		"off":     after.Plain - before.Plain,
		"request": after.LoginOnly - before.LoginOnly,
		"require": after.FullTLS - before.FullTLS,
	} {
		if moved == 0 {
			t.Errorf("encryption=%s: the stand-in saw no %s session", mode, ODBCTransport[mode])
		}
	}
}
