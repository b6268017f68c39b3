package standin

import (
	"context"
	"crypto/rand"
	"database/sql"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/tdspool/tdspool/tds"
)

// Statement execution. A batch (SQL_BATCH text or an sp_executesql
// statement) is lexed, split into statements and run one at a time.
// Session commands (SET, USE, transactions, WAITFOR, RAISERROR/THROW,
// PRINT, DECLARE, IF, EXEC) are interpreted here; everything else is
// translated to SQLite and run on the session's connection. The first
// error ends the batch (SQL Server aborts the batch for compile errors and
// continues after many runtime ones; tests rely only on "the error is
// reported").

// DONE CurCmd values (observed from SQL Server; MS-TDS does not list them).
const (
	cmdSelect uint16 = 0xC1
	cmdInsert uint16 = 0xC3
	cmdDelete uint16 = 0xC4
	cmdUpdate uint16 = 0xC5
)

// runBatch runs a batch and reports its error, if any, in r; inProc
// selects DONEINPROC for statement DONEs (inside an RPC or EXEC). It
// reports whether the batch succeeded.
func (s *session) runBatch(ctx context.Context, r *resp, text string, vars map[string]any, inProc bool) bool {
	e := s.execText(ctx, r, text, vars, inProc)
	if e != nil {
		s.fail(ctx, r, e, inProc)
	}
	if s.batchDepth == 0 {
		s.endOfBatch(ctx, r)
	}
	return e == nil
}

// execText runs T-SQL text (a batch, an sp_executesql statement or a
// procedure body) and returns the error that ended it, unreported, so an
// enclosing TRY can catch it. The first error not caught ends the text.
func (s *session) execText(ctx context.Context, r *resp, text string, vars map[string]any, inProc bool) *sqlError {
	toks, e := lex(text)
	if e != nil {
		return e
	}
	if len(toks) == 0 {
		return nil
	}
	s.batchDepth++
	defer func() { s.batchDepth-- }()
	if isProcDDL(toks) {
		return s.createProc(ctx, r, text, toks, inProc)
	}
	stmts := splitStatements(toks)
	if s.procCallFirst(ctx, stmts[0]) {
		// A batch may begin with a procedure's name: EXEC is implied for its first statement.
		stmts[0] = append([]token{{k: tkWord, text: "EXEC", upper: "EXEC"}}, stmts[0]...)
	}
	nodes, e := parseNodes(stmts)
	if e != nil {
		return e
	}
	defer s.dropTableVars(vars)
	_, e = s.runNodes(ctx, r, nodes, vars, inProc)
	return e
}

// fail reports the error that ended the batch. With XACT_ABORT ON a
// run-time error (any severity above 10 but 15, the compile errors) also
// rolls the whole transaction back, announced after the error as SQL
// Server does. Compile errors (severity 15) are not affected.
func (s *session) fail(ctx context.Context, r *resp, e *sqlError, inProc bool) {
	r.sqlErr(e)
	if e.class > 10 && e.class != 15 && s.opts.has(optXactAbort) {
		s.rollbackAll(ctx, r)
	}
	tok := tds.TokenDone
	if inProc {
		tok = tds.TokenDoneInProc
	}
	if e.class <= 10 {
		r.done(tok, 0, 0, 0, false)
		return
	}
	r.done(tok, tds.DoneError, 0, 0, false)
}

func (s *session) stmtDone(r *resp, inProc bool, curcmd uint16, count int64, counted bool) {
	tok := tds.TokenDone
	if inProc {
		tok = tds.TokenDoneInProc
	}
	r.done(tok, 0, curcmd, count, counted)
}

// runStmt runs one statement; control-flow statements report how they
// leave their block.
func (s *session) runStmt(ctx context.Context, r *resp, st []token, vars map[string]any, inProc bool) (flow, *sqlError) {
	f, e := s.stmt(ctx, r, st, vars, inProc)
	if e != nil && e.proc == "" && s.procName != "" {
		e.proc = s.procName
	}
	if (e != nil || ctx.Err() != nil) && s.trancount > 0 {
		s.syncTran(r)
	}
	return f, e
}

