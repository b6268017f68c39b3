package standin

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"
)

// Application locks: sp_getapplock / sp_releaseapplock / APPLOCK_MODE,
// held by a session or by its transaction, shared across the server's
// sessions (per database and resource), released at the end of the
// transaction, on reset and when the session closes.

var lockModes = map[string]string{"shared": "Shared", "update": "Update", "intentshared": "IntentShared",
	"intentexclusive": "IntentExclusive", "exclusive": "Exclusive"}

// lockCompatible is SQL Server's lock compatibility for the modes an
// application lock can take.
func lockCompatible(a, b string) bool {
	ok := map[string]map[string]bool{
		"IntentShared":    {"IntentShared": true, "Shared": true, "Update": true, "IntentExclusive": true},
		"Shared":          {"IntentShared": true, "Shared": true, "Update": true},
		"Update":          {"IntentShared": true, "Shared": true},
		"IntentExclusive": {"IntentShared": true, "IntentExclusive": true},
		"Exclusive":       {},
	}
	return ok[a][b]
}

type lockOwner struct {
	spid uint16
	tran bool // owned by the transaction, else by the session
}

type lockHold struct {
	mode  string
	count int
}

type appLocks struct {
	mu      sync.Mutex
	changed chan struct{} // closed and replaced on every release
	held    map[string]map[lockOwner]*lockHold
}

func newAppLocks() *appLocks {
	return &appLocks{changed: make(chan struct{}), held: map[string]map[lockOwner]*lockHold{}}
}

func (l *appLocks) grantable(key string, o lockOwner, mode string) bool {
	for other, h := range l.held[key] {
		if other.spid != o.spid && !lockCompatible(mode, h.mode) {
			return false
		}
	}
	return true
}

// acquire returns 0 (granted at once), 1 (granted after waiting), -1
// (timed out) or -2 (cancelled), sp_getapplock's return codes.
func (l *appLocks) acquire(ctx context.Context, key string, o lockOwner, mode string, timeout time.Duration) int64 {
	var deadline <-chan time.Time
	if timeout >= 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		deadline = t.C
	}
	waited := false
	for {
		l.mu.Lock()
		if l.grantable(key, o, mode) {
			if l.held[key] == nil {
				l.held[key] = map[lockOwner]*lockHold{}
			}
			if h := l.held[key][o]; h != nil {
				h.count++
				if mode == "Exclusive" || (mode == "Update" && h.mode != "Exclusive") {
					h.mode = mode // converted to the stronger mode
				}
			} else {
				l.held[key][o] = &lockHold{mode: mode, count: 1}
			}
			l.mu.Unlock()
			if waited {
				return 1
			}
			return 0
		}
		ch := l.changed
		l.mu.Unlock()
		if timeout == 0 {
			return -1
		}
		waited = true
		select {
		case <-ch:
		case <-deadline:
			return -1
		case <-ctx.Done():
			return -2
		}
	}
}

// release drops one reference; false when the owner holds no such lock.
func (l *appLocks) release(key string, o lockOwner) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	h := l.held[key][o]
	if h == nil {
		return false
	}
	if h.count--; h.count == 0 {
		delete(l.held[key], o)
		if len(l.held[key]) == 0 {
			delete(l.held, key)
		}
		l.wakeLocked()
	}
	return true
}

// releaseAll drops every lock of an owner (transaction end, reset, close).
func (l *appLocks) releaseAll(o lockOwner) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for key, hs := range l.held {
		if _, ok := hs[o]; ok {
			delete(hs, o)
			if len(hs) == 0 {
				delete(l.held, key)
			}
		}
	}
	l.wakeLocked()
}

func (l *appLocks) wakeLocked() {
	close(l.changed)
	l.changed = make(chan struct{})
}

func (l *appLocks) mode(key string, o lockOwner) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if h := l.held[key][o]; h != nil {
		return h.mode
	}
	return "NoLock"
}

// count is how many locks an owner holds (for SessionInfo).
func (l *appLocks) count(spid uint16) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, hs := range l.held {
		for o := range hs {
			if o.spid == spid {
				n++
			}
		}
	}
	return n
}

func (s *session) lockKey(resource string) string { return strings.ToLower(s.db) + "\x00" + resource }

func lockOwnerParam(v any, given bool) (bool, bool) {
	if !given {
		return true, true // Transaction is the default
	}
	switch strings.ToLower(fmt.Sprint(nz(v))) {
	case "transaction":
		return true, true
	case "session":
		return false, true
	}
	return false, false
}

// getAppLock is sp_getapplock @Resource, @LockMode [, @LockOwner,
// @LockTimeout, @DbPrincipal]; its result is the RETURN status.
func (s *session) getAppLock(ctx context.Context, ps []rpcParam, vars map[string]any) *sqlError {
	res, _ := param(ps, 0, "Resource")
	m, _ := param(ps, 1, "LockMode")
	ow, owGiven := param(ps, 2, "LockOwner")
	to, toGiven := param(ps, 3, "LockTimeout")
	resource, _ := res.(string)
	mode, okMode := lockModes[strings.ToLower(fmt.Sprint(nz(m)))]
	tran, okOwner := lockOwnerParam(ow, owGiven)
	if resource == "" || !okMode || !okOwner {
		vars["\x00return"] = int64(-999)
		return nil
	}
	if tran && s.trancount == 0 {
		vars["\x00return"] = int64(-999)
		return errf(50000, 1, 16, "You attempted to acquire a transactional application lock without an active transaction.")
	}
	timeout := time.Duration(s.opts.lockTimeout) * time.Millisecond
	if toGiven {
		n, _ := asInt(to)
		timeout = time.Duration(n) * time.Millisecond
	}
	if timeout < 0 {
		timeout = -1
	}
	vars["\x00return"] = s.c.srv.locks.acquire(ctx, s.lockKey(resource), lockOwner{s.c.spid, tran}, mode, timeout)
	return nil
}

// releaseAppLock is sp_releaseapplock @Resource [, @LockOwner, @DbPrincipal].
func (s *session) releaseAppLock(ps []rpcParam, vars map[string]any) *sqlError {
	res, _ := param(ps, 0, "Resource")
	ow, owGiven := param(ps, 1, "LockOwner")
	resource, _ := res.(string)
	tran, ok := lockOwnerParam(ow, owGiven)
	if !ok || !s.c.srv.locks.release(s.lockKey(resource), lockOwner{s.c.spid, tran}) {
		vars["\x00return"] = int64(-999)
		return errf(1223, 1, 16, fmt.Sprintf("Cannot release the application lock (Database Principal: 'public', Resource: '%s') because it is not currently held.", resource))
	}
	vars["\x00return"] = int64(0)
	return nil
}

func (s *session) releaseTranLocks() {
	if s.c != nil && s.c.srv != nil && s.c.srv.locks != nil {
		s.c.srv.locks.releaseAll(lockOwner{s.c.spid, true})
	}
}

func (s *session) releaseSessionLocks() {
	if s.c != nil && s.c.srv != nil && s.c.srv.locks != nil {
		s.c.srv.locks.releaseAll(lockOwner{s.c.spid, false})
		s.c.srv.locks.releaseAll(lockOwner{s.c.spid, true})
	}
}
