package standin

import (
	"context"
	"fmt"
	"strings"

	"github.com/tdspool/tdspool/tds"
)

// Server cursors, all STATIC (the rows are read when the cursor opens):
// T-SQL DECLARE name CURSOR ... FOR SELECT / OPEN / FETCH [INTO] / CLOSE /
// DEALLOCATE with @@FETCH_STATUS, and the API cursors drivers open with
// the sp_cursoropen / sp_cursorfetch / sp_cursorclose RPCs. Both belong to
// the session: RESETCONNECTION and the end of the session deallocate them.

type cursor struct {
	name  string  // T-SQL cursor name, "" for API cursors
	query []token // the SELECT, translated when the cursor opens
	rs    *resultSet
	pos   int // rows fetched so far (index of the next row)
}

// declareCursor: DECLARE name CURSOR [options] FOR select.
func (s *session) declareCursor(st []token) *sqlError {
	name, _ := st[1].name()
	f := wordIndex(st, "FOR")
	if f < 0 || f+1 >= len(st) || st[f+1].upper != "SELECT" {
		return syntaxErr(joinTokens(st[len(st)-1:]))
	}
	key := strings.ToLower(name)
	if _, dup := s.cursors[key]; dup {
		return errf(16915, 1, 16, fmt.Sprintf("A cursor with the name '%s' already exists.", name))
	}
	if s.cursors == nil {
		s.cursors = map[string]*cursor{}
	}
	s.cursors[key] = &cursor{name: name, query: st[f+1:]}
	return nil
}

func (s *session) cursorNamed(t token) (*cursor, *sqlError) {
	name, _ := t.name()
	c := s.cursors[strings.ToLower(name)]
	if c == nil {
		return nil, errf(16916, 1, 16, fmt.Sprintf("A cursor with the name '%s' does not exist.", name))
	}
	return c, nil
}

// cursorStmt runs OPEN, FETCH, CLOSE and DEALLOCATE.
func (s *session) cursorStmt(ctx context.Context, r *resp, st []token, vars map[string]any, inProc bool) *sqlError {
	switch st[0].upper {
	case "OPEN", "CLOSE", "DEALLOCATE":
		if len(st) < 2 {
			return syntaxErr(st[0].text)
		}
		nameTok := st[len(st)-1] // [GLOBAL] name
		c, e := s.cursorNamed(nameTok)
		if e != nil {
			return e
		}
		switch st[0].upper {
		case "OPEN":
			if c.rs != nil {
				return errf(16905, 1, 16, "The cursor is already open.")
			}
			q, args, e := s.translate(c.query, vars)
			if e != nil {
				return e
			}
			rs, e := s.collect(ctx, q, args)
			if e != nil {
				return e
			}
			c.rs, c.pos = rs, 0
		case "CLOSE":
			if c.rs == nil {
				return errf(16917, 2, 16, "Cursor is not open.")
			}
			c.rs = nil
		case "DEALLOCATE":
			delete(s.cursors, strings.ToLower(c.name))
		}
		s.stmtDone(r, inProc, 0, 0, false)
		return nil
	}
	// FETCH [NEXT|FIRST|LAST|PRIOR|ABSOLUTE n|RELATIVE n] [FROM] name [INTO @a, ...]
	j := 1
	dir := "NEXT"
	var n int64
	if j < len(st) && st[j].k == tkWord {
		switch st[j].upper {
		case "NEXT", "FIRST", "LAST", "PRIOR":
			dir = st[j].upper
			j++
		case "ABSOLUTE", "RELATIVE":
			dir = st[j].upper
			if j+1 >= len(st) {
				return syntaxErr(dir)
			}
			v, e := s.eval(ctx, st[j+1:j+2], vars)
			if e != nil {
				return e
			}
			n, _ = asInt(v)
			j += 2
		}
	}
	if j < len(st) && st[j].upper == "FROM" {
		j++
	}
	if j >= len(st) {
		return syntaxErr("FETCH")
	}
	c, e := s.cursorNamed(st[j])
	if e != nil {
		return e
	}
	if c.rs == nil {
		return errf(16917, 2, 16, "Cursor is not open.")
	}
	row := c.move(dir, n)
	var into []string
	if k := wordIndex(st, "INTO"); k >= 0 {
		for _, a := range splitArgs(st[k+1:]) {
			if len(a) != 1 || a[0].k != tkVar {
				return syntaxErr(joinTokens(a))
			}
			into = append(into, strings.ToLower(a[0].text))
		}
		if row != nil && len(into) != len(row) {
			return errf(16924, 1, 16, "Cursorfetch: The number of variables declared in the INTO list must match that of selected columns.")
		}
	}
	s.fetchStatus = 0
	if row == nil {
		s.fetchStatus = -1
	}
	if into != nil {
		for k, name := range into {
			if row != nil {
				vars[name] = row[k]
			}
		}
		s.stmtDone(r, inProc, 0, 0, false)
		return nil
	}
	var rows [][]any
	if row != nil {
		rows = [][]any{row}
	}
	if e := c.rs.emit(r, rows); e != nil {
		return e
	}
	s.stmtDone(r, inProc, cmdSelect, int64(len(rows)), true)
	return nil
}

// move positions the cursor and returns the row there, nil past either end.
func (c *cursor) move(dir string, n int64) []any {
	total := len(c.rs.rows)
	cur := c.pos - 1 // index of the current row
	switch dir {
	case "NEXT":
		cur++
	case "PRIOR":
		cur--
	case "FIRST":
		cur = 0
	case "LAST":
		cur = total - 1
	case "ABSOLUTE":
		if n >= 0 {
			cur = int(n) - 1
		} else {
			cur = total + int(n)
		}
	case "RELATIVE":
		cur += int(n)
	}
	cur = max(min(cur, total), -1)
	c.pos = cur + 1
	if cur < 0 || cur >= total {
		return nil
	}
	return c.rs.rows[cur]
}

