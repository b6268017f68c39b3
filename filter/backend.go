package filter

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/tdspool/tdspool/envoy/host"
	"github.com/tdspool/tdspool/filter/backend"
	"github.com/tdspool/tdspool/proto/tdspoolpb"
	"github.com/tdspool/tdspool/tds"
)

// backendLeg is a session's connection to its backend, one of two kinds chosen per bucket
// (backend_leg): tcp_proxy's upstream, or a connection the module owns. The session's state
// machine — routing, slot, PRELOGIN/LOGIN7 sequencing, pin tracking, stats, timeouts, errors
// and the slot released on every path — is the same for both; a leg only moves bytes and
// reports the backend's PRELOGIN answer, its data and its end.
type backendLeg interface {
	// open starts the connection once the slot is granted. False: the session has refused
	// the client already.
	open() bool
	// sendLogin sends the client's LOGIN7 (framed) after the backend's PRELOGIN answer.
	sendLogin(login7 []byte)
	// relayStarted runs once the login succeeded: client bytes may flow from now on.
	relayStarted()
	// fromClient handles size bytes of client data in Envoy's read buffer during the relay.
	fromClient(size int) host.Status
	// clientWatermark: the client's write buffer crossed its high (true) or low watermark.
	clientWatermark(above bool)
	// clientEnded: the client closed its side (Envoy half-close: tcp_proxy enables it, so a
	// client's FIN arrives as end of stream and the connection stays open until closed).
	clientEnded()
	// close ends the leg; the session is finishing.
	close()
}

// newLeg picks the bucket's leg.
func (s *session) newLeg() backendLeg {
	if s.bucket.target != nil {
		return &moduleLeg{s: s}
	}
	return proxyLeg{s}
}

// backendPrelogin is the PRELOGIN tdspool sends to a backend (its ENCRYPTION option is set
// by the leg's encryption).
func (f *Factory) backendPrelogin() tds.Prelogin {
	return tds.Prelogin{HasVersion: true, Version: f.version, HasEncryption: true, Encryption: tds.EncryptNotSup,
		HasInstance: true, HasThreadID: true, HasMARS: true}
}

// proxyLeg is Envoy's tcp_proxy upstream to the bucket's cluster. Bytes are inspected in
// Envoy's buffers in place and flow on when the filter returns Continue; tcp_proxy does the
// flow control and closes the upstream with the client.
type proxyLeg struct{ s *session }

func (p proxyLeg) open() bool {
	s, b := p.s, p.s.bucket
	if ms := s.f.idleTimeout.Milliseconds(); ms > 0 {
		s.conn.SetFilterStateTyped(idleTimeoutFilterStateKey, fmt.Sprint(ms))
	}
	if !s.conn.SetFilterStateTyped(ClusterFilterStateKey, b.cfg.Cluster) {
		s.conn.IncCounter(s.f.stats.routeFailed, 1)
		s.refuse(backendUnavailable(b.cfg.Name, "Envoy refused cluster "+b.cfg.Cluster))
		return false
	}
	// Our PRELOGIN goes first on the new upstream connection; tcp_proxy buffers it until the
	// connection is up (max_early_data_bytes). With TDS8 the cluster's transport socket has
	// done TLS first and the ENCRYPTION value is not negotiated.
	pre := s.f.backendPrelogin()
	if b.cfg.BackendEncryption == tdspoolpb.BackendEncryption_TDS8 {
		pre.Encryption = tds.EncryptStrict
	}
	s.conn.AppendRead(tds.AppendPackets(nil, tds.PacketPrelogin, 0, pre.AppendPrelogin(nil), s.pktSize))
	s.conn.ContinueReading()
	return true
}

func (p proxyLeg) sendLogin(login7 []byte) { p.s.conn.InjectToUpstream(login7, false) }

func (p proxyLeg) relayStarted() {
	if p.s.conn.ReadBufferLen() > 0 {
		p.s.conn.ContinueReading()
	}
}

