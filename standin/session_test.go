package standin_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	mssql "github.com/microsoft/go-mssqldb"

	"github.com/tdspool/tdspool/standin"
)

// sessionState is one query that reads every piece of session state a
// pooled connection could carry from one client to the next.
const sessionState = `SELECT @@OPTIONS, @@LANGUAGE, @@DATEFIRST, @@LOCK_TIMEOUT, @@TEXTSIZE,
	SESSIONPROPERTY('ANSI_NULLS'), SESSIONPROPERTY('QUOTED_IDENTIFIER'), SESSIONPROPERTY('ARITHABORT'),
	CONTEXT_INFO(), SESSION_CONTEXT(N'tenant'), USER_NAME(), DB_NAME(), @@TRANCOUNT,
	(SELECT transaction_isolation_level FROM sys.dm_exec_sessions WHERE session_id = @@SPID),
	(SELECT date_format FROM sys.dm_exec_sessions WHERE session_id = @@SPID),
	(SELECT deadlock_priority FROM sys.dm_exec_sessions WHERE session_id = @@SPID),
	OBJECT_ID('tempdb..#pooled'), APP_NAME(), HOST_NAME(), SUSER_SNAME(), @@SPID,
	CURSOR_STATUS('global', 'pooledcur'), APPLOCK_MODE('public', 'pooled', 'Session')`

func readState(ctx context.Context, c *sql.Conn) (string, error) {
	vals := make([]any, 23)
	ptrs := make([]any, len(vals))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	if err := c.QueryRowContext(ctx, sessionState).Scan(ptrs...); err != nil {
		return "", err
	}
	return fmt.Sprintf("%v", vals), nil
}

