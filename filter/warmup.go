package filter

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tdspool/tdspool/coordinator"
	"github.com/tdspool/tdspool/filter/pool"
	"github.com/tdspool/tdspool/tds"
)

// Warm-up (pool.min_idle > 0): the pool sweeper's goroutine keeps a bucket's idle backends at
// min_idle with the operator's warm-up credentials. Each warm backend takes a real slot from the
// coordinator (so the cap holds fleet-wide), is logged in by a hidden login and joins the idle
// stack of its key. At most maxWarmInFlight logins run at once per bucket; a failure (no slot
// is not one) doubles the pause before the next attempt, from warmBackoffMin up to
// warmBackoffMax, and a success clears it.
//
// A warm backend serves the clients whose key equals the warm-up login's: the warm-up user,
// password, database, app name and language, and the LOGIN7's shape (TDS version, option and
// type flags, LCID, features). The shape is go-mssqldb's until a client of the warm-up login
// (same user, database, app name, language) has logged in for real; then that client's shape is
// used, so later warm backends fit the clients the bucket actually has.
//
// The password is read from its SecretSource at every warm-up login (a rotated secret is
// picked up), never logged, and the LOGIN7 bytes holding it are zeroed once sent.

const (
	maxWarmInFlight = 2
	warmBackoffMin  = time.Second
	warmBackoffMax  = time.Minute
	// warmSlotWait bounds a warm-up's slot request: a warm-up never queues long ahead of
	// clients; a bucket without a free slot is tried again at the next sweep.
	warmSlotWait = 50 * time.Millisecond
)

// warmer keeps one bucket's pool at min_idle.
type warmer struct {
	f   *Factory
	b   *bucketState
	cfg pool.Warmup

	mu       sync.Mutex
	inFlight int
	backoff  time.Duration
	nextTry  time.Time
	template *tds.Login7 // the learned LOGIN7 shape (no secrets); nil: go-mssqldb's
	lastErr  string      // the last failure, logged once through a session

	warmed, failures atomic.Uint64
	loggedErr        string
}

func newWarmer(f *Factory, b *bucketState) *warmer {
	pc := b.cfg.GetPool()
	w := pc.GetWarmup()
	if pc.GetMinIdle() == 0 || w == nil || b.pool == nil || b.target == nil {
		return nil
	}
	return &warmer{f: f, b: b, cfg: pool.Warmup{User: w.User, Database: w.Database, AppName: w.AppName,
		Language: w.Language, Secret: pool.SecretSource{File: w.PasswordFile, Env: w.PasswordEnv}}}
}

// goMSSQLDBShape is the LOGIN7 shape go-mssqldb sends (TDS 7.4, USE_DB|SET_LANG, ODBC, no
// features, LCID 0): the warm-up's shape until a client has shown its own.
func goMSSQLDBShape() *tds.Login7 {
	return &tds.Login7{TDSVersion: tds.TDSVersion74, OptionFlags1: tds.Login7UseDB | tds.Login7SetLang,
		OptionFlags2: tds.Login7ODBC, CltIntName: "go-mssqldb"}
}

// learn takes the shape of a client's login that logged in for real, if it is the warm-up
// login (the session's worker).
func (w *warmer) learn(l *tds.Login7) {
	if w == nil || l == nil || l.UserName != w.cfg.User || l.Database != w.cfg.Database ||
		l.AppName != w.cfg.AppName || l.Language != w.cfg.Language {
		return
	}
	shape := *l
	shape.Password, shape.ChangePassword, shape.SSPI, shape.FeatureExtRaw = tds.Password{}, tds.Password{}, nil, nil
	shape.Features = append([]tds.Feature(nil), l.Features...)
	w.mu.Lock()
	w.template = &shape
	w.mu.Unlock()
}

// tick starts the warm-up logins the bucket lacks (the sweeper's goroutine).
func (w *warmer) tick(now time.Time) {
	w.mu.Lock()
	need := w.b.pool.WarmupNeeded() - w.inFlight
	n := min(need, maxWarmInFlight-w.inFlight)
	if n <= 0 || now.Before(w.nextTry) {
		w.mu.Unlock()
		return
	}
	w.inFlight += n
	w.mu.Unlock()
	for range n {
		w.start(now)
	}
}

