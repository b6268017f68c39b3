package tds

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// TLS inside TDS 7.x [MS-TDS §2.2.6.5]. After PRELOGIN, when
// encryption was negotiated, the TLS handshake records travel as the
// payload of PRELOGIN (0x12) packets; one handshake flight is one TDS
// message. As soon as the handshake is done the wrapping stops and the
// socket carries raw TLS records (full encryption), or — in login-only
// mode — only the LOGIN7 goes through TLS and everything after it is
// plaintext again, with no close_notify.
//
// TLSAdapter runs Go's crypto/tls over that framing with a sans-I/O API:
//
//	Feed(wire)   bytes received from the peer
//	Write(plain) plaintext to send (after the handshake)
//	TakeWire()   bytes to send to the peer
//	TakePlain()  plaintext received from the peer (a TDS packet stream)
//
// Threading contract: all methods are called from one owner thread (e.g.
// Envoy's worker thread); Write may also run on a second thread while Feed
// runs (crypto/tls allows one reader and one writer). During the handshake
// a goroutine runs crypto/tls against an in-memory conn: Feed hands it the
// new bytes and returns once the TLS engine has consumed them and is
// waiting for more (or has finished): it waits only for CPU work on bytes
// already received — never for the network. After the handshake that
// goroutine ends and records are decrypted on the caller's thread: the
// in-memory conn answers "would block" (a temporary net.Error, which
// crypto/tls does not latch; a partial record stays buffered inside it)
// when it has no more input, so no goroutine hop is paid per record. After
// Feed returns, TakeWire/TakePlain hold everything those bytes produced.
//
// Login-only mode: after the handshake incoming bytes are sniffed per TLS
// record: a record starting with 0x17 (application data) is decrypted and
// its plaintext delivered; the first byte that is not a TLS record header
// switches the input to plaintext for good. That handles both the drivers
// that encrypt only the first LOGIN7 packet (go-mssqldb, JDBC, FreeTDS)
// and pytds, which encrypts the whole LOGIN7. Records are handed to
// crypto/tls one at a time so it can never swallow the plaintext behind
// them. A server in login-only mode writes plaintext (Write passes
// through); a client encrypts until SwitchToClear.
type TLSAdapter struct {
	mu   sync.Mutex
	cond *sync.Cond

	conn       *tls.Conn
	isClient   bool
	mode       TLSMode
	packetSize int

	in      []byte // bytes for crypto/tls to read
	idle    bool   // engine is blocked reading with no input
	done    bool   // engine goroutine has exited
	closed  bool
	wireIn  []byte // received bytes not yet dispatched
	out     []byte // bytes for the peer
	pending []byte // handshake flight being collected
	plain   []byte // decrypted bytes for the owner

	wrapping  bool // handshake phase: writes become PRELOGIN packets
	strict    bool // TDS 8: TLS from the first byte, no PRELOGIN wrapping at all
	handshook bool
	inline    bool // handshake done: records are read on the caller's thread
	clearIn   bool // login-only: input is plaintext now
	clearOut  bool // writes pass through unencrypted
	err       error
}

// TLSMode selects what happens after the handshake.
type TLSMode uint8

const (
	TLSModeFull      TLSMode = iota // everything after the handshake is TLS
	TLSModeLoginOnly                // only LOGIN7 is encrypted
)

func (m TLSMode) String() string {
	if m == TLSModeLoginOnly {
		return "login-only"
	}
	return "full"
}

// ErrHandshakeInProgress is returned by Write before the handshake is done.
var ErrHandshakeInProgress = errors.New("tds: TLS handshake in progress")