func (s *session) stmt(ctx context.Context, r *resp, st []token, vars map[string]any, inProc bool) (flow, *sqlError) {
	head := st[0]
	if head.k != tkWord {
		return flowNext, syntaxErr(head.text)
	}
	done := func() (flow, *sqlError) { s.stmtDone(r, inProc, 0, 0, false); return flowNext, nil }
	if e := s.implicitBegin(ctx, r, st); e != nil {
		return flowNext, e
	}
	switch head.upper {
	case "CREATE", "DROP", "DECLARE", "USE", "EXEC", "EXECUTE", "ROLLBACK":
		s.tempsChanged = true // may create, drop or undo a #temp table
	case "SELECT":
		s.tempsChanged = s.tempsChanged || hasWord(st, "INTO")
	}
	switch head.upper {
	case "RETURN":
		if len(st) > 1 {
			v, e := s.eval(ctx, st[1:], vars)
			if e != nil {
				return flowNext, e
			}
			n, _ := asInt(v)
			vars["\x00return"] = n
		}
		return flowReturn, nil
	case "BREAK":
		return flowBreak, nil
	case "CONTINUE":
		return flowContinue, nil
	case "SET":
		return flowNext, s.doSet(ctx, r, st, vars, inProc)
	case "USE":
		if len(st) != 2 {
			return flowNext, syntaxErr(joinTokens(st[1:]))
		}
		name, _ := st[1].name()
		if st[1].k == tkString {
			name = st[1].text
		}
		return flowNext, s.use(r, name, inProc)
	case "BEGIN":
		if len(st) >= 2 && (st[1].upper == "TRAN" || st[1].upper == "TRANSACTION" || st[1].upper == "DISTRIBUTED") {
			name := ""
			if k := 2 + boolInt(st[1].upper == "DISTRIBUTED"); k < len(st) {
				name, _ = st[k].name()
			}
			if e := s.beginTran(ctx, r, name); e != nil {
				return flowNext, e
			}
			return done()
		}
		return flowNext, errf(50000, 1, 16, "BEGIN ... END blocks, TRY/CATCH and other control flow are not supported by the test backend.")
	case "COMMIT":
		if e := s.commitTran(ctx, r, false); e != nil {
			return flowNext, e
		}
		return done()
	case "ROLLBACK":
		name := ""
		if len(st) >= 3 && (st[1].upper == "TRAN" || st[1].upper == "TRANSACTION") {
			name, _ = st[2].name()
		}
		if e := s.rollbackTran(ctx, r, name); e != nil {
			return flowNext, e
		}
		return done()
	case "SAVE":
		if len(st) < 3 {
			return flowNext, syntaxErr(joinTokens(st))
		}
		name, _ := st[2].name()
		if e := s.saveTran(ctx, name); e != nil {
			return flowNext, e
		}
		return done()
	case "WAITFOR":
		return flowNext, s.waitfor(ctx, r, st, vars, inProc)
	case "RAISERROR":
		return flowNext, s.raiserror(ctx, r, st, vars, inProc)
	case "THROW":
		return flowNext, s.throw(ctx, st, vars)
	case "PRINT":
		v, e := s.eval(ctx, st[1:], vars)
		if e != nil {
			return flowNext, e
		}
		r.sqlErr(errf(0, 1, 0, fmt.Sprint(nz(v))))
		return done()
	case "DECLARE":
		if len(st) > 2 && st[1].k != tkVar && hasWord(st, "CURSOR") {
			if e := s.declareCursor(st); e != nil {
				return flowNext, e
			}
			return done()
		}
		return flowNext, s.declare(ctx, st, vars)
	case "OPEN", "FETCH", "CLOSE", "DEALLOCATE":
		return flowNext, s.cursorStmt(ctx, r, st, vars, inProc)
	case "EXEC", "EXECUTE":
		return flowNext, s.execProc(ctx, r, st[1:], vars, inProc)
	case "CREATE":
		if len(st) > 2 && st[1].upper == "LOGIN" {
			return flowNext, s.loginDDL(ctx, r, st, vars, inProc)
		}
		if len(st) > 2 && st[1].upper == "TABLE" {
			return flowNext, s.createTable(ctx, r, st, inProc)
		}
		if len(st) > 1 && (st[1].upper == "PROCEDURE" || st[1].upper == "PROC" || st[1].upper == "FUNCTION" || st[1].upper == "TRIGGER") {
			return flowNext, errf(50000, 1, 16, "CREATE "+st[1].upper+" is not supported by the test backend.")
		}
	case "ALTER":
		if len(st) > 2 && st[1].upper == "LOGIN" {
			return flowNext, s.loginDDL(ctx, r, st, vars, inProc)
		}
	case "DROP":
		if len(st) > 2 && st[1].upper == "LOGIN" {
			return flowNext, s.loginDDL(ctx, r, st, vars, inProc)
		}
		if len(st) > 2 && (st[1].upper == "PROC" || st[1].upper == "PROCEDURE") {
			return flowNext, s.dropProc(ctx, r, st, inProc)
		}
		if len(st) > 2 && st[1].upper == "TABLE" {
			return flowNext, s.dropTable(ctx, r, st, inProc)
		}
	case "TRUNCATE":
		if len(st) == 3 && st[1].upper == "TABLE" {
			st = append([]token{{k: tkWord, text: "DELETE", upper: "DELETE"}, {k: tkWord, text: "FROM", upper: "FROM"}}, st[2:]...)
		}
	case "SELECT":
		if len(st) > 2 && st[1].k == tkVar && st[2].text == "=" {
			return flowNext, s.selectAssign(ctx, r, st, vars, inProc)
		}
	}
	if len(st) == 1 && !statementStarts[head.upper] {
		// A bare name at the start of a batch is a procedure call.
		return flowNext, s.execProc(ctx, r, st, vars, inProc)
	}
	return flowNext, s.runSQL(ctx, r, st, vars, inProc)
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func firstErr(es ...*sqlError) *sqlError {
	for _, e := range es {
		if e != nil {
			return e
		}
	}
	return nil
}

func nz(v any) any {
	if v == nil {
		return ""
	}
	if b, ok := v.([]byte); ok {
		return string(b)
	}
	return v
}

// doSet handles SET. Options are recorded as session state (RESETCONNECTION
// clears them); unknown options are accepted, as SQL Server accepts every
// documented one. SET @var = expr assigns a variable.
func (s *session) doSet(ctx context.Context, r *resp, st []token, vars map[string]any, inProc bool) *sqlError {
	if len(st) < 2 {
		return syntaxErr("SET")
	}
	if st[1].k == tkVar {
		if len(st) < 4 || st[2].text != "=" {
			return syntaxErr(joinTokens(st[2:]))
		}
		name := strings.ToLower(st[1].text)
		if _, ok := vars[name]; !ok {
			return errf(137, 2, 15, fmt.Sprintf("Must declare the scalar variable \"@%s\".", st[1].text))
		}
		v, e := s.eval(ctx, st[3:], vars)
		if e != nil {
			return e
		}
		vars[name] = v
		s.stmtDone(r, inProc, 0, 0, false)
		return nil
	}
	var names []string
	j := 1
	for j < len(st) && st[j].k == tkWord {
		n := st[j].upper
		switch {
		case n == "TRANSACTION" && j+2 < len(st) && st[j+1].upper == "ISOLATION" && st[j+2].upper == "LEVEL":
			n, j = "TRANSACTION ISOLATION LEVEL", j+2
		case (n == "STATISTICS" || n == "IDENTITY_INSERT") && j+1 < len(st):
			// STATISTICS IO|TIME|XML|PROFILE; IDENTITY_INSERT <table>
			qn, k := qualifiedName(st, j+1)
			n, j = n+" "+strings.ToUpper(strings.Join(qn, ".")), k-1
		}
		names = append(names, n)
		j++
		if j < len(st) && st[j].text == "," {
			j++
			continue
		}
		break
	}
	if len(names) == 0 || j >= len(st) {
		return syntaxErr(joinTokens(st[min(j, len(st)-1):]))
	}
	valToks := st[j:]
	if names[0] == "CONTEXT_INFO" {
		return s.setContextInfo(ctx, r, valToks, vars, inProc)
	}
	var val string
	if len(valToks) == 1 && valToks[0].k == tkVar {
		v, e := s.eval(ctx, valToks, vars)
		if e != nil {
			return e
		}
		val = strings.ToUpper(fmt.Sprint(nz(v)))
	} else {
		var parts []string
		for k, t := range valToks {
			text := strings.ToUpper(t.text)
			if k > 0 && valToks[k-1].text == "-" {
				parts[len(parts)-1] += text
				continue
			}
			parts = append(parts, text)
		}
		val = strings.Join(parts, " ")
	}
	if names[0] == "LANGUAGE" {
		lang := strings.Trim(val, "'[]")
		if !strings.EqualFold(lang, defaultLanguage) && !strings.EqualFold(lang, "english") {
			return errf(2737, 1, 16, fmt.Sprintf("'%s' is not an official language name.", lang))
		}
		// SQL Server answers SET LANGUAGE with the language ENVCHANGE and 5703.
		r.env(tds.EnvChangeLanguage(defaultLanguage, s.opts.language))
		s.opts.language = defaultLanguage
		r.tok(s.info(nil, 5703, 1, "Changed language setting to "+defaultLanguage+"."))
		s.stmtDone(r, inProc, 0, 0, false)
		return nil
	}
	if e := s.opts.set(names, val); e != nil {
		return e
	}
	s.stmtDone(r, inProc, 0, 0, false)
	return nil
}

func (s *session) use(r *resp, name string, inProc bool) *sqlError {
	canon, ok := s.c.srv.store.canonical(name)
	if !ok {
		return errf(911, 1, 16, fmt.Sprintf("Database '%s' does not exist. Make sure that the name is entered correctly.", name))
	}
	if canon != s.db {
		if s.trancount > 0 {
			return errf(50000, 1, 16, "USE inside an open transaction is not supported by the test backend.")
		}
		old := s.db
		if err := s.open(canon); err != nil {
			return errf(4060, 1, 11, fmt.Sprintf("Cannot open database \"%s\". %v", canon, err))
		}
		r.env(tds.EnvChangeDatabase(canon, old))
	}
	r.tok(s.info(nil, 5701, 1, fmt.Sprintf("Changed database context to '%s'.", canon)))
	s.stmtDone(r, inProc, 0, 0, false)
	return nil
}

// waitfor implements WAITFOR DELAY 'hh:mm:ss[.mmm]'; ATTENTION cancels it.
func (s *session) waitfor(ctx context.Context, r *resp, st []token, vars map[string]any, inProc bool) *sqlError {
	if len(st) < 3 || st[1].upper != "DELAY" {
		return errf(50000, 1, 16, "Only WAITFOR DELAY is supported by the test backend.")
	}
	v, e := s.eval(ctx, st[2:], vars)
	if e != nil {
		return e
	}
	d, ok := parseDelay(fmt.Sprint(nz(v)))
	if !ok {
		return errf(148, 1, 15, "Incorrect time syntax in time string '"+fmt.Sprint(nz(v))+"' used with WAITFOR.")
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
		return nil // the caller sees ctx and answers the ATTENTION
	}
	s.stmtDone(r, inProc, 0, 0, false)
	return nil
}

func parseDelay(s string) (time.Duration, bool) {
	parts := strings.Split(strings.TrimSpace(s), ":")
	if len(parts) < 2 || len(parts) > 3 {
		return 0, false
	}
	var d time.Duration
	units := []time.Duration{time.Hour, time.Minute, time.Second}
	for i, p := range parts {
		if i == len(parts)-1 && strings.Contains(p, ".") {
			f, err := strconv.ParseFloat(p, 64)
			if err != nil {
				return 0, false
			}
			d += time.Duration(f * float64(units[i]))
			continue
		}
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return 0, false
		}
		d += time.Duration(n) * units[i]
	}
	return d, d <= 24*time.Hour
}

