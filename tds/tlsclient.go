package tds

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
)

// The client side of a connection to SQL Server, up to the point where LOGIN7 can be sent:
// PRELOGIN, and TLS when asked for. Sans-I/O like TLSAdapter: the owner moves bytes between
// the socket and ClientHandshake and is told when the connection is ready.
//
// The three encrypted modes, as SQL Server and its drivers do them:
//
//   - TDS 7.x login-only: PRELOGIN ENCRYPTION=OFF. The server answers OFF (both prefer no
//     encryption: TLS protects the LOGIN7 only) or REQ (ForceEncryption: the whole session is
//     encrypted). The TLS handshake travels inside PRELOGIN packets.
//   - TDS 7.x full: PRELOGIN ENCRYPTION=ON; the server answers ON or REQ; everything after
//     the handshake is TLS records. A server answering NOT_SUP is refused.
//   - TDS 8 strict: a TLS handshake on the first byte (ALPN "tds/8.0", TLS 1.2 or 1.3), then
//     PRELOGIN inside TLS, whose ENCRYPTION value means nothing any more.

// ClientEncryption is how a client leg to SQL Server is protected.
type ClientEncryption uint8

const (
	ClientPlaintext     ClientEncryption = iota // PRELOGIN NOT_SUP; a server that requires TLS is refused
	ClientTDS7LoginOnly                         // TLS for LOGIN7 only, unless the server forces full
	ClientTDS7Full                              // TLS for the whole session, inside TDS 7.x
	ClientTDS8                                  // TLS first (TDS 8 strict)
)

var clientEncryptionNames = [...]string{"plaintext", "tds7_login_only", "tds7_full", "tds8"}

func (e ClientEncryption) String() string {
	if int(e) < len(clientEncryptionNames) {
		return clientEncryptionNames[e]
	}
	return fmt.Sprintf("ClientEncryption(%d)", uint8(e))
}

// ALPNTDS8 is the ALPN protocol TDS 8 connections negotiate [MS-TDS §3.2.5.1].
const ALPNTDS8 = "tds/8.0"

// ClientTLSConfig returns the TLS configuration for a connection to SQL Server in mode e,
// verifying the server's certificate for serverName against the roots (nil roots: the
// system's). trustAny skips verification; it exists for tests and must never be the default.
// TDS 7.x is capped at TLS 1.2: SQL Server negotiates TLS 1.3 only in TDS 8.
func ClientTLSConfig(e ClientEncryption, serverName string, roots *x509.CertPool, trustAny bool) *tls.Config {
	c := &tls.Config{ServerName: serverName, RootCAs: roots, InsecureSkipVerify: trustAny, MinVersion: tls.VersionTLS12}
	if e == ClientTDS8 {
		c.NextProtos = []string{ALPNTDS8}
	} else {
		c.MaxVersion = tls.VersionTLS12
	}
	return c
}

// ClientHandshake drives PRELOGIN (and TLS) of one client connection to a server.
//
//	h := NewClientHandshake(mode, cfg, prelogin, packetSize)
//	send(h.TakeWire())
//	for !ready { ready, err = h.Feed(received); send(h.TakeWire()) }
//	h.Reply(), h.TLS(), h.Leftover()
//
// Threading: one owner at a time. Feed may wait for CPU (crypto/tls digesting bytes already
// received), never for the network, so the owner should not be an event-loop thread while
// the handshake runs.
type ClientHandshake struct {
	mode       ClientEncryption
	cfg        *tls.Config
	packetSize int
	sent       EncryptOption

	tls      *TLSAdapter
	prelogin []byte      // TDS 8: our PRELOGIN, sent once TLS is up
	in       Reassembler // PRELOGIN reply (plaintext or, in TDS 8, decrypted)
	out      []byte
	reply    *Prelogin
	result   EncryptionResult
	ready    bool
	err      error
	leftover []byte
}

// ErrServerRequiresEncryption is returned when a plaintext client meets a server whose
// PRELOGIN reply says REQ (ForceEncryption, or a TDS 8-only server).
var ErrServerRequiresEncryption = errors.New("the server requires encryption")

// ErrServerCannotEncrypt is returned when an encrypting client meets a server that answered
// NOT_SUP.
var ErrServerCannotEncrypt = errors.New("the server does not support encryption")

// NewClientHandshake starts the handshake; its first bytes (a PRELOGIN, or a TLS ClientHello
// in TDS 8) are ready in TakeWire. pre is the PRELOGIN to send; its ENCRYPTION option is set
// from mode. cfg may be nil for ClientPlaintext.
func NewClientHandshake(mode ClientEncryption, cfg *tls.Config, pre Prelogin, packetSize int) *ClientHandshake {
	if packetSize == 0 {
		packetSize = DefaultPacketSize
	}
	h := &ClientHandshake{mode: mode, cfg: cfg, packetSize: packetSize}
	h.in.MaxMessageSize = 64 << 10
	pre.HasEncryption = true
	switch mode {
	case ClientPlaintext:
		pre.Encryption = EncryptNotSup
	case ClientTDS7LoginOnly:
		pre.Encryption = EncryptOff
	case ClientTDS7Full:
		pre.Encryption = EncryptOn
	case ClientTDS8:
		// Inside TDS 8 TLS the value is not negotiated; go-mssqldb and SqlClient send STRICT.
		pre.Encryption = EncryptStrict
	}
	h.sent = pre.Encryption
	msg := AppendPackets(nil, PacketPrelogin, 0, pre.AppendPrelogin(nil), packetSize)
	if mode == ClientTDS8 {
		h.tls = newStrictTLSClient(cfg)
		h.out = h.tls.TakeWire()
		h.prelogin = msg
		return h
	}
	h.out = msg
	return h
}