// NewTLSServer returns an adapter playing the TLS server (the proxy facing
// a client). The config is cloned; session tickets are disabled because a
// TLS 1.3 ticket sent after the handshake would arrive when the PRELOGIN
// wrapping has stopped, and one TLS record per TDS packet is enforced by
// disabling dynamic record sizing (SQL Server expects that layout).
// packetSize is used to split handshake flights (DefaultPacketSize if 0).
//
// If cfg.MaxVersion is 0 it is capped at TLS 1.2: SQL Server only speaks
// TLS 1.3 in TDS 8 (strict), and FreeTDS with TLS 1.3 over the 7.x
// wrapping sends its ChangeCipherSpec wrapped but never a readable client
// Finished (observed with freetds-bin 1.3 / GnuTLS: the next record is
// already application data), so the handshake cannot complete.
func NewTLSServer(cfg *tls.Config, mode TLSMode, packetSize int) *TLSAdapter {
	c := cfg.Clone()
	if c.MaxVersion == 0 {
		c.MaxVersion = tls.VersionTLS12
	}
	c.SessionTicketsDisabled = true
	c.DynamicRecordSizingDisabled = true
	a := newTLSAdapter(mode, packetSize, false)
	a.conn = tls.Server(&adapterConn{a}, c)
	a.start()
	return a
}

// NewTLSClient returns an adapter playing the TLS client (the proxy facing
// a backend). The ClientHello is ready in TakeWire when it returns. For
// SQL Server in 7.x mode consider MaxVersion TLS 1.2 (a conservative choice: TLS 1.3
// with SQL Server goes with TDS 8).
func NewTLSClient(cfg *tls.Config, mode TLSMode, packetSize int) *TLSAdapter {
	c := cfg.Clone()
	c.DynamicRecordSizingDisabled = true
	a := newTLSAdapter(mode, packetSize, true)
	a.conn = tls.Client(&adapterConn{a}, c)
	a.start()
	return a
}

func newTLSAdapter(mode TLSMode, packetSize int, client bool) *TLSAdapter {
	if packetSize == 0 {
		packetSize = DefaultPacketSize
	}
	a := &TLSAdapter{mode: mode, packetSize: packetSize, isClient: client, wrapping: true}
	a.cond = sync.NewCond(&a.mu)
	return a
}

func (a *TLSAdapter) start() {
	go a.run()
	a.mu.Lock()
	a.waitIdle()
	a.mu.Unlock()
}

// run is the engine goroutine: handshake, then decrypt until EOF/error.
func (a *TLSAdapter) run() {
	// The engine runs inside Envoy's process: a panic in crypto/tls or here fails this one
	// connection (its owner sees the error from Feed), never the process.
	defer func() {
		if v := recover(); v != nil {
			a.mu.Lock()
			if a.err == nil {
				a.err = fmt.Errorf("tds: TLS engine panic: %v", v)
			}
			a.mu.Unlock()
			a.finish()
		}
	}()
	err := a.conn.Handshake()
	a.mu.Lock()
	a.flushPending()
	a.wrapping = false
	a.handshook = err == nil
	if err != nil {
		a.err = err
	}
	if err == nil && a.mode == TLSModeLoginOnly && !a.isClient {
		a.clearOut = true
	}
	if err == nil {
		// From now on the owner reads records itself (readInline); this goroutine ends.
		a.inline = true
	}
	a.cond.Broadcast()
	a.mu.Unlock()
	if err != nil {
		a.finish()
	}
}

// errWouldBlock is what the in-memory conn answers after the handshake when it has no input:
// a temporary error, which crypto/tls returns without breaking the connection.
var errWouldBlock net.Error = wouldBlock{}

type wouldBlock struct{}

func (wouldBlock) Error() string   { return "tds: TLS adapter has no more input" }
func (wouldBlock) Timeout() bool   { return true }
func (wouldBlock) Temporary() bool { return true }

// inlineBufs are the plaintext buffers of readInline (a TLS record holds at most 16 KiB).
var inlineBufs = sync.Pool{New: func() any { b := make([]byte, 16<<10); return &b }}

// readInline decrypts what a.in holds on the caller's thread (a.mu not held), until crypto/tls
// asks for more input.
func (a *TLSAdapter) readInline() {
	bp := inlineBufs.Get().(*[]byte)
	defer inlineBufs.Put(bp)
	for {
		n, err := a.conn.Read(*bp)
		a.mu.Lock()
		a.plain = append(a.plain, (*bp)[:n]...)
		if err != nil && !errors.Is(err, errWouldBlock) {
			if a.err == nil && !a.closed && !errors.Is(err, io.EOF) {
				a.err = err
			}
			a.done = true
		}
		a.mu.Unlock()
		if err != nil {
			return
		}
	}
}

