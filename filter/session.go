package filter

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tdspool/tdspool/coordinator"

	"github.com/tdspool/tdspool/envoy/host"
	"github.com/tdspool/tdspool/filter/pool"
	"github.com/tdspool/tdspool/proto/tdspoolpb"
	"github.com/tdspool/tdspool/tds"
)

// phase is where a session is in its life (docs/ARCHITECTURE.md, "A session, phase by phase").
type phase uint8

const (
	phPrelogin        phase = iota // waiting for the client's PRELOGIN; the filter answers it
	phClientTLS                    // TDS 7.x TLS handshake with the client, inside PRELOGIN packets
	phLogin                        // waiting for LOGIN7
	phWaitSlot                     // LOGIN7 read and routed; waiting for a bucket slot
	phBackendPrelogin              // tcp_proxy connecting; our PRELOGIN sent to the backend
	phBackendLogin                 // LOGIN7 forwarded; the backend's login response flows to the client
	phRelay                        // logged in: bytes flow both ways under inspection
	phClosed                       // refused, failed or closed; nothing more flows
)

var phaseNames = [...]string{"prelogin", "client_tls", "login", "wait_slot", "backend_prelogin", "backend_login", "relay", "closed"}

func (p phase) String() string { return phaseNames[p] }

// session is one client connection, driven by Envoy's callbacks on one worker thread.
//
// Lifecycle (each step's trigger in brackets):
//  1. [OnNewConnection] StopIteration: tcp_proxy must not connect before we know the bucket.
//  2. [OnRead] collect PRELOGIN, answer it ourselves (encryption per listener policy).
//  3. [OnRead] collect LOGIN7, route it to a bucket, check the bucket's allow-lists.
//  4. Ask for a slot; the answer arrives on a coordinator goroutine and is posted back to
//     the worker. Refusal → ERROR + close.
//  5. [slot granted] name the bucket's cluster in the envoy.tcp_proxy.cluster filter state,
//     put our own PRELOGIN in the read buffer and continue: tcp_proxy connects and sends it.
//  6. [OnWrite] swallow the backend's PRELOGIN reply, inject the client's LOGIN7 upstream.
//  7. [OnWrite] let the login response through to the client, watching for LOGINACK.
//  8. [OnRead/OnWrite] relay, counting requests and reading the response token stream for
//     transaction state and errors.
//  9. [OnEvent close] release the slot (idempotent), settle the gauges.
//
// Every client-visible refusal is a TDS ERROR + DONE message followed by a close.
type session struct {
	f    *Factory
	conn host.Conn
	ph   phase

	clientIn tds.Reassembler // client bytes before relay (PRELOGIN, LOGIN7)
	tls      *clientTLS      // nil without client TLS
	login7   []byte          // the client's LOGIN7 message, as framed by the client
	bucket   *bucketState
	pktSize  int // packet size for messages we frame to the client

	gotFirstByte bool

	cancelAcquire func() bool
	grantInFlight *grantInFlight // a slot granted to the session whose post has not run yet
	release       func()
	// releaseAtDestroy: the session is finished and its slot, counted as released, goes back
	// when Envoy destroys the filter (after tcp_proxy has closed the backend connection).
	releaseAtDestroy bool
	setPins          func(string) // tells the fleet view the session's pin reasons; nil without Redis
	acquiredAt       time.Time
	loginStarted     time.Time
	timer            *time.Timer
	timerSeq         uint64

	leg       backendLeg      // the way to the backend, once the slot is granted
	backendIn tds.Reassembler // backend PRELOGIN reply (tcp_proxy leg)
	loginResp tds.ResponseScanner
	// loginReplyStarted: some of the backend's login reply has gone to the client.
	loginReplyStarted bool
	loginAck          bool
	// loginFailed: the backend's login response ended without LOGINACK; the close is posted.
	loginFailed bool

	relay relayState
	pool  poolState // session pooling (SESSION-mode buckets)
	// txFirstLogin: this session logs its key in for real (TRANSACTION-mode buckets); other
	// logins of the key wait for its recorded reply (see waitForKeysFirstLogin).
	txFirstLogin bool

	// draining: the config is draining (drain.go); txInDrain: a transaction was open during it.
	draining, txInDrain bool
	drainTimer          *time.Timer

	finished bool
}

