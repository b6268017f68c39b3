package pool

import (
	"fmt"
	"sync"
	"time"

	"github.com/tdspool/tdspool/tds"
)

// Conn is a backend connection as the pool sees it. The backend leg's own
// connection type implements it.
type Conn interface {
	// Close closes the connection. The pool calls it at most once, never
	// while holding its lock, and then calls the connection's release.
	Close()
	// Alive reports whether the connection is still usable: no EOF, error
	// or unexpected bytes seen since it went idle. The pool calls it under
	// its lock, so it must not block (an atomic load).
	Alive() bool
}

// AfterCloser is a Conn whose close completes later (a socket that waits for the server to
// end the session). The pool then releases the slot through AfterClose, once the connection
// is really gone, so the slot never counts two live backends.
type AfterCloser interface {
	AfterClose(fn func())
}

// Config bounds how long backend sessions live in a bucket's pool.
type Config struct {
	// MaxIdleTime closes a backend idle for longer. Zero: no limit.
	MaxIdleTime time.Duration
	// MaxLifetime closes a backend this long after its login, idle or at
	// its next return. Zero: no limit.
	MaxLifetime time.Duration
	// ReauthAfter: once this long has passed since a key's last real login,
	// its next borrow does a real login instead of reusing, so a changed
	// password, a disabled login or a revoked permission takes effect. Zero:
	// every borrow reuses (not recommended).
	ReauthAfter time.Duration
	// MinIdle is how many idle backends the bucket keeps warm with the
	// operator's warm-up credentials.
	MinIdle int
}

// Miss says why Borrow found nothing to reuse; the caller then logs in
// for real on a new backend (taking a slot for it).
type Miss uint8

const (
	// Hit: not a miss.
	Hit Miss = iota
	// MissEmpty: no idle backend of this key.
	MissEmpty
	// MissCredential: the key's backends were logged in with another
	// password (or none yet). The real login lets the server judge this one.
	MissCredential
	// MissReauth: ReauthAfter has passed since the key's last real login.
	MissReauth
	// MissNoRecording: the key's login reply could not be recorded, so a
	// client cannot be answered without a backend login.
	MissNoRecording
	// MissDraining: the pool is draining (Envoy is shutting down).
	MissDraining
	missCount
)

var missNames = [missCount]string{"hit", "empty", "credential", "reauth", "no_recording", "draining"}

func (m Miss) String() string {
	if int(m) < len(missNames) {
		return missNames[m]
	}
	return fmt.Sprintf("Miss(%d)", uint8(m))
}

// entry is one backend connection owned by the pool, idle or lent out.
type entry[C Conn] struct {
	conn      C
	release   func()
	kp        *keyPool[C]
	cred      Credential
	loginAt   time.Time // its real login
	idleSince time.Time
	active    bool
}

// keyPool holds one key's backends and what the pool knows about the key.
type keyPool[C Conn] struct {
	id         Identity
	cred       Credential // the credential the server last accepted for this key
	verifiedAt time.Time  // that real login's time
	reply      *tds.LoginReply
	idle       []*entry[C] // LIFO: the top (last) is the most recently used
	active     int
	// waiters are clients waiting for a lent backend of the key to come back
	// (WaitReturn), oldest first.
	waiters []*returnWaiter
}

// returnWaiter is one WaitReturn call not yet woken or cancelled.
type returnWaiter struct {
	wake func()
	kp   any // the *keyPool it waits on, for Cancel
}

// Pool is one bucket's pool of logged-in backend sessions, generic over the
// backend connection type. The bucket's cap counts backend connections, so
// every connection the pool holds, idle or lent out, keeps the slot it was
// created with; the pool calls that slot's release after closing it.
//
// Concurrency: all methods are safe for concurrent use; one mutex guards
// the pool. Sessions call Borrow, Adopt and the Lease methods from their
// Envoy worker thread; the bucket's maintenance goroutine calls Sweep,
// EvictIdle and WarmupNeeded; Drain comes from Envoy's drain. No method
// blocks on I/O: connections are closed, and slots released, after the
// lock is dropped, on the calling goroutine.
type Pool[C Conn] struct {
	cfg Config

	mu       sync.Mutex
	keys     map[Identity]*keyPool[C]
	draining bool
	idle     int
	active   int
	stats    counters
}

// New returns an empty pool.
func New[C Conn](cfg Config) *Pool[C] {
	return &Pool[C]{cfg: cfg, keys: map[Identity]*keyPool[C]{}}
}