// Everything a client can change in its session is back at the login's
// value after RESETCONNECTION (go-mssqldb sets the flag on the first
// request of a connection taken back from database/sql's pool), and the
// temp table and the open transaction are gone. The isolation level is
// the exception (TestResetConnectionKeepsIsolationLevel).
func TestResetConnectionRestoresLoginState(t *testing.T) {
	srv := start(t, standin.Config{Databases: []string{"tenant_a", "tenant_b"}})
	db, _ := sql.Open("sqlserver", dsn(srv, "demo", "Demo-Passw0rd", "tenant_a")+"&app+name=resetapp&workstation+id=wsid1")
	defer db.Close()
	db.SetMaxOpenConns(1)
	ctx := context.Background()
	c, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	fresh, err := readState(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(fresh, "resetapp wsid1 demo") {
		t.Errorf("login identity: %s", fresh)
	}
	var spid int
	c.QueryRowContext(ctx, "SELECT @@SPID").Scan(&spid)
	for _, q := range []string{
		"USE tenant_b",
		"CREATE TABLE keep (id INT)",
		"BEGIN TRAN",
		"INSERT INTO keep VALUES (1)",
		"SET ANSI_NULLS OFF; SET QUOTED_IDENTIFIER OFF; SET ARITHABORT ON; SET NOCOUNT ON; SET XACT_ABORT ON",
		"SET DATEFIRST 1; SET DATEFORMAT dmy; SET LOCK_TIMEOUT 500; SET TEXTSIZE 1000; SET DEADLOCK_PRIORITY LOW",
		"SET ANSI_WARNINGS OFF; SET ANSI_PADDING OFF; SET CONCAT_NULL_YIELDS_NULL OFF; SET CURSOR_CLOSE_ON_COMMIT ON",
		"SET ROWCOUNT 1",
		"SET CONTEXT_INFO 0x0102",
		"EXEC sp_set_session_context N'tenant', N'acme'",
		"CREATE TABLE #pooled (x INT)",
		"DECLARE pooledcur CURSOR FOR SELECT 1; OPEN pooledcur",
		"EXEC sp_getapplock @Resource = 'pooled', @LockMode = 'Exclusive', @LockOwner = 'Session'",
		"SET IMPLICIT_TRANSACTIONS ON",
	} {
		if _, err := c.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	dirty, err := readState(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	if dirty == fresh {
		t.Fatalf("state did not change: %s", dirty)
	}
	if !strings.HasSuffix(fresh, " -3 NoLock]") || !strings.HasSuffix(dirty, " 1 Exclusive]") {
		t.Fatalf("cursor/applock not visible: fresh %s dirty %s", fresh, dirty)
	}
	c.Close() // back to the pool; the next request carries RESETCONNECTION
	before := srv.Stats().Resets
	mark := srv.AuditSeq()
	c, err = db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	after, err := readState(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	if after != fresh {
		t.Errorf("after reset:\n got %s\nwant %s", after, fresh)
	}
	if srv.Stats().Resets != before+1 {
		t.Errorf("resets %d → %d", before, srv.Stats().Resets)
	}
	recs := srv.AuditSince(mark)
	if len(recs) == 0 || !recs[0].ResetConnection || recs[0].SPID != spid || recs[0].Login != "demo" {
		t.Errorf("audit after reuse: %+v", recs)
	}
	var n int
	if err := c.QueryRowContext(ctx, "SELECT COUNT(*) FROM (SELECT 1 AS x UNION ALL SELECT 2) t").Scan(&n); err != nil || n != 2 {
		t.Errorf("SET ROWCOUNT survived the reset: %d %v", n, err)
	}
	if err := c.QueryRowContext(ctx, "USE tenant_b; SELECT COUNT(*) FROM keep").Scan(&n); err != nil || n != 0 {
		t.Errorf("the open transaction's insert: count %d %v, want 0 (rolled back by the reset)", n, err)
	}
	in, ok := srv.Session(spid)
	if !ok || len(in.TempTables) != 0 || in.OpenTransactionCount != 0 || in.DatabaseName != "tenant_b" || in.ProgramName != "resetapp" ||
		in.OpenCursors != 0 || in.AppLocks != 0 {
		t.Errorf("SessionInfo after reset: %+v", in)
	}
}

// RESETCONNECTION keeps the session's transaction isolation level, as SQL
// Server's sp_reset_connection does, whether a SET or a TM BEGIN_XACT's
// isolation byte set it; the other SET options go back to the login's.
func TestResetConnectionKeepsIsolationLevel(t *testing.T) {
	srv := start(t, standin.Config{Databases: []string{"tenant_a"}})
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		dirty func(c *sql.Conn) error
		want  int
	}{
		{"set serializable", func(c *sql.Conn) error {
			_, err := c.ExecContext(ctx, "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE; SET LOCK_TIMEOUT 500")
			return err
		}, 4},
		{"set read uncommitted", func(c *sql.Conn) error {
			_, err := c.ExecContext(ctx, "SET TRANSACTION ISOLATION LEVEL READ UNCOMMITTED; SET LOCK_TIMEOUT 500")
			return err
		}, 1},
		{"tm begin repeatable read", func(c *sql.Conn) error {
			tx, err := c.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelRepeatableRead})
			if err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, "SET LOCK_TIMEOUT 500"); err != nil {
				return err
			}
			return tx.Commit()
		}, 3},
		{"back to read committed", func(c *sql.Conn) error {
			_, err := c.ExecContext(ctx, "SET TRANSACTION ISOLATION LEVEL SNAPSHOT; SET TRANSACTION ISOLATION LEVEL READ COMMITTED; SET LOCK_TIMEOUT 500")
			return err
		}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db, _ := sql.Open("sqlserver", dsn(srv, "demo", "Demo-Passw0rd", "tenant_a"))
			defer db.Close()
			db.SetMaxOpenConns(1)
			c, err := db.Conn(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if err := tc.dirty(c); err != nil {
				t.Fatal(err)
			}
			c.Close() // back to the pool; the next request carries RESETCONNECTION
			before := srv.Stats().Resets
			var iso, lockTimeout int
			if err := db.QueryRowContext(ctx, "SELECT transaction_isolation_level, @@LOCK_TIMEOUT FROM sys.dm_exec_sessions WHERE session_id = @@SPID").Scan(&iso, &lockTimeout); err != nil {
				t.Fatal(err)
			}
			if srv.Stats().Resets != before+1 {
				t.Fatalf("resets %d → %d, want one", before, srv.Stats().Resets)
			}
			if iso != tc.want || lockTimeout != -1 {
				t.Errorf("after reset: isolation %d lock timeout %d, want %d (kept) and -1 (the login's)", iso, lockTimeout, tc.want)
			}
		})
	}
}

