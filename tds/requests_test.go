package tds

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestAllHeadersLayout(t *testing.T) {
	// Typical bytes with no transaction (pytds "<IIHQI").
	want := unhex(t, `16 00 00 00 12 00 00 00 02 00 00 00 00 00 00 00 00 00 01 00 00 00`)
	var h AllHeaders
	if got := h.AppendAllHeaders(nil); !bytes.Equal(got, want) {
		t.Fatalf("% X", got)
	}
	d, n, err := DecodeAllHeaders(want)
	if err != nil || n != 22 || !d.HasTransaction || d.OutstandingRequests != 1 {
		t.Fatalf("%v %v", d, err)
	}
	full := AllHeaders{TransactionDescriptor: 0x1122, OutstandingRequests: 1, QueryNotification: []byte{1, 2},
		TraceActivity: make([]byte, 20), Other: []RawHeader{{Type: 9, Data: []byte{7}}}}
	b := full.AppendAllHeaders(nil)
	back, _, err := DecodeAllHeaders(b)
	full.HasTransaction = true
	if err != nil || !reflect.DeepEqual(back, full) {
		t.Fatalf("%+v %v", back, err)
	}
	for _, bad := range []string{``, `03 00 00 00`, `10 00 00 00`, `0A 00 00 00 06 00 00 00 02 00`, `0C 00 00 00 08 00 00 00 02 00 00 00`} {
		if _, _, err := DecodeAllHeaders(unhex(t, bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestSQLBatchRoundTrip(t *testing.T) {
	q := &SQLBatch{Headers: AllHeaders{TransactionDescriptor: 5, OutstandingRequests: 1, HasTransaction: true}, Text: "select 1; -- ü 😀"}
	back, err := DecodeSQLBatch(q.AppendSQLBatch(nil))
	if err != nil || !reflect.DeepEqual(back, q) {
		t.Fatalf("%v %v", back, err)
	}
}

func TestRPCRoundTrip(t *testing.T) {
	stmt, _ := NewRPCParam("", 0, NVarCharType(0), "select * from t where id = @p1")
	decl, _ := NewRPCParam("", 0, NVarCharType(4000), "@p1 int")
	p1, _ := NewRPCParam("@p1", 0, IntNType(4), int32(42))
	h, _ := NewRPCParam("@handle", ParamByRef, IntNType(4), nil)
	img, _ := NewRPCParam("@blob", 0, TypeInfo{Type: TypeImage, MaxLen: 0x7FFFFFFF}, nil)
	img.Value = []byte{3, 0, 0, 0, 1, 2, 3}
	r := &RPCRequest{Headers: AllHeaders{OutstandingRequests: 1, HasTransaction: true}, Calls: []RPCCall{
		{ProcID: ProcExecuteSQL, Params: []RPCParam{stmt, decl, p1}},
		{ProcName: "dbo.my_proc", Options: RPCNoMetadata, Params: []RPCParam{h, img}},
		{ProcID: ProcUnprepare, NoExec: true},
	}}
	b := r.AppendRPC(nil)
	back, err := DecodeRPC(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, r) {
		t.Fatalf("\n got %v\nwant %v", back, r)
	}
	if s, ok := back.Calls[0].Params[0].String(); !ok || s != "select * from t where id = @p1" {
		t.Fatal(s)
	}
	if v, ok := back.Calls[0].Params[2].Int(); !ok || v != 42 {
		t.Fatal(v)
	}
	if !back.Calls[1].Params[0].IsNull() {
		t.Fatal("null")
	}
	if id, ok := (&RPCCall{ProcName: "SYS.SP_PREPEXEC"}).Proc(); !ok || id != ProcPrepExec {
		t.Fatal("name lookup")
	}
	for i := 0; i < len(b); i++ {
		if _, err := DecodeRPC(b[:i]); err == nil && i > 0 {
			// Prefixes ending exactly at a call boundary are valid RPCs.
			continue
		}
	}
	tvp := append(r.Headers.AppendAllHeaders(nil), 0xFF, 0xFF, 10, 0, 0, 0, 0, 0, byte(TypeTVP))
	if _, err := DecodeRPC(tvp); err == nil {
		t.Fatal("TVP accepted")
	}
}

func TestTransMgrRoundTrip(t *testing.T) {
	hdr := AllHeaders{OutstandingRequests: 1, HasTransaction: true, TransactionDescriptor: 9}
	tests := []*TransMgrRequest{
		{Headers: hdr, Type: TMBeginXact, Isolation: IsolationSerializable, Name: "t1"},
		{Headers: hdr, Type: TMCommitXact, Name: ""},
		{Headers: hdr, Type: TMRollbackXact, Flags: TMBeginXactFlag, Isolation: IsolationReadCommitted, NewName: "n"},
		{Headers: hdr, Type: TMSaveXact, Name: "sp"},
		{Headers: hdr, Type: TMPropagateXact, Payload: []byte{1, 2, 3}},
		{Headers: hdr, Type: TMGetDTCAddress, Payload: []byte{0, 0}},
	}
	for _, tm := range tests {
		back, err := DecodeTransMgr(tm.AppendTransMgr(nil))
		if err != nil || !reflect.DeepEqual(back, tm) {
			t.Fatalf("%v: %v %v", tm, back, err)
		}
	}
	// tedious's beginTransaction(cb, "tx") at READ COMMITTED, as it arrived at the stand-in:
	// the name's length byte is 4, a byte count (SqlClient writes names the same way).
	tedious := []byte{0x16, 0, 0, 0, 0x12, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0,
		5, 0, 2, 4, 't', 0, 'x', 0}
	got, err := DecodeTransMgr(tedious)
	if err != nil || got.Type != TMBeginXact || got.Name != "tx" || got.Isolation != IsolationReadCommitted {
		t.Fatalf("tedious's TM_BEGIN_XACT: %v, %v", got, err)
	}
	if !bytes.Equal(got.AppendTransMgr(nil), tedious) {
		t.Fatalf("re-encoded % X, want % X", got.AppendTransMgr(nil), tedious)
	}
	if _, err := DecodeTransMgr(append(tedious[:25:25], 3, 't', 0, 'x')); err == nil {
		t.Fatal("odd name byte count accepted")
	}
	att := AppendAttention(nil)
	if !bytes.Equal(att, []byte{6, 1, 0, 8, 0, 0, 1, 0}) {
		t.Fatalf("% X", att)
	}
}

func TestClassifySQL(t *testing.T) {
	tests := []struct {
		sql  string
		want RequestFacts
	}{
		{"select 1;", RequestFacts{}},
		{"BEGIN TRAN; update t set x = 1", RequestFacts{BeginTran: true}},
		{"begin transaction t1", RequestFacts{BeginTran: true}},
		{"BEGIN DISTRIBUTED TRANSACTION", RequestFacts{BeginTran: true, Distributed: true}},
		{"BEGIN TRY select 1 END TRY BEGIN CATCH END CATCH", RequestFacts{}},
		{"IF @@TRANCOUNT > 0 COMMIT TRAN", RequestFacts{CommitTran: true}},
		{"IF @@TRANCOUNT > 0 ROLLBACK TRAN", RequestFacts{RollbackTran: true}},
		{"SAVE TRANSACTION sp1", RequestFacts{SaveTran: true}},
		{"-- BEGIN TRAN\nselect 'BEGIN TRAN' /* COMMIT /* nested */ ROLLBACK */", RequestFacts{}},
		{"select [begin tran] from \"commit\"", RequestFacts{}},
		{"select N'it''s ; BEGIN TRAN'", RequestFacts{}},
		{"CREATE TABLE #t (a int)", RequestFacts{TempTable: true}},
		{"create table [#t2](a int)", RequestFacts{TempTable: true}},
		{"select a into #x from t", RequestFacts{TempTable: true}},
		{"select a into ##g from t", RequestFacts{TempTable: true}},
		{"insert into #x values (1)", RequestFacts{}},
		{"create table t (a int)", RequestFacts{}},
		{"DECLARE c CURSOR FOR select 1", RequestFacts{Cursor: true}},
		{"DECLARE c SCROLL CURSOR FOR select 1", RequestFacts{Cursor: true}},
		{"DECLARE @c CURSOR", RequestFacts{}},
		{"use [my db]", RequestFacts{UseDatabase: "my db"}},
		{"USE app;", RequestFacts{UseDatabase: "app"}},
		{"insert bulk t (a int)", RequestFacts{BulkLoad: true}},
		{"BULK INSERT t FROM 'f'", RequestFacts{BulkLoad: true}},
		{"exec sp_setapprole 'r', 'p'", RequestFacts{AppRole: true, Procs: []string{"sp_setapprole"}}},
		{"EXEC sys.sp_prepare @h output, N'', N'select 1'", RequestFacts{Prepare: true, Procs: []string{"sys.sp_prepare"}}},
		{"exec master..sp_who", RequestFacts{Procs: []string{"master..sp_who"}}},
		{"EXEC @rc = dbo.p", RequestFacts{Procs: []string{"dbo.p"}}},
		{"exec('select 1')", RequestFacts{}},
		{"SET NOCOUNT ON", RequestFacts{SetOptions: []SetOption{{"NOCOUNT", "ON"}}}},
		{"set ansi_nulls, quoted_identifier on", RequestFacts{SetOptions: []SetOption{{"ANSI_NULLS", "ON"}, {"QUOTED_IDENTIFIER", "ON"}}}},
		{"SET TRANSACTION ISOLATION LEVEL READ COMMITTED;", RequestFacts{SetOptions: []SetOption{{"TRANSACTION ISOLATION LEVEL", "READ COMMITTED"}}}},
		{"SET TRANSACTION ISOLATION LEVEL SNAPSHOT select 1", RequestFacts{SetOptions: []SetOption{{"TRANSACTION ISOLATION LEVEL", "SNAPSHOT"}}}},
		{"set textsize 2147483647", RequestFacts{SetOptions: []SetOption{{"TEXTSIZE", "2147483647"}}}},
		{"SET LOCK_TIMEOUT -1", RequestFacts{SetOptions: []SetOption{{"LOCK_TIMEOUT", "-1"}}}},
		{"SET STATISTICS IO ON", RequestFacts{SetOptions: []SetOption{{"STATISTICS IO", "ON"}}}},
		{"SET IDENTITY_INSERT dbo.t ON", RequestFacts{SetOptions: []SetOption{{"IDENTITY_INSERT", "DBO.T ON"}}}},
		{"SET @x = 1", RequestFacts{}},
		// Session context: by EXEC in any spelling, SET CONTEXT_INFO, and in dynamic SQL.
		{"EXEC sp_set_session_context @key = N'TenantId', @value = 42, @read_only = 1",
			RequestFacts{SessionContext: true, Procs: []string{"sp_set_session_context"}}},
		{"exec SYS.Sp_Set_Session_Context N'TenantId', 42", RequestFacts{SessionContext: true, Procs: []string{"SYS.Sp_Set_Session_Context"}}},
		{"EXEC [sys].[sp_set_session_context] 'k', 1", RequestFacts{SessionContext: true, Procs: []string{"sys.sp_set_session_context"}}},
		{"EXECUTE dbo.sp_set_session_context 'k', 1", RequestFacts{SessionContext: true, Procs: []string{"dbo.sp_set_session_context"}}},
		{"declare @t int = 7; exec @rc = sp_set_session_context 'k', @t", RequestFacts{SessionContext: true, Procs: []string{"sp_set_session_context"}}},
		{"SET CONTEXT_INFO 0x0102", RequestFacts{SessionContext: true}},
		// A batch beginning with a procedure's name runs it (EXEC implied).
		{"sp_set_session_context N'TenantId', 42", RequestFacts{SessionContext: true, Procs: []string{"sp_set_session_context"}}},
		{"  sys.sp_set_session_context @key = N'k', @value = 1", RequestFacts{SessionContext: true, Procs: []string{"sys.sp_set_session_context"}}},
		{"sp_getapplock 'r', 'Exclusive', 'Session'", RequestFacts{Procs: []string{"sp_getapplock"}}},
		{"sp_prepare @h output, N'', N'select 1'", RequestFacts{Prepare: true, Procs: []string{"sp_prepare"}}},
		{"app_proc 1", RequestFacts{}},
		{"select sp_set_session_context from t", RequestFacts{}},
		{"declare @b varbinary(128) = 0x01; set context_info @b", RequestFacts{SessionContext: true}},
		{"EXEC('EXEC sp_set_session_context N''k'', 1')", RequestFacts{SessionContext: true}},
		{"exec sp_executesql N'SET   CONTEXT_INFO 0x01'", RequestFacts{SessionContext: true, Procs: []string{"sp_executesql"}}},
		{"SELECT SESSION_CONTEXT(N'TenantId'), CONTEXT_INFO()", RequestFacts{}},
		{"select 'context_info', 'set'", RequestFacts{}},
		{"exec sp_set_session_contexts 'k', 1", RequestFacts{Procs: []string{"sp_set_session_contexts"}}},
		{"UPDATE t SET nocount = 1", RequestFacts{}},
		{"update t set a = 1", RequestFacts{}},
		// tedious's initial batch (newline separated).
		{"set ansi_nulls on\nset xact_abort off\nset language us_english", RequestFacts{SetOptions: []SetOption{
			{"ANSI_NULLS", "ON"}, {"XACT_ABORT", "OFF"}, {"LANGUAGE", "US_ENGLISH"}}}},
	}
	for _, tt := range tests {
		var got RequestFacts
		ClassifySQL(tt.sql, &got)
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%q\n got %v\nwant %v", tt.sql, got, tt.want)
		}
	}
}

func TestClassifyRequest(t *testing.T) {
	hdr := AllHeaders{OutstandingRequests: 1, TransactionDescriptor: 77}
	msg := func(typ PacketType, st PacketStatus, payload []byte) *Message {
		var r Reassembler
		r.Feed(AppendPackets(nil, typ, st, payload, 512))
		m, err := r.Next()
		if err != nil {
			t.Fatal(err)
		}
		return &m
	}
	batch := (&SQLBatch{Headers: hdr, Text: "create table #t(a int)"}).AppendSQLBatch(nil)
	stmt, _ := NewRPCParam("@stmt", 0, NVarCharType(0), "BEGIN TRAN")
	execsql := (&RPCRequest{Headers: hdr, Calls: []RPCCall{{ProcID: ProcExecuteSQL, Params: []RPCParam{stmt}}}}).AppendRPC(nil)
	prep := (&RPCRequest{Headers: hdr, Calls: []RPCCall{{ProcID: ProcPrepExec}}}).AppendRPC(nil)
	cur := (&RPCRequest{Headers: hdr, Calls: []RPCCall{{ProcName: "sp_cursoropen"}}}).AppendRPC(nil)
	key, _ := NewRPCParam("@key", 0, NVarCharType(0), "TenantId")
	ctxRPC := func(name string) []byte {
		return (&RPCRequest{Headers: hdr, Calls: []RPCCall{{ProcName: name, Params: []RPCParam{key}}}}).AppendRPC(nil)
	}
	ctxStmt, _ := NewRPCParam("@stmt", 0, NVarCharType(0), "EXEC sys.sp_set_session_context @key = N'k', @value = @p1")
	tm := (&TransMgrRequest{Headers: hdr, Type: TMCommitXact, Flags: TMBeginXactFlag}).AppendTransMgr(nil)
	tests := []struct {
		m    *Message
		want func(f RequestFacts) bool
	}{
		{msg(PacketSQLBatch, StatusResetConnection, batch), func(f RequestFacts) bool {
			return f.ResetConnection && f.TempTable && f.TransactionDescriptor == 77 && f.Pins()
		}},
		{msg(PacketRPC, StatusResetConnectionSkipTran, execsql), func(f RequestFacts) bool { return f.ResetSkipTran && f.BeginTran && !f.Pins() }},
		{msg(PacketRPC, 0, prep), func(f RequestFacts) bool { return f.Prepare && f.Pins() }},
		{msg(PacketRPC, 0, cur), func(f RequestFacts) bool { return f.Cursor }},
		{msg(PacketRPC, 0, ctxRPC("sp_set_session_context")), func(f RequestFacts) bool { return f.SessionContext && f.Pins() }},
		{msg(PacketRPC, 0, ctxRPC("SYS.SP_SET_SESSION_CONTEXT")), func(f RequestFacts) bool { return f.SessionContext }},
		{msg(PacketRPC, 0, ctxRPC("[sys].[sp_set_session_context]")), func(f RequestFacts) bool { return f.SessionContext }},
		{msg(PacketRPC, 0, ctxRPC("dbo.sp_set_session_context")), func(f RequestFacts) bool { return f.SessionContext }},
		{msg(PacketRPC, 0, ctxRPC("sp_session_context_reader")), func(f RequestFacts) bool { return !f.SessionContext && !f.Pins() }},
		{msg(PacketRPC, 0, (&RPCRequest{Headers: hdr, Calls: []RPCCall{{ProcID: ProcExecuteSQL, Params: []RPCParam{ctxStmt}}}}).AppendRPC(nil)),
			func(f RequestFacts) bool { return f.SessionContext }},
		{msg(PacketTransMgr, 0, tm), func(f RequestFacts) bool { return f.CommitTran && f.BeginTran && f.Isolation == IsolationUnchanged }},
		{msg(PacketTransMgr, 0, (&TransMgrRequest{Headers: hdr, Type: TMBeginXact, Isolation: IsolationSerializable}).AppendTransMgr(nil)),
			func(f RequestFacts) bool { return f.BeginTran && f.Isolation == IsolationSerializable }},
		{msg(PacketBulkLoad, 0, []byte{1}), func(f RequestFacts) bool { return f.BulkLoad }},
		{msg(PacketAttention, 0, nil), func(f RequestFacts) bool { return f.Type == PacketAttention }},
	}
	for i, tt := range tests {
		f, err := ClassifyRequest(tt.m)
		if err != nil || !tt.want(f) {
			t.Errorf("%d: %v %v", i, f, err)
		}
	}
}

func FuzzRPC(f *testing.F) {
	stmt, _ := NewRPCParam("", 0, NVarCharType(0), "select 1")
	f.Add((&RPCRequest{Calls: []RPCCall{{ProcID: ProcExecuteSQL, Params: []RPCParam{stmt}}, {ProcName: "p"}}}).AppendRPC(nil))
	// Typed values for RPCParam.Decode.
	dec, _ := NewRPCParam("@d", 0, DecimalNType(10, 2), "-1.25")
	dt2, _ := NewRPCParam("@t", ParamByRef, DateTime2NType(3), time.Date(2020, 1, 2, 3, 4, 5, 6e6, time.UTC))
	guid, _ := NewRPCParam("@g", 0, GUIDType(), "6F9619FF-8B86-D011-B42D-00C04FC964FF")
	money := RPCParam{Name: "@m", Type: TypeInfo{Type: TypeMoneyN, MaxLen: 8}, Value: []byte{8, 0, 0, 0, 0, 0x10, 0x27, 0, 0}}
	dto := RPCParam{Name: "@o", Type: TypeInfo{Type: TypeDateTimeOffsetN, Scale: 0}, Value: []byte{8, 1, 0, 0, 2, 0, 0, 0x3C, 0}}
	f.Add((&RPCRequest{Calls: []RPCCall{{ProcName: "p", Params: []RPCParam{dec, dt2, guid, money, dto}}}}).AppendRPC(nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeRPC(b)
		if err != nil {
			return
		}
		_ = r.String()
		for _, c := range r.Calls {
			for _, p := range c.Params {
				p.String()
				p.Int()
				p.Bytes()
				p.Decode()
			}
		}
		r2, err := DecodeRPC(r.AppendRPC(nil))
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		if len(r2.Calls) != len(r.Calls) {
			t.Fatalf("calls %d != %d", len(r2.Calls), len(r.Calls))
		}
	})
}

func FuzzClassifySQL(f *testing.F) {
	for _, s := range []string{"BEGIN TRAN", "set ansi_nulls, quoted_identifier on", "/* /* */ */ select 'x''y' -- z",
		"exec master..sp_who", "SET TRANSACTION ISOLATION LEVEL READ", "[unterminated", "N'"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var facts RequestFacts
		ClassifySQL(s, &facts)
		_ = facts.String()
		// A batch wrapped in SQL_BATCH classifies the same way.
		m := Message{Type: PacketSQLBatch, Payload: (&SQLBatch{Text: s}).AppendSQLBatch(nil)}
		if _, err := ClassifyRequest(&m); err != nil {
			t.Fatal(err)
		}
	})
}

func FuzzTransMgr(f *testing.F) {
	f.Add((&TransMgrRequest{Type: TMCommitXact, Flags: 1, NewName: "x"}).AppendTransMgr(nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		tm, err := DecodeTransMgr(b)
		if err != nil {
			return
		}
		if _, err := DecodeTransMgr(tm.AppendTransMgr(nil)); err != nil {
			t.Fatal(err)
		}
	})
}

// A request longer than the kept prefix is classified on its first bytes. FreeTDS's ODBC
// driver sends a statement with large parameters as one sp_prepexec whose values run past the
// prefix: before, the truncated parameter failed the whole decode, the handle it creates went
// unnoticed and a transaction-pooled client's sp_execute / sp_unprepare reached a backend
// without it (error 8179). The calls named before the cut are still classified.
func TestClassifyRequestTruncatedRPC(t *testing.T) {
	decl, _ := NewRPCParam("", 0, NVarCharType(4000), "@P1 NVARCHAR(MAX)")
	stmt, _ := NewRPCParam("", 0, NVarCharType(4000), "INSERT INTO t (s) VALUES (@P1)")
	handle, _ := NewRPCParam("", ParamByRef, IntNType(4), nil)
	big, _ := NewRPCParam("", 0, NVarCharType(0), strings.Repeat("x", 20000))
	for _, tc := range []struct {
		name string
		call RPCCall
		want func(f RequestFacts) bool
	}{
		{"sp_prepexec by id", RPCCall{ProcID: ProcPrepExec, Params: []RPCParam{handle, decl, stmt, big}},
			func(f RequestFacts) bool { return f.Prepare && f.Pins() }},
		{"sp_executesql by name, BEGIN TRAN", RPCCall{ProcName: "sp_executesql", Params: []RPCParam{
			mustParam(t, "BEGIN TRAN; INSERT INTO t (s) VALUES (@P1)"), decl, big}},
			func(f RequestFacts) bool { return f.BeginTran }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			payload := (&RPCRequest{Headers: AllHeaders{OutstandingRequests: 1}, Calls: []RPCCall{tc.call}}).AppendRPC(nil)
			prefix := payload[:DefaultMaxKept]
			f, err := ClassifyRequest(&Message{Type: PacketRPC, Payload: prefix})
			if err == nil {
				t.Error("a truncated RPC classified without an error")
			}
			if !tc.want(f) {
				t.Errorf("facts of the truncated request: %+v", f)
			}
		})
	}
}

func mustParam(t *testing.T, s string) RPCParam {
	t.Helper()
	p, err := NewRPCParam("", 0, NVarCharType(4000), s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