func (a *TLSAdapter) finish() {
	a.mu.Lock()
	a.done = true
	a.cond.Broadcast()
	a.mu.Unlock()
}

// waitIdle waits (a.mu held) until the engine is blocked on input, gone, or has handed the
// reading over to the owner.
func (a *TLSAdapter) waitIdle() {
	for !a.idle && !a.done && !a.inline {
		a.cond.Wait()
	}
}

// push gives bytes to the engine and waits until it has consumed them (a.mu held). After the
// handshake it decrypts them on this thread instead; it also runs once right after the
// switch, because crypto/tls may already hold records that arrived with the handshake.
func (a *TLSAdapter) push(b []byte) {
	a.in = append(a.in, b...)
	if !a.inline {
		a.idle = false
		a.cond.Broadcast()
		a.waitIdle()
	}
	if a.inline && !a.done {
		a.mu.Unlock()
		a.readInline()
		a.mu.Lock()
	}
}

// flushPending frames the collected handshake flight (a.mu held). It runs
// when the engine starts waiting for the peer, and after Handshake returns.
func (a *TLSAdapter) flushPending() {
	if len(a.pending) > 0 {
		a.out = AppendPackets(a.out, PacketPrelogin, 0, a.pending, a.packetSize)
		a.pending = a.pending[:0]
	}
}

// Feed consumes bytes received from the peer. It returns the adapter's
// error, if any (handshake failure, malformed framing, TLS alert).
func (a *TLSAdapter) Feed(wire []byte) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.err != nil {
		return a.err
	}
	a.wireIn = append(a.wireIn, wire...)
	for len(a.wireIn) > 0 && a.err == nil && !a.done {
		if !a.handshook && !a.strict {
			// FreeTDS (TLS 1.3) stops wrapping once it has the server's
			// Finished, so its own Finished arrives as a bare record
			// (outer type 0x17). TDS has no packet types 0x14-0x17, so a
			// TLS record header is unambiguous here.
			if len(a.wireIn) >= 2 && a.wireIn[0] >= 0x14 && a.wireIn[0] <= 0x17 && a.wireIn[1] == 0x03 {
				if len(a.wireIn) < 5 {
					break
				}
				n := 5 + (int(a.wireIn[3])<<8 | int(a.wireIn[4]))
				if len(a.wireIn) < n {
					break
				}
				rec := a.wireIn[:n]
				a.wireIn = a.wireIn[n:]
				a.push(rec)
				continue
			}
			// Handshake: one PRELOGIN packet at a time, so no byte after
			// the final handshake packet is taken for handshake data.
			h, err := DecodeHeader(a.wireIn)
			if err == ErrShortBuffer {
				break
			}
			if err != nil {
				a.err = err
				break
			}
			if h.Type != PacketPrelogin && !(a.isClient && h.Type == PacketReply) {
				a.err = protoErr("TLS handshake", 0, "packet type %s during the TLS handshake", h.Type)
				break
			}
			if len(a.wireIn) < int(h.Length) {
				break
			}
			payload := a.wireIn[HeaderSize:h.Length]
			a.wireIn = a.wireIn[h.Length:]
			a.push(payload)
			continue
		}
		if a.mode == TLSModeFull {
			b := a.wireIn
			a.wireIn = nil
			a.push(b)
			continue
		}
		if a.clearIn {
			a.plain = append(a.plain, a.wireIn...)
			a.wireIn = a.wireIn[:0]
			break
		}
		// Login-only: sniff the next record.
		if a.wireIn[0] != 0x17 {
			a.clearIn = true
			continue
		}
		if len(a.wireIn) < 5 {
			break
		}
		n := 5 + (int(a.wireIn[3])<<8 | int(a.wireIn[4]))
		if len(a.wireIn) < n {
			break
		}
		rec := a.wireIn[:n]
		a.wireIn = a.wireIn[n:]
		a.push(rec)
	}
	if a.done && a.err == nil && !a.closed && !a.handshook {
		a.err = errors.New("tds: TLS engine stopped")
	}
	return a.err
}