// Lease is a backend lent to one client session. It is used from that
// session's thread only. Exactly one of Return or Discard ends it; later
// calls do nothing.
type Lease[C Conn] struct {
	p      *Pool[C]
	e      *entry[C]
	reused bool
	taints [taintCount]bool
	done   bool
}

// Conn is the leased connection.
func (l *Lease[C]) Conn() C { return l.e.conn }

// Reused reports whether the backend came from the idle stack: the client
// is answered with Reply and the first request must carry RESETCONNECTION.
func (l *Lease[C]) Reused() bool { return l.reused }

// Reply is the key's recorded login reply (nil if none).
func (l *Lease[C]) Reply() *tds.LoginReply {
	l.p.mu.Lock()
	defer l.p.mu.Unlock()
	return l.e.kp.reply
}

// Taint marks the session as one whose backend must not be reused.
func (l *Lease[C]) Taint(t Taint) {
	if t < taintCount {
		l.taints[t] = true
	}
}

// Tainted reports whether any taint was set.
func (l *Lease[C]) Tainted() bool {
	for _, t := range l.taints {
		if t {
			return true
		}
	}
	return false
}

// servable is key's pool when a client of key may be served from it (by a recorded reply,
// and by an idle backend if one is there), or why not, counted as a miss. p.mu is held.
func (p *Pool[C]) servable(key Key, now time.Time) (*keyPool[C], Miss) {
	kp := p.keys[key.Identity]
	miss := Hit
	switch {
	case p.draining:
		miss = MissDraining
	case kp == nil:
		miss = MissEmpty
	case !kp.cred.Equal(key.Credential):
		miss = MissCredential
	case p.cfg.ReauthAfter > 0 && now.Sub(kp.verifiedAt) >= p.cfg.ReauthAfter:
		miss = MissReauth
	case kp.reply == nil:
		miss = MissNoRecording
	}
	if miss != Hit {
		p.stats.misses[miss]++
		return nil, miss
	}
	return kp, Hit
}

// Borrow takes the most recently used idle backend of key, or says why
// there is none. Idle backends that died, outlived MaxIdleTime or
// MaxLifetime, or were logged in with a credential the key no longer has
// are closed on the way, and the next one is tried.
func (p *Pool[C]) Borrow(key Key, now time.Time) (*Lease[C], Miss) {
	var closing []*entry[C]
	defer func() { closeAll(closing) }()
	p.mu.Lock()
	defer p.mu.Unlock()
	kp, miss := p.servable(key, now)
	if miss != Hit {
		return nil, miss
	}
	for len(kp.idle) > 0 {
		e := kp.idle[len(kp.idle)-1]
		kp.idle = kp.idle[:len(kp.idle)-1]
		p.idle--
		if why := p.unusable(e, now); why != "" {
			p.stats.closedIdle(why)
			closing = append(closing, e)
			p.forget(e)
			continue
		}
		e.active = true
		kp.active++
		p.active++
		p.stats.borrowed++
		return &Lease[C]{p: p, e: e, reused: true}, Hit
	}
	p.stats.misses[MissEmpty]++
	return nil, MissEmpty
}

// unusable says why an idle entry cannot be lent ("" if it can).
func (p *Pool[C]) unusable(e *entry[C], now time.Time) string {
	switch {
	case !e.conn.Alive():
		return "died"
	case p.cfg.MaxIdleTime > 0 && now.Sub(e.idleSince) >= p.cfg.MaxIdleTime:
		return "idle_time"
	case p.cfg.MaxLifetime > 0 && now.Sub(e.loginAt) >= p.cfg.MaxLifetime:
		return "lifetime"
	case !e.cred.Equal(e.kp.cred):
		return "credential"
	}
	return ""
}

// Adopt hands the pool a backend that has just completed a real login for
// key, with the slot it holds (release is called exactly once, after the
// pool closes it). reply is the recorded login reply, or nil if it could
// not be recorded. The login proves key's credential: it becomes the key's
// credential, and idle backends logged in with an older one are closed. The
// returned lease is the client's that logged in.
func (p *Pool[C]) Adopt(key Key, conn C, reply *tds.LoginReply, release func(), now time.Time) *Lease[C] {
	e, closing := p.adopt(key, conn, reply, release, now, true)
	closeAll(closing)
	return &Lease[C]{p: p, e: e}
}

// AdoptIdle is Adopt for a warm-up login: the backend goes straight to the
// idle stack. When the pool is draining it is closed at once.
func (p *Pool[C]) AdoptIdle(key Key, conn C, reply *tds.LoginReply, release func(), now time.Time) {
	e, closing := p.adopt(key, conn, reply, release, now, false)
	if e != nil {
		p.mu.Lock()
		if p.draining {
			p.unlink(e)
			closing = append(closing, e)
		}
		p.mu.Unlock()
	}
	closeAll(closing)
}