// TakeWire returns and clears the bytes to send to the server.
func (h *ClientHandshake) TakeWire() []byte {
	b := h.out
	h.out = nil
	if h.tls != nil && !h.ready {
		b = append(b, h.tls.TakeWire()...)
	}
	return b
}

// Feed consumes bytes received from the server. ready is true once LOGIN7 may be sent; the
// error is final and says why the server cannot be used (TLS verification, a refused
// encryption combination, a malformed reply).
func (h *ClientHandshake) Feed(wire []byte) (ready bool, err error) {
	if h.err != nil || h.ready {
		if h.ready {
			h.leftover = append(h.leftover, wire...)
		}
		return h.ready, h.err
	}
	h.err = h.feed(wire)
	return h.ready, h.err
}

func (h *ClientHandshake) feed(wire []byte) error {
	switch {
	case h.mode == ClientTDS8:
		if err := h.tls.Feed(wire); err != nil {
			return fmt.Errorf("TDS 8 TLS handshake: %w", err)
		}
		if h.tls.HandshakeDone() && h.prelogin != nil {
			if p := h.tls.ConnectionState().NegotiatedProtocol; p != ALPNTDS8 {
				return fmt.Errorf("TDS 8 TLS handshake: the server negotiated ALPN %q, not %q", p, ALPNTDS8)
			}
			if err := h.tls.Write(h.prelogin); err != nil {
				return fmt.Errorf("TDS 8 PRELOGIN: %w", err)
			}
			h.prelogin = nil
		}
		h.out = append(h.out, h.tls.TakeWire()...)
		if h.tls.HandshakeDone() {
			return h.readReply(h.tls.TakePlain())
		}
		return nil
	case h.reply == nil:
		return h.readReply(wire)
	default:
		// TDS 7.x TLS inside PRELOGIN packets.
		if err := h.tls.Feed(wire); err != nil {
			return fmt.Errorf("TLS handshake: %w", err)
		}
		h.out = append(h.out, h.tls.TakeWire()...)
		if h.tls.HandshakeDone() {
			h.ready = true
			h.leftover = h.tls.TakePlain()
		}
		return nil
	}
}

// readReply collects the server's PRELOGIN reply and decides what follows it.
func (h *ClientHandshake) readReply(b []byte) error {
	h.in.Feed(b)
	msg, err := h.in.Next()
	if errors.Is(err, ErrShortBuffer) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("PRELOGIN reply: %w", err)
	}
	if msg.Type != PacketReply {
		return fmt.Errorf("PRELOGIN reply: unexpected %s message", msg.Type)
	}
	reply, err := DecodePrelogin(msg.Payload)
	if err != nil {
		return fmt.Errorf("PRELOGIN reply: %w", err)
	}
	// The reply's byte slices alias the reassembler's buffer; keep a private copy.
	reply = clonePrelogin(reply)
	h.reply = reply
	if rest := h.in.Buffered() - len(msg.Payload); rest > 0 {
		return fmt.Errorf("PRELOGIN reply: %d unexpected bytes after it", rest)
	}
	h.in = Reassembler{}
	if h.mode == ClientTDS8 {
		h.result = EncryptionFull
		h.ready = true
		return nil
	}
	serverSays := EncryptNotSup
	if reply.HasEncryption {
		serverSays = reply.Encryption
	}
	h.result = ClientEncryptionResult(h.sent, serverSays)
	switch h.result {
	case EncryptionNone:
		h.ready = true
		return nil
	case EncryptionRefuse:
		if h.mode == ClientPlaintext {
			return ErrServerRequiresEncryption
		}
		return ErrServerCannotEncrypt
	}
	mode := TLSModeFull
	if h.result == EncryptionLoginOnly {
		mode = TLSModeLoginOnly
	}
	h.tls = NewTLSClient(h.cfg, mode, h.packetSize)
	h.out = append(h.out, h.tls.TakeWire()...)
	return nil
}

func clonePrelogin(p *Prelogin) *Prelogin {
	c := *p
	c.TraceID = append([]byte(nil), p.TraceID...)
	c.Nonce = append([]byte(nil), p.Nonce...)
	c.Extra = nil
	for _, o := range p.Extra {
		c.Extra = append(c.Extra, PreloginOption{Token: o.Token, Data: append([]byte(nil), o.Data...)})
	}
	return &c
}

// Reply is the server's PRELOGIN reply (nil until it has arrived).
func (h *ClientHandshake) Reply() *Prelogin { return h.reply }

// Result says how the session is protected after the handshake (login-only, full or none).
func (h *ClientHandshake) Result() EncryptionResult { return h.result }

// TLS is the adapter that protects the session from now on: nil for plaintext. In
// login-only mode write the LOGIN7 through it and then call SwitchToClear.
func (h *ClientHandshake) TLS() *TLSAdapter { return h.tls }

// Leftover returns bytes the server sent after its handshake (plaintext), normally none.
func (h *ClientHandshake) Leftover() []byte {
	b := h.leftover
	h.leftover = nil
	return b
}

// Close stops the TLS engine, if one was started.
func (h *ClientHandshake) Close() {
	if h.tls != nil {
		h.tls.Close()
	}
}

// newStrictTLSClient is a TLS client with no PRELOGIN framing (TDS 8).
func newStrictTLSClient(cfg *tls.Config) *TLSAdapter {
	c := cfg.Clone()
	c.DynamicRecordSizingDisabled = true
	a := newTLSAdapter(TLSModeFull, 0, true)
	a.strict, a.wrapping = true, false
	a.conn = tls.Client(&adapterConn{a}, c)
	a.start()
	return a
}
