package standin

import (
	"context"
	"strings"
	"time"
)

// Catalog views: what ORMs and tools read at connection setup and for schema discovery
// (sys.databases, sys.schemas, sys.tables, sys.columns, INFORMATION_SCHEMA.TABLES and
// INFORMATION_SCHEMA.COLUMNS, besides sys.dm_exec_sessions in audit.go), each rendered at
// translate time as a SQLite subquery of literals built from the current database's own
// schema, with SQL Server's column names. Every user table is in schema dbo (schema_id 1);
// an object_id is the table's rowid in sqlite_master, which OBJECT_ID() also returns.

// catalogView renders schema.name (schema SYS or INFORMATION_SCHEMA, upper case) as a
// subquery, or reports that the stand-in has no such view.
func (s *session) catalogView(schema, name string) (string, bool) {
	switch schema + "." + strings.ToUpper(name) {
	case "SYS.DM_EXEC_SESSIONS":
		s.catalogCols = dmExecSessionsTypes
		return s.dmExecSessions(), true
	case "SYS.DATABASES":
		return s.sysDatabases(), true
	case "SYS.SCHEMAS":
		return literalRows([]string{"name", "schema_id", "principal_id"},
			[][]any{{"dbo", int64(1), int64(1)}, {"guest", int64(2), int64(2)}, {"INFORMATION_SCHEMA", int64(3), int64(3)}, {"sys", int64(4), int64(4)}}), true
	case "SYS.TABLES", "SYS.OBJECTS":
		var rows [][]any
		for _, t := range s.userTables() {
			if t.view {
				continue
			}
			rows = append(rows, []any{t.name, t.id, int64(1), "U", "USER_TABLE"})
		}
		return literalRows([]string{"name", "object_id", "schema_id", "type", "type_desc"}, rows), true
	case "SYS.COLUMNS":
		var rows [][]any
		for _, t := range s.userTables() {
			for _, c := range t.cols {
				rows = append(rows, []any{t.id, c.name, int64(c.ordinal), c.maxLength(), c.nullable})
			}
		}
		return literalRows([]string{"object_id", "name", "column_id", "max_length", "is_nullable"}, rows), true
	case "INFORMATION_SCHEMA.TABLES":
		var rows [][]any
		for _, t := range s.userTables() {
			typ := "BASE TABLE"
			if t.view {
				typ = "VIEW"
			}
			rows = append(rows, []any{s.db, "dbo", t.name, typ})
		}
		return literalRows([]string{"TABLE_CATALOG", "TABLE_SCHEMA", "TABLE_NAME", "TABLE_TYPE"}, rows), true
	case "INFORMATION_SCHEMA.COLUMNS":
		var rows [][]any
		for _, t := range s.userTables() {
			for _, c := range t.cols {
				nullable := "NO"
				if c.nullable {
					nullable = "YES"
				}
				rows = append(rows, []any{s.db, "dbo", t.name, c.name, int64(c.ordinal), c.dflt, nullable,
					c.dataType(), c.charMaxLength(), c.numericPrecision(), c.numericScale()})
			}
		}
		return literalRows([]string{"TABLE_CATALOG", "TABLE_SCHEMA", "TABLE_NAME", "COLUMN_NAME", "ORDINAL_POSITION",
			"COLUMN_DEFAULT", "IS_NULLABLE", "DATA_TYPE", "CHARACTER_MAXIMUM_LENGTH", "NUMERIC_PRECISION", "NUMERIC_SCALE"}, rows), true
	}
	return "", false
}

// sysDatabases lists SQL Server's system databases and the configured ones, with the ids
// DB_ID() reports.
func (s *session) sysDatabases() string {
	rows := [][]any{}
	for i, n := range []string{"master", "tempdb", "model", "msdb"} {
		rows = append(rows, []any{n, int64(i + 1), "ONLINE", int64(0), int64(160), "SQL_Latin1_General_CP1_CI_AS"})
	}
	st := s.c.srv.store
	for _, n := range st.names[1:] { // names[0] is master
		rows = append(rows, []any{n, int64(st.id(n)), "ONLINE", int64(0), int64(160), "SQL_Latin1_General_CP1_CI_AS"})
	}
	return literalRows([]string{"name", "database_id", "state_desc", "state", "compatibility_level", "collation_name"}, rows)
}

