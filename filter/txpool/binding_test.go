package txpool

import (
	"testing"
	"time"

	"github.com/tdspool/tdspool/tds"
)

// step is one event of a binding script and what must follow it.
type step struct {
	do      string // req, rpc, attn, borrow, borrow-dirty, tick, env, error, done, done-more, attn-done, eom, lost
	arg     string // req: SQL text; rpc: proc name; env: "begin"/"commit"/"rollback"/"db:<name>"; tick: duration
	want    Action
	phase   Phase
	prelude string // borrow: the expected prelude
}

const queueTimeout = 2 * time.Second

func runScript(t *testing.T, b *Binding, steps []step) {
	t.Helper()
	now := time.Unix(1000, 0)
	for i, s := range steps {
		var got Action
		switch s.do {
		case "req", "reset-req":
			f := classified(t, s.arg)
			f.ResetConnection = s.do == "reset-req"
			got = b.Request(now, f, s.arg, queueTimeout)
		case "rpc":
			f := tds.RequestFacts{Type: tds.PacketRPC}
			switch s.arg {
			case "sp_prepare":
				f.Prepare = true
			case "sp_unprepare":
				f.Unprepare = true
			default:
				f.Procs = []string{s.arg}
			}
			got = b.Request(now, &f, "", queueTimeout)
		case "attn":
			got = b.Attention()
		case "borrow", "borrow-dirty":
			backend := b.login.Clone()
			if s.do == "borrow-dirty" {
				backend.ApplySet(tds.SetOption{Name: "ARITHABORT", Value: "OFF"})
			}
			prelude, reset, a := b.Borrowed(backend)
			got = a
			if prelude != s.prelude || reset != (s.arg == "reset") {
				t.Fatalf("step %d %s: prelude %q reset %v, want %q reset %v", i, s.do, prelude, reset, s.prelude, s.arg == "reset")
			}
		case "tick":
			d, _ := time.ParseDuration(s.arg)
			now = now.Add(d)
			got = b.Tick(now)
		case "env":
			ev := tds.Event{Token: tds.TokenEnvChange}
			switch {
			case s.arg == "begin":
				ev.EnvChange.Type = tds.EnvBeginTran
			case s.arg == "commit":
				ev.EnvChange.Type = tds.EnvCommitTran
			case s.arg == "rollback":
				ev.EnvChange.Type = tds.EnvRollbackTran
			case len(s.arg) > 3 && s.arg[:3] == "db:":
				ev.EnvChange = tds.EnvChange{Type: tds.EnvDatabase, New: s.arg[3:]}
			}
			got = b.ServerEvent(&ev)
		case "error":
			got = b.ServerEvent(&tds.Event{Token: tds.TokenError})
		case "done", "done-more", "attn-done":
			d := tds.Done{Token: tds.TokenDone}
			switch s.do {
			case "done-more":
				d.Status = tds.DoneMore
			case "attn-done":
				d.Status = tds.DoneAttn
			}
			got = b.ServerEvent(&tds.Event{Token: tds.TokenDone, Done: d})
		case "eom":
			got = b.ServerEvent(&tds.Event{Token: tds.TokenEndOfMessage})
		case "lost":
			if b.BackendLost() {
				got = Fail
			}
		default:
			t.Fatalf("step %d: unknown %q", i, s.do)
		}
		if got != s.want || b.Phase() != s.phase {
			t.Fatalf("step %d %s %q: action %s phase %s, want %s %s (pins %q)", i, s.do, s.arg, got, b.Phase(),
				s.want, s.phase, b.Pins())
		}
	}
}

