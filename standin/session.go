package standin

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/tdspool/tdspool/tds"
)

// session is the server-side state of one logged-in connection. It is
// owned by the connection's executor goroutine; nothing else touches it
// (the reader goroutine only cancels the request context).
type session struct {
	attached map[string]bool // other databases ATTACHed on sc (attach)
	colHints []sqlType       // result column types the statement's text knows and SQLite loses (selectItemTypes)
	// catalogCols types the columns of the catalog view the running statement reads, by
	// name (a view is a subquery of literals, which SQLite types from their values).
	catalogCols map[string]sqlType
	c           *conn
	login       string
	loginDB     string
	db          string
	sc          *sql.Conn // dedicated SQLite connection to db

	trancount  int
	desc       uint64 // current transaction descriptor, 0 outside one
	tranName   string // the outermost BEGIN TRAN's name
	savepoints []string

	opts      options // SET state
	loginOpts options // what opts starts from and RESETCONNECTION restores

	prepared   map[int32]*prepared
	nextHandle int32

	rowcount int64 // @@ROWCOUNT

	loginTime, lastRequest time.Time
	requests               int64
	tempTables             []string // as of the last publish
	tempsChanged           bool     // DDL ran since tempTables was read

	// Session context (context.go).
	hostName, appName, clientLib string // from LOGIN7
	contextInfo                  []byte
	sessCtx                      map[string]sessCtxEntry
	appRole                      string // active application role, "" for none
	appRoleCookie                []byte
	// Control flow (control.go).
	doomed      bool      // XACT_ABORT error inside TRY: XACT_STATE() -1
	caught      *sqlError // the error a CATCH block handles
	lastError   int32     // @@ERROR
	tableVarSeq int
	batchDepth  int    // nesting of execText (procedures, sp_executesql)
	procName    string // the user procedure running, for ERROR_PROCEDURE()
	// Cursors (cursors.go): T-SQL ones by name, API ones by handle.
	cursors     map[string]*cursor
	apiCursors  map[int32]*cursor
	nextCursor  int32
	fetchStatus int // @@FETCH_STATUS
	// dropAfterReply closes the connection once the current reply is out
	// (what SQL Server does when a reset is refused).
	dropAfterReply bool
}

type prepared struct {
	decl []paramDecl
	text string
}

var descCounter atomic.Uint64

func newSession(c *conn, login, db string, l *tds.Login7) (*session, error) {
	s := &session{c: c, login: login, loginDB: db, prepared: map[int32]*prepared{}, loginOpts: loginOptions(l)}
	s.opts = s.loginOpts.clone()
	s.loginTime = time.Now()
	s.tempsChanged = true
	s.fetchStatus = -1
	if l != nil {
		s.hostName, s.appName, s.clientLib = l.HostName, l.AppName, l.CltIntName
	}
	if err := s.open(db); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *session) open(db string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 15e9)
	defer cancel()
	sc, err := s.c.srv.store.db(db).Conn(ctx)
	if err != nil {
		return err
	}
	if s.sc != nil {
		s.closeConn()
	}
	s.sc, s.db, s.attached = sc, db, nil
	return nil
}

