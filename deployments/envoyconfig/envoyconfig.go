// Package envoyconfig renders the Envoy bootstrap that runs tdspool: one TDS listener with the
// dynamic-module filter in front of tcp_proxy, one cluster per bucket, and the stats tag that
// turns the bucket part of tdspool's stat names into a label. The demo (make run) and the
// integration tests use it, so what the tests prove is what the demo runs.
package envoyconfig

import (
	"bytes"
	_ "embed"
	"fmt"
	"strconv"
	"strings"
	"text/template"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/tdspool/tdspool/proto/tdspoolpb"
)

//go:embed tdspool.yaml.tmpl
var bootstrapTemplate string

// Bucket is one SQL Server instance as Envoy sees it.
type Bucket struct {
	Cluster        string
	Address        string
	Port           int
	MaxConnections int
	// UpstreamTDS8CAFile, when set, makes the cluster speak TDS 8 to the instance: the
	// upstream TLS transport socket (ALPN tds/8.0, SNI UpstreamTDS8ServerName) verifies the
	// server's certificate against this CA. tdspool's tcp_proxy leg then sends plain TDS
	// inside that TLS (backend_encryption TDS8).
	UpstreamTDS8CAFile     string
	UpstreamTDS8ServerName string
}

// Params fill the template.
type Params struct {
	ListenAddress    string // 127.0.0.1
	ListenerPort     int
	AdminPort        int
	FilterConfigJSON string // the tdspool filter config (proto/tdspool.proto as JSON)
	FallbackCluster  string // tcp_proxy's static cluster, used only if the filter sets none
	ConnectTimeout   string // e.g. "1s"
	// TDS8CertFile and TDS8KeyFile, when set, add a filter chain for TDS 8 strict clients:
	// Envoy terminates their TLS (ALPN tds/8.0) and tdspool sees plain TDS inside.
	TDS8CertFile, TDS8KeyFile string
	// HealthCheckInterval is the TCP health check period per bucket cluster (default "2s").
	HealthCheckInterval string
	Buckets             []Bucket

	// ListenerFiltersTimeout is set by Render from the filter config's first_byte_timeout.
	ListenerFiltersTimeout string
}

var tmpl = template.Must(template.New("envoy").Funcs(template.FuncMap{
	"indent": func(n int, s string) string {
		pad := strings.Repeat(" ", n)
		return pad + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n"+pad)
	},
}).Parse(bootstrapTemplate))

// Render returns the Envoy bootstrap YAML.
func Render(p Params) ([]byte, error) {
	if p.ListenAddress == "" {
		p.ListenAddress = "127.0.0.1"
	}
	if p.ConnectTimeout == "" {
		p.ConnectTimeout = "1s"
	}
	if p.HealthCheckInterval == "" {
		p.HealthCheckInterval = "2s"
	}
	p.ListenerFiltersTimeout = envoyDuration(firstByteTimeout(p.FilterConfigJSON))
	if p.FallbackCluster == "" && len(p.Buckets) > 0 {
		p.FallbackCluster = p.Buckets[0].Cluster
	}
	for i := range p.Buckets {
		if p.Buckets[i].Address == "" {
			p.Buckets[i].Address = p.ListenAddress
		}
		if p.Buckets[i].MaxConnections == 0 {
			p.Buckets[i].MaxConnections = 1024
		}
	}
	var b bytes.Buffer
	if err := tmpl.Execute(&b, p); err != nil {
		return nil, fmt.Errorf("render envoy config: %w", err)
	}
	return b.Bytes(), nil
}

// firstByteTimeout is the filter config's timeouts.first_byte_timeout, or its default when the
// config does not decode (Envoy then refuses the config with the reasons anyway).
func firstByteTimeout(filterConfigJSON string) time.Duration {
	cfg := &tdspoolpb.Config{}
	if err := protojson.Unmarshal([]byte(filterConfigJSON), cfg); err != nil {
		return tdspoolpb.DefaultFirstByteTimeout
	}
	tdspoolpb.ApplyDefaults(cfg)
	return cfg.Timeouts.FirstByteTimeout.AsDuration()
}

// envoyDuration writes d the way Envoy's YAML takes a Duration ("10s", "0.25s").
func envoyDuration(d time.Duration) string {
	return strconv.FormatFloat(d.Seconds(), 'f', -1, 64) + "s"
}
