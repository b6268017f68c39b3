package tdspoolpb

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// bucketWithPool is a config whose one bucket has the given pool block; a "MODULE" prefix
// puts the bucket on the module-owned leg.
func bucketWithPool(pool string) string {
	leg := ""
	if p, ok := strings.CutPrefix(pool, "MODULE"); ok {
		pool, leg = p, `"backend_leg": "MODULE", "backend_addresses": ["127.0.0.1:1433"], `
	}
	return `{"listener": {"encryption": "OFF_ALLOWED"}, "default_bucket": "a",
	  "buckets": [{"name": "a", "cluster": "a", "max_connections": 4, ` + leg + `"pool": ` + pool + `}]}`
}

func TestPoolDefaults(t *testing.T) {
	for _, cfgJSON := range []string{minimalPlaintext, bucketWithPool(`{}`)} {
		cfg, err := Load([]byte(cfgJSON))
		if err != nil {
			t.Fatal(err)
		}
		p := cfg.Buckets[0].Pool
		if p.Mode != PoolMode_POOL_MODE_NONE || p.MaxIdleTime.AsDuration() != DefaultPoolMaxIdleTime ||
			p.MaxLifetime.AsDuration() != DefaultPoolMaxLifetime || p.ReauthAfter.AsDuration() != DefaultPoolReauthAfter || p.MinIdle != 0 {
			t.Fatalf("pool defaults: %v", p)
		}
	}
}

func TestPoolValidation(t *testing.T) {
	secret := filepath.Join(t.TempDir(), "warm")
	if err := os.WriteFile(secret, []byte("pw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TDSPOOL_TEST_WARM_PW", "pw")
	tests := []struct {
		name string
		pool string
		want []string // every substring must appear; none: the config loads
	}{
		{"none with limits", `{"mode": "POOL_MODE_NONE", "max_idle_time": "60s", "max_lifetime": "600s", "reauth_after": "30s"}`, nil},
		{"session mode needs the module-owned leg",
			`{"mode": "POOL_MODE_SESSION"}`, []string{"buckets[0].pool.mode: POOL_MODE_SESSION needs backend_leg MODULE"}},
		{"session mode on the module leg", `MODULE{"mode": "POOL_MODE_SESSION", "reauth_after": "60s"}`, nil},
		{"session mode warms", `MODULE{"mode": "POOL_MODE_SESSION", "min_idle": 1, "warmup": {"user": "u", "password_env": "TDSPOOL_TEST_WARM_PW"}}`, nil},
		{"transaction mode needs the module-owned leg",
			`{"mode": "POOL_MODE_TRANSACTION"}`, []string{"buckets[0].pool.mode: POOL_MODE_TRANSACTION needs backend_leg MODULE"}},
		{"transaction mode on the module leg", `MODULE{"mode": "POOL_MODE_TRANSACTION"}`, nil},
		{"transaction mode does not warm yet", `MODULE{"mode": "POOL_MODE_TRANSACTION", "min_idle": 1, "warmup": {"user": "u", "password_env": "TDSPOOL_TEST_WARM_PW"}}`,
			[]string{"buckets[0].pool.min_idle: warming is not supported with POOL_MODE_TRANSACTION yet"}},
		{"unknown mode", `{"mode": "POOL_MODE_SOMETIMES"}`, []string{"POOL_MODE_SOMETIMES"}},
		{"durations out of range", `{"max_idle_time": "0.5s", "max_lifetime": "1000000s", "reauth_after": "0s"}`, []string{
			"buckets[0].pool.max_idle_time: 500ms is outside 1s..24h0m0s",
			"buckets[0].pool.max_lifetime: 277h46m40s is outside",
			"buckets[0].pool.reauth_after: 0s is outside"}},
		{"min_idle over the cap, without warm-up credentials, without a pool", `{"min_idle": 5}`, []string{
			"buckets[0].pool.min_idle: 5 needs a pooling mode",
			"buckets[0].pool.min_idle: 5 exceeds max_connections 4",
			"buckets[0].pool.warmup: required when min_idle > 0"}},
		{"warm-up without min_idle", `{"warmup": {"user": "u", "password_env": "TDSPOOL_TEST_WARM_PW"}}`,
			[]string{"buckets[0].pool.warmup: set but min_idle is 0"}},
		{"warm-up without user or password", `{"min_idle": 1, "mode": "POOL_MODE_SESSION", "warmup": {}}`, []string{
			"buckets[0].pool.warmup.user: required",
			"buckets[0].pool.warmup.password_file: required: password_file or password_env"}},
		{"warm-up with both password sources", `{"min_idle": 1, "warmup": {"user": "u", "password_file": "` + secret + `", "password_env": "TDSPOOL_TEST_WARM_PW"}}`,
			[]string{"warmup.password_file: set both"}},
		{"warm-up password file missing", `{"min_idle": 1, "warmup": {"user": "u", "password_file": "/nonexistent/pw"}}`,
			[]string{`warmup.password_file: cannot read "/nonexistent/pw"`}},
		{"warm-up password env unset", `{"min_idle": 1, "warmup": {"user": "u", "password_env": "TDSPOOL_TEST_UNSET_PW"}}`,
			[]string{`warmup.password_env: environment variable "TDSPOOL_TEST_UNSET_PW" is not set`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load([]byte(bucketWithPool(tc.pool)))
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("Load: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("Load accepted a bad pool config")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
		})
	}
	// The password sources are checked, never echoed: the error names the
	// variable, not its value.
	_, err := Load([]byte(bucketWithPool(`MODULE{"mode": "POOL_MODE_SESSION", "min_idle": 1, "warmup": {"user": "u", "password_env": "TDSPOOL_TEST_UNSET_WARM_PW"}}`)))
	if err == nil || strings.Contains(err.Error(), `"pw"`) || !strings.Contains(err.Error(), "TDSPOOL_TEST_UNSET_WARM_PW") {
		t.Fatalf("an unset password variable should be named, never a value: %v", err)
	}
}
