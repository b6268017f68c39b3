package filter

import (
	"testing"
	"time"

	"github.com/tdspool/tdspool/envoy/host"
	"github.com/tdspool/tdspool/tds"
)

func TestRelayCountersReachEnvoyWhileTheSessionLives(t *testing.T) {
	h := newHarness(t, testConfig)
	clock := time.Unix(1000, 0)
	h.f.now = func() time.Time { return clock }
	c := h.connect()
	c.login(t, "app", "")
	roundTrip := func() {
		c.fromClient(sqlBatch("select 1", 0))
		c.fromBackend(tds.AppendPackets(nil, tds.PacketReply, 0, tds.Done{Token: tds.TokenDone}.AppendDone(nil), 4096))
	}
	roundTrip()
	if v := h.metrics.Value("bucket.b1.requests_sql_batch_total"); v != 0 {
		t.Fatalf("flushed before the interval: %d", v)
	}
	clock = clock.Add(statFlushInterval + time.Millisecond)
	roundTrip()
	if v := h.metrics.Value("bucket.b1.requests_sql_batch_total"); v != 2 {
		t.Fatalf("requests_sql_batch_total = %d after the flush interval, want 2", v)
	}
	if v := h.metrics.Value("bucket.b1.rx_bytes_total"); v == 0 {
		t.Fatal("rx_bytes_total not flushed")
	}
	c.s.OnEvent(host.RemoteClose)
}
