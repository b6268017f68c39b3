package standin

import (
	"context"
	"fmt"
	"sort"
	"strings"
)

// sp_datatype_info and sp_datatype_info_100 answer an ODBC driver's SQLGetTypeInfo: one row
// per server type that maps to the asked ODBC type (0: every type), in SQL Server's columns.
// FreeTDS's ODBC driver sends "sp_datatype_info_100 <type>,3" as a batch; pyodbc asks for
// varchar, nvarchar, varbinary and timestamp at connect and binds its parameters by the
// answers (the largest non-max string, the digits of a datetime's fraction), so a missing
// procedure makes it truncate long strings to 4000 characters and datetimes to the second.

// typeInfoRow is one row of SQL Server's answer (ODBC 3 numbering).
type typeInfoRow struct {
	name           string
	dataType       int // ODBC SQL type
	precision      int // COLUMN_SIZE
	prefix, suffix string
	createParams   string
	caseSensitive  int
	searchable     int
	unsigned       int // -1: NULL
	money          int
	minScale       int // -1: NULL
	maxScale       int // -1: NULL
	sqlDataType    int // the verbose type: 9 for every date/time type
	dateTimeSub    int // -1: NULL
	radix          int // -1: NULL
	userType       int
}

// typeInfoRows are SQL Server 2019's rows for the types the stand-in has, in its order
// (DATA_TYPE, then the type a driver should prefer first).
var typeInfoRows = []typeInfoRow{
	{name: "uniqueidentifier", dataType: -11, precision: 36, prefix: "'", suffix: "'", searchable: 2, unsigned: -1, minScale: -1, maxScale: -1, sqlDataType: -11, dateTimeSub: -1, radix: -1},
	{name: "ntext", dataType: -10, precision: 1073741823, prefix: "N'", suffix: "'", searchable: 1, unsigned: -1, minScale: -1, maxScale: -1, sqlDataType: -10, dateTimeSub: -1, radix: -1, userType: 0},
	{name: "nvarchar", dataType: -9, precision: 4000, prefix: "N'", suffix: "'", createParams: "max length", searchable: 3, unsigned: -1, minScale: -1, maxScale: -1, sqlDataType: -9, dateTimeSub: -1, radix: -1},
	{name: "nchar", dataType: -8, precision: 4000, prefix: "N'", suffix: "'", createParams: "length", searchable: 3, unsigned: -1, minScale: -1, maxScale: -1, sqlDataType: -8, dateTimeSub: -1, radix: -1},
	{name: "bit", dataType: -7, precision: 1, searchable: 2, unsigned: -1, minScale: 0, maxScale: 0, sqlDataType: -7, dateTimeSub: -1, radix: -1, userType: 16},
	{name: "tinyint", dataType: -6, precision: 3, searchable: 2, unsigned: 1, minScale: 0, maxScale: 0, sqlDataType: -6, dateTimeSub: -1, radix: 10, userType: 5},
	{name: "bigint", dataType: -5, precision: 19, searchable: 2, unsigned: 0, minScale: 0, maxScale: 0, sqlDataType: -5, dateTimeSub: -1, radix: 10, userType: 0},
	{name: "image", dataType: -4, precision: 2147483647, prefix: "0x", searchable: 0, unsigned: -1, minScale: -1, maxScale: -1, sqlDataType: -4, dateTimeSub: -1, radix: -1, userType: 20},
	{name: "varbinary", dataType: -3, precision: 8000, prefix: "0x", createParams: "max length", searchable: 2, unsigned: -1, minScale: -1, maxScale: -1, sqlDataType: -3, dateTimeSub: -1, radix: -1, userType: 4},
	{name: "binary", dataType: -2, precision: 8000, prefix: "0x", createParams: "length", searchable: 2, unsigned: -1, minScale: -1, maxScale: -1, sqlDataType: -2, dateTimeSub: -1, radix: -1, userType: 3},
	{name: "text", dataType: -1, precision: 2147483647, prefix: "'", suffix: "'", searchable: 1, unsigned: -1, minScale: -1, maxScale: -1, sqlDataType: -1, dateTimeSub: -1, radix: -1, userType: 19},
	{name: "char", dataType: 1, precision: 8000, prefix: "'", suffix: "'", createParams: "length", searchable: 3, unsigned: -1, minScale: -1, maxScale: -1, sqlDataType: 1, dateTimeSub: -1, radix: -1, userType: 1},
	{name: "numeric", dataType: 2, precision: 38, createParams: "precision,scale", searchable: 2, unsigned: 0, minScale: 0, maxScale: 38, sqlDataType: 2, dateTimeSub: -1, radix: 10, userType: 10},
	{name: "decimal", dataType: 3, precision: 38, createParams: "precision,scale", searchable: 2, unsigned: 0, minScale: 0, maxScale: 38, sqlDataType: 3, dateTimeSub: -1, radix: 10, userType: 24},
	{name: "money", dataType: 3, precision: 19, prefix: "$", searchable: 2, unsigned: 0, money: 1, minScale: 4, maxScale: 4, sqlDataType: 3, dateTimeSub: -1, radix: 10, userType: 11},
	{name: "int", dataType: 4, precision: 10, searchable: 2, unsigned: 0, minScale: 0, maxScale: 0, sqlDataType: 4, dateTimeSub: -1, radix: 10, userType: 7},
	{name: "smallint", dataType: 5, precision: 5, searchable: 2, unsigned: 0, minScale: 0, maxScale: 0, sqlDataType: 5, dateTimeSub: -1, radix: 10, userType: 6},
	{name: "float", dataType: 6, precision: 53, searchable: 2, unsigned: 0, minScale: -1, maxScale: -1, sqlDataType: 6, dateTimeSub: -1, radix: 2, userType: 8},
	{name: "real", dataType: 7, precision: 24, searchable: 2, unsigned: 0, minScale: -1, maxScale: -1, sqlDataType: 7, dateTimeSub: -1, radix: 2, userType: 23},
	{name: "varchar", dataType: 12, precision: 8000, prefix: "'", suffix: "'", createParams: "max length", searchable: 3, unsigned: -1, minScale: -1, maxScale: -1, sqlDataType: 12, dateTimeSub: -1, radix: -1, userType: 2},
	{name: "date", dataType: 91, precision: 10, prefix: "'", suffix: "'", searchable: 3, unsigned: -1, minScale: -1, maxScale: -1, sqlDataType: 9, dateTimeSub: 1, radix: -1},
	{name: "datetime", dataType: 93, precision: 23, prefix: "'", suffix: "'", searchable: 3, unsigned: -1, minScale: 3, maxScale: 3, sqlDataType: 9, dateTimeSub: 3, radix: -1, userType: 12},
	{name: "smalldatetime", dataType: 93, precision: 16, prefix: "'", suffix: "'", searchable: 3, unsigned: -1, minScale: 0, maxScale: 0, sqlDataType: 9, dateTimeSub: 3, radix: -1, userType: 22},
	{name: "datetime2", dataType: 93, precision: 27, prefix: "'", suffix: "'", createParams: "scale", searchable: 3, unsigned: -1, minScale: 0, maxScale: 7, sqlDataType: 9, dateTimeSub: 3, radix: -1},
}

