package filter

import (
	"container/list"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/tdspool/tdspool/coordinator"
	"github.com/tdspool/tdspool/envoy/host"
	"github.com/tdspool/tdspool/filter/backend"
	"github.com/tdspool/tdspool/filter/pool"
	"github.com/tdspool/tdspool/filter/txpool"
	"github.com/tdspool/tdspool/tds"
)

// Transaction pooling (pool mode TRANSACTION, module-owned leg only). The login is session
// pooling's: a key with a recorded login reply is answered from it with no backend at all,
// and the first login of a key is real, after which its backend goes to the key's pool. From
// then on the session is a txLeg: it holds a backend of its key only from a request's first
// packet until the end of a response that leaves nothing open (txpool.Binding decides), and
// between requests it holds no backend and no slot; the bucket's cap counts the pool's
// backends.
//
// A request without a backend borrows the most recently used idle backend of its key, which
// is reset on the way (RESETCONNECTION on the prelude, or on the request itself when there is
// no prelude, with the acknowledgement taken out of the response); when the client's
// database, language or SET options differ from the login's, a prelude batch re-applies them
// first and its response is consumed by the proxy. When no backend of the key is idle the
// request waits in the bucket's FIFO for one to come back, at most until the queue timeout;
// then it is answered with 10928 and not executed. A backend coming back goes to the oldest
// waiter of its key.

// txBucket is a TRANSACTION-mode bucket's queue of requests waiting for a backend.
type txBucket struct {
	mu       sync.Mutex
	waiters  list.List // of *txWaiter, oldest first
	creating int       // new backends asked for and not logged in yet (see grow)
	// firstLogins counts, per key, the sessions logging it in for real right now.
	firstLogins map[pool.Identity]int
}

// startFirstLogin registers a real login of id; false when one is already under way.
func (q *txBucket) startFirstLogin(id pool.Identity, force bool) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.firstLogins[id] > 0 && !force {
		return false
	}
	if q.firstLogins == nil {
		q.firstLogins = map[pool.Identity]int{}
	}
	q.firstLogins[id]++
	return true
}

func (q *txBucket) endFirstLogin(id pool.Identity) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.firstLogins[id] <= 1 {
		delete(q.firstLogins, id)
		return
	}
	q.firstLogins[id]--
}

func (q *txBucket) firstLoginUnderWay(id pool.Identity) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.firstLogins[id] > 0
}

// txWaiter is one session's request waiting for a backend of its key.
type txWaiter struct {
	id pool.Identity
	// give hands the waiter a lease (posted to its worker); false: its connection is gone.
	give func(*pool.Lease[*pooledBackend]) bool
	el   *list.Element
	// handed is the lease given to the waiter and not taken yet (txBucket.mu). Envoy drops a
	// post that has not run when it destroys the connection, so the post cannot own the
	// lease: whichever comes first, the post (take) or the waiter's leaving (withdraw), does.
	handed *pool.Lease[*pooledBackend]
}

// borrowOrWait lends an idle backend of key, or queues w (unless another waiter of the key is
// ahead of it, a new request never takes a backend before the queue does).
func (q *txBucket) borrowOrWait(p *bucketPool, key pool.Key, now time.Time, w *txWaiter) (*pool.Lease[*pooledBackend], pool.Miss) {
	q.mu.Lock()
	defer q.mu.Unlock()
	miss := pool.MissEmpty
	if !q.hasWaiterLocked(key.Identity) {
		var lease *pool.Lease[*pooledBackend]
		if lease, miss = p.Borrow(key, now); lease != nil {
			return lease, pool.Hit
		}
	}
	w.el = q.waiters.PushBack(w)
	return nil, miss
}

func (q *txBucket) hasWaiterLocked(id pool.Identity) bool {
	for e := q.waiters.Front(); e != nil; e = e.Next() {
		if e.Value.(*txWaiter).id == id {
			return true
		}
	}
	return false
}

// withdraw takes w out of the queue, and takes back a lease handed to it whose post has not
// run (nil if none): the caller gives it back.
func (q *txBucket) withdraw(w *txWaiter) *pool.Lease[*pooledBackend] {
	q.mu.Lock()
	defer q.mu.Unlock()
	if w.el != nil {
		q.waiters.Remove(w.el)
		w.el = nil
	}
	l := w.handed
	w.handed = nil
	return l
}

// take is the handoff's post running: the lease handed to w, or nil when w's leaving took it
// back first.
func (q *txBucket) take(w *txWaiter, l *pool.Lease[*pooledBackend]) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if w.handed != l {
		return false
	}
	w.handed = nil
	return true
}

// giveBack hands a released backend to the oldest waiter of its key, or returns it to the
// pool's idle stack (or has it closed, see pool.Lease.Return).
func (q *txBucket) giveBack(lease *pool.Lease[*pooledBackend], id pool.Identity, now time.Time) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for e := q.waiters.Front(); e != nil; {
		w := e.Value.(*txWaiter)
		next := e.Next()
		if w.id == id && !lease.Tainted() && lease.Conn().Alive() {
			q.waiters.Remove(e)
			w.el, w.handed = nil, lease
			if w.give(lease) {
				return
			}
			w.handed = nil
		}
		e = next
	}
	lease.Return(now)
}

