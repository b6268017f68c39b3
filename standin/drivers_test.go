package standin_test

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tdspool/tdspool/internal/tcprelay"
	"github.com/tdspool/tdspool/standin"
	"github.com/tdspool/tdspool/tds"
)

// These tests put real drivers in front of the stand-in with a recorder in
// between, and check the tds decoders on the bytes the drivers really send
// (the stand-in's own decoding is proven by the drivers' logins and queries
// succeeding). With TDS_UPDATE_CAPTURES=1 they refresh the plaintext captures
// under tds/testdata/captures, which tds's own tests decode.

// recorder relays one TCP connection at a time to the stand-in and keeps the
// client's messages, as long as they are plaintext TDS (with TLS only the
// PRELOGIN before the handshake is).
type recorder struct {
	ln   net.Listener
	to   string
	mu   sync.Mutex
	msgs []tds.Message
}

func startRecorder(t *testing.T, to string) *recorder {
	t.Helper()
	r := &recorder{to: to}
	r.ln = tcprelay.Listen(t, r.relay)
	return r
}

func (r *recorder) port() int { return r.ln.Addr().(*net.TCPAddr).Port }

func (r *recorder) relay(client net.Conn) {
	defer client.Close()
	server, err := net.DialTimeout("tcp", r.to, 5*time.Second)
	if err != nil {
		return
	}
	defer server.Close()
	go func() {
		io.Copy(client, server)
		client.Close()
	}()
	var asm tds.Reassembler
	buf := make([]byte, 32<<10)
	parsing := true
	for {
		n, err := client.Read(buf)
		if n > 0 {
			if parsing {
				asm.Feed(buf[:n])
				parsing = r.take(&asm)
			}
			if _, werr := server.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			server.(*net.TCPConn).CloseWrite()
			return
		}
	}
}

// take records every complete message; false once the stream is not
// plaintext TDS any more.
func (r *recorder) take(asm *tds.Reassembler) bool {
	for {
		m, err := asm.Next()
		if err == tds.ErrShortBuffer {
			return true
		}
		if err != nil {
			return false
		}
		m.Payload = bytes.Clone(m.Payload)
		r.mu.Lock()
		r.msgs = append(r.msgs, m)
		r.mu.Unlock()
		if m.Type == tds.PacketPrelogin && len(r.msgs) > 1 {
			return false // a TLS handshake wrapped in PRELOGIN packets follows
		}
	}
}

// messages returns what was recorded: the PRELOGIN, the LOGIN7 (nil when it
// was encrypted) and the requests after it.
func (r *recorder) messages(t *testing.T) (prelogin, login7 []byte, requests []tds.Message) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.msgs) == 0 || r.msgs[0].Type != tds.PacketPrelogin {
		t.Fatalf("recorded %d messages, no PRELOGIN first", len(r.msgs))
	}
	prelogin = r.msgs[0].Payload
	if len(r.msgs) > 1 && r.msgs[1].Type == tds.PacketLogin7 {
		login7, requests = r.msgs[1].Payload, r.msgs[2:]
	}
	return prelogin, login7, requests
}

func startCaptureServer(t *testing.T) *standin.Server {
	return start(t, standin.Config{Users: map[string]string{"sa": "Secret!1"}, Databases: []string{"app"}})
}

func TestGoMssqldbBytesDecode(t *testing.T) {
	srv := startCaptureServer(t)
	rec := startRecorder(t, srv.Addr())
	db, err := sql.Open("sqlserver", fmt.Sprintf("sqlserver://sa:Secret%%211@127.0.0.1:%d?database=app&app+name=tdspool-test&encrypt=disable&dial+timeout=5", rec.port()))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var one int
	if err := db.QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Fatalf("SELECT 1: %d %v", one, err)
	}
	if err := db.QueryRowContext(ctx, "SELECT @p1", 5).Scan(&one); err != nil || one != 5 {
		t.Fatalf("SELECT @p1: %d %v", one, err)
	}
	if _, err := db.ExecContext(ctx, "SELECT * FROM no_such_table"); err == nil {
		t.Fatal("error not surfaced")
	}
	tx, err := db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelSerializable})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.ExecContext(ctx, "CREATE TABLE #t(a int)"); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	db.Close()

	preBytes, loginBytes, requests := rec.messages(t)
	p, err := tds.DecodePrelogin(preBytes)
	if err != nil || p.Encryption != tds.EncryptNotSup || !p.HasVersion || !p.HasMARS {
		t.Fatalf("PRELOGIN %v %v", p, err)
	}
	if !bytes.Equal(p.AppendPrelogin(nil), preBytes) {
		t.Error("re-encoding go-mssqldb's PRELOGIN is not byte-identical")
	}
	l, err := tds.DecodeLogin7(loginBytes)
	if err != nil {
		t.Fatal(err)
	}
	if l.UserName != "sa" || l.Password.Reveal() != "Secret!1" || l.Database != "app" || l.AppName != "tdspool-test" ||
		l.CltIntName != "go-mssqldb" || l.TDSVersion != tds.TDSVersion74 || l.PacketSize != 4096 {
		t.Fatalf("LOGIN7 %v", l)
	}
	if !bytes.Equal(l.AppendLogin7(nil), loginBytes) {
		t.Error("re-encoding go-mssqldb's LOGIN7 is not byte-identical")
	}
	// database/sql resets the session when it reuses the connection
	// (RESETCONNECTION on the next request); the transaction goes through
	// TM requests, and requests inside it carry the descriptor from
	// ENVCHANGE 8.
	var sawReset, sawBegin, sawExecSQL bool
	var tempDesc, commitDesc uint64
	for _, m := range requests {
		f, err := tds.ClassifyRequest(&m)
		if err != nil {
			t.Errorf("classify %s: %v", m.Type, err)
			continue
		}
		sawReset = sawReset || f.ResetConnection
		sawBegin = sawBegin || (f.BeginTran && m.Type == tds.PacketTransMgr)
		if f.CommitTran && m.Type == tds.PacketTransMgr {
			commitDesc = f.TransactionDescriptor
		}
		if f.TempTable {
			tempDesc = f.TransactionDescriptor
		}
		if m.Type == tds.PacketRPC {
			r, err := tds.DecodeRPC(m.Payload)
			sawExecSQL = sawExecSQL || (err == nil && r.Calls[0].ProcID == tds.ProcExecuteSQL)
		}
	}
	if !sawReset || !sawBegin || !sawExecSQL || commitDesc == 0 || tempDesc != commitDesc {
		t.Fatalf("reset=%v begin=%v execsql=%v descriptors: temp table %d, commit %d", sawReset, sawBegin, sawExecSQL, tempDesc, commitDesc)
	}
	if os.Getenv("TDS_UPDATE_CAPTURES") != "" {
		writeCaptures(t, "go-mssqldb", preBytes, loginBytes, requests)
	}
}