// The login's option flags decide the starting options: fODBC (which every
// driver here sets) means ANSI_DEFAULTS minus IMPLICIT_TRANSACTIONS and
// CURSOR_CLOSE_ON_COMMIT, plus CONCAT_NULL_YIELDS_NULL.
func TestSessionOptions(t *testing.T) {
	srv := start(t, standin.Config{Databases: []string{"tenant_a"}})
	c := oneConn(t, srv)
	runSteps(t, c, []step{
		{q: "SELECT @@OPTIONS", want: 8 + 16 + 32 + 256 + 1024 + 4096},
		{q: "SELECT @@LANGUAGE", want: "us_english"},
		{q: "SELECT @@DATEFIRST", want: 7},
		{q: "SELECT @@LOCK_TIMEOUT", want: -1},
		{q: "SELECT @@TEXTSIZE", want: 2147483647},
		{q: "SET ANSI_DEFAULTS OFF; SELECT @@OPTIONS", want: 4096},
		{q: "SET ANSI_DEFAULTS ON; SELECT @@OPTIONS & 2", want: 2},
		{q: "SET IMPLICIT_TRANSACTIONS, CURSOR_CLOSE_ON_COMMIT OFF; SELECT @@OPTIONS", want: 8 + 16 + 32 + 256 + 1024 + 4096},
		{q: "SET ANSI_NULL_DFLT_OFF ON; SELECT @@OPTIONS & 3072", want: 2048},
		{q: "SET NOCOUNT ON; SELECT @@OPTIONS & 512", want: 512},
		{q: "SET LOCK_TIMEOUT 1500; SELECT @@LOCK_TIMEOUT", want: 1500},
		{q: "SET DATEFIRST 3; SELECT @@DATEFIRST", want: 3},
		{q: "SET TEXTSIZE 0; SELECT @@TEXTSIZE", want: 4096},
		{q: "SET LANGUAGE us_english; SELECT @@LANGUAGE", want: "us_english"},
		{q: "SET LANGUAGE Klingon", errCode: 2737},
		{q: "SET DATEFORMAT ydm; SELECT date_format FROM sys.dm_exec_sessions WHERE session_id = @@SPID", want: "ydm"},
		{q: "SET TRANSACTION ISOLATION LEVEL READ UNCOMMITTED; SELECT transaction_isolation_level FROM sys.dm_exec_sessions WHERE session_id = @@SPID", want: 1},
		{q: "SET DEADLOCK_PRIORITY -7; SELECT deadlock_priority FROM sys.dm_exec_sessions WHERE session_id = @@SPID", want: -7},
		{q: "SELECT SESSIONPROPERTY('ANSI_PADDING')", want: 1},
		{q: "SET ANSI_PADDING OFF; SELECT SESSIONPROPERTY('ANSI_PADDING')", want: 0},
		{q: "SET ROWCOUNT 2"},
	})
	rows, err := c.QueryContext(context.Background(), "SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for rows.Next() {
		n++
	}
	rows.Close()
	if n != 2 {
		t.Errorf("SET ROWCOUNT 2: %d rows", n)
	}
}