func (s *session) OnNewConnection() host.Status {
	s.conn.IncCounter(s.f.stats.connectionsTotal, 1)
	s.conn.IncGauge(s.f.stats.connectionsActive, 1)
	s.f.coordStats.flush(s.conn)
	s.pktSize = tds.DefaultPacketSize // what clients use before LOGIN7 negotiates
	s.clientIn.MaxMessageSize = tds.MaxLogin7Size
	now := s.f.now()
	s.loginStarted = s.acceptedAt(now)
	// A client that connects and says nothing is dropped after first_byte_timeout.
	s.armTimer(max(min(s.f.firstByteTimeout, s.f.loginTimeout)-now.Sub(s.loginStarted), time.Millisecond), s.onLoginTimeout)
	return host.StopIteration
}

// AcceptedAtFilterStateKey holds when Envoy accepted the connection, in seconds since the
// epoch ("1764495000.123456"); a set_filter_state filter ahead of tdspool sets it (the shipped
// Envoy configs have one). A listener filter such as tls_inspector can hold a connection for
// seconds before any network filter runs, and the first-byte and login bounds count from the
// accept, on every filter chain.
const AcceptedAtFilterStateKey = "tdspool.accepted_at"

// acceptedAt is the connection's accept time, or now without a usable one (a value in the
// future or hours old means a clock step or a foreign value, and must not stretch a bound).
func (s *session) acceptedAt(now time.Time) time.Time {
	v, ok := s.conn.FilterStateTyped(AcceptedAtFilterStateKey)
	if !ok {
		return now
	}
	secs, frac, _ := strings.Cut(v, ".")
	sec, err1 := strconv.ParseInt(secs, 10, 64)
	usec, err2 := strconv.ParseInt((frac + "000000")[:6], 10, 64)
	if err1 != nil || err2 != nil {
		return now
	}
	t := time.Unix(sec, usec*1000)
	if t.After(now) || now.Sub(t) > time.Hour {
		return now
	}
	return t
}

func (s *session) OnRead(size int, endStream bool) host.Status {
	if endStream && s.ph < phRelay {
		// The client hung up before its session started. tcp_proxy turns on half-close, so
		// Envoy reports the FIN here instead of closing; without this the connection (and a
		// queue place) would be held until a timer ran out, for nobody.
		s.conn.DrainRead(size)
		s.finishWith(host.NoFlush, "tdspool_client_gone")
		return host.StopIteration
	}
	switch s.ph {
	case phPrelogin, phLogin:
		if s.ph == phPrelogin && s.clientIn.Buffered() == 0 && !s.firstByteOK() {
			return host.StopIteration
		}
		s.conn.IncCounter(s.f.stats.rxBytesLogin, uint64(size))
		if s.ph == phPrelogin && !s.gotFirstByte {
			// From now on the whole login is bounded by login_timeout.
			s.gotFirstByte = true
			s.armTimer(max(s.f.loginTimeout-s.f.now().Sub(s.loginStarted), time.Millisecond), s.onLoginTimeout)
		}
		if s.tls != nil {
			s.decryptClient(s.takeRead(size))
			return host.StopIteration
		}
		for _, chunk := range s.conn.ReadBuffer() {
			s.clientIn.Feed(chunk)
		}
		s.conn.DrainRead(size)
		s.advanceHandshake()
		return host.StopIteration
	case phClientTLS:
		s.conn.IncCounter(s.f.stats.rxBytesLogin, uint64(size))
		s.feedHandshake(s.takeRead(size))
		return host.StopIteration
	case phRelay:
		st := s.leg.fromClient(size)
		if endStream && !s.finished {
			s.leg.clientEnded()
		}
		return st
	case phClosed:
		s.conn.DrainRead(size)
		return host.StopIteration
	default:
		// A well-behaved client sends nothing between LOGIN7 and the login response; keep
		// what arrives in Envoy's buffer until the relay starts.
		return host.StopIteration
	}
}

// takeRead copies and drains Envoy's read buffer (for bytes the TLS engine consumes).
func (s *session) takeRead(size int) []byte {
	b := make([]byte, 0, size)
	for _, chunk := range s.conn.ReadBuffer() {
		b = append(b, chunk...)
	}
	s.conn.DrainRead(size)
	return b
}

