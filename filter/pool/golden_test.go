package pool_test

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/tdspool/tdspool/internal/rawtds"
	"github.com/tdspool/tdspool/standin"
	"github.com/tdspool/tdspool/tds"
)

// Golden tests against the stand-in, a real TDS server: what the proxy
// replays or strips must be what the server itself would have sent.

func startStandin(t *testing.T) *standin.Server {
	t.Helper()
	srv, err := standin.New(standin.Config{
		ServerName: "golden",
		Users:      map[string]string{"demo": "Demo-Passw0rd"},
		Databases:  []string{"tenant_a", "tenant_b"},
		Encryption: standin.EncryptionOff,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}

// rawConn is a minimal plaintext TDS client.
type rawConn struct {
	c       net.Conn
	r       tds.Reassembler
	pktSize int
}

func dialStandin(t *testing.T, srv *standin.Server) *rawConn {
	t.Helper()
	c, err := net.Dial("tcp", srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	t.Cleanup(func() { c.Close() })
	return &rawConn{c: c, pktSize: tds.DefaultPacketSize}
}

func (rc *rawConn) send(typ tds.PacketType, status tds.PacketStatus, payload []byte) error {
	return rawtds.Send(rc.c, typ, status, payload, rc.pktSize)
}

func (rc *rawConn) recv() (tds.Message, error) { return rawtds.Recv(rc.c, &rc.r) }

// login sends PRELOGIN (no encryption) and l; it returns the login
// response payload.
func (rc *rawConn) login(t *testing.T, l *tds.Login7) []byte {
	t.Helper()
	pre := tds.Prelogin{HasVersion: true, Version: 0x0C000000, HasEncryption: true, Encryption: tds.EncryptNotSup,
		HasInstance: true, HasThreadID: true, HasMARS: true}
	if err := rc.send(tds.PacketPrelogin, 0, pre.AppendPrelogin(nil)); err != nil {
		t.Fatal(err)
	}
	if _, err := rc.recv(); err != nil {
		t.Fatalf("PRELOGIN reply: %v", err)
	}
	if err := rc.send(tds.PacketLogin7, 0, l.AppendLogin7(nil)); err != nil {
		t.Fatal(err)
	}
	msg, err := rc.recv()
	if err != nil {
		t.Fatalf("login reply: %v", err)
	}
	if l.PacketSize != 0 {
		rc.pktSize = int(l.PacketSize)
	}
	return msg.Payload
}

// clientLogin is a LOGIN7 as a driver sends it; fields outside the pool
// key (host, PID, client id) differ per call as they do between clients.
func clientLogin(db string, packetSize uint32, seq int) *tds.Login7 {
	return &tds.Login7{TDSVersion: tds.TDSVersion74, PacketSize: packetSize, ClientPID: uint32(1000 + seq),
		ConnectionID: uint32(seq), OptionFlags1: 0xE0, OptionFlags2: 0x03, ClientLCID: 0x409,
		HostName: fmt.Sprintf("host-%d", seq), UserName: "demo", Password: tds.NewPassword("Demo-Passw0rd"),
		AppName: "golden", ServerName: "golden", CltIntName: "raw", Database: db,
		ClientID: [6]byte{1, 2, 3, 4, 5, byte(seq)}}
}

// TestLoginReplayGolden: the reply recorded from one backend login and
// replayed for a later client of the same key is byte for byte the reply
// the server gives that client directly. The packet size is the one field
// that must differ, and differs exactly as a direct login would.
func TestLoginReplayGolden(t *testing.T) {
	srv := startStandin(t)
	first := clientLogin("tenant_a", 4096, 1)
	// The backend login of a pooled session never asks for SESSIONRECOVERY.
	first.Features = []tds.Feature{{ID: tds.FeatureSessionRecovery, Data: []byte{0, 0, 0, 0}}}
	first.OptionFlags3 |= tds.Login7Extension
	backendLogin := *first
	backendLogin.Features = append([]tds.Feature(nil), first.Features...)
	if !tds.StripSessionRecovery(&backendLogin) {
		t.Fatal("SESSIONRECOVERY not stripped")
	}
	rec, err := tds.ParseLoginReply(dialStandin(t, srv).login(t, &backendLogin))
	if err != nil {
		t.Fatalf("record: %v", err)
	}
	if rec.Database != "tenant_a" || rec.PacketSize != 4096 || rec.LoginAck.TDSVersion != tds.TDSVersion74 {
		t.Fatalf("recorded %v", rec)
	}

	tests := []struct {
		name       string
		client     *tds.Login7
		packetSize int
		same       bool // the replay must equal the direct reply
	}{
		{"same key", clientLogin("tenant_a", 4096, 2), 4096, true},
		{"same key, SESSIONRECOVERY asked", first, 4096, true},
		{"same key, other packet size", clientLogin("tenant_a", 8192, 3), 8192, true},
		// The control: a login of another key gets another reply, so the
		// comparison above can fail.
		{"other database is another key", clientLogin("tenant_b", 4096, 4), 4096, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			direct := *tc.client
			direct.Features = append([]tds.Feature(nil), tc.client.Features...)
			tds.StripSessionRecovery(&direct)
			want := dialStandin(t, srv).login(t, &direct)
			got := rec.AppendReplay(nil, tc.client, tc.packetSize)
			if bytes.Equal(got, want) != tc.same {
				t.Fatalf("replay equal to direct reply = %v, want %v\nreplay %X\ndirect %X", !tc.same, tc.same, got, want)
			}
		})
	}

	// The field that differs between two direct logins of one key is the
	// packet size ENVCHANGE, and nothing else.
	a := dialStandin(t, srv).login(t, clientLogin("tenant_a", 4096, 5))
	b := dialStandin(t, srv).login(t, clientLogin("tenant_a", 8192, 6))
	ra, err := tds.ParseLoginReply(a)
	if err != nil {
		t.Fatal(err)
	}
	if got := ra.AppendReplay(nil, &tds.Login7{}, 8192); !bytes.Equal(got, b) {
		t.Fatalf("4096 and 8192 logins differ in more than the packet size\n%X\n%X", a, b)
	}
	if bytes.Equal(a, b) {
		t.Fatal("packet size made no difference; the test cannot tell")
	}
}

// recvWire reads one whole response in wire form (headers included).
func (rc *rawConn) recvWire(t *testing.T) []byte {
	t.Helper()
	var wire []byte
	for {
		hdr := make([]byte, tds.HeaderSize)
		if _, err := io.ReadFull(rc.c, hdr); err != nil {
			t.Fatalf("response header: %v", err)
		}
		h, err := tds.DecodeHeader(hdr)
		if err != nil {
			t.Fatal(err)
		}
		body := make([]byte, int(h.Length)-tds.HeaderSize)
		if _, err := io.ReadFull(rc.c, body); err != nil {
			t.Fatalf("response body: %v", err)
		}
		wire = append(append(wire, hdr...), body...)
		if h.Status&tds.StatusEOM != 0 {
			return wire
		}
	}
}

// batchWire sends a SQL batch (marked for reset when reset is set) and
// returns the response in wire form.
func (rc *rawConn) batchWire(t *testing.T, sql string, reset bool) []byte {
	t.Helper()
	payload := (&tds.SQLBatch{Text: sql}).AppendSQLBatch(nil)
	wire := tds.AppendPackets(nil, tds.PacketSQLBatch, 0, payload, rc.pktSize)
	if reset {
		if err := tds.MarkResetConnection(wire); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := rc.c.Write(wire); err != nil {
		t.Fatal(err)
	}
	return rc.recvWire(t)
}

// withoutSPID zeroes the SPID of every packet header: two connections'
// responses differ there and nowhere else.
func withoutSPID(t *testing.T, wire []byte) []byte {
	t.Helper()
	out := append([]byte(nil), wire...)
	for off := 0; off < len(out); {
		h, err := tds.DecodeHeader(out[off:])
		if err != nil {
			t.Fatal(err)
		}
		out[off+4], out[off+5] = 0, 0
		off += int(h.Length)
	}
	return out
}

// TestResetAckConsumedGolden: a session that moved to another database and
// changed options, reset for its next client, answers that client's first
// request exactly as a fresh session of the same login does once the
// consumer has taken the reset's tokens out.
func TestResetAckConsumedGolden(t *testing.T) {
	srv := startStandin(t)
	const probe = "SELECT DB_NAME() AS db, 7 AS n"

	used := dialStandin(t, srv)
	used.login(t, clientLogin("tenant_a", 4096, 1))
	used.batchWire(t, "USE tenant_b", false)
	used.batchWire(t, "SET NOCOUNT ON", false)
	resets := srv.Stats().Resets
	raw := used.batchWire(t, probe, true)
	if got := srv.Stats().Resets - resets; got != 1 {
		t.Fatalf("the stand-in counted %d resets, want 1", got)
	}
	var c tds.ResetAckConsumer
	edited, err := c.Feed(nil, raw)
	if err != nil || !c.Acked() {
		t.Fatalf("consumer: acked=%v err=%v", c.Acked(), err)
	}

	fresh := dialStandin(t, srv)
	fresh.login(t, clientLogin("tenant_a", 4096, 2))
	want := fresh.batchWire(t, probe, false)
	if !bytes.Equal(withoutSPID(t, edited), withoutSPID(t, want)) {
		t.Fatalf("reset session's answer differs from a fresh session's\nedited %X\nfresh  %X", edited, want)
	}
	if bytes.Equal(withoutSPID(t, raw), withoutSPID(t, want)) {
		t.Fatal("the raw answer already equals the fresh one; the test cannot tell")
	}
}