// Session context: CONTEXT_INFO, SESSION_CONTEXT, application roles and
// the identity functions.
func TestSessionContext(t *testing.T) {
	srv := start(t, standin.Config{Databases: []string{"tenant_a"}, AppRoles: map[string]string{"reporting": "R3port!"}})
	db, _ := sql.Open("sqlserver", dsn(srv, "demo", "Demo-Passw0rd", "tenant_a")+"&app+name=ctxapp&workstation+id=hostX")
	defer db.Close()
	db.SetMaxOpenConns(1)
	ctx := context.Background()
	c, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	runSteps(t, c, []step{
		{q: "SELECT APP_NAME()", want: "ctxapp"},
		{q: "SELECT HOST_NAME()", want: "hostX"},
		{q: "SELECT SUSER_SNAME()", want: "demo"},
		{q: "SELECT USER_NAME()", want: "dbo"},
		{q: "SELECT CONTEXT_INFO()", want: nil},
		{q: "SET CONTEXT_INFO 0xCAFE; SELECT CONTEXT_INFO()", want: []byte{0xCA, 0xFE}},
		{q: "SELECT context_info FROM sys.dm_exec_sessions WHERE session_id = @@SPID", want: []byte{0xCA, 0xFE}},
		{q: "EXEC sp_set_session_context @key = N'tenant', @value = 42, @read_only = 1; SELECT SESSION_CONTEXT(N'tenant')", want: 42},
		{q: "EXEC sp_set_session_context N'tenant', 43", errCode: 15664},
		{q: "SELECT SESSION_CONTEXT(N'missing')", want: nil},
		{q: "SELECT login_name FROM sys.dm_exec_sessions WHERE session_id = @@SPID", want: "demo"},
		{q: "SELECT program_name FROM sys.dm_exec_sessions WHERE session_id = @@SPID", want: "ctxapp"},
		{q: "SELECT host_name FROM sys.dm_exec_sessions WHERE session_id = @@SPID", want: "hostX"},
		{q: "SELECT DB_NAME(database_id) FROM sys.dm_exec_sessions WHERE session_id = @@SPID", want: "tenant_a"},
		{q: "EXEC sp_setapprole 'reporting', 'wrong'", errCode: 15151},
	})
	// sp_setapprole with a cookie, then sp_unsetapprole, over RPC.
	var cookie []byte
	if _, err := c.ExecContext(ctx, "sp_setapprole", sql.Named("rolename", "reporting"), sql.Named("password", "R3port!"),
		sql.Named("fCreateCookie", true), sql.Named("cookie", sql.Out{Dest: &cookie})); err != nil {
		t.Fatal(err)
	}
	runSteps(t, c, []step{{q: "SELECT USER_NAME()", want: "reporting"}, {q: "SELECT SUSER_SNAME()", want: "demo"}})
	if len(cookie) == 0 {
		t.Fatal("no cookie came back")
	}
	if _, err := c.ExecContext(ctx, "sp_unsetapprole", sql.Named("cookie", cookie)); err != nil {
		t.Fatal(err)
	}
	runSteps(t, c, []step{{q: "SELECT USER_NAME()", want: "dbo"}})
	// Without unsetting it, the pooled reuse's reset is refused and the
	// connection dropped, as SQL Server does (error 18059).
	if _, err := c.ExecContext(ctx, "EXEC sp_setapprole 'reporting', 'R3port!'"); err != nil {
		t.Fatal(err)
	}
	c.Close()
	c, err = db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var x int
	err = c.QueryRowContext(ctx, "SELECT 1").Scan(&x)
	var me mssql.Error
	if !errors.As(err, &me) || me.Number != 18059 {
		t.Fatalf("reset under an application role: %v, want error 18059", err)
	}
}

// The audit log and counters a pooling test reads.
func TestAuditAndSessionView(t *testing.T) {
	srv := start(t, standin.Config{Databases: []string{"tenant_a"}})
	db, _ := sql.Open("sqlserver", dsn(srv, "demo", "Demo-Passw0rd", "tenant_a")+"&app+name=auditapp")
	defer db.Close()
	ctx := context.Background()
	c1, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c2, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var spid1 int
	c1.QueryRowContext(ctx, "SELECT @@SPID").Scan(&spid1)
	if _, err := c1.ExecContext(ctx, "BEGIN TRAN"); err != nil {
		t.Fatal(err)
	}
	var n, open int
	if err := c2.QueryRowContext(ctx, "SELECT COUNT(*), SUM(open_transaction_count) FROM sys.dm_exec_sessions WHERE program_name = 'auditapp'").Scan(&n, &open); err != nil {
		t.Fatal(err)
	}
	if n != 2 || open != 1 {
		t.Errorf("dm_exec_sessions: %d sessions, %d open transactions; want 2, 1", n, open)
	}
	c1.ExecContext(ctx, "ROLLBACK")
	cctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	c2.ExecContext(cctx, "WAITFOR DELAY '00:00:10'") // go-mssqldb sends ATTENTION
	cancel()
	c1.Close()
	c2.Close()
	bad, _ := sql.Open("sqlserver", dsn(srv, "demo", "nope", "tenant_a"))
	defer bad.Close()
	bad.Ping()
	st := srv.Stats()
	if st.Logins != 2 || st.FailedLogins != 1 || st.PeakSessions != 2 {
		t.Errorf("stats %+v", st)
	}
	kinds := map[standin.AuditKind]int{}
	for _, r := range srv.Audit() {
		kinds[r.Kind]++
		if r.Kind == standin.AuditSQLBatch && (r.Login != "demo" || r.Database != "tenant_a" || r.SPID < 51) {
			t.Errorf("batch record %+v", r)
		}
	}
	if kinds[standin.AuditLogin] != 2 || kinds[standin.AuditLoginFailed] != 1 || kinds[standin.AuditSQLBatch] < 4 || kinds[standin.AuditAttention] != 1 {
		t.Errorf("audit kinds %v", kinds)
	}
}
