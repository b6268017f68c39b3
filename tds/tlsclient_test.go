package tds

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tdspool/tdspool/internal/testcert"
)

// testPKI is one self-signed server certificate (its own CA) for "localhost".
type testPKI struct {
	cert  tls.Certificate
	roots *x509.CertPool
}

func newTestPKI(t testing.TB) testPKI {
	t.Helper()
	dir := t.TempDir()
	certFile, keyFile, err := testcert.Write(dir, "localhost", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	pem, err := os.ReadFile(filepath.Clean(certFile))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		t.Fatal("no certificate in PEM")
	}
	return testPKI{cert: cert, roots: roots}
}

// tds7Server is the server side of a TDS 7.x PRELOGIN + TLS exchange built from this
// package's server pieces (NegotiateEncryption, NewTLSServer): the counterpart the client
// handshake must interoperate with.
type tds7Server struct {
	t      *testing.T
	policy EncryptOption
	cfg    *tls.Config
	in     Reassembler
	tls    *TLSAdapter
	result EncryptionResult
	out    []byte
}

func (s *tds7Server) feed(b []byte) {
	s.t.Helper()
	if s.tls != nil {
		if err := s.tls.Feed(b); err != nil {
			s.t.Fatalf("server TLS: %v", err)
		}
		s.out = append(s.out, s.tls.TakeWire()...)
		return
	}
	s.in.Feed(b)
	msg, err := s.in.Next()
	if errors.Is(err, ErrShortBuffer) {
		return
	}
	if err != nil || msg.Type != PacketPrelogin {
		s.t.Fatalf("server: %v %v", msg.Type, err)
	}
	pre, err := DecodePrelogin(msg.Payload)
	if err != nil {
		s.t.Fatal(err)
	}
	var reply EncryptOption
	reply, s.result = NegotiateEncryption(pre.Encryption, s.policy)
	s.out = AppendPackets(s.out, PacketReply, 0, ServerPreloginReply(0x10000000, reply).AppendPrelogin(nil), 4096)
	switch s.result {
	case EncryptionFull:
		s.tls = NewTLSServer(s.cfg, TLSModeFull, 4096)
	case EncryptionLoginOnly:
		s.tls = NewTLSServer(s.cfg, TLSModeLoginOnly, 4096)
	}
}

func (s *tds7Server) takeWire() []byte {
	b := s.out
	s.out = nil
	return b
}

// runTDS7 shuttles bytes until the client is ready or fails.
func runTDS7(t *testing.T, h *ClientHandshake, s *tds7Server) error {
	t.Helper()
	for i := 0; i < 30; i++ {
		if w := h.TakeWire(); len(w) > 0 {
			s.feed(w)
		}
		ready, err := h.Feed(s.takeWire())
		if err != nil || ready {
			return err
		}
	}
	t.Fatal("no progress")
	return nil
}

