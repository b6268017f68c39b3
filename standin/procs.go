package standin

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/tdspool/tdspool/tds"
)

// User stored procedures: CREATE [OR ALTER] PROCEDURE / ALTER PROCEDURE /
// DROP PROCEDURE, kept per database in a table of the database's SQLite
// file (so every session and a restart see them), called by RPC or EXEC
// with parameters by name or position, defaults, OUTPUT and RETURN.

const procTable = "__standin_procedures"

const procTableDDL = "CREATE TABLE IF NOT EXISTS " + procTable +
	" (name TEXT PRIMARY KEY COLLATE NOCASE, params TEXT NOT NULL, body TEXT NOT NULL)"

// isProcDDL: CREATE [OR ALTER] PROC[EDURE] or ALTER PROC[EDURE], which
// must be the only statement of its batch.
func isProcDDL(toks []token) bool {
	w := func(i int) string {
		if i < len(toks) && toks[i].k == tkWord {
			return toks[i].upper
		}
		return ""
	}
	isProc := func(s string) bool { return s == "PROC" || s == "PROCEDURE" }
	switch w(0) {
	case "CREATE":
		return isProc(w(1)) || (w(1) == "OR" && w(2) == "ALTER" && isProc(w(3)))
	case "ALTER":
		return isProc(w(1))
	}
	return false
}

func (s *session) createProc(ctx context.Context, r *resp, text string, toks []token, inProc bool) *sqlError {
	j := 2
	mode := toks[0].upper // CREATE or ALTER
	if toks[1].upper == "OR" {
		mode, j = "CREATE OR ALTER", 4
	}
	nameParts, j := qualifiedName(toks, j)
	if len(nameParts) == 0 {
		return syntaxErr(joinTokens(toks[min(j, len(toks)-1):]))
	}
	name := nameParts[len(nameParts)-1]
	if strings.HasPrefix(name, "#") {
		return errf(50000, 1, 16, "Temporary procedures are not supported by the test backend.")
	}
	as := -1
	depth := 0
	for k := j; k < len(toks); k++ {
		t := toks[k]
		if t.k == tkOp && t.text == "(" {
			depth++
		} else if t.k == tkOp && t.text == ")" {
			depth--
		} else if depth == 0 && t.k == tkWord && t.upper == "AS" && (k == j || toks[k-1].k != tkVar) {
			as = k
			break
		}
	}
	if as < 0 || as+1 >= len(toks) {
		return errEndOfBatch()
	}
	params := toks[j:as]
	if w := wordIndex(params, "WITH"); w >= 0 && (w == 0 || params[w-1].k != tkVar) {
		params = params[:w] // WITH RECOMPILE, EXECUTE AS ...: no effect here
	}
	if len(params) > 1 && params[0].text == "(" && params[len(params)-1].text == ")" {
		params = params[1 : len(params)-1]
	}
	paramText := joinTokens(params)
	if _, e := parseParamDecls(paramText); e != nil {
		return e
	}
	body := text[toks[as+1].pos:]
	bodyToks, e := lex(body)
	if e != nil {
		return e
	}
	if _, e := parseNodes(splitStatements(bodyToks)); e != nil {
		return e
	}
	if _, err := s.sc.ExecContext(ctx, procTableDDL); err != nil {
		return mapSQLiteErr(err, s)
	}
	exists := s.procExists(ctx, name)
	switch {
	case mode == "CREATE" && exists:
		return errf(2714, 3, 16, fmt.Sprintf("There is already an object named '%s' in the database.", name))
	case mode == "ALTER" && !exists:
		return errf(208, 6, 16, fmt.Sprintf("Invalid object name '%s'.", name))
	}
	if _, err := s.sc.ExecContext(ctx, "INSERT OR REPLACE INTO "+procTable+" (name, params, body) VALUES (?, ?, ?)", name, paramText, body); err != nil {
		return mapSQLiteErr(err, s)
	}
	s.stmtDone(r, inProc, 0, 0, false)
	return nil
}