// waiting is how many requests of the bucket wait for a backend.
func (q *txBucket) waiting() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.waiters.Len()
}

// txPinReasons maps the binding's pins onto the session's pin gauges.
var txPinReasons = [txpool.NumPins]pinReason{
	txpool.PinTransaction: pinTransaction, txpool.PinPrepared: pinPrepared, txpool.PinTempTable: pinTempTable,
	txpool.PinSetOption: pinSetOption, txpool.PinCursor: pinCursor, txpool.PinBulkLoad: pinBulkLoad,
	txpool.PinAppRole: pinAppRole, txpool.PinUnparsed: pinUnparsed, txpool.PinMARS: pinMARS,
	txpool.PinAppLock: pinAppLock, txpool.PinSessionContext: pinSessionContext,
}

// maxHeldRequest bounds the client bytes held while a request waits for a backend; above it
// the client is not read until the request has one.
const maxHeldRequest = 1 << 20

// txLeg is a transaction-pooled session's way to its backends: none between requests, a
// borrowed one during them.
type txLeg struct {
	s          *session
	q          *txBucket
	pool       *bucketPool
	key        pool.Key
	loginState txpool.State
	binding    *txpool.Binding
	login      *tds.Login7 // the client's login as the backend gets it, for new backends

	// The bound backend (nil between requests).
	lease *pool.Lease[*pooledBackend]
	bind  *txBind
	scan  tds.ResponseScanner
	ack   *tds.ResetAckConsumer // the reset marked on the client's request: its ack is taken out
	// preludeReset: the prelude carried the reset; its acknowledgement must come back.
	preludeReset, preludeAcked bool
	attnSent                   bool // an ATTENTION went to this backend
	// resetUnknown: an ATTENTION cut the reset-marked request's response before its
	// acknowledgement, so whether the reset ran is unknown (see onData).
	resetUnknown bool

	// The client's stream, cut into packets.
	in      []byte
	msg     txMessage
	held    []byte // the request (so far) that waits for a backend
	partial bool   // the bound backend has the start of a message whose last packet is still to come
	// dropUntilEOM: the message in progress was answered already (refused or cancelled); its
	// remaining packets go nowhere.
	dropUntilEOM bool
	refuseAtEOM  bool // the refusal is sent when the client has finished sending the request

	waiter       *txWaiter
	waitStart    time.Time
	readDisabled bool

	// The fleet view: the session's client record (it holds no slot between requests) and
	// what a bound backend's lease shows (txmode_fleet.go).
	client fleetClient
	holder coordinator.Holder
	// idle_timeout: the last traffic either way, and the check's timer.
	lastActive  time.Time
	idleTimer   *time.Timer
	clientAbove bool // the client's write buffer is above its high watermark
	closed      bool
	connGone    bool // destroyed without a close event: the Envoy connection is gone
}

// txMessage is the client message being received.
type txMessage struct {
	started   bool
	typ       tds.PacketType
	status    tds.PacketStatus
	prefix    []byte // its first tds.DefaultMaxKept payload bytes, for classification
	complete  bool   // prefix holds all of the payload
	requested bool   // the binding has been told (Binding.Request)
}

// txBind is one binding of the leg to a backend connection: the connection's handler.
// Events of an earlier binding find leg.bind changed and are dropped.
type txBind struct {
	t *txLeg
	c backendConn
}

// startTxMode makes a logged-in session of a TRANSACTION bucket a txLeg. It reports false
// when the session keeps a backend of its own (a login that is never pooled, or whose reply
// could not be recorded): it then relays as an unpooled module-leg session.
func (s *session) startTxMode(reply *tds.LoginReply) bool {
	b := s.bucket
	if b.tx == nil || !s.pool.keyed {
		return false
	}
	if reply == nil && s.pool.lease != nil {
		reply = s.pool.lease.Reply()
	}
	if reply == nil {
		return false
	}
	s.endTxFirstLogin()
	login := txpool.LoginState(reply.Database, reply.Language)
	t := &txLeg{s: s, q: b.tx, pool: b.pool, key: s.pool.key, loginState: login, binding: txpool.NewBinding(login),
		login: s.pool.login}
	t.startFleet()
	if lease := s.pool.lease; lease != nil {
		// The session's real login: its backend goes to the pool (or to a waiter) now.
		s.pool.lease = nil
		pb := lease.Conn()
		s.fleetReturned(pb)
		pb.setUser(nil)
		pb.c.SetHandler(nil)
		pb.c.PauseReads(false)
		t.q.giveBack(lease, t.key.Identity, s.f.now())
	}
	s.leg = t
	s.setPins = t.fleetPins
	s.flushPoolStats(false)
	return true
}