// firstByteOK rejects at once a client that does not start with a PRELOGIN packet (HTTP, a
// TLS ClientHello on a TDS 7 chain, garbage) instead of waiting for a packet length that
// will never arrive.
func (s *session) firstByteOK() bool {
	for _, chunk := range s.conn.ReadBuffer() {
		if len(chunk) == 0 {
			continue
		}
		if tds.PacketType(chunk[0]) != tds.PacketPrelogin {
			s.protocolFailure(fmt.Sprintf("first byte 0x%02x is not a TDS PRELOGIN", chunk[0]))
			return false
		}
		return true
	}
	return true
}

// advanceHandshake consumes whole client messages while in PRELOGIN/LOGIN7.
func (s *session) advanceHandshake() {
	for s.ph == phPrelogin || s.ph == phLogin {
		msg, err := s.clientIn.Next()
		if errors.Is(err, tds.ErrShortBuffer) {
			return
		}
		if err != nil {
			s.protocolFailure(fmt.Sprintf("reading %s: %v", s.ph, err))
			return
		}
		switch {
		case s.ph == phPrelogin && msg.Type == tds.PacketPrelogin:
			s.onClientPrelogin(msg.Payload)
		case s.ph == phLogin && msg.Type == tds.PacketLogin7:
			s.onClientLogin7(msg)
		default:
			s.protocolFailure(fmt.Sprintf("unexpected %s message during %s", msg.Type, s.ph))
		}
	}
}

func (s *session) onClientPrelogin(payload []byte) {
	pre, err := tds.DecodePrelogin(payload)
	if err != nil {
		s.protocolFailure(fmt.Sprintf("PRELOGIN: %v", err))
		return
	}
	if s.conn.IsTLS() {
		// TDS 8 strict: Envoy terminated TLS before the first byte; the PRELOGIN ENCRYPTION
		// value means nothing here and no second TLS layer may start.
		s.conn.IncCounter(s.f.stats.tlsStrict, 1)
		s.conn.WriteToClient(s.f.preloginReply(tds.EncryptNotSup, s.pktSize), false)
		s.ph = phLogin
		return
	}
	client := tds.EncryptOff
	if pre.HasEncryption {
		client = pre.Encryption
	}
	reply, result := tds.NegotiateEncryption(client, s.f.announce)
	s.conn.WriteToClient(s.f.preloginReply(reply, s.pktSize), false)
	switch result {
	case tds.EncryptionNone:
		if s.f.cfg.Listener.Encryption != tdspoolpb.EncryptionPolicy_OFF_ALLOWED {
			s.conn.IncCounter(s.f.stats.refusedPolicy, 1)
			s.refuse(policyRefused("this listener requires an encrypted login; connect with encryption enabled"))
			return
		}
		s.conn.IncCounter(s.f.stats.tlsNone, 1)
		s.ph = phLogin
	case tds.EncryptionRefuse:
		// The client cannot satisfy the listener's encryption policy (or asks for TLS we
		// cannot offer); it aborts on its own after this reply, so only count and close.
		s.conn.IncCounter(s.f.stats.refusedPolicy, 1)
		s.finishWith(host.FlushWrite, "tdspool_encryption_refused")
	case tds.EncryptionLoginOnly:
		s.startClientTLS(tds.TLSModeLoginOnly)
		s.ph = phClientTLS
	case tds.EncryptionFull:
		s.startClientTLS(tds.TLSModeFull)
		s.ph = phClientTLS
	}
}