// start asks for a slot, then logs a backend in with it.
func (w *warmer) start(now time.Time) {
	b := w.b
	kill := &slotKill{}
	holder := coordinator.Holder{User: w.cfg.User, App: "tdspool-warmup", Database: w.cfg.Database}
	w.f.slots.Acquire(SlotRequest{Bucket: b.cfg.Name, Deadline: now.Add(warmSlotWait),
		Holder: holder, OnKill: kill.kill}, func(r SlotResult) {
		if !r.Granted() {
			w.done(nil) // no free slot now: not a failure, no pause
			return
		}
		// Once warm it shows as an idle backend of the warm-up login (its pool key), which
		// the fleet view counts with the other backends of that login.
		kill.fleet.granted(r, coordinator.Holder{User: w.cfg.User, App: w.cfg.AppName, Database: w.cfg.Database})
		if cb := w.f.coordStats.bucket(b.cfg.Name); cb != nil {
			cb.offSessionGranted.Add(1)
		}
		r.Release = w.f.coordStats.countedRelease(b.cfg.Name, r.Release)
		login7, key, err := w.login()
		if err != nil {
			r.Release()
			w.done(err)
			return
		}
		w.f.startHiddenLogin(hiddenLoginRequest{Bucket: b, Login7: login7, Release: r.Release,
			Done: func(res hiddenLoginResult) {
				if !res.OK() {
					w.done(res.Err)
					return
				}
				pb := &pooledBackend{c: res.Conn, spid: res.SPID, pool: b.pool}
				if !kill.attach(pb) { // killed during its login
					closeReleasing(res.Conn, res.Release)
					w.done(nil)
					return
				}
				b.pool.AdoptIdle(key, pb, res.Reply, res.Release, w.f.now())
				kill.fleet.idle()
				w.warmed.Add(1)
				w.done(nil)
			}})
	})
}

// login builds the warm-up LOGIN7 (framed) and its key; the password is read now.
func (w *warmer) login() ([]byte, pool.Key, error) {
	password, err := w.cfg.Secret.Load()
	if err != nil {
		return nil, pool.Key{}, err
	}
	w.mu.Lock()
	shape := w.template
	w.mu.Unlock()
	if shape == nil {
		shape = goMSSQLDBShape()
	}
	l := w.cfg.Login7(shape, password)
	l.PacketSize = w.f.pooledPacketSize()
	key, why := pool.KeyFromLogin7(w.b.cfg.Name, l, w.f.hasher)
	if why != pool.Poolable {
		return nil, pool.Key{}, fmt.Errorf("the warm-up login cannot be pooled (%s)", why)
	}
	payload := l.AppendLogin7(nil)
	framed := tds.AppendPackets(nil, tds.PacketLogin7, 0, payload, tds.DefaultPacketSize)
	clear(payload)
	return framed, key, nil
}

// done ends one warm-up attempt: err nil is a success or a harmless miss.
func (w *warmer) done(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.inFlight--
	if err == nil {
		w.backoff = 0
		w.nextTry = time.Time{}
		return
	}
	w.failures.Add(1)
	w.lastErr = err.Error()
	w.backoff = min(max(2*w.backoff, warmBackoffMin), warmBackoffMax)
	w.nextTry = w.f.now().Add(w.backoff)
}

// failure returns the last failure once (for the log), or "".
func (w *warmer) failure() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.lastErr == w.loggedErr {
		return ""
	}
	w.loggedErr = w.lastErr
	return w.lastErr
}

// warmers builds the warmers of a factory's buckets with min_idle > 0.
func (f *Factory) warmers() []*warmer {
	var ws []*warmer
	for _, b := range f.buckets {
		if w := newWarmer(f, b); w != nil {
			b.pool.warm = w
			ws = append(ws, w)
		}
	}
	return ws
}
