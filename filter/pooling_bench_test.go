package filter

import (
	"testing"

	"github.com/tdspool/tdspool/envoy/host"
	"github.com/tdspool/tdspool/tds"
)

// BenchmarkPooledLogin is the proxy's Go work for one client login answered from a warm pool
// (the bench's login workload): connect, PRELOGIN, LOGIN7 answered with the recorded reply,
// SELECT 1 marked for reset and its reply with the reset's acknowledgement consumed, close and
// the backend back in the pool.
func BenchmarkPooledLogin(b *testing.B) {
	h, dialed := pooledHarness(b)
	warm := h.connect()
	fb, _ := warm.pooledLogin(b, dialed, "app", "pw")
	warm.s.OnRead(0, true)
	warm.s.OnEvent(host.RemoteClose)
	warm.s.OnDestroy()

	prelogin := preloginMsg(tds.EncryptOff)
	login := loginFor("app", "pw")
	query := tds.AppendPackets(nil, tds.PacketSQLBatch, 0, (&tds.SQLBatch{Text: "SELECT 1"}).AppendSQLBatch(nil), 8192)
	reply := doneReply(tds.EnvChangeResetAck().AppendEnvChange(nil))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		c := h.connect()
		c.fromClient(prelogin)
		c.fromClient(login)
		c.fromClient(query)
		fb.h.Data(reply)
		for c.conn.RunPosted() == 0 {
		}
		c.s.OnRead(0, true)
		c.s.OnEvent(host.RemoteClose)
		c.s.OnDestroy()
	}
	b.StopTimer()
	if got := h.metrics.Value("bucket.p1.pool_borrowed_total"); got < uint64(b.N) {
		b.Fatalf("pool_borrowed_total %d after %d logins: not served from the pool", got, b.N)
	}
	if len(*dialed) != 1 {
		b.Fatalf("%d backends dialed, want 1", len(*dialed))
	}
}
