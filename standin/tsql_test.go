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
)

// The T-SQL that drivers and ORMs send beyond single statements: blocks,
// IF/ELSE, WHILE, TRY/CATCH, THROW, table variables, OUTPUT INSERTED,
// SCOPE_IDENTITY and stored procedures.
func TestTSQLControlFlowAndProcedures(t *testing.T) {
	srv := start(t, standin.Config{Databases: []string{"tenant_a"}})
	c := oneConn(t, srv)
	runSteps(t, c, []step{
		{q: "CREATE TABLE items (id INT IDENTITY(1,1) PRIMARY KEY, name NVARCHAR(50) NOT NULL, qty INT)"},
		{q: "IF 1 = 1 BEGIN SELECT 'then' END ELSE BEGIN SELECT 'else' END", want: "then"},
		{q: "IF 1 = 0 SELECT 'then' ELSE SELECT 'else'", want: "else"},
		{q: "IF 1 = 0 SELECT 1 ELSE IF 2 = 2 SELECT 2 ELSE SELECT 3", want: 2},
		{q: "SELECT CASE WHEN 1 = 1 THEN 'a' ELSE 'b' END", want: "a"},
		{q: "DECLARE @i INT = 0; WHILE @i < 5 BEGIN SET @i = @i + 1; IF @i = 3 BREAK END; SELECT @i", want: 3},
		{q: "BEGIN TRY INSERT INTO items (name) VALUES (NULL) END TRY BEGIN CATCH SELECT ERROR_NUMBER() END CATCH", want: 515},
		{q: "BEGIN TRY INSERT INTO items (name) VALUES (NULL) END TRY BEGIN CATCH SELECT ERROR_MESSAGE() END CATCH",
			want: "Cannot insert the value NULL into column 'name', table 'tenant_a.dbo.items'; column does not allow nulls. INSERT fails."},
		{q: "BEGIN TRY THROW 50001, N'custom', 3 END TRY BEGIN CATCH SELECT ERROR_NUMBER() * 100 + ERROR_STATE() END CATCH", want: 5000103},
		{q: "BEGIN TRY THROW 50002, N'again', 1 END TRY BEGIN CATCH THROW END CATCH", errCode: 50002},
		{q: "SELECT 1; THROW", errCode: 10704},
		{q: "SELECT ERROR_NUMBER()", want: nil},
		{q: "DECLARE @t TABLE (k INT, v NVARCHAR(10)); INSERT INTO @t VALUES (1, N'x'), (2, N'y'); SELECT COUNT(*) FROM @t", want: 2},
		{q: "INSERT INTO items (name, qty) OUTPUT INSERTED.id VALUES (N'apple', 3)", want: 1},
		{q: "INSERT INTO items (name, qty) VALUES (N'pear', 1); SELECT SCOPE_IDENTITY()", want: 2},
		{q: "UPDATE items SET qty = qty + 10 OUTPUT INSERTED.qty WHERE id = 1", want: 13},
		{q: "DELETE FROM items OUTPUT DELETED.name WHERE id = 2", want: "pear"},
		{q: `CREATE PROCEDURE dbo.add_item @name NVARCHAR(50), @qty INT = 1, @id INT OUTPUT
AS
BEGIN
	SET NOCOUNT ON;
	IF @qty < 0 THROW 50010, N'negative quantity', 1;
	INSERT INTO items (name, qty) VALUES (@name, @qty);
	SET @id = SCOPE_IDENTITY();
	RETURN 7;
END`},
		{q: "CREATE PROCEDURE add_item AS SELECT 1", errCode: 2714},
		{q: "DECLARE @id INT, @rc INT; EXEC @rc = add_item N'plum', @id = @id OUTPUT; SELECT @rc * 1000 + @id", want: 7003},
		{q: "SELECT qty FROM items WHERE name = N'plum'", want: 1},
		{q: "DECLARE @id INT; EXEC add_item @name = N'bad', @qty = -1, @id = @id OUTPUT", errCode: 50010},
		{q: "DECLARE @id INT; BEGIN TRY EXEC add_item N'bad', -1, @id OUTPUT END TRY BEGIN CATCH SELECT ERROR_PROCEDURE() END CATCH", want: "add_item"},
		{q: "EXEC add_item @qty = 1", errCode: 201},
		{q: "CREATE OR ALTER PROCEDURE add_item AS RETURN 1"},
		{q: "DROP PROCEDURE add_item"},
		{q: "DROP PROCEDURE add_item", errCode: 3701},
		{q: "DROP PROCEDURE IF EXISTS add_item"},
		{q: `SET XACT_ABORT ON; BEGIN TRAN; BEGIN TRY INSERT INTO items (name) VALUES (NULL) END TRY
BEGIN CATCH
	DECLARE @state INT = XACT_STATE(), @commit INT;
	BEGIN TRY COMMIT END TRY BEGIN CATCH SET @commit = ERROR_NUMBER() END CATCH;
	ROLLBACK;
	SELECT @state * 10000 + @commit
END CATCH`, want: -10000 + 3930},
		{q: "BEGIN TRAN; BEGIN TRY INSERT INTO items (name) VALUES (NULL) END TRY BEGIN CATCH END CATCH", errCode: 3998},
		{q: "SELECT @@TRANCOUNT", want: 0},
	})
}

