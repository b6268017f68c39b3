package main

import (
	"encoding/json"
	"fmt"
)

// filterConfig is the demo's tdspool config: plaintext clients accepted, the database
// tenant_<x> routed to a bucket, everything else to bucket-001.
func filterConfig(buckets []string, redisAddr string, maxConns int) string {
	type bucket struct {
		Name           string `json:"name"`
		Cluster        string `json:"cluster"`
		MaxConnections int    `json:"max_connections"`
	}
	type route struct {
		Database string `json:"database,omitempty"`
		Bucket   string `json:"bucket"`
	}
	cfg := map[string]any{
		"listener":       map[string]any{"encryption": "OFF_ALLOWED"},
		"redis":          map[string]any{"addresses": []string{redisAddr}},
		"default_bucket": buckets[0],
	}
	var bs []bucket
	var rs []route
	for i, name := range buckets {
		bs = append(bs, bucket{Name: name, Cluster: clusterName(name), MaxConnections: maxConns})
		rs = append(rs, route{Database: fmt.Sprintf("tenant_%c", 'a'+i), Bucket: name})
	}
	cfg["buckets"], cfg["routes"] = bs, rs
	out, _ := json.MarshalIndent(cfg, "", "  ")
	return string(out)
}
