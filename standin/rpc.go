package standin

import (
	"context"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/tdspool/tdspool/tds"
)

// RPC: sp_executesql and the sp_prepare family (by ProcID or by name),
// plus sp_reset_connection. Statement DONEs inside a call are DONEINPROC;
// the call ends with RETURNSTATUS, one RETURNVALUE per OUTPUT parameter
// and DONEPROC — the order SQL Server uses.

type paramDecl struct {
	name   string // lower-case, without '@'
	typ    sqlType
	output bool
	def    []token // default value (procedures), nil for none
}

// parseParamDecls parses "@p1 int, @p2 nvarchar(max) OUTPUT".
func parseParamDecls(s string) ([]paramDecl, *sqlError) {
	toks, e := lex(s)
	if e != nil {
		return nil, e
	}
	var out []paramDecl
	for _, d := range splitArgs(toks) {
		if len(d) < 2 || d[0].k != tkVar {
			return nil, syntaxErr(joinTokens(d))
		}
		j := 1
		if d[j].upper == "AS" && len(d) > 2 {
			j++
		}
		tn, _ := d[j].name()
		var args []string
		k := j + 1
		if k < len(d) && d[k].text == "(" {
			end := matchParen(d, k)
			if end < 0 {
				return nil, syntaxErr(joinTokens(d[k:]))
			}
			for _, a := range splitArgs(d[k+1 : end]) {
				args = append(args, joinTokens(a))
			}
			k = end + 1
		}
		t, ok := parseSQLType(tn, args)
		if !ok {
			return nil, errf(2715, 3, 16, fmt.Sprintf("Column, parameter, or variable #%d: Cannot find data type %s.", len(out)+1, tn))
		}
		pd := paramDecl{name: strings.ToLower(d[0].text), typ: t}
		for ; k < len(d); k++ {
			switch {
			case d[k].upper == "OUTPUT" || d[k].upper == "OUT":
				pd.output = true
			case d[k].text == "=" && pd.def == nil:
				end := k + 1
				for end < len(d) && d[end].upper != "OUTPUT" && d[end].upper != "OUT" && d[end].upper != "READONLY" {
					end++
				}
				pd.def = d[k+1 : end]
				if len(pd.def) == 0 {
					return nil, syntaxErr("=")
				}
				k = end - 1
			}
		}
		out = append(out, pd)
	}
	return out, nil
}

// outParam is an OUTPUT parameter to report after a call.
type outParam struct {
	ordinal int
	p       rpcParam
	varName string // variable that holds the value after the call
}

func (s *session) runRPC(ctx context.Context, r *resp, call rpcCall) {
	vars := map[string]any{}
	outs, e := s.callProc(ctx, r, call, vars)
	defer s.endOfBatch(ctx, r)
	if e != nil {
		r.sqlErr(e)
		if e.class > 10 && e.class != 15 && s.opts.has(optXactAbort) {
			s.rollbackAll(ctx, r)
		}
		r.done(tds.TokenDoneProc, tds.DoneError, 0, 0, false)
		return
	}
	if ctx.Err() != nil {
		return
	}
	r.tok(tds.AppendReturnStatus(nil, returnStatus(vars)))
	for _, o := range outs {
		t := typeFromInfo(&o.p.ti)
		ti := t.typeInfo()
		v, e := wireValue(t, vars[o.varName])
		if e != nil {
			v = nil
		}
		rv := tds.ReturnValue{Ordinal: uint16(o.ordinal), Name: o.p.name, Status: tds.ReturnValueOutput, Type: ti, Value: v}
		b, err := rv.AppendReturnValue(nil)
		if err != nil {
			rv.Value = nil
			b, _ = rv.AppendReturnValue(nil)
		}
		r.tok(b)
	}
	r.done(tds.TokenDoneProc, 0, 0, 0, false)
}

