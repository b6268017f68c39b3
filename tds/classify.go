package tds

import (
	"fmt"
	"strings"
)

// Request classification: the facts a pooling proxy needs to decide
// whether a session may go back to the pool after a request — without
// parsing SQL. It looks at keywords outside comments and literals, so it
// can be fooled by dynamic SQL (EXEC('...')) or procedures that change
// session state internally; those limits are inherent and documented.

// SetOption is one SET statement option and its value as written.
type SetOption struct {
	Name  string // upper-case, e.g. "ANSI_NULLS", "TRANSACTION ISOLATION LEVEL", "STATISTICS IO"
	Value string // upper-case value words, e.g. "ON", "READ COMMITTED", "dbo.t ON"
}

// RequestFacts are the pinning-relevant facts about one request.
type RequestFacts struct {
	Type PacketType
	// ResetConnection / ResetSkipTran: the status bits on the first packet.
	ResetConnection bool
	ResetSkipTran   bool
	// TransactionDescriptor from ALL_HEADERS (0 = none).
	TransactionDescriptor uint64

	BeginTran    bool // BEGIN TRAN, TM_BEGIN_XACT, or COMMIT/ROLLBACK with begin-new
	CommitTran   bool
	RollbackTran bool
	SaveTran     bool
	Distributed  bool // BEGIN DISTRIBUTED TRAN, TM propagate/promote/DTC address
	// Isolation is a transaction-manager begin's isolation level byte (0: unchanged); it
	// sets the session's level, which outlasts the transaction.
	Isolation IsolationLevel

	Prepare         bool // sp_prepare, sp_prepexec, sp_prepexecrpc, sp_cursorprepare, sp_cursorprepexec
	ExecutePrepared bool // sp_execute, sp_cursorexecute
	Unprepare       bool // sp_unprepare, sp_cursorunprepare
	Cursor          bool // cursor procs or DECLARE name CURSOR
	TempTable       bool // CREATE TABLE #t, SELECT ... INTO #t, CREATE PROC #p
	BulkLoad        bool // BULK_LOAD message, INSERT BULK, BULK INSERT
	AppRole         bool // sp_setapprole: cannot be undone by a reset
	// SessionContext: sp_set_session_context or SET CONTEXT_INFO, per-session values a
	// reset clears and nothing can read back to re-apply elsewhere (read-only keys cannot
	// even be set twice). Also set when either appears inside a literal (dynamic SQL).
	SessionContext bool
	UseDatabase    string
	SetOptions     []SetOption
	// Procs lists procedures called (RPC by name, or EXEC in text).
	Procs []string
}

// Pins reports the facts that make a session unsafe to share until they
// are undone (prepared handles, cursors, temp tables, SET options that
// are not tracked, app roles, session context, bulk load, DTC). Transactions
// are left to ENVCHANGE tracking and not included here.
func (f *RequestFacts) Pins() bool {
	return f.Prepare || f.Cursor || f.TempTable || f.BulkLoad || f.AppRole || f.SessionContext || f.Distributed ||
		len(f.SetOptions) > 0
}

func (f RequestFacts) String() string {
	var parts []string
	add := func(b bool, s string) {
		if b {
			parts = append(parts, s)
		}
	}
	add(f.ResetConnection, "reset")
	add(f.ResetSkipTran, "reset-skip-tran")
	add(f.BeginTran, "begin")
	add(f.CommitTran, "commit")
	add(f.RollbackTran, "rollback")
	add(f.SaveTran, "save")
	add(f.Distributed, "dtc")
	add(f.Prepare, "prepare")
	add(f.ExecutePrepared, "execute-prepared")
	add(f.Unprepare, "unprepare")
	add(f.Cursor, "cursor")
	add(f.TempTable, "temp-table")
	add(f.BulkLoad, "bulk")
	add(f.AppRole, "approle")
	add(f.SessionContext, "session-context")
	if f.UseDatabase != "" {
		parts = append(parts, "use="+f.UseDatabase)
	}
	for _, o := range f.SetOptions {
		parts = append(parts, fmt.Sprintf("set %s=%s", o.Name, o.Value))
	}
	for _, p := range f.Procs {
		parts = append(parts, "proc="+p)
	}
	return fmt.Sprintf("Facts{%s %s}", f.Type, strings.Join(parts, " "))
}

