// Package backend is the benchmark's SQL Server stand-in: the smallest server go-mssqldb
// accepts, built on the project's tds package. It answers PRELOGIN (plaintext, or TDS 7.x
// full / login-only TLS when the client asks), accepts every LOGIN7 with LOGINACK, and
// answers SQL_BATCH requests:
//
//	SELECT 1            one INT row (the ping workload)
//	STREAM <bytes>      a result of about <bytes> bytes of mixed column types (stream)
//	anything else       one INT row
//
// It does as little work as possible per request, so that what the benchmark measures is
// the proxy in front of it, not the backend. The project's SQLite-backed tds/standin server
// is the realistic stand-in for tests and the demo; this one is the fast, predictable one.
package backend

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tdspool/tdspool/tds"
)

const progVersion = 0x10000FA0 // 16.0.4000, what SQL Server 2022 reports

// Server is a running benchmark backend.
type Server struct {
	ln   net.Listener
	cert tls.Certificate

	wg    sync.WaitGroup
	mu    sync.Mutex
	conns map[net.Conn]struct{}

	Logins   atomic.Int64
	Requests atomic.Int64
	Open     atomic.Int64
	Errors   atomic.Int64
	lastErr  atomic.Value
}

// Start listens on addr ("127.0.0.1:0" for a free port) and serves until Close. cert is the
// TLS certificate (nil: a fresh self-signed one for localhost).
func Start(addr string, cert *tls.Certificate) (*Server, error) {
	if cert == nil {
		c, err := SelfSigned()
		if err != nil {
			return nil, err
		}
		cert = &c
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s := &Server{ln: ln, cert: *cert, conns: map[net.Conn]struct{}{}}
	s.wg.Add(1)
	go s.accept()
	return s, nil
}

// Addr is host:port.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Port is the listening port.
func (s *Server) Port() int { return s.ln.Addr().(*net.TCPAddr).Port }

// LastError is the most recent protocol error (nil when none).
func (s *Server) LastError() error {
	if e, ok := s.lastErr.Load().(error); ok {
		return e
	}
	return nil
}

// Close stops accepting and closes every connection.
func (s *Server) Close() {
	s.ln.Close()
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

func (s *Server) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				continue
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond) // EMFILE and the like
			continue
		}
		s.mu.Lock()
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		s.Open.Add(1)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if err := s.serve(c); err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) &&
				!strings.Contains(err.Error(), "connection reset") {
				s.Errors.Add(1)
				s.lastErr.Store(err)
			}
			c.Close()
			s.Open.Add(-1)
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
		}()
	}
}

type conn struct {
	c       net.Conn
	r       tds.Reassembler
	tlsA    *tds.TLSAdapter
	buf     []byte
	out     []byte
	pktSize int
}

func (sc *conn) next() (tds.Message, error) {
	for {
		m, err := sc.r.Next()
		if err != tds.ErrShortBuffer {
			return m, err
		}
		n, err := sc.c.Read(sc.buf)
		if err != nil {
			return tds.Message{}, err
		}
		if sc.tlsA == nil {
			sc.r.Feed(sc.buf[:n])
			continue
		}
		if err := sc.tlsA.Feed(sc.buf[:n]); err != nil {
			return tds.Message{}, err
		}
		if w := sc.tlsA.TakeWire(); len(w) > 0 {
			if _, err := sc.c.Write(w); err != nil {
				return tds.Message{}, err
			}
		}
		sc.r.Feed(sc.tlsA.TakePlain())
	}
}

// send frames payload as REPLY packets and writes them.
func (sc *conn) send(payload []byte) error {
	sc.out = tds.AppendPacketsSPID(sc.out[:0], tds.PacketReply, 0, 57, payload, sc.pktSize)
	wire := sc.out
	if sc.tlsA != nil {
		if err := sc.tlsA.Write(wire); err != nil {
			return err
		}
		wire = sc.tlsA.TakeWire()
	}
	_, err := sc.c.Write(wire)
	return err
}

