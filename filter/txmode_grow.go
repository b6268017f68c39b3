package filter

import (
	"errors"
	"fmt"

	"github.com/tdspool/tdspool/coordinator"
	"github.com/tdspool/tdspool/envoy/host"
	"github.com/tdspool/tdspool/filter/pool"
	"github.com/tdspool/tdspool/tds"
)

// Growing a TRANSACTION bucket's pool: a request that finds no idle backend of its key, in a
// bucket whose pool is under its cap, asks the coordinator for a slot and logs a new backend
// in with the client's LOGIN7, hidden from every client (startHiddenLogin). The new backend
// goes to the pool like any released one: to the oldest waiter of its key, which is usually
// the request that asked. The login is not tied to that request: when a returned backend
// served it first, the new one serves the next waiter, or waits idle.
//
// A request whose key must log in for real (past reauth_after, or another password than the
// pool's) asks for a new backend even at the cap; the coordinator then queues it.

// wantsBackend reports whether the request should ask for a new backend: the key needs a real
// login, or the pool (with the logins already under way) is below the bucket's cap.
// At the cap, an idle backend of another key is closed to make room (its slot goes back once
// it is gone), as session pooling does for its waiters.
func (q *txBucket) wantsBackend(p *bucketPool, cap uint32, id pool.Identity, miss pool.Miss) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if miss == pool.MissDraining {
		return false
	}
	if miss == pool.MissEmpty && uint32(p.Count()+q.creating) >= cap && !p.EvictIdle(id) {
		return false
	}
	q.creating++
	return true
}

func (q *txBucket) created() {
	q.mu.Lock()
	q.creating--
	q.mu.Unlock()
}

// grow asks for a slot and logs a new backend of the leg's key in (see above).
func (t *txLeg) grow() {
	s, b := t.s, t.s.bucket
	login := t.login
	if login == nil {
		t.q.created()
		return
	}
	framed := tds.AppendPackets(nil, tds.PacketLogin7, 0, login.AppendLogin7(nil), s.pktSize)
	key, q, bp, f := t.key, t.q, t.pool, s.f
	conn := s.conn
	w := t.waiter
	// The new backend's lease shows it idle in the pool until a session is bound to it; an
	// operator's kill of it closes it (idle) or ends the session using it.
	kill := &slotKill{}
	idle := loginOnly(login)
	idle.State = coordinator.HolderIdle
	req := SlotRequest{Bucket: b.cfg.Name, Deadline: t.binding.Deadline(), Holder: idle, OnKill: kill.kill}
	f.slots.Acquire(req, func(r SlotResult) {
		if !r.Granted() {
			q.created()
			return
		}
		kill.fleet.granted(r, idle)
		// The slot outlives every session that will borrow this backend: its grant and its
		// release are counted here and when the backend closes, as the warm-up's are.
		if cb := f.coordStats.bucket(b.cfg.Name); cb != nil {
			cb.offSessionGranted.Add(1)
		}
		r.Release = f.coordStats.countedRelease(b.cfg.Name, r.Release)
		f.startHiddenLogin(hiddenLoginRequest{Bucket: b, Login7: framed, Release: r.Release,
			Done: func(res hiddenLoginResult) {
				q.created()
				now := f.now()
				if !res.OK() {
					if errors.Is(res.Err, errHiddenLoginRefused) {
						bp.LoginRefused(key)
						conn.Post(func() { t.loginRefused(w, res.Response) })
					}
					return
				}
				if res.Reply == nil {
					// Not replayable: a backend no later client could be answered for.
					closeReleasing(res.Conn, res.Release)
					return
				}
				pb := &pooledBackend{c: res.Conn, spid: res.SPID, pool: bp}
				if !kill.attach(pb) { // killed during its login
					closeReleasing(res.Conn, res.Release)
					return
				}
				lease := bp.Adopt(key, pb, res.Reply, res.Release, now)
				q.giveBack(lease, key.Identity, now)
			}})
	})
}

// loginRefused: the server refused the client's credentials on a new backend (its password
// changed or its login was disabled since the pool last checked). The waiting request gets
// the server's own answer and the session ends, as a direct session would at its next login.
func (t *txLeg) loginRefused(w *txWaiter, response []byte) {
	s := t.s
	if t.closed || s.finished || t.waiter != w || w == nil {
		return
	}
	t.endWait()
	s.conn.IncCounter(s.bucket.stats.loginFailed, 1)
	s.conn.Log(host.LogInfo, fmt.Sprintf("bucket %s: the server refused a pooled client's login on a new backend", s.bucket.cfg.Name))
	s.toClient(tds.AppendPackets(nil, tds.PacketReply, 0, response, s.pktSize))
	s.finishWith(host.FlushWrite, "tdspool_backend_login_failed")
}

// creatingNow is how many new backends are being logged in (tests wait for them).
func (q *txBucket) creatingNow() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.creating
}
