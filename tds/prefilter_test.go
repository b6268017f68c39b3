package tds

import (
	"strings"
	"testing"
)

func batchPayload(text string) []byte {
	q := SQLBatch{Headers: AllHeaders{HasTransaction: true, OutstandingRequests: 1}, Text: text}
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
		"begin distributed tran":                        true,
		"exec sp_releaseapplock 'r'":                    true,
		"EXEC sp_set_session_context N'k', 1":           true,
		"SET CONTEXT_INFO 0x01":                         true,
		"begin tran; insert into t values (1); commit":  false,
		"select N'préparé', N'日本語' from t where a < 10": false,
		"": false,
	} {
		if got := BatchMayPin(batchPayload(text)); got != want {
			t.Errorf("BatchMayPin(%q) = %v, want %v", text, got, want)
		}
	}
}

// FuzzBatchMayPinNeverHidesAPin: whenever the full classifier finds pinning state in a
// batch, the prefilter must have let it through.
func FuzzBatchMayPinNeverHidesAPin(f *testing.F) {
	for _, s := range []string{"create table #x(a int)", "SET ANSI_NULLS ON", "exec sp_setapprole 'r','p'",
		"select 1", "declare c cursor for select 1", "EXEC sp_prepare @h OUTPUT, N'', N'select 1'",
		"declare @r int; exec @r = sp_getapplock 'r', 'Exclusive', 'Session'",
		"EXEC sys.sp_set_session_context @key = N'k', @value = 1", "SET CONTEXT_INFO 0x01",
		"exec('sEt\tcontext_info 0x01')"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		p := batchPayload(text)
		facts, err := ClassifyRequest(&Message{Type: PacketSQLBatch, Payload: p})
		if err != nil {
			return
		}
		applock := false
		for _, proc := range facts.Procs {
			applock = applock || strings.Contains(strings.ToLower(proc), "applock")
		}
		if (facts.Pins() || applock) && !BatchMayPin(p) {
			t.Fatalf("prefilter hides pinning facts %v in %q", facts, text)
		}
	})
}

// BenchmarkBatchMayPin: the prefilter on a typical query that cannot pin (the relay's
// common case). It must not allocate.
func BenchmarkBatchMayPin(b *testing.B) {
	p := batchPayload("select o.id, o.total, c.name from orders o join customers c on c.id = o.customer_id where o.id = @p1")
	b.ReportAllocs()
	for b.Loop() {
		if BatchMayPin(p) {
			b.Fatal("a plain select may pin?")
		}
	}
}