// raiserror: RAISERROR(msg, severity, state [, args...]) [WITH ...].
// Severity <= 10 is an INFO and does not fail the batch; msg is a printf
// format with %s/%d/%i/%u.
func (s *session) raiserror(ctx context.Context, r *resp, st []token, vars map[string]any, inProc bool) *sqlError {
	rest := st[1:]
	for j, t := range rest {
		if t.upper == "WITH" {
			rest = rest[:j]
			break
		}
	}
	if len(rest) < 2 || rest[0].text != "(" || rest[len(rest)-1].text != ")" {
		return syntaxErr("RAISERROR")
	}
	args := splitArgs(rest[1 : len(rest)-1])
	if len(args) < 3 {
		return errf(102, 1, 15, "Incorrect syntax near ')'.")
	}
	vals := make([]any, len(args))
	for j, a := range args {
		v, e := s.eval(ctx, a, vars)
		if e != nil {
			return e
		}
		vals[j] = v
	}
	sev, _ := asInt(vals[1])
	state, _ := asInt(vals[2])
	number := int32(50000)
	msg := fmt.Sprint(nz(vals[0]))
	if n, ok := vals[0].(int64); ok {
		number, msg = int32(n), fmt.Sprintf("Error %d, severity %d, state %d was raised, but no message with that error number was found in sys.messages.", n, sev, state)
	}
	msg = formatRaiserror(msg, vals[3:])
	e := errf(number, uint8(state), uint8(min(max(sev, 0), 25)), msg)
	if e.class <= 10 {
		r.sqlErr(e)
		s.stmtDone(r, inProc, 0, 0, false)
		return nil
	}
	return e
}

var fmtSpec = regexp.MustCompile(`%[-+ 0#]*\d*(?:\.\d+)?(?:h|l|I64)?[sdiuoxX]`)

func formatRaiserror(f string, args []any) string {
	i := 0
	return fmtSpec.ReplaceAllStringFunc(f, func(string) string {
		if i >= len(args) {
			return "(null)"
		}
		v := nz(args[i])
		i++
		return fmt.Sprint(v)
	})
}

// splitArgs splits at depth-0 commas.
func splitArgs(ts []token) [][]token {
	var out [][]token
	depth, start := 0, 0
	for j, t := range ts {
		switch {
		case t.k == tkOp && t.text == "(":
			depth++
		case t.k == tkOp && t.text == ")":
			depth--
		case t.k == tkOp && t.text == "," && depth == 0:
			out = append(out, ts[start:j])
			start = j + 1
		}
	}
	if start < len(ts) {
		out = append(out, ts[start:])
	}
	return out
}

// declare: DECLARE @a int [= expr] [, @b ...].
func (s *session) declare(ctx context.Context, st []token, vars map[string]any) *sqlError {
	for _, d := range splitArgs(st[1:]) {
		if len(d) < 2 || d[0].k != tkVar {
			return syntaxErr(joinTokens(d))
		}
		j := 1
		if d[j].upper == "AS" {
			j++
		}
		if j < len(d) && d[j].upper == "TABLE" {
			if e := s.declareTable(ctx, d[0].text, d[j+1:], vars); e != nil {
				return e
			}
			continue
		}
		var val any
		for k := j; k < len(d); k++ {
			if d[k].text == "=" {
				v, e := s.eval(ctx, d[k+1:], vars)
				if e != nil {
					return e
				}
				val = v
				break
			}
		}
		vars[strings.ToLower(d[0].text)] = val
	}
	return nil
}

// selectAssign: SELECT @a = expr [, @b = expr] [FROM ...]; the last row wins.
func (s *session) selectAssign(ctx context.Context, r *resp, st []token, vars map[string]any, inProc bool) *sqlError {
	body := st[1:]
	end := len(body)
	depth := 0
	for j, t := range body {
		if t.text == "(" {
			depth++
		} else if t.text == ")" {
			depth--
		} else if depth == 0 && t.k == tkWord && (t.upper == "FROM" || t.upper == "WHERE") {
			end = j
			break
		}
	}
	var names []string
	sel := []token{{k: tkWord, text: "SELECT", upper: "SELECT"}}
	for n, a := range splitArgs(body[:end]) {
		if len(a) < 3 || a[0].k != tkVar || a[1].text != "=" {
			return syntaxErr(joinTokens(a))
		}
		name := strings.ToLower(a[0].text)
		if _, ok := vars[name]; !ok {
			return errf(137, 2, 15, fmt.Sprintf("Must declare the scalar variable \"@%s\".", a[0].text))
		}
		names = append(names, name)
		if n > 0 {
			sel = append(sel, token{k: tkOp, text: ","})
		}
		sel = append(sel, a[2:]...)
	}
	sel = append(sel, body[end:]...)
	q, args, e := s.translate(sel, vars)
	if e != nil {
		return e
	}
	rows, err := s.sc.QueryContext(ctx, q, args...)
	if err != nil {
		return mapSQLiteErr(err, s)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		vals := make([]any, len(names))
		ptrs := make([]any, len(names))
		for j := range vals {
			ptrs[j] = &vals[j]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return mapSQLiteErr(err, s)
		}
		for j, nm := range names {
			vars[nm] = vals[j]
		}
		n++
	}
	if err := rows.Err(); err != nil {
		return mapSQLiteErr(err, s)
	}
	s.rowcount = int64(n)
	s.stmtDone(r, inProc, cmdSelect, int64(n), true)
	return nil
}

// eval evaluates a scalar expression with SQLite.
func (s *session) eval(ctx context.Context, expr []token, vars map[string]any) (any, *sqlError) {
	if len(expr) == 0 {
		return nil, syntaxErr("")
	}
	if len(expr) == 1 {
		switch t := expr[0]; t.k {
		case tkString:
			return t.text, nil
		case tkNumber:
			if n, err := strconv.ParseInt(t.text, 10, 64); err == nil {
				return n, nil
			}
		case tkVar:
			v, ok := vars[strings.ToLower(t.text)]
			if !ok {
				return nil, errf(137, 2, 15, fmt.Sprintf("Must declare the scalar variable \"@%s\".", t.text))
			}
			return v, nil
		}
	}
	q, args, e := s.translate(append([]token{{k: tkWord, text: "SELECT", upper: "SELECT"}}, expr...), vars)
	if e != nil {
		return nil, e
	}
	var v any
	if err := s.sc.QueryRowContext(ctx, q, args...).Scan(&v); err != nil {
		return nil, mapSQLiteErr(err, s)
	}
	return v, nil
}

func (s *session) evalCond(ctx context.Context, cond []token, vars map[string]any) (bool, *sqlError) {
	expr := append([]token{{k: tkWord, text: "CASE", upper: "CASE"}, {k: tkWord, text: "WHEN", upper: "WHEN"}}, cond...)
	expr = append(expr, token{k: tkWord, text: "THEN", upper: "THEN"}, token{k: tkNumber, text: "1"},
		token{k: tkWord, text: "ELSE", upper: "ELSE"}, token{k: tkNumber, text: "0"}, token{k: tkWord, text: "END", upper: "END"})
	v, e := s.eval(ctx, expr, vars)
	if e != nil {
		return false, e
	}
	n, _ := asInt(v)
	return n == 1, nil
}

