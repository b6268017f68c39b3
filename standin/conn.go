package standin

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tdspool/tdspool/tds"
)

// Identity of the emulated server: SQL Server 2022 RTM (16.0.1000.6).
const (
	serverVersion    = 0x100003E8 // PRELOGIN VERSION / LOGINACK ProgVersion: 16.0.1000
	progName         = "Microsoft SQL Server"
	versionString    = "Microsoft SQL Server 2022 (RTM) - 16.0.1000.6 (X64) \n\tOct  8 2022 05:58:25 \n\tCopyright (C) 2022 Microsoft Corporation\n\tDeveloper Edition (64-bit) on Linux (standin SQLite backend) <X64>"
	maxLoginMessage  = tds.MaxLogin7Size
	maxRequestBytes  = 64 << 20
	defaultLanguage  = "us_english"
	alpnTDS8         = "tds/8.0"
	firstByteTLS     = 0x16 // TLS handshake record: a TDS 8 ClientHello
	firstByteTDS7PRE = 0x12 // PRELOGIN packet
)

// conn is one client connection. Lifecycle:
//  1. serve sniffs the first byte: 0x16 → TDS 8 (TLS first), 0x12 → TDS 7.x.
//  2. PRELOGIN in and out; TLS wrapped in PRELOGIN packets when negotiated.
//  3. LOGIN7 → checks → login response (or error + close).
//  4. A reader goroutine turns packets into messages; serve executes them
//     one at a time and writes the replies. ATTENTION is seen by the reader
//     at once and cancels the running request (see attention).
//  5. Any error or panic closes the connection and rolls back its session.
type conn struct {
	srv  *Server
	raw  net.Conn
	spid uint16

	rw       io.ReadWriter // transport after the handshake: raw, *tls.Conn or *tlsTDSConn
	tlsc     *tlsTDSConn   // TDS 7.x TLS, closed with the connection
	security *atomic.Int64 // the Server counter this connection's transport counts in
	pktSize  int
	loggedIn atomic.Bool
	killOnce sync.Once
	// admitted: counted in Server.sessions (guarded by Server.mu).
	admitted bool

	info       atomic.Pointer[SessionInfo] // published by the executor
	redirected bool                        // the login was answered with a routing ENVCHANGE
	mux        *smpMux                     // MARS: the SMP sessions, nil without MARS
	dead       chan struct{}               // closed by kill

	mu      sync.Mutex
	cancel  context.CancelFunc // of the running request, nil when idle
	pending int                // ATTENTIONs not yet acknowledged
	sess    *session
}

func (c *conn) kill(rst bool) {
	// The connection stops counting before its socket closes: a peer that sees the close (a
	// pooler handing its connection slot on) must never find it still counted.
	c.srv.forget(c)
	c.killOnce.Do(func() {
		close(c.dead)
		if tc, ok := c.raw.(*net.TCPConn); ok && rst {
			tc.SetLinger(0)
		}
		c.raw.Close()
	})
}

func (c *conn) serve() {
	defer func() {
		if r := recover(); r != nil {
			c.srv.logf("standin %s spid %d: panic: %v\n%s", c.srv.cfg.ServerName, c.spid, r, debug.Stack())
		}
		c.kill(false)
		if c.tlsc != nil {
			c.tlsc.Close()
		}
		if c.sess != nil {
			c.sess.close()
		}
	}()
	c.raw.SetDeadline(time.Now().Add(c.srv.cfg.HandshakeTimeout))
	ok, err := c.handshake()
	if err != nil {
		if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
			c.srv.logf("standin %s spid %d: handshake: %v", c.srv.cfg.ServerName, c.spid, err)
		}
		return
	}
	if !ok {
		return
	}
	if c.redirected {
		// A routed client reconnects elsewhere; like a gateway, give it a
		// moment to read the reply and close first.
		c.raw.SetReadDeadline(time.Now().Add(5 * time.Second))
		io.Copy(io.Discard, c.rw)
		return
	}
	c.raw.SetDeadline(time.Time{})
	if c.srv.cfg.Lean {
		c.leanLoop()
		return
	}
	c.requestLoop()
}