func (p *Pool[C]) adopt(key Key, conn C, reply *tds.LoginReply, release func(), now time.Time, active bool) (*entry[C], []*entry[C]) {
	p.mu.Lock()
	defer p.mu.Unlock()
	kp := p.keys[key.Identity]
	if kp == nil {
		kp = &keyPool[C]{id: key.Identity}
		p.keys[key.Identity] = kp
	}
	var closing []*entry[C]
	if !kp.cred.Equal(key.Credential) {
		// The server accepted another password for this key: it is the
		// current one. Idle backends of the old one go.
		kp.cred = key.Credential
		for _, old := range kp.idle {
			p.idle--
			p.stats.closedIdle("credential")
			closing = append(closing, old)
		}
		kp.idle = nil
		kp.reply = nil
	}
	kp.verifiedAt = now
	if reply != nil {
		kp.reply = reply
	}
	e := &entry[C]{conn: conn, release: release, kp: kp, cred: key.Credential, loginAt: now, idleSince: now}
	p.stats.created++
	if active {
		e.active = true
		kp.active++
		p.active++
	} else {
		kp.idle = append(kp.idle, e)
		p.idle++
		p.stats.warmed++
	}
	return e, closing
}

// LoginRefused tells the pool that a real login of key was refused by the
// server. If key's credential was the one the pool trusted (a reauth that
// failed: the password changed or the login was disabled), the key is
// forgotten and its idle backends are closed; backends lent out are
// closed when they come back.
func (p *Pool[C]) LoginRefused(key Key) {
	var closing []*entry[C]
	p.mu.Lock()
	if kp := p.keys[key.Identity]; kp != nil && kp.cred.Equal(key.Credential) {
		for _, e := range kp.idle {
			p.idle--
			p.stats.closedIdle("credential")
			closing = append(closing, e)
		}
		kp.idle = nil
		kp.cred = Credential{}
		kp.reply = nil
		p.stats.refusedKeys++
		if kp.active == 0 {
			delete(p.keys, key.Identity)
		}
	}
	p.mu.Unlock()
	closeAll(closing)
}

// ResetDone reports the outcome of the reset that the reused backend's
// first request carried. On failure (no acknowledgement, an error, the
// backend gone) the backend is closed and the lease ends: the caller
// borrows again and resends the request, and the client never notices.
func (l *Lease[C]) ResetDone(ok bool) {
	p := l.p
	p.mu.Lock()
	if ok {
		p.stats.loginsSaved++
		p.mu.Unlock()
		return
	}
	p.stats.resetFailures++
	p.mu.Unlock()
	l.discard()
}

// DetachFailed is ResetDone(false) for a caller that replaces the backend
// itself (a hidden login): the backend leaves the pool without being
// closed, and the caller gets its slot's release, which it must call
// exactly once, after closing the connection. The lease ends.
func (l *Lease[C]) DetachFailed() (release func()) {
	if l.done {
		return nil
	}
	l.done = true
	p := l.p
	p.mu.Lock()
	p.stats.resetFailures++
	p.deactivate(l.e)
	p.forget(l.e)
	wake := p.takeWaiters(l.e.kp)
	p.mu.Unlock()
	wakeAll(wake)
	return l.e.release
}

// Return gives the backend back when its client leaves. It goes on top of
// its key's idle stack unless it must not be reused: tainted, dead, past
// MaxLifetime, logged in with a credential the key no longer has, a key
// without a recorded reply, or a draining pool. Then it is closed.
func (l *Lease[C]) Return(now time.Time) {
	if l.done {
		return
	}
	l.done = true
	p, e := l.p, l.e
	p.mu.Lock()
	why := ""
	for t, set := range l.taints {
		if set {
			p.stats.tainted[t]++
			why = "tainted"
		}
	}
	switch {
	case why != "":
	case p.draining:
		why = "draining"
	case !e.conn.Alive():
		why = "died"
	case p.cfg.MaxLifetime > 0 && now.Sub(e.loginAt) >= p.cfg.MaxLifetime:
		why = "lifetime"
	case !e.cred.Equal(e.kp.cred):
		why = "credential"
	case e.kp.reply == nil:
		why = "no_recording"
	}
	p.deactivate(e)
	if why != "" {
		if p.stats.closedOnReturn == nil {
			p.stats.closedOnReturn = map[string]uint64{}
		}
		p.stats.closedOnReturn[why]++
		p.forget(e)
		wake := p.takeWaiters(e.kp)
		p.mu.Unlock()
		closeAll([]*entry[C]{e})
		wakeAll(wake)
		return
	}
	e.idleSince = now
	e.kp.idle = append(e.kp.idle, e)
	p.idle++
	p.stats.returned++
	wake := p.takeWaiters(e.kp)
	p.mu.Unlock()
	wakeAll(wake)
}