// runSQL translates one statement and runs it on SQLite, streaming a result
// set when it returns columns.
func (s *session) runSQL(ctx context.Context, r *resp, st []token, vars map[string]any, inProc bool) *sqlError {
	st = optionalKeywords(st)
	s.catalogCols = nil // a catalog view the statement reads sets it in translate
	defer func() { s.catalogCols = nil }()
	if s.doomed && startsImplicitTran(st) && st[0].upper != "SELECT" {
		return errDoomed()
	}
	switch st[0].upper {
	case "INSERT", "UPDATE", "DELETE":
		stmt, ret, ok, e := outputClause(st)
		if e != nil {
			return e
		}
		if ok {
			q, args, e := s.translate(stmt, vars)
			if e != nil {
				return e
			}
			rq, rargs, e := s.translate(ret, vars)
			if e != nil {
				return e
			}
			return s.query(ctx, r, q+" RETURNING "+rq, append(args, rargs...), inProc)
		}
	}
	q, args, e := s.translate(st, vars)
	if e != nil {
		return e
	}
	head := st[0].upper
	var curcmd uint16
	switch head {
	case "SELECT", "WITH":
		curcmd = cmdSelect
	case "INSERT":
		curcmd = cmdInsert
	case "UPDATE":
		curcmd = cmdUpdate
	case "DELETE":
		curcmd = cmdDelete
	}
	if curcmd == cmdSelect && !hasWord(st, "INTO") {
		s.colHints = selectItemTypes(st, vars)
		defer func() { s.colHints = nil }()
		return s.query(ctx, r, q, args, inProc)
	}
	res, err := s.sc.ExecContext(ctx, q, args...)
	if err != nil {
		return mapSQLiteErr(err, s)
	}
	n, _ := res.RowsAffected()
	s.rowcount = n
	s.stmtDone(r, inProc, curcmd, n, curcmd != 0)
	return nil
}

// selectItemTypes types the select-list items whose SQL Server type SQLite's result loses:
// a lone variable in a FROM-less SELECT ("SELECT @b, @g AS id": a bit comes back as an
// integer, a uniqueidentifier as text), and a CAST or CONVERT ("SELECT CAST(x AS
// DECIMAL(18,4)) AS d": SQL Server types the column as the target type; SQLite has no
// declared type for an expression). Other items get kUnknown (typed from their values); a
// list with * gets no hints, its columns' positions being unknown.
func selectItemTypes(st []token, vars map[string]any) []sqlType {
	if len(st) < 2 || st[0].upper != "SELECT" {
		return nil
	}
	fromless := !hasWord(st, "FROM")
	var hints []sqlType
	item := []token{}
	star := false
	flush := func() {
		var t sqlType
		if ct, ok := castItemType(item); ok {
			t = ct
		} else if fromless && len(item) >= 1 && item[0].k == tkVar && (len(item) == 1 || len(item) == 2 && item[1].k != tkOp ||
			len(item) == 3 && item[1].upper == "AS") {
			switch vars[strings.ToLower(item[0].text)].(type) {
			case bool:
				t = sqlType{k: kBit}
			case guidValue:
				t = sqlType{k: kGUID}
			}
		}
		hints = append(hints, t)
		item = item[:0]
	}
	depth := 0
loop:
	for _, t := range st[1:] {
		switch {
		case t.k == tkSemi:
			continue
		case t.text == "(":
			depth++
		case t.text == ")":
			depth--
		case depth == 0 && t.text == ",":
			flush()
			continue
		case depth == 0 && t.text == "*" && (len(item) == 0 || item[len(item)-1].text == "."):
			star = true
		case depth == 0 && selectListEnd[t.upper]:
			break loop
		}
		item = append(item, t)
	}
	flush()
	if star {
		return nil
	}
	return hints
}

// selectListEnd are the words that end a SELECT's list of items.
var selectListEnd = map[string]bool{"FROM": true, "WHERE": true, "GROUP": true, "HAVING": true, "ORDER": true,
	"UNION": true, "EXCEPT": true, "INTERSECT": true, "OPTION": true, "FOR": true}

// castItemType is the target type of a select-list item that is one CAST, TRY_CAST, CONVERT
// or TRY_CONVERT, with or without an alias.
func castItemType(item []token) (sqlType, bool) {
	if len(item) < 4 || item[1].text != "(" {
		return sqlType{}, false
	}
	end := matchParen(item, 1)
	if end < 0 {
		return sqlType{}, false
	}
	switch rest := item[end+1:]; {
	case len(rest) == 0, len(rest) == 1 && rest[0].upper != "AS", len(rest) == 2 && rest[0].upper == "AS":
	default:
		return sqlType{}, false
	}
	inner := item[2:end]
	var ts []token
	switch item[0].upper {
	case "CAST", "TRY_CAST":
		depth := 0
		for k, t := range inner {
			switch {
			case t.text == "(":
				depth++
			case t.text == ")":
				depth--
			case depth == 0 && t.upper == "AS":
				ts = inner[k+1:]
			}
		}
	case "CONVERT", "TRY_CONVERT":
		if args := splitArgs(inner); len(args) >= 2 {
			ts = args[0]
		}
	}
	return typeOfTokens(ts)
}

// optionalKeywords spells out what T-SQL lets a statement leave out and SQLite does not:
// INSERT [INTO] t ..., DELETE [FROM] t WHERE ... (ORMs and hand-written scripts send both).
func optionalKeywords(st []token) []token {
	if len(st) < 2 {
		return st
	}
	insert := func(word string) []token {
		out := make([]token, 0, len(st)+1)
		out = append(out, st[0], token{k: tkWord, text: word, upper: word, space: true, pos: st[1].pos})
		return append(out, st[1:]...)
	}
	switch {
	case st[0].upper == "INSERT" && st[1].upper != "INTO" && (st[1].k == tkWord || st[1].k == tkQIdent || st[1].k == tkVar):
		return insert("INTO")
	case st[0].upper == "DELETE" && st[1].upper != "FROM" && st[1].upper != "TOP" && !hasWord(st[1:], "FROM") &&
		(st[1].k == tkWord || st[1].k == tkQIdent || st[1].k == tkVar):
		return insert("FROM")
	}
	return st
}

var identRE = regexp.MustCompile(`^[A-Za-z_#@$][A-Za-z0-9_#@$]*$`)

func (s *session) query(ctx context.Context, r *resp, q string, args []any, inProc bool) *sqlError {
	rs, e := s.collect(ctx, q, args)
	if e != nil {
		return e
	}
	if n := s.opts.rowcountLimit; n > 0 && int64(len(rs.rows)) > n {
		rs.rows = rs.rows[:n] // SET ROWCOUNT n stops a SELECT after n rows
	}
	if e := rs.emit(r, rs.rows); e != nil {
		return e
	}
	s.rowcount = int64(len(rs.rows))
	s.stmtDone(r, inProc, cmdSelect, int64(len(rs.rows)), true)
	return nil
}

// resultSet is a query's columns and rows as SQLite returned them.
type resultSet struct {
	cols  []tds.Column
	types []sqlType
	rows  [][]any
}

// collect runs a query and reads every row, typing the columns from the
// declared types or, for expressions, from the values.
func (s *session) collect(ctx context.Context, q string, args []any) (*resultSet, *sqlError) {
	rows, err := s.sc.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, mapSQLiteErr(err, s)
	}
	defer rows.Close()
	cts, err := rows.ColumnTypes()
	if err != nil {
		return nil, mapSQLiteErr(err, s)
	}
	var data [][]any
	for rows.Next() {
		vals := make([]any, len(cts))
		ptrs := make([]any, len(cts))
		for j := range vals {
			ptrs[j] = &vals[j]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, mapSQLiteErr(err, s)
		}
		data = append(data, vals)
	}
	if err := rows.Err(); err != nil {
		return nil, mapSQLiteErr(err, s)
	}
	rs := &resultSet{cols: make([]tds.Column, len(cts)), types: make([]sqlType, len(cts)), rows: data}
	for j, ct := range cts {
		t, ok := fromDecl(ct.DatabaseTypeName())
		if !ok && j < len(s.colHints) && s.colHints[j].k != kUnknown {
			t, ok = s.colHints[j], true
		}
		if !ok {
			t, ok = s.catalogCols[strings.ToLower(ct.Name())]
		}
		if !ok {
			colVals := make([]any, len(data))
			for k := range data {
				colVals[k] = data[k][j]
			}
			t = inferType(colVals)
		}
		rs.types[j] = t
		name := ct.Name()
		if !identRE.MatchString(name) {
			name = "" // unnamed expression column, as SQL Server reports it
		}
		rs.cols[j] = tds.Column{Flags: tds.ColNullable | 0x0008, Type: t.typeInfo(), Name: name}
	}
	return rs, nil
}

