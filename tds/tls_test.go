package tds

import (
	"bytes"
	"crypto/tls"
	"net"
	"strings"
	"testing"

	"github.com/tdspool/tdspool/internal/testcert"
)

// testCert makes a self-signed certificate for localhost and 127.0.0.1.
func testCert(t testing.TB) tls.Certificate {
	t.Helper()
	p, err := testcert.New()
	if err != nil {
		t.Fatal(err)
	}
	return p.TLS
}

// shuttle moves bytes between two adapters until neither produces more.
func shuttle(t *testing.T, c, s *TLSAdapter) {
	t.Helper()
	for i := 0; i < 20; i++ {
		w1 := c.TakeWire()
		if len(w1) > 0 {
			if err := s.Feed(w1); err != nil {
				t.Fatalf("server feed: %v", err)
			}
		}
		w2 := s.TakeWire()
		if len(w2) > 0 {
			if err := c.Feed(w2); err != nil {
				t.Fatalf("client feed: %v", err)
			}
		}
		if len(w1) == 0 && len(w2) == 0 {
			return
		}
	}
	t.Fatal("no quiescence")
}

func TestTLSAdapterPair(t *testing.T) {
	cert := testCert(t)
	for _, ver := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		for _, mode := range []TLSMode{TLSModeFull, TLSModeLoginOnly} {
			t.Run(mode.String()+tls.VersionName(ver), func(t *testing.T) {
				srv := NewTLSServer(&tls.Config{Certificates: []tls.Certificate{cert}, MaxVersion: ver}, mode, 512)
				cli := NewTLSClient(&tls.Config{InsecureSkipVerify: true, MaxVersion: ver}, mode, 512)
				defer srv.Close()
				defer cli.Close()
				// The ClientHello is wrapped in PRELOGIN packets.
				hello := cli.TakeWire()
				if len(hello) == 0 || PacketType(hello[0]) != PacketPrelogin {
					t.Fatalf("client hello % X", hello[:min(8, len(hello))])
				}
				if err := srv.Feed(hello); err != nil {
					t.Fatal(err)
				}
				shuttle(t, cli, srv)
				if !srv.HandshakeDone() || !cli.HandshakeDone() {
					t.Fatal("handshake not done")
				}
				if got := srv.ConnectionState().Version; got != ver {
					t.Fatalf("version %x", got)
				}
				login := AppendPackets(nil, PacketLogin7, 0, bytes.Repeat([]byte{0x42}, 1200), 512)
				if mode == TLSModeFull {
					if err := cli.Write(login); err != nil {
						t.Fatal(err)
					}
					wire := cli.TakeWire()
					if PacketType(wire[0]) == PacketLogin7 || wire[0] != 0x17 {
						t.Fatalf("not a raw TLS record: % X", wire[:5])
					}
					if err := srv.Feed(wire); err != nil {
						t.Fatal(err)
					}
					if got := srv.TakePlain(); !bytes.Equal(got, login) {
						t.Fatalf("server got %d bytes", len(got))
					}
					reply := AppendPackets(nil, PacketReply, 0, []byte("reply"), 512)
					if err := srv.Write(reply); err != nil {
						t.Fatal(err)
					}
					if err := cli.Feed(srv.TakeWire()); err != nil {
						t.Fatal(err)
					}
					if got := cli.TakePlain(); !bytes.Equal(got, reply) {
						t.Fatalf("client got % X", got)
					}
					return
				}
				// Login-only, go-mssqldb style: first packet encrypted,
				// the rest in clear, all arriving in one chunk.
				first := login[:512]
				if err := cli.Write(first); err != nil {
					t.Fatal(err)
				}
				cli.SwitchToClear()
				if err := cli.Write(login[512:]); err != nil {
					t.Fatal(err)
				}
				wire := cli.TakeWire()
				if err := srv.Feed(wire); err != nil {
					t.Fatal(err)
				}
				if got := srv.TakePlain(); !bytes.Equal(got, login) {
					t.Fatalf("server got %d bytes, want %d", len(got), len(login))
				}
				if srv.Encrypting() {
					t.Fatal("server still decrypting")
				}
				// The server's login response goes out in clear.
				reply := AppendPackets(nil, PacketReply, 0, []byte("ack"), 512)
				if err := srv.Write(reply); err != nil {
					t.Fatal(err)
				}
				out := srv.TakeWire()
				if !bytes.Equal(out, reply) {
					t.Fatalf("reply not clear: % X", out)
				}
				if err := cli.Feed(out); err != nil {
					t.Fatal(err)
				}
				if got := cli.TakePlain(); !bytes.Equal(got, reply) {
					t.Fatalf("client got % X", got)
				}
			})
		}
	}
}