// ClassifyRequest decodes a client request message and returns its facts.
// Message types without a body to inspect (ATTENTION) return the header
// facts only. Decode errors are returned with whatever was learned.
func ClassifyRequest(m *Message) (RequestFacts, error) {
	f := RequestFacts{Type: m.Type,
		ResetConnection: m.Status&StatusResetConnection != 0,
		ResetSkipTran:   m.Status&StatusResetConnectionSkipTran != 0}
	switch m.Type {
	case PacketSQLBatch:
		q, err := DecodeSQLBatch(m.Payload)
		if err != nil {
			return f, err
		}
		f.TransactionDescriptor = q.Headers.TransactionDescriptor
		ClassifySQL(q.Text, &f)
	case PacketRPC:
		// A truncated payload (a long request's prefix) still classifies the calls it names:
		// a large sp_prepexec's handle pins its backend all the same.
		r, err := decodeRPCPrefix(m.Payload)
		if r != nil {
			f.TransactionDescriptor = r.Headers.TransactionDescriptor
			for i := range r.Calls {
				classifyCall(&r.Calls[i], &f)
			}
		}
		if err != nil {
			return f, err
		}
	case PacketTransMgr:
		t, err := DecodeTransMgr(m.Payload)
		if err != nil {
			return f, err
		}
		f.TransactionDescriptor = t.Headers.TransactionDescriptor
		switch t.Type {
		case TMBeginXact:
			f.BeginTran = true
		case TMCommitXact:
			f.CommitTran = true
		case TMRollbackXact:
			f.RollbackTran = true
		case TMSaveXact:
			f.SaveTran = true
		case TMPropagateXact, TMPromoteXact, TMGetDTCAddress:
			f.Distributed = true
		}
		if t.BeginsTransaction() {
			f.BeginTran, f.Isolation = true, t.Isolation
		}
	case PacketBulkLoad:
		f.BulkLoad = true
	}
	return f, nil
}

func classifyCall(c *RPCCall, f *RequestFacts) {
	id, known := c.Proc()
	if !known {
		f.Procs = append(f.Procs, c.Name())
		classifyProcName(c.Name(), f)
		return
	}
	stmtParam := func(pos int) {
		for i := range c.Params {
			p := &c.Params[i]
			if strings.EqualFold(p.Name, "@stmt") || (p.Name == "" && i == pos) {
				if s, ok := p.String(); ok {
					ClassifySQL(s, f)
				}
				return
			}
		}
	}
	switch id {
	case ProcExecuteSQL:
		stmtParam(0)
	case ProcPrepare, ProcPrepExec, ProcPrepExecRPC:
		f.Prepare = true
		stmtParam(2)
	case ProcExecute:
		f.ExecutePrepared = true
	case ProcUnprepare:
		f.Unprepare = true
	case ProcCursorPrepare, ProcCursorPrepExec:
		f.Prepare, f.Cursor = true, true
	case ProcCursorExecute:
		f.ExecutePrepared, f.Cursor = true, true
	case ProcCursorUnprepare:
		f.Unprepare, f.Cursor = true, true
	default: // sp_cursor, open, fetch, option, close
		f.Cursor = true
	}
}

// classifyProcName handles procedures called by name (RPC or EXEC): the last part of the
// name, any case, without a schema or database (sys.sp_x, master..sp_x) or brackets.
func classifyProcName(name string, f *RequestFacts) {
	n := strings.ToLower(name)
	if i := strings.LastIndexByte(n, '.'); i >= 0 {
		n = n[i+1:]
	}
	if len(n) > 2 && n[0] == '[' && n[len(n)-1] == ']' {
		n = n[1 : len(n)-1]
	}
	switch n {
	case "sp_setapprole":
		f.AppRole = true
	case "sp_set_session_context":
		f.SessionContext = true
	case "sp_xml_preparedocument":
		f.Prepare = true
	}
	if id, ok := procIDByName(n); ok {
		classifyCall(&RPCCall{ProcID: id}, f)
	}
}