// servedFromRecordedReply answers a TRANSACTION bucket's login from its key's recorded reply:
// no backend, no slot. False: the key has none (or must log in for real); the login goes on.
func (s *session) servedFromRecordedReply(login *tds.Login7) bool {
	b := s.bucket
	if b.tx == nil || !s.pool.keyed {
		return false
	}
	reply, miss := b.pool.Recorded(s.pool.key, s.f.now())
	if reply == nil {
		s.conn.Log(host.LogDebug, fmt.Sprintf("bucket %s: no recorded login (%s)", b.cfg.Name, miss))
		return false
	}
	s.toClient(tds.AppendPackets(nil, tds.PacketReply, 0, reply.AppendReplay(nil, login, int(login.PacketSize)), s.pktSize))
	s.pktSize = int(login.PacketSize)
	s.loginAck = true
	if !s.startTxMode(reply) {
		return false
	}
	s.onLoginResponseDone()
	return true
}

func (t *txLeg) open() bool       { return true }
func (t *txLeg) sendLogin([]byte) {}
func (t *txLeg) clientEnded()     { t.s.finishWith(host.FlushWrite, "tdspool_client_closed") }
func (t *txLeg) relayStarted() {
	t.s.relay.pending = 0
	t.armIdleCheck()
}

// clientWatermark: a client that does not read its results pauses the bound backend.
func (t *txLeg) clientWatermark(above bool) {
	t.clientAbove = above
	if t.bind != nil {
		t.bind.c.PauseReads(above)
	}
}

func (t *txLeg) fromClient(size int) host.Status {
	s := t.s
	var b []byte
	if s.fullTLS() {
		b = s.decryptClient(s.takeRead(size))
	} else {
		b = s.takeRead(size)
	}
	if s.finished || len(b) == 0 {
		return host.StopIteration
	}
	t.active()
	s.relay.batch.rxBytes += uint64(len(b))
	t.in = append(t.in, b...)
	off := 0
	for !s.finished && len(t.in)-off >= tds.HeaderSize {
		h, err := tds.DecodeHeader(t.in[off:])
		if err != nil || int(h.Length) < tds.HeaderSize {
			s.protocolFailure(fmt.Sprintf("client packet header: %v", err))
			return host.StopIteration
		}
		if len(t.in)-off < int(h.Length) {
			break
		}
		t.packet(t.in[off:off+int(h.Length)], h)
		off += int(h.Length)
	}
	if off == len(t.in) {
		t.in = t.in[:0]
		if cap(t.in) > 64<<10 {
			t.in = nil
		}
	} else if off > 0 {
		t.in = append(t.in[:0:0], t.in[off:]...)
	}
	return host.StopIteration
}

// packet handles one whole client packet.
func (t *txLeg) packet(pkt []byte, h tds.Header) {
	s := t.s
	s.relay.batch.rxPackets++
	eom := h.Status&tds.StatusEOM != 0
	m := &t.msg
	if !m.started {
		if h.Type == tds.PacketAttention {
			s.relay.batch.requests[reqAttention]++
			t.attention(pkt)
			return
		}
		switch h.Type {
		case tds.PacketSQLBatch, tds.PacketRPC, tds.PacketTransMgr, tds.PacketBulkLoad:
		default:
			// Not a request (MARS's SMP framing among them: the proxy's PRELOGIN answer turned
			// MARS off): nothing a borrowed backend could be trusted with afterwards.
			s.protocolFailure(fmt.Sprintf("a %s message is not a request", h.Type))
			return
		}
		*m = txMessage{started: true, typ: h.Type, status: h.Status &^ (tds.StatusEOM | tds.StatusIgnore),
			prefix: m.prefix[:0], complete: true}
		s.relay.batch.requests[requestKindOf(h.Type)]++
	}
	if room := tds.DefaultMaxKept - len(m.prefix); room > 0 {
		p := pkt[tds.HeaderSize:]
		if len(p) > room {
			p, m.complete = p[:room], false
		}
		m.prefix = append(m.prefix, p...)
	} else if len(pkt) > tds.HeaderSize {
		m.complete = false
	}
	switch {
	case t.dropUntilEOM:
	case t.holding():
		t.held = append(t.held, pkt...)
		if len(t.held) > maxHeldRequest && !t.readDisabled {
			t.readDisabled = true
			s.conn.ReadDisable(true)
		}
	default:
		if !t.write(pkt) {
			return
		}
		t.partial = !eom
	}
	if !m.requested && !t.dropUntilEOM && (eom || !m.complete) {
		t.request()
	}
	if eom {
		m.started, t.dropUntilEOM, t.partial = false, false, false
		if cap(m.prefix) > 4<<10 {
			m.prefix = nil
		}
		if t.refuseAtEOM {
			t.refuseAtEOM = false
			t.sendRefusal()
		}
	}
}

// holding: client bytes cannot go to a backend now (none is bound, or its prelude runs, or
// earlier bytes still wait).
func (t *txLeg) holding() bool {
	return t.bind == nil || t.binding.ConsumingPrelude() || len(t.held) > 0
}