// handshake runs PRELOGIN, TLS and LOGIN7. It returns true when a session
// was admitted (counted in Server.sessions).
func (c *conn) handshake() (bool, error) {
	s := c.srv
	var first [1]byte
	if _, err := io.ReadFull(c.raw, first[:]); err != nil {
		return false, err
	}
	pc := &prefixConn{Conn: c.raw, prefix: first[:]}
	c.pktSize = tds.DefaultPacketSize
	var loginReader io.Reader // where LOGIN7's first packet comes from
	var afterLogin io.ReadWriter
	mars := false
	switch first[0] {
	case firstByteTLS:
		if s.cfg.Encryption == EncryptionOff {
			return false, errors.New("TDS 8 connection refused: encryption is off")
		}
		cfg := s.tlsCfg.Clone()
		cfg.NextProtos = []string{alpnTDS8}
		cfg.MinVersion = tls.VersionTLS12
		tc := tls.Server(pc, cfg)
		if err := tc.Handshake(); err != nil {
			return false, fmt.Errorf("TDS 8 TLS: %w", err)
		}
		if p := tc.ConnectionState().NegotiatedProtocol; p != alpnTDS8 {
			// MS-TDS requires ALPN tds/8.0; tolerate clients that omit it.
			s.logf("standin %s spid %d: TDS 8 without ALPN %q (got %q)", s.cfg.ServerName, c.spid, alpnTDS8, p)
		}
		c.rw = tc
		pre, err := c.readPrelogin(tc)
		if err != nil {
			return false, err
		}
		// Inside TDS 8 TLS the ENCRYPTION value means nothing; answer
		// NOT_SUP so no client starts a second TLS layer.
		reply := tds.ServerPreloginReply(serverVersion, tds.EncryptNotSup)
		mars = s.cfg.MARS && pre.HasMARS && pre.MARS
		reply.MARS = mars
		if err := c.send(reply.AppendPrelogin(nil)); err != nil {
			return false, err
		}
		loginReader, afterLogin = tc, tc
		c.security = &s.strict
	case firstByteTDS7PRE:
		c.rw = pc
		pre, err := c.readPrelogin(pc)
		if err != nil {
			return false, err
		}
		policy := map[Encryption]tds.EncryptOption{
			EncryptionOptional: tds.EncryptOff, EncryptionOff: tds.EncryptNotSup,
			EncryptionRequired: tds.EncryptReq, EncryptionStrict: tds.EncryptReq,
		}[s.cfg.Encryption]
		clientEnc := tds.EncryptNotSup
		if pre.HasEncryption {
			clientEnc = pre.Encryption
		}
		enc, result := tds.NegotiateEncryption(clientEnc, policy)
		// MARS under login-only TLS would put SMP inside the one encrypted
		// LOGIN7; SQL Server clients do not do that, so it is not offered.
		mars = s.cfg.MARS && pre.HasMARS && pre.MARS && result != tds.EncryptionLoginOnly
		reply := tds.ServerPreloginReply(serverVersion, enc)
		reply.MARS = mars
		if err := c.send(reply.AppendPrelogin(nil)); err != nil {
			return false, err
		}
		if s.cfg.Encryption == EncryptionStrict {
			return false, errors.New("TDS 7.x connection refused: server requires TDS 8 strict encryption")
		}
		switch result {
		case tds.EncryptionRefuse:
			return false, fmt.Errorf("encryption refused (client %s, policy %s)", clientEnc, policy)
		case tds.EncryptionNone:
			loginReader, afterLogin = pc, pc
			c.security = &s.plain
		case tds.EncryptionLoginOnly, tds.EncryptionFull:
			cfg := s.tlsCfg.Clone()
			// SQL Server speaks TLS 1.2 inside TDS 7.x; 1.3 would also add
			// post-handshake messages after the wrapping has stopped.
			cfg.MaxVersion = tls.VersionTLS12
			mode, counter := tds.TLSModeFull, &s.fullTLS
			if result == tds.EncryptionLoginOnly {
				// The adapter decrypts LOGIN7 (its first packet or all of
				// it, whichever the driver encrypts) and passes everything
				// after it, both ways, in clear.
				mode, counter = tds.TLSModeLoginOnly, &s.loginOnly
			}
			tc, err := newTLSTDSConn(pc, cfg, mode)
			if err != nil {
				return false, fmt.Errorf("TDS 7.x TLS: %w", err)
			}
			c.tlsc = tc
			loginReader, afterLogin = tc, tc
			c.rw = tc
			c.security = counter
		}
	default:
		return false, fmt.Errorf("first byte 0x%02X is neither PRELOGIN nor a TLS ClientHello", first[0])
	}
	if mars {
		// Everything from here on is SMP; LOGIN7 comes on the first session.
		c.mux = newSMPMux(afterLogin)
		select {
		case st := <-c.mux.accept:
			loginReader, afterLogin = st, st
			c.rw = st
		case <-c.mux.done:
			return false, fmt.Errorf("MARS: no SMP session: %w", c.mux.err)
		}
	}
	// LOGIN7. In login-only mode drivers encrypt only the first packet
	// (go-mssqldb afterFirst, FreeTDS login.c), so later packets of a long
	// LOGIN7 are read in clear.
	h, body, err := readPacket(loginReader, tds.MaxPacketSize)
	if err != nil {
		return false, err
	}
	if h.Type != tds.PacketLogin7 {
		return false, fmt.Errorf("expected LOGIN7, got %s", h.Type)
	}
	for h.Status&tds.StatusEOM == 0 {
		var more []byte
		h, more, err = readPacket(afterLogin, tds.MaxPacketSize)
		if err != nil {
			return false, err
		}
		if len(body)+len(more) > maxLoginMessage {
			return false, errors.New("LOGIN7 too long")
		}
		body = append(body, more...)
	}
	c.rw = afterLogin
	return c.login(body)
}