var setOptionNames = map[string]bool{
	"ANSI_DEFAULTS": true, "ANSI_NULL_DFLT_OFF": true, "ANSI_NULL_DFLT_ON": true, "ANSI_NULLS": true,
	"ANSI_PADDING": true, "ANSI_WARNINGS": true, "ARITHABORT": true, "ARITHIGNORE": true,
	"CONCAT_NULL_YIELDS_NULL": true, "CONTEXT_INFO": true, "CURSOR_CLOSE_ON_COMMIT": true, "DATEFIRST": true,
	"DATEFORMAT": true, "DEADLOCK_PRIORITY": true, "FIPS_FLAGGER": true, "FMTONLY": true, "FORCEPLAN": true,
	"IDENTITY_INSERT": true, "IMPLICIT_TRANSACTIONS": true, "LANGUAGE": true, "LOCK_TIMEOUT": true,
	"NOCOUNT": true, "NOEXEC": true, "NUMERIC_ROUNDABORT": true, "OFFSETS": true, "PARSEONLY": true,
	"QUERY_GOVERNOR_COST_LIMIT": true, "QUOTED_IDENTIFIER": true, "REMOTE_PROC_TRANSACTIONS": true,
	"ROWCOUNT": true, "SHOWPLAN_ALL": true, "SHOWPLAN_TEXT": true, "SHOWPLAN_XML": true, "STATISTICS": true,
	"TEXTSIZE": true, "TRANSACTION": true, "XACT_ABORT": true, "NO_BROWSETABLE": true,
}

// ClassifySQL adds the facts found in T-SQL text to f.
func ClassifySQL(text string, f *RequestFacts) {
	toks := lexSQL(text)
	word := func(i int) string {
		if i >= 0 && i < len(toks) && (toks[i].kind == sqlWord) {
			return strings.ToUpper(toks[i].text)
		}
		return ""
	}
	isTranWord := func(s string) bool { return s == "TRAN" || s == "TRANSACTION" }
	isTemp := func(i int) bool {
		return i < len(toks) && (toks[i].kind == sqlWord || toks[i].kind == sqlQuoted) && strings.HasPrefix(toks[i].text, "#")
	}
	// A batch may begin with a procedure's name, EXEC implied (sp_set_session_context N'k', 1).
	// Only system procedures' names are taken: any other first word is a statement keyword or
	// a procedure of the application's, which has nothing to pin.
	if name := procNameAt(toks, 0); isSystemProc(name) {
		f.Procs = append(f.Procs, name)
		classifyProcName(name, f)
	}
	for i := 0; i < len(toks); i++ {
		if toks[i].kind == sqlString && !f.SessionContext && setsSessionContext(toks[i].text) {
			// EXEC('...'), sp_executesql N'...': the statement runs in this session. Any
			// literal naming it counts; a false positive only keeps a backend.
			f.SessionContext = true
		}
		w := word(i)
		if w == "" {
			continue
		}
		switch w {
		case "BEGIN":
			switch {
			case isTranWord(word(i + 1)):
				f.BeginTran = true
			case word(i+1) == "DISTRIBUTED" && isTranWord(word(i+2)):
				f.BeginTran, f.Distributed = true, true
			}
		case "COMMIT":
			f.CommitTran = true
		case "ROLLBACK":
			f.RollbackTran = true
		case "SAVE":
			if isTranWord(word(i + 1)) {
				f.SaveTran = true
			}
		case "USE":
			if i+1 < len(toks) && (toks[i+1].kind == sqlWord || toks[i+1].kind == sqlQuoted) {
				f.UseDatabase = toks[i+1].text
			}
		case "CREATE":
			// CREATE TABLE #t, CREATE PROC[EDURE] #p
			switch word(i + 1) {
			case "TABLE", "PROC", "PROCEDURE":
				if isTemp(i + 2) {
					f.TempTable = true
				}
			}
		case "INTO":
			// SELECT ... INTO #t creates; INSERT INTO #t does not.
			if isTemp(i+1) && word(i-1) != "INSERT" {
				f.TempTable = true
			}
		case "DECLARE":
			// DECLARE name [INSENSITIVE] [SCROLL] CURSOR; cursor variables
			// (@c) are batch-local and ignored.
			if i+1 < len(toks) && !strings.HasPrefix(toks[i+1].text, "@") {
				for j := i + 2; j < len(toks) && j <= i+4; j++ {
					if word(j) == "CURSOR" {
						f.Cursor = true
						break
					}
				}
			}
		case "BULK":
			if word(i-1) == "INSERT" || word(i+1) == "INSERT" {
				f.BulkLoad = true
			}
		case "EXEC", "EXECUTE":
			j := i + 1
			if j < len(toks) && toks[j].kind == sqlWord && strings.HasPrefix(toks[j].text, "@") &&
				j+1 < len(toks) && toks[j+1].text == "=" {
				j += 2 // EXEC @rc = proc
			}
			if name := procNameAt(toks, j); name != "" && !strings.HasPrefix(name, "@") {
				f.Procs = append(f.Procs, name)
				classifyProcName(name, f)
			}
		case "SET":
			classifySet(toks, i, f)
		}
	}
}