// request tells the binding about the message (once its end, or enough of it to classify, is
// in) and carries out what it decides.
func (t *txLeg) request() {
	s := t.s
	m := &t.msg
	m.requested = true
	facts, batch := t.classify()
	a := t.binding.Request(s.f.now(), &facts, batch, s.bucket.cfg.QueueTimeout.AsDuration())
	t.syncPins()
	switch a {
	case txpool.Forward:
		s.relay.pending++
	case txpool.Borrow:
		s.relay.pending++
		t.borrow()
	}
}

// classify finds what the request does from its kept prefix (as the relay does).
func (t *txLeg) classify() (tds.RequestFacts, string) {
	m := &t.msg
	msg := tds.Message{Type: m.typ, Status: m.status, Payload: m.prefix}
	switch m.typ {
	case tds.PacketSQLBatch, tds.PacketRPC, tds.PacketTransMgr, tds.PacketBulkLoad:
	default:
		return tds.RequestFacts{Type: m.typ}, ""
	}
	if m.typ == tds.PacketSQLBatch && !tds.BatchMayPin(m.prefix) {
		return tds.RequestFacts{Type: m.typ, ResetConnection: msg.Status&tds.StatusResetConnection != 0,
			ResetSkipTran: msg.Status&tds.StatusResetConnectionSkipTran != 0}, ""
	}
	facts, err := tds.ClassifyRequest(&msg)
	if err != nil && m.complete {
		t.s.conn.IncCounter(t.s.bucket.stats.requestsUnclassified, 1)
	}
	batch := ""
	if m.typ == tds.PacketSQLBatch {
		if q, err := tds.DecodeSQLBatch(m.prefix); err == nil {
			batch = q.Text
		}
	}
	return facts, batch
}

// borrow finds a backend for the held request: an idle one of the key, or a place in the
// bucket's queue until one comes back or the queue timeout passes.
func (t *txLeg) borrow() {
	s := t.s
	now := s.f.now()
	t.waitStart = now
	conn := s.conn
	w := &txWaiter{id: t.key.Identity}
	w.give = func(l *pool.Lease[*pooledBackend]) bool {
		return conn.Post(func() { t.given(w, l) })
	}
	lease, miss := t.q.borrowOrWait(t.pool, t.key, now, w)
	if lease != nil {
		t.bound(lease, true)
		return
	}
	t.waiter = w
	s.conn.IncGauge(s.bucket.stats.sessionsQueued, 1)
	s.armTimer(max(t.binding.Deadline().Sub(now), time.Millisecond), t.onWaitTimeout)
	if miss != pool.MissEmpty {
		// The key must log in for real (reauth, another password): no point waiting.
		t.growIfStillWaiting(w, miss)
		return
	}
	// Backends usually come back within a request's time; a new one is asked for only when
	// none has by then, so a burst does not leave the pool larger than the load needs.
	time.AfterFunc(txGrowDelay, func() { conn.Post(func() { t.growIfStillWaiting(w, miss) }) })
}

// txGrowDelay is how long a request waits for a busy backend of its key to come back before
// a new backend is logged in for it.
const txGrowDelay = 10 * time.Millisecond

func (t *txLeg) growIfStillWaiting(w *txWaiter, miss pool.Miss) {
	if t.closed || t.waiter != w || t.s.finished {
		return
	}
	if t.q.wantsBackend(t.pool, t.s.bucket.cfg.MaxConnections, t.key.Identity, miss) {
		t.grow()
	}
}

// given runs on the worker when a released backend was handed to this session's waiter.
func (t *txLeg) given(w *txWaiter, lease *pool.Lease[*pooledBackend]) {
	if !t.q.take(w, lease) {
		return // the waiter left first and gave it back
	}
	if t.waiter != w || t.closed || t.binding.Phase() != txpool.Borrowing {
		// Refused, cancelled or gone meanwhile: the next waiter may have it.
		t.q.giveBack(lease, t.key.Identity, t.s.f.now())
		return
	}
	t.endWait()
	t.bound(lease, true)
}

// endWait leaves the queue (its gauge, its timer).
func (t *txLeg) endWait() {
	if t.waiter == nil {
		return
	}
	s := t.s
	t.leaveQueue(t.waiter)
	t.waiter = nil
	s.stopTimer()
	if !t.closed {
		s.conn.DecGauge(s.bucket.stats.sessionsQueued, 1)
		s.conn.RecordHistogram(s.bucket.stats.queueWaitMs, uint64(s.f.now().Sub(t.waitStart).Milliseconds()))
	}
}

// leaveQueue takes w out of the queue; a backend already handed to it (its post not run yet)
// goes on to the next waiter or to the pool.
func (t *txLeg) leaveQueue(w *txWaiter) {
	if l := t.q.withdraw(w); l != nil {
		t.q.giveBack(l, t.key.Identity, t.s.f.now())
	}
}