// emit writes COLMETADATA and the given rows (a subset of rs.rows for a
// cursor fetch).
func (rs *resultSet) emit(r *resp, rows [][]any) *sqlError {
	b := tds.ColMetadata{Columns: rs.cols}.AppendColMetadata(nil)
	for _, row := range rows {
		out := make([]any, len(row))
		for j := range row {
			v, e := wireValue(rs.types[j], row[j])
			if e != nil {
				return e
			}
			out[j] = v
		}
		var err error
		if b, err = tds.AppendRow(b, rs.cols, out); err != nil {
			return errf(245, 1, 16, "Conversion failed: "+err.Error())
		}
	}
	r.tok(b)
	return nil
}

var constraintWords = map[string]bool{"CONSTRAINT": true, "PRIMARY": true, "UNIQUE": true, "FOREIGN": true, "CHECK": true, "INDEX": true}
var colConstraintStop = map[string]bool{"NOT": true, "NULL": true, "PRIMARY": true, "UNIQUE": true, "CHECK": true,
	"REFERENCES": true, "CONSTRAINT": true, "IDENTITY": true, "COLLATE": true, "DEFAULT": true}

// createTable rewrites CREATE TABLE: declared types become the SQLite
// spellings in types.go, IDENTITY becomes an INTEGER PRIMARY KEY rowid
// alias, #name becomes a TEMP table private to the session.
func (s *session) createTable(ctx context.Context, r *resp, st []token, inProc bool) *sqlError {
	j := 2
	nameToks, j := qualifiedName(st, j)
	if len(nameToks) == 0 || j >= len(st) || st[j].text != "(" {
		return syntaxErr(joinTokens(st[min(j, len(st)-1):]))
	}
	name := nameToks[len(nameToks)-1]
	closeIdx := matchParen(st, j)
	if closeIdx < 0 {
		return errf(102, 1, 15, "Incorrect syntax near '"+joinTokens(st[len(st)-1:])+"'.")
	}
	defs := splitArgs(st[j+1 : closeIdx])
	hasPK := false
	for _, d := range defs {
		if hasWord(d, "PRIMARY") {
			hasPK = true
		}
	}
	var out []string
	for n, d := range defs {
		if len(d) == 0 {
			return syntaxErr(")")
		}
		if d[0].k == tkWord && constraintWords[d[0].upper] {
			q, _, e := s.translate(dropWords(d, "CLUSTERED", "NONCLUSTERED"), nil)
			if e != nil {
				return e
			}
			out = append(out, q)
			continue
		}
		col, ok := d[0].name()
		if !ok || len(d) < 2 {
			return syntaxErr(joinTokens(d))
		}
		tn, ok := d[1].name()
		if !ok {
			return syntaxErr(joinTokens(d[1:]))
		}
		k := 2
		var targs []string
		if k < len(d) && d[k].text == "(" {
			end := matchParen(d, k)
			if end < 0 {
				return syntaxErr(joinTokens(d[k:]))
			}
			for _, a := range splitArgs(d[k+1 : end]) {
				targs = append(targs, joinTokens(a))
			}
			k = end + 1
		}
		t, ok := parseSQLType(tn, targs)
		if !ok {
			return errf(2715, 6, 16, fmt.Sprintf("Column, parameter, or variable #%d: Cannot find data type %s.", n+1, tn))
		}
		decl := t.sqliteDecl()
		identity := false
		rest := d[k:]
		var extra []string
		if idx := wordIndex(rest, "IDENTITY"); idx >= 0 {
			end := idx
			if idx+1 < len(rest) && rest[idx+1].text == "(" {
				end = matchParen(rest, idx+1)
			}
			rest = append(append([]token{}, rest[:idx]...), rest[end+1:]...)
			decl = "INTEGER" // rowid alias: SQLite's auto-numbering
			identity = true
			if !hasPK {
				// AUTOINCREMENT: like IDENTITY, numbers are never reused.
				extra = append(extra, "PRIMARY KEY AUTOINCREMENT")
			}
		}
		rest = dropWords(rest, "CLUSTERED", "NONCLUSTERED", "ROWGUIDCOL", "SPARSE")
		if idx := wordIndex(rest, "COLLATE"); idx >= 0 && idx+1 < len(rest) {
			rest = append(append([]token{}, rest[:idx]...), rest[idx+2:]...)
		}
		restSQL, e := s.colConstraints(rest)
		if e != nil {
			return e
		}
		if identity && hasPK && strings.Contains(strings.ToUpper(restSQL), "PRIMARY KEY") {
			restSQL = regexp.MustCompile(`(?i)PRIMARY\s+KEY`).ReplaceAllString(restSQL, "PRIMARY KEY AUTOINCREMENT")
		}
		out = append(out, strings.TrimSpace(quoteIdent(col)+" "+decl+" "+restSQL+" "+strings.Join(extra, " ")))
	}
	create := "CREATE TABLE "
	if strings.HasPrefix(name, "#") {
		create = "CREATE TEMP TABLE "
	}
	q := create + quoteIdent(name) + " (" + strings.Join(out, ", ") + ")"
	if _, err := s.sc.ExecContext(ctx, q); err != nil {
		return mapSQLiteErr(err, s)
	}
	s.stmtDone(r, inProc, 0, 0, false)
	return nil
}

// colConstraints translates column constraints, wrapping DEFAULT
// expressions in parentheses as SQLite requires for non-literals.
func (s *session) colConstraints(rest []token) (string, *sqlError) {
	var parts []string
	for k := 0; k < len(rest); {
		if rest[k].upper == "DEFAULT" {
			end := k + 1
			depth := 0
			for end < len(rest) {
				t := rest[end]
				if t.text == "(" {
					depth++
				} else if t.text == ")" {
					depth--
				} else if depth == 0 && t.k == tkWord && colConstraintStop[t.upper] {
					break
				}
				end++
			}
			q, _, e := s.translate(rest[k+1:end], nil)
			if e != nil {
				return "", e
			}
			parts = append(parts, "DEFAULT ("+q+")")
			k = end
			continue
		}
		end := k + 1
		for end < len(rest) && rest[end].upper != "DEFAULT" {
			end++
		}
		q, _, e := s.translate(rest[k:end], nil)
		if e != nil {
			return "", e
		}
		parts = append(parts, q)
		k = end
	}
	return strings.Join(parts, " "), nil
}

func (s *session) dropTable(ctx context.Context, r *resp, st []token, inProc bool) *sqlError {
	j := 2
	ifExists := false
	if len(st) > 3 && st[2].upper == "IF" && st[3].upper == "EXISTS" {
		ifExists, j = true, 4
	}
	for _, part := range splitArgs(st[j:]) {
		nameToks, _ := qualifiedName(part, 0)
		if len(nameToks) == 0 {
			return syntaxErr(joinTokens(part))
		}
		name := nameToks[len(nameToks)-1]
		q := "DROP TABLE " + quoteIdent(name)
		if ifExists {
			q = "DROP TABLE IF EXISTS " + quoteIdent(name)
		}
		if _, err := s.sc.ExecContext(ctx, q); err != nil {
			if strings.Contains(err.Error(), "no such table") {
				return errf(3701, 5, 11, fmt.Sprintf("Cannot drop the table '%s', because it does not exist or you do not have permission.", name))
			}
			return mapSQLiteErr(err, s)
		}
	}
	s.stmtDone(r, inProc, 0, 0, false)
	return nil
}