func (s *session) onClientLogin7(msg tds.Message) {
	login, err := tds.DecodeLogin7(msg.Payload)
	if err != nil {
		s.protocolFailure(fmt.Sprintf("LOGIN7: %v", err))
		return
	}
	payload, rewrite := msg.Payload, false
	if login.TDSVersion == tds.TDSVersion80 {
		// A TDS 8 client (its TLS ended in Envoy) talks to a backend over TDS 7.4 framing:
		// announce 7.4 to the backend. The client accepts the 7.4 LOGINACK.
		login.TDSVersion, rewrite = tds.TDSVersion74, true
	}
	if max := s.f.cfg.Listener.MaxPacketSize; login.PacketSize > max {
		// The backend then answers with ENVCHANGE packet size = max, which the client obeys:
		// both legs keep one packet size and no message needs re-framing.
		login.PacketSize, rewrite = max, true
	}
	facts := loginFacts{ServerName: serverNameOf(login.ServerName), Database: login.Database, User: login.UserName}
	if sni := s.conn.RequestedServerName(); sni != "" {
		facts.ServerName = sni
	}
	name := s.f.router.route(facts)
	b := s.f.buckets[name]
	if b == nil {
		s.conn.IncCounter(s.f.stats.noRoute, 1)
		s.refuse(noRoute(facts))
		return
	}
	s.bucket = b
	if reason := s.backendDown(); reason != "" {
		// Do not queue for an instance that cannot take the session anyway.
		s.conn.IncCounter(b.stats.backendUnavailable, 1)
		s.refuse(backendUnavailable(b.cfg.Name, reason))
		return
	}
	if !allowed(b.cfg.AllowedUsers, login.UserName) || (login.Database != "" && !allowed(b.cfg.AllowedDatabases, login.Database)) {
		s.conn.IncCounter(s.f.stats.refusedPolicy, 1)
		s.refuse(policyRefused(fmt.Sprintf("user '%s' / database '%s' is not allowed on bucket '%s'",
			login.UserName, login.Database, b.cfg.Name)))
		return
	}
	if s.prepareLogin(login) {
		rewrite = true
	}
	// The LOGIN7 the backend gets, framed; a login answered from the pool needs none.
	frame := func() {
		if rewrite {
			payload = login.AppendLogin7(nil)
		}
		// Same packet size on both legs: the backend's answers are already framed for the client.
		s.login7 = tds.AppendPackets(nil, tds.PacketLogin7, 0, payload, s.pktSize)
	}
	if b.tx != nil {
		frame()
	}
	if s.servedFromRecordedReply(login) || s.servedFromPool(login) {
		return
	}
	if s.login7 == nil {
		frame()
	}
	if s.waitForKeysFirstLogin() || s.waitForReturn() {
		return
	}
	s.queueForSlot(login)
}

// queueForSlot asks the coordinator for a slot of the session's bucket.
func (s *session) queueForSlot(login *tds.Login7) {
	b := s.bucket
	s.ph = phWaitSlot
	s.conn.IncGauge(b.stats.sessionsQueued, 1)
	s.acquiredAt = s.f.now()
	deadline := s.acquiredAt.Add(b.cfg.QueueTimeout.AsDuration())
	conn := s.conn
	s.pool.slotKill = &slotKill{session: func() bool { return conn.Post(s.onKill) }}
	req := SlotRequest{Bucket: b.cfg.Name, Deadline: deadline, Holder: s.loginHolder(login), OnKill: s.pool.slotKill.kill}
	inFlight := &grantInFlight{}
	s.grantInFlight = inFlight
	s.cancelAcquire = s.f.slots.Acquire(req, func(r SlotResult) {
		// Coordinator goroutine: hop onto the worker. If the connection is gone, the
		// slot must not leak: neither when the post is refused, nor when Envoy drops it
		// unrun at the connection's destroy (OnDestroy releases it then).
		if r.Granted() {
			inFlight.put(r.Release)
		}
		if !conn.Post(func() { inFlight.take(); s.onSlot(r) }) && r.Granted() {
			r.Release()
		}
	})
	s.armEviction()
	s.armTxLoginCheck()
}

