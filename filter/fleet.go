package filter

import (
	"github.com/tdspool/tdspool/coordinator"
	"github.com/tdspool/tdspool/tds"
)

// The fleet view (tdspoolctl, Redis) of pooled backends and of client sessions that hold no
// slot. A slot's lease stands for one backend connection; with pooling that connection
// changes hands, so its holder record follows it: the client it is lent to (with that
// session's pins), or "idle" while it waits in its pool. A transaction-pooled client holds a
// slot only while a request runs, so it also has a client record of its own (no slot, never
// counted toward the cap) that operators can list and kill.
//
// Every call here only marks a change in the coordinator (a mutex, no I/O): the coordinator's
// bucket worker writes the changes of the last 100 ms in one Redis call, so nothing in a
// login's or a request's path waits for Redis. Without Redis these are no-ops.

// fleetLease is the fleet view's handle on one slot whose backend may change hands. It travels
// with the slot (inside its slotKill) from the session that acquired it to the pool.
type fleetLease struct {
	setHolder func(coordinator.Holder) // nil without Redis
	setPins   func(string)
	// login is the user, database and app of the slot's login (the pool key's), shown while
	// the backend is idle.
	login coordinator.Holder
}

// granted binds the record to the slot's lease, taken for login (nil-safe).
func (l *fleetLease) granted(r SlotResult, login coordinator.Holder) {
	if l == nil {
		return
	}
	l.setHolder, l.setPins = r.SetHolder, r.SetPins
	l.login = coordinator.Holder{User: login.User, App: login.App, Database: login.Database}
}

// loginOnly is a login's user, app and database as the fleet view shows them.
func loginOnly(login *tds.Login7) coordinator.Holder {
	if login == nil {
		return coordinator.Holder{}
	}
	return coordinator.Holder{User: login.UserName, App: login.AppName, Database: login.Database}
}

// lent: the backend serves the client h now.
func (l *fleetLease) lent(h coordinator.Holder) {
	if l == nil || l.setHolder == nil {
		return
	}
	l.login = coordinator.Holder{User: h.User, App: h.App, Database: h.Database}
	l.setHolder(h)
}

// idle: the backend waits in its pool, serving nobody.
func (l *fleetLease) idle() {
	if l == nil || l.setHolder == nil {
		return
	}
	h := l.login
	h.State = coordinator.HolderIdle
	l.setHolder(h)
}

// pins shows the serving session's pin reasons on the lease.
func (l *fleetLease) pins(p string) {
	if l != nil && l.setPins != nil {
		l.setPins(p)
	}
}

// fleetOf is the record travelling with a pooled backend's slot (nil if none).
func fleetOf(pb *pooledBackend) *fleetLease {
	if pb == nil {
		return nil
	}
	return pb.kill.record()
}

// loginHolder is what the fleet view shows of a client session: its address and login.
func (s *session) loginHolder(login *tds.Login7) coordinator.Holder {
	h := loginOnly(login)
	h.Client = s.clientAddress()
	return h
}

// fleetLent: a session-pooled client was served by pb from the pool; the lease's holder
// becomes this client and the session's pins go to it.
func (s *session) fleetLent(pb *pooledBackend, login *tds.Login7) {
	fl := fleetOf(pb)
	if fl == nil || fl.setHolder == nil {
		return
	}
	fl.lent(s.loginHolder(login))
	s.setPins = fl.setPins
}

// fleetReturned: the session gives pb back to its pool.
func (s *session) fleetReturned(pb *pooledBackend) {
	fleetOf(pb).idle()
	s.setPins = nil
}

// clientRecorder is implemented by slot sources that can list client sessions without a slot
// (the Redis coordinator).
type clientRecorder interface {
	AddClient(bucket string, h coordinator.Holder, onKill func()) fleetClient
}

// fleetClient is one client record (see coordinator.Client).
type fleetClient interface {
	ID() string
	SetPins(string)
	Remove()
}

// noClient is the record of a session when no Redis is configured.
type noClient struct{}

func (noClient) ID() string     { return "" }
func (noClient) SetPins(string) {}
func (noClient) Remove()        {}

func (s coordinatorSlots) AddClient(bucket string, h coordinator.Holder, onKill func()) fleetClient {
	if cl := s.c.AddClient(bucket, h, onKill); cl != nil {
		return cl
	}
	return noClient{}
}

// addClientRecord gives a transaction-pooled session its client record; an operator's kill
// of it ends the session as a lease's kill would.
func (s *session) addClientRecord(login *tds.Login7) fleetClient {
	cr, ok := s.f.slots.(clientRecorder)
	if !ok {
		return noClient{}
	}
	kill := s.killPoster()
	return cr.AddClient(s.bucket.cfg.Name, s.loginHolder(login), func() { kill() })
}

// record is the slot's fleet-view record (nil for no slot).
func (k *slotKill) record() *fleetLease {
	if k == nil {
		return nil
	}
	return &k.fleet
}