// TestTLSAdapterWholeLoginEncrypted covers pytds, which encrypts the whole
// LOGIN7 and then reverts to clear; bytes arrive one at a time.
func TestTLSAdapterWholeLoginEncrypted(t *testing.T) {
	cert := testCert(t)
	srv := NewTLSServer(&tls.Config{Certificates: []tls.Certificate{cert}}, TLSModeLoginOnly, 4096)
	cli := NewTLSClient(&tls.Config{InsecureSkipVerify: true}, TLSModeLoginOnly, 4096)
	defer srv.Close()
	defer cli.Close()
	shuttle(t, cli, srv)
	login := AppendPackets(nil, PacketLogin7, 0, bytes.Repeat([]byte{7}, 9000), 4096)
	for off := 0; off < len(login); off += 4096 {
		if err := cli.Write(login[off:min(off+4096, len(login))]); err != nil {
			t.Fatal(err)
		}
	}
	cli.SwitchToClear()
	batch := AppendPackets(nil, PacketSQLBatch, 0, []byte("clear"), 4096)
	cli.Write(batch)
	wire := cli.TakeWire()
	for i := range wire {
		if err := srv.Feed(wire[i : i+1]); err != nil {
			t.Fatal(err)
		}
	}
	if got := srv.TakePlain(); !bytes.Equal(got, append(login, batch...)) {
		t.Fatalf("got %d bytes want %d", len(got), len(login)+len(batch))
	}
}

func TestTLSAdapterErrors(t *testing.T) {
	cert := testCert(t)
	srv := NewTLSServer(&tls.Config{Certificates: []tls.Certificate{cert}}, TLSModeFull, 4096)
	defer srv.Close()
	if err := srv.Write([]byte("x")); err != ErrHandshakeInProgress {
		t.Fatalf("write before handshake: %v", err)
	}
	if err := srv.Feed(AppendPackets(nil, PacketSQLBatch, 0, []byte("x"), 4096)); err == nil {
		t.Fatal("non-PRELOGIN packet accepted during handshake")
	}
	srv2 := NewTLSServer(&tls.Config{Certificates: []tls.Certificate{cert}}, TLSModeFull, 4096)
	defer srv2.Close()
	if err := srv2.Feed(AppendPackets(nil, PacketPrelogin, 0, []byte("not a client hello"), 4096)); err == nil {
		t.Fatal("garbage handshake accepted")
	}
}

// TestTLSAdapterRealClient runs an unmodified crypto/tls client over a
// socket whose handshake bytes are wrapped in PRELOGIN packets by a small
// test conn (the way go-mssqldb does it), against the server adapter.
func TestTLSAdapterRealClient(t *testing.T) {
	cert := testCert(t)
	c1, c2 := net.Pipe()
	defer c1.Close()
	defer c2.Close()
	srv := NewTLSServer(&tls.Config{Certificates: []tls.Certificate{cert}}, TLSModeFull, 4096)
	defer srv.Close()
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := c2.Read(buf)
			if err != nil {
				return
			}
			if err := srv.Feed(buf[:n]); err != nil {
				return
			}
			if p := srv.TakePlain(); len(p) > 0 {
				srv.Write(bytes.ToUpper(p)) // echo upper-cased
			}
			if w := srv.TakeWire(); len(w) > 0 {
				if _, err := c2.Write(w); err != nil {
					return
				}
			}
		}
	}()
	wc := &wrapConn{Conn: c1}
	tc := tls.Client(wc, &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	wc.flush()
	wc.raw = true
	if _, err := tc.Write([]byte("hello tds")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 100)
	n, err := tc.Read(buf)
	if err != nil || string(buf[:n]) != "HELLO TDS" {
		t.Fatalf("%q %v", buf[:n], err)
	}
}

// wrapConn is a test-side client framing: handshake writes are buffered
// into a PRELOGIN message flushed when the client starts reading; reads
// strip packet headers until raw mode.
type wrapConn struct {
	net.Conn
	raw     bool
	pending []byte
	in      []byte
	r       Reassembler
}

func (w *wrapConn) flush() {
	if len(w.pending) > 0 {
		w.Conn.Write(AppendPackets(nil, PacketPrelogin, 0, w.pending, 4096))
		w.pending = nil
	}
}

func (w *wrapConn) Write(p []byte) (int, error) {
	if w.raw {
		return w.Conn.Write(p)
	}
	w.pending = append(w.pending, p...)
	return len(p), nil
}

func (w *wrapConn) Read(p []byte) (int, error) {
	if w.raw {
		return w.Conn.Read(p)
	}
	w.flush()
	for len(w.in) == 0 {
		m, err := w.r.Next()
		if err == ErrShortBuffer {
			buf := make([]byte, 4096)
			n, err := w.Conn.Read(buf)
			if err != nil {
				return 0, err
			}
			w.r.Feed(buf[:n])
			continue
		}
		if err != nil {
			return 0, err
		}
		w.in = append(w.in, m.Payload...)
	}
	n := copy(p, w.in)
	w.in = w.in[n:]
	return n, nil
}

// A panic inside the TLS engine goroutine (here: in a certificate callback) fails that one
// connection with an error from Feed instead of killing the process.
func TestTLSEnginePanicFailsOnlyThatConnection(t *testing.T) {
	srv := NewTLSServer(&tls.Config{GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
		panic("certificate callback bug")
	}}, TLSModeFull, 0)
	defer srv.Close()
	cli := NewTLSClient(&tls.Config{InsecureSkipVerify: true}, TLSModeFull, 0)
	defer cli.Close()
	err := srv.Feed(cli.TakeWire())
	if err == nil || !strings.Contains(err.Error(), "TLS engine panic") {
		t.Fatalf("Feed after an engine panic = %v", err)
	}
}
