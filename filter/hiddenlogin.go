package filter

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/tdspool/tdspool/filter/backend"
	"github.com/tdspool/tdspool/tds"
)

// A hidden login logs a new module-owned backend connection in without any client seeing a
// byte of it: the pool's warm-up, the re-login that replaces a pooled backend whose reset
// failed, and transaction pooling's backends use it.
//
//	f.startHiddenLogin(hiddenLoginRequest{
//		Bucket:  b,            // a MODULE bucket: its dial target, PRELOGIN and TLS (filter/backend)
//		Login7:  framed,       // the LOGIN7 as prepared for the backend, framed; zeroed once sent
//		Release: slotRelease,  // the slot the new connection counts against (may be nil)
//		Deliver: s.conn.Post,  // where Done runs: the session's worker; nil = a new goroutine
//		Done:    func(r hiddenLoginResult) { ... },
//	})
//
// The login is bounded by login_timeout from the call (dial, PRELOGIN, TLS and the login
// response together). Done runs exactly once, unless Deliver refuses it (the session is gone);
// cancel makes it run with errHiddenLoginCancelled if it has not run yet.
//
// The slot: from the call on, the hidden login owns Release. On failure (refusal, timeout,
// dial or TLS error, unparseable response, cancel, refused delivery) it closes the connection
// and Release runs once that connection is gone; the result carries neither. On success the
// result carries the logged-in connection, without a handler, and Release: the receiver owns
// both from then on (pool.Adopt them, or Close the connection and AfterClose(Release)). No path
// leaves a slot unreleased.
//
// The response is read whole (one TDS message, at most maxLoginWire with its packet headers):
// LOGINACK means success, with the recorded tds.LoginReply the pool replays (nil when the reply
// cannot be replayed, e.g. a routing ENVCHANGE) and the SPID of its packet header; ERROR tokens
// without LOGINACK mean a refusal, carried in Refused and, as the server sent them, in
// Response. The LOGIN7 is never logged.

// hiddenLoginRequest is what startHiddenLogin needs.
type hiddenLoginRequest struct {
	Bucket  *bucketState
	Login7  []byte
	Release func()
	Deliver func(func()) bool
	Done    func(hiddenLoginResult)
}

// hiddenLoginResult is the outcome of a hidden login.
type hiddenLoginResult struct {
	// Success (Err nil): the logged-in connection (no handler: any byte from the backend
	// makes it not Alive until the receiver sets one) and the slot it counts against.
	Conn    backendConn
	Release func()
	Reply   *tds.LoginReply
	SPID    uint16
	// Response is the server's whole login response payload (tokens), on success and refusal.
	Response []byte
	// Refused holds the server's ERROR tokens when it refused the login.
	Refused []tds.ServerMessage
	Err     error
}

// OK reports whether the backend accepted the login.
func (r hiddenLoginResult) OK() bool { return r.Err == nil }

var (
	// errHiddenLoginRefused: the server answered with ERROR tokens and no LOGINACK.
	errHiddenLoginRefused = errors.New("the server refused the login")
	// errHiddenLoginCancelled: the caller cancelled it.
	errHiddenLoginCancelled = errors.New("hidden login cancelled")
)

// hiddenLogin is one hidden login in progress; its backend.Handler methods run on the
// connection's goroutines.
type hiddenLogin struct {
	req     hiddenLoginRequest
	timeout time.Duration

	mu    sync.Mutex
	c     backendConn
	in    tds.Reassembler
	head  []byte // the response's first packet header (its SPID)
	timer *time.Timer
	ended bool
	// undelivered: a login's backend and slot posted to Done and not taken yet. Envoy drops a
	// post that has not run when it destroys the connection, so a cancel (the session's end)
	// takes them back and closes them.
	undelivered *hiddenLoginResult
}

// startHiddenLogin dials the bucket's backend and logs req.Login7 in (see above). It returns a
// cancel function (safe to call at any time, any number of times).
func (f *Factory) startHiddenLogin(req hiddenLoginRequest) (cancel func()) {
	if req.Deliver == nil {
		req.Deliver = func(fn func()) bool { go fn(); return true }
	}
	h := &hiddenLogin{req: req, timeout: f.loginTimeout}
	h.in.MaxMessageSize = maxLoginWire
	if req.Bucket == nil || req.Bucket.target == nil {
		// Not a module-owned bucket: nothing to dial. Still asynchronous, as promised.
		go h.end(hiddenLoginResult{Err: errors.New("the bucket has no module-owned backend leg")})
		return func() {}
	}
	if h.timeout <= 0 {
		h.timeout = 15 * time.Second
	}
	// Held across the dial: the connection's goroutine may report Ready before Dial returns,
	// and must find h.c set.
	h.mu.Lock()
	h.timer = time.AfterFunc(h.timeout, func() {
		h.end(hiddenLoginResult{Err: fmt.Errorf("no login answer within %s", h.timeout)})
	})
	h.c = f.dial(*req.Bucket.target, h)
	h.mu.Unlock()
	return func() { h.end(hiddenLoginResult{Err: errHiddenLoginCancelled}) }
}