// onSlot runs on the worker with the coordinator's answer.
func (s *session) onSlot(r SlotResult) {
	b := s.bucket
	if s.ph != phWaitSlot {
		// The client left (or timed out) while the answer was in flight.
		if r.Granted() {
			r.Release()
		}
		return
	}
	s.cancelAcquire = nil
	s.conn.DecGauge(b.stats.sessionsQueued, 1)
	s.conn.RecordHistogram(b.stats.queueWaitMs, uint64(s.f.now().Sub(s.acquiredAt).Milliseconds()))
	s.f.coordStats.flush(s.conn)
	if !r.Granted() {
		waited := s.f.now().Sub(s.acquiredAt)
		cap := b.cfg.MaxConnections
		if r.Cap > 0 {
			cap = uint32(r.Cap) // the cap Redis enforces, which an operator may have changed
		}
		switch r.Outcome {
		case coordinator.TimedOut:
			s.conn.IncCounter(b.stats.slotTimedOut, 1)
			if r.State == coordinator.Paused {
				s.refuse(bucketPaused(b.cfg.Name, stateBy(r), waited))
				return
			}
		case coordinator.QueueFull:
			s.conn.IncCounter(b.stats.slotQueueFull, 1)
		case coordinator.Draining:
			s.conn.IncCounter(b.stats.slotRefused, 1)
			s.refuse(bucketDraining(b.cfg.Name, stateBy(r)))
			return
		case coordinator.Disabled:
			s.conn.IncCounter(b.stats.slotRefused, 1)
			s.refuse(bucketDisabled(b.cfg.Name, stateBy(r)))
			return
		default:
			s.conn.IncCounter(b.stats.slotRefused, 1)
		}
		s.refuse(poolExhausted(b.cfg.Name, waited, cap, r.Outcome == coordinator.QueueFull))
		return
	}
	s.conn.IncCounter(b.stats.slotGranted, 1)
	if r.Fallback {
		s.conn.IncCounter(b.stats.slotFallback, 1)
	}
	s.release = r.Release
	s.setPins = r.SetPins
	s.pool.slotKill.record().granted(r, loginOnly(s.pool.login))
	if reason := s.backendDown(); reason != "" {
		s.conn.IncCounter(b.stats.backendUnavailable, 1)
		s.refuse(backendUnavailable(b.cfg.Name, reason))
		return
	}
	if s.servedFromPoolAfterGrant() {
		return
	}
	s.ph = phBackendPrelogin
	s.armTimer(s.f.backendTimeout, s.onBackendTimeout)
	s.leg = s.newLeg()
	s.leg.open()
}

func (s *session) OnWrite(size int, endStream bool) host.Status {
	switch s.ph {
	case phBackendPrelogin:
		for _, chunk := range s.conn.WriteBuffer() {
			s.backendIn.Feed(chunk)
		}
		s.conn.DrainWrite(size)
		s.onBackendPreloginBytes()
		if endStream {
			// The backend closed (with or after its PRELOGIN answer, which may have sent our
			// LOGIN7 already): nothing more will come, and the end of stream is not passed on.
			s.backendGoneDuringLogin()
		}
		return host.StopIteration
	case phBackendLogin:
		if endStream && size == 0 && s.backendGoneDuringLogin() {
			return host.StopIteration
		}
		s.onBackendLoginBytes(s.conn.WriteBuffer(), size)
		if s.fullTLS() {
			s.encryptWriteBuffer(size)
		}
		return host.Continue
	case phRelay:
		s.relayServerBytes(s.conn.WriteBuffer(), size)
		if s.fullTLS() {
			s.encryptWriteBuffer(size)
		}
		return host.Continue
	case phClosed:
		s.conn.DrainWrite(size)
		return host.StopIteration
	}
	return host.Continue
}

func (s *session) onBackendPreloginBytes() {
	msg, err := s.backendIn.Next()
	if errors.Is(err, tds.ErrShortBuffer) {
		return
	}
	if err == nil && msg.Type != tds.PacketReply {
		err = fmt.Errorf("unexpected %s message", msg.Type)
	}
	var pre *tds.Prelogin
	if err == nil {
		pre, err = tds.DecodePrelogin(msg.Payload)
	}
	if err != nil {
		s.refuse(backendUnavailable(s.bucket.cfg.Name, "bad PRELOGIN reply from the backend"))
		s.conn.Log(host.LogWarn, fmt.Sprintf("bucket %s: backend PRELOGIN reply: %v", s.bucket.cfg.Name, err))
		return
	}
	plaintext := s.bucket.cfg.BackendEncryption != tdspoolpb.BackendEncryption_TDS8
	if plaintext && pre.HasEncryption && pre.Encryption.Base() == tds.EncryptReq {
		s.refuse(backendUnavailable(s.bucket.cfg.Name, "the backend requires TLS and backend_encryption is PLAINTEXT"))
		return
	}
	s.startBackendLogin()
}

// startBackendLogin sends the client's LOGIN7 once the backend answered PRELOGIN (and, on the
// module leg, TLS is up).
func (s *session) startBackendLogin() {
	s.armTimer(max(s.f.loginTimeout-s.f.now().Sub(s.loginStarted), time.Millisecond), s.onLoginTimeout)
	s.ph = phBackendLogin
	s.loginResp.MaxPacketSize = tds.MaxPacketSize
	login7 := s.login7
	s.login7 = nil
	s.leg.sendLogin(login7)
}