func (c *conn) readPrelogin(r io.Reader) (*tds.Prelogin, error) {
	typ, _, payload, err := readMessage(r, tds.MaxPacketSize, 64<<10)
	if err != nil {
		return nil, err
	}
	if typ != tds.PacketPrelogin {
		return nil, fmt.Errorf("expected PRELOGIN, got %s", typ)
	}
	return tds.DecodePrelogin(payload)
}

// send frames payload as one reply message with the session's SPID.
func (c *conn) send(payload []byte) error { return c.sendTo(c.rw, payload) }

// sendTo frames payload onto one stream (an SMP session under MARS).
func (c *conn) sendTo(w io.Writer, payload []byte) error {
	if w == nil {
		w = c.rw
	}
	_, err := w.Write(tds.AppendPacketsSPID(nil, tds.PacketReply, 0, c.spid, payload, c.pktSize))
	return err
}

// loginError sends SQL Server's login failure shape: ERROR(s) + DONE(ERROR).
func (c *conn) loginError(msgs ...tds.ServerMessage) {
	var b []byte
	for _, m := range msgs {
		m.Token, m.Server = tds.TokenError, c.srv.cfg.ServerName
		b = m.AppendMessage(b)
	}
	b = tds.Done{Token: tds.TokenDone, Status: tds.DoneError}.AppendDone(b)
	c.srv.failedLogins.Add(1)
	c.send(b)
}

// infoToken appends an INFO token from this server.
func (c *conn) infoToken(b []byte, number int32, state uint8, text string) []byte {
	return tds.ServerMessage{Token: tds.TokenInfo, Number: number, State: state, Text: text, Server: c.srv.cfg.ServerName, Line: 1}.AppendMessage(b)
}