// Ready: PRELOGIN and TLS are done; the LOGIN7 goes out and its bytes are zeroed.
func (h *hiddenLogin) Ready(*tds.Prelogin, tds.EncryptionResult) {
	h.mu.Lock()
	if h.ended {
		h.mu.Unlock()
		return
	}
	_, err := h.c.WriteLogin(h.req.Login7)
	clear(h.req.Login7)
	h.mu.Unlock()
	if err != nil {
		h.end(hiddenLoginResult{Err: fmt.Errorf("sending LOGIN7: %w", err)})
	}
}

// Data collects the login response until its last packet.
func (h *hiddenLogin) Data(b []byte) {
	h.mu.Lock()
	if h.ended {
		h.mu.Unlock()
		return
	}
	h.c.Consumed(len(b))
	if len(h.head) < tds.HeaderSize {
		n := min(tds.HeaderSize-len(h.head), len(b))
		h.head = append(h.head, b[:n]...)
	}
	h.in.Feed(b)
	msg, err := h.in.Next()
	var spid uint16
	if hd, herr := tds.DecodeHeader(h.head); herr == nil {
		spid = hd.SPID
	}
	h.mu.Unlock()
	switch {
	case errors.Is(err, tds.ErrShortBuffer):
		return
	case err != nil:
		h.end(hiddenLoginResult{Err: fmt.Errorf("login response: %w", err)})
	case msg.Type != tds.PacketReply:
		h.end(hiddenLoginResult{Err: fmt.Errorf("login response: unexpected %s message", msg.Type)})
	default:
		h.end(loginOutcome(msg.Payload, spid))
	}
}

// loginOutcome reads a whole login response payload.
func loginOutcome(payload []byte, spid uint16) hiddenLoginResult {
	res := hiddenLoginResult{Response: payload, SPID: spid}
	reply, err := tds.ParseLoginReply(payload)
	var refused *tds.LoginRefusedError
	switch {
	case err == nil:
		res.Reply = reply
		return res
	case errors.As(err, &refused):
		res.Refused, res.Err = refused.Messages, errHiddenLoginRefused
		return res
	}
	// Not replayable (or not parseable as a whole): a LOGINACK still means the login worked.
	var sc tds.ResponseScanner
	events, serr := sc.Feed(tds.AppendPackets(nil, tds.PacketReply, 0, payload, tds.MaxPacketSize))
	for _, ev := range events {
		if ev.Token == tds.TokenLoginAck && serr == nil {
			return res
		}
	}
	res.Err = fmt.Errorf("login response: %w", err)
	return res
}

func (h *hiddenLogin) Drained() {}

// Closed: the dial, the handshake or the connection failed before the login completed.
func (h *hiddenLogin) Closed(err error) {
	if err == nil {
		err = errors.New("closed")
	}
	h.end(hiddenLoginResult{Err: fmt.Errorf("backend connection: %s", backendFailureReason(err))})
}

// end settles the login once: a failure closes the connection (its slot goes back once it is
// gone); a success hands connection and slot to Done on the requested thread, or closes and
// releases them when that delivery is refused.
func (h *hiddenLogin) end(res hiddenLoginResult) {
	h.mu.Lock()
	if h.ended {
		var u *hiddenLoginResult
		if errors.Is(res.Err, errHiddenLoginCancelled) {
			u, h.undelivered = h.undelivered, nil
		}
		h.mu.Unlock()
		if u != nil {
			closeReleasing(u.Conn, u.Release)
		}
		return
	}
	h.ended = true
	if h.timer != nil {
		h.timer.Stop()
	}
	clear(h.req.Login7)
	c, release := h.c, h.req.Release
	h.mu.Unlock()
	if res.Err != nil {
		closeReleasing(c, release)
	} else {
		c.SetHandler(nil)
		res.Conn, res.Release = c, release
	}
	done := h.req.Done
	if done == nil {
		if res.Err == nil {
			closeReleasing(c, release)
		}
		return
	}
	if res.Err == nil {
		h.mu.Lock()
		h.undelivered = &res
		h.mu.Unlock()
	}
	delivered := h.req.Deliver(func() {
		if res.Err == nil && !h.takeUndelivered() {
			return // cancelled first: closed and released there
		}
		done(res)
	})
	if !delivered && res.Err == nil && h.takeUndelivered() {
		closeReleasing(c, release)
	}
}

// takeUndelivered: true when the result posted to Done was still there (and is taken now).
func (h *hiddenLogin) takeUndelivered() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	ok := h.undelivered != nil
	h.undelivered = nil
	return ok
}

// closeReleasing closes c (if any) and releases its slot (if any) once it is gone.
func closeReleasing(c backendConn, release func()) {
	switch {
	case c != nil:
		c.Close()
		if release != nil {
			c.AfterClose(release)
		}
	case release != nil:
		release()
	}
}

var _ backend.Handler = (*hiddenLogin)(nil)