// onBackendLoginBytes watches the login response as it passes to the client.
func (s *session) onBackendLoginBytes(chunks [][]byte, size int) {
	s.conn.IncCounter(s.bucket.stats.txBytes, uint64(size))
	s.loginReplyStarted = s.loginReplyStarted || size > 0
	if s.loginFailed {
		return // the refusal is complete; the session is closing
	}
	s.recordLoginBytes(chunks)
	for _, chunk := range chunks {
		events, err := s.loginResp.Feed(chunk)
		for _, ev := range events {
			switch ev.Token {
			case tds.TokenLoginAck:
				s.loginAck = true
			case tds.TokenEnvChange:
				if n, ok := ev.EnvChange.PacketSize(); ok && ev.EnvChange.Type == tds.EnvPacketSize {
					s.pktSize = n
				}
			case tds.TokenEndOfMessage:
				s.onLoginResponseDone()
				return
			}
		}
		if err != nil {
			// The client still gets the bytes; we only lose the ability to follow them.
			s.conn.Log(host.LogWarn, fmt.Sprintf("bucket %s: login response not parseable: %v", s.bucket.cfg.Name, err))
			s.onLoginResponseDone()
			return
		}
	}
}

func (s *session) onLoginResponseDone() {
	b := s.bucket
	s.stopTimer()
	if !s.loginAck {
		// The backend refused the login (wrong password, unknown database...). Its ERROR
		// tokens are the bytes passing through this very write, not yet in the connection's
		// write buffer: a close now (even FlushWrite) would find that buffer empty, close the
		// socket, and the client would read a bare EOF. Close once this write has left the
		// filter chain; FlushWrite then sends the errors first. (If the backend hangs up
		// first, tcp_proxy closes the client the same flushing way and the posted close
		// finds the session finished.)
		s.conn.IncCounter(b.stats.loginFailed, 1)
		s.loginFailed = true
		s.adoptBackend(false)
		s.conn.Post(func() {
			if !s.finished {
				s.finishWith(host.FlushWrite, "tdspool_backend_login_failed")
			}
		})
		return
	}
	s.adoptBackend(true)
	s.conn.IncCounter(b.stats.loginOK, 1)
	s.conn.RecordHistogram(b.stats.loginMs, uint64(s.f.now().Sub(s.loginStarted).Milliseconds()))
	s.conn.IncCounter(b.stats.sessionsTotal, 1)
	s.conn.IncGauge(b.stats.sessionsActive, 1)
	s.ph = phRelay
	// The handshake buffers are done with; an idle session should hold as little as possible.
	s.clientIn, s.backendIn, s.loginResp = tds.Reassembler{}, tds.Reassembler{}, tds.ResponseScanner{}
	s.relay.start(s)
	if _, ok := s.leg.(*txLeg); !ok && s.bucket.tx != nil {
		s.startTxMode(nil) // a real login of a TRANSACTION bucket: its backend goes to the pool
	}
	s.leg.relayStarted()
}

func (s *session) OnEvent(event host.ConnectionEvent) {
	if event == host.RemoteClose || event == host.LocalClose {
		s.finish()
	}
}

func (s *session) OnWatermark(above bool) {
	if s.leg != nil {
		s.leg.clientWatermark(above)
	}
}

func (s *session) OnDestroy() {
	// Only Go state is touched here; the Envoy connection is gone, and with it the backend
	// connection: the slot goes back now (finish counted it). A connection destroyed without
	// a close event must not keep its slot either (counted apart: it should not happen).
	s.stopTimer()
	s.stopDrainTimer()
	s.stopReturnWait()
	s.f.untrackSession(s)
	if s.cancelAcquire != nil {
		s.cancelAcquire()
		s.cancelAcquire = nil
	}
	if release := s.grantInFlight.take(); release != nil {
		release() // granted, and the post that would have taken it was dropped
	}
	if s.release != nil {
		s.releaseSlot(s.release)
		s.release = nil
		if !s.releaseAtDestroy {
			s.f.coordStats.releasedOnDestroy.Add(1)
		}
	}
	if s.pool.lease != nil {
		s.pool.lease.Taint(pool.TaintRequestInFlight) // no close event: nothing is known
		s.returnBackend()
	}
	if t, ok := s.leg.(*txLeg); ok {
		t.destroyed() // a borrowed backend or a queue place must not outlive the session
	}
	if r, ok := s.leg.(*reloginLeg); ok && !r.closed {
		r.close() // its login's backend and slot must not outlive the session either
	}
}