// qualifiedName reads [db.][schema.]name from st[j:] and returns its parts
// and the index after it.
func qualifiedName(st []token, j int) ([]string, int) {
	var parts []string
	for j < len(st) {
		n, ok := st[j].name()
		if !ok {
			if st[j].text == "." { // db..name
				j++
				continue
			}
			break
		}
		parts = append(parts, n)
		j++
		if j < len(st) && st[j].text == "." {
			j++
			continue
		}
		break
	}
	return parts, j
}

func matchParen(ts []token, open int) int {
	depth := 0
	for j := open; j < len(ts); j++ {
		if ts[j].k != tkOp {
			continue
		}
		switch ts[j].text {
		case "(":
			depth++
		case ")":
			depth--
			if depth == 0 {
				return j
			}
		}
	}
	return -1
}

func wordIndex(ts []token, w string) int {
	for j, t := range ts {
		if t.k == tkWord && t.upper == w {
			return j
		}
	}
	return -1
}

func dropWords(ts []token, ws ...string) []token {
	var out []token
	for _, t := range ts {
		drop := false
		for _, w := range ws {
			if t.k == tkWord && t.upper == w {
				drop = true
			}
		}
		if !drop {
			out = append(out, t)
		}
	}
	return out
}

func quoteIdent(n string) string { return `"` + strings.ReplaceAll(n, `"`, `""`) + `"` }

func newGUID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0F | 0x40
	b[8] = b[8]&0x3F | 0x80
	return strings.ToUpper(fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:]))
}

// translate renders T-SQL tokens as SQLite SQL with positional arguments
// for variables. See the package doc for the supported spellings.
func (s *session) translate(ts []token, vars map[string]any) (string, []any, *sqlError) {
	var sb strings.Builder
	var args []any
	var limit []token
	emit := func(x string) {
		if sb.Len() > 0 {
			sb.WriteByte(' ')
		}
		sb.WriteString(x)
	}
	depth := 0
	for j := 0; j < len(ts); j++ {
		t := ts[j]
		next := func(k int) token {
			if j+k < len(ts) {
				return ts[j+k]
			}
			return token{k: tkSemi}
		}
		// qualifier handles a name that qualifies the next one: another database is attached
		// and named, "dbo." / "db.dbo." / "db.." qualifiers are dropped. False: t is not one.
		qualifier := func() (bool, *sqlError) {
			if db, skip, ok := s.otherDatabase(t, next(1), next(2), next(3)); ok {
				if e := s.attach(db); e != nil {
					return true, e
				}
				emit(quoteIdent(db) + ".")
				j += skip
				return true, nil
			}
			if next(1).text == "." && s.isQualifier(t.text, next(2)) {
				j++
				return true, nil
			}
			return false, nil
		}
		switch t.k {
		case tkString:
			emit("'" + strings.ReplaceAll(t.text, "'", "''") + "'")
		case tkQIdent:
			if done, e := qualifier(); e != nil {
				return "", nil, e
			} else if done {
				continue
			}
			emit(quoteIdent(t.text))
		case tkHex:
			h := t.text
			if len(h)%2 == 1 {
				h = "0" + h
			}
			emit("X'" + h + "'")
		case tkNumber:
			emit(t.text)
		case tkVar:
			v, ok := vars[strings.ToLower(t.text)]
			if !ok {
				return "", nil, errf(137, 2, 15, fmt.Sprintf("Must declare the scalar variable \"@%s\".", t.text))
			}
			if tv, isTable := v.(tableVar); isTable {
				emit("temp." + quoteIdent(tv.sqlName))
				continue
			}
			emit("?")
			args = append(args, bindValue(v))
		case tkSysVar:
			lit, e := s.sysVar(t.upper)
			if e != nil {
				return "", nil, e
			}
			emit(lit)
		case tkOp:
			switch t.text {
			case "(":
				depth++
			case ")":
				depth--
			}
			switch t.text {
			case "!<":
				emit(">=")
			case "!>":
				emit("<=")
			case "+":
				// T-SQL concatenates strings with +; SQLite would add them
				// as numbers. Next to a string literal it is concatenation.
				if (j > 0 && ts[j-1].k == tkString) || next(1).k == tkString {
					emit("||")
				} else {
					emit("+")
				}
			default:
				emit(t.text)
			}
		case tkSemi:
		case tkWord:
			if strings.HasPrefix(t.text, "#") {
				emit(quoteIdent(t.text))
				continue
			}
			if (t.upper == "SYS" || t.upper == "INFORMATION_SCHEMA") && next(1).text == "." {
				if view, ok := s.catalogView(t.upper, next(2).text); ok {
					emit(view)
					if a := next(3); a.k == tkSemi || a.k == tkOp || (a.k == tkWord && sqlClauseWords[a.upper]) {
						emit("AS " + quoteIdent(next(2).text)) // so tables.col still resolves
					}
					j += 2
					continue
				}
			}
			if done, e := qualifier(); e != nil {
				return "", nil, e
			} else if done {
				continue
			}
			if t.upper == "TOP" && depth == 0 && j > 0 && (ts[j-1].upper == "SELECT" || ts[j-1].upper == "DISTINCT") {
				if next(1).text == "(" {
					end := matchParen(ts, j+1)
					if end < 0 {
						return "", nil, syntaxErr("TOP")
					}
					limit = ts[j+2 : end]
					j = end
				} else {
					limit = ts[j+1 : j+2]
					j++
				}
				continue
			}
			if t.upper == "WITH" && next(1).text == "(" && j > 0 {
				// Table hints: WITH (NOLOCK) etc.
				end := matchParen(ts, j+1)
				if end > 0 {
					j = end
					continue
				}
			}
			if t.upper == "COLLATE" {
				j++
				continue
			}
			if next(1).text == "(" {
				if q, skip, ok, e := s.function(ts, j, vars, &args); ok || e != nil {
					if e != nil {
						return "", nil, e
					}
					emit(q)
					j += skip - 1
					continue
				}
			}
			switch t.upper {
			case "CURRENT_TIMESTAMP":
				emit("strftime('%Y-%m-%d %H:%M:%f','now','localtime')")
				continue
			case "NVARCHAR", "VARCHAR", "NCHAR", "CHAR":
				if next(1).text == "(" && strings.EqualFold(next(2).text, "MAX") {
					emit(t.text + "(-1)")
					j += 3
					continue
				}
			}
			emit(t.text)
		}
	}
	if limit != nil {
		q, a, e := s.translate(limit, vars)
		if e != nil {
			return "", nil, e
		}
		emit("LIMIT " + q)
		args = append(args, a...)
	}
	return sb.String(), args, nil
}

// sqlClauseWords end a FROM item: after them no alias was given.
var sqlClauseWords = map[string]bool{"WHERE": true, "ORDER": true, "GROUP": true, "HAVING": true, "JOIN": true,
	"INNER": true, "LEFT": true, "RIGHT": true, "FULL": true, "CROSS": true, "ON": true, "UNION": true,
	"EXCEPT": true, "INTERSECT": true, "WITH": true, "OPTION": true, "FOR": true}

// isQualifier reports whether name followed by '.' is a database or schema
// prefix to drop: dbo, sys-less schemas we know, configured databases,
// tempdb, or "db.." (empty schema).
// otherDatabase recognises a three-part name's database part, db.schema.name or db..name,
// naming a database other than the session's: its canonical name, and how many tokens after
// t the qualifier spans (the name follows). Catalog views (db.sys.x) stay the session's.
func (s *session) otherDatabase(t, dot1, mid, dot2 token) (string, int, bool) {
	if dot1.text != "." {
		return "", 0, false
	}
	db, ok := s.c.srv.store.canonical(t.text)
	if !ok || strings.EqualFold(db, s.db) {
		return "", 0, false
	}
	switch {
	case mid.text == ".":
		return db, 2, true // db..name
	case (mid.k == tkWord || mid.k == tkQIdent) && dot2.text == "." && mid.upper != "SYS" && mid.upper != "INFORMATION_SCHEMA":
		return db, 3, true // db.schema.name
	}
	return "", 0, false
}

