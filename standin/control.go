package standin

import (
	"context"
	"fmt"
	"strings"
)

// Control flow: a batch's statements become a tree of blocks (BEGIN ...
// END), IF/ELSE, WHILE and TRY/CATCH, which the executor walks. Errors
// travel up as *sqlError until a TRY catches them or the batch ends.

type nodeKind uint8

const (
	nStmt nodeKind = iota
	nBlock
	nIf
	nWhile
	nTry
)

type node struct {
	kind        nodeKind
	st          []token // the statement, or the IF/WHILE condition
	body, catch []*node // BEGIN/TRY body, CATCH body
	then, els   *node   // IF branches; WHILE body in then
}

// flow says how a statement left its block.
type flow uint8

const (
	flowNext flow = iota
	flowReturn
	flowBreak
	flowContinue
)

type nodeParser struct {
	stmts [][]token
	i     int
}

func parseNodes(stmts [][]token) ([]*node, *sqlError) {
	p := &nodeParser{stmts: stmts}
	var out []*node
	for p.i < len(p.stmts) {
		n, e := p.one()
		if e != nil {
			return nil, e
		}
		out = append(out, n)
	}
	return out, nil
}

// isWords reports whether the statement is exactly these words.
func isWords(st []token, ws ...string) bool {
	if len(st) != len(ws) {
		return false
	}
	for i, w := range ws {
		if st[i].k != tkWord || st[i].upper != w {
			return false
		}
	}
	return true
}

func errEndOfBatch() *sqlError {
	return errf(102, 1, 15, "Incorrect syntax near the end of the batch.")
}

func (p *nodeParser) one() (*node, *sqlError) {
	st := p.stmts[p.i]
	switch st[0].upper {
	case "BEGIN":
		if len(st) == 1 {
			p.i++
			body, e := p.until("END")
			return &node{kind: nBlock, body: body}, e
		}
		if isWords(st, "BEGIN", "TRY") {
			p.i++
			body, e := p.until("END", "TRY")
			if e != nil {
				return nil, e
			}
			if p.i >= len(p.stmts) || !isWords(p.stmts[p.i], "BEGIN", "CATCH") {
				return nil, syntaxErr("END TRY")
			}
			p.i++
			catch, e := p.until("END", "CATCH")
			return &node{kind: nTry, body: body, catch: catch}, e
		}
	case "IF", "WHILE":
		if len(st) < 2 {
			return nil, syntaxErr(st[0].text)
		}
		p.i++
		if p.i >= len(p.stmts) {
			return nil, errEndOfBatch()
		}
		body, e := p.one()
		if e != nil {
			return nil, e
		}
		n := &node{kind: nIf, st: st[1:], then: body}
		if st[0].upper == "WHILE" {
			n.kind = nWhile
			return n, nil
		}
		if p.i < len(p.stmts) && p.stmts[p.i][0].upper == "ELSE" {
			if len(p.stmts[p.i]) == 1 {
				p.i++
			} else {
				p.stmts[p.i] = p.stmts[p.i][1:] // ELSE <statement> in one piece
			}
			if p.i >= len(p.stmts) {
				return nil, errEndOfBatch()
			}
			if n.els, e = p.one(); e != nil {
				return nil, e
			}
		}
		return n, nil
	case "ELSE", "END":
		return nil, syntaxErr(st[0].text)
	}
	p.i++
	return &node{kind: nStmt, st: st}, nil
}

// until parses statements up to the one made of exactly words (consumed).
func (p *nodeParser) until(words ...string) ([]*node, *sqlError) {
	var out []*node
	for p.i < len(p.stmts) {
		if isWords(p.stmts[p.i], words...) {
			p.i++
			return out, nil
		}
		n, e := p.one()
		if e != nil {
			return nil, e
		}
		out = append(out, n)
	}
	return nil, errEndOfBatch()
}