// onWaitTimeout: no backend came back within the queue timeout; the request is refused
// without having run anywhere.
func (t *txLeg) onWaitTimeout() {
	if t.waiter == nil {
		return
	}
	held := t.binding.HeldRequests()
	if t.binding.Tick(t.s.f.now()) != txpool.Refuse {
		t.s.armTimer(max(t.binding.Deadline().Sub(t.s.f.now()), time.Millisecond), t.onWaitTimeout)
		return
	}
	t.endWait()
	t.held = nil
	t.s.relay.pending = 0
	t.resumeClient()
	if t.msg.started {
		// The client is still sending a request: answer it once it has finished.
		t.dropUntilEOM, t.refuseAtEOM = true, true
		if t.msg.requested {
			held--
		}
	}
	// Every held request gets its answer, in order (a client that sent several before the
	// first went out waits for each).
	for ; held > 0; held-- {
		t.sendRefusal()
	}
}

func (t *txLeg) sendRefusal() {
	s, b := t.s, t.s.bucket
	cap := b.cfg.MaxConnections
	e := requestNotExecuted(b.cfg.Name, s.f.now().Sub(t.waitStart), cap)
	s.conn.IncCounter(s.f.stats.errorsByKind[e.kind], 1)
	s.conn.IncCounter(b.stats.slotTimedOut, 1)
	s.toClient(e.message(s.f.cfg.ErrorNumbers, s.pktSize))
}

// requestNotExecuted is the answer to a request that waited for a backend in vain: the
// session stays, so the class is a statement's (16), not a connection's.
func requestNotExecuted(bucket string, waited time.Duration, cap uint32) clientError {
	return clientError{kind: errPoolExhausted, class: 16, text: fmt.Sprintf(
		"tdspool: pool exhausted for bucket '%s' (cap %d connections): no backend became free within %s; the request was not executed. Retry it later.",
		bucket, cap, waited.Round(time.Millisecond))}
}

// bound: the session has a backend now (reset: it served someone before).
func (t *txLeg) bound(lease *pool.Lease[*pooledBackend], reset bool) {
	s := t.s
	pb := lease.Conn()
	t.lease = lease
	t.bind = &txBind{t: t, c: pb.c}
	t.scan = tds.ResponseScanner{MaxPacketSize: tds.MaxPacketSize}
	t.ack, t.preludeReset, t.preludeAcked, t.attnSent, t.resetUnknown = nil, false, false, false, false
	pb.c.SetHandler(t.bind)
	pb.c.PauseReads(t.clientAbove)
	t.fleetBound(pb)
	wait := s.f.now().Sub(t.waitStart)
	t.pool.ObserveBorrowWait(wait)
	s.conn.RecordHistogram(s.bucket.stats.tx.borrowWaitUs, uint64(wait.Microseconds()))
	s.conn.IncGauge(s.bucket.stats.tx.bound, 1)
	backendState := t.loginState
	if reset {
		// The reset keeps the session's isolation level (as the last binding left it).
		backendState = txpool.AfterReset(t.loginState, pb.isolation)
	}
	prelude, _, a := t.binding.Borrowed(backendState)
	if prelude != "" {
		status := tds.PacketStatus(0)
		if reset {
			status, t.preludeReset = tds.StatusResetConnection, true
		}
		q := tds.SQLBatch{Headers: tds.AllHeaders{HasTransaction: true, OutstandingRequests: 1}, Text: prelude}
		t.write(tds.AppendPackets(nil, tds.PacketSQLBatch, status, q.AppendSQLBatch(nil), s.pktSize))
		s.flushPoolStats(false)
		return
	}
	if a == txpool.ForwardHeld {
		t.forwardHeld(reset)
	}
	s.flushPoolStats(false)
}

// forwardHeld sends the held request, marked for the backend's reset when it needs one (the
// acknowledgement is then taken out of the response, unless the client asked for a reset
// itself and expects it).
func (t *txLeg) forwardHeld(reset bool) {
	held := t.held
	t.held = nil
	if reset && len(held) >= tds.HeaderSize {
		if tds.PacketStatus(held[1])&(tds.StatusResetConnection|tds.StatusResetConnectionSkipTran) == 0 {
			if err := tds.MarkResetConnection(held); err != nil {
				// Only requests can be the first message of a borrow; anything else is a
				// client out of step with the protocol.
				t.lease.Discard()
				t.unbind()
				t.s.protocolFailure(fmt.Sprintf("first message of a borrowed backend: %v", err))
				return
			}
			t.ack = &tds.ResetAckConsumer{}
		} else {
			// The client's own reset (full, so no transaction is inherited either).
			_ = tds.MarkResetConnection(held)
		}
	}
	t.resumeClient()
	if len(held) > 0 && t.write(held) {
		t.partial = t.msg.started
	}
}

// write sends client bytes to the bound backend. False: the session has been closed.
func (t *txLeg) write(b []byte) bool {
	s := t.s
	backlog, err := t.bind.c.Write(b)
	if err != nil {
		s.conn.Log(host.LogInfo, fmt.Sprintf("bucket %s: %v", s.bucket.cfg.Name, err))
		s.finishWith(host.FlushWrite, "tdspool_backend_write_failed")
		return false
	}
	if backlog > maxBackendBacklog && !t.readDisabled {
		t.readDisabled = true
		s.conn.ReadDisable(true)
	}
	return true
}

