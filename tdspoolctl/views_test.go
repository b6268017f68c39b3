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
	bs := []coordinator.BucketInfo{
		{Bucket: "b2", Leases: []coordinator.LeaseInfo{lease("p1", "u", "d", "a", true)}},
		{Bucket: "b1", Leases: []coordinator.LeaseInfo{
			lease("p2", "u", "d", "a", true),
			lease("p1", "u", "d", "a", true),
			lease("p1", "u", "d", "a", true),
			lease("p1", "u", "d", "other", true),
			lease("p1", "demo", "d", "tdspool-warmup", true),
			lease("p1", "u", "d", "a", false), // a waiter holds no backend
		}},
	}
	want := []loginBackends{
		{"b1", "p1", "demo", "d", "tdspool-warmup", 1},
		{"b1", "p1", "u", "d", "a", 2},
		{"b1", "p1", "u", "d", "other", 1},
		{"b1", "p2", "u", "d", "a", 1},
		{"b2", "p1", "u", "d", "a", 1},
	}
	if got := backendsByLogin(bs); !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
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