func TestClientHandshakeTDS7(t *testing.T) {
	pki := newTestPKI(t)
	srvCfg := &tls.Config{Certificates: []tls.Certificate{pki.cert}}
	for _, tc := range []struct {
		name    string
		mode    ClientEncryption
		policy  EncryptOption // what the server announces
		result  EncryptionResult
		wantErr error
	}{
		{"plaintext/optional", ClientPlaintext, EncryptOff, EncryptionNone, nil},
		{"plaintext/off", ClientPlaintext, EncryptNotSup, EncryptionNone, nil},
		{"plaintext/forced", ClientPlaintext, EncryptReq, 0, ErrServerRequiresEncryption},
		{"login-only/optional", ClientTDS7LoginOnly, EncryptOff, EncryptionLoginOnly, nil},
		{"login-only/forced becomes full", ClientTDS7LoginOnly, EncryptReq, EncryptionFull, nil},
		{"login-only/off", ClientTDS7LoginOnly, EncryptNotSup, EncryptionNone, nil},
		{"full/optional", ClientTDS7Full, EncryptOff, EncryptionFull, nil},
		{"full/forced", ClientTDS7Full, EncryptReq, EncryptionFull, nil},
		{"full/off refused", ClientTDS7Full, EncryptNotSup, 0, ErrServerCannotEncrypt},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := ClientTLSConfig(tc.mode, "localhost", pki.roots, false)
			h := NewClientHandshake(tc.mode, cfg, Prelogin{HasVersion: true}, 4096)
			defer h.Close()
			s := &tds7Server{t: t, policy: tc.policy, cfg: srvCfg}
			defer func() {
				if s.tls != nil {
					s.tls.Close()
				}
			}()
			err := runTDS7(t, h, s)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if h.Result() != tc.result {
				t.Fatalf("result %s, want %s", h.Result(), tc.result)
			}
			if h.Reply() == nil {
				t.Fatal("no reply")
			}
			if tc.result == EncryptionNone {
				if h.TLS() != nil {
					t.Fatal("TLS without encryption")
				}
				return
			}
			// LOGIN7 through the client adapter, plaintext reply (login-only) or TLS reply.
			cli := h.TLS()
			login := AppendPackets(nil, PacketLogin7, 0, bytes.Repeat([]byte{7}, 300), 4096)
			if err := cli.Write(login); err != nil {
				t.Fatal(err)
			}
			if tc.result == EncryptionLoginOnly {
				cli.SwitchToClear()
			}
			s.feed(cli.TakeWire())
			if got := s.tls.TakePlain(); !bytes.Equal(got, login) {
				t.Fatalf("server read %d bytes, want the LOGIN7", len(got))
			}
			reply := AppendPackets(nil, PacketReply, 0, []byte("loginack"), 4096)
			if err := s.tls.Write(reply); err != nil {
				t.Fatal(err)
			}
			wire := s.tls.TakeWire()
			if tc.result == EncryptionLoginOnly && !bytes.Equal(wire, reply) {
				t.Fatal("login-only server reply is not plaintext")
			}
			if err := cli.Feed(wire); err != nil {
				t.Fatal(err)
			}
			if got := cli.TakePlain(); !bytes.Equal(got, reply) {
				t.Fatalf("client read % X", got)
			}
		})
	}
}

func TestClientHandshakeVerifiesTheServer(t *testing.T) {
	pki, other := newTestPKI(t), newTestPKI(t)
	srvCfg := &tls.Config{Certificates: []tls.Certificate{pki.cert}}
	for _, tc := range []struct {
		name       string
		serverName string
		roots      *x509.CertPool
		trustAny   bool
		want       string // substring of the error; "" = success
	}{
		{"right CA and name", "localhost", pki.roots, false, ""},
		{"wrong CA", "localhost", other.roots, false, "certificate signed by unknown authority"},
		{"wrong name", "db.example.com", pki.roots, false, "not db.example.com"},
		{"trust any", "db.example.com", other.roots, true, ""},
	} {
		for _, mode := range []ClientEncryption{ClientTDS7Full, ClientTDS8} {
			t.Run(tc.name+"/"+mode.String(), func(t *testing.T) {
				cfg := ClientTLSConfig(mode, tc.serverName, tc.roots, tc.trustAny)
				h := NewClientHandshake(mode, cfg, Prelogin{HasVersion: true}, 4096)
				defer h.Close()
				var err error
				if mode == ClientTDS8 {
					err = runTDS8(t, h, srvCfg)
				} else {
					s := &tds7Server{t: t, policy: EncryptOff, cfg: srvCfg}
					err = runTDS7Lenient(h, s)
					if s.tls != nil {
						s.tls.Close()
					}
				}
				if tc.want == "" {
					if err != nil {
						t.Fatal(err)
					}
					return
				}
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("err %v, want one containing %q", err, tc.want)
				}
			})
		}
	}
}

// runTDS7Lenient is runTDS7 for handshakes expected to fail on the client side: the server
// side sees the client's alert and its own error is ignored.
func runTDS7Lenient(h *ClientHandshake, s *tds7Server) error {
	for i := 0; i < 30; i++ {
		if w := h.TakeWire(); len(w) > 0 {
			if s.tls != nil {
				if s.tls.Feed(w) != nil {
					_, err := h.Feed(nil)
					return err
				}
				s.out = append(s.out, s.tls.TakeWire()...)
			} else {
				s.feed(w)
			}
		}
		ready, err := h.Feed(s.takeWire())
		if err != nil || ready {
			return err
		}
	}
	return errors.New("no progress")
}