// TestFreeTDSTsql runs FreeTDS's tsql once per encryption setting: the
// PRELOGIN it sends, the transport the stand-in saw, and in plaintext its
// LOGIN7 and request. It skips when tsql is not installed.
func TestFreeTDSTsql(t *testing.T) {
	tsql, err := exec.LookPath("tsql")
	if err != nil {
		t.Skip("tsql (freetds-bin) not installed")
	}
	srv := startCaptureServer(t)
	for _, tc := range []struct {
		encryption string // freetds.conf "encryption"
		sends      tds.EncryptOption
		transport  func(standin.Stats) int64
	}{
		{"off", tds.EncryptNotSup, func(s standin.Stats) int64 { return s.Plain }},
		{"request", tds.EncryptOff, func(s standin.Stats) int64 { return s.LoginOnly }},
		{"require", tds.EncryptOn, func(s standin.Stats) int64 { return s.FullTLS }},
	} {
		t.Run(tc.encryption, func(t *testing.T) {
			rec := startRecorder(t, srv.Addr())
			dir := t.TempDir()
			conf := filepath.Join(dir, "freetds.conf")
			os.WriteFile(conf, []byte(fmt.Sprintf("[standin]\n\thost = 127.0.0.1\n\tport = %d\n\ttds version = 7.4\n\tencryption = %s\n",
				rec.port(), tc.encryption)), 0o644)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			before := srv.Stats()
			cmd := exec.CommandContext(ctx, tsql, "-S", "standin", "-U", "sa", "-P", "Secret!1", "-D", "app")
			cmd.Env = append(os.Environ(), "FREETDSCONF="+conf, "HOME="+dir)
			cmd.Stdin = strings.NewReader("select 1\ngo\nexit\n")
			out, err := cmd.CombinedOutput()
			if got := tc.transport(srv.Stats()) - tc.transport(before); got != 1 {
				t.Fatalf("%d logins over the expected transport (tsql: %v)\n%s", got, err, out)
			}
			preBytes, loginBytes, requests := rec.messages(t)
			p, err := tds.DecodePrelogin(preBytes)
			if err != nil || p.Encryption.Base() != tc.sends || !p.HasMARS {
				t.Fatalf("PRELOGIN %v %v", p, err)
			}
			if !bytes.Equal(p.AppendPrelogin(nil), preBytes) {
				t.Error("re-encoding tsql's PRELOGIN is not byte-identical")
			}
			if tc.encryption != "off" {
				return // LOGIN7 and requests were encrypted
			}
			l, err := tds.DecodeLogin7(loginBytes)
			if err != nil || l.UserName != "sa" || l.Password.Reveal() != "Secret!1" || l.Database != "app" {
				t.Fatalf("LOGIN7 %v %v", l, err)
			}
			if len(requests) == 0 || requests[0].Type != tds.PacketSQLBatch {
				t.Fatalf("no SQL batch after login (tsql: %s)", out)
			}
			if os.Getenv("TDS_UPDATE_CAPTURES") != "" {
				writeCaptures(t, "freetds", preBytes, loginBytes, nil)
			}
		})
	}
}

// writeCaptures refreshes tds/testdata/captures/<client>-*.bin. The process
// id in LOGIN7 is zeroed so the files are stable; the password is a
// throwaway test value.
func writeCaptures(t *testing.T, client string, prelogin, login7 []byte, requests []tds.Message) {
	dir := filepath.Join("..", "tds", "testdata", "captures")
	old, _ := filepath.Glob(filepath.Join(dir, client+"-req*.bin"))
	for _, f := range old {
		os.Remove(f)
	}
	login := bytes.Clone(login7)
	copy(login[16:20], []byte{0, 0, 0, 0})
	files := map[string][]byte{client + "-prelogin.bin": prelogin, client + "-login7.bin": login}
	for i, m := range requests {
		files[fmt.Sprintf("%s-req%02d-%s.bin", client, i, m.Type)] = append([]byte{byte(m.Type), byte(m.Status)}, m.Payload...)
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