func (s *Server) serve(c net.Conn) error {
	sc := &conn{c: c, buf: make([]byte, 32<<10), pktSize: tds.DefaultPacketSize}
	m, err := sc.next()
	if err != nil {
		return err
	}
	if m.Type != tds.PacketPrelogin {
		return fmt.Errorf("backend: first message is %s, want PRELOGIN", m.Type)
	}
	p, err := tds.DecodePrelogin(m.Payload)
	if err != nil {
		return err
	}
	// Policy OFF: plaintext for NOT_SUP clients, full TLS for ON, login-only for OFF.
	reply, res := tds.NegotiateEncryption(p.Encryption, tds.EncryptOff)
	if err := sc.send(tds.ServerPreloginReply(progVersion, reply).AppendPrelogin(nil)); err != nil {
		return err
	}
	switch res {
	case tds.EncryptionRefuse:
		return nil
	case tds.EncryptionFull, tds.EncryptionLoginOnly:
		mode := tds.TLSModeFull
		if res == tds.EncryptionLoginOnly {
			mode = tds.TLSModeLoginOnly
		}
		sc.tlsA = tds.NewTLSServer(&tls.Config{Certificates: []tls.Certificate{s.cert}}, mode, tds.DefaultPacketSize)
		defer sc.tlsA.Close()
	}
	if m, err = sc.next(); err != nil {
		return err
	}
	if m.Type != tds.PacketLogin7 {
		return fmt.Errorf("backend: expected LOGIN7, got %s", m.Type)
	}
	l, err := tds.DecodeLogin7(m.Payload)
	if err != nil {
		return err
	}
	db := l.Database
	if db == "" {
		db = "master"
	}
	var resp []byte
	resp = tds.EnvChangeDatabase(db, "master").AppendEnvChange(resp)
	resp = tds.ServerMessage{Token: tds.TokenInfo, Number: 5701, Text: "Changed database context to '" + db + "'.", Server: "bench", Line: 1}.AppendMessage(resp)
	resp = tds.EnvChangeCollation(tds.CollationLatin1General).AppendEnvChange(resp)
	resp = tds.EnvChangeLanguage("us_english", "").AppendEnvChange(resp)
	pkt := int(l.PacketSize)
	if !tds.ValidPacketSize(pkt) {
		pkt = tds.DefaultPacketSize
	}
	resp = tds.EnvChangePacketSize(pkt, pkt).AppendEnvChange(resp)
	resp = tds.LoginAck{Interface: 1, TDSVersion: tds.TDSVersion74, ProgName: "Microsoft SQL Server", ProgVersion: progVersion}.AppendLoginAck(resp)
	resp = tds.Done{}.AppendDone(resp)
	if err := sc.send(resp); err != nil {
		return err
	}
	s.Logins.Add(1)
	sc.pktSize = pkt
	var txn uint64
	for {
		m, err := sc.next()
		if err != nil {
			return err
		}
		s.Requests.Add(1)
		switch m.Type {
		case tds.PacketSQLBatch:
			q, err := tds.DecodeSQLBatch(m.Payload)
			if err != nil {
				return err
			}
			if err := s.answer(sc, q.Text); err != nil {
				return err
			}
		case tds.PacketRPC:
			if err := s.answer(sc, "SELECT 1"); err != nil {
				return err
			}
		case tds.PacketTransMgr:
			tm, err := tds.DecodeTransMgr(m.Payload)
			if err != nil {
				return err
			}
			var out []byte
			switch tm.Type {
			case tds.TMBeginXact:
				txn++
				out = tds.EnvChangeBeginTran(txn).AppendEnvChange(out)
			case tds.TMCommitXact:
				out = tds.EnvChangeCommitTran(txn).AppendEnvChange(out)
			case tds.TMRollbackXact:
				out = tds.EnvChangeRollbackTran(txn).AppendEnvChange(out)
			}
			if err := sc.send(tds.Done{}.AppendDone(out)); err != nil {
				return err
			}
		case tds.PacketAttention:
			if err := sc.send(tds.Done{Status: tds.DoneAttn}.AppendDone(nil)); err != nil {
				return err
			}
		default:
			return fmt.Errorf("backend: unexpected %s", m.Type)
		}
	}
}

var (
	pingCols  = []tds.Column{{Flags: tds.ColNullable, Type: tds.IntNType(4)}}
	pingReply = func() []byte {
		out := tds.ColMetadata{Columns: pingCols}.AppendColMetadata(nil)
		out, _ = tds.AppendRow(out, pingCols, []any{int32(1)})
		return tds.Done{Status: tds.DoneCount, CurCmd: 0xC1, RowCount: 1}.AppendDone(out)
	}()
)

// StreamColumns are the stream workload's mixed column types.
var StreamColumns = []tds.Column{
	{Flags: tds.ColNullable, Type: tds.IntNType(4), Name: "id"},
	{Flags: tds.ColNullable, Type: tds.IntNType(8), Name: "big"},
	{Flags: tds.ColNullable, Type: tds.FltNType(8), Name: "f"},
	{Flags: tds.ColNullable, Type: tds.DecimalNType(18, 2), Name: "amount"},
	{Flags: tds.ColNullable, Type: tds.BitNType(), Name: "flag"},
	{Flags: tds.ColNullable, Type: tds.DateTime2NType(7), Name: "ts"},
	{Flags: tds.ColNullable, Type: tds.GUIDType(), Name: "g"},
	{Flags: tds.ColNullable, Type: tds.NVarCharType(100), Name: "name"},
	{Flags: tds.ColNullable, Type: tds.VarBinaryType(400), Name: "blob"},
	{Flags: tds.ColNullable, Type: tds.NVarCharType(0), Name: "note"}, // NVARCHAR(MAX), PLP
}

