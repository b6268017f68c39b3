package filter

import (
	"container/list"
	"fmt"
	"sync"
	"time"

	"github.com/tdspool/tdspool/coordinator"
)

// Slots hands out bucket slots. Acquire never blocks: done is called exactly once, later, on
// some goroutine (never inside Acquire), unless cancel returns true first. Release functions
// are idempotent.
type Slots interface {
	Acquire(req SlotRequest, done func(SlotResult)) (cancel func() bool)
	Close() error
}

// SlotRequest is one session asking for a slot.
type SlotRequest struct {
	Bucket   string
	Deadline time.Time
	// Holder describes the session for the fleet view (no secrets).
	Holder coordinator.Holder
	// OnKill is called (any goroutine) when an operator kills the session's lease.
	OnKill func()
}

// SlotResult is the outcome of one Acquire.
type SlotResult struct {
	Outcome coordinator.Outcome
	Release func() // non-nil when Granted; idempotent
	// SetPins tells the fleet view why the session is pinned (nil without Redis).
	SetPins func(pins string)
	// SetHolder tells the fleet view who the slot's backend serves now (nil without Redis).
	SetHolder func(coordinator.Holder)
	Waited    time.Duration
	Fallback  bool // decided by the local quota while Redis was unreachable
	// State and Cap: the bucket's operator state and the cap in force, for error texts.
	State coordinator.State
	Cap   int
	// StateBy says who set State and when ("" without Redis).
	StateBy string
	Err     error
}

// Granted reports whether the session got its slot (then Release gives it back).
func (r SlotResult) Granted() bool { return r.Outcome == coordinator.Granted }

// coordinatorSlots adapts the Redis coordinator.
type coordinatorSlots struct{ c *coordinator.Coordinator }

func (s coordinatorSlots) Acquire(req SlotRequest, done func(SlotResult)) func() bool {
	t := s.c.AcquireRequest(coordinator.Request{Bucket: req.Bucket, Deadline: req.Deadline, Holder: req.Holder,
		OnKill: req.OnKill}, func(r coordinator.Result) {
		res := SlotResult{Outcome: r.Outcome, Waited: r.Waited, Fallback: r.Fallback, State: r.State, Cap: r.Cap, Err: r.Err}
		if r.StateBy != "" {
			res.StateBy = fmt.Sprintf("by %s at %s", r.StateBy, r.StateAt.UTC().Format(time.RFC3339))
		}
		if res.Granted() {
			lease := r.Lease
			res.Release = func() { s.c.Release(lease) } // idempotent in the coordinator
			res.SetPins = lease.SetPins
			res.SetHolder = lease.SetHolder
		}
		done(res)
	})
	return func() bool { return s.c.Cancel(t) }
}

func (s coordinatorSlots) Close() error { return s.c.Close() }

// localSlots enforces caps inside this process only: used when no Redis is configured (one
// proxy, or a test). FIFO per bucket, bounded queue, every wait bounded by its deadline.
type localSlots struct {
	mu      sync.Mutex
	buckets map[string]*localBucket
}

type localBucket struct {
	cap, held, maxQueue int
	waiters             list.List // of *localWaiter
}

type localWaiter struct {
	done   func(SlotResult)
	start  time.Time
	timer  *time.Timer
	elem   *list.Element
	b      *localBucket
	closed bool
}

func newLocalSlots(caps map[string][2]int) *localSlots {
	s := &localSlots{buckets: map[string]*localBucket{}}
	for name, c := range caps {
		s.buckets[name] = &localBucket{cap: c[0], maxQueue: c[1]}
	}
	return s
}

func (s *localSlots) Acquire(req SlotRequest, done func(SlotResult)) func() bool {
	bucket, deadline := req.Bucket, req.Deadline
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.buckets[bucket]
	start := time.Now()
	switch {
	case b == nil:
		go done(SlotResult{Outcome: coordinator.Refused, Err: coordinator.ErrUnknownBucket})
		return func() bool { return false }
	case b.held < b.cap && b.waiters.Len() == 0:
		b.held++
		go done(SlotResult{Outcome: coordinator.Granted, Release: s.releaser(b)})
		return func() bool { return false }
	case b.waiters.Len() >= b.maxQueue:
		go done(SlotResult{Outcome: coordinator.QueueFull})
		return func() bool { return false }
	}
	w := &localWaiter{done: done, start: start, b: b}
	w.elem = b.waiters.PushBack(w)
	w.timer = time.AfterFunc(time.Until(deadline), func() {
		s.mu.Lock()
		if w.closed {
			s.mu.Unlock()
			return
		}
		w.closed = true
		b.waiters.Remove(w.elem)
		s.mu.Unlock()
		done(SlotResult{Outcome: coordinator.TimedOut, Waited: time.Since(start)})
	})
	return func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		if w.closed {
			return false
		}
		w.closed = true
		w.timer.Stop()
		b.waiters.Remove(w.elem)
		return true
	}
}

func (s *localSlots) releaser(b *localBucket) func() {
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			b.held--
			var grant *localWaiter
			if b.held < b.cap {
				if front := b.waiters.Front(); front != nil {
					grant = front.Value.(*localWaiter)
					b.waiters.Remove(front)
					grant.closed = true
					grant.timer.Stop()
					b.held++
				}
			}
			s.mu.Unlock()
			if grant != nil {
				go grant.done(SlotResult{Outcome: coordinator.Granted, Release: s.releaser(b),
					Waited: time.Since(grant.start)})
			}
		})
	}
}

func (s *localSlots) Close() error { return nil }