func (p proxyLeg) fromClient(size int) host.Status {
	s := p.s
	if s.fullTLS() {
		if !s.decryptReadBuffer(size) {
			return host.StopIteration
		}
		size = s.conn.ReadBufferLen()
	}
	s.relayClientBytes(s.conn.ReadBuffer(), size)
	return host.Continue
}

func (p proxyLeg) clientWatermark(bool) {}
func (p proxyLeg) clientEnded()         {} // tcp_proxy passes the FIN on and closes after the backend
func (p proxyLeg) close()               {}

// backendConn is what a session needs of a module-owned connection (backend.Conn; tests
// substitute a fake).
type backendConn interface {
	// SetHandler hands the connection to another session, or to the pool (nil).
	SetHandler(h backend.Handler)
	// Alive: no failure, and no bytes arrived while the connection had no handler.
	Alive() bool
	WriteLogin(b []byte) (backlog int, err error)
	Write(b []byte) (backlog int, err error)
	Consumed(n int)
	PauseReads(pause bool)
	Close()
	// AfterClose runs fn once the connection is really gone (after Close).
	AfterClose(fn func())
}

// dialBackend opens a module-owned connection; a variable so tests can substitute it.
type dialBackend func(backend.Target, backend.Handler) backendConn

func dialReal(t backend.Target, h backend.Handler) backendConn { return backend.Dial(t, h) }

// maxBackendBacklog is how many client bytes may wait for a slow backend before the session
// stops reading from its client.
const maxBackendBacklog = 256 << 10

// moduleLeg is a connection the module dialed itself. tcp_proxy is never continued for such a
// session (it stays the chain's idle terminal filter). The connection's events arrive on its
// goroutines and are posted to the worker; client bytes are written to it from the worker
// without blocking.
//
// Flow control: a client whose write buffer is above Envoy's high watermark pauses reading
// from the backend; a backend that does not take bytes fast enough (backlog above
// maxBackendBacklog) read-disables the client until its queue has drained.
//
// The connection is the seam for pooling: close is where a pool would take it back instead,
// and backend.Conn.SetHandler hands it to its next session.
type moduleLeg struct {
	s            *session
	c            backendConn
	readDisabled bool
	lastActive   time.Time
}

func (m *moduleLeg) open() bool {
	m.c = m.s.f.dial(*m.s.bucket.target, m)
	return true
}

func (m *moduleLeg) sendLogin(login7 []byte) {
	if _, err := m.c.WriteLogin(login7); err != nil {
		s := m.s
		s.conn.IncCounter(s.bucket.stats.backendUnavailable, 1)
		s.refuse(backendUnavailable(s.bucket.cfg.Name, "sending LOGIN7: "+err.Error()))
	}
}

func (m *moduleLeg) relayStarted() {
	s := m.s
	m.lastActive = s.f.now()
	if s.f.idleTimeout > 0 {
		s.armTimer(s.f.idleTimeout, m.onIdleCheck)
	}
	if n := s.conn.ReadBufferLen(); n > 0 {
		m.fromClient(n)
	}
}

// onIdleCheck closes a session with no traffic either way for idle_timeout (what tcp_proxy's
// per-connection idle timeout does on the other leg).
func (m *moduleLeg) onIdleCheck() {
	s := m.s
	if s.ph != phRelay {
		return
	}
	idle := s.f.now().Sub(m.lastActive)
	if idle < s.f.idleTimeout {
		s.armTimer(s.f.idleTimeout-idle, m.onIdleCheck)
		return
	}
	s.conn.Log(host.LogInfo, fmt.Sprintf("closing: idle for %s", idle.Round(time.Millisecond)))
	s.finishWith(host.FlushWrite, "tdspool_idle_timeout")
}

