package txpool_test

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	mssql "github.com/microsoft/go-mssqldb"

	"github.com/tdspool/tdspool/filter/txpool"
	"github.com/tdspool/tdspool/standin"
	"github.com/tdspool/tdspool/standin/standintest"
	"github.com/tdspool/tdspool/tds"
)

// Against the stand-in with a real driver: a tap on go-mssqldb's connection follows the
// client's requests and the server's responses exactly as the filter does (request
// classifier, response scanner) and keeps a txpool.State and a txpool.Binding. What the
// client set on one backend session must read the same on another once Reapply's prelude ran.

type tap struct {
	net.Conn
	t *testing.T

	mu       sync.Mutex
	req      tds.Reassembler
	resp     tds.ResponseScanner
	loggedIn bool // LOGIN7 sent: the responses from here on are token streams
	state    txpool.State
	binding  *txpool.Binding
	actions  []txpool.Action
	scanErr  error
}

func (c *tap) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.req.Feed(p)
	for {
		m, err := c.req.Next()
		if err != nil {
			break
		}
		switch m.Type {
		case tds.PacketLogin7:
			c.loggedIn = true
		case tds.PacketSQLBatch, tds.PacketRPC, tds.PacketTransMgr:
			facts, err := tds.ClassifyRequest(&m)
			if err != nil {
				c.scanErr = err
			}
			batch := ""
			if q, err := tds.DecodeSQLBatch(m.Payload); err == nil && m.Type == tds.PacketSQLBatch {
				batch = q.Text
			}
			if facts.ResetConnection {
				c.state = txpool.LoginState(c.state.Database, c.state.Language) // a reset: settings gone
			}
			c.state.ApplyRequest(&facts, txpool.StraightLine(batch))
			if c.binding != nil {
				c.act(c.binding.Request(time.Now(), &facts, batch, time.Second))
			}
		case tds.PacketAttention:
			if c.binding != nil {
				c.act(c.binding.Attention())
			}
		}
	}
	c.mu.Unlock()
	return c.Conn.Write(p)
}

// act plays the pool's part for the binding: a borrow is granted at once with this backend,
// in the state the session's last release left it (no prelude is needed then).
func (c *tap) act(a txpool.Action) {
	c.actions = append(c.actions, a)
	if a == txpool.Borrow {
		var prelude string
		prelude, _, a = c.binding.Borrowed(c.binding.Backend)
		if prelude != "" {
			c.t.Errorf("prelude %q for the backend the session just left", prelude)
		}
		c.actions = append(c.actions, a)
	}
}

func (c *tap) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.loggedIn && n > 0 && c.scanErr == nil {
		events, serr := c.resp.Feed(p[:n])
		if serr != nil {
			c.scanErr = serr
		}
		for i := range events {
			ev := &events[i]
			if ev.Token == tds.TokenEnvChange {
				c.state.ApplyEnvChange(&ev.EnvChange)
			}
			if c.binding != nil {
				if a := c.binding.ServerEvent(ev); a != txpool.None {
					c.actions = append(c.actions, a)
				}
			}
		}
	}
	return n, err
}

func (c *tap) snapshot() (txpool.State, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state.Clone(), c.scanErr
}

type tapDialer struct {
	t    *testing.T
	mu   sync.Mutex
	taps []*tap
}

func (d *tapDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	var nd net.Dialer
	c, err := nd.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	tc := &tap{Conn: c, t: d.t}
	d.mu.Lock()
	d.taps = append(d.taps, tc)
	d.mu.Unlock()
	return tc, nil
}

func (d *tapDialer) last() *tap {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.taps[len(d.taps)-1]
}

func startStandin(t *testing.T) *standin.Server {
	t.Helper()
	return standintest.Start(t, standin.Config{
		ServerName: "move",
		Users:      map[string]string{"sa": "Secret!1"},
		Databases:  []string{"app", "other"},
		Encryption: standin.EncryptionOff,
	})
}

