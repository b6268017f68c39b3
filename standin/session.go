package standin

import (
	"context"
	"database/sql"
	"encoding/binary"
	"fmt"
	"strings"
	"sync/atomic"

	"github.com/tdspool/tdspool/tds"
)

// session is the server-side state of one logged-in connection. It is
// owned by the connection's executor goroutine; nothing else touches it
// (the reader goroutine only cancels the request context).
type session struct {
	c       *conn
	login   string
	loginDB string
	db      string
	sc      *sql.Conn // dedicated SQLite connection to db

	trancount  int
	desc       uint64 // current transaction descriptor, 0 outside one
	savepoints []string
	isolation  string

	opts    map[string]string // SET options as last set, upper-case names
	nocount bool

	prepared   map[int32]*prepared
	nextHandle int32

	rowcount int64 // @@ROWCOUNT
}

type prepared struct {
	decl []paramDecl
	text string
}

var descCounter atomic.Uint64

func newSession(c *conn, login, db string) (*session, error) {
	s := &session{c: c, login: login, loginDB: db, prepared: map[int32]*prepared{}, opts: map[string]string{}}
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
	s.sc, s.db = sc, db
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
		s.trancount, s.desc, s.savepoints = 0, 0, nil
	}
	s.dropTemps(ctx)
	s.sc.Close()
	s.sc = nil
}

func (s *session) close() {
	if s.sc != nil {
		s.closeConn()
	}
}

func (s *session) dropTemps(ctx context.Context) {
	rows, err := s.sc.QueryContext(ctx, "SELECT name FROM sqlite_temp_master WHERE type = 'table'")
	if err != nil {
		return
	}
	var names []string
	for rows.Next() {
		var n string
		if rows.Scan(&n) == nil {
			names = append(names, n)
		}
	}
	rows.Close()
	for _, n := range names {
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

func (r *resp) bytes() []byte { r.flush(); return r.b }

// tok appends raw token bytes (flushing the held DONE first).
func (r *resp) tok(b []byte) { r.flush(); r.b = append(r.b, b...) }

func (r *resp) env(e tds.EnvChange) { r.flush(); r.b = e.AppendEnvChange(r.b) }

func (r *resp) done(tok tds.TokenType, status tds.DoneStatus, curcmd uint16, count int64, counted bool) {
	r.flush()
	if r.s.trancount > 0 {
		status |= tds.DoneInXact
	}
	if counted && !r.s.nocount {
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
			s.reset(r, req.status&tds.StatusResetConnectionSkipTran != 0)
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
// logged out and in again, except that skipTran keeps the transaction.
func (s *session) reset(r *resp, skipTran bool) {
	s.c.srv.resets.Add(1)
	ctx, cancel := context.WithTimeout(context.Background(), 10e9)
	defer cancel()
	if s.trancount > 0 && !skipTran {
		s.sc.ExecContext(ctx, "ROLLBACK")
		s.trancount, s.desc, s.savepoints = 0, 0, nil
	}
	if s.db != s.loginDB && s.trancount == 0 {
		old := s.db
		if err := s.open(s.loginDB); err == nil {
			r.env(tds.EnvChangeDatabase(s.loginDB, old))
		}
	}
	s.dropTemps(ctx)
	s.prepared = map[int32]*prepared{}
	s.opts = map[string]string{}
	s.nocount = false
	s.isolation = ""
	s.rowcount = 0
	r.env(tds.EnvChangeResetAck())
}

// Transactions. SQLite transactions live on the session's connection;
// nesting is counted like @@TRANCOUNT and only the outermost BEGIN/COMMIT
// touch SQLite and produce ENVCHANGE 8/9 [MS-TDS §2.2.7.9].

func (s *session) beginTran(ctx context.Context, r *resp) *sqlError {
	if s.trancount > 0 {
		s.trancount++
		return nil
	}
	if _, err := s.sc.ExecContext(ctx, "BEGIN"); err != nil {
		return mapSQLiteErr(err, s)
	}
	s.trancount = 1
	s.desc = descCounter.Add(1)<<16 | uint64(s.c.spid)
	r.env(tds.EnvChangeBeginTran(s.desc))
	return nil
}

func (s *session) commitTran(ctx context.Context, r *resp, all bool) *sqlError {
	if s.trancount == 0 {
		return errf(3902, 1, 16, "The COMMIT TRANSACTION request has no corresponding BEGIN TRANSACTION.")
	}
	if s.trancount > 1 && !all {
		s.trancount--
		return nil
	}
	if _, err := s.sc.ExecContext(ctx, "COMMIT"); err != nil {
		return mapSQLiteErr(err, s)
	}
	r.env(tds.EnvChangeCommitTran(s.desc))
	s.trancount, s.desc, s.savepoints = 0, 0, nil
	return nil
}

func (s *session) rollbackTran(ctx context.Context, r *resp, name string) *sqlError {
	if s.trancount == 0 {
		return errf(3903, 1, 16, "The ROLLBACK TRANSACTION request has no corresponding BEGIN TRANSACTION.")
	}
	if name != "" {
		for i := len(s.savepoints) - 1; i >= 0; i-- {
			if strings.EqualFold(s.savepoints[i], name) {
				if _, err := s.sc.ExecContext(ctx, `ROLLBACK TO "`+sp(name)+`"`); err != nil {
					return mapSQLiteErr(err, s)
				}
				s.savepoints = s.savepoints[:i+1]
				return nil
			}
		}
	}
	if _, err := s.sc.ExecContext(context.WithoutCancel(ctx), "ROLLBACK"); err != nil {
		return mapSQLiteErr(err, s)
	}
	r.env(tds.EnvChangeRollbackTran(s.desc))
	s.trancount, s.desc, s.savepoints = 0, 0, nil
	return nil
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

func sp(name string) string { return strings.ReplaceAll(strings.ToLower(name), `"`, `""`) }

// runTM answers a TRANSACTION MANAGER request [MS-TDS §2.2.6.9].
func (s *session) runTM(ctx context.Context, r *resp, tm *tds.TransMgrRequest) {
	var e *sqlError
	switch tm.Type {
	case tds.TMBeginXact:
		if s.trancount > 0 {
			s.trancount++ // nested, as BEGIN TRAN would
		} else {
			e = s.beginTran(ctx, r)
		}
	case tds.TMCommitXact, tds.TMRollbackXact:
		if tm.Type == tds.TMCommitXact {
			e = s.commitTran(ctx, r, true)
		} else {
			e = s.rollbackTran(ctx, r, "")
		}
		if e == nil && tm.BeginsTransaction() {
			e = s.beginTran(ctx, r)
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

// descBytes is the 8-byte little-endian descriptor, for tests.
func descBytes(d uint64) []byte { return binary.LittleEndian.AppendUint64(nil, d) }