// attach makes database db (another than the session's) reachable on the session's SQLite
// connection as schema "db", for three-part names. SQLite cannot ATTACH inside a
// transaction, so the first reference to a database must come outside one.
func (s *session) attach(db string) *sqlError {
	if s.attached[db] {
		return nil
	}
	if s.trancount > 0 {
		return errf(50000, 1, 16, fmt.Sprintf("The test backend cannot reach database '%s' for the first time inside a transaction; reference it once before BEGIN TRAN.", db))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if _, err := s.sc.ExecContext(ctx, "ATTACH DATABASE ? AS "+quoteIdent(db), s.c.srv.store.paths[strings.ToLower(db)]); err != nil {
		return mapSQLiteErr(err, s)
	}
	if s.attached == nil {
		s.attached = map[string]bool{}
	}
	s.attached[db] = true
	return nil
}

// closeConn rolls back and drops session objects so the SQLite connection
// carries nothing to its next user, then releases it. (The pools keep no
// idle connections either; see store.)
func (s *session) closeConn() {
	ctx, cancel := context.WithTimeout(context.Background(), 5e9)
	defer cancel()
	if s.trancount > 0 {
		s.sc.ExecContext(ctx, "ROLLBACK")
		s.endTran()
	}
	s.dropTemps(ctx)
	s.sc.Close()
	s.sc = nil
}

func (s *session) close() {
	if s.sc != nil {
		s.closeConn()
	}
	s.releaseSessionLocks()
}

// listTemps names the session's #temp tables.
func (s *session) listTemps() []string {
	if s.sc == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rows, err := s.sc.QueryContext(ctx, "SELECT name FROM sqlite_temp_master WHERE type = 'table' ORDER BY name")
	if err != nil {
		return nil
	}
	defer rows.Close()
	var names []string
	for rows.Next() {
		var n string
		if rows.Scan(&n) == nil {
			names = append(names, n)
		}
	}
	return names
}

func (s *session) dropTemps(ctx context.Context) {
	for _, n := range s.listTemps() {
		s.sc.ExecContext(ctx, `DROP TABLE temp."`+strings.ReplaceAll(n, `"`, `""`)+`"`)
	}
}

// resp accumulates one reply message. Statement DONEs are held back one
// step so the last one can go out without DONE_MORE.
type resp struct {
	s    *session
	b    []byte
	pend *tds.Done
}

func (r *resp) flush() {
	if r.pend != nil {
		d := *r.pend
		d.Status |= tds.DoneMore
		r.b = d.AppendDone(r.b)
		r.pend = nil
	}
}

// tok appends raw token bytes (flushing the held DONE first).
func (r *resp) tok(b []byte) { r.flush(); r.b = append(r.b, b...) }

func (r *resp) env(e tds.EnvChange) { r.flush(); r.b = e.AppendEnvChange(r.b) }

func (r *resp) done(tok tds.TokenType, status tds.DoneStatus, curcmd uint16, count int64, counted bool) {
	r.flush()
	if r.s.trancount > 0 {
		status |= tds.DoneInXact
	}
	if counted && !r.s.opts.has(optNoCount) {
		status |= tds.DoneCount
	}
	d := tds.Done{Token: tok, Status: status, CurCmd: curcmd}
	if counted {
		d.RowCount = uint64(count)
	}
	r.pend = &d
}

// finish closes the reply: the held DONE goes out as the final one.
func (r *resp) finish() []byte {
	if r.pend == nil {
		r.b = tds.Done{Token: tds.TokenDone}.AppendDone(r.b)
	} else {
		r.b = r.pend.AppendDone(r.b)
		r.pend = nil
	}
	return r.b
}

func (r *resp) sqlErr(e *sqlError) {
	m := tds.ServerMessage{Token: tds.TokenError, Number: e.number, State: e.state, Class: e.class,
		Text: e.msg, Server: r.s.c.srv.cfg.ServerName, Line: 1}
	if e.class <= 10 {
		m.Token = tds.TokenInfo
	}
	r.tok(m.AppendMessage(nil))
}

func (s *session) info(b []byte, number int32, state uint8, text string) []byte {
	return tds.ServerMessage{Token: tds.TokenInfo, Number: number, State: state, Class: 0,
		Text: text, Server: s.c.srv.cfg.ServerName, Line: 1}.AppendMessage(b)
}

// execute runs one request message and returns the reply payload. A
// non-nil error means the connection must be closed (protocol breakage);
// SQL errors are part of the reply.
func (s *session) execute(ctx context.Context, req request) ([]byte, error) {
	r := &resp{s: s}
	if req.status&(tds.StatusResetConnection|tds.StatusResetConnectionSkipTran) != 0 {
		if req.typ == tds.PacketSQLBatch || req.typ == tds.PacketRPC || req.typ == tds.PacketTransMgr {
			if e := s.reset(r, req.status&tds.StatusResetConnectionSkipTran != 0); e != nil {
				r.sqlErr(e)
				r.done(tds.TokenDone, tds.DoneError, 0, 0, false)
				return r.finish(), nil
			}
		}
	}
	switch req.typ {
	case tds.PacketSQLBatch:
		q, err := tds.DecodeSQLBatch(req.payload)
		if err != nil {
			return nil, err
		}
		s.runBatch(ctx, r, q.Text, map[string]any{}, false)
		return r.finish(), nil
	case tds.PacketRPC:
		if _, _, err := tds.DecodeAllHeaders(req.payload); err != nil {
			return nil, err
		}
		req, err := tds.DecodeRPC(req.payload)
		var calls []rpcCall
		if err == nil {
			calls, err = rpcCalls(req)
		}
		if err != nil {
			// Malformed parameters are the client's bug, not fatal.
			r.sqlErr(errf(8016, 1, 16, fmt.Sprintf("The incoming tabular data stream (TDS) remote procedure call (RPC) protocol stream is incorrect. %v", err)))
			r.done(tds.TokenDoneProc, tds.DoneError, 0, 0, false)
			return r.finish(), nil
		}
		for _, call := range calls {
			if ctx.Err() != nil {
				break
			}
			s.runRPC(ctx, r, call)
		}
		return r.finish(), nil
	case tds.PacketTransMgr:
		tm, err := tds.DecodeTransMgr(req.payload)
		if err != nil {
			return nil, err
		}
		s.runTM(ctx, r, tm)
		return r.finish(), nil
	}
	r.sqlErr(errf(4002, 1, 16, fmt.Sprintf("The incoming tabular data stream (TDS) protocol stream is incorrect: %s requests are not supported by the test backend.", req.typ)))
	r.done(tds.TokenDone, tds.DoneError, 0, 0, false)
	return r.finish(), nil
}

// reset implements RESETCONNECTION [MS-TDS §2.2.3.1.2]: as if the client
// logged out and in again, except that skipTran keeps the transaction and
// the transaction isolation level stays as the session left it: SQL
// Server's sp_reset_connection does not reset it (by design; SQL Server
// 2014 briefly did and a cumulative update reverted that). An
// active application role (sp_setapprole without sp_unsetapprole) makes
// SQL Server refuse the reset with 18059 and drop the connection.
func (s *session) reset(r *resp, skipTran bool) *sqlError {
	if s.appRole != "" || s.c.srv.failResets.Add(-1) >= 0 {
		s.dropAfterReply = true
		return errf(18059, 1, 20, "The connection has been dropped because the principal that opened it subsequently assumed a new security context, and then tried to reset the connection under its impersonated security context. This scenario is not supported. See \"Impersonation Overview\" in Books Online.")
	}
	s.c.srv.resets.Add(1)
	ctx, cancel := context.WithTimeout(context.Background(), 10e9)
	defer cancel()
	if s.trancount > 0 && !skipTran {
		// Announced like every other rollback, ahead of the reset ack, so
		// the client drops the descriptor it holds.
		s.rollbackAll(ctx, r)
	}
	if s.db != s.loginDB && s.trancount == 0 {
		old := s.db
		if err := s.open(s.loginDB); err == nil {
			r.env(tds.EnvChangeDatabase(s.loginDB, old))
		}
	}
	s.dropTemps(ctx)
	s.prepared = map[int32]*prepared{}
	if s.opts.language != s.loginOpts.language {
		r.env(tds.EnvChangeLanguage(s.loginOpts.language, s.opts.language))
	}
	isolation := s.opts.isolation
	s.opts = s.loginOpts.clone()
	s.opts.isolation = isolation
	s.rowcount = 0
	s.contextInfo, s.sessCtx = nil, nil
	s.cursors, s.apiCursors, s.fetchStatus = nil, nil, -1
	s.c.srv.locks.releaseAll(lockOwner{s.c.spid, false})
	r.env(tds.EnvChangeResetAck())
	s.tempsChanged = true
	return nil
}

// Transactions. SQLite transactions live on the session's connection;
// nesting is counted like @@TRANCOUNT and only the outermost BEGIN and the
// final COMMIT or a ROLLBACK touch SQLite and produce ENVCHANGE 8/9/10
// [MS-TDS §2.2.7.9], as SQL Server announces them to every client.

// beginTran is BEGIN TRAN [name]: the outermost opens a transaction.
func (s *session) beginTran(ctx context.Context, r *resp, name string) *sqlError {
	if s.trancount > 0 {
		s.trancount++
		return nil
	}
	if _, err := s.sc.ExecContext(ctx, "BEGIN"); err != nil {
		return mapSQLiteErr(err, s)
	}
	s.trancount, s.tranName = 1, name
	s.desc = descCounter.Add(1)<<16 | uint64(s.c.spid)
	r.env(tds.EnvChangeBeginTran(s.desc))
	return nil
}

// implicitBegin opens the transaction IMPLICIT_TRANSACTIONS ON starts
// before a statement that touches data, when none is open.
func (s *session) implicitBegin(ctx context.Context, r *resp, st []token) *sqlError {
	if !s.opts.has(optImplicitTransactions) || s.trancount > 0 || !startsImplicitTran(st) {
		return nil
	}
	return s.beginTran(ctx, r, "")
}

// startsImplicitTran lists the statements SQL Server documents as opening
// an implicit transaction; a SELECT does so only when it reads a table.
func startsImplicitTran(st []token) bool {
	switch st[0].upper {
	case "ALTER", "CREATE", "DELETE", "DROP", "FETCH", "GRANT", "INSERT", "OPEN", "REVOKE",
		"TRUNCATE", "UPDATE", "MERGE":
		return true
	case "BEGIN":
		return len(st) > 1 && (st[1].upper == "TRAN" || st[1].upper == "TRANSACTION")
	case "SELECT", "WITH":
		return hasWord(st, "FROM")
	}
	return false
}

func (s *session) endTran() {
	s.trancount, s.desc, s.tranName, s.savepoints, s.doomed = 0, 0, "", nil, false
	s.tempsChanged = true // a rollback may have undone a CREATE TABLE #t
	s.releaseTranLocks()
}

// errDoomed is what a doomed transaction answers to COMMIT and to writes.
func errDoomed() *sqlError {
	return errf(3930, 1, 16, "The current transaction cannot be committed and cannot support operations that write to the log file. Roll back the transaction.")
}

func (s *session) commitTran(ctx context.Context, r *resp, all bool) *sqlError {
	if s.trancount == 0 {
		return errf(3902, 1, 16, "The COMMIT TRANSACTION request has no corresponding BEGIN TRANSACTION.")
	}
	if s.doomed {
		return errDoomed()
	}
	if s.trancount > 1 && !all {
		s.trancount--
		return nil
	}
	if _, err := s.sc.ExecContext(ctx, "COMMIT"); err != nil {
		return mapSQLiteErr(err, s)
	}
	r.env(tds.EnvChangeCommitTran(s.desc))
	s.endTran()
	return nil
}

// rollbackTran is ROLLBACK [TRAN name]: to the newest savepoint of that
// name, else the whole transaction when name is empty or the outermost
// BEGIN TRAN's (names are case-sensitive, as in SQL Server).
func (s *session) rollbackTran(ctx context.Context, r *resp, name string) *sqlError {
	if s.trancount == 0 {
		return errf(3903, 1, 16, "The ROLLBACK TRANSACTION request has no corresponding BEGIN TRANSACTION.")
	}
	if name != "" {
		for i := len(s.savepoints) - 1; i >= 0; i-- {
			if s.savepoints[i] == name {
				if _, err := s.sc.ExecContext(ctx, `ROLLBACK TO "`+sp(name)+`"`); err != nil {
					return mapSQLiteErr(err, s)
				}
				s.savepoints = s.savepoints[:i+1]
				return nil
			}
		}
		if name != s.tranName {
			return errf(6401, 1, 16, fmt.Sprintf("Cannot roll back %s. No transaction or savepoint of that name was found.", name))
		}
	}
	s.rollbackAll(ctx, r)
	return nil
}

// rollbackAll ends the transaction whatever the nesting (ROLLBACK,
// XACT_ABORT, a request cancelled mid-transaction by SQLite).
func (s *session) rollbackAll(ctx context.Context, r *resp) {
	if s.trancount == 0 {
		return
	}
	s.sc.ExecContext(context.WithoutCancel(ctx), "ROLLBACK")
	r.env(tds.EnvChangeRollbackTran(s.desc))
	s.endTran()
}

// syncTran notices a transaction SQLite ended on its own: an interrupted
// write (a cancelled request) or some errors roll the whole SQLite
// transaction back, where SQL Server would keep it. BEGIN fails inside a
// transaction; if it succeeds ours is gone, and the session says so
// (ENVCHANGE rollback) instead of carrying a @@TRANCOUNT nothing backs.
func (s *session) syncTran(r *resp) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := s.sc.ExecContext(ctx, "BEGIN"); err != nil {
		return // still inside the transaction
	}
	s.sc.ExecContext(ctx, "ROLLBACK")
	r.env(tds.EnvChangeRollbackTran(s.desc))
	s.endTran()
}