func (s *session) isQualifier(name string, after token) bool {
	if after.text == "." {
		return true // db..name
	}
	if strings.EqualFold(name, "dbo") || strings.EqualFold(name, "tempdb") {
		return true
	}
	_, ok := s.c.srv.store.canonical(name)
	return ok && (after.k == tkWord || after.k == tkQIdent)
}

func (s *session) sysVar(name string) (string, *sqlError) {
	lit := func(v string) string { return "'" + strings.ReplaceAll(v, "'", "''") + "'" }
	switch name {
	case "SPID":
		return strconv.Itoa(int(s.c.spid)), nil
	case "TRANCOUNT":
		return strconv.Itoa(s.trancount), nil
	case "VERSION":
		return lit(versionString), nil
	case "SERVERNAME":
		return lit(s.c.srv.cfg.ServerName), nil
	case "SERVICENAME":
		return lit("MSSQLSERVER"), nil
	case "ROWCOUNT":
		return strconv.FormatInt(s.rowcount, 10), nil
	case "ERROR":
		return strconv.Itoa(int(s.lastError)), nil
	case "IDENTITY":
		return "last_insert_rowid()", nil
	case "LANGUAGE":
		return lit(s.opts.language), nil
	case "MAX_PRECISION":
		return "38", nil
	case "OPTIONS":
		return strconv.FormatUint(uint64(s.opts.flags), 10), nil
	case "LOCK_TIMEOUT":
		return strconv.FormatInt(s.opts.lockTimeout, 10), nil
	case "TEXTSIZE":
		return strconv.FormatInt(s.opts.textSize, 10), nil
	case "DATEFIRST":
		return strconv.Itoa(s.opts.dateFirst), nil
	case "FETCH_STATUS":
		return strconv.Itoa(s.fetchStatus), nil
	case "MICROSOFTVERSION":
		return "268436456", nil
	}
	return "", errf(137, 2, 15, fmt.Sprintf("Must declare the scalar variable \"@@%s\".", name))
}

// function rewrites T-SQL built-ins SQLite lacks or spells differently.
// It returns the SQL, how many tokens it consumed, and ok=false to leave
// the call as is.
func (s *session) function(ts []token, j int, vars map[string]any, args *[]any) (string, int, bool, *sqlError) {
	end := matchParen(ts, j+1)
	if end < 0 {
		return "", 0, false, nil
	}
	inner := ts[j+2 : end]
	n := end - j + 1
	lit := func(v string) string { return "'" + strings.ReplaceAll(v, "'", "''") + "'" }
	sub := func(tt []token) (string, *sqlError) {
		q, a, e := s.translate(tt, vars)
		*args = append(*args, a...)
		return q, e
	}
	switch ts[j].upper {
	case "DB_NAME":
		if len(inner) > 0 {
			q, e := sub(inner)
			return s.dbNameByID(q), n, true, e
		}
		return lit(s.db), n, true, nil
	case "DB_ID":
		if len(inner) > 0 {
			v, e := s.eval(context.Background(), inner, vars)
			if e != nil {
				return "", 0, false, e
			}
			if id := s.c.srv.store.id(fmt.Sprint(nz(v))); id > 0 {
				return strconv.Itoa(id), n, true, nil
			}
			return "NULL", n, true, nil
		}
		return strconv.Itoa(s.c.srv.store.id(s.db)), n, true, nil
	case "GETDATE", "SYSDATETIME", "SYSDATETIMEOFFSET":
		return "strftime('%Y-%m-%d %H:%M:%f','now','localtime')", n, true, nil
	case "GETUTCDATE", "SYSUTCDATETIME":
		return "strftime('%Y-%m-%d %H:%M:%f','now')", n, true, nil
	case "NEWID":
		return lit(newGUID()), n, true, nil
	case "SUSER_SNAME", "SUSER_NAME", "ORIGINAL_LOGIN":
		return lit(s.login), n, true, nil
	case "USER_NAME", "CURRENT_USER":
		return lit(s.userName()), n, true, nil
	case "SCHEMA_NAME":
		return lit("dbo"), n, true, nil
	case "HOST_NAME":
		return lit(s.hostName), n, true, nil
	case "APP_NAME":
		return lit(s.appName), n, true, nil
	case "CONTEXT_INFO":
		if s.contextInfo == nil {
			return "NULL", n, true, nil
		}
		return sqlLiteral(s.contextInfo), n, true, nil
	case "SESSION_CONTEXT":
		key, e := s.eval(context.Background(), inner, vars)
		if e != nil {
			return "", 0, false, e
		}
		k, _ := key.(string)
		return sqlLiteral(s.sessCtx[k].val), n, true, nil
	case "XACT_STATE":
		if s.doomed {
			return "-1", n, true, nil
		}
		if s.trancount > 0 {
			return "1", n, true, nil
		}
		return "0", n, true, nil
	case "ERROR_NUMBER", "ERROR_SEVERITY", "ERROR_STATE", "ERROR_LINE", "ERROR_MESSAGE", "ERROR_PROCEDURE":
		v, _ := s.errorFunction(ts[j].upper)
		return v, n, true, nil
	case "CURSOR_STATUS":
		a := splitArgs(inner)
		if len(a) != 2 {
			return "", 0, false, syntaxErr(")")
		}
		name, e := s.eval(context.Background(), a[1], vars)
		if e != nil {
			return "", 0, false, e
		}
		c := s.cursors[strings.ToLower(fmt.Sprint(nz(name)))]
		switch {
		case c == nil:
			return "-3", n, true, nil
		case c.rs == nil:
			return "-1", n, true, nil
		case len(c.rs.rows) == 0:
			return "0", n, true, nil
		}
		return "1", n, true, nil
	case "APPLOCK_MODE":
		a := splitArgs(inner)
		if len(a) != 3 {
			return "", 0, false, syntaxErr(")")
		}
		res, e1 := s.eval(context.Background(), a[1], vars)
		own, e2 := s.eval(context.Background(), a[2], vars)
		if e := firstErr(e1, e2); e != nil {
			return "", 0, false, e
		}
		tran, _ := lockOwnerParam(own, true)
		return lit(s.c.srv.locks.mode(s.lockKey(fmt.Sprint(nz(res))), lockOwner{s.c.spid, tran})), n, true, nil
	case "SESSIONPROPERTY":
		if len(inner) == 1 && inner[0].k == tkString {
			if v, ok := s.opts.sessionProperty(inner[0].text).(int64); ok {
				return strconv.FormatInt(v, 10), n, true, nil
			}
		}
		return "NULL", n, true, nil
	case "SCOPE_IDENTITY", "IDENT_CURRENT":
		return "last_insert_rowid()", n, true, nil
	case "SERVERPROPERTY":
		if len(inner) == 1 && inner[0].k == tkString {
			switch strings.ToLower(inner[0].text) {
			case "productversion":
				return lit("16.0.1000.6"), n, true, nil
			case "edition":
				return lit("Developer Edition (64-bit)"), n, true, nil
			case "servername", "machinename":
				return lit(s.c.srv.cfg.ServerName), n, true, nil
			case "engineedition":
				return "3", n, true, nil
			case "productmajorversion": // nvarchar(128), as SQL Server 2016 and later report them
				return lit("16"), n, true, nil
			case "productminorversion":
				return lit("0"), n, true, nil
			case "productbuild":
				return lit("1000"), n, true, nil
			case "productlevel":
				return lit("RTM"), n, true, nil
			case "collation":
				return lit("SQL_Latin1_General_CP1_CI_AS"), n, true, nil
			case "lcid":
				return "1033", n, true, nil
			case "ishadrenabled", "isclustered", "isintegratedsecurityonly", "issingleuser", "isfulltextinstalled":
				return "0", n, true, nil // int: a stand-alone default instance with SQL logins
			}
		}
		return "NULL", n, true, nil
	case "OBJECT_ID":
		args2 := splitArgs(inner)
		if len(args2) == 0 {
			return "", 0, false, syntaxErr(")")
		}
		q, e := sub(args2[0])
		if e != nil {
			return "", 0, false, e
		}
		// Strip db./schema. prefixes inside the name at run time.
		name := "replace(replace(replace(" + q + ",'tempdb..',''),'dbo.',''),'[','')"
		name = "replace(" + name + ",']','')"
		// The object_id sys.tables reports: the rowid in sqlite_master (negative for temp tables).
		return "(SELECT id FROM (SELECT rowid AS id, name FROM sqlite_master WHERE type IN ('table', 'view') UNION ALL SELECT -rowid, name FROM sqlite_temp_master WHERE type='table') WHERE name = " + name + " COLLATE NOCASE LIMIT 1)", n, true, nil
	case "LEN":
		q, e := sub(inner)
		return "length(rtrim(" + q + "))", n, true, e
	case "DATALENGTH":
		q, e := sub(inner)
		return "length(CAST(" + q + " AS BLOB))", n, true, e
	case "ISNULL":
		q, e := sub(inner)
		return "ifnull(" + q + ")", n, true, e
	case "SUBSTRING":
		q, e := sub(inner)
		return "substr(" + q + ")", n, true, e
	case "CAST", "TRY_CAST":
		as := -1
		depth := 0
		for k, t := range inner {
			if t.text == "(" {
				depth++
			} else if t.text == ")" {
				depth--
			} else if depth == 0 && t.upper == "AS" {
				as = k
			}
		}
		if as < 0 {
			return "", 0, false, syntaxErr(")")
		}
		q, e := sub(inner[:as])
		if e != nil {
			return "", 0, false, e
		}
		return "CAST(" + q + " AS " + castTypeOf(inner[as+1:]) + ")", n, true, nil
	case "CONVERT", "TRY_CONVERT":
		parts := splitArgs(inner)
		if len(parts) < 2 {
			return "", 0, false, syntaxErr(")")
		}
		q, e := sub(parts[1])
		if e != nil {
			return "", 0, false, e
		}
		return "CAST(" + q + " AS " + castTypeOf(parts[0]) + ")", n, true, nil
	}
	return "", 0, false, nil
}

