package standin

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/tdspool/tdspool/tds"
)

// The audit log and the session view: what a pooling test asks the server
// to prove (which session ran a request, whether the pooler reset it, what
// state each session holds), in Go (Audit, SessionInfos) and, for
// black-box tests, in T-SQL (sys.dm_exec_sessions).

// AuditKind names what a client sent.
type AuditKind string

const (
	AuditLogin       AuditKind = "login"
	AuditLoginFailed AuditKind = "login_failed"
	AuditSQLBatch    AuditKind = "sql_batch"
	AuditRPC         AuditKind = "rpc"
	AuditTransMgr    AuditKind = "transaction_manager"
	AuditAttention   AuditKind = "attention"
)

// AuditRecord is one login attempt or request as the server received it.
type AuditRecord struct {
	Seq      int64 // 1, 2, ... in arrival order across the server
	Time     time.Time
	SPID     int
	Login    string
	Database string // the session's database when the request arrived (empty for attentions, which the reader records)
	Kind     AuditKind
	// Procs are the procedure names of an RPC request (sp_executesql,
	// sp_reset_connection, ...).
	Procs []string
	// The RESETCONNECTION / RESETCONNECTIONSKIPTRAN status bits of the
	// request's first packet.
	ResetConnection, ResetConnectionSkipTran bool
}

// defaultAuditLimit bounds the log when Config.AuditLimit is zero.
const defaultAuditLimit = 10000

func (s *Server) audit(rec AuditRecord) {
	rec.Time = time.Now()
	s.auditMu.Lock()
	defer s.auditMu.Unlock()
	s.auditSeq++
	rec.Seq = s.auditSeq
	limit := s.cfg.AuditLimit
	if limit == 0 {
		limit = defaultAuditLimit
	}
	if limit < 0 {
		return
	}
	if len(s.auditLog) >= limit {
		n := copy(s.auditLog, s.auditLog[len(s.auditLog)-limit+1:])
		s.auditLog = s.auditLog[:n]
	}
	s.auditLog = append(s.auditLog, rec)
}

// Audit returns the kept audit records (the newest Config.AuditLimit),
// oldest first.
func (s *Server) Audit() []AuditRecord {
	s.auditMu.Lock()
	defer s.auditMu.Unlock()
	return append([]AuditRecord(nil), s.auditLog...)
}

// AuditSince returns the records with Seq > seq, for a test that marks a
// point and checks what happened after it.
func (s *Server) AuditSince(seq int64) []AuditRecord {
	var out []AuditRecord
	for _, r := range s.Audit() {
		if r.Seq > seq {
			out = append(out, r)
		}
	}
	return out
}

// AuditSeq is the sequence number of the newest record (0 before any).
func (s *Server) AuditSeq() int64 {
	s.auditMu.Lock()
	defer s.auditMu.Unlock()
	return s.auditSeq
}

func (c *conn) auditRequest(req request) {
	rec := AuditRecord{SPID: int(c.spid), Login: c.sess.login, Database: c.sess.db,
		ResetConnection:         req.status&tds.StatusResetConnection != 0,
		ResetConnectionSkipTran: req.status&tds.StatusResetConnectionSkipTran != 0}
	switch req.typ {
	case tds.PacketSQLBatch:
		rec.Kind = AuditSQLBatch
	case tds.PacketRPC:
		rec.Kind = AuditRPC
		if r, err := tds.DecodeRPC(req.payload); err == nil {
			if calls, err := rpcCalls(r); err == nil {
				for _, call := range calls {
					rec.Procs = append(rec.Procs, call.name)
				}
			}
		}
	case tds.PacketTransMgr:
		rec.Kind = AuditTransMgr
	case tds.PacketAttention:
		rec.Kind = AuditAttention
	default:
		rec.Kind = AuditKind(req.typ.String())
	}
	c.srv.audit(rec)
}