// Discard closes the leased backend instead of returning it (the session
// could not use it, or its client is served by another).
func (l *Lease[C]) Discard() {
	if l.done {
		return
	}
	l.discard()
}

func (l *Lease[C]) discard() {
	l.done = true
	p := l.p
	p.mu.Lock()
	p.deactivate(l.e)
	p.stats.discarded++
	p.forget(l.e)
	wake := p.takeWaiters(l.e.kp)
	p.mu.Unlock()
	closeAll([]*entry[C]{l.e})
	wakeAll(wake)
}

func (p *Pool[C]) deactivate(e *entry[C]) {
	if e.active {
		e.active = false
		e.kp.active--
		p.active--
	}
}

// unlink removes an idle entry from its stack (the lock is held).
func (p *Pool[C]) unlink(e *entry[C]) {
	kp := e.kp
	for i, x := range kp.idle {
		if x == e {
			kp.idle = append(kp.idle[:i], kp.idle[i+1:]...)
			p.idle--
			break
		}
	}
	p.forget(e)
}

// forget drops a key that has nothing left and no credential worth
// remembering (the lock is held).
func (p *Pool[C]) forget(e *entry[C]) {
	kp := e.kp
	if len(kp.idle) == 0 && kp.active == 0 && (kp.cred.IsZero() || kp.reply == nil) {
		if p.keys[kp.id] == kp {
			delete(p.keys, kp.id)
		}
	}
}

// EvictIdle closes the oldest idle backend to free its slot for a waiter
// of key: the oldest of another key, or of key itself when no other key has
// one (a waiter of a key with idle backends is one that must log in for
// real). It reports whether one was closed.
func (p *Pool[C]) EvictIdle(key Identity) bool {
	p.mu.Lock()
	var victim *entry[C]
	for _, own := range []bool{false, true} {
		for id, kp := range p.keys {
			if (id == key) != own || len(kp.idle) == 0 {
				continue
			}
			if oldest := kp.idle[0]; victim == nil || oldest.idleSince.Before(victim.idleSince) {
				victim = oldest
			}
		}
		if victim != nil {
			break
		}
	}
	if victim == nil {
		p.mu.Unlock()
		return false
	}
	victim.kp.idle = victim.kp.idle[1:]
	p.idle--
	p.stats.evictions++
	p.forget(victim)
	p.mu.Unlock()
	closeAll([]*entry[C]{victim})
	return true
}

// Sweep closes idle backends past MaxIdleTime or MaxLifetime, or found dead.
// The bucket's maintenance goroutine calls it periodically; it returns how
// many it closed.
func (p *Pool[C]) Sweep(now time.Time) int {
	var closing []*entry[C]
	p.mu.Lock()
	for _, kp := range p.keys {
		keep := kp.idle[:0]
		for _, e := range kp.idle {
			if why := p.unusable(e, now); why != "" {
				p.stats.closedIdle(why)
				closing = append(closing, e)
				p.idle--
				continue
			}
			keep = append(keep, e)
		}
		clear(kp.idle[len(keep):])
		kp.idle = keep
	}
	for _, e := range closing {
		p.forget(e)
	}
	p.mu.Unlock()
	closeAll(closing)
	return len(closing)
}

// CloseIdle closes the idle backend conn, if it is idle in this pool
// (an operator killed its slot's lease); its slot is released as usual. It
// reports whether it found it.
func (p *Pool[C]) CloseIdle(match func(C) bool) bool {
	p.mu.Lock()
	var victim *entry[C]
	for _, kp := range p.keys {
		for _, e := range kp.idle {
			if match(e.conn) {
				victim = e
				break
			}
		}
		if victim != nil {
			break
		}
	}
	if victim == nil {
		p.mu.Unlock()
		return false
	}
	p.unlink(victim)
	p.stats.closedIdle("killed")
	p.mu.Unlock()
	closeAll([]*entry[C]{victim})
	return true
}

// Lent is how many backends of key's identity, logged in with key's
// credential, are lent out now (ones that may come back soon).
func (p *Pool[C]) Lent(key Key) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if kp := p.keys[key.Identity]; kp != nil && kp.cred.Equal(key.Credential) {
		return kp.active
	}
	return 0
}

