package tds

import (
	"bytes"
	"crypto/tls"
	"testing"
)

// FuzzSQLBatch: any SQL_BATCH payload decodes or fails cleanly, a decoded one survives
// encode/decode, and classifying it as a request (the transaction pool's parse of every
// client request) never panics.
func FuzzSQLBatch(f *testing.F) {
	q := SQLBatch{Headers: AllHeaders{HasTransaction: true, TransactionDescriptor: 7, OutstandingRequests: 1}, Text: "SELECT 1"}
	f.Add(q.AppendSQLBatch(nil))
	q.Headers.TraceActivity = bytes.Repeat([]byte{1}, 20)
	q.Headers.QueryNotification = []byte{1, 2}
	q.Text = "BEGIN TRAN; SET XACT_ABORT ON"
	f.Add(q.AppendSQLBatch(nil))
	f.Add([]byte{0x16, 0, 0, 0, 0x12, 0, 0, 0, 2, 0}) // TotalLength past a header that overruns
	f.Add([]byte{4, 0, 0, 0, 'S', 0})                 // no headers at all
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		m := Message{Type: PacketSQLBatch, Payload: b}
		_, _ = ClassifyRequest(&m)
		q, err := DecodeSQLBatch(b)
		if err != nil {
			return
		}
		q2, err := DecodeSQLBatch(q.AppendSQLBatch(nil))
		if err != nil {
			t.Fatalf("re-encoded batch does not decode: %v", err)
		}
		// (A transaction descriptor header is always written, so HasTransaction may change.)
		if q2.Text != q.Text || q2.Headers.TransactionDescriptor != q.Headers.TransactionDescriptor {
			t.Fatalf("round trip changed the batch: %v -> %v", q, q2)
		}
	})
}

// FuzzResponseScanner: the relay's scanner of server bytes never panics, and whatever the
// chunking it reports the same events, the same completed messages and the same failure as
// when it is fed everything at once.
func FuzzResponseScanner(f *testing.F) {
	var p []byte
	p = EnvChangeDatabase("a", "master").AppendEnvChange(p)
	p = LoginAck{Interface: 1, TDSVersion: TDSVersion74, ProgName: "x", ProgVersion: 1}.AppendLoginAck(p)
	p = Done{Token: TokenDone}.AppendDone(p)
	f.Add(AppendPackets(nil, PacketReply, 0, p, 512), uint16(1))
	f.Add(AppendPackets(nil, PacketReply, 0, ErrorMessage(18456, 1, 14, "no", "s", "", 1), 512), uint16(3))
	f.Add([]byte{0x04, 0x01, 0x00, 0x07, 0, 0, 0, 0}, uint16(2)) // a length below the header
	f.Add([]byte{0x12, 0x01, 0x00, 0x09, 0, 0, 0, 0, 0xfd}, uint16(5))
	f.Fuzz(func(t *testing.T, wire []byte, step uint16) {
		if step == 0 {
			step = 1
		}
		type outcome struct {
			events   []string
			messages uint64
			failed   bool
		}
		run := func(step int) outcome {
			var r ResponseScanner
			var o outcome
			for i := 0; i < len(wire); i += step {
				evs, err := r.Feed(wire[i:min(i+step, len(wire))])
				for _, ev := range evs {
					o.events = append(o.events, ev.String())
				}
				if err != nil {
					o.failed = true
					break
				}
			}
			o.messages = r.Messages
			return o
		}
		whole, chunked := run(max(len(wire), 1)), run(int(step))
		if whole.failed != chunked.failed || whole.messages != chunked.messages {
			t.Fatalf("whole: failed=%v messages=%d; in chunks of %d: failed=%v messages=%d",
				whole.failed, whole.messages, step, chunked.failed, chunked.messages)
		}
		if !whole.failed && !equalStrings(whole.events, chunked.events) {
			t.Fatalf("events differ: whole %v, in chunks of %d %v", whole.events, step, chunked.events)
		}
	})
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// FuzzTLSServer: the client-facing TLS terminator (TDS 7.x in-band, both modes) fed any
// bytes in any chunking fails cleanly or waits for more; it never panics or blocks.
func FuzzTLSServer(f *testing.F) {
	cert := testCert(f)
	hello := NewTLSClient(&tls.Config{InsecureSkipVerify: true}, TLSModeFull, 512)
	f.Add(uint8(0), hello.TakeWire(), uint16(7))
	hello.Close()
	f.Add(uint8(1), []byte{0x12, 0x01, 0x00, 0x0d, 0, 0, 0, 0, 0x16, 0x03, 0x01, 0xff, 0xff}, uint16(1))
	f.Add(uint8(0), []byte{0x17, 0x03, 0x03, 0x00, 0x01, 0x00}, uint16(2))
	f.Fuzz(func(t *testing.T, mode uint8, wire []byte, step uint16) {
		if step == 0 {
			step = 1
		}
		srv := NewTLSServer(&tls.Config{Certificates: []tls.Certificate{cert}}, TLSMode(mode%2), 512)
		defer srv.Close()
		for i := 0; i < len(wire); i += int(step) {
			if err := srv.Feed(wire[i:min(i+int(step), len(wire))]); err != nil {
				return
			}
			srv.TakeWire()
			srv.TakePlain()
		}
	})
}

// TestTLSServerHandshakeSplitAtEveryByte: every byte the client sends (its handshake flights
// in PRELOGIN packets, then the encrypted LOGIN7) reaches the server alone, so every record
// and packet boundary is split at every point; the handshake completes and the LOGIN7 comes
// out whole, in both modes.
func TestTLSServerHandshakeSplitAtEveryByte(t *testing.T) {
	cert := testCert(t)
	for _, mode := range []TLSMode{TLSModeFull, TLSModeLoginOnly} {
		t.Run(mode.String(), func(t *testing.T) {
			srv := NewTLSServer(&tls.Config{Certificates: []tls.Certificate{cert}}, mode, 512)
			cli := NewTLSClient(&tls.Config{InsecureSkipVerify: true}, mode, 512)
			defer srv.Close()
			defer cli.Close()
			byteByByte := func(wire []byte) {
				t.Helper()
				for i := range wire {
					if err := srv.Feed(wire[i : i+1]); err != nil {
						t.Fatalf("server, byte %d of %d: %v", i, len(wire), err)
					}
				}
			}
			for i := 0; i < 10 && !(srv.HandshakeDone() && cli.HandshakeDone()); i++ {
				byteByByte(cli.TakeWire())
				if w := srv.TakeWire(); len(w) > 0 {
					if err := cli.Feed(w); err != nil {
						t.Fatalf("client: %v", err)
					}
				}
			}
			if !srv.HandshakeDone() || !cli.HandshakeDone() {
				t.Fatal("handshake not done")
			}
			login := AppendPackets(nil, PacketLogin7, 0, bytes.Repeat([]byte{0x42}, 1500), 512)
			if err := cli.Write(login); err != nil {
				t.Fatal(err)
			}
			byteByByte(cli.TakeWire())
			if got := srv.TakePlain(); !bytes.Equal(got, login) {
				t.Fatalf("server got %d bytes of the LOGIN7, want %d", len(got), len(login))
			}
		})
	}
}
