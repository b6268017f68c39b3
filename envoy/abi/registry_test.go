package abi

import (
	"sync"
	"testing"
)

func TestRegistryHandlesAreNeverReusedAndUnknownIsAbsent(t *testing.T) {
	r := newRegistry[string]()
	if _, ok := r.get(0); ok {
		t.Fatal("handle 0 must be absent (NULL)")
	}
	a := r.add("a")
	b := r.add("b")
	if a == 0 || b == 0 || a == b {
		t.Fatalf("handles a=%d b=%d", a, b)
	}
	if v, ok := r.remove(a); !ok || v != "a" {
		t.Fatalf("remove(a) = %q, %v", v, ok)
	}
	if _, ok := r.remove(a); ok {
		t.Fatal("double remove found the item again")
	}
	if _, ok := r.get(a); ok {
		t.Fatal("removed handle still resolves")
	}
	if c := r.add("c"); c == a {
		t.Fatal("handle reused")
	}
	if r.len() != 2 {
		t.Fatalf("len = %d", r.len())
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