func (s *session) procExists(ctx context.Context, name string) bool {
	var n int
	err := s.sc.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+procTable+" WHERE name = ?", name).Scan(&n)
	return err == nil && n > 0
}

// dropProc is DROP PROC[EDURE] [IF EXISTS] name [, name].
func (s *session) dropProc(ctx context.Context, r *resp, st []token, inProc bool) *sqlError {
	j := 2
	ifExists := len(st) > 3 && st[2].upper == "IF" && st[3].upper == "EXISTS"
	if ifExists {
		j = 4
	}
	if _, err := s.sc.ExecContext(ctx, procTableDDL); err != nil {
		return mapSQLiteErr(err, s)
	}
	for _, part := range splitArgs(st[j:]) {
		nameToks, _ := qualifiedName(part, 0)
		if len(nameToks) == 0 {
			return syntaxErr(joinTokens(part))
		}
		name := nameToks[len(nameToks)-1]
		res, err := s.sc.ExecContext(ctx, "DELETE FROM "+procTable+" WHERE name = ?", name)
		if err != nil {
			return mapSQLiteErr(err, s)
		}
		if n, _ := res.RowsAffected(); n == 0 && !ifExists {
			return errf(3701, 11, 11, fmt.Sprintf("Cannot drop the procedure '%s', because it does not exist or you do not have permission.", name))
		}
	}
	s.stmtDone(r, inProc, 0, 0, false)
	return nil
}

// userProc runs a stored procedure; ok is false when there is none of
// that name. Its RETURN value is left in vars["\x00return"].
func (s *session) userProc(ctx context.Context, r *resp, call rpcCall, vars map[string]any) (outs []outParam, ok bool, e *sqlError) {
	name := call.name
	if i := strings.LastIndexByte(name, '.'); i >= 0 {
		name = name[i+1:]
	}
	var params, body string
	err := s.sc.QueryRowContext(ctx, "SELECT params, body FROM "+procTable+" WHERE name = ?", name).Scan(&params, &body)
	if errors.Is(err, sql.ErrNoRows) || (err != nil && strings.Contains(err.Error(), "no such table")) {
		return nil, false, nil
	}
	if err != nil {
		return nil, true, mapSQLiteErr(err, s)
	}
	decls, e := parseParamDecls(params)
	if e != nil {
		return nil, true, e
	}
	for _, p := range call.params {
		if p.name != "" && isPositionalName(p.name, decls) {
			return nil, true, errf(8145, 2, 16, fmt.Sprintf("%s is not a parameter for procedure %s.", p.name, name))
		}
	}
	missing := func(d paramDecl) (any, *sqlError) {
		if d.def == nil {
			return nil, errf(201, 4, 16, fmt.Sprintf("Procedure or function '%s' expects parameter '@%s', which was not supplied.", name, d.name))
		}
		return s.eval(ctx, d.def, vars)
	}
	outs, e = bindParamsWith(decls, call.params, 0, vars, params, missing)
	if e != nil {
		return nil, true, e
	}
	for _, o := range outs {
		if !declOutput(decls, o.varName) {
			return nil, true, errf(8162, 2, 16, fmt.Sprintf("The formal parameter \"@%s\" was not declared as an OUTPUT parameter, but the actual parameter passed in requested output.", o.varName))
		}
	}
	prevProc, prevTran := s.procName, s.trancount
	s.procName = name
	e = s.execText(ctx, r, body, vars, true)
	s.procName = prevProc
	if e == nil && s.trancount != prevTran {
		e = errf(266, 2, 16, fmt.Sprintf("Transaction count after EXECUTE indicates a mismatching number of BEGIN and COMMIT statements. Previous count = %d, current count = %d.", prevTran, s.trancount))
	}
	return outs, true, e
}

func declOutput(decls []paramDecl, name string) bool {
	for _, d := range decls {
		if d.name == name {
			return d.output
		}
	}
	return false
}

// returnStatus is the procedure's RETURN value (0 without one).
func returnStatus(vars map[string]any) int32 {
	n, _ := asInt(vars["\x00return"])
	return int32(n)
}

var _ = tds.TokenDoneProc