// literalRows is a subquery yielding rows under the given column names; with no rows, one
// row of NULLs filtered out, so the columns still resolve.
func literalRows(cols []string, rows [][]any) string {
	empty := len(rows) == 0
	if empty {
		rows = [][]any{make([]any, len(cols))}
	}
	selects := make([]string, 0, len(rows))
	for _, r := range rows {
		parts := make([]string, len(cols))
		for i, c := range cols {
			parts[i] = sqlLiteral(r[i]) + " AS " + quoteIdent(c)
		}
		selects = append(selects, "SELECT "+strings.Join(parts, ", "))
	}
	if empty {
		selects[0] += " WHERE 0"
	}
	return "(" + strings.Join(selects, " UNION ALL ") + ")"
}

type catalogTable struct {
	name string
	id   int64
	view bool
	cols []catalogColumn
}

type catalogColumn struct {
	name     string
	ordinal  int
	typ      sqlType
	nullable bool
	dflt     any // the default's text, or nil
}

// userTables lists the current database's tables and views (not SQLite's or the
// stand-in's own), with their columns.
func (s *session) userTables() []catalogTable {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rows, err := s.sc.QueryContext(ctx, "SELECT rowid, name, type FROM sqlite_master WHERE type IN ('table', 'view') "+
		"AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND name NOT LIKE '\\_\\_standin%' ESCAPE '\\' ORDER BY name")
	if err != nil {
		return nil
	}
	var ts []catalogTable
	for rows.Next() {
		var t catalogTable
		var typ string
		if rows.Scan(&t.id, &t.name, &typ) == nil {
			t.view = typ == "view"
			ts = append(ts, t)
		}
	}
	rows.Close()
	for i := range ts {
		cr, err := s.sc.QueryContext(ctx, "SELECT cid, name, type, \"notnull\", dflt_value FROM pragma_table_info(?)", ts[i].name)
		if err != nil {
			continue
		}
		for cr.Next() {
			var c catalogColumn
			var decl string
			var notNull int
			if cr.Scan(&c.ordinal, &c.name, &decl, &notNull, &c.dflt) == nil {
				c.ordinal++
				c.typ, _ = fromDecl(decl)
				c.nullable = notNull == 0
				ts[i].cols = append(ts[i].cols, c)
			}
		}
		cr.Close()
	}
	return ts
}

// dataType is INFORMATION_SCHEMA's DATA_TYPE: the type's name without its length.
func (c catalogColumn) dataType() string {
	n := c.typ.String()
	if i := strings.IndexByte(n, '('); i >= 0 {
		n = n[:i]
	}
	if n == "" {
		return "sql_variant"
	}
	return n
}

// charMaxLength is CHARACTER_MAXIMUM_LENGTH: characters (or bytes for binary), -1 for max,
// NULL for other types.
func (c catalogColumn) charMaxLength() any {
	switch c.typ.k {
	case kNVarChar, kVarBinary:
		if c.typ.size <= 0 {
			return int64(-1)
		}
		return int64(c.typ.size)
	}
	return nil
}

// maxLength is sys.columns.max_length: bytes (2 per nvarchar character), -1 for max.
func (c catalogColumn) maxLength() int64 {
	switch c.typ.k {
	case kNVarChar:
		if c.typ.size <= 0 {
			return -1
		}
		return 2 * int64(c.typ.size)
	case kVarBinary:
		if c.typ.size <= 0 {
			return -1
		}
		return int64(c.typ.size)
	case kTinyInt, kBit:
		return 1
	case kSmallInt:
		return 2
	case kInt, kReal, kSmallDateTime:
		return 4
	case kBigInt, kFloat, kDateTime, kDateTime2:
		return 8
	case kDate:
		return 3
	case kTime:
		return int64(timeBytes(c.typ.scale))
	case kDateTimeOffset:
		return int64(timeBytes(c.typ.scale) + 5)
	case kGUID:
		return 16
	case kDecimal:
		if c.typ.size > 0 { // money, smallmoney
			return int64(c.typ.size)
		}
		return 9
	}
	return 0
}

// timeBytes is the size of a time(scale) value: 3 bytes up to scale 2, 4 up to 4, else 5.
func timeBytes(scale int) int {
	switch {
	case scale <= 2:
		return 3
	case scale <= 4:
		return 4
	}
	return 5
}

func (c catalogColumn) numericPrecision() any {
	switch c.typ.k {
	case kTinyInt:
		return int64(3)
	case kSmallInt:
		return int64(5)
	case kInt:
		return int64(10)
	case kBigInt:
		return int64(19)
	case kFloat:
		return int64(53)
	case kReal:
		return int64(24)
	case kDecimal:
		return int64(c.typ.prec)
	}
	return nil
}

func (c catalogColumn) numericScale() any {
	switch c.typ.k {
	case kTinyInt, kSmallInt, kInt, kBigInt:
		return int64(0)
	case kDecimal:
		return int64(c.typ.scale)
	}
	return nil
}