func TestBinding(t *testing.T) {
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"autocommit statement borrows and releases", []step{
			{do: "req", arg: "SELECT 1", want: Borrow, phase: Borrowing},
			{do: "borrow", want: ForwardHeld, phase: Bound},
			{do: "done-more", phase: Bound},
			{do: "done", phase: Bound},
			{do: "eom", want: Release, phase: Unbound},
			{do: "req", arg: "SELECT 2", want: Borrow, phase: Borrowing},
		}},
		{"explicit transaction holds the backend until commit", []step{
			{do: "req", arg: "BEGIN TRAN; INSERT t VALUES (1)", want: Borrow, phase: Borrowing},
			{do: "borrow", want: ForwardHeld, phase: Bound},
			{do: "env", arg: "begin", phase: Bound},
			{do: "done", phase: Bound},
			{do: "eom", phase: Bound},
			{do: "req", arg: "INSERT t VALUES (2)", want: Forward, phase: Bound},
			{do: "eom", phase: Bound},
			{do: "req", arg: "COMMIT", want: Forward, phase: Bound},
			{do: "env", arg: "commit", phase: Bound},
			{do: "eom", want: Release, phase: Unbound},
		}},
		{"implicit transaction: the server's begin pins", []step{
			{do: "req", arg: "SET IMPLICIT_TRANSACTIONS ON", want: Borrow, phase: Borrowing},
			{do: "borrow", want: ForwardHeld, phase: Bound},
			{do: "eom", want: Release, phase: Unbound},
			{do: "req", arg: "INSERT t VALUES (1)", want: Borrow, phase: Borrowing},
			{do: "borrow", prelude: "SET IMPLICIT_TRANSACTIONS ON;", phase: Bound},
			{do: "eom", want: ForwardHeld, phase: Bound},
			{do: "env", arg: "begin", phase: Bound},
			{do: "eom", phase: Bound},
			{do: "req", arg: "ROLLBACK", want: Forward, phase: Bound},
			{do: "env", arg: "rollback", phase: Bound},
			{do: "eom", want: Release, phase: Unbound},
		}},
		{"requests sent while the first waits for a backend are each answered before it goes", []step{
			{do: "req", arg: "SELECT 1", want: Borrow, phase: Borrowing},
			{do: "req", arg: "SELECT 2", want: Hold, phase: Borrowing},
			{do: "req", arg: "SELECT 3", want: Hold, phase: Borrowing},
			{do: "borrow", want: ForwardHeld, phase: Bound},
			{do: "eom", phase: Bound},
			{do: "eom", phase: Bound},
			{do: "eom", want: Release, phase: Unbound},
		}},
		{"a request sent during the prelude is answered before the backend goes", []step{
			{do: "req", arg: "SET IMPLICIT_TRANSACTIONS ON", want: Borrow, phase: Borrowing},
			{do: "borrow", want: ForwardHeld, phase: Bound},
			{do: "eom", want: Release, phase: Unbound},
			{do: "req", arg: "SELECT 1", want: Borrow, phase: Borrowing},
			{do: "borrow", prelude: "SET IMPLICIT_TRANSACTIONS ON;", phase: Bound},
			{do: "req", arg: "SELECT 2", want: Hold, phase: Bound},
			{do: "eom", want: ForwardHeld, phase: Bound},
			{do: "eom", phase: Bound},
			{do: "eom", want: Release, phase: Unbound},
		}},
		{"queue timeout refuses the request unexecuted", []step{
			{do: "req", arg: "SELECT 1", want: Borrow, phase: Borrowing},
			{do: "tick", arg: "1s", phase: Borrowing},
			{do: "tick", arg: "1s", want: Refuse, phase: Unbound},
			{do: "borrow", phase: Unbound}, // a late grant is not used
			{do: "req", arg: "SELECT 1", want: Borrow, phase: Borrowing},
		}},
		{"attention while waiting is answered by the proxy", []step{
			{do: "req", arg: "SELECT 1", want: Borrow, phase: Borrowing},
			{do: "attn", want: AnswerAttention, phase: Unbound},
		}},
		{"attention when unbound is answered by the proxy", []step{
			{do: "attn", want: AnswerAttention, phase: Unbound},
		}},
		{"attention while running goes to the backend; bound until its DONE(ATTN)", []step{
			{do: "req", arg: "WAITFOR DELAY '00:00:10'", want: Borrow, phase: Borrowing},
			{do: "borrow", want: ForwardHeld, phase: Bound},
			{do: "attn", want: Forward, phase: Bound},
			{do: "attn-done", phase: Bound},
			{do: "eom", want: Release, phase: Unbound},
		}},
		{"attention in a transaction with nothing running goes to the backend", []step{
			{do: "req", arg: "BEGIN TRAN", want: Borrow, phase: Borrowing},
			{do: "borrow", want: ForwardHeld, phase: Bound},
			{do: "env", arg: "begin", phase: Bound},
			{do: "eom", phase: Bound},
			{do: "attn", want: Forward, phase: Bound},
			{do: "attn-done", phase: Bound},
			{do: "eom", phase: Bound}, // still in the transaction
			{do: "req", arg: "COMMIT", want: Forward, phase: Bound},
			{do: "env", arg: "commit", phase: Bound},
			{do: "eom", want: Release, phase: Unbound},
		}},
		{"late attention after the final DONE is held until the ack", []step{
			{do: "req", arg: "SELECT 1", want: Borrow, phase: Borrowing},
			{do: "borrow", want: ForwardHeld, phase: Bound},
			{do: "attn", want: Forward, phase: Bound},
			{do: "done", phase: Bound},
			{do: "eom", phase: Bound}, // the statement's own response: not released, the ack is due
			{do: "attn-done", phase: Bound},
			{do: "eom", want: Release, phase: Unbound},
		}},
		{"prelude re-applies options and database, then the request", []step{
			{do: "req", arg: "SET NOCOUNT ON; SET DATEFORMAT ymd", want: Borrow, phase: Borrowing},
			{do: "borrow", want: ForwardHeld, phase: Bound},
			{do: "env", arg: "db:other", phase: Bound},
			{do: "eom", want: Release, phase: Unbound},
			{do: "req", arg: "SELECT 1", want: Borrow, phase: Borrowing},
			{do: "borrow", prelude: "USE [other];SET NOCOUNT ON;SET DATEFORMAT ymd;", phase: Bound},
		}},
		{"prelude failure drops the backend and the request", []step{
			{do: "req", arg: "SET NOCOUNT ON", want: Borrow, phase: Borrowing},
			{do: "borrow", want: ForwardHeld, phase: Bound},
			{do: "eom", want: Release, phase: Unbound},
			{do: "req", arg: "SELECT 1", want: Borrow, phase: Borrowing},
			{do: "borrow", prelude: "SET NOCOUNT ON;", phase: Bound},
			{do: "error", phase: Bound},
			{do: "eom", want: Fail, phase: Unbound},
		}},
		{"attention during the prelude: the request never runs", []step{
			{do: "req", arg: "SET NOCOUNT ON", want: Borrow, phase: Borrowing},
			{do: "borrow", want: ForwardHeld, phase: Bound},
			{do: "eom", want: Release, phase: Unbound},
			{do: "req", arg: "SELECT 1", want: Borrow, phase: Borrowing},
			{do: "borrow", prelude: "SET NOCOUNT ON;", phase: Bound},
			{do: "attn", want: AnswerAttention, phase: Bound},
			{do: "eom", want: Release, phase: Unbound},
		}},
		{"a backend left with other settings needs a reset and all of the client's", []step{
			{do: "req", arg: "SET NOCOUNT ON", want: Borrow, phase: Borrowing},
			{do: "borrow-dirty", arg: "reset", want: ForwardHeld, phase: Bound},
			{do: "eom", want: Release, phase: Unbound},
			{do: "req", arg: "SELECT 1", want: Borrow, phase: Borrowing},
			{do: "borrow-dirty", arg: "reset", prelude: "SET NOCOUNT ON;", phase: Bound},
			{do: "eom", want: ForwardHeld, phase: Bound},
			{do: "eom", want: Release, phase: Unbound},
		}},
		{"the request's own SETs are not in its prelude", []step{
			{do: "req", arg: "SET XACT_ABORT ON", want: Borrow, phase: Borrowing},
			{do: "borrow", want: ForwardHeld, phase: Bound},
			{do: "eom", want: Release, phase: Unbound},
			{do: "req", arg: "SET NOCOUNT ON", want: Borrow, phase: Borrowing},
			{do: "borrow", prelude: "SET XACT_ABORT ON;", phase: Bound},
			{do: "eom", want: ForwardHeld, phase: Bound},
			{do: "eom", want: Release, phase: Unbound},
			{do: "req", arg: "SELECT 1", want: Borrow, phase: Borrowing},
			{do: "borrow", prelude: "SET XACT_ABORT ON;SET NOCOUNT ON;", phase: Bound},
		}},
		{"a failing SET pins: which part ran is unknown", []step{
			{do: "req", arg: "SET NOCOUNT ON; SET XACT_ABORT ON", want: Borrow, phase: Borrowing},
			{do: "borrow", want: ForwardHeld, phase: Bound},
			{do: "error", phase: Bound},
			{do: "eom", phase: Bound},
			{do: "reset-req", arg: "SELECT 1", want: Forward, phase: Bound},
			{do: "eom", want: Release, phase: Unbound},
		}},
		{"temp table pins until the client's reset", []step{
			{do: "req", arg: "CREATE TABLE #t (a int)", want: Borrow, phase: Borrowing},
			{do: "borrow", want: ForwardHeld, phase: Bound},
			{do: "eom", phase: Bound},
			{do: "req", arg: "SELECT * FROM #t", want: Forward, phase: Bound},
			{do: "eom", phase: Bound},
			{do: "reset-req", arg: "SELECT 1", want: Forward, phase: Bound},
			{do: "eom", want: Release, phase: Unbound},
		}},
		{"cursor pins", []step{
			{do: "req", arg: "DECLARE c CURSOR FOR SELECT 1; OPEN c", want: Borrow, phase: Borrowing},
			{do: "borrow", want: ForwardHeld, phase: Bound},
			{do: "eom", phase: Bound},
		}},
		{"prepared statements pin", []step{
			{do: "rpc", arg: "sp_prepare", want: Borrow, phase: Borrowing},
			{do: "borrow", want: ForwardHeld, phase: Bound},
			{do: "eom", phase: Bound},
		}},
		{"prepared handles pin until unprepared", []step{
			{do: "rpc", arg: "sp_prepare", want: Borrow, phase: Borrowing},
			{do: "borrow", want: ForwardHeld, phase: Bound},
			{do: "eom", phase: Bound},
			{do: "rpc", arg: "sp_prepare", want: Forward, phase: Bound},
			{do: "eom", phase: Bound},
			{do: "rpc", arg: "sp_unprepare", want: Forward, phase: Bound},
			{do: "eom", phase: Bound}, // one handle left
			{do: "rpc", arg: "sp_unprepare", want: Forward, phase: Bound},
			{do: "eom", want: Release, phase: Unbound},
		}},
		{"a failed unprepare does not count", []step{
			{do: "rpc", arg: "sp_prepare", want: Borrow, phase: Borrowing},
			{do: "borrow", want: ForwardHeld, phase: Bound},
			{do: "eom", phase: Bound},
			{do: "rpc", arg: "sp_unprepare", want: Forward, phase: Bound},
			{do: "error", phase: Bound},
			{do: "eom", phase: Bound},
		}},
		{"prepare, execute and unprepare in one batch", []step{
			{do: "req", arg: "DECLARE @h int; EXEC sp_prepare @h OUTPUT, N'@a int', N'SELECT @a'; EXEC sp_execute @h, 1; EXEC sp_unprepare @h",
				want: Borrow, phase: Borrowing},
			{do: "borrow", want: ForwardHeld, phase: Bound},
			{do: "eom", want: Release, phase: Unbound},
		}},
		{"a module's body does not run now", []step{
			{do: "req", arg: "CREATE PROCEDURE p AS BEGIN SET NOCOUNT ON; CREATE TABLE #t (a int); EXEC sp_getapplock 'x', 'Shared' END",
				want: Borrow, phase: Borrowing},
			{do: "borrow", want: ForwardHeld, phase: Bound},
			{do: "eom", want: Release, phase: Unbound},
		}},
		{"a temporary procedure pins", []step{
			{do: "req", arg: "CREATE PROC #p AS SELECT 1", want: Borrow, phase: Borrowing},
			{do: "borrow", want: ForwardHeld, phase: Bound},
			{do: "eom", phase: Bound},
		}},
		{"applock pins until released", []step{
			{do: "rpc", arg: "sp_getapplock", want: Borrow, phase: Borrowing},
			{do: "borrow", want: ForwardHeld, phase: Bound},
			{do: "eom", phase: Bound},
			{do: "rpc", arg: "dbo.sp_releaseapplock", want: Forward, phase: Bound},
			{do: "eom", want: Release, phase: Unbound},
		}},
		{"app role pins for good", []step{
			{do: "req", arg: "EXEC sp_setapprole 'r', 'p'", want: Borrow, phase: Borrowing},
			{do: "borrow", want: ForwardHeld, phase: Bound},
			{do: "eom", phase: Bound},
			{do: "reset-req", arg: "SELECT 1", want: Forward, phase: Bound},
			{do: "eom", phase: Bound},
		}},
		{"untracked SET pins", []step{
			{do: "req", arg: "SET STATISTICS IO ON", want: Borrow, phase: Borrowing},
			{do: "borrow", want: ForwardHeld, phase: Bound},
			{do: "eom", phase: Bound},
		}},
		{"backend lost while in a transaction is a stateful loss", []step{
			{do: "req", arg: "BEGIN TRAN", want: Borrow, phase: Borrowing},
			{do: "borrow", want: ForwardHeld, phase: Bound},
			{do: "env", arg: "begin", phase: Bound},
			{do: "eom", phase: Bound},
			{do: "lost", want: Fail, phase: Unbound},
		}},
		{"backend lost with a request in flight is a loss too", []step{
			{do: "req", arg: "SELECT 1", want: Borrow, phase: Borrowing},
			{do: "borrow", want: ForwardHeld, phase: Bound},
			{do: "lost", want: Fail, phase: Unbound},
			{do: "req", arg: "SELECT 1", want: Borrow, phase: Borrowing},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			runScript(t, NewBinding(LoginState("app", "us_english")), tc.steps)
		})
	}
}

