package abi

import (
	"sync"
	"sync/atomic"
)

// registry maps the opaque handles Envoy holds to Go values. Handles are small integers that
// never alias a Go pointer; a handle that was never issued or was already removed looks up as
// absent, so a late or duplicated Envoy call gets a safe default instead of touching freed state.
//
// Every Envoy callback looks its handle up, from every worker at once, so reads are lock-free
// (sync.Map is built for keys written once and read many times).
type registry[T any] struct {
	next  atomic.Uint64
	items sync.Map // uintptr → T
	count atomic.Int64
}

func newRegistry[T any]() *registry[T] { return &registry[T]{} }

// add stores v and returns its handle; handles start at 1 so 0 (NULL) always means "none".
func (r *registry[T]) add(v T) uintptr {
	h := uintptr(r.next.Add(1))
	r.items.Store(h, v)
	r.count.Add(1)
	return h
}

func (r *registry[T]) get(h uintptr) (T, bool) {
	v, ok := r.items.Load(h)
	if !ok {
		var zero T
		return zero, false
	}
	return v.(T), true
}

// remove deletes h and returns what it held, if anything.
func (r *registry[T]) remove(h uintptr) (T, bool) {
	v, ok := r.items.LoadAndDelete(h)
	if !ok {
		var zero T
		return zero, false
	}
	r.count.Add(-1)
	return v.(T), true
}

func (r *registry[T]) len() int { return int(r.count.Load()) }

// postQueue holds functions posted from any goroutine until the worker runs them. kick is
// called (under the lock, so it cannot race with close) when the queue turns non-empty, which
// is when the binding commits one scheduler event.
type postQueue struct {
	mu     sync.Mutex
	fns    []func()
	closed bool
}

func (q *postQueue) post(fn func(), kick func()) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return false
	}
	q.fns = append(q.fns, fn)
	if len(q.fns) == 1 {
		kick()
	}
	return true
}

// take returns everything queued so far; functions posted while they run trigger a new kick.
func (q *postQueue) take() []func() {
	q.mu.Lock()
	defer q.mu.Unlock()
	fns := q.fns
	q.fns = nil
	return fns
}

// close refuses further posts and runs release (under the lock, so no post can kick after it).
func (q *postQueue) close(release func()) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
	q.fns = nil
	release()
}
