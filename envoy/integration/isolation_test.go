package integration

import (
	"context"
	"database/sql"
	"testing"
	"time"
)

// A reset keeps a session's transaction isolation level (SQL Server's sp_reset_connection
// does not restore it, and the stand-in is faithful to that): client A leaves its session at
// another level, client B of the same key is served from the same bucket (cap 1, so one
// backend at a time), and B must run at READ COMMITTED. Session mode closes a backend left
// at another level (taint isolation_level) and pools one set back to READ COMMITTED;
// transaction mode resets the backend and its prelude sets the borrower's level.

// isolationOf reads the session's sys.dm_exec_sessions transaction_isolation_level (2: READ
// COMMITTED, 4: SERIALIZABLE) and its SPID.
func isolationOf(ctx context.Context, t *testing.T, c *sql.Conn) (level, spid int) {
	t.Helper()
	if err := c.QueryRowContext(ctx, "SELECT transaction_isolation_level, @@SPID FROM sys.dm_exec_sessions WHERE session_id = @@SPID").Scan(&level, &spid); err != nil {
		t.Fatal(err)
	}
	return level, spid
}

// isolationCases are what client A does to its session before it leaves (or, in
// transaction mode, before client B's request): the level it leaves the session at, as
// sys.dm_exec_sessions numbers it.
var isolationCases = []struct {
	name  string
	dirty func(ctx context.Context, c *sql.Conn) error
	left  int
}{
	{"set serializable", func(ctx context.Context, c *sql.Conn) error {
		_, err := c.ExecContext(ctx, "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE")
		return err
	}, 4},
	{"set read uncommitted", func(ctx context.Context, c *sql.Conn) error {
		_, err := c.ExecContext(ctx, "SET TRANSACTION ISOLATION LEVEL READ UNCOMMITTED; SELECT 1")
		return err
	}, 1},
	{"transaction-manager begin serializable", func(ctx context.Context, c *sql.Conn) error {
		tx, err := c.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelSerializable})
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, "SELECT 1"); err != nil {
			return err
		}
		return tx.Commit()
	}, 4},
	{"set back to read committed", func(ctx context.Context, c *sql.Conn) error {
		_, err := c.ExecContext(ctx, "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE; SELECT 1; SET TRANSACTION ISOLATION LEVEL READ COMMITTED")
		return err
	}, 2},
}

func TestSessionPoolIsolationLevelDoesNotLeak(t *testing.T) {
	for _, tc := range isolationCases {
		t.Run(tc.name, func(t *testing.T) {
			st := startTDSStack(t, tdsStackOptions{capacity: 1, leg: "module", bucket: sessionPool})
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			a, err := openTxClient(ctx, st)
			if err != nil {
				t.Fatal(err)
			}
			if err := tc.dirty(ctx, a.conn); err != nil {
				t.Fatal(err)
			}
			level, spidA := isolationOf(ctx, t, a.conn)
			if level != tc.left {
				t.Fatalf("A's level %d, want %d: the case proves nothing", level, tc.left)
			}
			logins := st.backend.Stats().Logins
			a.close()

			// B waits for the only slot: A's backend back in the pool, or closed.
			b, err := openTxClient(ctx, st)
			if err != nil {
				t.Fatal(err)
			}
			defer b.close()
			level, spidB := isolationOf(ctx, t, b.conn)
			newLogins := st.backend.Stats().Logins - logins
			t.Logf("A left SPID %d at %d; B on SPID %d at %d, %d new backend logins", spidA, tc.left, spidB, level, newLogins)
			if level != 2 {
				t.Fatalf("B runs at isolation level %d (SPID %d, A's %d), want 2 (READ COMMITTED)", level, spidB, spidA)
			}
			if tc.left == 2 && (spidB != spidA || newLogins != 0) {
				t.Fatalf("a session left at READ COMMITTED was not reused: SPID %d → %d, %d new logins", spidA, spidB, newLogins)
			}
			if tc.left != 2 && newLogins != 1 {
				// The stand-in may hand the new session A's SPID again: logins tell.
				t.Fatalf("%d new backend logins for B, want 1: the backend A left at level %d was not closed", newLogins, tc.left)
			}
		})
	}
}

func TestTxPoolIsolationLevelDoesNotLeak(t *testing.T) {
	for _, tc := range isolationCases {
		t.Run(tc.name, func(t *testing.T) {
			st := txStack(t, 1)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			a, b := mustTxClient(t, st), mustTxClient(t, st)
			if err := tc.dirty(ctx, a.conn); err != nil {
				t.Fatal(err)
			}
			levelA, spidA := isolationOf(ctx, t, a.conn)
			if levelA != tc.left {
				t.Fatalf("A's level %d, want %d: the case proves nothing", levelA, tc.left)
			}
			logins := st.backend.Stats().Logins
			// One backend (cap 1): B's request borrows the one A just gave back.
			level, spidB := isolationOf(ctx, t, b.conn)
			if n := st.backend.Stats().Logins - logins; n != 0 || spidB != spidA {
				t.Fatalf("B did not reuse A's backend: SPID %d → %d, %d new logins", spidA, spidB, n)
			}
			if level != 2 {
				t.Fatalf("B runs at isolation level %d on A's backend (SPID %d), want 2 (READ COMMITTED)", level, spidB)
			}
			// A's level moves with A: its next request re-applies it on the backend B used.
			if level, spid := isolationOf(ctx, t, a.conn); level != tc.left || spid != spidA {
				t.Fatalf("A back on SPID %d at level %d, want SPID %d at %d", spid, level, spidA, tc.left)
			}
		})
	}
}
