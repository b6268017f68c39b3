package standin_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"testing"
	"time"

	mssql "github.com/microsoft/go-mssqldb"

	"github.com/tdspool/tdspool/standin"
	"github.com/tdspool/tdspool/standin/standintest"
)

func start(t *testing.T, cfg standin.Config) *standin.Server {
	t.Helper()
	if cfg.Users == nil {
		cfg.Users = map[string]string{"demo": "Demo-Passw0rd"}
	}
	cfg.DataDir = t.TempDir()
	cfg.Logf = t.Logf
	return standintest.Start(t, cfg)
}

func dsn(srv *standin.Server, user, pass, db string) string {
	return fmt.Sprintf("sqlserver://%s:%s@127.0.0.1:%d?database=%s&encrypt=disable&dial+timeout=5", user, pass, srv.Port(), db)
}

func TestConfigValidationListsEveryProblem(t *testing.T) {
	_, err := standin.New(standin.Config{Databases: []string{"ok", "bad name", "ok"}, DefaultDatabase: "nope", MaxConnections: -1})
	if err == nil {
		t.Fatal("invalid config accepted")
	}
	for _, want := range []string{"Users", "Databases[1]", "Databases[2]", "DefaultDatabase", "MaxConnections"} {
		if !contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
}

func contains(s, sub string) bool {
	return len(sub) == 0 || (len(s) >= len(sub) && (s[:len(sub)] == sub || contains(s[1:], sub)))
}

// Login failures must look exactly like SQL Server's to the driver.
func TestLoginErrors(t *testing.T) {
	srv := start(t, standin.Config{Databases: []string{"tenant_a"}, MaxConnections: 1})
	cases := []struct {
		name, user, pass, db string
		number               int32
		state, class         uint8
		msg                  string
	}{
		{"wrong password", "demo", "nope", "tenant_a", 18456, 1, 14, "Login failed for user 'demo'."},
		{"unknown login", "mallory", "x", "tenant_a", 18456, 1, 14, "Login failed for user 'mallory'."},
		{"unknown database", "demo", "Demo-Passw0rd", "nodb", 4060, 1, 11, `Cannot open database "nodb" requested by the login. The login failed.`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			db, _ := sql.Open("sqlserver", dsn(srv, tc.user, tc.pass, tc.db))
			defer db.Close()
			err := db.Ping()
			var me mssql.Error
			if !errors.As(err, &me) {
				t.Fatalf("got %v, want mssql.Error", err)
			}
			// go-mssqldb reports the last ERROR and keeps all of them in All;
			// its Message carries a "login error: " prefix.
			first := me.All[0]
			if first.Number != tc.number || first.State != tc.state || first.Class != tc.class || first.Message != tc.msg {
				t.Fatalf("got %d/%d/%d %q, want %d/%d/%d %q", first.Number, first.State, first.Class, first.Message, tc.number, tc.state, tc.class, tc.msg)
			}
			if last := me.All[len(me.All)-1]; last.Number != 18456 {
				t.Fatalf("last error %d, want 18456 (SQL Server ends every failed login with it)", last.Number)
			}
		})
	}
	// MaxConnections=1: a second session is refused with 17809.
	db1, _ := sql.Open("sqlserver", dsn(srv, "demo", "Demo-Passw0rd", "tenant_a"))
	defer db1.Close()
	c1, err := db1.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Close()
	db2, _ := sql.Open("sqlserver", dsn(srv, "demo", "Demo-Passw0rd", "tenant_a"))
	defer db2.Close()
	var me mssql.Error
	if err := db2.Ping(); !errors.As(err, &me) || me.Number != 17809 || me.Class != 20 {
		t.Fatalf("second session: got %v, want error 17809 class 20", err)
	}
	if st := srv.Stats(); st.FailedLogins != 4 || st.Logins != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// The oracle counters and fault injection.
func TestCountersAndFaults(t *testing.T) {
	srv := start(t, standin.Config{})
	db, _ := sql.Open("sqlserver", dsn(srv, "demo", "Demo-Passw0rd", "master"))
	defer db.Close()
	ctx := context.Background()
	var conns []*sql.Conn
	spids := map[int]bool{}
	for i := 0; i < 3; i++ {
		c, err := db.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var spid int
		if err := c.QueryRowContext(ctx, "SELECT @@SPID").Scan(&spid); err != nil {
			t.Fatal(err)
		}
		spids[spid] = true
		conns = append(conns, c)
	}
	if len(spids) != 3 || srv.OpenConnections() != 3 || srv.PeakConnections() != 3 || len(srv.SPIDs()) != 3 {
		t.Fatalf("spids %v open %d peak %d", spids, srv.OpenConnections(), srv.PeakConnections())
	}
	srv.DropAll()
	waitFor(t, func() bool { return srv.OpenConnections() == 0 })
	if srv.PeakConnections() != 3 {
		t.Fatalf("peak %d after drop, want 3", srv.PeakConnections())
	}
	for _, c := range conns {
		if err := c.PingContext(ctx); err == nil {
			t.Fatal("connection survived DropAll")
		}
		c.Close()
	}
	srv.RefuseNew(true)
	if err := db.PingContext(ctx); err == nil {
		t.Fatal("connected while refusing")
	}
	srv.RefuseNew(false)
	if err := db.PingContext(ctx); err != nil {
		t.Fatal(err)
	}
	srv.ResetPeak()
	if srv.PeakConnections() != srv.OpenConnections() {
		t.Fatal("ResetPeak")
	}
	srv.SetDelay(200 * time.Millisecond)
	start := time.Now()
	if err := db.PingContext(ctx); err != nil || time.Since(start) < 200*time.Millisecond {
		t.Fatalf("delay not applied: %v %v", err, time.Since(start))
	}
}

// Data survives a restart on the same DataDir.
func TestDataSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	cfg := standin.Config{Users: map[string]string{"u": "p"}, Databases: []string{"d"}, DataDir: dir}
	for round := 0; round < 2; round++ {
		srv, err := standin.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := srv.Start(); err != nil {
			t.Fatal(err)
		}
		db, _ := sql.Open("sqlserver", dsn(srv, "u", "p", "d"))
		if round == 0 {
			_, err = db.Exec("CREATE TABLE kept (v NVARCHAR(10)); INSERT INTO kept VALUES (N'x')")
		} else {
			var v string
			err = db.QueryRow("SELECT v FROM kept").Scan(&v)
		}
		db.Close()
		srv.Close()
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
	}
}

