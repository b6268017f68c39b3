package abi

import (
	"sync"
	"sync/atomic"
)

// registry maps the opaque handles Envoy holds to Go values. Handles are small integers that
// never alias a Go pointer; a handle that was never issued or was already removed looks up as
// absent, so a late or duplicated Envoy call gets a safe default instead of touching freed state.
type registry[T any] struct {
	mu    sync.RWMutex
	next  atomic.Uint64
	items map[uintptr]T
}

func newRegistry[T any]() *registry[T] {
	return &registry[T]{items: make(map[uintptr]T)}
}

// add stores v and returns its handle; handles start at 1 so 0 (NULL) always means "none".
func (r *registry[T]) add(v T) uintptr {
	h := uintptr(r.next.Add(1))
	r.mu.Lock()
	r.items[h] = v
	r.mu.Unlock()
	return h
}

func (r *registry[T]) get(h uintptr) (T, bool) {
	r.mu.RLock()
	v, ok := r.items[h]
	r.mu.RUnlock()
	return v, ok
}

// remove deletes h and returns what it held, if anything.
func (r *registry[T]) remove(h uintptr) (T, bool) {
	r.mu.Lock()
	v, ok := r.items[h]
	delete(r.items, h)
	r.mu.Unlock()
	return v, ok
}

func (r *registry[T]) len() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.items)
}

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
