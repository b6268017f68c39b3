package main

import (
	"encoding/json"
	"fmt"
)

// filterConfig is the demo's tdspool config: every encryption mode accepted (plaintext, TDS 7
// login-only or full TLS with the demo's self-signed certificate, TDS 8 in Envoy), LOGIN7
// server name bucket-00N or database tenant_<x> routed to that bucket, everything else to
// bucket-001.
//
// The backend legs (see backendEncryption): bucket-001 module-owned in plaintext and
// bucket-002 module-owned with TDS 7 full TLS, both with session pooling, bucket-003
// module-owned with TDS 8 and transaction pooling, bucket-004 over tcp_proxy in plaintext
// (the leg without pooling); the TLS legs verify the stand-ins' certificate (the demo's) for
// "localhost". Every bucket keeps its Envoy cluster, whose health checks gate logins on both
// legs.
func filterConfig(buckets []string, redisAddr string, maxConns int, certFile, keyFile string, firstBackend int) string {
	type bucket struct {
		Name              string         `json:"name"`
		Cluster           string         `json:"cluster"`
		MaxConnections    int            `json:"max_connections"`
		BackendLeg        string         `json:"backend_leg,omitempty"`
		BackendAddresses  []string       `json:"backend_addresses,omitempty"`
		BackendEncryption string         `json:"backend_encryption,omitempty"`
		BackendTLS        map[string]any `json:"backend_tls,omitempty"`
		Pool              map[string]any `json:"pool,omitempty"`
	}
	type route struct {
		ServerName string `json:"server_name,omitempty"`
		Database   string `json:"database,omitempty"`
		Bucket     string `json:"bucket"`
	}
	listener := map[string]any{"encryption": "OFF_ALLOWED"}
	if certFile != "" {
		listener["tls_cert_file"], listener["tls_key_file"] = certFile, keyFile
	}
	cfg := map[string]any{
		"listener":       listener,
		"timeouts":       map[string]any{"queue_timeout": "10s"},
		"redis":          map[string]any{"addresses": []string{redisAddr}},
		"default_bucket": buckets[0],
	}
	var bs []bucket
	var rs []route
	for i, name := range buckets {
		b := bucket{Name: name, Cluster: clusterName(name), MaxConnections: maxConns}
		if enc := moduleLegEncryption(i); enc != "" {
			b.BackendLeg, b.BackendEncryption = "MODULE", enc
			b.BackendAddresses = []string{fmt.Sprintf("127.0.0.1:%d", firstBackend+i)}
			if enc != "PLAINTEXT" {
				b.BackendTLS = map[string]any{"ca_file": certFile, "server_name": "localhost"}
			}
		}
		if sessionPooled(i) {
			b.Pool = map[string]any{"mode": "POOL_MODE_SESSION"}
		}
		if n := warmIdle(i); n > 0 {
			b.Pool["min_idle"] = n
			b.Pool["warmup"] = map[string]any{"user": demoUser, "database": tenantDB(name),
				"app_name": warmupAppName, "password_env": warmupPasswordEnv}
		}
		if transactionPooled(i) {
			b.Pool = map[string]any{"mode": "POOL_MODE_TRANSACTION"}
		}
		bs = append(bs, b)
		rs = append(rs, route{ServerName: name, Bucket: name})
	}
	for _, name := range buckets {
		rs = append(rs, route{Database: tenantDB(name), Bucket: name})
	}
	cfg["buckets"], cfg["routes"] = bs, rs
	out, _ := json.MarshalIndent(cfg, "", "  ")
	return string(out)
}

// moduleLegEncryption is the backend_encryption of a bucket on the module-owned leg, or ""
// for the tcp_proxy leg.
func moduleLegEncryption(i int) string {
	switch i {
	case 0:
		return "PLAINTEXT"
	case 1:
		return "TDS7_FULL"
	case 2:
		return "TDS8"
	}
	return ""
}

// sessionPooled: bucket-001 and bucket-002 keep logged-in backends for reuse (session
// pooling needs the module-owned leg, so bucket-004 on tcp_proxy cannot).
func sessionPooled(i int) bool { return i == 0 || i == 1 }

// Warm-up of bucket-001: min_idle backends logged in at start with the demo login, so the first
// client is served warm. A warm backend only serves clients whose login has the same key:
// user, database, app name, language and LOGIN7 shape. The warm-up sends go-mssqldb's shape and
// app name (go-mssqldb's default "app name"), so a go-mssqldb client of demo/tenant_a with no
// "app name" in its DSN is served warm from the first login; other drivers are once one of
// them has logged in for real (the warm-up learns its shape).
const (
	warmupAppName = "go-mssqldb"
	// warmupPasswordEnv names the variable Envoy reads the warm-up password from; the demo
	// sets it to the demo login's password unless it is already set.
	warmupPasswordEnv = "TDSPOOL_DEMO_WARMUP_PASSWORD"
)

// warmIdle is bucket i's min_idle: 1 on bucket-001, 0 elsewhere. The pool, and so min_idle,
// belongs to a filter config: the demo's listener has two (the TDS 7 chain and the TDS 8 chain,
// which do not share backends), so bucket-001 keeps one warm backend for each.
func warmIdle(i int) int {
	if i == 0 {
		return 1
	}
	return 0
}

// transactionPooled: bucket-003 (tenant_c) lends a backend per request: its clients hold
// sessions without holding backends, so its cap of 20 serves hundreds of them.
func transactionPooled(i int) bool { return i == 2 }

// legDescription says how tdspool reaches bucket i, for the banner.
func legDescription(i int, cluster string) string {
	switch moduleLegEncryption(i) {
	case "PLAINTEXT":
		return "takes any client; module-owned leg, plaintext, session pooling, min_idle 1 (warm at start)"
	case "TDS7_FULL":
		return "forces encryption; module-owned leg, TDS 7 full TLS, session pooling"
	case "TDS8":
		return "TDS 8 only; module-owned leg, TDS 8, transaction pooling"
	}
	return "takes any client; tcp_proxy leg via Envoy cluster " + cluster + ", plaintext, no pooling"
}
