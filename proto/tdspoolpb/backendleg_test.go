package tdspoolpb

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tdspool/tdspool/internal/testcert"
)

func TestBackendLegCombinations(t *testing.T) {
	dir := t.TempDir()
	caFile, _, err := testcert.Write(dir)
	if err != nil {
		t.Fatal(err)
	}
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	bucket := func(fields string) string {
		return `{"listener": {"encryption": "OFF_ALLOWED"}, "default_bucket": "b",
		  "buckets": [{"name": "b", "max_connections": 1` + fields + `}]}`
	}
	for _, tc := range []struct {
		name, fields string
		want         string // "" = accepted
	}{
		{"tcp_proxy plaintext", `, "cluster": "c"`, ""},
		{"tcp_proxy TDS 8 through the cluster's TLS", `, "cluster": "c", "backend_encryption": "TDS8"`, ""},
		{"tcp_proxy TDS 7 login-only", `, "cluster": "c", "backend_encryption": "TDS7_LOGIN_ONLY"`, "backend_encryption: TDS7_LOGIN_ONLY needs backend_leg MODULE"},
		{"tcp_proxy with addresses", `, "cluster": "c", "backend_addresses": ["h:1"]`, "backend_addresses: only used by backend_leg MODULE"},
		{"tcp_proxy with backend_tls", `, "cluster": "c", "backend_encryption": "TDS8", "backend_tls": {"ca_file": "` + caFile + `"}`, "backend_tls: only used by backend_leg MODULE"},
		{"tcp_proxy without cluster", ``, "cluster: required"},
		{"module plaintext", `, "backend_leg": "MODULE", "backend_addresses": ["127.0.0.1:1433"]`, ""},
		{"module without addresses", `, "backend_leg": "MODULE"`, "backend_addresses: required with backend_leg MODULE"},
		{"module bad address", `, "backend_leg": "MODULE", "backend_addresses": ["db.example.com"]`, `backend_addresses[0]: "db.example.com" is not host:port`},
		{"module TDS 7 full with CA", `, "backend_leg": "MODULE", "backend_addresses": ["db:1433"], "backend_encryption": "TDS7_FULL", "backend_tls": {"ca_file": "` + caFile + `", "server_name": "db"}`, ""},
		{"module TDS 8, system roots", `, "backend_leg": "MODULE", "backend_addresses": ["db:1433"], "backend_encryption": "TDS8"`, ""},
		{"module trust any and a CA", `, "backend_leg": "MODULE", "backend_addresses": ["db:1433"], "backend_encryption": "TDS8", "backend_tls": {"ca_file": "` + caFile + `", "trust_any_certificate": true}`, "trust_any_certificate: refused together with ca_file"},
		{"module TLS settings for plaintext", `, "backend_leg": "MODULE", "backend_addresses": ["db:1433"], "backend_tls": {"trust_any_certificate": true}`, "backend_tls: set, but backend_encryption is PLAINTEXT"},
		{"module CA file missing", `, "backend_leg": "MODULE", "backend_addresses": ["db:1433"], "backend_encryption": "TDS7_FULL", "backend_tls": {"ca_file": "/nonexistent.pem"}`, "backend_tls.ca_file: no such file"},
		{"module CA file not PEM", `, "backend_leg": "MODULE", "backend_addresses": ["db:1433"], "backend_encryption": "TDS7_FULL", "backend_tls": {"ca_file": "` + notPEM + `"}`, "no PEM certificate"},
		{"module connect timeout out of range", `, "backend_leg": "MODULE", "backend_addresses": ["db:1433"], "connect_timeout": "120s"`, "connect_timeout: 2m0s is outside"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Load([]byte(bucket(tc.fields)))
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if b := cfg.Buckets[0]; b.BackendLeg == BackendLeg_MODULE && (b.ConnectTimeout == nil || b.TcpKeepalive == nil) {
					t.Fatal("module defaults not applied")
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}
