package main

import (
	"encoding/json"
)

// filterConfig is the demo's tdspool config: every encryption mode accepted (plaintext, TDS 7
// login-only or full TLS with the demo's self-signed certificate, TDS 8 in Envoy), LOGIN7
// server name bucket-00N or database tenant_<x> routed to that bucket, everything else to
// bucket-001.
func filterConfig(buckets []string, redisAddr string, maxConns int, certFile, keyFile string) string {
	type bucket struct {
		Name           string `json:"name"`
		Cluster        string `json:"cluster"`
		MaxConnections int    `json:"max_connections"`
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
	for _, name := range buckets {
		bs = append(bs, bucket{Name: name, Cluster: clusterName(name), MaxConnections: maxConns})
		rs = append(rs, route{ServerName: name, Bucket: name})
	}
	for _, name := range buckets {
		rs = append(rs, route{Database: tenantDB(name), Bucket: name})
	}
	cfg["buckets"], cfg["routes"] = bs, rs
	out, _ := json.MarshalIndent(cfg, "", "  ")
	return string(out)
}