// WaitReturn asks for wake to be called once, the next time a backend of
// key's identity that is lent out now comes back (returned to its idle
// stack, or closed), so a client that found all of them lent can borrow
// the returned one at once instead of checking again and again. The
// waiters of a key are woken one per return, oldest first; all of them
// when the key has nothing lent any more. wake runs on the returning
// session's thread without the pool's lock, and must not block (a post to
// the waiter's own thread). cancel withdraws a registration not yet woken;
// it reports whether it did (false: wake has run or is about to).
//
// ok is false, and nothing is registered, when no backend of key (with
// key's credential) is lent (nothing will come back), or when another
// client of the key waits already. One waiter covers what the wait is for:
// a client that closes and reconnects at once, whose close may be handled
// after its next login. A second means the key's clients outnumber its
// backends, and the caller logs a new one in, so the pool grows to the
// key's concurrency instead of making clients queue for each other's
// backends.
func (p *Pool[C]) WaitReturn(key Key, wake func()) (cancel func() bool, ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	kp := p.keys[key.Identity]
	if kp == nil || !kp.cred.Equal(key.Credential) || kp.active == 0 || len(kp.waiters) > 0 {
		return nil, false
	}
	w := &returnWaiter{wake: wake, kp: kp}
	kp.waiters = append(kp.waiters, w)
	p.stats.returnWaits++
	return func() bool { return p.cancelWait(w) }, true
}

// cancelWait removes w from its key's waiters, if it is still there.
func (p *Pool[C]) cancelWait(w *returnWaiter) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	kp := w.kp.(*keyPool[C])
	for i, x := range kp.waiters {
		if x == w {
			kp.waiters = append(kp.waiters[:i], kp.waiters[i+1:]...)
			return true
		}
	}
	return false
}

// takeWaiters removes and returns the waiters to wake after a backend of kp
// came back: the oldest, or all of them when nothing of kp is lent any more
// (the lock is held).
func (p *Pool[C]) takeWaiters(kp *keyPool[C]) []func() {
	n := min(1, len(kp.waiters))
	if kp.active == 0 {
		n = len(kp.waiters)
	}
	if n == 0 {
		return nil
	}
	wake := make([]func(), n)
	for i, w := range kp.waiters[:n] {
		wake[i] = w.wake
	}
	clear(kp.waiters[:n])
	kp.waiters = kp.waiters[n:]
	if len(kp.waiters) == 0 {
		kp.waiters = nil
	}
	return wake
}

// wakeAll calls the waiters taken by takeWaiters, without the lock.
func wakeAll(wake []func()) {
	for _, w := range wake {
		w()
	}
}

// HasIdle says whether key's identity has an idle backend logged in with
// key's credential (Borrow still checks its limits; HasIdle counts no miss).
func (p *Pool[C]) HasIdle(key Key) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	kp := p.keys[key.Identity]
	return kp != nil && kp.cred.Equal(key.Credential) && len(kp.idle) > 0
}

// WarmupNeeded is how many more idle backends the bucket should open with
// the operator's warm-up credentials to reach MinIdle (0 when draining).
func (p *Pool[C]) WarmupNeeded() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.draining || p.idle >= p.cfg.MinIdle {
		return 0
	}
	return p.cfg.MinIdle - p.idle
}

// Drain closes every idle backend and makes the pool close backends as
// they come back; Borrow misses from now on. Envoy's drain calls it.
func (p *Pool[C]) Drain() int {
	var closing []*entry[C]
	p.mu.Lock()
	p.draining = true
	for _, kp := range p.keys {
		closing = append(closing, kp.idle...)
		p.idle -= len(kp.idle)
		kp.idle = nil
	}
	for _, e := range closing {
		p.stats.closedIdle("draining")
		p.forget(e)
	}
	p.mu.Unlock()
	closeAll(closing)
	return len(closing)
}

// closeAll closes connections and releases their slots; called without the
// lock. A panicking Close still releases its slot and does not stop the
// others; the first panic is raised again afterwards for the caller's
// panic barrier to count.
func closeAll[C Conn](es []*entry[C]) {
	var first any
	for _, e := range es {
		func() {
			defer func() {
				if r := recover(); r != nil && first == nil {
					first = r
				}
			}()
			closeEntry(e)
		}()
	}
	if first != nil {
		panic(first)
	}
}

func closeEntry[C Conn](e *entry[C]) {
	defer func() {
		if e.release == nil {
			return
		}
		if ac, ok := any(e.conn).(AfterCloser); ok {
			ac.AfterClose(e.release)
			return
		}
		e.release()
	}()
	e.conn.Close()
}