func (s *session) runNodes(ctx context.Context, r *resp, nodes []*node, vars map[string]any, inProc bool) (flow, *sqlError) {
	for _, n := range nodes {
		if ctx.Err() != nil {
			return flowReturn, nil
		}
		f, e := s.runNode(ctx, r, n, vars, inProc)
		if e != nil || f != flowNext {
			return f, e
		}
	}
	return flowNext, nil
}

func (s *session) runNode(ctx context.Context, r *resp, n *node, vars map[string]any, inProc bool) (flow, *sqlError) {
	switch n.kind {
	case nBlock:
		return s.runNodes(ctx, r, n.body, vars, inProc)
	case nIf:
		cond, e := s.evalCond(ctx, n.st, vars)
		if e != nil {
			return flowNext, e
		}
		if cond {
			return s.runNode(ctx, r, n.then, vars, inProc)
		}
		if n.els != nil {
			return s.runNode(ctx, r, n.els, vars, inProc)
		}
		return flowNext, nil
	case nWhile:
		for ctx.Err() == nil {
			cond, e := s.evalCond(ctx, n.st, vars)
			if e != nil || !cond {
				return flowNext, e
			}
			f, e := s.runNode(ctx, r, n.then, vars, inProc)
			if e != nil || f == flowReturn {
				return f, e
			}
			if f == flowBreak {
				break
			}
		}
		return flowNext, nil
	case nTry:
		f, e := s.runNodes(ctx, r, n.body, vars, inProc)
		if e == nil || !catchable(e) || ctx.Err() != nil {
			return f, e
		}
		// XACT_ABORT ON inside TRY dooms the transaction instead of
		// rolling it back: only a ROLLBACK can end it (XACT_STATE() -1).
		if s.trancount > 0 && s.opts.has(optXactAbort) {
			s.doomed = true
		}
		prev := s.caught
		s.caught = e
		s.lastError = e.number
		f, e = s.runNodes(ctx, r, n.catch, vars, inProc)
		s.caught = prev
		return f, e
	}
	f, e := s.runStmt(ctx, r, n.st, vars, inProc)
	if e == nil {
		s.lastError = 0
	}
	return f, e
}

// catchable: TRY/CATCH catches errors of severity 11 to 19 that are not
// compile errors (syntax, severity 15) or name resolution in the same
// scope (208, 207), as SQL Server documents.
func catchable(e *sqlError) bool {
	return e.class > 10 && e.class < 20 && e.class != 15 && e.number != 208 && e.number != 207
}

// errorFunction answers ERROR_NUMBER() and friends inside a CATCH block;
// outside one they are NULL.
func (s *session) errorFunction(name string) (string, bool) {
	e := s.caught
	switch name {
	case "ERROR_NUMBER", "ERROR_SEVERITY", "ERROR_STATE", "ERROR_LINE", "ERROR_MESSAGE", "ERROR_PROCEDURE":
	default:
		return "", false
	}
	if e == nil {
		return "NULL", true
	}
	switch name {
	case "ERROR_NUMBER":
		return fmt.Sprint(e.number), true
	case "ERROR_SEVERITY":
		return fmt.Sprint(e.class), true
	case "ERROR_STATE":
		return fmt.Sprint(e.state), true
	case "ERROR_LINE":
		return "1", true
	case "ERROR_PROCEDURE":
		if e.proc == "" {
			return "NULL", true
		}
		return sqlLiteral(e.proc), true
	}
	return sqlLiteral(e.msg), true
}

// throw is THROW [number, message, state]; without arguments it rethrows
// the error being handled.
func (s *session) throw(ctx context.Context, st []token, vars map[string]any) *sqlError {
	if len(st) == 1 {
		if s.caught == nil {
			return errf(10704, 1, 15, "To rethrow an error, a THROW statement must be used inside a CATCH block. Insert the THROW statement inside a CATCH block, or add error parameters to the THROW statement.")
		}
		return s.caught
	}
	args := splitArgs(st[1:])
	if len(args) != 3 {
		return syntaxErr("THROW")
	}
	num, e1 := s.eval(ctx, args[0], vars)
	msg, e2 := s.eval(ctx, args[1], vars)
	state, e3 := s.eval(ctx, args[2], vars)
	if e := firstErr(e1, e2, e3); e != nil {
		return e
	}
	n, _ := asInt(num)
	if n < 50000 {
		return errf(35100, 10, 16, fmt.Sprintf("Error number %d in the THROW statement is outside the valid range. Specify an error number in the valid range of 50000 to 2147483647.", n))
	}
	stv, _ := asInt(state)
	return errf(int32(n), uint8(stv), 16, fmt.Sprint(nz(msg)))
}