func castTypeOf(ts []token) string {
	t, ok := typeOfTokens(ts)
	if !ok {
		return "TEXT"
	}
	return t.castType()
}

// typeOfTokens parses a type name with its arguments ("DECIMAL ( 18 , 4 )").
func typeOfTokens(ts []token) (sqlType, bool) {
	if len(ts) == 0 {
		return sqlType{}, false
	}
	name, _ := ts[0].name()
	var args []string
	if len(ts) > 2 && ts[1].text == "(" {
		for _, a := range splitArgs(ts[2 : len(ts)-1]) {
			args = append(args, joinTokens(a))
		}
	}
	return parseSQLType(name, args)
}

// mapSQLiteErr turns SQLite's error text into the SQL Server error a
// driver would see for the same mistake.
func mapSQLiteErr(err error, s *session) *sqlError {
	if err == nil {
		return nil
	}
	msg := err.Error()
	if i := strings.Index(msg, "SQL logic error: "); i >= 0 {
		msg = msg[i+len("SQL logic error: "):]
	}
	msg = strings.TrimSuffix(msg, " (1)")
	switch {
	case strings.Contains(msg, "no such table: "):
		name := after(msg, "no such table: ")
		return errf(208, 1, 16, fmt.Sprintf("Invalid object name '%s'.", strings.TrimPrefix(name, "main.")))
	case strings.Contains(msg, "no such column: "):
		return errf(207, 1, 16, fmt.Sprintf("Invalid column name '%s'.", after(msg, "no such column: ")))
	case strings.Contains(msg, "no such function: "):
		return errf(195, 10, 15, fmt.Sprintf("'%s' is not a recognized built-in function name.", after(msg, "no such function: ")))
	case strings.Contains(msg, "already exists"):
		name := strings.Trim(between(msg, "table ", " already exists"), `"`)
		return errf(2714, 6, 16, fmt.Sprintf("There is already an object named '%s' in the database.", name))
	case strings.Contains(msg, "UNIQUE constraint failed") || strings.Contains(msg, "PRIMARY KEY"):
		col := after(msg, "failed: ")
		tbl, _, _ := strings.Cut(col, ".")
		return errf(2627, 1, 14, fmt.Sprintf("Violation of PRIMARY KEY constraint 'PK_%s'. Cannot insert duplicate key in object 'dbo.%s'.", tbl, tbl))
	case strings.Contains(msg, "NOT NULL constraint failed: "):
		tc := after(msg, "NOT NULL constraint failed: ")
		tbl, col, _ := strings.Cut(tc, ".")
		return errf(515, 2, 16, fmt.Sprintf("Cannot insert the value NULL into column '%s', table '%s.dbo.%s'; column does not allow nulls. INSERT fails.", col, s.db, tbl))
	case strings.Contains(msg, "CHECK constraint failed"):
		return errf(547, 0, 16, "The statement conflicted with the CHECK constraint. "+msg)
	case strings.Contains(msg, "FOREIGN KEY constraint failed"):
		return errf(547, 0, 16, "The statement conflicted with the FOREIGN KEY constraint.")
	case strings.Contains(msg, "syntax error"):
		near := between(msg, `near "`, `"`)
		if near == "" {
			near = "end of statement"
		}
		return errf(102, 1, 15, fmt.Sprintf("Incorrect syntax near '%s'.", near))
	case strings.Contains(msg, "incomplete input"):
		return errf(102, 1, 15, "Incorrect syntax near the end of the batch.")
	case strings.Contains(msg, "database is locked") || strings.Contains(msg, "SQLITE_BUSY"):
		return errf(1222, 56, 16, "Lock request time out period exceeded.")
	case strings.Contains(msg, "values for") && strings.Contains(msg, "columns"):
		return errf(110, 1, 15, "There are fewer columns in the INSERT statement than values specified in the VALUES clause. The number of values in the VALUES clause must match the number of columns specified in the INSERT statement.")
	case strings.Contains(msg, "interrupted") || strings.Contains(msg, "context canceled"):
		return errf(3617, 1, 25, "The query was cancelled.")
	}
	return errf(50000, 1, 16, "SQLite: "+msg)
}

func after(s, sep string) string {
	_, a, _ := strings.Cut(s, sep)
	a, _, _ = strings.Cut(a, " ")
	return strings.Trim(a, `"'`)
}

func between(s, a, b string) string {
	_, x, ok := strings.Cut(s, a)
	if !ok {
		return ""
	}
	x, _, _ = strings.Cut(x, b)
	return x
}

var _ = sql.ErrNoRows

// procCallFirst reports whether a batch's first statement is a procedure call without EXEC
// (SQL Server runs "name args" as EXEC when it opens the batch, as FreeTDS's ODBC driver
// sends its catalog calls): the statement starts with a name that is no statement keyword,
// of a system procedure (sp_…) or of a procedure that exists.
func (s *session) procCallFirst(ctx context.Context, st []token) bool {
	if len(st) == 0 || st[0].k != tkWord || statementStarts[st[0].upper] {
		return false
	}
	parts, j := qualifiedName(st, 0)
	if len(parts) == 0 || (j < len(st) && st[j].k == tkOp && st[j].text != "-") {
		return false // "name = …", "name(…)", "name.…": not a call
	}
	name := strings.ToLower(parts[len(parts)-1])
	return strings.HasPrefix(name, "sp_") || s.procExists(ctx, name)
}