// grantInFlight holds a granted slot's release from the coordinator's answer until the
// session's worker takes it (the posted onSlot) or the session is destroyed first: Envoy drops
// a connection's posts that have not run when it destroys it. Safe for concurrent use; nil
// holds nothing.
type grantInFlight struct {
	mu      sync.Mutex
	release func()
}

func (g *grantInFlight) put(release func()) {
	g.mu.Lock()
	g.release = release
	g.mu.Unlock()
}

// take returns the release not taken yet (nil if none) and forgets it.
func (g *grantInFlight) take() func() {
	if g == nil {
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	r := g.release
	g.release = nil
	return r
}

// refuse sends a client-visible error and closes.
func (s *session) refuse(e clientError) {
	s.conn.IncCounter(s.f.stats.errorsByKind[e.kind], 1)
	s.toClient(e.message(s.f.cfg.ErrorNumbers, s.pktSize))
	s.finishWith(host.FlushWrite, "tdspool_"+e.kind.String())
}

func (s *session) protocolFailure(detail string) {
	s.conn.IncCounter(s.f.stats.protocolErrors, 1)
	s.conn.Log(host.LogInfo, "closing: "+detail)
	s.finishWith(host.NoFlush, "tdspool_protocol_error")
}

// finishWith closes the connection after settling the session's accounts.
func (s *session) finishWith(how host.CloseType, details string) {
	s.finish()
	s.conn.Close(how, details)
}

// finish runs once: release the slot, stop timers, settle gauges. It runs on the first close
// event or when the filter itself closes, while the connection is still usable.
func (s *session) finish() {
	if s.finished {
		return
	}
	s.finished = true
	s.endTxFirstLogin()
	prev := s.ph
	s.ph = phClosed
	s.stopTimer()
	s.stopDrainTimer()
	s.stopReturnWait()
	s.closeTLS()
	if s.leg != nil {
		s.leg.close()
	}
	b := s.bucket
	if s.cancelAcquire != nil {
		if s.cancelAcquire() {
			s.conn.DecGauge(b.stats.sessionsQueued, 1)
			s.conn.IncCounter(b.stats.slotCancelled, 1)
		} else if prev == phWaitSlot {
			// The answer is already posted; onSlot releases a grant (phase is closed).
			s.conn.DecGauge(b.stats.sessionsQueued, 1)
		}
		s.cancelAcquire = nil
	}
	if s.release != nil && !s.releaseAtDestroy {
		// A slot is a backend connection, and tcp_proxy closes that connection after this
		// close event (its callbacks run after ours). Handing the slot on now would let the
		// next session's backend connection open while this one still exists, so the slot
		// goes back when Envoy destroys the filter, after both legs are closed. It is counted
		// as released now, while the connection can still take stats.
		s.releaseAtDestroy = true
		s.conn.IncCounter(b.stats.slotReleased, 1)
	}
	if prev == phRelay {
		s.relay.finish(s)
		s.conn.DecGauge(b.stats.sessionsActive, 1)
	}
	s.conn.DecGauge(s.f.stats.connectionsActive, 1)
	s.f.coordStats.flush(s.conn)
}

// armTimer runs onExpire on the worker after d, unless the timer is stopped or re-armed first.
func (s *session) armTimer(d time.Duration, onExpire func()) {
	s.stopTimer()
	if d <= 0 {
		return
	}
	s.timerSeq++
	seq := s.timerSeq
	s.timer = time.AfterFunc(d, func() {
		s.conn.Post(func() {
			if s.timerSeq != seq || s.finished {
				return
			}
			onExpire()
		})
	})
}

// onLoginTimeout bounds PRELOGIN..LOGINACK for clients that stall (hostile or broken).
func (s *session) onLoginTimeout() {
	s.conn.IncCounter(s.f.stats.loginTimeouts, 1)
	s.conn.Log(host.LogInfo, fmt.Sprintf("closing: login not complete after %s (phase %s)", s.f.loginTimeout, s.ph))
	if s.ph == phWaitSlot {
		return // the slot wait has its own bound (queue_timeout) and answers the client
	}
	if s.ph == phBackendLogin && !s.loginReplyStarted {
		// The backend took the LOGIN7 and has said nothing: the client is owed an answer, and
		// nothing of the backend's reply has reached it, so an ERROR cannot split a message.
		s.conn.IncCounter(s.bucket.stats.backendUnavailable, 1)
		s.refuse(backendUnavailable(s.bucket.cfg.Name, fmt.Sprintf("no login answer within %s", s.f.loginTimeout)))
		return
	}
	s.finishWith(host.NoFlush, "tdspool_login_timeout")
}

// backendGoneDuringLogin answers a client whose backend closed before any of its login reply
// reached the client (a server killed between PRELOGIN and LOGINACK) with 40613 at once,
// rather than leaving it to login_timeout or a bare close. False: the session is past that
// point (its reply started, or it is finished) and the caller closes as it would.
func (s *session) backendGoneDuringLogin() bool {
	if s.finished || s.loginReplyStarted || (s.ph != phBackendPrelogin && s.ph != phBackendLogin) {
		return false
	}
	s.conn.IncCounter(s.bucket.stats.backendUnavailable, 1)
	s.refuse(backendUnavailable(s.bucket.cfg.Name, "the backend closed the connection during the login"))
	return true
}

// onBackendTimeout: the backend accepted the connection but did not answer our PRELOGIN.
func (s *session) onBackendTimeout() {
	if s.ph != phBackendPrelogin {
		return
	}
	b := s.bucket
	s.conn.IncCounter(b.stats.backendUnavailable, 1)
	s.refuse(backendUnavailable(b.cfg.Name, fmt.Sprintf("no PRELOGIN answer within %s", s.f.backendTimeout)))
}

// onKill runs on the worker when an operator killed this session's lease (tdspoolctl kill).
// Between requests the client gets a real ERROR (class 21) and the connection closes; in the
// middle of a response an ERROR would land inside the server's token stream, so the
// connection only closes.
func (s *session) onKill() {
	if s.finished || s.bucket == nil {
		return
	}
	b := s.bucket
	s.conn.IncCounter(b.stats.sessionsKilled, 1)
	s.conn.Log(host.LogInfo, fmt.Sprintf("bucket %s: session killed by an operator (phase %s)", b.cfg.Name, s.ph))
	if s.pool.lease != nil {
		s.pool.lease.Taint(pool.TaintKilled) // the killed lease's backend goes, with its slot
	}
	if s.ph == phRelay && (s.relay.idle() || s.txRequestUnsent()) {
		s.refuse(sessionKilled(b.cfg.Name))
		return
	}
	s.finishWith(host.NoFlush, "tdspool_killed")
}

// stateBy says who set the bucket's operator state, for error texts.
func stateBy(r SlotResult) string {
	if r.StateBy == "" {
		return "by an operator"
	}
	return r.StateBy
}

// clientAddress is the client's address as the fleet view shows it.
func (s *session) clientAddress() string {
	addr, port, ok := s.conn.RemoteAddress()
	if !ok {
		return ""
	}
	return net.JoinHostPort(addr, strconv.FormatUint(uint64(port), 10))
}

// backendDown says why the bucket's cluster cannot take a connection now, or "". Envoy's
// health checks and outlier detection decide; we ask before tcp_proxy connects because a
// failed upstream connect makes tcp_proxy close the client at once, with no chance to send
// it an error.
func (s *session) backendDown() string {
	if s.bucket.cfg.Cluster == "" {
		return "" // a module leg without a health-checked cluster: the connect attempt decides
	}
	total, healthy, ok := s.conn.ClusterHosts(s.bucket.cfg.Cluster)
	switch {
	case !ok:
		return "Envoy has no cluster " + s.bucket.cfg.Cluster
	case healthy == 0 && total > 0:
		return fmt.Sprintf("none of its %d hosts is healthy", total)
	case total == 0:
		return "its cluster has no hosts"
	}
	return ""
}

func (s *session) stopTimer() {
	if s.timer != nil {
		s.timer.Stop()
		s.timer = nil
		s.timerSeq++
	}
}