func (m *moduleLeg) fromClient(size int) host.Status {
	s := m.s
	if s.f.idleTimeout > 0 {
		m.lastActive = s.f.now()
	}
	var backlog int
	var err error
	if s.fullTLS() {
		plain := s.decryptClient(s.takeRead(size))
		if s.finished || len(plain) == 0 || !s.markReset(plain) {
			return host.StopIteration
		}
		s.relayClientBytes([][]byte{plain}, len(plain))
		s.keepSent(plain)
		backlog, err = m.c.Write(plain)
	} else {
		// Written straight from Envoy's buffer: the connection copies only what the kernel
		// does not take at once.
		chunks := s.conn.ReadBuffer()
		for _, ch := range chunks {
			if !s.markReset(ch) {
				return host.StopIteration
			}
		}
		s.relayClientBytes(chunks, size)
		for _, ch := range chunks {
			s.keepSent(ch)
			if backlog, err = m.c.Write(ch); err != nil {
				break
			}
		}
		s.conn.DrainRead(size)
	}
	if err != nil {
		s.conn.Log(host.LogInfo, fmt.Sprintf("bucket %s: %v", s.bucket.cfg.Name, err))
		s.finishWith(host.FlushWrite, "tdspool_backend_write_failed")
		return host.StopIteration
	}
	if backlog > maxBackendBacklog && !m.readDisabled {
		m.readDisabled = true
		s.conn.ReadDisable(true)
	}
	return host.StopIteration
}

func (m *moduleLeg) clientWatermark(above bool) {
	if m.c != nil {
		m.c.PauseReads(above)
	}
}

// clientEnded: the client is gone; so is its backend session (SQL Server ends a session
// whose client closed).
func (m *moduleLeg) clientEnded() {
	m.s.finishWith(host.FlushWrite, "tdspool_client_closed")
}

func (m *moduleLeg) close() {
	if m.s.returnBackend() {
		return // the pool has it
	}
	if m.c != nil {
		m.c.Close()
	}
}

// Handler methods: called on the connection's goroutines, posted to the worker. A post that
// fails means the client connection is gone; the session's finish has closed the leg.

func (m *moduleLeg) Ready(reply *tds.Prelogin, _ tds.EncryptionResult) {
	m.s.conn.Post(func() {
		if m.s.leg == m && m.s.ph == phBackendPrelogin {
			m.s.startBackendLogin()
		}
	})
}

func (m *moduleLeg) Data(b []byte) {
	m.s.conn.Post(func() { m.onData(b) })
}

func (m *moduleLeg) Drained() {
	m.s.conn.Post(func() {
		if m.readDisabled && !m.s.finished {
			m.readDisabled = false
			m.s.conn.ReadDisable(false)
		}
	})
}

func (m *moduleLeg) Closed(err error) {
	m.s.conn.Post(func() { m.onClosed(err) })
}

// onData passes backend bytes to the client (encrypted when the client's session is), then
// follows them: the login response, then the relay's response stream.
func (m *moduleLeg) onData(b []byte) {
	s := m.s
	defer m.c.Consumed(len(b))
	if s.leg != m || s.finished {
		return
	}
	if s.f.idleTimeout > 0 {
		m.lastActive = s.f.now()
	}
	switch s.ph {
	case phBackendLogin:
		s.toClient(b)
		s.onBackendLoginBytes([][]byte{b}, len(b))
	case phRelay:
		b, ok := s.consumeResetAck(b)
		if !ok || len(b) == 0 {
			return
		}
		s.toClient(b)
		s.relayServerBytes([][]byte{b}, len(b))
	}
}

