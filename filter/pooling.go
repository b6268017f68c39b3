package filter

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/tdspool/tdspool/envoy/host"
	"github.com/tdspool/tdspool/filter/pool"
	"github.com/tdspool/tdspool/proto/tdspoolpb"
	"github.com/tdspool/tdspool/tds"
)

// Session pooling (pool mode SESSION, module-owned leg only). A client's LOGIN7 is keyed
// (pool.KeyFromLogin7); a warm backend of the key answers it with the recorded login reply and
// no backend login at all, and the client's first request carries RESETCONNECTION, whose
// acknowledgement the client never sees. Without one the session logs in for real as before,
// and the backend, its recorded reply and its slot go to the pool. When the client leaves the
// backend goes back to its key's idle stack, or is closed if the session tainted it.
//
// Every client of a pooled bucket is given listener.max_packet_size, and every backend of it
// is logged in with that size, so a backend fits any later client without re-framing.

// pooledBackend is a module-owned connection in a bucket's pool, with the SPID its login
// reply carried (replayed login replies carry it too, as the server's would).
type pooledBackend struct {
	c    backendConn
	spid uint16
	pool *bucketPool
	kill *slotKill // the route of an operator's kill of its slot's lease

	mu sync.Mutex
	// killSession posts a kill to the session using the backend now (nil while idle).
	killSession func() bool

	// replay is the last login reply replayed to a client of this backend, framed: the
	// clients of a backend share its key, so the next one almost always gets the same bytes.
	// Only the session the backend is lent to touches it.
	replay replayCache

	// isolation is the session's transaction isolation level as the last transaction-mode
	// binding knew it ("" the login's, txpool.UnknownIsolation); a reset keeps it, so the
	// next borrower's prelude sets its own level when they may differ.
	isolation string
}

// replayCache is a framed replayed login reply and what it was built from.
type replayCache struct {
	reply                 *tds.LoginReply
	ackWanted             bool // the client asked for a FEATUREEXTACK
	packetSize, frameSize int
	framed                []byte
}

// replayTo returns the framed login reply for client (given packetSize, framed at frameSize
// with the backend's SPID), reusing the previous client's when it was built the same way.
// The bytes are only read (written to the client).
func (p *pooledBackend) replayTo(reply *tds.LoginReply, client *tds.Login7, packetSize, frameSize int) []byte {
	// What AppendReplay reads of the client besides its features, which the key fixes.
	ackWanted := len(client.Features) > 0 || client.OptionFlags3&tds.Login7Extension != 0
	c := &p.replay
	if c.framed == nil || c.reply != reply || c.ackWanted != ackWanted || c.packetSize != packetSize || c.frameSize != frameSize {
		payload := reply.AppendReplay(nil, client, packetSize)
		*c = replayCache{reply: reply, ackWanted: ackWanted, packetSize: packetSize, frameSize: frameSize,
			framed: tds.AppendPacketsSPID(nil, tds.PacketReply, 0, p.spid, payload, frameSize)}
	}
	return c.framed
}

// setUser records the session using the backend (nil: back in the pool).
func (p *pooledBackend) setUser(killSession func() bool) {
	p.mu.Lock()
	p.killSession = killSession
	p.mu.Unlock()
}

// killed: an operator killed the lease of the backend's slot. The session using it is
// killed (and its backend closed with it); an idle backend is closed and its slot freed.
func (p *pooledBackend) killed() {
	p.mu.Lock()
	k := p.killSession
	p.mu.Unlock()
	if k != nil && k() {
		return
	}
	p.pool.CloseIdle(func(c *pooledBackend) bool { return c == p })
}

// slotKill routes an operator's kill of a slot's lease (tdspoolctl kill) to what holds the
// slot now: the session that acquired it, or the pooled backend it went to with its slot.
type slotKill struct {
	mu      sync.Mutex
	session func() bool // posts the kill to the acquiring session
	backend *pooledBackend
	done    bool       // killed with nobody to tell: the backend it goes to is closed
	fleet   fleetLease // the slot's holder record in the fleet view (fleet.go)
}

func (k *slotKill) kill() {
	k.mu.Lock()
	b, sess := k.backend, k.session
	k.done = b == nil
	k.mu.Unlock()
	switch {
	case b != nil:
		b.killed()
	case sess != nil:
		sess()
	}
}

