package filter

import (
	"testing"

	"github.com/tdspool/tdspool/envoy/host"
	"github.com/tdspool/tdspool/tds"
)

func sqlBatch(text string, status tds.PacketStatus) []byte {
	q := tds.SQLBatch{Headers: tds.AllHeaders{HasTransaction: true, OutstandingRequests: 1}, Text: text}
	return tds.AppendPackets(nil, tds.PacketSQLBatch, status, q.AppendSQLBatch(nil), 512)
}

func rpcByID(id tds.ProcID) []byte {
	r := tds.RPCRequest{Headers: tds.AllHeaders{HasTransaction: true, OutstandingRequests: 1}, Calls: []tds.RPCCall{{ProcID: id}}}
	return tds.AppendPackets(nil, tds.PacketRPC, 0, r.AppendRPC(nil), 512)
}

func rpcByName(name string) []byte {
	key, _ := tds.NewRPCParam("@key", 0, tds.NVarCharType(0), "TenantId")
	val, _ := tds.NewRPCParam("@value", 0, tds.NVarCharType(0), "acme")
	r := tds.RPCRequest{Headers: tds.AllHeaders{HasTransaction: true, OutstandingRequests: 1},
		Calls: []tds.RPCCall{{ProcName: name, Params: []tds.RPCParam{key, val}}}}
	return tds.AppendPackets(nil, tds.PacketRPC, 0, r.AppendRPC(nil), 512)
}

func TestPinReasonsFromRequests(t *testing.T) {
	tests := []struct {
		name    string
		request []byte
		pinned  string
	}{
		{"temp table", sqlBatch("create table #t (id int)", 0), "temp_table"},
		{"prepare", rpcByID(tds.ProcPrepare), "prepared"},
		{"set option", sqlBatch("SET NOCOUNT ON; select 1", 0), "set_option"},
		{"cursor", rpcByID(tds.ProcCursorOpen), "cursor"},
		{"session context by RPC", rpcByName("sys.sp_set_session_context"), "session_context"},
		{"session context in a batch", sqlBatch("EXEC sp_set_session_context @key = N'TenantId', @value = 1, @read_only = 1", 0), "session_context"},
		{"context info", sqlBatch("SET CONTEXT_INFO 0x01", 0), "session_context"},
		// A long batch split over several 512-byte packets is classified as one message.
		{"multi-packet", sqlBatch("/*"+string(make([]byte, 900))+"*/ select 1 into #x", 0), "temp_table"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, testConfig)
			c := h.connect()
			c.login(t, "app", "")
			c.fromClient(tt.request)
			if v := h.metrics.Value("bucket.b1.pinned_" + tt.pinned); v != 1 {
				t.Fatalf("pinned_%s = %d", tt.pinned, v)
			}
			if v := h.metrics.Value("bucket.b1.sessions_pinned"); v != 1 {
				t.Fatalf("sessions_pinned = %d", v)
			}
			// A request carrying RESETCONNECTION undoes it.
			c.conn.Read = nil
			c.fromClient(sqlBatch("select 1", tds.StatusResetConnection))
			if v := h.metrics.Value("bucket.b1.pinned_" + tt.pinned); v != 0 {
				t.Fatalf("pinned_%s = %d after a reset", tt.pinned, v)
			}
			c.s.OnEvent(host.RemoteClose)
		})
	}
}

func TestPinGaugesSettleWhenAPinnedSessionCloses(t *testing.T) {
	h := newHarness(t, testConfig)
	c := h.connect()
	c.login(t, "app", "")
	c.fromClient(sqlBatch("create table #t (id int)", 0))
	c.fromClient(rpcByID(tds.ProcPrepExec))
	c.s.OnEvent(host.RemoteClose)
	for _, name := range []string{"pinned_temp_table", "pinned_prepared", "sessions_pinned"} {
		if v := h.metrics.Value("bucket.b1." + name); v != 0 {
			t.Errorf("%s = %d after close", name, v)
		}
	}
	if v := h.metrics.Value("bucket.b1.pin_temp_table_total"); v != 1 {
		t.Errorf("pin_temp_table_total = %d", v)
	}
}

// TestTransactionPinEndsWithEveryWayATransactionEnds: the server's ENVCHANGE decides, whether
// the transaction was committed, rolled back or ended by the server itself (type 17, e.g. an
// error that aborted it).
func TestTransactionPinEndsWithEveryWayATransactionEnds(t *testing.T) {
	for _, end := range []tds.EnvChange{tds.EnvChangeCommitTran(7), tds.EnvChangeRollbackTran(7), tds.EnvChangeTranEnded(7)} {
		t.Run(end.Type.String(), func(t *testing.T) {
			h := newHarness(t, testConfig)
			c := h.connect()
			c.login(t, "app", "")
			reply := func(env tds.EnvChange) {
				p := env.AppendEnvChange(nil)
				c.fromBackend(tds.AppendPackets(nil, tds.PacketReply, 0, tds.Done{Token: tds.TokenDone}.AppendDone(p), 4096))
			}
			c.fromClient(sqlBatch("begin tran", 0))
			reply(tds.EnvChangeBeginTran(7))
			if v := h.metrics.Value("bucket.b1.pinned_transaction"); v != 1 {
				t.Fatalf("pinned_transaction = %d after BEGIN TRAN", v)
			}
			c.fromClient(sqlBatch("commit", 0))
			reply(end)
			if v := h.metrics.Value("bucket.b1.pinned_transaction"); v != 0 {
				t.Fatalf("pinned_transaction = %d after %s", v, end.Type)
			}
			c.s.OnEvent(host.RemoteClose)
		})
	}
}