// T-SQL subset: table-driven statements and the values or errors they give.
func TestTSQLSubset(t *testing.T) {
	srv := start(t, standin.Config{Databases: []string{"tenant_a"}, ServerName: "bucket-007"})
	c := oneConn(t, srv)
	runSteps(t, c, []step{
		{"SELECT @@SERVERNAME", "bucket-007", 0},
		{"SELECT DB_NAME()", "tenant_a", 0},
		{"USE master; SELECT DB_NAME()", "master", 0},
		{"USE tenant_a\nSELECT DB_NAME()", "tenant_a", 0},
		{"USE nodb", nil, 911},
		{"SET NOCOUNT ON; SET ANSI_NULLS ON\nSET XACT_ABORT OFF SET TEXTSIZE 2147483647 SET FOO_UNKNOWN ON SELECT 1", int64(1), 0},
		{"CREATE TABLE [dbo].[t1] ([id] INT IDENTITY(1,1) NOT NULL, v NVARCHAR(20) DEFAULT N'd')", nil, 0},
		{"INSERT INTO dbo.t1 (v) VALUES (N'a'), (N'b'); INSERT INTO t1 DEFAULT VALUES; SELECT COUNT(*) FROM t1", int64(3), 0},
		{"SELECT TOP 1 v FROM t1 ORDER BY id DESC", "d", 0},
		{"SELECT TOP (2) COUNT(*) FROM t1", int64(3), 0},
		{"UPDATE t1 SET v = 'z' WHERE id = 1; SELECT v FROM t1 WHERE id = 1", "z", 0},
		{"DELETE FROM t1 WHERE id = 2; SELECT @@ROWCOUNT", int64(1), 0},
		{"BEGIN TRAN; BEGIN TRAN; SELECT @@TRANCOUNT", int64(2), 0},
		{"COMMIT; SELECT @@TRANCOUNT", int64(1), 0},
		{"SAVE TRAN sp1; INSERT INTO t1 (v) VALUES ('gone'); ROLLBACK TRAN sp1; SELECT COUNT(*) FROM t1 WHERE v = 'gone'", int64(0), 0},
		{"IF @@TRANCOUNT > 0 COMMIT TRAN; SELECT @@TRANCOUNT", int64(0), 0},
		{"COMMIT", nil, 3902},
		{"ROLLBACK", nil, 3903},
		{"IF OBJECT_ID('dbo.t1') IS NOT NULL DROP TABLE t1; SELECT COUNT(*) FROM sqlite_master WHERE name = 't1'", int64(0), 0},
		{"DROP TABLE t1", nil, 3701},
		{"SELECT * FROM missing", nil, 208},
		{"SELECT nocolumn FROM sqlite_master", nil, 207},
		{"SELECT FROM WHERE", nil, 102},
		{"SELECT 'unclosed", nil, 105},
		{"DECLARE @x INT = 5; SET @x = @x + 1; SELECT @x", int64(6), 0},
		{"SELECT @undeclared", nil, 137},
		{"RAISERROR('info only', 5, 1); SELECT 2", int64(2), 0},
		{"RAISERROR(N'bad %s', 16, 1, N'thing')", nil, 50000},
		{"THROW 50001, 'thrown', 1", nil, 50001},
		{"WAITFOR DELAY '00:00:00.050'; SELECT 3", int64(3), 0},
		{"CREATE TABLE #tmp (x INT); INSERT INTO #tmp VALUES (9); SELECT x FROM #tmp", int64(9), 0},
		{"SELECT CAST('12' AS INT) + 1", int64(13), 0},
		{"exec_nothing_here", nil, 2812},
	})
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
