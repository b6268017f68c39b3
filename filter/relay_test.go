package filter

import (
	"testing"
	"time"

	"github.com/tdspool/tdspool/envoy/host"
	"github.com/tdspool/tdspool/tds"
)

func batchPayload(text string) []byte {
	q := tds.SQLBatch{Headers: tds.AllHeaders{HasTransaction: true, OutstandingRequests: 1}, Text: text}
	return q.AppendSQLBatch(nil)
}

func TestBatchMayPin(t *testing.T) {
	for text, want := range map[string]bool{
		"select * from orders where id = 1":             false,
		"update t set x = 1":                            true, // false positive: fine
		"CREATE TABLE #t (id int)":                      true,
		"SeT NoCount On":                                true,
		"exec sp_prepexec @h output":                    true,
		"DECLARE c CURSOR FOR select 1":                 true,
		"insert bulk t (a int)":                         true,
		"begin tran; insert into t values (1); commit":  false,
		"select N'préparé', N'日本語' from t where a < 10": false,
	} {
		if got := batchMayPin(batchPayload(text)); got != want {
			t.Errorf("batchMayPin(%q) = %v, want %v", text, got, want)
		}
	}
}

// FuzzBatchMayPinNeverHidesAPin: whenever the full classifier finds pinning state in a
// batch, the prefilter must have let it through.
func FuzzBatchMayPinNeverHidesAPin(f *testing.F) {
	for _, s := range []string{"create table #x(a int)", "SET ANSI_NULLS ON", "exec sp_setapprole 'r','p'",
		"select 1", "declare c cursor for select 1", "EXEC sp_prepare @h OUTPUT, N'', N'select 1'"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		p := batchPayload(text)
		facts, err := tds.ClassifyRequest(&tds.Message{Type: tds.PacketSQLBatch, Payload: p})
		if err != nil {
			return
		}
		if facts.Pins() && !batchMayPin(p) {
			t.Fatalf("prefilter hides pinning facts %v in %q", facts, text)
		}
	})
}

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
