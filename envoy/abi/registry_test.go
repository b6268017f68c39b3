package abi

import (
	"sync"
	"testing"
	"unsafe"
)

func TestRegistryPointersAreRealAddressesAndUnknownIsAbsent(t *testing.T) {
	r := newRegistry[string]()
	if _, ok := r.get(nil); ok {
		t.Fatal("nil must be absent")
	}
	a := r.add("a")
	b := r.add("b")
	// The Go runtime aborts on a pointer slot holding a value below 4096 when it moves a
	// stack; a registry pointer must be a real address.
	for _, p := range []unsafe.Pointer{a, b} {
		if uintptr(p) < 4096 {
			t.Fatalf("registry pointer %#x is not a real address", uintptr(p))
		}
	}
	if a == b {
		t.Fatal("two live items share a pointer")
	}
	if v, ok := r.get(b); !ok || v != "b" {
		t.Fatalf("get(b) = %q, %v", v, ok)
	}
	if v, ok := r.remove(a); !ok || v != "a" {
		t.Fatalf("remove(a) = %q, %v", v, ok)
	}
	if _, ok := r.remove(a); ok {
		t.Fatal("double remove found the item again")
	}
	if _, ok := r.get(a); ok {
		t.Fatal("removed pointer still resolves")
	}
	if r.len() != 1 {
		t.Fatalf("len = %d", r.len())
	}
	if _, ok := r.remove(b); !ok || r.len() != 0 {
		t.Fatalf("remove(b): ok=%v len=%d", ok, r.len())
	}
}

func TestPostQueueKicksOncePerBatchAndRefusesAfterClose(t *testing.T) {
	var q postQueue
	kicks := 0
	kick := func() { kicks++ }
	ran := 0
	for i := 0; i < 3; i++ {
		if !q.post(func() { ran++ }, kick) {
			t.Fatal("post refused while open")
		}
	}
	if kicks != 1 {
		t.Fatalf("kicks = %d, want 1 for one batch", kicks)
	}
	for _, fn := range q.take() {
		fn()
	}
	if ran != 3 {
		t.Fatalf("ran = %d", ran)
	}
	q.post(func() {}, kick)
	if kicks != 2 {
		t.Fatalf("a post after take must kick again, kicks = %d", kicks)
	}
	released := false
	q.close(func() { released = true })
	if !released || q.post(func() {}, kick) || len(q.take()) != 0 {
		t.Fatal("queue accepted work after close")
	}
}

func TestPostQueueConcurrentPostsAndClose(t *testing.T) {
	var q postQueue
	var mu sync.Mutex
	closed, kicksAfterClose := false, 0
	kick := func() {
		mu.Lock()
		if closed {
			kicksAfterClose++
		}
		mu.Unlock()
	}
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 1000; i++ {
				q.post(func() {}, kick)
				if i%10 == 0 {
					q.take()
				}
			}
		}()
	}
	q.close(func() { mu.Lock(); closed = true; mu.Unlock() })
	wg.Wait()
	if kicksAfterClose != 0 {
		t.Fatalf("%d kicks after close: a goroutine could commit to a deleted scheduler", kicksAfterClose)
	}
}
