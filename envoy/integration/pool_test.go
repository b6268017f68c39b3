package integration

import (
	"context"
	"database/sql"
	"fmt"
	"testing"
	"time"

	"github.com/tdspool/tdspool/tds"
)

// sessionPool is a bucket's pool block for session pooling.
var sessionPool = map[string]any{"pool": map[string]any{"mode": "POOL_MODE_SESSION"}}

// One DSN connecting, querying and closing 100 times, back to back, through a pooled bucket:
// the stand-in (the oracle) sees at most two logins and two backend connections, and a reset
// for every reuse; every client still reads the right answer. Two, not one: a client's close
// and the next client's login run on different Envoy workers, and when the login wins the
// race it finds the pool empty and logs in (seen in about half the runs on a loaded machine;
// with 5 ms between cycles it never happens). The resets alone prove little with this driver
// (go-mssqldb flags its own first request too); TestSessionPoolIsolatesClients counts the
// proxy's own.
func TestSessionPoolReusesOneBackend(t *testing.T) {
	st := startTDSStack(t, tdsStackOptions{capacity: 4, leg: "module", bucket: sessionPool})
	dsn := fmt.Sprintf("sqlserver://demo:Demo-Passw0rd@127.0.0.1:%d?database=tenant_a&encrypt=disable&dial+timeout=5&connection+timeout=20", st.port)
	before := st.backend.Stats()
	const cycles = 100
	for i := range cycles {
		db, err := sql.Open("sqlserver", dsn)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		var n int
		var dbName string
		err = db.QueryRowContext(ctx, "SELECT @@SPID + 0 * "+fmt.Sprint(i)+", DB_NAME()").Scan(&n, &dbName)
		cancel()
		db.Close()
		if err != nil {
			t.Fatalf("cycle %d: %v", i, err)
		}
		if dbName != "tenant_a" {
			t.Fatalf("cycle %d: DB_NAME() = %q", i, dbName)
		}
	}
	// The last client's backend goes back to the pool once its close is seen.
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) && st.backend.Stats().Resets-before.Resets < cycles-2 {
		time.Sleep(20 * time.Millisecond)
	}
	after := st.backend.Stats()
	logins, resets := after.Logins-before.Logins, after.Resets-before.Resets
	t.Logf("%d cycles: %d backend logins, %d resets, peak %d backend connections", cycles, logins, resets, st.backend.PeakConnections())
	if logins > 2 || resets < cycles-2 || st.backend.PeakConnections() > 2 {
		t.Fatalf("%d cycles: %d backend logins (want <= 2), %d resets (want >= %d), peak %d backend connections (want <= 2)",
			cycles, logins, resets, cycles-2, st.backend.PeakConnections())
	}
}

// poolClient logs in with the stand-in's credentials over a raw TDS connection, which never
// sets RESETCONNECTION itself: any reset the stand-in counts is the proxy's.
func poolClient(t *testing.T, st *tdsStack) (*rawClient, []tds.Event) {
	t.Helper()
	rc := dialRaw(t, fmt.Sprintf("127.0.0.1:%d", st.port))
	pre := tds.Prelogin{HasVersion: true, Version: 0x0C000000, HasEncryption: true, Encryption: tds.EncryptNotSup}
	if err := rc.send(tds.PacketPrelogin, pre.AppendPrelogin(nil)); err != nil {
		t.Fatal(err)
	}
	if _, err := rc.recv(); err != nil {
		t.Fatal(err)
	}
	l := tds.Login7{TDSVersion: tds.TDSVersion74, PacketSize: 4096, OptionFlags1: 0xE0, OptionFlags2: 0x03,
		UserName: "demo", Password: tds.NewPassword("Demo-Passw0rd"), Database: "tenant_a", AppName: "pool-test",
		HostName: "h", CltIntName: "raw", ServerName: "bucket-001"}
	if err := rc.send(tds.PacketLogin7, l.AppendLogin7(nil)); err != nil {
		t.Fatal(err)
	}
	msg, err := rc.recv()
	if err != nil {
		t.Fatalf("login reply: %v", err)
	}
	evs := events(t, msg)
	if !hasLoginAck(evs) {
		t.Fatalf("login refused: %v", evs)
	}
	return rc, evs
}

// exec runs a batch and returns its events.
func (rc *rawClient) exec(t *testing.T, sql string) []tds.Event {
	t.Helper()
	if err := rc.send(tds.PacketSQLBatch, (&tds.SQLBatch{Text: sql}).AppendSQLBatch(nil)); err != nil {
		t.Fatal(err)
	}
	msg, err := rc.recv()
	if err != nil {
		t.Fatalf("%q: %v", sql, err)
	}
	return events(t, msg)
}

func printed(evs []tds.Event) []string {
	var out []string
	for _, ev := range evs {
		if ev.Token == tds.TokenInfo || ev.Token == tds.TokenError {
			out = append(out, ev.Message.Text)
		}
	}
	return out
}

// Client A leaves a temp table, another database and changed options behind; client B, served
// by the same backend without a login, sees none of it and never sees the reset's tokens.
func TestSessionPoolIsolatesClients(t *testing.T) {
	st := startTDSStack(t, tdsStackOptions{capacity: 4, leg: "module", bucket: sessionPool})
	before := st.backend.Stats()
	a, _ := poolClient(t, st)
	for _, q := range []string{"CREATE TABLE #left_behind (x int)", "SET NOCOUNT ON", "USE master"} {
		if evs := a.exec(t, q); len(evs) == 0 {
			t.Fatalf("%q: no reply", q)
		}
	}
	a.c.Close()

	// B logs in until the pool has A's backend back (A's close reaches the proxy on another
	// worker); each miss is a real login, counted below.
	var b *rawClient
	var loginEvents []tds.Event
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, loginEvents = poolClient(t, st)
		if st.backend.Stats().Logins-before.Logins == 1 || time.Now().After(deadline) {
			break
		}
		b.c.Close()
	}
	if got := st.backend.Stats().Logins - before.Logins; got != 1 {
		t.Fatalf("%d backend logins; the second client was never served from the pool", got)
	}
	for _, ev := range loginEvents {
		if ev.Token == tds.TokenEnvChange && ev.EnvChange.Type == tds.EnvDatabase && ev.EnvChange.New != "tenant_a" {
			t.Fatalf("replayed login reply names database %q", ev.EnvChange.New)
		}
	}
	evs := b.exec(t, "IF DB_NAME() = 'tenant_a' PRINT 'db ok' ELSE PRINT 'db leaked'")
	for _, ev := range evs {
		if ev.Token == tds.TokenEnvChange {
			t.Fatalf("the client saw the reset's %v", ev.EnvChange)
		}
	}
	evs = append(evs, b.exec(t, "IF OBJECT_ID('tempdb..#left_behind') IS NULL PRINT 'temp ok' ELSE PRINT 'temp leaked'")...)
	if got := fmt.Sprint(printed(evs)); got != "[db ok temp ok]" {
		t.Fatalf("second client on the reused backend printed %s", got)
	}
	if got := st.backend.Stats().Resets - before.Resets; got != 1 {
		t.Fatalf("the stand-in saw %d resets, want 1 (the proxy's, on the reuse)", got)
	}
}