func loginFailed(user string) tds.ServerMessage {
	// State 1 is what clients see for every cause; the real cause (bad
	// password = state 8, unknown login = state 5) goes only to the
	// server's error log.
	return tds.ServerMessage{Number: 18456, State: 1, Class: 14, Text: fmt.Sprintf("Login failed for user '%s'.", user), Line: 1}
}

func (c *conn) login(body []byte) (bool, error) {
	s := c.srv
	l, err := tds.DecodeLogin7(body)
	succeeded := false
	defer func() {
		kind := AuditLogin
		if !succeeded {
			kind = AuditLoginFailed
		}
		rec := AuditRecord{SPID: int(c.spid), Kind: kind}
		if l != nil {
			rec.Login, rec.Database = l.UserName, l.Database
		}
		if c.sess != nil {
			rec.Database = c.sess.db
		}
		s.audit(rec)
	}()
	if err != nil {
		c.loginError(tds.ServerMessage{Number: 17832, State: 1, Class: 20,
			Text: "The login packet used to open the connection is structurally invalid; the connection has been closed. Please contact the vendor of the client library."})
		return false, err
	}
	if l.OptionFlags2&tds.Login7IntSecurity != 0 || len(l.SSPI) > 0 {
		c.loginError(tds.ServerMessage{Number: 18452, State: 1, Class: 14,
			Text: "Login failed. The login is from an untrusted domain and cannot be used with Integrated authentication.", Line: 1})
		return false, nil
	}
	s.loginCost(context.Background())
	switch s.accounts.check(l.UserName, l.Password.Reveal()) {
	case loginBad:
		c.loginError(loginFailed(l.UserName))
		return false, nil
	case loginDisabled:
		c.loginError(loginDisabledMsg(l.UserName))
		return false, nil
	}
	if l.OptionFlags3&tds.Login7ChangePassword != 0 {
		// The password change a client may ask for in its LOGIN7.
		s.SetPassword(l.UserName, l.ChangePassword.Reveal())
	}
	db := l.Database
	if db == "" {
		db = s.cfg.DefaultDatabase
	}
	if db == "" {
		db = "master"
	}
	canon, ok := s.store.canonical(db)
	if !ok {
		c.loginError(tds.ServerMessage{Number: 4060, State: 1, Class: 11,
			Text: fmt.Sprintf("Cannot open database \"%s\" requested by the login. The login failed.", db), Line: 1},
			loginFailed(l.UserName))
		return false, nil
	}
	if !s.admit(c) {
		// What SQL Server sends when 'user connections' is exhausted.
		c.loginError(tds.ServerMessage{Number: 17809, State: 3, Class: 20,
			Text: fmt.Sprintf("Could not connect because the maximum number of '%d' user connections has already been reached. The system administrator can use sp_configure to increase the maximum value. The connection has been closed.", s.cfg.MaxConnections)})
		return false, nil
	}
	if !s.cfg.Lean { // lean mode has no SQL session (see lean.go)
		sess, err := newSession(c, l.UserName, canon, l)
		if err != nil {
			c.loginError(tds.ServerMessage{Number: 4060, State: 1, Class: 11,
				Text: fmt.Sprintf("Cannot open database \"%s\" requested by the login. The login failed.", db), Line: 1})
			return true, err
		}
		c.sess = sess
	}

	size := int(l.PacketSize)
	if size == 0 {
		size = tds.DefaultPacketSize
	}
	size = min(max(size, tds.MinPacketSize), tds.MaxPacketSize)
	tdsVer := tds.TDSVersion74
	if l.TDSVersion != tds.TDSVersion80 && l.TDSVersion < tds.TDSVersion74 {
		tdsVer = l.TDSVersion // answer the lower of the two versions
	}

	// The order SQL Server uses: database, its INFO 5701, collation, language, its INFO 5703,
	// packet size, LOGINACK, then DONE.
	var b []byte
	b = tds.EnvChangeDatabase(canon, "master").AppendEnvChange(b)
	b = c.infoToken(b, 5701, 2, fmt.Sprintf("Changed database context to '%s'.", canon))
	b = tds.EnvChangeCollation(tds.CollationLatin1General).AppendEnvChange(b)
	b = tds.EnvChangeLanguage(defaultLanguage, "").AppendEnvChange(b)
	b = c.infoToken(b, 5703, 1, "Changed language setting to us_english.")
	b = tds.EnvChangePacketSize(size, tds.DefaultPacketSize).AppendEnvChange(b)
	b = tds.LoginAck{Interface: 1, TDSVersion: tdsVer, ProgName: progName, ProgVersion: serverVersion}.AppendLoginAck(b)
	if l.OptionFlags3&tds.Login7Extension != 0 || len(l.Features) > 0 {
		b = tds.FeatureExtAck{Features: featureAcks(l.Features)}.AppendFeatureExtAck(b)
	}
	if host, port, ok := s.redirectTarget(); ok {
		// Routing [MS-TDS §2.2.7.9, type 20]: after LOGINACK, as Azure SQL's
		// redirect policy and read-only routing send it; the client
		// reconnects to host:port and this connection is done.
		b = tds.EnvChangeRouting(host, port).AppendEnvChange(b)
		c.redirected = true
		s.redirects.Add(1)
	}
	b = tds.Done{Token: tds.TokenDone}.AppendDone(b)
	// Count before replying, so a test that saw its login succeed also
	// sees the counters.
	if c.sess != nil {
		c.sess.publish()
	}
	succeeded = true
	c.loggedIn.Store(true)
	s.logins.Add(1)
	c.security.Add(1)
	if err := c.send(b); err != nil {
		return true, err
	}
	c.pktSize = size // both sides switch after the login response
	return true, nil
}

