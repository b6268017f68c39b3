package standin_test

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	mssql "github.com/microsoft/go-mssqldb"

	"github.com/tdspool/tdspool/internal/rawtds"
	"github.com/tdspool/tdspool/standin"
	"github.com/tdspool/tdspool/tds"
)

// TestLeanMode drives the benchmark's lean server with go-mssqldb: the same
// login checks as the full server, the two statements it runs, transactions,
// its error for anything else, every TDS 7 encryption mode, and no SQLite.
func TestLeanMode(t *testing.T) {
	srv := start(t, standin.Config{Lean: true, Users: map[string]string{"bench": "Bench!pw1"}, Databases: []string{"bench"}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	for _, mode := range []struct{ encrypt, transport string }{{"disable", "plain"}, {"false", "login-only"}, {"true", "full"}} {
		t.Run("encrypt="+mode.encrypt, func(t *testing.T) {
			before := srv.Stats()
			db := openLean(t, srv, "bench", "Bench!pw1", "bench", mode.encrypt)
			var one int
			if err := db.QueryRowContext(ctx, "select 1").Scan(&one); err != nil || one != 1 {
				t.Fatalf("select 1: %d, %v", one, err)
			}
			rows, err := db.QueryContext(ctx, "STREAM 300000")
			if err != nil {
				t.Fatal(err)
			}
			cols, _ := rows.Columns()
			n, nulls := 0, 0
			for rows.Next() {
				vals := make([]any, len(cols))
				ptrs := make([]any, len(cols))
				for i := range vals {
					ptrs[i] = &vals[i]
				}
				if err := rows.Scan(ptrs...); err != nil {
					t.Fatal(err)
				}
				if vals[1] == nil {
					nulls++
				}
				n++
			}
			if err := rows.Err(); err != nil {
				t.Fatal(err)
			}
			if len(cols) != len(standin.LeanStreamColumns) || n < 300 || nulls < n/10-1 || nulls > n/10+1 {
				t.Errorf("stream: %d columns, %d rows, %d NULL rows", len(cols), n, nulls)
			}
			after := srv.Stats()
			got := map[string]int64{"plain": after.Plain - before.Plain, "login-only": after.LoginOnly - before.LoginOnly, "full": after.FullTLS - before.FullTLS}
			if got[mode.transport] == 0 {
				t.Errorf("logins by transport %v, want %s", got, mode.transport)
			}
		})
	}

	db := openLean(t, srv, "bench", "Bench!pw1", "bench", "disable")
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	var mErr mssql.Error
	if _, err := db.ExecContext(ctx, "SELECT 2"); !errors.As(err, &mErr) || mErr.Number != 50000 || !strings.Contains(mErr.Message, "lean mode") {
		t.Errorf("unsupported statement: %v", err)
	}
	if err := db.PingContext(ctx); err != nil {
		t.Errorf("session unusable after an error: %v", err)
	}

	for _, bad := range []struct{ user, pass, db string }{{"bench", "wrong", "bench"}, {"bench", "Bench!pw1", "nope"}} {
		err := openLean(t, srv, bad.user, bad.pass, bad.db, "disable").PingContext(ctx)
		if !errors.As(err, &mErr) || mErr.Number != 18456 {
			t.Errorf("login %s/%s: %v, want error 18456", bad.user, bad.db, err)
		}
	}
}

func TestLeanModeOpensNoDataFiles(t *testing.T) {
	dir := t.TempDir()
	srv, err := standin.New(standin.Config{Lean: true, Users: map[string]string{"u": "p"}, DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if err := openLean(t, srv, "u", "p", "master", "disable").Ping(); err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("lean mode wrote %d files to DataDir", len(entries))
	}
}

func openLean(t *testing.T, srv *standin.Server, user, pass, database, encrypt string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlserver", fmt.Sprintf("sqlserver://%s:%s@127.0.0.1:%d?database=%s&encrypt=%s&TrustServerCertificate=true&dial+timeout=5",
		user, strings.ReplaceAll(pass, "!", "%21"), srv.Port(), database, encrypt))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// TestLeanModeAcknowledgesReset: a request carrying RESETCONNECTION gets ENVCHANGE 18 at the
// head of its reply, as from the full server (a pooler consumes it); the next request, without
// the bit, gets none.
func TestLeanModeAcknowledgesReset(t *testing.T) {
	srv := start(t, standin.Config{Lean: true, Users: map[string]string{"bench": "Bench!pw1"}, Databases: []string{"bench"}})
	c, err := net.Dial("tcp", srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	var asm tds.Reassembler
	call := func(typ tds.PacketType, status tds.PacketStatus, payload []byte) []byte {
		t.Helper()
		if err := rawtds.Send(c, typ, status, payload, tds.DefaultPacketSize); err != nil {
			t.Fatal(err)
		}
		msg, err := rawtds.Recv(c, &asm)
		if err != nil {
			t.Fatal(err)
		}
		return msg.Payload
	}
	pre := tds.Prelogin{HasVersion: true, Version: 0x0C000000, HasEncryption: true, Encryption: tds.EncryptNotSup}
	call(tds.PacketPrelogin, 0, pre.AppendPrelogin(nil))
	login := &tds.Login7{TDSVersion: tds.TDSVersion74, PacketSize: tds.DefaultPacketSize, UserName: "bench",
		Password: tds.NewPassword("Bench!pw1"), Database: "bench", AppName: "lean-reset"}
	if reply, err := tds.ParseLoginReply(call(tds.PacketLogin7, 0, login.AppendLogin7(nil))); err != nil || reply.Database != "bench" {
		t.Fatalf("login: %v %v", reply, err)
	}
	ack := tds.EnvChangeResetAck().AppendEnvChange(nil)
	batch := (&tds.SQLBatch{Text: "SELECT 1"}).AppendSQLBatch(nil)
	for _, step := range []struct {
		status  tds.PacketStatus
		wantAck bool
	}{{tds.StatusResetConnection, true}, {0, false}, {tds.StatusResetConnectionSkipTran, true}} {
		reply := call(tds.PacketSQLBatch, step.status, batch)
		if got := bytes.HasPrefix(reply, ack); got != step.wantAck {
			t.Errorf("status %#x: reply starts with the reset ack: %v, want %v", uint8(step.status), got, step.wantAck)
		}
		if !bytes.Contains(reply, leanOne) {
			t.Errorf("status %#x: no SELECT 1 row in % x", uint8(step.status), reply)
		}
	}
	if got := srv.Stats().Resets; got != 2 {
		t.Errorf("resets counted %d, want 2", got)
	}
}

// leanOne is the row of SELECT 1: ROW token, INTN length 4, value 1.
var leanOne = []byte{0xD1, 4, 1, 0, 0, 0}
