package integration

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/tdspool/tdspool/deployments/envoyconfig"
	"github.com/tdspool/tdspool/internal/stack"
)

// TestRoutingByServerNameDatabaseAndDefault uses the demo's rules on three buckets: LOGIN7
// server name bucket-00N → that bucket, database tenant_<x> → its bucket, anything else →
// bucket-001; a login that matches a bucket's allow-list only there.
func TestRoutingByServerNameDatabaseAndDefault(t *testing.T) {
	names := []string{"bucket-001", "bucket-002", "bucket-003"}
	var buckets []map[string]any
	var routes []map[string]any
	var ebs []envoyconfig.Bucket
	for i, n := range names {
		b := startBucket(t, n)
		cluster := fmt.Sprintf("bucket_%03d", i+1)
		buckets = append(buckets, map[string]any{"name": n, "cluster": cluster, "max_connections": 4})
		routes = append(routes, map[string]any{"server_name": n, "bucket": n})
		ebs = append(ebs, envoyconfig.Bucket{Cluster: cluster, Port: b.Port()})
	}
	for i, n := range names {
		routes = append(routes, map[string]any{"database": fmt.Sprintf("tenant_%c", 'a'+i), "bucket": n})
	}
	js, _ := json.Marshal(map[string]any{"listener": map[string]any{"encryption": "OFF_ALLOWED"},
		"buckets": buckets, "routes": routes, "default_bucket": "bucket-001"})
	listenPort, _ := stack.FreePort()
	adminPort, _ := stack.FreePort()
	yaml, err := envoyconfig.Render(envoyconfig.Params{ListenerPort: listenPort, AdminPort: adminPort,
		FilterConfigJSON: string(js), Buckets: ebs})
	if err != nil {
		t.Fatal(err)
	}
	e, err := stack.StartEnvoy(stack.EnvoyOptions{Config: yaml, AdminPort: adminPort})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Stop)
	addr := fmt.Sprintf("127.0.0.1:%d", listenPort)
	for _, tc := range []struct{ server, db, want string }{
		{"bucket-002", "", "bucket-002"},
		{`BUCKET-003\SQLEXPRESS`, "tenant_a", "bucket-003"}, // server name wins (first rule), instance ignored
		{"db.example.com", "tenant_b", "bucket-002"},
		{"db.example.com", "tenant_c", "bucket-003"},
		{"db.example.com", "", "bucket-001"},
	} {
		rc := dialRaw(t, addr)
		evs, err := rc.tryLoginTo("app", tc.db, tc.server)
		if err != nil || !hasLoginAck(evs) {
			t.Fatalf("login server=%q db=%q: %v %v", tc.server, tc.db, err, evs)
		}
		if got := rc.batch(t, "PRINT @@SERVERNAME"); got != tc.want {
			t.Errorf("server=%q db=%q landed on %s, want %s", tc.server, tc.db, got, tc.want)
		}
		rc.c.Close()
	}
}