// callProc runs one procedure. Statement results go into r; the OUTPUT
// parameters' final values are left in vars under outParam.varName.
func (s *session) callProc(ctx context.Context, r *resp, call rpcCall, vars map[string]any) ([]outParam, *sqlError) {
	ps := call.params
	str := func(i int) (string, bool) {
		if i >= len(ps) {
			return "", false
		}
		v, ok := ps[i].val.(string)
		return v, ok
	}
	handleOf := func(i int) (int32, bool) {
		if i >= len(ps) {
			return 0, false
		}
		n, ok := asInt(ps[i].val)
		return int32(n), ok
	}
	name := strings.TrimPrefix(strings.TrimPrefix(call.name, "dbo."), "sys.")
	switch name {
	case "sp_executesql":
		stmt, ok := str(0)
		if !ok {
			return nil, errf(214, 2, 16, "Procedure expects parameter '@statement' of type 'ntext/nchar/nvarchar'.")
		}
		declText, _ := str(1)
		var decls []paramDecl
		if declText != "" {
			var e *sqlError
			if decls, e = parseParamDecls(declText); e != nil {
				return nil, e
			}
		}
		outs, e := bindParams(decls, ps[min(2, len(ps)):], 2, vars, declText)
		if e != nil {
			return nil, e
		}
		return outs, s.execText(ctx, r, stmt, vars, true)
	case "sp_prepare", "sp_prepexec":
		declText, _ := str(1)
		stmt, ok := str(2)
		if !ok {
			return nil, errf(214, 2, 16, "Procedure expects parameter '@stmt' of type 'ntext/nchar/nvarchar'.")
		}
		decls, e := parseParamDecls(declText)
		if e != nil {
			return nil, e
		}
		s.nextHandle++
		h := s.nextHandle
		s.prepared[h] = &prepared{decl: decls, text: stmt}
		vars["\x00handle"] = int64(h)
		outs := []outParam{}
		if len(ps) > 0 {
			ps[0].ti = tds.IntNType(4)
			outs = append(outs, outParam{ordinal: 0, p: ps[0], varName: "\x00handle"})
		}
		if name == "sp_prepare" {
			return outs, nil
		}
		more, e := bindParams(decls, ps[min(3, len(ps)):], 3, vars, declText)
		if e != nil {
			return nil, e
		}
		return append(outs, more...), s.execText(ctx, r, stmt, vars, true)
	case "sp_execute":
		h, ok := handleOf(0)
		p := s.prepared[h]
		if !ok || p == nil {
			return nil, errf(8179, 4, 16, fmt.Sprintf("Could not find prepared statement with handle %d.", h))
		}
		outs, e := bindParams(p.decl, ps[1:], 1, vars, "")
		if e != nil {
			return nil, e
		}
		return outs, s.execText(ctx, r, p.text, vars, true)
	case "sp_unprepare":
		h, ok := handleOf(0)
		if !ok || s.prepared[h] == nil {
			return nil, errf(8179, 4, 16, fmt.Sprintf("Could not find prepared statement with handle %d.", h))
		}
		delete(s.prepared, h)
		return nil, nil
	case "sp_reset_connection":
		return nil, s.reset(r, false)
	case "sp_set_session_context":
		return nil, s.setSessionContext(ps)
	case "sp_setapprole":
		return s.setAppRole(ps, vars)
	case "sp_unsetapprole":
		return nil, s.unsetAppRole(ps)
	case "sp_getapplock":
		return nil, s.getAppLock(ctx, ps, vars)
	case "sp_releaseapplock":
		return nil, s.releaseAppLock(ps, vars)
	case "sp_cursoropen":
		return s.cursorOpen(ctx, r, ps, vars)
	case "sp_cursorfetch":
		return nil, s.cursorFetch(r, ps)
	case "sp_cursorclose":
		return nil, s.cursorClose(ps)
	case "sp_tables":
		return nil, s.spTables(ctx, r, ps)
	case "sp_pkeys":
		return nil, s.spPkeys(ctx, r, ps)
	case "sp_datatype_info", "sp_datatype_info_100":
		return nil, s.datatypeInfo(ctx, r, ps, vars)
	}
	if outs, ok, e := s.userProc(ctx, r, call, vars); ok {
		return outs, e
	}
	return nil, errf(2812, 62, 16, fmt.Sprintf("Could not find stored procedure '%s'.", call.name))
}

// bindParams matches values to declared parameters: by name when the value
// is named, otherwise by position (what sp_execute callers do).
func bindParams(decls []paramDecl, vals []rpcParam, firstOrdinal int, vars map[string]any, declText string) ([]outParam, *sqlError) {
	return bindParamsWith(decls, vals, firstOrdinal, vars, declText, nil)
}

// bindParamsWith is bindParams where missing supplies (or refuses) a value
// for a declared parameter no argument matched.
func bindParamsWith(decls []paramDecl, vals []rpcParam, firstOrdinal int, vars map[string]any, declText string,
	missing func(paramDecl) (any, *sqlError)) ([]outParam, *sqlError) {
	var outs []outParam
	used := make([]bool, len(vals))
	pos := 0
	for _, d := range decls {
		idx := -1
		for j, v := range vals {
			if !used[j] && v.name != "" && strings.EqualFold(strings.TrimPrefix(v.name, "@"), d.name) {
				idx = j
				break
			}
		}
		if idx < 0 {
			for pos < len(vals) && (used[pos] || vals[pos].name != "" && !isPositionalName(vals[pos].name, decls)) {
				pos++
			}
			if pos < len(vals) {
				idx = pos
			}
		}
		if idx < 0 && missing != nil {
			v, e := missing(d)
			if e != nil {
				return nil, e
			}
			vars[d.name] = coerceParam(v, d.typ)
			continue
		}
		if idx < 0 {
			return nil, errf(8178, 1, 16, fmt.Sprintf("The parameterized query '(%s)' expects the parameter '@%s', which was not supplied.", declText, d.name))
		}
		used[idx] = true
		vars[d.name] = coerceParam(vals[idx].val, d.typ)
		if vals[idx].status&tds.ParamByRef != 0 {
			p := vals[idx]
			if p.name == "" {
				p.name = "@" + d.name // RETURNVALUE names the formal parameter
			}
			outs = append(outs, outParam{ordinal: firstOrdinal + idx, p: p, varName: d.name})
		}
	}
	return outs, nil
}