// A stored procedure's OUTPUT parameter and return status over RPC (what
// database/sql sends for a procedure name with sql.Out arguments).
func TestStoredProcedureRPC(t *testing.T) {
	srv := start(t, standin.Config{Databases: []string{"tenant_a"}})
	c := oneConn(t, srv)
	ctx := context.Background()
	if _, err := c.ExecContext(ctx, "CREATE PROCEDURE double_it @in INT, @out INT OUTPUT AS BEGIN SET @out = @in * 2; RETURN 3 END"); err != nil {
		t.Fatal(err)
	}
	var out int
	var rs mssql.ReturnStatus
	if _, err := c.ExecContext(ctx, "double_it", sql.Named("in", 21), sql.Named("out", sql.Out{Dest: &out}), &rs); err != nil {
		t.Fatal(err)
	}
	if out != 42 || rs != 3 {
		t.Fatalf("out %d status %d, want 42 and 3", out, rs)
	}
	_, err := c.ExecContext(ctx, "double_it", sql.Named("in", 1))
	var me mssql.Error
	if !errors.As(err, &me) || me.Number != 201 {
		t.Fatalf("missing parameter: %v, want 201", err)
	}
}

// T-SQL cursors and API cursors (sp_cursoropen/sp_cursorfetch/
// sp_cursorclose by RPC).
func TestCursors(t *testing.T) {
	srv := start(t, standin.Config{Databases: []string{"tenant_a"}})
	c := oneConn(t, srv)
	ctx := context.Background()
	runSteps(t, c, []step{
		{q: "CREATE TABLE cur (id INT PRIMARY KEY, v NVARCHAR(10)); INSERT INTO cur VALUES (1, N'a'), (2, N'b'), (3, N'c')"},
		{q: `DECLARE @id INT, @v NVARCHAR(10), @sum INT = 0;
DECLARE walk CURSOR LOCAL FAST_FORWARD FOR SELECT id, v FROM cur ORDER BY id;
OPEN walk;
FETCH NEXT FROM walk INTO @id, @v;
WHILE @@FETCH_STATUS = 0
BEGIN
	SET @sum = @sum + @id;
	FETCH NEXT FROM walk INTO @id, @v;
END;
CLOSE walk;
DEALLOCATE walk;
SELECT @sum`, want: 6},
		{q: "DECLARE g CURSOR SCROLL FOR SELECT v FROM cur ORDER BY id"},
		{q: "OPEN g"},
		{q: "FETCH LAST FROM g", want: "c"},
		{q: "FETCH PRIOR FROM g", want: "b"},
		{q: "FETCH ABSOLUTE 1 FROM g", want: "a"},
		{q: "OPEN g", errCode: 16905},
		{q: "DECLARE g CURSOR FOR SELECT 1", errCode: 16915},
		{q: "CLOSE g; DEALLOCATE g"},
		{q: "FETCH NEXT FROM g", errCode: 16916},
	})
	var h, scroll, cc, rows int32
	scroll, cc = 8, 1 // static, read-only
	if _, err := c.ExecContext(ctx, "sp_cursoropen", sql.Named("cursor", sql.Out{Dest: &h}), sql.Named("stmt", "SELECT id FROM cur ORDER BY id"),
		sql.Named("scrollopt", sql.Out{Dest: &scroll}), sql.Named("ccopt", sql.Out{Dest: &cc}), sql.Named("rowcount", sql.Out{Dest: &rows})); err != nil {
		t.Fatal(err)
	}
	if h == 0 || rows != 3 {
		t.Fatalf("sp_cursoropen: handle %d rowcount %d", h, rows)
	}
	rs, err := c.QueryContext(ctx, "sp_cursorfetch", h, 2, 0, 2)
	if err != nil {
		t.Fatal(err)
	}
	var got []int
	for rs.Next() {
		var id int
		rs.Scan(&id)
		got = append(got, id)
	}
	rs.Close()
	if len(got) != 2 || got[0] != 1 || got[1] != 2 {
		t.Fatalf("sp_cursorfetch NEXT 2: %v", got)
	}
	if _, err := c.ExecContext(ctx, "sp_cursorclose", h); err != nil {
		t.Fatal(err)
	}
	_, err = c.ExecContext(ctx, "sp_cursorclose", h)
	var me mssql.Error
	if !errors.As(err, &me) || me.Number != 16950 {
		t.Fatalf("closing twice: %v", err)
	}
}

