package integration

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	mssql "github.com/microsoft/go-mssqldb"

	"github.com/tdspool/tdspool/deployments/envoyconfig"
	"github.com/tdspool/tdspool/internal/tcprelay"
	"github.com/tdspool/tdspool/standin"
	"github.com/tdspool/tdspool/standin/compat"
	"github.com/tdspool/tdspool/tds"
)

// configureLeg sets a bucket's backend leg in the filter config (bucket) and the Envoy
// cluster (eb). leg "" takes TDSPOOL_BACKEND_LEG, so the whole suite can run against the
// module-owned leg (TDSPOOL_BACKEND_LEG=module); enc is the bucket's backend_encryption.
func configureLeg(t *testing.T, bucket map[string]any, eb *envoyconfig.Bucket, srv *standin.Server, o tdsStackOptions) {
	t.Helper()
	leg, enc := o.leg, o.backendEnc
	if leg == "" {
		leg = os.Getenv("TDSPOOL_BACKEND_LEG")
	}
	if enc == "" {
		enc = "PLAINTEXT"
	}
	bucket["backend_encryption"] = enc
	caFile := func() string {
		f, err := srv.WriteCertPEM(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	switch leg {
	case "", "tcp_proxy":
		if enc == "TDS8" {
			eb.UpstreamTDS8CAFile, eb.UpstreamTDS8ServerName = caFile(), "localhost"
		}
	case "module":
		bucket["backend_leg"] = "MODULE"
		bucket["backend_addresses"] = []string{srv.Addr()}
		if enc != "PLAINTEXT" {
			bt := map[string]any{"ca_file": caFile(), "server_name": "localhost"}
			for k, v := range o.legTLS {
				bt[k] = v
			}
			if bt["ca_file"] == "OTHER" { // a CA that signed nothing of the stand-in's
				other, err := standin.New(standin.Config{Addr: "127.0.0.1:0", Users: map[string]string{"x": "y"}})
				if err != nil {
					t.Fatal(err)
				}
				if err := other.Start(); err != nil {
					t.Fatal(err)
				}
				defer other.Close()
				f, err := other.WriteCertPEM(t.TempDir())
				if err != nil {
					t.Fatal(err)
				}
				bt["ca_file"] = f
			}
			bucket["backend_tls"] = bt
		}
	default:
		t.Fatalf("unknown backend leg %q (tcp_proxy, module)", leg)
	}
}

// backendLegCase is one backend leg, its encryption and the stand-in that requires it.
type backendLegCase struct {
	name    string
	leg     string
	enc     string
	standin standin.Encryption
	// logins counts the stand-in's logins under the transport the leg must use.
	logins func(standin.Stats) int64
}

var backendLegCases = []backendLegCase{
	{"module/plaintext", "module", "PLAINTEXT", standin.EncryptionOff, func(s standin.Stats) int64 { return s.Plain }},
	{"module/tds7_login_only", "module", "TDS7_LOGIN_ONLY", standin.EncryptionOptional, func(s standin.Stats) int64 { return s.LoginOnly }},
	{"module/tds7_full-force_encryption", "module", "TDS7_FULL", standin.EncryptionRequired, func(s standin.Stats) int64 { return s.FullTLS }},
	{"module/tds8-strict_only", "module", "TDS8", standin.EncryptionStrict, func(s standin.Stats) int64 { return s.Strict }},
	{"tcp_proxy/tds8-cluster_tls", "tcp_proxy", "TDS8", standin.EncryptionStrict, func(s standin.Stats) int64 { return s.Strict }},
}

// Every driver in every client encryption mode, over every backend leg and backend
// encryption: the workload passes, the stand-in saw every login under the leg's transport,
// and everything is given back.
func TestDriversOverEveryBackendLeg(t *testing.T) {
	python := compat.FindPython()
	for _, lc := range backendLegCases {
		t.Run(lc.name, func(t *testing.T) {
			st := startTDSStack(t, tdsStackOptions{capacity: 4, tls: true, leg: lc.leg, backendEnc: lc.enc, standinEnc: lc.standin})
			target := st.target()
			runDriverWorkloads(t, target, python, true)
			st.waitIdle(t)
			s := st.backend.Stats()
			if s.Logins == 0 || lc.logins(s) != s.Logins {
				t.Fatalf("stand-in logins %+v: want all %d under the leg's transport", s, s.Logins)
			}
			t.Logf("stand-in logins: %+v", s)
		})
	}
}

// loginError logs in with go-mssqldb and returns the server error the client got.
func loginError(t *testing.T, port int) mssql.Error {
	t.Helper()
	db, err := sql.Open("sqlserver", fmt.Sprintf(
		"sqlserver://demo:Demo-Passw0rd@127.0.0.1:%d?database=tenant_a&encrypt=disable&dial+timeout=5&connection+timeout=20", port))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	start := time.Now()
	err = db.Ping()
	var me mssql.Error
	if !errors.As(err, &me) {
		t.Fatalf("login: got %v, want a TDS error", err)
	}
	t.Logf("client saw %d %q after %s", me.Number, me.Message, time.Since(start).Round(time.Millisecond))
	return me
}

// A bucket whose backend cannot be used answers 40613 naming the reason, and gives its slot
// back: the refusals a module leg checks before LOGIN7.
func TestBackendLegRefusalsName40613Reasons(t *testing.T) {
	for _, tc := range []struct {
		name, leg, enc string
		standin        standin.Encryption
		tlsOverride    map[string]any
		want           string
	}{
		// The stand-in with ForceEncryption, refused on a plaintext leg (and served over
		// TDS7_FULL in TestDriversOverEveryBackendLeg).
		{"force encryption, tcp_proxy plaintext", "tcp_proxy", "PLAINTEXT", standin.EncryptionRequired, nil, "requires TLS"},
		{"force encryption, module plaintext", "module", "PLAINTEXT", standin.EncryptionRequired, nil, "requires encryption"},
		{"wrong server name", "module", "TDS7_FULL", standin.EncryptionRequired, map[string]any{"server_name": "db.example.com"}, "certificate is valid for localhost"},
		{"wrong CA", "module", "TDS8", standin.EncryptionStrict, map[string]any{"ca_file": "OTHER"}, "unknown authority"},
		{"TLS to a server without TLS", "module", "TDS7_FULL", standin.EncryptionOff, nil, "does not support encryption"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := startTDSStack(t, tdsStackOptions{capacity: 2, leg: tc.leg, backendEnc: tc.enc, standinEnc: tc.standin,
				legTLS: tc.tlsOverride})
			me := loginError(t, st.port)
			if me.Number != 40613 || !strings.Contains(me.Message, tc.want) {
				t.Fatalf("got %d %q, want 40613 saying %q", me.Number, me.Message, tc.want)
			}
			st.waitIdle(t)
		})
	}
}

// silentBackend accepts connections and then does what misbehave says with each.
func silentBackend(t *testing.T, misbehave func(net.Conn)) string {
	t.Helper()
	return tcprelay.Listen(t, func(c net.Conn) {
		defer c.Close()
		misbehave(c)
	}).Addr().String()
}

// Backends that fail the module leg before the login: the client gets 40613 promptly, the
// slot comes back.
func TestModuleLegBackendFailures(t *testing.T) {
	neverAnswers := func(c net.Conn) { _, _ = io.Copy(io.Discard, c) }
	dropsDuringTLS := func(c net.Conn) {
		// Read the PRELOGIN, promise encryption, then drop at the ClientHello.
		var r tds.Reassembler
		buf := make([]byte, 4096)
		for {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			r.Feed(buf[:n])
			if _, err := r.Next(); err == nil {
				break
			}
		}
		reply := tds.ServerPreloginReply(0x10000000, tds.EncryptOn).AppendPrelogin(nil)
		_, _ = c.Write(tds.AppendPackets(nil, tds.PacketReply, 0, reply, 4096))
		_, _ = c.Read(buf)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := ln.Addr().String()
	ln.Close()
	for _, tc := range []struct {
		name, addr, enc, want string
		within                time.Duration
	}{
		{"connection refused", refused, "PLAINTEXT", "connect", 3 * time.Second},
		{"accepts TCP, never answers", silentBackend(t, neverAnswers), "PLAINTEXT", "no PRELOGIN answer within 1s", 4 * time.Second},
		{"drops during TLS", silentBackend(t, dropsDuringTLS), "TDS7_FULL", "closed the connection", 3 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bucket := map[string]any{"name": "bucket-001", "max_connections": 2, "queue_timeout": "5s",
				"backend_leg": "MODULE", "backend_addresses": []string{tc.addr}, "backend_encryption": tc.enc}
			if tc.enc != "PLAINTEXT" {
				bucket["backend_tls"] = map[string]any{"trust_any_certificate": true}
			}
			st := startTDSStack(t, tdsStackOptions{capacity: 2, extra: map[string]any{
				"buckets":  []map[string]any{bucket},
				"timeouts": map[string]any{"backend_handshake_timeout": "1s"},
			}})
			start := time.Now()
			me := loginError(t, st.port)
			if me.Number != 40613 || !strings.Contains(me.Message, tc.want) {
				t.Fatalf("got %d %q, want 40613 saying %q", me.Number, me.Message, tc.want)
			}
			if d := time.Since(start); d > tc.within {
				t.Fatalf("answered after %s, want within %s", d, tc.within)
			}
			st.waitIdle(t)
		})
	}
}

// A backend killed mid-session: the client's connection is closed (as when SQL Server itself
// goes away), the next query fails, and the slot comes back.
func TestModuleLegBackendKilledMidSession(t *testing.T) {
	for _, enc := range []string{"PLAINTEXT", "TDS7_FULL"} {
		t.Run(enc, func(t *testing.T) {
			st := startTDSStack(t, tdsStackOptions{capacity: 2, leg: "module", backendEnc: enc, standinEnc: standin.EncryptionOptional})
			db := st.db(t, 1)
			var one int
			if err := db.QueryRow("select 1").Scan(&one); err != nil {
				t.Fatal(err)
			}
			st.backend.DropAll()
			conn, err := db.Conn(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			err = conn.QueryRowContext(context.Background(), "select 1").Scan(&one)
			if err == nil {
				t.Fatal("a query on the killed session succeeded")
			}
			t.Logf("client saw: %v", err)
			conn.Close()
			db.Close()
			st.waitIdle(t)
		})
	}
}

// A client that stops reading a large result: on the module leg the backend is paused (Envoy's
// write-buffer watermark stops the reads from it), so the proxy's memory stays flat instead of
// absorbing the result; when the client reads again, every byte arrives.
func TestModuleLegSlowClientPausesTheBackend(t *testing.T) {
	st := startTDSStack(t, tdsStackOptions{capacity: 2, leg: "module", lean: true})
	c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", st.port))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	send := func(typ tds.PacketType, payload []byte) {
		if _, err := c.Write(tds.AppendPackets(nil, typ, 0, payload, 4096)); err != nil {
			t.Fatal(err)
		}
	}
	var sc tds.ResponseScanner
	sc.MaxPacketSize = tds.MaxPacketSize
	buf := make([]byte, 64<<10)
	// readResponse reads one whole response, streaming, and returns its size.
	readResponse := func() int {
		total := 0
		_ = c.SetReadDeadline(time.Now().Add(120 * time.Second))
		for {
			n, err := c.Read(buf)
			if err != nil {
				t.Fatalf("after %d bytes: %v", total, err)
			}
			total += n
			evs, err := sc.Feed(buf[:n])
			if err != nil {
				t.Fatalf("response does not parse: %v", err)
			}
			for _, ev := range evs {
				if ev.Token == tds.TokenError {
					t.Fatalf("server error %d: %s", ev.Message.Number, ev.Message.Text)
				}
				if ev.Token == tds.TokenEndOfMessage {
					return total
				}
			}
		}
	}
	pre := tds.Prelogin{HasVersion: true, Version: 0x0C000000, HasEncryption: true, Encryption: tds.EncryptNotSup,
		HasInstance: true, HasThreadID: true, HasMARS: true}
	send(tds.PacketPrelogin, pre.AppendPrelogin(nil))
	var r tds.Reassembler
	for {
		n, err := c.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		r.Feed(buf[:n])
		if _, err := r.Next(); err == nil {
			break
		}
	}
	l := tds.Login7{TDSVersion: tds.TDSVersion74, PacketSize: 4096, UserName: "demo", Password: tds.NewPassword("Demo-Passw0rd"),
		Database: "tenant_a", AppName: "slow-client", HostName: "h", CltIntName: "raw"}
	send(tds.PacketLogin7, l.AppendLogin7(nil))
	readResponse()

	q := tds.SQLBatch{Headers: tds.AllHeaders{HasTransaction: true}, Text: fmt.Sprintf("STREAM %d", 100<<20)}
	send(tds.PacketSQLBatch, q.AppendSQLBatch(nil))
	before := rssKB(t, st.envoy.Pid())
	time.Sleep(3 * time.Second) // the client reads nothing
	during := rssKB(t, st.envoy.Pid())
	time.Sleep(2 * time.Second)
	later := rssKB(t, st.envoy.Pid())
	got := readResponse()
	t.Logf("Envoy RSS %d KB before, %d KB after 3 s and %d KB after 5 s of a stalled client; the result was %d MB",
		before, during, later, got>>20)
	if got < 90<<20 {
		t.Fatalf("result of %d bytes; the test needs about 100 MB", got)
	}
	if grew := later - before; grew > 32<<10 {
		t.Fatalf("Envoy grew by %d KB while the client read nothing: the backend was not paused", grew)
	}
	c.Close()
	st.waitIdle(t)
}

// rssKB is a process's resident set size.
func rssKB(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			var kb int
			fmt.Sscan(f[1], &kb)
			return kb
		}
	}
	t.Fatal("no VmRSS")
	return 0
}
