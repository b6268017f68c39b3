package pool

import (
	"testing"
	"time"
)

func TestRecordedAnswersWithoutAnIdleBackend(t *testing.T) {
	hs := newHarness(t, Config{ReauthAfter: time.Minute})
	k := hs.key("u", "pw", "tenant_a")
	if r, miss := hs.p.Recorded(k, hs.now); r != nil || miss != MissEmpty {
		t.Fatalf("unknown key: reply %v, miss %s; want none, empty", r, miss)
	}
	l := hs.login(k) // a real login, still lent out: no idle backend
	if r, miss := hs.p.Recorded(k, hs.now); r == nil || miss != Hit || r.Database != "tenant_a" {
		t.Fatalf("known key, backend lent out: reply %v, miss %s; want the recorded reply", r, miss)
	}
	if n := hs.p.Count(); n != 1 {
		t.Fatalf("Count = %d, want 1 (lent out)", n)
	}
	if r, miss := hs.p.Recorded(hs.key("u", "other", "tenant_a"), hs.now); r != nil || miss != MissCredential {
		t.Fatalf("another password: reply %v, miss %s; want none, credential", r, miss)
	}
	hs.advance(time.Minute)
	if r, miss := hs.p.Recorded(k, hs.now); r != nil || miss != MissReauth {
		t.Fatalf("past reauth_after: reply %v, miss %s; want none, reauth", r, miss)
	}
	l.Return(hs.now)
	hs.p.Drain()
	if r, miss := hs.p.Recorded(k, hs.now); r != nil || miss != MissDraining {
		t.Fatalf("draining: reply %v, miss %s; want none, draining", r, miss)
	}
	if n := hs.p.Count(); n != 0 {
		t.Fatalf("Count after drain = %d, want 0", n)
	}
}