// datatypeInfo runs sp_datatype_info[_100] @data_type [, @ODBCVer]: its result set as a
// SELECT of literals, so the columns have SQL Server's names and types.
func (s *session) datatypeInfo(ctx context.Context, r *resp, ps []rpcParam, vars map[string]any) *sqlError {
	want, odbcVer := int64(0), int64(2)
	if len(ps) > 0 && ps[0].val != nil {
		n, ok := asInt(ps[0].val)
		if !ok {
			return errf(8114, 5, 16, "Error converting data type varchar to smallint.")
		}
		want = n
	}
	if len(ps) > 1 && ps[1].val != nil {
		if n, ok := asInt(ps[1].val); ok {
			odbcVer = n
		}
	}
	// ODBC 2 numbers the date/time types 9, 10, 11.
	odbc2 := map[int]int{91: 9, 92: 10, 93: 11}
	var rows []typeInfoRow
	for _, t := range typeInfoRows {
		if odbcVer < 3 {
			if v, ok := odbc2[t.dataType]; ok {
				t.dataType = v
			}
		}
		if want == 0 || int64(t.dataType) == want {
			rows = append(rows, t)
		}
	}
	sort.SliceStable(rows, func(i, j int) bool { return rows[i].dataType < rows[j].dataType })
	nullable := func(n int, typ string) string {
		if n == -1 {
			return "CAST(NULL AS " + typ + ")"
		}
		return fmt.Sprintf("CAST(%d AS %s)", n, typ)
	}
	text := func(v, typ string) string {
		if v == "" {
			return "CAST(NULL AS " + typ + ")"
		}
		return "CAST('" + strings.ReplaceAll(v, "'", "''") + "' AS " + typ + ")"
	}
	where := ""
	if len(rows) == 0 {
		// No such type: an empty result set with the same columns.
		rows, where = typeInfoRows[:1], " WHERE 1 = 0"
	}
	var sel []string
	for _, t := range rows {
		sel = append(sel, fmt.Sprintf("SELECT CAST(N'%s' AS sysname) AS TYPE_NAME, CAST(%d AS smallint) AS DATA_TYPE, "+
			"CAST(%d AS int) AS PRECISION, %s AS LITERAL_PREFIX, %s AS LITERAL_SUFFIX, %s AS CREATE_PARAMS, "+
			"CAST(1 AS smallint) AS NULLABLE, CAST(%d AS smallint) AS CASE_SENSITIVE, CAST(%d AS smallint) AS SEARCHABLE, "+
			"%s AS UNSIGNED_ATTRIBUTE, CAST(%d AS smallint) AS MONEY, CAST(0 AS smallint) AS AUTO_INCREMENT, "+
			"CAST(N'%s' AS sysname) AS LOCAL_TYPE_NAME, %s AS MINIMUM_SCALE, %s AS MAXIMUM_SCALE, "+
			"CAST(%d AS smallint) AS SQL_DATA_TYPE, %s AS SQL_DATETIME_SUB, %s AS NUM_PREC_RADIX, "+
			"CAST(NULL AS smallint) AS INTERVAL_PRECISION, CAST(%d AS smallint) AS USERTYPE"+where,
			t.name, t.dataType, t.precision, text(t.prefix, "varchar(32)"), text(t.suffix, "varchar(32)"),
			text(t.createParams, "varchar(32)"), t.caseSensitive, t.searchable, nullable(t.unsigned, "smallint"), t.money,
			t.name, nullable(t.minScale, "smallint"), nullable(t.maxScale, "smallint"), t.sqlDataType,
			nullable(t.dateTimeSub, "smallint"), nullable(t.radix, "int"), t.userType))
	}
	return s.execText(ctx, r, strings.Join(sel, " UNION ALL "), map[string]any{}, true)
}
