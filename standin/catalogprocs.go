package standin

import (
	"context"
	"regexp"
	"strings"
	"time"
)

// The catalog procedures JDBC's DatabaseMetaData calls (getTables: sp_tables, getPrimaryKeys:
// sp_pkeys), answered from the current database's schema with SQL Server's result columns.
// Every table is in dbo. Name arguments are LIKE patterns (%, _ and [...] classes, compared
// case-insensitively as the default collation does); NULL matches everything.

// likeMatcher compiles a T-SQL LIKE pattern; nil (a NULL argument) matches everything.
func likeMatcher(pattern any) func(string) bool {
	p, ok := pattern.(string)
	if !ok {
		return func(string) bool { return true }
	}
	var re strings.Builder
	re.WriteString("(?is)^")
	for i := 0; i < len(p); i++ {
		switch c := p[i]; c {
		case '%':
			re.WriteString(".*")
		case '_':
			re.WriteString(".")
		case '[':
			if j := strings.IndexByte(p[i+1:], ']'); j >= 0 {
				class := p[i+1 : i+1+j]
				if strings.HasPrefix(class, "^") {
					re.WriteString("[^" + regexp.QuoteMeta(class[1:]) + "]")
				} else {
					re.WriteString("[" + regexp.QuoteMeta(class) + "]")
				}
				i += j + 1
				continue
			}
			re.WriteString(regexp.QuoteMeta("["))
		default:
			re.WriteString(regexp.QuoteMeta(string(c)))
		}
	}
	re.WriteString("$")
	rx, err := regexp.Compile(re.String())
	if err != nil {
		return func(string) bool { return false }
	}
	return rx.MatchString
}

// catalogArg is a catalog procedure's argument: the one named name, else the i-th when the
// call passes it by position (nil when absent or NULL).
func catalogArg(ps []rpcParam, i int, name string) any {
	for _, p := range ps {
		if strings.EqualFold(strings.TrimPrefix(p.name, "@"), name) {
			return p.val
		}
	}
	if i < len(ps) && ps[i].name == "" {
		return ps[i].val
	}
	return nil
}

// checkQualifier refuses a qualifier naming another database, as SQL Server does.
func (s *session) checkQualifier(q any) *sqlError {
	if name, ok := q.(string); ok && name != "" && !strings.EqualFold(name, s.db) {
		return errf(15250, 1, 16, "The database name component of the object qualifier must be the name of the current database.")
	}
	return nil
}

// spTables is sp_tables @table_name, @table_owner, @table_qualifier, @table_type: one row per
// matching table or view (TABLE_QUALIFIER, TABLE_OWNER, TABLE_NAME, TABLE_TYPE, REMARKS).
// @table_type is a list of quoted types ('TABLE', 'VIEW', ...); NULL means every type.
func (s *session) spTables(ctx context.Context, r *resp, ps []rpcParam) *sqlError {
	if e := s.checkQualifier(catalogArg(ps, 2, "table_qualifier")); e != nil {
		return e
	}
	name, owner := likeMatcher(catalogArg(ps, 0, "table_name")), likeMatcher(catalogArg(ps, 1, "table_owner"))
	var types map[string]bool
	if list, ok := catalogArg(ps, 3, "table_type").(string); ok && list != "" {
		types = map[string]bool{}
		for _, t := range strings.Split(list, ",") {
			types[strings.ToUpper(strings.Trim(strings.TrimSpace(t), `'"`))] = true
		}
	}
	var rows [][]any
	for _, t := range s.userTables() {
		typ := "TABLE"
		if t.view {
			typ = "VIEW"
		}
		if name(t.name) && owner("dbo") && (types == nil || types[typ]) {
			rows = append(rows, []any{s.db, "dbo", t.name, typ, nil})
		}
	}
	return s.catalogResult(ctx, r, []string{"TABLE_QUALIFIER", "TABLE_OWNER", "TABLE_NAME", "TABLE_TYPE", "REMARKS"},
		rows, map[string]sqlType{"TABLE_QUALIFIER": {k: kNVarChar, size: 128}, "TABLE_OWNER": {k: kNVarChar, size: 128},
			"TABLE_NAME": {k: kNVarChar, size: 128}, "TABLE_TYPE": {k: kNVarChar, size: 32}, "REMARKS": {k: kNVarChar, size: 254}},
		"TABLE_TYPE, TABLE_QUALIFIER, TABLE_OWNER, TABLE_NAME")
}

// spPkeys is sp_pkeys @table_name, @table_owner, @table_qualifier: the primary key's columns
// of one table (TABLE_QUALIFIER, TABLE_OWNER, TABLE_NAME, COLUMN_NAME, KEY_SEQ, PK_NAME).
func (s *session) spPkeys(ctx context.Context, r *resp, ps []rpcParam) *sqlError {
	if e := s.checkQualifier(catalogArg(ps, 2, "table_qualifier")); e != nil {
		return e
	}
	table, _ := catalogArg(ps, 0, "table_name").(string)
	owner := likeMatcher(catalogArg(ps, 1, "table_owner"))
	var rows [][]any
	if owner("dbo") {
		qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		for _, t := range s.userTables() {
			if !strings.EqualFold(t.name, table) {
				continue
			}
			cr, err := s.sc.QueryContext(qctx, "SELECT name, pk FROM pragma_table_info(?) WHERE pk > 0 ORDER BY pk", t.name)
			if err != nil {
				return mapSQLiteErr(err, s)
			}
			for cr.Next() {
				var col string
				var seq int64
				if cr.Scan(&col, &seq) == nil {
					rows = append(rows, []any{s.db, "dbo", t.name, col, seq, "PK_" + t.name})
				}
			}
			cr.Close()
		}
	}
	return s.catalogResult(ctx, r, []string{"TABLE_QUALIFIER", "TABLE_OWNER", "TABLE_NAME", "COLUMN_NAME", "KEY_SEQ", "PK_NAME"},
		rows, map[string]sqlType{"TABLE_QUALIFIER": {k: kNVarChar, size: 128}, "TABLE_OWNER": {k: kNVarChar, size: 128},
			"TABLE_NAME": {k: kNVarChar, size: 128}, "COLUMN_NAME": {k: kNVarChar, size: 128}, "KEY_SEQ": {k: kSmallInt},
			"PK_NAME": {k: kNVarChar, size: 128}},
		"TABLE_QUALIFIER, TABLE_OWNER, TABLE_NAME, KEY_SEQ")
}

// catalogResult sends rows as one result set with SQL Server's column types.
func (s *session) catalogResult(ctx context.Context, r *resp, cols []string, rows [][]any, types map[string]sqlType, orderBy string) *sqlError {
	lower := make(map[string]sqlType, len(types))
	for k, v := range types {
		lower[strings.ToLower(k)] = v
	}
	s.catalogCols = lower
	defer func() { s.catalogCols = nil }()
	return s.query(ctx, r, "SELECT * FROM "+literalRows(cols, rows)+" ORDER BY "+orderBy, nil, true)
}
