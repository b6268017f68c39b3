package filter

import (
	"fmt"

	"github.com/tdspool/tdspool/envoy/host"
)

// session is one client connection.
//
// Lifecycle:
//  1. OnNewConnection: answer StopIteration so tcp_proxy does not connect yet.
//  2. First OnRead: choose the bucket, hand its cluster to tcp_proxy through the typed filter
//     state, and let the chain continue; tcp_proxy connects and forwards the buffered bytes.
//  3. Relay: count bytes and TDS packets both ways without copying.
//  4. Close event: gauges back down (OnDestroy may not touch the connection any more).
type session struct {
	f        *Factory
	conn     host.Conn
	bucket   *bucketState
	routed   bool
	closed   bool
	finished bool

	rxPackets, txPackets packetCounter
}

func (s *session) OnNewConnection() host.Status {
	s.conn.IncCounter(s.f.stats.connectionsTotal, 1)
	s.conn.IncGauge(s.f.stats.connectionsActive, 1)
	return host.StopIteration
}

func (s *session) OnRead(size int, endStream bool) host.Status {
	if s.closed {
		return host.StopIteration
	}
	if !s.routed {
		if size == 0 {
			return host.StopIteration
		}
		if !s.route() {
			return host.StopIteration
		}
	}
	// Only the bytes that arrived since the last call are new: Envoy drains the read buffer
	// after tcp_proxy forwards it, so the buffer holds exactly the unseen bytes here.
	s.conn.IncCounter(s.bucket.stats.rxBytes, uint64(size))
	if n := countChunks(&s.rxPackets, s.conn.ReadBuffer()); n > 0 {
		s.conn.IncCounter(s.bucket.stats.rxPackets, uint64(n))
	}
	return host.Continue
}

// route picks the bucket for this connection and points tcp_proxy at its cluster.
func (s *session) route() bool {
	name := s.f.cfg.DefaultBucket
	b := s.f.buckets[name]
	if b == nil {
		s.conn.IncCounter(s.f.stats.noRoute, 1)
		s.closeWith("tdspool_no_route")
		return false
	}
	if !s.conn.SetFilterStateTyped(ClusterFilterStateKey, b.cfg.Cluster) {
		s.conn.IncCounter(s.f.stats.routeFailed, 1)
		s.conn.Log(host.LogError, fmt.Sprintf("bucket %s: Envoy refused cluster %q as %s", name, b.cfg.Cluster, ClusterFilterStateKey))
		s.closeWith("tdspool_route_failed")
		return false
	}
	s.bucket, s.routed = b, true
	s.conn.IncCounter(b.stats.sessionsTotal, 1)
	s.conn.IncGauge(b.stats.sessionsActive, 1)
	return true
}

func (s *session) OnWrite(size int, endStream bool) host.Status {
	if s.bucket == nil {
		return host.Continue
	}
	s.conn.IncCounter(s.bucket.stats.txBytes, uint64(size))
	if n := countChunks(&s.txPackets, s.conn.WriteBuffer()); n > 0 {
		s.conn.IncCounter(s.bucket.stats.txPackets, uint64(n))
	}
	return host.Continue
}

func (s *session) OnEvent(event host.ConnectionEvent) {
	if event == host.RemoteClose || event == host.LocalClose {
		s.finish()
	}
}

func (s *session) OnWatermark(above bool) {}

func (s *session) OnDestroy() {}

// finish runs once, on the first close event, while the connection is still usable.
func (s *session) finish() {
	if s.finished {
		return
	}
	s.finished = true
	if s.bucket != nil {
		s.conn.DecGauge(s.bucket.stats.sessionsActive, 1)
	}
	s.conn.DecGauge(s.f.stats.connectionsActive, 1)
}

func (s *session) closeWith(details string) {
	s.closed = true
	s.conn.Close(host.FlushWrite, details)
}

func countChunks(p *packetCounter, chunks [][]byte) int {
	n := 0
	for _, c := range chunks {
		n += p.feed(c)
	}
	return n
}