var (
	streamOnce  sync.Once
	streamBlock []byte // a block of rows, repeated
	streamRows  int    // rows per block
)

func streamRowsBlock() ([]byte, int) {
	streamOnce.Do(func() {
		ts := time.Date(2024, 2, 29, 13, 14, 15, 123456700, time.UTC)
		blob := make([]byte, 400)
		for i := range blob {
			blob[i] = byte(i * 7)
		}
		for i := 0; len(streamBlock) < 256<<10; i++ {
			var vals []any
			if i%10 == 9 { // some NULLs, so NBCROW-free ROW with NULLs in nullable columns
				vals = []any{int32(i), nil, nil, nil, nil, nil, nil, nil, nil, nil}
			} else {
				vals = []any{int32(i), int64(i) * 1_000_003, float64(i) / 3, strconv.Itoa(i*37) + ".25", i%2 == 0, ts.Add(time.Duration(i) * time.Second),
					"6F9619FF-8B86-D011-B42D-00C04FC964FF", "customer name " + strconv.Itoa(i) + " é😀", blob[:100+i%300],
					strings.Repeat("note ", 10+i%40)}
			}
			var err error
			streamBlock, err = tds.AppendRow(streamBlock, StreamColumns, vals)
			if err != nil {
				panic(err)
			}
			streamRows++
		}
	})
	return streamBlock, streamRows
}

func (s *Server) answer(sc *conn, text string) error {
	t := strings.TrimSpace(text)
	if rest, ok := strings.CutPrefix(t, "STREAM "); ok {
		want, err := strconv.ParseInt(strings.TrimSpace(rest), 10, 64)
		if err != nil || want <= 0 {
			return sc.send(tds.ErrorMessage(50000, 1, 16, "STREAM wants a byte count", "bench", "", 1))
		}
		return s.stream(sc, want)
	}
	return sc.send(pingReply)
}

// stream sends COLMETADATA, then blocks of rows until want bytes are out, then DONE. The
// message is one TDS response split into packets; blocks are framed as they go so memory
// stays flat.
func (s *Server) stream(sc *conn, want int64) error {
	block, n := streamRowsBlock()
	payload := tds.ColMetadata{Columns: StreamColumns}.AppendColMetadata(nil)
	var rows uint64
	// Frame by hand: packets of pktSize with status 0 until the last, EOM.
	var pending []byte
	pending = append(pending, payload...)
	var sent int64
	flush := func(final bool) error {
		body := sc.pktSize - tds.HeaderSize
		var wire []byte
		for len(pending) > body || (final && len(pending) > 0) {
			k := min(body, len(pending))
			st := tds.PacketStatus(0)
			if final && k == len(pending) {
				st = tds.StatusEOM
			}
			wire = tds.Header{Type: tds.PacketReply, Status: st, Length: uint16(k + tds.HeaderSize), SPID: 57, PacketID: 1}.AppendHeader(wire)
			wire = append(wire, pending[:k]...)
			pending = pending[k:]
		}
		pending = append([]byte(nil), pending...)
		if len(wire) == 0 {
			return nil
		}
		sent += int64(len(wire))
		if sc.tlsA != nil {
			if err := sc.tlsA.Write(wire); err != nil {
				return err
			}
			wire = sc.tlsA.TakeWire()
		}
		_, err := sc.c.Write(wire)
		return err
	}
	for sent+int64(len(pending)) < want {
		pending = append(pending, block...)
		rows += uint64(n)
		if err := flush(false); err != nil {
			return err
		}
	}
	pending = tds.Done{Status: tds.DoneCount, CurCmd: 0xC1, RowCount: rows}.AppendDone(pending)
	return flush(true)
}

// SelfSigned makes an ECDSA certificate for localhost and 127.0.0.1.
func SelfSigned() (tls.Certificate, error) {
	certPEM, keyPEM, err := SelfSignedPEM()
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.X509KeyPair(certPEM, keyPEM)
}

// SelfSignedPEM returns a fresh certificate and key for localhost and 127.0.0.1 as PEM.
func SelfSignedPEM() (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "localhost"},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), nil
}