func (s *session) saveTran(ctx context.Context, name string) *sqlError {
	if s.trancount == 0 {
		return errf(628, 0, 16, "Cannot issue SAVE TRANSACTION when there is no active transaction.")
	}
	if name == "" {
		return syntaxErr("SAVE")
	}
	if _, err := s.sc.ExecContext(ctx, `SAVEPOINT "`+sp(name)+`"`); err != nil {
		return mapSQLiteErr(err, s)
	}
	s.savepoints = append(s.savepoints, name)
	return nil
}

func sp(name string) string { return strings.ReplaceAll(name, `"`, `""`) }

// runTM answers a TRANSACTION MANAGER request [MS-TDS §2.2.6.9].
func (s *session) runTM(ctx context.Context, r *resp, tm *tds.TransMgrRequest) {
	var e *sqlError
	switch tm.Type {
	case tds.TMBeginXact:
		s.setIsolation(tm.Isolation)
		e = s.beginTran(ctx, r, tm.Name)
	case tds.TMCommitXact, tds.TMRollbackXact:
		if tm.Type == tds.TMCommitXact {
			e = s.commitTran(ctx, r, true)
		} else {
			e = s.rollbackTran(ctx, r, tm.Name)
			s.tempsChanged = true
		}
		if e == nil && tm.BeginsTransaction() {
			s.setIsolation(tm.Isolation)
			e = s.beginTran(ctx, r, tm.NewName)
		}
	case tds.TMSaveXact:
		e = s.saveTran(ctx, tm.Name)
	default:
		e = errf(8524, 1, 16, fmt.Sprintf("Transaction manager request %d is not supported by the test backend.", uint16(tm.Type)))
	}
	if e != nil {
		r.sqlErr(e)
		r.done(tds.TokenDone, tds.DoneError, 0, 0, false)
		return
	}
	r.done(tds.TokenDone, 0, 0, 0, false)
}

// setIsolation applies a TM request's isolation byte (0 keeps the level).
func (s *session) setIsolation(l tds.IsolationLevel) {
	if l >= isoReadUncommitted && l <= isoSnapshot {
		s.opts.isolation = int(l)
	}
}
