package filter

import (
	"fmt"

	"github.com/tdspool/tdspool/envoy/host"
)

// Stat names live under the module's metrics namespace (Envoy config: metrics_namespace
// "tdspool"), so /stats shows "tdspool.<name>". Per-bucket stats are named
// "tdspool.bucket.<bucket>.<stat>"; the shipped Envoy configs turn <bucket> into a "bucket" tag,
// which Prometheus shows as a label (the ABI has no labels of its own).

// globalStats are the listener-wide metrics.
type globalStats struct {
	connectionsTotal  host.MetricID // counter: downstream connections accepted
	connectionsActive host.MetricID // gauge
	noRoute           host.MetricID // counter: connections refused because no bucket matched
	routeFailed       host.MetricID // counter: Envoy refused the cluster filter state
}

// bucketStats are one bucket's metrics.
type bucketStats struct {
	sessionsTotal  host.MetricID // counter
	sessionsActive host.MetricID // gauge
	rxBytes        host.MetricID // counter: client → server bytes
	txBytes        host.MetricID // counter: server → client bytes
	rxPackets      host.MetricID // counter: client → server TDS packets
	txPackets      host.MetricID // counter: server → client TDS packets
}

type metricDefiner struct {
	m   host.Metrics
	err error
}

func (d *metricDefiner) counter(name string) host.MetricID { return d.define(name, d.m.DefineCounter) }
func (d *metricDefiner) gauge(name string) host.MetricID   { return d.define(name, d.m.DefineGauge) }
func (d *metricDefiner) histogram(name string) host.MetricID {
	return d.define(name, d.m.DefineHistogram)
}

func (d *metricDefiner) define(name string, f func(string) (host.MetricID, error)) host.MetricID {
	if d.err != nil {
		return 0
	}
	id, err := f(name)
	if err != nil {
		d.err = fmt.Errorf("metric %s: %w", name, err)
	}
	return id
}

func defineGlobalStats(d *metricDefiner) globalStats {
	return globalStats{
		connectionsTotal:  d.counter("connections_total"),
		connectionsActive: d.gauge("connections_active"),
		noRoute:           d.counter("no_route_total"),
		routeFailed:       d.counter("route_failed_total"),
	}
}

func defineBucketStats(d *metricDefiner, bucket string) bucketStats {
	p := "bucket." + bucket + "."
	return bucketStats{
		sessionsTotal:  d.counter(p + "sessions_total"),
		sessionsActive: d.gauge(p + "sessions_active"),
		rxBytes:        d.counter(p + "rx_bytes_total"),
		txBytes:        d.counter(p + "tx_bytes_total"),
		rxPackets:      d.counter(p + "rx_packets_total"),
		txPackets:      d.counter(p + "tx_packets_total"),
	}
}
