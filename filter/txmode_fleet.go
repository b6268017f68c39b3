package filter

import (
	"fmt"
	"time"

	"github.com/tdspool/tdspool/envoy/host"
	"github.com/tdspool/tdspool/filter/pool"
)

// A transaction-pooled session in the fleet view and under idle_timeout.
//
// Between requests the session holds no slot, so it has a client record of its own (listed by
// tdspoolctl clients, never counted toward the cap); an operator's kill of it ends the session
// with the same ERROR a lease's kill gives, and a backend bound at that moment goes back to the
// pool or is closed by the usual rules (txLeg.close). While a request runs, the bound backend's
// lease shows this client (with the session's record id and pins); a kill of that lease ends
// this session and closes the backend.
//
// idle_timeout closes the session after that long without traffic either way, bound or not, as
// on the module leg (moduleLeg.onIdleCheck): no error is sent, the connection closes.

// startFleet gives the session its client record.
func (t *txLeg) startFleet() {
	s := t.s
	t.holder = s.loginHolder(t.login)
	t.client = s.addClientRecord(t.login)
	t.holder.Session = t.client.ID()
}

// endFleet removes the record and stops the idle check (the session ends).
func (t *txLeg) endFleet() {
	if t.client != nil {
		t.client.Remove()
	}
	if t.idleTimer != nil {
		t.idleTimer.Stop()
		t.idleTimer = nil
	}
}

// fleetPins shows the session's pin reasons on its record and on the bound backend's lease.
func (t *txLeg) fleetPins(p string) {
	t.holder.Pins = p
	if t.client != nil {
		t.client.SetPins(p)
	}
	if t.lease != nil {
		fleetOf(t.lease.Conn()).pins(p)
	}
}

// fleetBound: pb serves this session now; a kill of its lease ends the session and closes pb.
func (t *txLeg) fleetBound(pb *pooledBackend) {
	conn := t.s.conn
	pb.setUser(func() bool {
		return conn.Post(func() {
			if t.lease != nil && t.lease.Conn() == pb {
				t.lease.Taint(pool.TaintKilled)
			}
			t.s.onKill()
		})
	})
	fleetOf(pb).lent(t.holder)
}

// fleetUnbound: pb leaves this session (back to the pool, to a waiter, or closed).
func (t *txLeg) fleetUnbound(pb *pooledBackend) {
	pb.setUser(nil)
	fleetOf(pb).idle()
}

// txRequestUnsent: a transaction-pooled session whose request (if any) is whole and has
// reached no backend (it waits for one): an ERROR answers it cleanly, so a kill sends one.
func (s *session) txRequestUnsent() bool {
	t, ok := s.leg.(*txLeg)
	return ok && t.bind == nil && !t.msg.started
}

// active notes traffic either way (idle_timeout).
func (t *txLeg) active() {
	if t.s.f.idleTimeout > 0 {
		t.lastActive = t.s.f.now()
	}
}

// armIdleCheck starts the idle_timeout check (its own timer: the session's timer bounds a
// request's wait for a backend).
func (t *txLeg) armIdleCheck() {
	s := t.s
	if s.f.idleTimeout <= 0 || t.closed {
		return
	}
	t.lastActive = s.f.now()
	t.scheduleIdleCheck(s.f.idleTimeout)
}

func (t *txLeg) scheduleIdleCheck(d time.Duration) {
	conn := t.s.conn
	if t.idleTimer != nil {
		t.idleTimer.Stop()
	}
	t.idleTimer = time.AfterFunc(d, func() { conn.Post(t.onIdleCheck) })
}

// onIdleCheck closes the session once it has had no traffic either way for idle_timeout.
func (t *txLeg) onIdleCheck() {
	s := t.s
	if t.closed || s.finished || s.leg != t {
		return
	}
	idle := s.f.now().Sub(t.lastActive)
	if idle < s.f.idleTimeout {
		t.scheduleIdleCheck(s.f.idleTimeout - idle)
		return
	}
	s.conn.Log(host.LogInfo, fmt.Sprintf("closing: idle for %s", idle.Round(time.Millisecond)))
	s.finishWith(host.FlushWrite, "tdspool_idle_timeout")
}