// SessionInfo is one logged-in session, with the columns of SQL Server's
// sys.dm_exec_sessions that a pooler can change or leak.
type SessionInfo struct {
	SessionID           int
	LoginTime           time.Time
	HostName            string
	ProgramName         string
	ClientInterfaceName string
	LoginName           string
	UserName            string // USER_NAME(): an application role when one is active
	DatabaseID          int
	DatabaseName        string
	// OpenTransactionCount is @@TRANCOUNT.
	OpenTransactionCount int
	// TransactionIsolationLevel: 1 read uncommitted, 2 read committed,
	// 3 repeatable read, 4 serializable, 5 snapshot.
	TransactionIsolationLevel int
	Options                   uint32 // @@OPTIONS
	Language                  string
	DateFormat                string
	DateFirst                 int
	LockTimeout               int64
	TextSize                  int64
	DeadlockPriority          int
	ContextInfo               []byte
	SessionContext            map[string]any
	TempTables                []string // #temp tables the session holds
	PreparedHandles           int
	OpenCursors               int   // T-SQL and API cursors
	AppLocks                  int   // application locks held (session and transaction)
	Requests                  int64 // requests executed
	LastRequestStartTime      time.Time
}

// snapshot captures the session; only the executor goroutine calls it.
func (s *session) snapshot() *SessionInfo {
	o := s.opts
	in := &SessionInfo{SessionID: int(s.c.spid), LoginTime: s.loginTime, HostName: s.hostName,
		ProgramName: s.appName, ClientInterfaceName: s.clientLib, LoginName: s.login,
		UserName: s.userName(), DatabaseID: s.c.srv.store.id(s.db), DatabaseName: s.db,
		OpenTransactionCount: s.trancount, TransactionIsolationLevel: o.isolation, Options: o.flags,
		Language: o.language, DateFormat: o.dateFormat, DateFirst: o.dateFirst, LockTimeout: o.lockTimeout,
		TextSize: o.textSize, DeadlockPriority: o.deadlockPriority,
		ContextInfo: append([]byte(nil), s.contextInfo...), PreparedHandles: len(s.prepared),
		OpenCursors: s.openCursors(), AppLocks: s.c.srv.locks.count(s.c.spid),
		Requests: s.requests, LastRequestStartTime: s.lastRequest}
	if len(s.sessCtx) > 0 {
		in.SessionContext = map[string]any{}
		for k, v := range s.sessCtx {
			in.SessionContext[k] = v.val
		}
	}
	in.TempTables = s.tempTables
	return in
}

// publish makes the session's state visible to other goroutines (Go API,
// other sessions' DMV queries).
func (s *session) publish() {
	if s.tempsChanged {
		// Only after DDL (or a transaction end that may have undone it)
		// is the temp table list read again: one SQLite query saved per
		// ordinary request.
		s.tempTables, s.tempsChanged = s.listTemps(), false
	}
	s.c.info.Store(s.snapshot())
}

// SessionInfos lists the logged-in sessions by SPID, each as of the end of
// its last request.
func (s *Server) SessionInfos() []SessionInfo {
	s.mu.Lock()
	var out []SessionInfo
	for c := range s.conns {
		if in := c.info.Load(); in != nil && c.loggedIn.Load() {
			out = append(out, *in)
		}
	}
	s.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].SessionID < out[j].SessionID })
	return out
}

// Session returns one session's info by SPID.
func (s *Server) Session(spid int) (SessionInfo, bool) {
	for _, in := range s.SessionInfos() {
		if in.SessionID == spid {
			return in, true
		}
	}
	return SessionInfo{}, false
}

// dmExecSessionsTypes are the SQL Server types of sys.dm_exec_sessions' columns that their
// values alone would type otherwise (a smallint read as int, a bit as int).
var dmExecSessionsTypes = map[string]sqlType{
	"session_id": {k: kSmallInt}, "login_time": {k: kDateTime}, "host_name": {k: kNVarChar, size: 128},
	"program_name": {k: kNVarChar, size: 128}, "client_interface_name": {k: kNVarChar, size: 32},
	"login_name": {k: kNVarChar, size: 128}, "original_login_name": {k: kNVarChar, size: 128},
	"status": {k: kNVarChar, size: 30}, "context_info": {k: kVarBinary, size: 128},
	"language": {k: kNVarChar, size: 128}, "date_format": {k: kNVarChar, size: 3}, "date_first": {k: kSmallInt},
	"quoted_identifier": {k: kBit}, "arithabort": {k: kBit}, "ansi_null_dflt_on": {k: kBit}, "ansi_defaults": {k: kBit},
	"ansi_warnings": {k: kBit}, "ansi_padding": {k: kBit}, "ansi_nulls": {k: kBit}, "concat_null_yields_null": {k: kBit},
	"transaction_isolation_level": {k: kSmallInt}, "lock_timeout": {k: kInt}, "deadlock_priority": {k: kInt},
	"text_size": {k: kInt}, "database_id": {k: kSmallInt}, "open_transaction_count": {k: kInt},
	"is_user_process": {k: kBit},
}

