package filter

import (
	"fmt"

	"github.com/tdspool/tdspool/envoy/host"
	"github.com/tdspool/tdspool/proto/tdspoolpb"
)

// ClusterFilterStateKey is the typed filter state tcp_proxy reads to pick its upstream cluster
// per connection (Envoy's PerConnectionCluster object).
const ClusterFilterStateKey = "envoy.tcp_proxy.cluster"

// Factory is one loaded filter config: the validated config, the defined stats and whatever
// is shared by the listener's connections. It is built on Envoy's main thread and read
// (never written) by the workers.
type Factory struct {
	cfg     *tdspoolpb.Config
	stats   globalStats
	buckets map[string]*bucketState
}

type bucketState struct {
	cfg   *tdspoolpb.Bucket
	stats bucketStats
}

// NewFactory loads the JSON config and defines the stats. It is a host.ConfigFactory.
func NewFactory(name string, config []byte, h host.ConfigHost) (host.FilterFactory, error) {
	cfg, err := tdspoolpb.Load(config)
	if err != nil {
		return nil, err
	}
	return newFactory(cfg, h)
}

func newFactory(cfg *tdspoolpb.Config, m host.Metrics) (*Factory, error) {
	d := &metricDefiner{m: m}
	f := &Factory{cfg: cfg, stats: defineGlobalStats(d), buckets: map[string]*bucketState{}}
	for _, b := range cfg.Buckets {
		f.buckets[b.Name] = &bucketState{cfg: b, stats: defineBucketStats(d, b.Name)}
	}
	if d.err != nil {
		return nil, fmt.Errorf("defining stats: %w", d.err)
	}
	return f, nil
}

// NewFilter makes the per-connection filter (worker thread).
func (f *Factory) NewFilter(conn host.Conn) host.Filter {
	return &session{f: f, conn: conn}
}

// Destroy runs when Envoy drops the config (main thread).
func (f *Factory) Destroy() {}