// onClosed: before the login the client gets "backend unavailable" with the reason; after
// it, the client connection closes as it would if SQL Server itself went away.
func (m *moduleLeg) onClosed(err error) {
	s := m.s
	if s.leg != m || s.finished {
		return
	}
	b := s.bucket
	switch s.ph {
	case phBackendPrelogin:
		s.conn.IncCounter(b.stats.backendUnavailable, 1)
		s.conn.Log(host.LogWarn, fmt.Sprintf("bucket %s: backend connection: %v", b.cfg.Name, err))
		s.refuse(backendUnavailable(b.cfg.Name, backendFailureReason(err)))
	default:
		if s.backendGoneBeforeReset() || s.backendGoneDuringLogin() {
			return
		}
		s.conn.Log(host.LogInfo, fmt.Sprintf("bucket %s: backend closed the session (%s): %v", b.cfg.Name, s.ph, err))
		s.finishWith(host.FlushWrite, "tdspool_backend_closed")
	}
}

// backendFailureReason is the client-facing reason (no addresses beyond the configured ones,
// no secrets).
func backendFailureReason(err error) string {
	var verr *tls.CertificateVerificationError
	switch {
	case errors.As(err, &verr):
		return "its TLS certificate was refused: " + verr.Err.Error()
	case errors.Is(err, tds.ErrServerRequiresEncryption):
		return "the server requires encryption and backend_encryption is PLAINTEXT"
	case errors.Is(err, tds.ErrServerCannotEncrypt):
		return "the server does not support encryption and backend_encryption requires it"
	case errors.Is(err, io.EOF):
		return "the server closed the connection"
	}
	var nerr net.Error
	if errors.As(err, &nerr) && nerr.Timeout() {
		return "connect timed out"
	}
	return err.Error()
}

// buildTarget turns a MODULE bucket's config into a dial target.
func buildTarget(b *tdspoolpb.Bucket, pre tds.Prelogin, packetSize int) (*backend.Target, error) {
	enc := map[tdspoolpb.BackendEncryption]tds.ClientEncryption{
		tdspoolpb.BackendEncryption_PLAINTEXT:       tds.ClientPlaintext,
		tdspoolpb.BackendEncryption_TDS7_LOGIN_ONLY: tds.ClientTDS7LoginOnly,
		tdspoolpb.BackendEncryption_TDS7_FULL:       tds.ClientTDS7Full,
		tdspoolpb.BackendEncryption_TDS8:            tds.ClientTDS8,
	}[b.BackendEncryption]
	t := &backend.Target{
		Addresses:      b.BackendAddresses,
		ConnectTimeout: b.ConnectTimeout.AsDuration(),
		KeepAlive:      b.TcpKeepalive.AsDuration(),
		Encryption:     enc,
		Prelogin:       pre,
		PacketSize:     packetSize,
	}
	if enc == tds.ClientPlaintext {
		return t, nil
	}
	bt := b.BackendTls
	if bt == nil {
		bt = &tdspoolpb.BackendTLS{}
	}
	name := bt.ServerName
	if name == "" && len(b.BackendAddresses) > 0 {
		name, _, _ = net.SplitHostPort(b.BackendAddresses[0])
	}
	cfg := tds.ClientTLSConfig(enc, name, nil, bt.TrustAnyCertificate)
	if bt.CaFile != "" {
		roots, err := tdspoolpb.LoadCAFile(bt.CaFile)
		if err != nil {
			return nil, fmt.Errorf("bucket %s: backend_tls.ca_file: %w", b.Name, err)
		}
		cfg.RootCAs = roots
	}
	t.TLS = cfg
	return t, nil
}

// releaseSlot gives a slot back once the backend connection it counts is gone. tcp_proxy has
// closed its upstream by the time Envoy destroys the filter; a module-owned connection may
// still be waiting for the server to end the session (Close half-closes, like tcp_proxy
// passing the client's FIN on), and the slot stays with it until then.
func (s *session) releaseSlot(release func()) {
	if m, ok := s.leg.(*moduleLeg); ok && m.c != nil {
		// Destroyed without a close event: the connection was not closed yet (the slot is the
		// session's, so the backend is not the pool's either).
		m.c.Close()
		m.c.AfterClose(release)
		return
	}
	release()
}