// procNameAt returns the (possibly dotted) name that starts at toks[j], as written: "p",
// "dbo.p", "master..sp_who"; "" when toks[j] is not a name.
func procNameAt(toks []sqlTok, j int) string {
	var parts []string
	for j < len(toks) {
		t := toks[j]
		switch {
		case t.kind == sqlWord || t.kind == sqlQuoted:
			parts = append(parts, t.text)
		case t.kind == sqlSymbol && t.text == "." && len(parts) > 0:
			parts = append(parts, ".")
			j++
			continue
		}
		if t.kind == sqlSymbol {
			break
		}
		j++
		if j < len(toks) && toks[j].text == "." {
			continue
		}
		break
	}
	return strings.Join(parts, "")
}

// isSystemProc reports whether a name's last part is a system procedure's (sp_...).
func isSystemProc(name string) bool {
	if i := strings.LastIndexByte(name, '.'); i >= 0 {
		name = name[i+1:]
	}
	return len(name) > 3 && strings.EqualFold(name[:3], "sp_")
}

// classifySet records SET option statements, ignoring variable
// assignments (SET @x = ...) and UPDATE ... SET col = ... .
func classifySet(toks []sqlTok, i int, f *RequestFacts) {
	j := i + 1
	var names []string
	for j < len(toks) && toks[j].kind == sqlWord {
		n := strings.ToUpper(toks[j].text)
		if !setOptionNames[n] {
			break
		}
		if j+1 < len(toks) && toks[j+1].text == "=" {
			return // a column assignment in UPDATE ... SET
		}
		switch n {
		case "TRANSACTION": // TRANSACTION ISOLATION LEVEL
			if j+2 < len(toks) && strings.EqualFold(toks[j+1].text, "ISOLATION") && strings.EqualFold(toks[j+2].text, "LEVEL") {
				n = "TRANSACTION ISOLATION LEVEL"
				j += 2
			}
		case "STATISTICS": // STATISTICS IO|TIME|PROFILE|XML
			if j+1 < len(toks) && toks[j+1].kind == sqlWord {
				n += " " + strings.ToUpper(toks[j+1].text)
				j++
			}
		}
		names = append(names, n)
		j++
		if j < len(toks) && toks[j].text == "," {
			j++
			continue
		}
		break
	}
	if len(names) == 0 {
		return
	}
	if names[0] == "CONTEXT_INFO" {
		f.SessionContext = true // a binary value, not an option to re-apply
		return
	}
	// Value: words up to ';' or the next statement keyword; at most a few.
	var val []string
	for k := 0; j < len(toks) && k < 6; j, k = j+1, k+1 {
		t := toks[j]
		if t.kind == sqlSymbol && t.text != "-" && t.text != "." {
			break
		}
		up := strings.ToUpper(t.text)
		if t.kind == sqlWord && k > 0 && (up == "SET" || up == "SELECT" || up == "BEGIN" || up == "EXEC" ||
			up == "INSERT" || up == "UPDATE" || up == "DELETE" || up == "IF" || up == "COMMIT" || up == "ROLLBACK" ||
			up == "USE" || up == "DECLARE" || up == "CREATE" || up == "WITH") {
			break
		}
		if t.kind == sqlWord {
			t.text = up
		}
		val = append(val, t.text)
		if names[len(names)-1] != "TRANSACTION ISOLATION LEVEL" && names[0] != "IDENTITY_INSERT" && t.text != "-" {
			break
		}
	}
	v := ""
	for k, p := range val {
		if k > 0 && p != "." && val[k-1] != "." && val[k-1] != "-" {
			v += " "
		}
		v += p
	}
	for _, n := range names {
		f.SetOptions = append(f.SetOptions, SetOption{Name: n, Value: v})
	}
}