// isPositionalName: a value whose name matches no declaration can still be
// taken by position.
func isPositionalName(name string, decls []paramDecl) bool {
	for _, d := range decls {
		if strings.EqualFold(strings.TrimPrefix(name, "@"), d.name) {
			return false
		}
	}
	return true
}

// coerceParam converts a parameter value to its declared type the way SQL
// Server's implicit conversion would, for the cases that change storage:
// datetimeoffset → datetime2 keeps local time; numbers into decimal are
// rounded to the declared scale.
func coerceParam(v any, t sqlType) any {
	switch t.k {
	case kDecimal:
		switch x := v.(type) {
		case decimalValue, string, int64, float64:
			if s, err := wireValue(t, bindValue(x)); err == nil {
				return decimalValue(s.(string))
			}
		}
	case kDateTime2, kDate, kDateTime, kSmallDateTime:
		if tm, ok := v.(time.Time); ok {
			y, mo, d := tm.Date()
			return time.Date(y, mo, d, tm.Hour(), tm.Minute(), tm.Second(), tm.Nanosecond(), time.UTC)
		}
	case kTime:
		if tm, ok := v.(time.Time); ok {
			return timeOfDay(tm)
		}
	case kInt, kBigInt, kSmallInt, kTinyInt:
		if f, ok := v.(float64); ok && f == math.Trunc(f) {
			return int64(f)
		}
	}
	return v
}

// execString runs EXEC ( string expression ): the text as a batch of its own, in a variable
// scope of its own (dynamic SQL sees none of the caller's variables), its statements'
// DONEs in-proc as sp_executesql's are. A NULL string runs nothing.
func (s *session) execString(ctx context.Context, r *resp, st []token, vars map[string]any) *sqlError {
	end := matchParen(st, 0)
	if end < 0 {
		return syntaxErr("(")
	}
	if end != len(st)-1 {
		return syntaxErr(st[end+1].text)
	}
	if end == 1 {
		return syntaxErr(")")
	}
	v, e := s.eval(ctx, st[1:end], vars)
	if e != nil {
		return e
	}
	if v == nil {
		return nil
	}
	text, ok := v.(string)
	if !ok {
		text = fmt.Sprint(v)
	}
	scope := map[string]any{}
	return s.execText(ctx, r, text, scope, true)
}

// execProc runs T-SQL EXEC name [args]: the sp_* procedures above with
// literal or variable arguments; OUTPUT arguments write back to variables.
func (s *session) execProc(ctx context.Context, r *resp, st []token, vars map[string]any, inProc bool) *sqlError {
	if len(st) == 0 {
		return syntaxErr("EXEC")
	}
	retVar := ""
	if len(st) > 2 && st[0].k == tkVar && st[1].text == "=" {
		retVar = strings.ToLower(st[0].text)
		st = st[2:]
	}
	if st[0].text == "(" {
		return s.execString(ctx, r, st, vars)
	}
	nameParts, j := qualifiedName(st, 0)
	if len(nameParts) == 0 {
		return syntaxErr(joinTokens(st))
	}
	call := rpcCall{name: strings.ToLower(nameParts[len(nameParts)-1])}
	type back struct {
		param   int
		varName string
	}
	var backs []back
	for _, a := range splitArgs(st[j:]) {
		var p rpcParam
		if len(a) > 2 && a[0].k == tkVar && a[1].text == "=" {
			p.name = "@" + a[0].text
			a = a[2:]
		}
		if n := len(a); n > 1 && (a[n-1].upper == "OUTPUT" || a[n-1].upper == "OUT") {
			p.status = tds.ParamByRef
			a = a[:n-1]
			if len(a) == 1 && a[0].k == tkVar {
				backs = append(backs, back{len(call.params), strings.ToLower(a[0].text)})
			}
		}
		v, e := s.eval(ctx, a, vars)
		if e != nil {
			return e
		}
		p.val = v
		p.ti = typeInfoOfValue(v)
		call.params = append(call.params, p)
	}
	procVars := map[string]any{}
	outs, e := s.callProc(ctx, r, call, procVars)
	if e != nil {
		return e
	}
	for _, b := range backs {
		for _, o := range outs {
			if o.ordinal == b.param {
				vars[b.varName] = bindBack(procVars[o.varName])
			}
		}
	}
	if retVar != "" {
		vars[retVar] = int64(returnStatus(procVars))
	}
	r.tok(tds.AppendReturnStatus(nil, returnStatus(procVars)))
	s.stmtDone(r, inProc, 0, 0, false)
	return nil
}

func bindBack(v any) any {
	switch x := v.(type) {
	case decimalValue:
		return string(x)
	case guidValue:
		return string(x)
	}
	return v
}

func typeInfoOfValue(v any) tds.TypeInfo {
	switch x := v.(type) {
	case int64:
		if x < math.MinInt32 || x > math.MaxInt32 {
			return tds.IntNType(8)
		}
		return tds.IntNType(4)
	case float64:
		return tds.FltNType(8)
	case []byte:
		return tds.VarBinaryType(0)
	}
	return tds.NVarCharType(0)
}