// endOfBatch: a transaction doomed by XACT_ABORT inside TRY that is still
// open when the outermost batch ends is rolled back with error 3998.
func (s *session) endOfBatch(ctx context.Context, r *resp) {
	if !s.doomed {
		return
	}
	s.doomed = false
	if s.trancount > 0 {
		r.sqlErr(errf(3998, 1, 16, "Uncommittable transaction is detected at the end of the batch. The transaction is rolled back."))
		s.rollbackAll(ctx, r)
	}
}

// tableVar is the value of a DECLARE @t TABLE variable: a session TEMP
// table that lives until its batch ends.
type tableVar struct{ sqlName string }

func (s *session) declareTable(ctx context.Context, name string, def []token, vars map[string]any) *sqlError {
	s.tableVarSeq++
	sqlName := fmt.Sprintf("#@%s_%d", strings.ToLower(name), s.tableVarSeq)
	st := append([]token{{k: tkWord, text: "CREATE", upper: "CREATE"}, {k: tkWord, text: "TABLE", upper: "TABLE"},
		{k: tkQIdent, text: sqlName}}, def...)
	if e := s.createTable(ctx, &resp{s: s}, st, true); e != nil {
		return e
	}
	vars[strings.ToLower(name)] = tableVar{sqlName: sqlName}
	return nil
}

// dropTableVars drops the table variables a batch declared.
func (s *session) dropTableVars(vars map[string]any) {
	for _, v := range vars {
		if tv, ok := v.(tableVar); ok && s.sc != nil {
			s.sc.ExecContext(context.Background(), "DROP TABLE IF EXISTS temp."+quoteIdent(tv.sqlName))
		}
	}
}

// outputClause rewrites INSERT/UPDATE/DELETE ... OUTPUT INSERTED.x,
// DELETED.y ... as SQLite's RETURNING (INSERTED and DELETED both name the
// row as written; OUTPUT ... INTO is not supported).
func outputClause(st []token) (stmt, returning []token, ok bool, e *sqlError) {
	o := -1
	depth := 0
	for j, t := range st {
		switch {
		case t.k == tkOp && t.text == "(":
			depth++
		case t.k == tkOp && t.text == ")":
			depth--
		case depth == 0 && t.k == tkWord && t.upper == "OUTPUT":
			o = j
		}
		if o >= 0 {
			break
		}
	}
	if o < 0 {
		return st, nil, false, nil
	}
	end := len(st)
	depth = 0
	for j := o + 1; j < len(st); j++ {
		t := st[j]
		if t.k == tkOp && t.text == "(" {
			depth++
		} else if t.k == tkOp && t.text == ")" {
			depth--
		} else if depth == 0 && t.k == tkWord {
			switch t.upper {
			case "INTO":
				return nil, nil, false, errf(50000, 1, 16, "OUTPUT ... INTO is not supported by the test backend.")
			case "VALUES", "SELECT", "DEFAULT", "FROM", "WHERE", "EXEC", "EXECUTE":
				end = j
			}
		}
		if end != len(st) {
			break
		}
	}
	for j := o + 1; j < end; j++ {
		t := st[j]
		if t.k == tkWord && (t.upper == "INSERTED" || t.upper == "DELETED") && j+1 < end && st[j+1].text == "." {
			j++
			continue
		}
		returning = append(returning, t)
	}
	stmt = append(append([]token{}, st[:o]...), st[end:]...)
	return stmt, returning, true, nil
}