// dmExecSessions renders sys.dm_exec_sessions as a SQLite subquery: one
// SELECT of literals per session, the asking session live, the others as
// last published.
func (s *session) dmExecSessions() string {
	infos := s.c.srv.SessionInfos()
	me := s.snapshot()
	found := false
	for i := range infos {
		if infos[i].SessionID == me.SessionID {
			infos[i], found = *me, true
		}
	}
	if !found {
		infos = append(infos, *me)
	}
	b := func(v bool) string {
		if v {
			return "1"
		}
		return "0"
	}
	var rows []string
	for _, in := range infos {
		status := "sleeping"
		if in.SessionID == me.SessionID {
			status = "running"
		}
		ctxInfo := "NULL"
		if len(in.ContextInfo) > 0 {
			ctxInfo = sqlLiteral(in.ContextInfo)
		}
		f := in.Options
		cols := []string{
			fmt.Sprint(in.SessionID) + " AS session_id",
			sqlLiteral(in.LoginTime.Format("2006-01-02 15:04:05.000")) + " AS login_time",
			sqlLiteral(in.HostName) + " AS host_name",
			sqlLiteral(in.ProgramName) + " AS program_name",
			sqlLiteral(in.ClientInterfaceName) + " AS client_interface_name",
			sqlLiteral(in.LoginName) + " AS login_name",
			sqlLiteral(in.LoginName) + " AS original_login_name",
			sqlLiteral(status) + " AS status",
			ctxInfo + " AS context_info",
			sqlLiteral(in.Language) + " AS language",
			sqlLiteral(in.DateFormat) + " AS date_format",
			fmt.Sprint(in.DateFirst) + " AS date_first",
			b(f&optQuotedIdentifier != 0) + " AS quoted_identifier",
			b(f&optArithAbort != 0) + " AS arithabort",
			b(f&optAnsiNullDfltOn != 0) + " AS ansi_null_dflt_on",
			b(f&ansiDefaults == ansiDefaults) + " AS ansi_defaults",
			b(f&optAnsiWarnings != 0) + " AS ansi_warnings",
			b(f&optAnsiPadding != 0) + " AS ansi_padding",
			b(f&optAnsiNulls != 0) + " AS ansi_nulls",
			b(f&optConcatNullYieldsNull != 0) + " AS concat_null_yields_null",
			fmt.Sprint(in.TransactionIsolationLevel) + " AS transaction_isolation_level",
			fmt.Sprint(in.LockTimeout) + " AS lock_timeout",
			fmt.Sprint(in.DeadlockPriority) + " AS deadlock_priority",
			fmt.Sprint(in.TextSize) + " AS text_size",
			fmt.Sprint(in.DatabaseID) + " AS database_id",
			fmt.Sprint(in.OpenTransactionCount) + " AS open_transaction_count",
			"1 AS is_user_process",
		}
		rows = append(rows, "SELECT "+strings.Join(cols, ", "))
	}
	return "(" + strings.Join(rows, " UNION ALL ") + ")"
}

// dbNameByID is DB_NAME(id) as a SQLite CASE over the served databases.
func (s *session) dbNameByID(arg string) string {
	var sb strings.Builder
	sb.WriteString("(CASE " + arg)
	for _, n := range s.c.srv.store.names {
		fmt.Fprintf(&sb, " WHEN %d THEN %s", s.c.srv.store.id(n), sqlLiteral(n))
	}
	sb.WriteString(" END)")
	return sb.String()
}
