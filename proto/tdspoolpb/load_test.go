package tdspoolpb

import (
	"errors"
	"strings"
	"testing"
	"time"
)

const minimalPlaintext = `{
  "listener": {"encryption": "OFF_ALLOWED"},
  "buckets": [{"name": "bucket-001", "cluster": "bucket_001", "max_connections": 10}],
  "default_bucket": "bucket-001"
}`

func TestLoadAppliesDefaults(t *testing.T) {
	cfg, err := Load([]byte(minimalPlaintext))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if got := cfg.Timeouts.QueueTimeout.AsDuration(); got != DefaultQueueTimeout {
		t.Errorf("queue_timeout = %s, want %s", got, DefaultQueueTimeout)
	}
	b := cfg.Bucket("bucket-001")
	if b == nil || b.MaxQueue != 40 || b.QueueTimeout.AsDuration() != DefaultQueueTimeout {
		t.Errorf("bucket defaults not applied: %v", b)
	}
	if cfg.ErrorNumbers != ErrorNumbers_TRANSIENT || cfg.Redis.KeyPrefix != DefaultKeyPrefix {
		t.Errorf("defaults: error_numbers=%s key_prefix=%q", cfg.ErrorNumbers, cfg.Redis.KeyPrefix)
	}
	if cfg.ProxyId == "" {
		t.Error("proxy_id not defaulted")
	}
}

func TestLoadListsEveryProblemWithItsPath(t *testing.T) {
	tests := []struct {
		name string
		json string
		want []string // substrings, each must appear
	}{
		{"empty", ``, []string{"config: empty"}},
		{"unknown field", `{"bukets": []}`, []string{"bukets"}},
		{"bad enum", `{"listener": {"encryption": "SOMETIMES"}}`, []string{"SOMETIMES"}},
		{
			"many problems at once",
			`{
			  "listener": {"encryption": "REQUIRE", "max_packet_size": 100},
			  "buckets": [
			    {"name": "Bad Name", "cluster": "", "max_connections": 0, "backend_encryption": "TDS7_FULL"},
			    {"name": "b2", "cluster": "c", "max_connections": 1},
			    {"name": "b2", "cluster": "c", "max_connections": 1}
			  ],
			  "routes": [{"database": "x*y", "bucket": "nope"}],
			  "default_bucket": "missing",
			  "redis": {"addresses": ["localhost"], "lease_ttl": "2s", "heartbeat_interval": "2s"}
			}`,
			[]string{
				"listener.max_packet_size: 100 is outside 512..32767",
				"listener.tls_cert_file: encryption REQUIRE needs",
				`buckets[0].name: "Bad Name" must match`,
				"buckets[0].cluster: required",
				"buckets[0].max_connections: required",
				"buckets[0].backend_encryption: TDS7_FULL needs backend_leg MODULE",
				`buckets[2].name: "b2" is used by another bucket`,
				`buckets[2].cluster: "c" is also the cluster of bucket "b2"`,
				`routes[0].bucket: "nope" is not a configured bucket`,
				`routes[0].database: "x*y"`,
				`default_bucket: "missing" is not a configured bucket`,
				`redis.addresses[0]: "localhost" is not host:port`,
				"redis.lease_ttl: 2s must exceed twice heartbeat_interval",
			},
		},
		{"no route", `{"listener": {"encryption": "OFF_ALLOWED"}, "buckets": [{"name": "a", "cluster": "a", "max_connections": 1}]}`,
			[]string{"routes: no routes and no default_bucket"}},
		{"missing cert file", `{"listener": {"tls_cert_file": "/nonexistent/c.pem", "tls_key_file": "/nonexistent/k.pem"}, "buckets": [{"name": "a", "cluster": "a", "max_connections": 1}], "default_bucket": "a"}`,
			[]string{`listener.tls_cert_file: cannot read "/nonexistent/c.pem"`, `listener.tls_key_file: cannot read`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load([]byte(tt.json))
			if err == nil {
				t.Fatal("Load accepted a bad config")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
			var p Problems
			if errors.As(err, &p) && len(p) < len(tt.want) {
				t.Errorf("got %d problems, want at least %d: %v", len(p), len(tt.want), p)
			}
		})
	}
}

func TestLoadAcceptsDurationsAndRoutes(t *testing.T) {
	cfg, err := Load([]byte(`{
	  "listener": {"encryption": "OFF_ALLOWED"},
	  "buckets": [{"name": "a", "cluster": "ca", "max_connections": 2, "queue_timeout": "0.25s"},
	              {"name": "b", "cluster": "cb", "max_connections": 3}],
	  "routes": [{"server_name": "db-a*", "bucket": "a"}, {"database": "tenant_b", "bucket": "b"}],
	  "timeouts": {"queue_timeout": "1.5s"}
	}`))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if got := cfg.Bucket("a").QueueTimeout.AsDuration(); got != 250*time.Millisecond {
		t.Errorf("bucket a queue_timeout = %s", got)
	}
	if got := cfg.Bucket("b").QueueTimeout.AsDuration(); got != 1500*time.Millisecond {
		t.Errorf("bucket b inherits queue_timeout = %s", got)
	}
}