// featureAcks are the FEATUREEXTACK entries SQL Server 2022 sends for the features a LOGIN7
// asked for [MS-TDS §2.2.7.11], among those the stand-in has: SESSIONRECOVERY (connection
// resiliency, with no initial session state: the stand-in sends no SESSIONSTATE tokens, so a
// client recovering a session replays only its login) and UTF8_SUPPORT (UTF-8 collations
// supported). The others (FEDAUTH, COLUMNENCRYPTION, DATACLASSIFICATION, JSON, vector, ...)
// are not acknowledged, which tells the client the server lacks them.
func featureAcks(asked []tds.Feature) []tds.Feature {
	var acks []tds.Feature
	for _, f := range asked {
		switch f.ID {
		case tds.FeatureSessionRecovery:
			acks = append(acks, tds.Feature{ID: f.ID, Data: []byte{}})
		case tds.FeatureUTF8Support:
			acks = append(acks, tds.Feature{ID: f.ID, Data: []byte{1}})
		}
	}
	return acks
}

// request is one client message handed from the reader to the executor.
type request struct {
	typ     tds.PacketType
	status  tds.PacketStatus
	payload []byte
	w       io.Writer // where the reply goes: the stream it came on
}

// requestLoop runs the session: a reader goroutine feeds messages; this
// goroutine executes them in order and writes every reply.
func (c *conn) requestLoop() {
	reqs := make(chan request, 16)
	go c.readRequests(c.rw, reqs, true)
	if c.mux != nil {
		// MARS: every further SMP session feeds the same executor.
		go func() {
			for {
				select {
				case st := <-c.mux.accept:
					go c.readRequests(st, reqs, false)
				case <-c.mux.done:
					c.kill(false)
					return
				case <-c.dead:
					return
				}
			}
		}()
	}
	for {
		select {
		case req := <-reqs:
			if err := c.handle(req); err != nil {
				c.srv.logf("standin %s spid %d: %v", c.srv.cfg.ServerName, c.spid, err)
				c.kill(false)
				return
			}
		case <-c.dead:
			return
		}
	}
}

