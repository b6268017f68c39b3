package main

import (
	"reflect"
	"testing"

	"github.com/tdspool/tdspool/coordinator"
)

func TestBackendsByLogin(t *testing.T) {
	lease := func(proxy, user, db, app string, held bool) coordinator.LeaseInfo {
		return coordinator.LeaseInfo{Proxy: proxy, Held: held, Holder: coordinator.Holder{User: user, Database: db, App: app}}
	}
	idle := func(l coordinator.LeaseInfo) coordinator.LeaseInfo {
		l.Holder.State = coordinator.HolderIdle
		return l
	}
	bs := []coordinator.BucketInfo{
		{Bucket: "b2", Leases: []coordinator.LeaseInfo{lease("p1", "u", "d", "a", true)}},
		{Bucket: "b1", Leases: []coordinator.LeaseInfo{
			lease("p2", "u", "d", "a", true),
			lease("p1", "u", "d", "a", true),
			idle(lease("p1", "u", "d", "a", true)),
			idle(lease("p1", "u", "d", "a", true)),
			lease("p1", "u", "d", "other", true),
			idle(lease("p1", "demo", "d", "tdspool-warmup", true)),
			lease("p1", "u", "d", "a", false), // a waiter holds no backend
			{Kind: coordinator.KindClient, Proxy: "p1", Holder: coordinator.Holder{User: "u", Database: "d", App: "a"}}, // nor a client record
		}},
	}
	want := []loginBackends{
		{"b1", "p1", "demo", "d", "tdspool-warmup", 1, 1, 0},
		{"b1", "p1", "u", "d", "a", 3, 2, 1},
		{"b1", "p1", "u", "d", "other", 1, 0, 1},
		{"b1", "p2", "u", "d", "a", 1, 0, 1},
		{"b2", "p1", "u", "d", "a", 1, 0, 1},
	}
	if got := backendsByLogin(bs); !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
}

// The clients view: pooled backends idle in their pool are not clients, a transaction-pooled
// backend shows under the client record it serves, and a client record without one shows
// no-backend.
func TestClientSessionsAndStates(t *testing.T) {
	ls := []coordinator.LeaseInfo{
		{ID: "p:1", Kind: coordinator.KindLease, Held: true, Holder: coordinator.Holder{Client: "a:1"}},
		{ID: "p:2", Kind: coordinator.KindLease, Held: true, Holder: coordinator.Holder{State: coordinator.HolderIdle}},
		{ID: "p:3", Kind: coordinator.KindLease, Held: true, Holder: coordinator.Holder{Client: "b:1", Session: "p:c1"}},
		{ID: "p:c1", Kind: coordinator.KindClient, Holder: coordinator.Holder{Client: "b:1"}},
		{ID: "p:c2", Kind: coordinator.KindClient, Holder: coordinator.Holder{Client: "c:1"}},
		{ID: "p:4", Kind: coordinator.KindWaiter},
	}
	servedBy := map[string]string{"p:c1": "p:3"}
	want := map[string][2]string{"p:1": {"active", "p:1"}, "p:c1": {"bound", "p:3"}, "p:c2": {"no-backend", ""}, "p:4": {"waiting", ""}}
	got := map[string][2]string{}
	for _, l := range ls {
		if clientSession(l) {
			st, be := clientState(l, servedBy)
			got[l.ID] = [2]string{st, be}
		}
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v\nwant %v", got, want)
	}
}

func TestPoolGauges(t *testing.T) {
	for _, tc := range []struct {
		name  string
		stats map[string]uint64
		want  []poolGauge
	}{
		{"bucket stats", map[string]uint64{
			"tdspool.bucket.bucket-001.pool_idle": 2, "tdspool.bucket.bucket-001.pool_active": 1, "tdspool.bucket.bucket-001.pool_keys": 3,
			"tdspool.bucket.bucket-004.pool_idle": 0, "tdspool.bucket.bucket-004.pool_active": 0, "tdspool.bucket.bucket-004.pool_keys": 0,
			"tdspool.connections_active": 5,
		}, []poolGauge{{Admin: "a", Bucket: "bucket-001", Idle: 2, Active: 1, Keys: 3}}},
		{"per listener", map[string]uint64{
			"tdspool.listener.tds7.bucket.b.pool_idle": 1, "tdspool.listener.tds8.bucket.b.pool_active": 4,
			"tdspool.listener.tds8.bucket.a.pool_keys": 1,
		}, []poolGauge{
			{Admin: "a", Listener: "tds8", Bucket: "a", Keys: 1},
			{Admin: "a", Listener: "tds7", Bucket: "b", Idle: 1},
			{Admin: "a", Listener: "tds8", Bucket: "b", Active: 4},
		}},
		{"nothing pooled", map[string]uint64{"tdspool.bucket.x.pool_idle": 0}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := poolGauges([]envoyStats{{Admin: "a", Stats: tc.stats}}); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestBackendLeases(t *testing.T) {
	bs := []coordinator.BucketInfo{{Bucket: "b1", Leases: []coordinator.LeaseInfo{
		{ID: "p:2", Proxy: "p", Held: true, Holder: coordinator.Holder{Client: "c:1"}},
		{ID: "p:1", Proxy: "p", Held: true, Holder: coordinator.Holder{State: coordinator.HolderIdle}},
		{ID: "p:3", Proxy: "p", Kind: coordinator.KindWaiter},
		{ID: "p:c1", Proxy: "p", Kind: coordinator.KindClient},
	}}}
	var got [][2]string
	for _, b := range backendLeases(bs) {
		got = append(got, [2]string{b.ID, b.State})
	}
	if want := [][2]string{{"p:1", "idle"}, {"p:2", "in_use"}}; !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}