func (t *txLeg) resumeClient() {
	if t.readDisabled && !t.s.finished {
		t.readDisabled = false
		t.s.conn.ReadDisable(false)
	}
}

// attention: the client cancels. Bound, the backend answers; otherwise (nothing of the
// client's runs anywhere) the proxy does, and any held request is dropped.
func (t *txLeg) attention(pkt []byte) {
	s := t.s
	switch t.binding.Attention() {
	case txpool.Forward:
		t.attnSent = true
		t.write(pkt)
	case txpool.AnswerAttention:
		t.endWait()
		t.held = nil
		t.resumeClient()
		s.relay.pending = 0
		done := tds.Done{Token: tds.TokenDone, Status: tds.DoneAttn}.AppendDone(nil)
		s.toClient(tds.AppendPackets(nil, tds.PacketReply, 0, done, s.pktSize))
	}
}

// Handler of the bound backend connection (its goroutines); everything hops to the worker.

func (b *txBind) Ready(*tds.Prelogin, tds.EncryptionResult) {}
func (b *txBind) Data(p []byte)                             { b.t.s.conn.Post(func() { b.t.onData(b, p) }) }
func (b *txBind) Closed(err error)                          { b.t.s.conn.Post(func() { b.t.onClosed(b, err) }) }
func (b *txBind) Drained() {
	b.t.s.conn.Post(func() {
		if b.t.bind == b {
			b.t.resumeClient()
		}
	})
}

// onData follows the bound backend's response: the prelude's is consumed, the reset's
// acknowledgement is taken out, the rest goes to the client; the binding sees every event.
func (t *txLeg) onData(b *txBind, p []byte) {
	defer b.c.Consumed(len(p))
	s := t.s
	if t.bind != b || s.finished {
		return
	}
	t.active()
	if t.binding.ConsumingPrelude() {
		t.preludeBytes(p)
		return
	}
	if t.ack != nil {
		out, err := t.ack.Feed(nil, p)
		if err == nil && !t.ack.Settled() {
			return
		}
		switch {
		case err == nil && !t.ack.Acked() && t.attnSent:
			// Cancelled: a server may drop what the request produced, the reset's
			// acknowledgement with it (SQL Server ends such a response in DONE(ERROR)), so
			// whether the reset ran is unknown. The backend still goes back to the pool once
			// the DONE(ATTN) has come (every borrow resets it again, and an unacknowledged
			// reset then closes it), unless the server reported an error here (serverEvent):
			// the reset itself may have failed.
			t.resetUnknown = true
		case err != nil || !t.ack.Acked():
			t.resetFailed(err)
			return
		default:
			t.lease.ResetDone(true)
			s.conn.IncCounter(s.bucket.stats.resets, 1)
		}
		t.ack = nil
		if p = out; len(p) == 0 {
			return
		}
	}
	s.relay.batch.txBytes += uint64(len(p))
	s.toClient(p)
	events, err := t.scan.Feed(p)
	for i := range events {
		if t.bind != b {
			break
		}
		t.serverEvent(&events[i])
	}
	if err != nil && t.bind == b {
		s.conn.IncCounter(s.bucket.stats.inspectStopped, 1)
		s.conn.Log(host.LogInfo, fmt.Sprintf("bucket %s: response stream not followed any more: %v", s.bucket.cfg.Name, err))
		t.binding.SetPin(txpool.PinUnparsed, true)
		t.syncPins()
	}
}

func (t *txLeg) serverEvent(ev *tds.Event) {
	s := t.s
	switch ev.Token {
	case tds.TokenError:
		s.conn.IncCounter(s.bucket.stats.serverErrors, 1)
		if t.resetUnknown {
			t.lease.Taint(pool.TaintRequestInFlight)
		}
	case tds.TokenDone, tds.TokenDoneProc:
		if ev.Done.Status&tds.DoneAttn != 0 {
			t.resetUnknown = false // what follows answers later requests
		}
	case tds.TokenEndOfMessage:
		s.relay.batch.responses++
		if s.relay.pending > 0 {
			s.relay.pending--
		}
	}
	a := t.binding.ServerEvent(ev)
	t.syncPins()
	if ev.Token == tds.TokenEndOfMessage {
		s.flushRelayStats(s.f.now(), false)
		s.drainOnReplyEnd()
	}
	if a == txpool.Release {
		t.release()
	}
}

// preludeBytes consumes the prelude's response.
func (t *txLeg) preludeBytes(p []byte) {
	s := t.s
	events, err := t.scan.Feed(p)
	if err != nil {
		t.preludeFailed(fmt.Errorf("prelude response: %w", err))
		return
	}
	for i := range events {
		ev := &events[i]
		if ev.Token == tds.TokenEnvChange && ev.EnvChange.Type == tds.EnvResetAck {
			t.preludeAcked = true
		}
		if ev.Token == tds.TokenEndOfMessage && t.preludeReset && !t.preludeAcked {
			t.preludeFailed(errors.New("no reset acknowledgement"))
			return
		}
		switch t.binding.ServerEvent(ev) {
		case txpool.Fail:
			t.preludeFailed(errors.New("the prelude failed"))
			return
		case txpool.ForwardHeld:
			if t.preludeReset {
				t.lease.ResetDone(true)
				s.conn.IncCounter(s.bucket.stats.resets, 1)
			}
			t.forwardHeld(false)
		case txpool.Release:
			t.release() // the request was cancelled during the prelude
		}
	}
}