// setsSessionContext reports whether text (a literal's content) may set session context:
// it names sp_set_session_context, or has SET followed by CONTEXT_INFO, in any case.
func setsSessionContext(text string) bool {
	if indexFold(text, "sp_set_session_context", 0) >= 0 {
		return true
	}
	for from := 0; ; {
		i := indexFold(text, "context_info", from)
		if i < 0 {
			return false
		}
		j := i
		for j > 0 && strings.IndexByte(" \t\r\n", text[j-1]) >= 0 {
			j--
		}
		if j < i && j >= 3 && strings.EqualFold(text[j-3:j], "set") {
			return true
		}
		from = i + 1
	}
}

// indexFold is strings.Index for an ASCII lower-case sub, ignoring ASCII case in s, from
// byte offset from on; it allocates nothing.
func indexFold(s, sub string, from int) int {
	for i := from; i+len(sub) <= len(s); i++ {
		k := 0
		for k < len(sub) && lowerASCII(s[i+k]) == sub[k] {
			k++
		}
		if k == len(sub) {
			return i
		}
	}
	return -1
}

func lowerASCII(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// pinWords are the ASCII fragments without which a batch cannot create pinning state: '#' for
// temp objects, and SET (options, CONTEXT_INFO, sp_setapprole, sp_set_session_context), PREP (sp_prepare*, sp_xml_preparedocument),
// CURSOR, BULK, DISTRIButed transactions and APPLOCK (sp_getapplock/sp_releaseapplock, which
// transaction pooling counts). Local transactions are not among them: a proxy tracks those
// from the server's ENVCHANGEs, not from text.
var pinWords = [...]string{"set", "prep", "cursor", "bulk", "distrib", "applock"}

// BatchMayPin is a prefilter for ClassifyRequest on a SQL_BATCH payload (UCS-2LE text after
// ALL_HEADERS): false means the batch cannot make RequestFacts.Pins true nor call an applock
// procedure, so a caller that only needs those may skip the classification. It scans for pinWords without decoding the text
// and allocates nothing; a false positive only costs a full classification.
// FuzzBatchMayPinNeverHidesAPin holds it to that contract.
func BatchMayPin(payload []byte) bool {
	for i := 0; i+1 < len(payload); i += 2 {
		if payload[i+1] != 0 {
			continue
		}
		c := payload[i]
		if c == '#' {
			return true
		}
		c |= 0x20 // ASCII lower case
		for _, w := range pinWords {
			if c == w[0] && ucs2HasWordAt(payload, i, w) {
				return true
			}
		}
	}
	return false
}