// runTDS8 runs the client handshake against crypto/tls as a TDS 8 server (ALPN tds/8.0) that
// answers the PRELOGIN inside TLS.
func runTDS8(t *testing.T, h *ClientHandshake, srvCfg *tls.Config) error {
	t.Helper()
	cfg := srvCfg.Clone()
	cfg.NextProtos = []string{ALPNTDS8}
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	srvDone := make(chan error, 1)
	go func() {
		c := tls.Server(b, cfg)
		if err := c.Handshake(); err != nil {
			srvDone <- err
			b.Close()
			return
		}
		var r Reassembler
		buf := make([]byte, 4096)
		for {
			n, err := c.Read(buf)
			if err != nil {
				srvDone <- err
				return
			}
			r.Feed(buf[:n])
			if msg, err := r.Next(); err == nil {
				if msg.Type != PacketPrelogin {
					srvDone <- errors.New("not a PRELOGIN")
					return
				}
				_, err = c.Write(AppendPackets(nil, PacketReply, 0, ServerPreloginReply(0x10000000, EncryptNotSup).AppendPrelogin(nil), 4096))
				srvDone <- err
				return
			}
		}
	}()
	buf := make([]byte, 32<<10)
	for {
		if w := h.TakeWire(); len(w) > 0 {
			if _, err := a.Write(w); err != nil {
				_, herr := h.Feed(nil)
				if herr != nil {
					return herr
				}
				return err
			}
		}
		_ = a.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := a.Read(buf)
		if err != nil {
			_, herr := h.Feed(nil)
			if herr != nil {
				return herr
			}
			return err
		}
		ready, herr := h.Feed(buf[:n])
		if herr != nil {
			return herr
		}
		if ready {
			if err := <-srvDone; err != nil {
				t.Fatalf("server: %v", err)
			}
			if h.TLS().ConnectionState().NegotiatedProtocol != ALPNTDS8 {
				t.Fatal("ALPN not negotiated")
			}
			return nil
		}
	}
}

func TestClientHandshakeTDS8(t *testing.T) {
	pki := newTestPKI(t)
	h := NewClientHandshake(ClientTDS8, ClientTLSConfig(ClientTDS8, "localhost", pki.roots, false), Prelogin{HasVersion: true}, 4096)
	defer h.Close()
	if w := h.TakeWire(); len(w) == 0 || w[0] != 0x16 {
		t.Fatalf("TDS 8 must start with a TLS ClientHello, got % X", w[:min(len(w), 4)])
	} else {
		// Put it back: runTDS8 sends what TakeWire returns.
		h.out = append(w, h.out...)
	}
	if err := runTDS8(t, h, &tls.Config{Certificates: []tls.Certificate{pki.cert}}); err != nil {
		t.Fatal(err)
	}
	if h.Result() != EncryptionFull || h.Reply() == nil {
		t.Fatalf("result %s reply %v", h.Result(), h.Reply())
	}
}

// FuzzClientHandshake feeds arbitrary server bytes to the client handshake in every TDS 7.x
// mode: it must fail or wait, never panic or hang.
func FuzzClientHandshake(f *testing.F) {
	reply := func(e EncryptOption) []byte {
		return AppendPackets(nil, PacketReply, 0, ServerPreloginReply(0x10000000, e).AppendPrelogin(nil), 4096)
	}
	f.Add(uint8(0), reply(EncryptNotSup))
	f.Add(uint8(1), reply(EncryptOff))
	f.Add(uint8(2), reply(EncryptReq))
	f.Add(uint8(2), append(reply(EncryptOn), 0x12, 0x01, 0x00, 0x0c, 0, 0, 0, 0, 0x16, 0x03, 0x03, 0))
	f.Add(uint8(1), []byte{0x04, 0x01, 0x00, 0x08, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, mode uint8, data []byte) {
		m := ClientEncryption(mode % 3)
		h := NewClientHandshake(m, &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12}, Prelogin{HasVersion: true}, 4096)
		defer h.Close()
		h.TakeWire()
		// In two pieces, so the split points exercise the reassembly too.
		cut := len(data) / 2
		if _, err := h.Feed(data[:cut]); err != nil {
			return
		}
		_, _ = h.Feed(data[cut:])
		h.TakeWire()
	})
}