// preludeFailed: the backend could not be brought to the client's state; it is discarded and
// the held request is answered with an error, not run.
func (t *txLeg) preludeFailed(err error) {
	s := t.s
	s.conn.Log(host.LogWarn, fmt.Sprintf("bucket %s: restoring a session's state on a borrowed backend: %v", s.bucket.cfg.Name, err))
	if t.preludeReset {
		t.lease.ResetDone(false)
	} else {
		t.lease.Discard()
	}
	t.unbind()
	t.binding.BackendLost()
	t.answerHeld(backendUnavailable(s.bucket.cfg.Name, "a borrowed backend could not take the session's settings"))
}

// resetFailed: the reset marked on the client's request was not acknowledged. The backend is
// not trusted with this client and is discarded; the request gets an error.
func (t *txLeg) resetFailed(err error) {
	s := t.s
	if err == nil {
		err = errors.New("no reset acknowledgement")
	}
	s.conn.Log(host.LogWarn, fmt.Sprintf("bucket %s: reset of a borrowed backend failed: %v", s.bucket.cfg.Name, err))
	t.lease.ResetDone(false)
	t.unbind()
	t.binding.BackendLost()
	t.answerHeld(backendUnavailable(s.bucket.cfg.Name, "a borrowed backend failed its reset"))
}

// answerHeld answers the request in progress with e (statement class: the session stays).
func (t *txLeg) answerHeld(e clientError) {
	s := t.s
	t.held = nil
	s.relay.pending = 0
	t.resumeClient()
	e.class = 16
	s.conn.IncCounter(s.f.stats.errorsByKind[e.kind], 1)
	if t.msg.started {
		t.dropUntilEOM = true
	}
	s.toClient(e.message(s.f.cfg.ErrorNumbers, s.pktSize))
}

// onClosed: the bound backend went away. With something open (a request, a transaction, a
// pin) the client's session is lost as it would be with SQL Server itself; otherwise the
// session just has no backend.
func (t *txLeg) onClosed(b *txBind, err error) {
	s := t.s
	if t.bind != b || s.finished {
		return
	}
	s.conn.Log(host.LogInfo, fmt.Sprintf("bucket %s: borrowed backend closed: %v", s.bucket.cfg.Name, err))
	inPrelude := t.binding.ConsumingPrelude()
	t.lease.Discard()
	t.unbind()
	if t.binding.BackendLost() || !inPrelude && t.msg.requested {
		s.finishWith(host.FlushWrite, "tdspool_backend_closed")
		return
	}
	if inPrelude {
		t.answerHeld(backendUnavailable(s.bucket.cfg.Name, "a borrowed backend closed"))
	}
}

// release gives the backend back: to the oldest waiter of the key, or to the pool.
func (t *txLeg) release() {
	s := t.s
	lease := t.lease
	if t.partial {
		// The client started another message before this response ended (not TDS without
		// MARS): the backend holds part of it and must never serve anyone else.
		lease.Taint(pool.TaintRequestInFlight)
		lease.Discard()
		t.unbind()
		s.protocolFailure("a request was sent before the previous response ended")
		return
	}
	t.unbind()
	t.q.giveBack(lease, t.key.Identity, s.f.now())
	s.relay.pending = 0
	s.flushPoolStats(false)
}

// unbind detaches the leg from its backend connection (the lease is settled by the caller).
func (t *txLeg) unbind() {
	if t.lease != nil {
		t.lease.Conn().isolation = t.binding.BackendIsolation()
		t.fleetUnbound(t.lease.Conn())
	}
	if t.bind != nil {
		t.bind.c.SetHandler(nil)
		t.bind.c.PauseReads(false)
		if !t.connGone {
			t.s.conn.DecGauge(t.s.bucket.stats.tx.bound, 1)
		}
	}
	t.bind, t.lease, t.ack, t.partial = nil, nil, nil, false
}

// syncPins shows the binding's pins in the session's pin gauges and the fleet view.
func (t *txLeg) syncPins() {
	for p := txpool.Pin(0); p < txpool.NumPins; p++ {
		t.s.setPin(txPinReasons[p], t.binding.PinnedBy(p))
	}
}

// destroyed ends the leg when Envoy destroyed the filter without a close event: the Envoy
// connection is gone and must not be touched.
func (t *txLeg) destroyed() {
	if !t.closed {
		t.connGone = true
		t.close()
	}
}