func openTapped(t *testing.T, srv *standin.Server) (*sql.DB, *tapDialer) {
	t.Helper()
	cn, err := mssql.NewConnector(fmt.Sprintf("sqlserver://sa:Secret%%211@%s?database=app&encrypt=disable&dial+timeout=5", srv.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	d := &tapDialer{t: t}
	cn.Dialer = d
	db := sql.OpenDB(cn)
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	t.Cleanup(func() { db.Close() })
	return db, d
}

// probe reads what a client can see of its session's state.
func probe(ctx context.Context, t *testing.T, c *sql.Conn) string {
	t.Helper()
	var db, lang, dateFormat string
	var options, dateFirst, lockTimeout, textSize, isolation, deadlock int64
	if err := c.QueryRowContext(ctx, "SELECT DB_NAME(), @@OPTIONS, @@LANGUAGE, @@DATEFIRST, @@LOCK_TIMEOUT, @@TEXTSIZE").
		Scan(&db, &options, &lang, &dateFirst, &lockTimeout, &textSize); err != nil {
		t.Fatal(err)
	}
	if err := c.QueryRowContext(ctx, "SELECT date_format, transaction_isolation_level, deadlock_priority FROM sys.dm_exec_sessions WHERE session_id = @@SPID").
		Scan(&dateFormat, &isolation, &deadlock); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("db=%s options=%d lang=%s datefirst=%d lock_timeout=%d textsize=%d dateformat=%s isolation=%d deadlock=%d",
		db, options, lang, dateFirst, lockTimeout, textSize, dateFormat, isolation, deadlock)
}

func exec(ctx context.Context, t *testing.T, c *sql.Conn, batches ...string) {
	t.Helper()
	for _, b := range batches {
		if _, err := c.ExecContext(ctx, b); err != nil {
			t.Fatalf("%q: %v", b, err)
		}
	}
}

var clientBatches = []string{
	"USE other",
	"SET NOCOUNT ON; SET DATEFORMAT ymd; SET LOCK_TIMEOUT 1234",
	"SET ANSI_DEFAULTS ON",
	"SET IMPLICIT_TRANSACTIONS OFF; SET CURSOR_CLOSE_ON_COMMIT OFF",
	"SET TEXTSIZE 4096; SET DATEFIRST 3",
	"SET TRANSACTION ISOLATION LEVEL SERIALIZABLE",
	"SET DEADLOCK_PRIORITY HIGH",
	"SET CONCAT_NULL_YIELDS_NULL OFF; SET XACT_ABORT ON; SET ARITHABORT OFF",
}

// TestStateMovesToAnotherBackend: the client's state, followed from the wire, is re-applied
// on a second backend session: once freshly logged in, once reset by the driver after another
// user's changes. Each reads the same as the client's own session.
func TestStateMovesToAnotherBackend(t *testing.T) {
	srv := startStandin(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	dbA, tapsA := openTapped(t, srv)
	client, err := dbA.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	exec(ctx, t, client, clientBatches...)
	want := probe(ctx, t, client)
	clientState, err := tapsA.last().snapshot()
	if err != nil {
		t.Fatal(err)
	}

	dbB, tapsB := openTapped(t, srv)
	backend, err := dbB.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	login, err := tapsB.last().snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if login.Database != "app" || login.Language == "" {
		t.Fatalf("login state %+v: the login reply's ENVCHANGEs not followed", login)
	}
	before := probe(ctx, t, backend)
	if before == want {
		t.Fatalf("a fresh session already reads %s: the test would prove nothing", want)
	}
	prelude, reset := txpool.Reapply(login, login, clientState)
	if reset {
		t.Fatalf("a fresh backend needs no reset (prelude %q)", prelude)
	}
	exec(ctx, t, backend, prelude)
	if got := probe(ctx, t, backend); got != want {
		t.Fatalf("after the prelude %q the moved session reads\n  %s\nthe client's own read\n  %s", prelude, got, want)
	}
	t.Logf("prelude (%d bytes): %s", len(prelude), prelude)

	// Another client leaves other settings on the backend; the driver's pool reuse resets it
	// (RESETCONNECTION on its next request), which is where the prelude must start from.
	exec(ctx, t, backend, "SET NOCOUNT OFF; SET ARITHABORT ON; SET TEXTSIZE 100", "USE app")
	dirty, _ := tapsB.last().snapshot()
	backend.Close()
	backend, err = dbB.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer backend.Close()
	prelude, reset = txpool.Reapply(dirty, login, clientState)
	if !reset {
		t.Fatalf("a backend with another client's settings must be reset first (prelude %q)", prelude)
	}
	exec(ctx, t, backend, prelude)
	if got := probe(ctx, t, backend); got != want {
		t.Fatalf("after the reset and prelude %q the session reads\n  %s\nwant\n  %s", prelude, got, want)
	}
}

// TestBindingOnRealStreams: the binding follows go-mssqldb's requests and the stand-in's
// responses: autocommit statements release the backend after each response, an explicit
// transaction (and the rest of the pin reasons the driver can cause) hold it until it ends.
// It also records which of go-mssqldb's ways to run a statement pin: none of its
// parameterised or prepared statements do (it sends sp_executesql, not sp_prepare).
func TestBindingOnRealStreams(t *testing.T) {
	srv := startStandin(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	db, taps := openTapped(t, srv)
	c, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	tp := taps.last()
	tp.mu.Lock()
	st := tp.state.Clone()
	tp.binding = txpool.NewBinding(st)
	tp.mu.Unlock()

	phase := func() (txpool.Phase, string) {
		tp.mu.Lock()
		defer tp.mu.Unlock()
		if tp.scanErr != nil {
			t.Fatal(tp.scanErr)
		}
		return tp.binding.Phase(), tp.binding.Pins()
	}
	for _, tc := range []struct {
		name  string
		run   func() error
		phase txpool.Phase
		pins  string
	}{
		{"autocommit batch", func() error { _, err := c.ExecContext(ctx, "CREATE TABLE t (a int)"); return err }, txpool.Unbound, ""},
		{"parameterised statement", func() error { _, err := c.ExecContext(ctx, "INSERT INTO t VALUES (@p1)", 1); return err }, txpool.Unbound, ""},
		{"prepared statement", func() error {
			s, err := c.PrepareContext(ctx, "SELECT a FROM t WHERE a = @p1")
			if err != nil {
				return err
			}
			defer s.Close()
			var a int
			return s.QueryRowContext(ctx, 1).Scan(&a)
		}, txpool.Unbound, ""},
		{"tracked SET moves", func() error { _, err := c.ExecContext(ctx, "SET NOCOUNT ON"); return err }, txpool.Unbound, ""},
		{"explicit transaction begun", func() error { _, err := c.ExecContext(ctx, "BEGIN TRAN; INSERT INTO t VALUES (2)"); return err }, txpool.Bound, "transaction"},
		{"inside it", func() error { _, err := c.ExecContext(ctx, "INSERT INTO t VALUES (3)"); return err }, txpool.Bound, "transaction"},
		{"rolled back", func() error { _, err := c.ExecContext(ctx, "ROLLBACK"); return err }, txpool.Unbound, ""},
		{"implicit transactions on", func() error { _, err := c.ExecContext(ctx, "SET IMPLICIT_TRANSACTIONS ON"); return err }, txpool.Unbound, ""},
		{"implicit transaction opened by a statement", func() error { _, err := c.ExecContext(ctx, "INSERT INTO t VALUES (4)"); return err }, txpool.Bound, "transaction"},
		{"committed", func() error { _, err := c.ExecContext(ctx, "COMMIT; SET IMPLICIT_TRANSACTIONS OFF"); return err }, txpool.Unbound, ""},
		{"temp table", func() error { _, err := c.ExecContext(ctx, "CREATE TABLE #x (a int)"); return err }, txpool.Bound, "temp_table"},
	} {
		if err := tc.run(); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if p, pins := phase(); p != tc.phase || pins != tc.pins {
			t.Errorf("%s: phase %s pins %q, want %s %q", tc.name, p, pins, tc.phase, tc.pins)
		}
	}
}
