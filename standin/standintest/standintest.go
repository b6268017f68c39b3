// Package standintest starts the SQL Server stand-in for a test: listening, closed when the
// test ends, and the test failed at once if it cannot start.
package standintest

import (
	"testing"

	"github.com/tdspool/tdspool/standin"
)

// Start creates and starts a stand-in from cfg; t.Cleanup closes it.
func Start(t testing.TB, cfg standin.Config) *standin.Server {
	t.Helper()
	srv, err := standin.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}