// close ends the leg with the session (finish, or destroyed). A bound backend in the middle of
// a request or with pinned state open (a transaction's locks) is closed, so the server ends
// that state now; a bound one without either goes back to the pool.
func (t *txLeg) close() {
	if t.closed {
		return
	}
	t.closed = true
	t.endFleet()
	if t.waiter != nil {
		t.leaveQueue(t.waiter)
		t.waiter = nil
		t.s.stopTimer()
	}
	lease := t.lease
	if lease == nil {
		return
	}
	bd := t.binding
	if bd.PinnedBy(txpool.PinAppRole) {
		lease.Taint(pool.TaintAppRole)
	}
	if bd.PinnedBy(txpool.PinUnparsed) {
		lease.Taint(pool.TaintUnparsed)
	}
	// An ATTENTION not yet acknowledged: its DONE(ATTN) would reach the next borrower.
	if t.partial || t.ack != nil || bd.ConsumingPrelude() || bd.AttentionPending() || t.s.relay.pending > 0 || t.msg.requested && t.msg.started {
		lease.Taint(pool.TaintRequestInFlight)
	}
	if bd.Pinned() {
		lease.Taint(pool.TaintOpenState)
	}
	t.unbind()
	if lease.Tainted() {
		lease.Discard()
		return
	}
	t.q.giveBack(lease, t.key.Identity, t.s.f.now())
}

// txBackendConn makes a backend.Conn's handler type explicit for the compiler (the bind is
// a backend.Handler).
var _ backend.Handler = (*txBind)(nil)

// txLoginCheckDelay spaces the checks of a queued TRANSACTION-mode login for a recorded reply.
const txLoginCheckDelay = 20 * time.Millisecond

// armTxLoginCheck: a login of a TRANSACTION bucket that waits for a slot (its key had no
// recorded reply yet) is answered as soon as another client's real login of the key has
// recorded one. Without this, the first clients of a key arriving together would all wait for
// slots that the pool keeps.
func (s *session) armTxLoginCheck() {
	if s.bucket.tx != nil && s.pool.keyed && s.ph == phWaitSlot {
		s.armTimer(txLoginCheckDelay, s.onTxLoginCheck)
	}
}

func (s *session) onTxLoginCheck() {
	b := s.bucket
	if s.ph != phWaitSlot || s.cancelAcquire == nil {
		return
	}
	if reply, _ := b.pool.Recorded(s.pool.key, s.f.now()); reply == nil {
		// Still no recording: as in session pooling, an idle backend (another key's first)
		// is closed to free its slot for this login.
		b.pool.EvictIdle(s.pool.key.Identity)
		s.armTimer(txLoginCheckDelay, s.onTxLoginCheck)
		return
	}
	if s.cancelAcquire() {
		s.conn.IncCounter(b.stats.slotCancelled, 1)
	} // else the grant is on its way; onSlot gives it back (the phase is not wait_slot any more)
	s.cancelAcquire = nil
	s.conn.DecGauge(b.stats.sessionsQueued, 1)
	s.ph = phLogin // not waiting for a slot any more
	if !s.servedFromRecordedReply(s.pool.login) {
		s.finishWith(host.NoFlush, "tdspool_login_lost")
	}
}

// waitForKeysFirstLogin: the clients of a key that arrive together (an application starting
// its driver pool) would each log in for real, and each backend would stay in the pool. Only
// the first does; the others wait for its recorded reply and are answered from it. A login
// that waits longer than the queue timeout, or whose first login ended without a recording,
// logs in for real itself. False: this session is the key's real login (or not a
// TRANSACTION-mode one); it goes on to wait for a slot.
func (s *session) waitForKeysFirstLogin() bool {
	b := s.bucket
	if b.tx == nil || !s.pool.keyed {
		return false
	}
	if b.tx.startFirstLogin(s.pool.key.Identity, false) {
		s.txFirstLogin = true
		return false
	}
	s.ph = phWaitSlot // no slot asked for: the phase only holds the login back
	s.acquiredAt = s.f.now()
	s.armTimer(txLoginCheckDelay, s.onFirstLoginWait)
	return true
}

func (s *session) onFirstLoginWait() {
	b := s.bucket
	if s.ph != phWaitSlot || s.cancelAcquire != nil {
		return
	}
	now := s.f.now()
	if reply, _ := b.pool.Recorded(s.pool.key, now); reply != nil {
		s.ph = phLogin
		if !s.servedFromRecordedReply(s.pool.login) {
			s.finishWith(host.NoFlush, "tdspool_login_lost")
		}
		return
	}
	if b.tx.firstLoginUnderWay(s.pool.key.Identity) && now.Sub(s.acquiredAt) < b.cfg.QueueTimeout.AsDuration() {
		s.armTimer(txLoginCheckDelay, s.onFirstLoginWait)
		return
	}
	b.tx.startFirstLogin(s.pool.key.Identity, true)
	s.txFirstLogin = true
	s.queueForSlot(s.pool.login)
}

// endTxFirstLogin: the session's real login of its key is over (recorded, refused or gone).
func (s *session) endTxFirstLogin() {
	if s.txFirstLogin {
		s.txFirstLogin = false
		s.bucket.tx.endFirstLogin(s.pool.key.Identity)
	}
}