// Write encrypts plaintext for the peer (or passes it through once the
// connection is in clear mode). It fails with ErrHandshakeInProgress
// before the handshake has finished.
func (a *TLSAdapter) Write(plain []byte) error {
	a.mu.Lock()
	if a.err != nil {
		a.mu.Unlock()
		return a.err
	}
	if !a.handshook {
		a.mu.Unlock()
		return ErrHandshakeInProgress
	}
	if a.clearOut {
		a.out = append(a.out, plain...)
		a.mu.Unlock()
		return nil
	}
	a.mu.Unlock()
	// crypto/tls calls adapterConn.Write, which only appends to a.out.
	_, err := a.conn.Write(plain)
	return err
}

// SwitchToClear ends encryption in login-only mode on the client side,
// after the (first packet of the) LOGIN7 has been written.
func (a *TLSAdapter) SwitchToClear() {
	a.mu.Lock()
	a.clearOut, a.clearIn = true, true
	a.mu.Unlock()
}

// TakeWire returns and clears the bytes to send to the peer.
func (a *TLSAdapter) TakeWire() []byte {
	a.mu.Lock()
	defer a.mu.Unlock()
	b := a.out
	a.out = nil
	return b
}

// TakePlain returns and clears the plaintext received from the peer.
func (a *TLSAdapter) TakePlain() []byte {
	a.mu.Lock()
	defer a.mu.Unlock()
	b := a.plain
	a.plain = nil
	return b
}

// HandshakeDone reports whether the TLS handshake has completed.
func (a *TLSAdapter) HandshakeDone() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.handshook
}

// Encrypting reports whether incoming bytes are still being decrypted
// (false before the handshake and after a login-only switch to clear).
func (a *TLSAdapter) Encrypting() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.handshook && !a.clearIn
}

// ConnectionState exposes the negotiated TLS parameters.
func (a *TLSAdapter) ConnectionState() tls.ConnectionState { return a.conn.ConnectionState() }

// Close stops the engine goroutine. It does not send close_notify (TDS
// peers do not expect one).
func (a *TLSAdapter) Close() {
	a.mu.Lock()
	a.closed = true
	a.cond.Broadcast()
	a.mu.Unlock()
}

// adapterConn is the in-memory net.Conn crypto/tls runs on.
type adapterConn struct{ a *TLSAdapter }

func (c *adapterConn) Read(p []byte) (int, error) {
	a := c.a
	a.mu.Lock()
	defer a.mu.Unlock()
	for len(a.in) == 0 {
		if a.closed {
			return 0, io.EOF
		}
		if a.inline {
			return 0, errWouldBlock
		}
		if a.wrapping {
			// The engine now waits for the peer: its flight is complete.
			a.flushPending()
		}
		a.idle = true
		a.cond.Broadcast()
		a.cond.Wait()
	}
	a.idle = false
	n := copy(p, a.in)
	a.in = a.in[n:]
	return n, nil
}

func (c *adapterConn) Write(p []byte) (int, error) {
	a := c.a
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.wrapping {
		a.pending = append(a.pending, p...)
	} else {
		a.out = append(a.out, p...)
	}
	return len(p), nil
}

func (c *adapterConn) Close() error                       { c.a.Close(); return nil }
func (c *adapterConn) LocalAddr() net.Addr                { return tdsAddr{} }
func (c *adapterConn) RemoteAddr() net.Addr               { return tdsAddr{} }
func (c *adapterConn) SetDeadline(t time.Time) error      { return nil }
func (c *adapterConn) SetReadDeadline(t time.Time) error  { return nil }
func (c *adapterConn) SetWriteDeadline(t time.Time) error { return nil }

type tdsAddr struct{}

func (tdsAddr) Network() string { return "tds" }
func (tdsAddr) String() string  { return "tds-tls-adapter" }