// wireRequest is a client request as the filter gets it: packets reassembled into a message,
// classified, with a SQL batch's text.
func wireRequest(t *testing.T, typ tds.PacketType, status tds.PacketStatus, payload []byte) (*tds.RequestFacts, string) {
	t.Helper()
	var r tds.Reassembler
	r.Feed(tds.AppendPackets(nil, typ, status, payload, 512))
	m, err := r.Next()
	if err != nil {
		t.Fatal(err)
	}
	f, err := tds.ClassifyRequest(&m)
	if err != nil {
		t.Fatal(err)
	}
	text := ""
	if typ == tds.PacketSQLBatch {
		q, err := tds.DecodeSQLBatch(m.Payload)
		if err != nil {
			t.Fatal(err)
		}
		text = q.Text
	}
	return &f, text
}

// Setting session context pins the session to its backend until the client resets its own
// session; reading it does not. Each request is built as wire bytes and classified as the
// filter does.
func TestBindingSessionContextPins(t *testing.T) {
	hdr := tds.AllHeaders{OutstandingRequests: 1}
	batch := func(text string) []byte { return (&tds.SQLBatch{Headers: hdr, Text: text}).AppendSQLBatch(nil) }
	param := func(name string, v any) tds.RPCParam {
		p, err := tds.NewRPCParam(name, 0, tds.NVarCharType(0), v)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	rpc := func(proc string, params ...tds.RPCParam) []byte {
		return (&tds.RPCRequest{Headers: hdr, Calls: []tds.RPCCall{{ProcName: proc, Params: params}}}).AppendRPC(nil)
	}
	execSQL := func(stmt string) []byte {
		return (&tds.RPCRequest{Headers: hdr, Calls: []tds.RPCCall{{ProcID: tds.ProcExecuteSQL,
			Params: []tds.RPCParam{param("@stmt", stmt)}}}}).AppendRPC(nil)
	}
	key, val := param("@key", "TenantId"), param("@value", "acme")
	for _, tc := range []struct {
		name    string
		typ     tds.PacketType
		payload []byte
		pins    bool
	}{
		{"RPC by name", tds.PacketRPC, rpc("sp_set_session_context", key, val), true},
		{"RPC with sys. prefix, any case", tds.PacketRPC, rpc("SYS.SP_SET_SESSION_CONTEXT", key, val), true},
		{"RPC with dbo. prefix", tds.PacketRPC, rpc("dbo.sp_set_session_context", key, val), true},
		{"RPC bracketed", tds.PacketRPC, rpc("[sys].[sp_set_session_context]", key, val), true},
		{"RPC sp_executesql", tds.PacketRPC, execSQL("EXEC sp_set_session_context @key = N'TenantId', @value = @p1, @read_only = 1"), true},
		{"batch EXEC read-only", tds.PacketSQLBatch, batch("EXEC sp_set_session_context @key = N'TenantId', @value = 42, @read_only = 1;"), true},
		{"batch EXEC with others", tds.PacketSQLBatch, batch("SELECT 1; exec sys.sp_set_session_context N'TenantId', 42; SELECT 2"), true},
		{"batch beginning with the procedure's name", tds.PacketSQLBatch, batch("sp_set_session_context N'TenantId', 42"), true},
		{"batch SET CONTEXT_INFO", tds.PacketSQLBatch, batch("SET CONTEXT_INFO 0x0102"), true},
		{"batch dynamic SQL", tds.PacketSQLBatch, batch("EXEC('EXEC sp_set_session_context N''TenantId'', 42')"), true},
		{"batch reads session context", tds.PacketSQLBatch, batch("SELECT SESSION_CONTEXT(N'TenantId'), CONTEXT_INFO()"), false},
		{"RPC reads session context", tds.PacketRPC, execSQL("SELECT SESSION_CONTEXT(@k)"), false},
		{"RPC of another procedure", tds.PacketRPC, rpc("app.set_session_context_for", key), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := NewBinding(LoginState("app", "us_english"))
			now := time.Unix(1000, 0)
			f, text := wireRequest(t, tc.typ, 0, tc.payload)
			if a := b.Request(now, f, text, queueTimeout); a != Borrow {
				t.Fatalf("request: %s", a)
			}
			if _, _, a := b.Borrowed(b.login.Clone()); a != ForwardHeld {
				t.Fatalf("borrowed: %s", a)
			}
			end := b.ServerEvent(&tds.Event{Token: tds.TokenEndOfMessage})
			if got := b.PinnedBy(PinSessionContext); got != tc.pins {
				t.Fatalf("pinned by session context = %v, want %v (pins %q, facts %v)", got, tc.pins, b.Pins(), f)
			}
			if !tc.pins {
				if end != Release {
					t.Fatalf("end of response: %s, want release", end)
				}
				return
			}
			if end != None || b.Phase() != Bound || b.Pins() != "session_context" {
				t.Fatalf("end of response: %s phase %s pins %q, want the backend kept for session_context", end, b.Phase(), b.Pins())
			}
			// Later requests stay on the backend.
			f, text = wireRequest(t, tds.PacketSQLBatch, 0, batch("SELECT SESSION_CONTEXT(N'TenantId')"))
			if a := b.Request(now, f, text, queueTimeout); a != Forward {
				t.Fatalf("next request: %s", a)
			}
			if a := b.ServerEvent(&tds.Event{Token: tds.TokenEndOfMessage}); a != None {
				t.Fatalf("next response: %s", a)
			}
			// The client's own reset clears the context on its backend: the session may move.
			f, text = wireRequest(t, tds.PacketSQLBatch, tds.StatusResetConnection, batch("SELECT 1"))
			if a := b.Request(now, f, text, queueTimeout); a != Forward {
				t.Fatalf("reset request: %s", a)
			}
			if a := b.ServerEvent(&tds.Event{Token: tds.TokenEndOfMessage}); a != Release || b.Pinned() {
				t.Fatalf("after the client's reset: %s pins %q, want release", a, b.Pins())
			}
		})
	}
}
