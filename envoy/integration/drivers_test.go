package integration

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tdspool/tdspool/deployments/envoyconfig"
	"github.com/tdspool/tdspool/internal/stack"
	"github.com/tdspool/tdspool/tds/tdstest"
	"github.com/tdspool/tdspool/tds/tdstest/compat"
)

// proxyCert writes a self-signed certificate for the proxy's listener (TDS 7.x TLS in the
// filter, TDS 8 TLS in Envoy), valid for localhost and 127.0.0.1.
func proxyCert(t *testing.T) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "tdspool-proxy"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "proxy.pem"), filepath.Join(dir, "proxy.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// TestGoMssqldbThroughEnvoy runs the backend compatibility workload through Envoy + tdspool
// in every go-mssqldb encryption mode: disable (no TLS), false (login-only TLS in the
// filter), true (full TLS in the filter) and strict (TDS 8, TLS in Envoy).
func TestGoMssqldbThroughEnvoy(t *testing.T) {
	backend, err := tdstest.New(tdstest.Config{
		ServerName: "bucket-001", Users: map[string]string{"demo": "Demo-Passw0rd"},
		Databases: []string{"tenant_a"}, DataDir: t.TempDir(), Encryption: tdstest.EncryptionOptional,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := backend.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { backend.Close() })
	redisSrv := startRedis(t)
	cert, key := proxyCert(t)

	listenPort, _ := stack.FreePort()
	adminPort, _ := stack.FreePort()
	filterCfg, _ := json.Marshal(map[string]any{
		"listener": map[string]any{"encryption": "OFF_ALLOWED", "tls_cert_file": cert, "tls_key_file": key},
		"buckets": []map[string]any{{"name": "bucket-001", "cluster": "bucket_001", "max_connections": 4,
			"queue_timeout": "10s"}},
		"routes":         []map[string]any{{"database": "tenant_a", "bucket": "bucket-001"}},
		"default_bucket": "bucket-001",
		"redis":          map[string]any{"addresses": []string{redisSrv.Addr}, "heartbeat_interval": "0.5s", "lease_ttl": "3s"},
	})
	yaml, err := envoyconfig.Render(envoyconfig.Params{
		ListenerPort: listenPort, AdminPort: adminPort, FilterConfigJSON: string(filterCfg),
		TDS8CertFile: cert, TDS8KeyFile: key,
		Buckets: []envoyconfig.Bucket{{Cluster: "bucket_001", Port: backend.Port()}},
	})
	if err != nil {
		t.Fatal(err)
	}
	e, err := stack.StartEnvoy(stack.EnvoyOptions{Config: yaml, AdminPort: adminPort})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		e.Stop()
		if t.Failed() {
			t.Logf("envoy output (tail):\n%s", tailLines(e.Output(), 80))
		}
	})

	target := compat.Target{Host: "127.0.0.1", Port: listenPort, User: "demo", Password: "Demo-Passw0rd",
		Database: "tenant_a", CAFile: cert, HostInCert: "localhost"}
	for _, mode := range compat.GoEncryptModes {
		t.Run("encrypt="+mode, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			if err := compat.RunGo(ctx, target, mode, t.Logf); err != nil {
				t.Fatal(err)
			}
		})
	}

	// Everything is given back: backend sessions, Envoy sessions, slots and Redis leases.
	waitStat(t, e, "tdspool.connections_active", 0)
	deadline := time.Now().Add(5 * time.Second)
	for backend.Sessions() != 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := backend.Sessions(); n != 0 {
		t.Errorf("backend still has %d sessions", n)
	}
	stats, _ := e.Stats()
	g, r := stats["tdspool.bucket.bucket-001.slot_granted_total"], stats["tdspool.bucket.bucket-001.slot_released_total"]
	if g == 0 || g != r {
		t.Errorf("slots granted %d, released %d", g, r)
	}
	for _, k := range []string{"tls_none_total", "tls_login_only_total", "tls_full_total", "tls_strict_total"} {
		if stats["tdspool."+k] == 0 {
			t.Errorf("tdspool.%s = 0: that encryption mode was not exercised", k)
		}
	}
	t.Logf("sessions by TLS mode: none=%d login-only=%d full=%d strict=%d", stats["tdspool.tls_none_total"],
		stats["tdspool.tls_login_only_total"], stats["tdspool.tls_full_total"], stats["tdspool.tls_strict_total"])
	assertNoLeases(t, redisSrv.Addr, "bucket-001")
}