// sp_getapplock / sp_releaseapplock: owners, conflicts, time-outs and
// release at commit.
func TestAppLocks(t *testing.T) {
	srv := start(t, standin.Config{Databases: []string{"tenant_a"}})
	a, b := oneConn(t, srv), oneConn(t, srv)
	lock := "DECLARE @r INT; EXEC @r = sp_getapplock @Resource = 'job', @LockMode = '%s', @LockOwner = '%s', @LockTimeout = %d; SELECT @r"
	runSteps(t, a, []step{
		{q: sprintf(lock, "Exclusive", "Session", 0), want: 0},
		{q: "SELECT APPLOCK_MODE('public', 'job', 'Session')", want: "Exclusive"},
	})
	runSteps(t, b, []step{
		{q: sprintf(lock, "Shared", "Session", 0), want: -1},
		{q: sprintf(lock, "Shared", "Session", 50), want: -1},
		{q: sprintf(lock, "Exclusive", "Transaction", 0), errCode: 50000}, // no transaction
		{q: "EXEC sp_releaseapplock @Resource = 'job', @LockOwner = 'Session'", errCode: 1223},
	})
	runSteps(t, a, []step{{q: "EXEC sp_releaseapplock @Resource = 'job', @LockOwner = 'Session'"}})
	runSteps(t, b, []step{
		{q: "BEGIN TRAN; " + sprintf(lock, "Exclusive", "Transaction", 0), want: 0},
	})
	runSteps(t, a, []step{{q: sprintf(lock, "Shared", "Session", 0), want: -1}})
	runSteps(t, b, []step{{q: "COMMIT"}}) // the transaction's lock goes with it
	runSteps(t, a, []step{{q: sprintf(lock, "Shared", "Session", 0), want: 0}})
}

func sprintf(f string, a ...any) string { return fmt.Sprintf(f, a...) }

// datetime and smalldatetime columns are reported as themselves
// (DATETIMN 8 and 4), with their precision.
func TestDateTimeTypes(t *testing.T) {
	srv := start(t, standin.Config{Databases: []string{"tenant_a"}})
	c := oneConn(t, srv)
	ctx := context.Background()
	if _, err := c.ExecContext(ctx, "CREATE TABLE dts (a DATETIME, b SMALLDATETIME, c DATETIME2(3)); INSERT INTO dts VALUES ('2024-02-29 13:14:15.123', '2024-02-29 13:14:29', '2024-02-29 13:14:15.123')"); err != nil {
		t.Fatal(err)
	}
	ts := time.Date(2024, 3, 1, 1, 2, 3, 456789000, time.UTC)
	if _, err := c.ExecContext(ctx, "INSERT INTO dts (a, b) VALUES (@p1, @p2)", ts, ts); err != nil {
		t.Fatal(err)
	}
	rows, err := c.QueryContext(ctx, "SELECT a, b, c FROM dts ORDER BY a")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	cts, _ := rows.ColumnTypes()
	var names []string
	for _, ct := range cts {
		names = append(names, ct.DatabaseTypeName())
	}
	if fmt.Sprint(names) != "[DATETIME SMALLDATETIME DATETIME2]" {
		t.Errorf("column types %v", names)
	}
	var got []string
	for rows.Next() {
		var a, b time.Time
		var c sql.NullTime
		if err := rows.Scan(&a, &b, &c); err != nil {
			t.Fatal(err)
		}
		got = append(got, a.Format("15:04:05.000000")+" "+b.Format("15:04:05"))
	}
	want := "[13:14:15.123000 13:14:00 01:02:03.457000 01:02:00]" // smalldatetime rounds 3 s down
	if fmt.Sprint(got) != want {
		t.Errorf("values %v, want %s", got, want)
	}
}

// Expressions drivers and ORMs commonly send.
func TestExpressions(t *testing.T) {
	srv := start(t, standin.Config{Databases: []string{"tenant_a"}})
	c := oneConn(t, srv)
	runSteps(t, c, []step{
		{q: "SELECT N'a' + N'b' + 'c'", want: "abc"},
		{q: "SELECT 'id-' + CAST(7 AS NVARCHAR(10))", want: "id-7"},
		{q: "SELECT CONCAT('x', 1, NULL, 'y')", want: "x1y"},
		{q: "SELECT 1 + 2", want: 3},
	})
	var now time.Time
	// GETDATE() is local time, which go-mssqldb labels UTC: compare loosely.
	if err := c.QueryRowContext(context.Background(), "SELECT GETDATE()").Scan(&now); err != nil || time.Until(now).Abs() > 15*time.Hour {
		t.Fatalf("GETDATE() as datetime: %v %v", now, err)
	}
}