// API cursors [sp_cursoropen: @cursor OUTPUT, @stmt, @scrollopt OUTPUT,
// @ccopt OUTPUT, @rowcount OUTPUT, then sp_executesql-style parameters].

func (s *session) cursorOpen(ctx context.Context, r *resp, ps []rpcParam, vars map[string]any) ([]outParam, *sqlError) {
	stmtV, _ := param(ps, 1, "stmt")
	stmt, ok := stmtV.(string)
	if !ok {
		return nil, errf(214, 2, 16, "Procedure expects parameter '@stmt' of type 'ntext/nchar/nvarchar'.")
	}
	qvars := map[string]any{}
	if len(ps) > 5 {
		declText, _ := ps[5].val.(string)
		decls, e := parseParamDecls(declText)
		if e != nil {
			return nil, e
		}
		if _, e := bindParams(decls, ps[6:], 6, qvars, declText); e != nil {
			return nil, e
		}
	}
	toks, e := lex(stmt)
	if e != nil {
		return nil, e
	}
	stmts := splitStatements(toks)
	if len(stmts) != 1 || stmts[0][0].upper != "SELECT" {
		return nil, errf(16937, 1, 16, "A server cursor is not allowed on a remote stored procedure or stored procedure with more than one SELECT statement. Use a default result set or client cursor.")
	}
	q, args, e := s.translate(stmts[0], qvars)
	if e != nil {
		return nil, e
	}
	rs, e := s.collect(ctx, q, args)
	if e != nil {
		return nil, e
	}
	s.nextCursor++
	h := s.nextCursor
	if s.apiCursors == nil {
		s.apiCursors = map[int32]*cursor{}
	}
	s.apiCursors[h] = &cursor{rs: rs}
	// The cursor's columns are described at open; rows come with fetches.
	if e := rs.emit(r, nil); e != nil {
		return nil, e
	}
	r.done(tds.TokenDoneInProc, 0, cmdSelect, 0, false)
	vars["\x00cursor"] = int64(h)
	vars["\x00rowcount"] = int64(len(rs.rows))
	var outs []outParam
	for i, name := range []string{"\x00cursor", "", "", "\x00rowcount"} {
		k := map[int]int{0: 0, 1: 2, 2: 3, 3: 4}[i]
		if k < len(ps) && ps[k].status&tds.ParamByRef != 0 {
			if name == "" {
				vars[fmt.Sprintf("\x00p%d", k)] = ps[k].val // scrollopt/ccopt: accepted as asked
				name = fmt.Sprintf("\x00p%d", k)
			}
			p := ps[k]
			if p.name == "" {
				p.name = []string{"@cursor", "@stmt", "@scrollopt", "@ccopt", "@rowcount"}[k]
			}
			if name == "\x00cursor" || name == "\x00rowcount" {
				p.ti = tds.IntNType(4)
			}
			outs = append(outs, outParam{ordinal: k, p: p, varName: name})
		}
	}
	return outs, nil
}

func (s *session) apiCursor(ps []rpcParam) (*cursor, int32, *sqlError) {
	hv, _ := param(ps, 0, "cursor")
	h, _ := asInt(hv)
	c := s.apiCursors[int32(h)]
	if c == nil {
		return nil, int32(h), errf(16950, 2, 16, fmt.Sprintf("The cursor handle %d is not valid.", h))
	}
	return c, int32(h), nil
}

// cursorFetch is sp_cursorfetch @cursor, @fetchtype, @rownum, @nrows.
func (s *session) cursorFetch(r *resp, ps []rpcParam) *sqlError {
	c, _, e := s.apiCursor(ps)
	if e != nil {
		return e
	}
	ftv, given := param(ps, 1, "fetchtype")
	ft, _ := asInt(ftv)
	if !given {
		ft = 2
	}
	rn, _ := param(ps, 2, "rownum")
	rownum, _ := asInt(rn)
	nv, nGiven := param(ps, 3, "nrows")
	nrows, _ := asInt(nv)
	if !nGiven || nrows <= 0 {
		nrows = 20
	}
	dirs := map[int64]string{1: "FIRST", 2: "NEXT", 4: "PRIOR", 8: "LAST", 0x10: "ABSOLUTE", 0x20: "RELATIVE"}
	dir, ok := dirs[ft]
	if !ok {
		return errf(16902, 1, 16, fmt.Sprintf("sp_cursorfetch: The value of the parameter 'fetchtype' is invalid: %d.", ft))
	}
	var rows [][]any
	for k := int64(0); k < nrows; k++ {
		d, n := dir, rownum
		if k > 0 {
			d = "NEXT"
		}
		row := c.move(d, n)
		if row == nil {
			break
		}
		rows = append(rows, row)
	}
	if e := c.rs.emit(r, rows); e != nil {
		return e
	}
	r.done(tds.TokenDoneInProc, 0, cmdSelect, int64(len(rows)), true)
	return nil
}

// cursorClose is sp_cursorclose @cursor.
func (s *session) cursorClose(ps []rpcParam) *sqlError {
	_, h, e := s.apiCursor(ps)
	if e != nil {
		return e
	}
	delete(s.apiCursors, h)
	return nil
}

// openCursors counts the session's cursors (T-SQL declared and API).
func (s *session) openCursors() int { return len(s.cursors) + len(s.apiCursors) }