// assertNoLeases checks the coordinator left no lease behind for bucket in Redis.
func assertNoLeases(t *testing.T, addr, bucket string) {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	defer rdb.Close()
	key := fmt.Sprintf("tdspool:{%s}:h", bucket)
	deadline := time.Now().Add(5 * time.Second)
	for {
		n, err := rdb.ZCard(context.Background(), key).Result()
		if err != nil {
			t.Fatalf("ZCARD %s: %v", key, err)
		}
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d leases left in %s", n, key)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestPythonDriversThroughEnvoy runs the compatibility workload with python-tds and pymssql
// (FreeTDS) through Envoy + tdspool, in each encryption mode those drivers have, and checks
// from tdspool's stats that the mode really was used on the client leg.
func TestPythonDriversThroughEnvoy(t *testing.T) {
	python := compat.FindPython()
	if python == "" {
		t.Fatal("no project Python (.venv): run `make setup`")
	}
	backend, err := tdstest.New(tdstest.Config{
		ServerName: "bucket-001", Users: map[string]string{"demo": "Demo-Passw0rd"},
		Databases: []string{"tenant_a"}, DataDir: t.TempDir(), Encryption: tdstest.EncryptionOptional,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := backend.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { backend.Close() })
	cert, key := proxyCert(t)
	listenPort, _ := stack.FreePort()
	adminPort, _ := stack.FreePort()
	filterCfg, _ := json.Marshal(map[string]any{
		"listener":       map[string]any{"encryption": "OFF_ALLOWED", "tls_cert_file": cert, "tls_key_file": key},
		"buckets":        []map[string]any{{"name": "bucket-001", "cluster": "bucket_001", "max_connections": 4}},
		"default_bucket": "bucket-001",
	})
	yaml, err := envoyconfig.Render(envoyconfig.Params{ListenerPort: listenPort, AdminPort: adminPort,
		FilterConfigJSON: string(filterCfg), Buckets: []envoyconfig.Bucket{{Cluster: "bucket_001", Port: backend.Port()}}})
	if err != nil {
		t.Fatal(err)
	}
	e, err := stack.StartEnvoy(stack.EnvoyOptions{Config: yaml, AdminPort: adminPort})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Stop)
	target := compat.Target{Host: "127.0.0.1", Port: listenPort, User: "demo", Password: "Demo-Passw0rd",
		Database: "tenant_a", CAFile: cert, HostInCert: "localhost"}

	type run func(context.Context, string, compat.Target, string) (string, error)
	for _, drv := range []struct {
		name, module string
		run          run
		modes        map[string]string // driver mode → tdspool stat that must move
	}{
		{"python-tds", "pytds", compat.RunPytds, map[string]string{"off": "tls_none_total", "login-only": "tls_login_only_total", "full": "tls_full_total"}},
		{"pymssql", "pymssql", compat.RunPymssql, map[string]string{"off": "tls_none_total", "request": "tls_login_only_total", "require": "tls_full_total"}},
	} {
		if !compat.HasPythonModule(python, drv.module) {
			t.Fatalf("%s not installed in %s: run `make setup`", drv.name, python)
		}
		for mode, stat := range drv.modes {
			t.Run(drv.name+"/"+mode, func(t *testing.T) {
				before, _ := e.Stats()
				ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
				defer cancel()
				out, err := drv.run(ctx, python, target, mode)
				if err != nil {
					t.Fatalf("%v\n%s", err, out)
				}
				after, _ := e.Stats()
				if after["tdspool."+stat] == before["tdspool."+stat] {
					t.Errorf("tdspool.%s did not move: the %s mode was not used", stat, mode)
				}
			})
		}
	}
	waitStat(t, e, "tdspool.connections_active", 0)
	stats, _ := e.Stats()
	if g, r := stats["tdspool.bucket.bucket-001.slot_granted_total"], stats["tdspool.bucket.bucket-001.slot_released_total"]; g != r || g == 0 {
		t.Errorf("slots granted %d released %d", g, r)
	}
}