// readRequests reads whole messages from one stream (the connection, or an
// SMP session under MARS) for the executor. The end of the primary stream
// ends the connection; an SMP session's FIN ends only that session.
func (c *conn) readRequests(rw io.ReadWriter, reqs chan<- request, primary bool) {
	defer func() {
		if r := recover(); r != nil {
			c.srv.logf("standin spid %d: reader panic: %v", c.spid, r)
			c.kill(false)
		}
	}()
	for {
		if d := c.srv.cfg.IdleTimeout; d > 0 {
			c.raw.SetReadDeadline(time.Now().Add(d))
		}
		typ, status, payload, err := readMessage(rw, c.pktSize, maxRequestBytes)
		if err != nil {
			if !primary && errors.Is(err, io.EOF) {
				return
			}
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				c.srv.logf("standin %s spid %d: read: %v", c.srv.cfg.ServerName, c.spid, err)
			}
			// The client is gone (some drivers, e.g. pymssql on a query
			// timeout, close instead of sending ATTENTION): stop the
			// running request now rather than when it next writes.
			c.mu.Lock()
			if c.cancel != nil {
				c.cancel()
			}
			c.mu.Unlock()
			c.kill(false)
			return
		}
		if typ == tds.PacketAttention {
			c.srv.attentions.Add(1)
			c.srv.audit(AuditRecord{SPID: int(c.spid), Login: c.sess.login, Kind: AuditAttention}) // login never changes; the database may
			c.mu.Lock()
			c.pending++
			if c.cancel != nil {
				c.cancel()
			}
			c.mu.Unlock()
		}
		select {
		case reqs <- request{typ: typ, status: status, payload: payload, w: rw}:
		case <-c.dead:
			return
		}
	}
}

var attnAck = tds.Done{Token: tds.TokenDone, Status: tds.DoneAttn}.AppendDone(nil)

// interrupted ends the response of a request an ATTENTION cut short, as SQL Server ends it:
// DONE with the error bit and no ERROR token, in a message of its own before the
// acknowledgement's. mssql-jdbc reads the acknowledgement as the message after the
// interrupted response's end, so the two must not share a message.
var interrupted = tds.Done{Token: tds.TokenDone, Status: tds.DoneError}.AppendDone(nil)

func (c *conn) handle(req request) error {
	if req.typ == tds.PacketAttention {
		c.mu.Lock()
		owe := c.pending > 0
		if owe {
			c.pending--
		}
		c.mu.Unlock()
		if owe { // the request it targeted had already been answered
			return c.sendTo(req.w, attnAck)
		}
		return nil
	}
	c.auditRequest(req)
	if req.status&tds.StatusIgnore != 0 {
		return nil // the client abandoned this message [MS-TDS §2.2.3.1.2]
	}
	ctx, cancel := context.WithCancel(context.Background())
	c.mu.Lock()
	if c.pending > 0 { // an ATTENTION overtook this request
		cancel()
	}
	c.cancel = cancel
	c.mu.Unlock()

	if d := time.Duration(c.srv.delay.Load()); d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
	}
	var out []byte
	var err error
	if ctx.Err() == nil {
		c.sess.requests++
		c.sess.lastRequest = time.Now()
		out, err = c.sess.execute(ctx, req)
		c.sess.publish()
	}

	c.mu.Lock()
	c.cancel = nil
	attn := c.pending > 0
	if attn {
		c.pending--
	}
	c.mu.Unlock()
	cancel()
	if err != nil {
		return err
	}
	if attn {
		// Everything before the acknowledgement may be discarded [MS-TDS §2.2.1.7]: the
		// response is cut to its end, then the acknowledgement follows.
		if err := c.sendTo(req.w, interrupted); err != nil {
			return err
		}
		return c.sendTo(req.w, attnAck)
	}
	if err := c.sendTo(req.w, out); err != nil {
		return err
	}
	if c.sess.dropAfterReply {
		return errors.New("session refused a reset; connection dropped")
	}
	return nil
}
