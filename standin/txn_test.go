package standin_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"testing"

	mssql "github.com/microsoft/go-mssqldb"

	"github.com/tdspool/tdspool/standin"
)

// oneConn opens a session to tenant_a and returns it; every statement of a
// test runs on that one session.
func oneConn(t *testing.T, srv *standin.Server) *sql.Conn {
	t.Helper()
	db, err := sql.Open("sqlserver", dsn(srv, "demo", "Demo-Passw0rd", "tenant_a"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	c, err := db.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

type step struct {
	q       string
	want    any // nil: Exec only
	errCode int32
}

func runSteps(t *testing.T, c *sql.Conn, steps []step) {
	t.Helper()
	ctx := context.Background()
	for _, tc := range steps {
		var got any
		var err error
		if tc.want == nil {
			_, err = c.ExecContext(ctx, tc.q)
		} else {
			err = c.QueryRowContext(ctx, tc.q).Scan(&got)
		}
		if tc.errCode != 0 {
			var me mssql.Error
			if !errors.As(err, &me) || me.Number != tc.errCode {
				t.Errorf("%q: got %v, want error %d", tc.q, err, tc.errCode)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tc.q, err)
			continue
		}
		if tc.want != nil && fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("%q = %v (%T), want %v", tc.q, got, got, tc.want)
		}
	}
}

// SET IMPLICIT_TRANSACTIONS ON is how ODBC, JDBC and others turn autocommit
// off: the first statement that touches data opens a transaction, and a
// rollback must undo it.
func TestImplicitTransactions(t *testing.T) {
	srv := start(t, standin.Config{Databases: []string{"tenant_a"}})
	c := oneConn(t, srv)
	runSteps(t, c, []step{
		{q: "CREATE TABLE it (id INT PRIMARY KEY, v NVARCHAR(10))"},
		{q: "SET IMPLICIT_TRANSACTIONS ON"},
		{q: "SELECT @@TRANCOUNT", want: 0},        // no table: no transaction
		{q: "SELECT XACT_STATE()", want: 0},       //
		{q: "SELECT @@OPTIONS & 2", want: 2},      //
		{q: "INSERT INTO it VALUES (1, N'gone')"}, // opens one
		{q: "SELECT @@TRANCOUNT", want: 1},        //
		{q: "SELECT XACT_STATE()", want: 1},       //
		{q: "IF @@TRANCOUNT > 0 ROLLBACK"},        //
		{q: "SELECT @@TRANCOUNT", want: 0},        //
		{q: "SELECT COUNT(*) FROM it", want: 0},   // the insert is undone; this SELECT opened a transaction
		{q: "SELECT @@TRANCOUNT", want: 1},        //
		{q: "BEGIN TRAN", want: nil},              // nested on top of the implicit one
		{q: "SELECT @@TRANCOUNT", want: 2},        //
		{q: "INSERT INTO it VALUES (2, N'kept')"}, //
		{q: "COMMIT"},                           // 2 → 1: nothing committed yet
		{q: "SELECT @@TRANCOUNT", want: 1},      //
		{q: "COMMIT"},                           //
		{q: "SET IMPLICIT_TRANSACTIONS OFF"},    //
		{q: "SELECT COUNT(*) FROM it", want: 1}, //
		{q: "SELECT @@TRANCOUNT", want: 0},      // OFF: autocommit again
		{q: "ROLLBACK", errCode: 3903},          //
		{q: "BEGIN TRAN outer_t; SAVE TRAN s1; INSERT INTO it VALUES (3, N'x'); ROLLBACK TRAN s1; SELECT @@TRANCOUNT", want: 1},
		{q: "ROLLBACK TRAN nosuch", errCode: 6401},                //
		{q: "SELECT @@TRANCOUNT", want: 1},                        //
		{q: "ROLLBACK TRAN outer_t; SELECT @@TRANCOUNT", want: 0}, // the transaction's own name rolls back all
		{q: "SELECT COUNT(*) FROM it", want: 1},                   //
		{q: "SAVE TRAN s2", errCode: 628},                         //
	})
}

// XACT_ABORT ON: a run-time error rolls the whole transaction back and ends
// the batch; OFF: only the failing statement is undone.
func TestXactAbort(t *testing.T) {
	srv := start(t, standin.Config{Databases: []string{"tenant_a"}})
	c := oneConn(t, srv)
	runSteps(t, c, []step{
		{q: "CREATE TABLE xa (id INT PRIMARY KEY)"},
		{q: "BEGIN TRAN; INSERT INTO xa VALUES (1); INSERT INTO xa VALUES (1)", errCode: 2627},
		{q: "SELECT @@TRANCOUNT", want: 1}, // XACT_ABORT OFF: the transaction survives
		{q: "COMMIT"},
		{q: "SELECT COUNT(*) FROM xa", want: 1},
		{q: "SET XACT_ABORT ON"},
		{q: "SELECT @@OPTIONS & 16384", want: 16384},
		{q: "BEGIN TRAN; INSERT INTO xa VALUES (2); INSERT INTO xa VALUES (1)", errCode: 2627},
		{q: "SELECT @@TRANCOUNT", want: 0},
		{q: "SELECT COUNT(*) FROM xa", want: 1},
	})
}

// database/sql's BeginTx (TM BEGIN) and Rollback (TM ROLLBACK) with a
// T-SQL COMMIT/SAVE in between, and the descriptor ENVCHANGEs the driver
// needs to keep going.
func TestTransactionManagerRequests(t *testing.T) {
	srv := start(t, standin.Config{Databases: []string{"tenant_a"}})
	db, _ := sql.Open("sqlserver", dsn(srv, "demo", "Demo-Passw0rd", "tenant_a"))
	defer db.Close()
	ctx := context.Background()
	if _, err := db.ExecContext(ctx, "CREATE TABLE tm (id INT)"); err != nil {
		t.Fatal(err)
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO tm VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := tx.QueryRowContext(ctx, "SELECT @@TRANCOUNT").Scan(&n); err != nil || n != 1 {
		t.Fatalf("@@TRANCOUNT %d %v", n, err)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM tm").Scan(&n); err != nil || n != 0 {
		t.Fatalf("after rollback count %d %v", n, err)
	}
	tx, err = db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelSerializable})
	if err != nil {
		t.Fatal(err)
	}
	var iso int
	if err := tx.QueryRowContext(ctx, "SELECT transaction_isolation_level FROM sys.dm_exec_sessions WHERE session_id = @@SPID").Scan(&iso); err != nil || iso != 4 {
		t.Errorf("isolation level %d %v, want 4 (serializable)", iso, err)
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO tm VALUES (2)"); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM tm").Scan(&n); err != nil || n != 1 {
		t.Fatalf("after commit count %d %v", n, err)
	}
}