// attach moves the slot (and its kill route) to backend b. False: the lease was killed
// before b had it, and b must be closed.
func (k *slotKill) attach(b *pooledBackend) bool {
	if k == nil {
		return true
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.done && k.session == nil {
		return false
	}
	k.backend, k.session = b, nil
	b.kill = k
	return true
}

func (p *pooledBackend) Close()      { p.c.Close() }
func (p *pooledBackend) Alive() bool { return p.c.Alive() }

// AfterClose: the pool releases a backend's slot once its connection is really gone (the
// server has ended the session), as on the unpooled module leg.
func (p *pooledBackend) AfterClose(fn func()) { p.c.AfterClose(fn) }

// bucketPool is a pooled bucket's pool plus what the session needs to use it.
type bucketPool struct {
	*pool.Pool[*pooledBackend]

	warm *warmer // nil unless min_idle > 0

	mu        sync.Mutex
	shown     pool.Stats // what Envoy's stats already have
	shownWarm [2]uint64  // warm-up failures and successes Envoy has
	lastFlush time.Time
}

// poolStats are a bucket's pool gauges and counters in Envoy.
type poolStats struct {
	idle, active                                                     host.MetricID // gauges
	keys                                                             host.MetricID // gauge: keys holding a backend
	borrowWaitUs                                                     host.MetricID // histogram: accept → warm backend lent
	borrowed, created, loginsSaved, resetFailures, evictions, closed host.MetricID // counters
	// relogins: failed resets replaced by a hidden login (counted by the session).
	relogins host.MetricID
	// returnWaits: logins that found every backend of their key lent and waited for one.
	returnWaits host.MetricID
	// warmed, warmupFailures: warm-up logins that joined the pool, and failed ones.
	warmed, warmupFailures host.MetricID
}

// poolStatsInterval spaces the pool's stat updates (each is a snapshot under the pool's lock
// and a few C calls).
const poolStatsInterval = time.Second

// flush hands the pool's counters to Envoy through conn (the ABI updates stats only through a
// live connection), at most once per poolStatsInterval unless forced.
func (bp *bucketPool) flush(conn host.Conn, st *poolStats, now time.Time, force bool) {
	bp.mu.Lock()
	defer bp.mu.Unlock()
	if !force && now.Sub(bp.lastFlush) < poolStatsInterval {
		return
	}
	bp.lastFlush = now
	cur := bp.Totals()
	old := &bp.shown
	// Gauges move by this pool's change, not set to its value: the filter chains of one
	// listener each have a pool of the bucket and write the same stats, which then sum them.
	moveGauge(conn, st.idle, cur.Idle, old.Idle)
	moveGauge(conn, st.active, cur.Active, old.Active)
	moveGauge(conn, st.keys, cur.PooledKeys, old.PooledKeys)
	for _, c := range [...]struct {
		id       host.MetricID
		now, was uint64
	}{
		{st.borrowed, cur.Borrowed, old.Borrowed}, {st.created, cur.Created, old.Created},
		{st.loginsSaved, cur.LoginsSaved, old.LoginsSaved}, {st.resetFailures, cur.ResetFailures, old.ResetFailures},
		{st.evictions, cur.Evictions, old.Evictions}, {st.returnWaits, cur.ReturnWaits, old.ReturnWaits},
		{st.closed, cur.Closed, old.Closed},
	} {
		if c.now > c.was {
			conn.IncCounter(c.id, c.now-c.was)
		}
	}
	bp.shown = cur
	if w := bp.warm; w != nil {
		for i, c := range [...]struct {
			id  host.MetricID
			now uint64
		}{{st.warmupFailures, w.failures.Load()}, {st.warmed, w.warmed.Load()}} {
			if c.now > bp.shownWarm[i] {
				conn.IncCounter(c.id, c.now-bp.shownWarm[i])
				bp.shownWarm[i] = c.now
			}
		}
		if msg := w.failure(); msg != "" {
			conn.Log(host.LogWarn, "warm-up login failed (retried with a growing pause): "+msg)
		}
	}
}

// moveGauge moves a gauge shared with other writers from was to now.
func moveGauge(conn host.Conn, id host.MetricID, now, was int) {
	switch {
	case now > was:
		conn.IncGauge(id, uint64(now-was))
	case now < was:
		conn.DecGauge(id, uint64(was-now))
	}
}

// flushPoolStats updates the session's bucket pool stats (worker thread).
func (s *session) flushPoolStats(force bool) {
	if b := s.bucket; b != nil && b.pool != nil {
		b.pool.flush(s.conn, &b.stats.pool, s.f.now(), force)
	}
}

// newBucketPool builds the pool of a SESSION- or TRANSACTION-mode bucket (nil for the others).
func newBucketPool(b *tdspoolpb.Bucket) *bucketPool {
	pc := b.GetPool()
	if m := pc.GetMode(); m != tdspoolpb.PoolMode_POOL_MODE_SESSION && m != tdspoolpb.PoolMode_POOL_MODE_TRANSACTION {
		return nil
	}
	return &bucketPool{Pool: pool.New[*pooledBackend](pool.Config{
		MaxIdleTime: pc.MaxIdleTime.AsDuration(),
		MaxLifetime: pc.MaxLifetime.AsDuration(),
		ReauthAfter: pc.ReauthAfter.AsDuration(),
		MinIdle:     int(pc.MinIdle),
	})}
}

// poolState is a session's part in pooling.
type poolState struct {
	key   pool.Key
	keyed bool        // key is set: the login may be served by or given to the pool
	login *tds.Login7 // the login as sent to the backend (its features trim a replayed reply)
	lease *pool.Lease[*pooledBackend]
	// loginWire collects the backend's login response (wire form) to record it.
	loginWire []byte
	// reset: the first request of a reused backend is marked and its reply's ack consumed.
	resetPending bool
	marker       tds.ResetMarker
	ack          *tds.ResetAckConsumer
	// sent keeps the client bytes written to a reused backend until its reset is
	// acknowledged, so a failed reset can be retried on another one (nil past maxResend).
	sent     []byte
	sentLost bool
	// attnSent: the client sent an ATTENTION while the reset's acknowledgement was awaited.
	attnSent bool
	// slotKill routes an operator's kill of the slot this session acquired.
	slotKill *slotKill
	// cancelWait withdraws the session's wait for a lent backend of its key (waitForReturn);
	// nil when it is not waiting.
	cancelWait func() bool
	// relogin is the prepared LOGIN7 of a session answered from the pool (as a backend gets
	// it), kept until its reset is acknowledged: a backend that fails the reset, with no other
	// idle one of the key, is replaced by a hidden login with it. It is encoded only then (a
	// login from the pool costs no LOGIN7 encoding). Never logged.
	relogin *tds.Login7
}

// dropLogin7 drops the kept LOGIN7.
func (p *poolState) dropLogin7() {
	p.relogin = nil
}

// maxLoginWire bounds the recorded login response with its packet headers.
const maxLoginWire = tds.MaxLoginReplySize + 64*tds.HeaderSize

// maxPooledPacketSize caps the packet size of pooled backends, and so of their clients, at
// one TLS record: mssql-jdbc refuses a TDS 7 TLS session that negotiated more ("SSL
// encryption cannot be used with a network packet size larger than 16384 bytes").
const maxPooledPacketSize = 16384

// pooledPacketSize is the packet size every backend login of a pooled bucket asks for (and
// every client of the bucket is given): listener.max_packet_size, at most one TLS record.
func (f *Factory) pooledPacketSize() uint32 {
	return min(f.cfg.Listener.MaxPacketSize, maxPooledPacketSize)
}

// prepareLogin rewrites a pooled bucket's LOGIN7 for the backend: the pooled packet size (so
// every backend fits every client) and no SESSIONRECOVERY. It keys the login unless it must
// have a backend of its own. It reports whether the login was changed.
func (s *session) prepareLogin(login *tds.Login7) bool {
	b := s.bucket
	if b.pool == nil {
		return false
	}
	changed := tds.StripSessionRecovery(login)
	if size := s.f.pooledPacketSize(); login.PacketSize != size {
		login.PacketSize, changed = size, true
	}
	key, why := pool.KeyFromLogin7(b.cfg.Name, login, s.f.hasher)
	if why != pool.Poolable {
		s.conn.Log(host.LogDebug, fmt.Sprintf("bucket %s: login not pooled (%s)", b.cfg.Name, why))
		return changed
	}
	s.pool.key, s.pool.keyed, s.pool.login = key, true, login
	return changed
}

// servedFromPoolAfterGrant is a second look at the pool once a slot is granted: a client that
// just left may have given its backend back meanwhile (its close and this login run on
// different workers). Then the new slot goes back and no backend login happens.
func (s *session) servedFromPoolAfterGrant() bool {
	if !s.pool.keyed || s.bucket.pool == nil {
		return false
	}
	release := s.release
	s.release = nil
	if !s.servedFromPool(s.pool.login) {
		s.release = release
		return false
	}
	release()
	s.conn.IncCounter(s.bucket.stats.slotReleased, 1)
	return true
}

// servedFromPool answers the client's login from a warm backend of its key. False: there is
// none; the session logs in for real.
func (s *session) servedFromPool(login *tds.Login7) bool {
	b := s.bucket
	if b.pool == nil || !s.pool.keyed {
		return false
	}
	lease, miss := b.pool.Borrow(s.pool.key, s.f.now())
	if lease == nil {
		s.conn.Log(host.LogDebug, fmt.Sprintf("bucket %s: pool miss (%s)", b.cfg.Name, miss))
		return false
	}
	pb := lease.Conn()
	pb.setUser(s.killPoster())
	leg := &moduleLeg{s: s, c: pb.c}
	s.pool.lease, s.pool.resetPending = lease, true
	s.leg = leg
	pb.c.SetHandler(leg)
	s.toClient(pb.replayTo(lease.Reply(), login, int(login.PacketSize), s.pktSize))
	s.pktSize = int(login.PacketSize)
	wait := s.f.now().Sub(s.loginStarted)
	b.pool.ObserveBorrowWait(wait)
	s.conn.RecordHistogram(b.stats.pool.borrowWaitUs, uint64(wait.Microseconds()))
	s.loginAck = true
	s.pool.login, s.pool.relogin = nil, login
	clear(s.login7) // framed already when the login waited first
	s.login7 = nil
	s.onLoginResponseDone()
	s.flushPoolStats(false)
	s.fleetLent(pb, login)
	return true
}

// maxReturnWait bounds how long a login whose key has every backend lent out waits for one to
// come back before it logs in for real. A client that closes and reconnects at once (a
// connect/query/close loop) has its close and its next login handled on different Envoy
// workers, in either order; without this wait the login wins about one race in a hundred on
// a busy machine and opens a second backend. A real backend login costs more than this.
const maxReturnWait = 10 * time.Millisecond

// waitForReturn parks a pool miss whose key has backends lent out until one comes back (the
// pool wakes it: pool.WaitReturn), up to maxReturnWait; then the session queues for a slot as
// usual. False: nothing is lent, no reason to wait.
func (s *session) waitForReturn() bool {
	b := s.bucket
	if b.pool == nil || !s.pool.keyed {
		return false
	}
	deadline := s.f.now().Add(maxReturnWait)
	if !s.awaitReturn(deadline) {
		return false
	}
	s.ph = phWaitSlot // holds client bytes; no slot is asked for yet
	s.armTimer(maxReturnWait, func() {
		if s.stopReturnWait() {
			s.queueForSlot(s.pool.login)
		}
	})
	return true
}

// awaitReturn registers the session with its key's pool to be woken, on its own worker, when
// a lent backend of the key comes back. False: nothing of the key is lent.
func (s *session) awaitReturn(deadline time.Time) bool {
	conn := s.conn
	cancel, ok := s.bucket.pool.WaitReturn(s.pool.key, func() {
		conn.Post(func() { s.onBackendReturned(deadline) })
	})
	s.pool.cancelWait = cancel
	return ok
}

// stopReturnWait ends the session's wait for a returned backend; false when it was not waiting.
func (s *session) stopReturnWait() bool {
	cancel := s.pool.cancelWait
	if cancel == nil {
		return false
	}
	s.pool.cancelWait = nil
	cancel()
	return true
}

// onBackendReturned runs on the worker when a backend of the session's key came back: it
// borrows it, or waits on if another login took it first and more are lent, or else queues
// for a slot.
func (s *session) onBackendReturned(deadline time.Time) {
	if s.pool.cancelWait == nil || s.finished || s.ph != phWaitSlot {
		return // woken after its wait ended (the deadline, the client gone)
	}
	s.pool.cancelWait = nil
	switch {
	case s.servedFromPool(s.pool.login):
	case s.f.now().Before(deadline) && s.awaitReturn(deadline):
	default:
		s.queueForSlot(s.pool.login) // re-arms the session's timer
	}
}

// recordLoginBytes keeps the backend's login response for the pool (bounded).
func (s *session) recordLoginBytes(chunks [][]byte) {
	if !s.pool.keyed || s.pool.loginWire == nil && len(chunks) == 0 {
		return
	}
	for _, c := range chunks {
		if len(s.pool.loginWire)+len(c) > maxLoginWire {
			s.pool.keyed = false // not a login reply we could replay; no pooling for it
			s.pool.loginWire = nil
			return
		}
		s.pool.loginWire = append(s.pool.loginWire, c...)
	}
}

// adoptBackend runs when a real login of a keyed session succeeded (true) or was refused
// (false) on the module leg: the backend, its recorded reply and the session's slot go to the
// pool, which hands the session a lease on it.
func (s *session) adoptBackend(ok bool) {
	b, m := s.bucket, s.moduleLeg()
	if b.pool == nil || !s.pool.keyed || m == nil || s.pool.lease != nil {
		return
	}
	wire := s.pool.loginWire
	s.pool.loginWire = nil
	if !ok {
		b.pool.LoginRefused(s.pool.key)
		return
	}
	var r tds.Reassembler
	r.Feed(wire)
	msg, err := r.Next()
	var reply *tds.LoginReply
	if err == nil {
		reply, err = tds.ParseLoginReply(msg.Payload)
	}
	if err != nil {
		s.conn.Log(host.LogInfo, fmt.Sprintf("bucket %s: login reply not recorded: %v", b.cfg.Name, err))
		reply = nil
	}
	spid := uint16(0)
	if h, herr := tds.DecodeHeader(wire); herr == nil {
		spid = h.SPID
	}
	// The pool holds the slot as long as it holds the backend; its release is counted when
	// it happens.
	release := s.f.coordStats.countedRelease(b.cfg.Name, s.release)
	s.release = nil
	pb := &pooledBackend{c: m.c, spid: spid, pool: b.pool}
	s.pool.slotKill.attach(pb)
	pb.setUser(s.killPoster())
	b.pool.warm.learn(s.pool.login)
	s.pool.lease = b.pool.Adopt(s.pool.key, pb, reply, release, s.f.now())
}

// killPoster posts an operator's kill to this session; false once the connection is gone.
func (s *session) killPoster() func() bool {
	conn := s.conn
	return func() bool { return conn.Post(s.onKill) }
}

func (s *session) moduleLeg() *moduleLeg {
	m, _ := s.leg.(*moduleLeg)
	return m
}

// markReset sets RESETCONNECTION on the first request a reused backend gets. False: the
// request cannot carry it and the session has been closed.
func (s *session) markReset(chunk []byte) bool {
	p := &s.pool
	if !p.resetPending || p.marker.Done() {
		return true
	}
	if p.marker.Seen() == 0 && isAttention(chunk) {
		// The client cancels with nothing running: SQL Server acknowledges it, so the idle
		// backend does; the reset waits for the first real request.
		return true
	}
	done, err := p.marker.Mark(chunk)
	if err != nil {
		// Without a reset the client would see the previous client's session.
		s.conn.Log(host.LogInfo, fmt.Sprintf("bucket %s: first request of a reused backend: %v", s.bucket.cfg.Name, err))
		p.lease.Discard()
		s.finishWith(host.FlushWrite, "tdspool_reset_impossible")
		return false
	}
	if done {
		p.ack = &tds.ResetAckConsumer{}
	}
	return true
}

// isAttention reports whether chunk is a whole ATTENTION packet (header only, MS-TDS
// §2.2.1.7), the way a client sends one on its own.
func isAttention(chunk []byte) bool {
	h, err := tds.DecodeHeader(chunk)
	return err == nil && h.Type == tds.PacketAttention && int(h.Length) == tds.HeaderSize && len(chunk) == tds.HeaderSize
}

// maxResend bounds the client bytes kept for resending after a failed reset.
const maxResend = 256 << 10

// keepSent records client bytes written to a reused backend before its reset is settled.
func (s *session) keepSent(b []byte) {
	p := &s.pool
	if !p.resetPending || p.sentLost || p.marker.Seen() == 0 { // an ATTENTION before any request is not resent
		return
	}
	if len(p.sent)+len(b) > maxResend {
		p.sent, p.sentLost = nil, true
		return
	}
	p.sent = append(p.sent, b...)
}

// retryReset moves the session to another idle backend of its key after the reset failed
// (no acknowledgement, or the backend went away first) and resends what the client sent, so
// the client never notices. False: no other backend, or too much to resend.
func (s *session) retryReset() bool {
	p, b := &s.pool, s.bucket
	if p.sentLost || b.pool == nil {
		return false
	}
	lease, _ := b.pool.Borrow(p.key, s.f.now())
	if lease == nil {
		return false
	}
	old := s.moduleLeg()
	// A new leg object: events still posted by the failed backend find s.leg changed and
	// are dropped.
	lease.Conn().setUser(s.killPoster())
	m := &moduleLeg{s: s, c: lease.Conn().c, lastActive: old.lastActive}
	s.leg, p.lease, p.ack = m, lease, nil
	m.c.SetHandler(m)
	if !s.resend(m) {
		return false
	}
	s.conn.Log(host.LogInfo, fmt.Sprintf("bucket %s: reset failed; the request went to another pooled backend", b.cfg.Name))
	return true
}

// consumeResetAck takes the reset's acknowledgement out of the first response of a reused
// backend. It returns what goes on to the client, or false when the session must end.
func (s *session) consumeResetAck(b []byte) ([]byte, bool) {
	p := &s.pool
	if p.ack == nil {
		return b, true
	}
	out, err := p.ack.Feed(nil, b)
	if err == nil && !p.ack.Settled() {
		return nil, true
	}
	if err == nil && p.ack.Acked() {
		p.ack, p.resetPending, p.sent = nil, false, nil
		p.dropLogin7()
		p.lease.ResetDone(true)
		s.conn.IncCounter(s.bucket.stats.resets, 1)
		return out, true
	}
	if err == nil && p.attnSent {
		// The client cancelled its first request before the server said anything: the
		// response is the ATTENTION's acknowledgement, without the reset's, and whether the
		// reset ran is unknown. The client gets its answer; its next request resets again.
		p.ack, p.attnSent, p.sent, p.marker = nil, false, nil, tds.ResetMarker{}
		return out, true
	}
	// The reset did not happen as asked: the backend is not trusted with this client.
	if err == nil {
		err = errors.New("no reset acknowledgement")
	}
	s.conn.Log(host.LogWarn, fmt.Sprintf("bucket %s: reset of a reused backend failed: %v", s.bucket.cfg.Name, err))
	return nil, s.resetFailed()
}

// resend writes what the client sent to the failed backend to its replacement m; the reset's
// acknowledgement is then awaited there (nothing sent yet: the next request is marked).
func (s *session) resend(m *moduleLeg) bool {
	p := &s.pool
	if len(p.sent) == 0 {
		return true
	}
	p.ack = &tds.ResetAckConsumer{}
	_, err := m.c.Write(p.sent)
	return err == nil
}

// resetFailed replaces the backend whose reset failed: another idle backend of the key, or
// else a hidden login with the session's kept LOGIN7; when neither is possible the session
// ends. It reports whether the session goes on.
func (s *session) resetFailed() bool {
	failed := s.pool.lease
	s.pool.lease = nil
	if s.retryReset() {
		failed.ResetDone(false)
		return true
	}
	if s.reloginAfterFailedReset(failed) {
		return true
	}
	failed.ResetDone(false)
	s.finishWith(host.FlushWrite, "tdspool_reset_failed")
	return false
}

// backendGoneBeforeReset: a reused backend closed before acknowledging its reset (it died
// while idle without anyone noticing); handled like a failed reset.
func (s *session) backendGoneBeforeReset() bool {
	if s.pool.lease == nil || !s.pool.resetPending {
		return false
	}
	s.conn.Log(host.LogInfo, fmt.Sprintf("bucket %s: reused backend closed before its reset", s.bucket.cfg.Name))
	s.resetFailed()
	return true
}

// returnBackend gives the leased backend back to the pool (or has it closed) at the end of
// the session. It reports whether the pool took it, so the leg must not close it.
func (s *session) returnBackend() bool {
	p := &s.pool
	p.dropLogin7()
	if p.lease == nil {
		return false
	}
	r := &s.relay
	if r.pins[pinAppRole] {
		p.lease.Taint(pool.TaintAppRole)
	}
	if r.pins[pinTransaction] || r.pins[pinCursor] {
		// Idle, the backend would keep the transaction's (or a cursor's) locks until the next
		// borrower's reset; closed, the server rolls back at once.
		p.lease.Taint(pool.TaintOpenState)
	}
	if !r.inspect || s.ph != phRelay && s.ph != phClosed {
		p.lease.Taint(pool.TaintUnparsed)
	}
	s.isolationTaint(p.lease)
	if r.pending > 0 || p.ack != nil || p.resetPending && p.marker.Done() || r.client.MidMessage() {
		p.lease.Taint(pool.TaintRequestInFlight)
	}
	pb := p.lease.Conn()
	s.fleetReturned(pb)
	pb.setUser(nil)
	pb.c.SetHandler(nil)
	pb.c.PauseReads(false)
	p.lease.Return(s.f.now())
	p.lease = nil
	if s.finished { // not from OnDestroy, where the Envoy connection is gone
		s.flushPoolStats(true)
	}
	return true
}

// reloginAfterFailedReset replaces a reused backend whose reset failed, when the key has no
// other idle one, by a hidden login with the session's kept LOGIN7; the client's bytes wait in
// Envoy's buffer meanwhile and what it had sent is resent, so it never notices. The failed
// backend's slot passes to the new connection once the failed one is gone, so the cap never
// counts both. False: nothing kept to log in or resend with.
func (s *session) reloginAfterFailedReset(failed *pool.Lease[*pooledBackend]) bool {
	p := &s.pool
	if p.sentLost || p.relogin == nil || s.bucket.target == nil {
		return false
	}
	pb := failed.Conn()
	slot := failed.DetachFailed()
	// Framed at the packet size of a connection that has not logged in yet.
	login7 := tds.AppendPackets(nil, tds.PacketLogin7, 0, p.relogin.AppendLogin7(nil), tds.DefaultPacketSize)
	p.relogin = nil
	rl := &reloginLeg{s: s, lastActive: s.moduleLeg().lastActive, kill: pb.kill}
	s.leg = rl
	pb.c.SetHandler(nil)
	pb.c.Close()
	conn := s.conn
	// The failed connection's goroutine runs this once it is gone; the login starts on the
	// worker. A refused post means the client is gone: the slot goes back; so does the
	// leg's close when Envoy dropped the post unrun (rl.slot).
	pb.c.AfterClose(func() {
		rl.slot.put(slot)
		if !conn.Post(func() {
			if slot := rl.slot.take(); slot != nil {
				rl.start(login7, slot)
			}
		}) && rl.slot.take() != nil {
			clear(login7)
			slot()
		}
	})
	s.conn.Log(host.LogInfo, fmt.Sprintf("bucket %s: reset failed and no other pooled backend; logging in a new one", s.bucket.cfg.Name))
	return true
}

// reloginLeg is a session's leg while a hidden login replaces its failed backend: client
// bytes stay in Envoy's buffer, and a session that ends cancels the login.
type reloginLeg struct {
	s          *session
	lastActive time.Time
	kill       *slotKill     // the slot's kill route, passed on to the new backend
	slot       grantInFlight // the failed backend's slot until start takes it
	cancel     func()
	closed     bool
}

func (r *reloginLeg) start(login7 []byte, slot func()) {
	s := r.s
	if r.closed || s.finished || s.leg != r {
		clear(login7)
		slot()
		return
	}
	r.cancel = s.f.startHiddenLogin(hiddenLoginRequest{Bucket: s.bucket, Login7: login7, Release: slot,
		Deliver: s.conn.Post, Done: r.done})
}

// done runs on the worker with the hidden login's outcome.
func (r *reloginLeg) done(res hiddenLoginResult) {
	s, p, b := r.s, &r.s.pool, r.s.bucket
	if s.finished || s.leg != r {
		if res.OK() {
			closeReleasing(res.Conn, res.Release)
		}
		return
	}
	if !res.OK() {
		s.conn.Log(host.LogWarn, fmt.Sprintf("bucket %s: replacing a pooled backend: %v", b.cfg.Name, res.Err))
		if len(res.Refused) > 0 {
			// The server refused the key's login (a changed password, a disabled login): its
			// own errors answer the client's request.
			b.pool.LoginRefused(p.key)
			s.toClient(tds.AppendPacketsSPID(nil, tds.PacketReply, 0, res.SPID, res.Response, s.pktSize))
			s.finishWith(host.FlushWrite, "tdspool_relogin_refused")
			return
		}
		s.conn.IncCounter(b.stats.backendUnavailable, 1)
		s.refuse(backendUnavailable(b.cfg.Name, res.Err.Error()))
		return
	}
	pb := &pooledBackend{c: res.Conn, spid: res.SPID, pool: b.pool}
	if !r.kill.attach(pb) {
		closeReleasing(res.Conn, res.Release)
		s.finishWith(host.NoFlush, "tdspool_killed")
		return
	}
	pb.setUser(s.killPoster())
	lease := b.pool.Adopt(p.key, pb, res.Reply, res.Release, s.f.now())
	m := &moduleLeg{s: s, c: res.Conn, lastActive: r.lastActive}
	s.leg, p.lease, p.ack = m, lease, nil
	m.c.SetHandler(m)
	s.conn.IncCounter(b.stats.pool.relogins, 1)
	if !s.resend(m) {
		s.finishWith(host.FlushWrite, "tdspool_backend_write_failed")
		return
	}
	if n := s.conn.ReadBufferLen(); n > 0 {
		m.fromClient(n)
	}
}

func (r *reloginLeg) open() bool                 { return true }
func (r *reloginLeg) sendLogin([]byte)           {}
func (r *reloginLeg) relayStarted()              {}
func (r *reloginLeg) fromClient(int) host.Status { return host.StopIteration } // kept in Envoy's buffer
func (r *reloginLeg) clientWatermark(bool)       {}
func (r *reloginLeg) clientEnded()               { r.s.finishWith(host.FlushWrite, "tdspool_client_closed") }
func (r *reloginLeg) close() {
	r.closed = true
	r.s.pool.dropLogin7()
	if r.cancel != nil {
		r.cancel()
	}
	if slot := r.slot.take(); slot != nil {
		slot() // the post that would have started the login did not run
	}
}

// While a session of a pooled bucket waits for a slot it checks the pool every
// evictCheckDelay: a backend of its own key that came back idle meanwhile serves it at once
// (that backend holds the slot it is waiting for), otherwise an idle backend of another key
// (the oldest first) is closed to free its slot, one per check.
const evictCheckDelay = 20 * time.Millisecond

func (s *session) armEviction() {
	if s.bucket.pool == nil || s.bucket.tx != nil { // transaction mode checks on its own
		return
	}
	s.armTimer(evictCheckDelay, s.onEvictCheck)
}

func (s *session) onEvictCheck() {
	b := s.bucket
	if s.ph != phWaitSlot || b.pool == nil || s.cancelAcquire == nil {
		return
	}
	if s.pool.keyed && b.pool.HasIdle(s.pool.key) && s.servedFromPoolWhileWaiting() {
		return
	}
	b.pool.EvictIdle(s.pool.key.Identity)
	s.armTimer(evictCheckDelay, s.onEvictCheck)
}

// servedFromPoolWhileWaiting gives up the slot wait for an idle backend of the session's key.
// False: the borrow missed after all (its limits); the session keeps waiting.
func (s *session) servedFromPoolWhileWaiting() bool {
	b := s.bucket
	cancel := s.cancelAcquire
	s.cancelAcquire = nil
	s.ph = phLogin // a grant already in flight is given back by onSlot
	if !s.servedFromPool(s.pool.login) {
		s.ph, s.cancelAcquire = phWaitSlot, cancel
		return false
	}
	if cancel() {
		s.conn.IncCounter(b.stats.slotCancelled, 1)
	}
	s.conn.DecGauge(b.stats.sessionsQueued, 1)
	return true
}

// poolSweeper closes idle backends past their limits, once a second, until stopped.
type poolSweeper struct {
	stop chan struct{}
	once sync.Once
	done sync.WaitGroup
}

func startPoolSweeper(pools []*bucketPool, now func() time.Time) *poolSweeper {
	ps := &poolSweeper{stop: make(chan struct{})}
	if len(pools) == 0 {
		return ps
	}
	ps.done.Add(1)
	go func() {
		defer ps.done.Done()
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for _, p := range pools { // warm at once, not a second after start
			warmSafely(p.warm, now())
		}
		for {
			select {
			case <-ps.stop:
				return
			case <-t.C:
				for _, p := range pools {
					sweepSafely(p, now())
					warmSafely(p.warm, now())
				}
			}
		}
	}()
	return ps
}

// sweepSafely keeps a panicking Close from ending the sweeper (the slot was released).
func sweepSafely(p *bucketPool, now time.Time) {
	defer func() { _ = recover() }()
	p.Sweep(now)
}

// warmSafely starts the warm-up logins a bucket lacks; a panic does not end the sweeper.
func warmSafely(w *warmer, now time.Time) {
	if w == nil {
		return
	}
	defer func() { _ = recover() }()
	w.tick(now)
}

func (ps *poolSweeper) close() {
	ps.once.Do(func() {
		close(ps.stop)
		ps.done.Wait()
	})
}

// drainPools stops the sweeper and closes every idle pooled backend, giving its slot back;
// backends still lent are closed when their sessions end.
func (f *Factory) drainPools() {
	if f.sweeper != nil {
		f.sweeper.close()
	}
	for _, p := range f.pools {
		func() {
			defer func() { _ = recover() }()
			p.Drain()
		}()
	}
}
