package abi

/*
#include <stdlib.h>
*/
import "C"

import (
	"sync"
	"sync/atomic"
	"unsafe"
)

// registry maps the opaque pointers Envoy holds for us (a filter config, a connection's filter)
// to Go values.
//
// Each pointer is a real C allocation (one byte of malloc, freed on remove), never a Go
// pointer and never a made-up integer: Envoy passes these values back as hook arguments, so
// they sit in pointer-typed slots of Go stack frames, and the Go runtime aborts the whole
// process ("invalid pointer found on stack") when it copies a stack holding a small integer
// in such a slot. A real address outside the Go heap is ignored by the runtime. The address
// is only a key: it is never dereferenced, so a stale or duplicated call from Envoy looks up
// as absent (or, once malloc reuses the address, as the newer item — callers check it).
//
// Every Envoy callback looks its pointer up, from every worker at once, so reads are
// lock-free (sync.Map is built for keys written once and read many times).
type registry[T any] struct {
	items sync.Map // uintptr(address) → T
	count atomic.Int64
}

func newRegistry[T any]() *registry[T] { return &registry[T]{} }

// add stores v and returns the pointer Envoy will hold for it (never nil: nil means "none").
func (r *registry[T]) add(v T) unsafe.Pointer {
	p := C.malloc(1)
	if p == nil {
		panic("tdspool: out of memory allocating an Envoy handle")
	}
	r.items.Store(uintptr(p), v)
	r.count.Add(1)
	return p
}

func (r *registry[T]) get(p unsafe.Pointer) (T, bool) {
	v, ok := r.items.Load(uintptr(p))
	if !ok {
		var zero T
		return zero, false
	}
	return v.(T), true
}

// remove deletes p, frees its allocation and returns what it held, if anything.
func (r *registry[T]) remove(p unsafe.Pointer) (T, bool) {
	v, ok := r.items.LoadAndDelete(uintptr(p))
	if !ok {
		var zero T
		return zero, false
	}
	C.free(p)
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
