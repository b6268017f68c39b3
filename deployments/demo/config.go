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

// transactionPooled: bucket-003 (tenant_c) lends a backend per request: its clients hold
// sessions without holding backends, so its cap of 20 serves hundreds of them.
func transactionPooled(i int) bool { return i == 2 }

// legDescription says how tdspool reaches bucket i, for the banner.
func legDescription(i int, cluster string) string {
	switch moduleLegEncryption(i) {
	case "PLAINTEXT":
		return "takes any client; module-owned leg, plaintext, session pooling"
	case "TDS7_FULL":
		return "forces encryption; module-owned leg, TDS 7 full TLS, session pooling"
	case "TDS8":
		return "TDS 8 only; module-owned leg, TDS 8, transaction pooling"
	}
	return "takes any client; tcp_proxy leg via Envoy cluster " + cluster + ", plaintext, no pooling"
}
