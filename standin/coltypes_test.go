package standin_test

import (
	"context"
	"database/sql"
	"fmt"
	"testing"
	"time"

	"github.com/tdspool/tdspool/standin"
)

// columnTypes runs q and returns its columns' SQL Server types as the driver saw them
// (DECIMAL with precision and scale) and the first row.
func columnTypes(t *testing.T, c *sql.Conn, q string, args ...any) ([]string, []any) {
	t.Helper()
	rows, err := c.QueryContext(context.Background(), q, args...)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	defer rows.Close()
	cts, _ := rows.ColumnTypes()
	var names []string
	for _, ct := range cts {
		n := ct.DatabaseTypeName()
		if p, s, ok := ct.DecimalSize(); ok && n == "DECIMAL" {
			n = fmt.Sprintf("DECIMAL(%d,%d)", p, s)
		}
		names = append(names, n)
	}
	vals := make([]any, len(cts))
	ptrs := make([]any, len(cts))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	if !rows.Next() {
		t.Fatalf("%s: no row (%v)", q, rows.Err())
	}
	if err := rows.Scan(ptrs...); err != nil {
		t.Fatal(err)
	}
	return names, vals
}

// time and datetimeoffset are types of their own, as in SQL Server: a time column holds a
// time of day (TIMEN), a datetimeoffset one keeps its offset (DATETIMEOFFSETN). Before, time
// was unknown (error 2715) and datetimeoffset a datetime2 without the offset, so mssql-jdbc's
// OffsetDateTime came back in UTC+0 with the local time.
func TestTimeAndDateTimeOffsetColumns(t *testing.T) {
	srv := start(t, standin.Config{Databases: []string{"tenant_a"}})
	c := oneConn(t, srv)
	ctx := context.Background()
	if _, err := c.ExecContext(ctx, "CREATE TABLE tz (id INT, t TIME(7), t0 TIME(0), o DATETIMEOFFSET(7)); "+
		"INSERT INTO tz VALUES (1, '13:14:15.1234567', '13:14:15', '2024-02-29 13:14:15.1234567 +05:30')"); err != nil {
		t.Fatal(err)
	}
	ist := time.FixedZone("", 5*3600+30*60)
	// go-mssqldb sends a time.Time as datetimeoffset.
	if _, err := c.ExecContext(ctx, "INSERT INTO tz (id, o) VALUES (2, @p1)", time.Date(2024, 3, 1, 1, 2, 3, 400000000, ist)); err != nil {
		t.Fatal(err)
	}
	names, row := columnTypes(t, c, "SELECT t, t0, o FROM tz WHERE id = 1")
	if fmt.Sprint(names) != "[TIME TIME DATETIMEOFFSET]" {
		t.Errorf("column types %v", names)
	}
	tm, tm0, o := row[0].(time.Time), row[1].(time.Time), row[2].(time.Time)
	if got := tm.Format("15:04:05.0000000") + " " + tm0.Format("15:04:05.000"); got != "13:14:15.1234567 13:14:15.000" {
		t.Errorf("times %s", got)
	}
	if _, off := o.Zone(); off != 5*3600+30*60 || o.Format("2006-01-02 15:04:05.0000000") != "2024-02-29 13:14:15.1234567" {
		t.Errorf("datetimeoffset %v", o)
	}
	_, row = columnTypes(t, c, "SELECT o FROM tz WHERE id = 2")
	if o := row[0].(time.Time); !o.Equal(time.Date(2024, 3, 1, 1, 2, 3, 400000000, ist)) {
		t.Errorf("datetimeoffset parameter came back as %v", o)
	} else if _, off := o.Zone(); off != 5*3600+30*60 {
		t.Errorf("datetimeoffset parameter lost its offset: %v", o)
	}
}

// A select-list item that is a CAST or CONVERT has the target type, as SQL Server reports it;
// before, SQLite's expression without a declared type came back typed from its value (a
// decimal as nvarchar, which mssql-jdbc returns as a String from getObject).
func TestCastTypesTheColumn(t *testing.T) {
	srv := start(t, standin.Config{Databases: []string{"tenant_a"}})
	c := oneConn(t, srv)
	if _, err := c.ExecContext(context.Background(), "CREATE TABLE ct (id INT, s NVARCHAR(10)); INSERT INTO ct VALUES (7, N'x')"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ q, want string }{
		{"SELECT CAST(12345.6789 AS DECIMAL(18,4)), CONVERT(BIGINT, 42) AS b, CAST(1 AS BIT) bit, TRY_CAST('2024-02-29' AS DATE), 1 + 1",
			"[DECIMAL(18,4) BIGINT BIT DATE INT]"},
		{"SELECT CAST(id AS DECIMAL(10,2)) AS d, s, CAST(id AS NVARCHAR(20)) FROM ct WHERE id = 7", "[DECIMAL(10,2) NVARCHAR NVARCHAR]"},
		{"SELECT CAST('13:14:15' AS TIME(3)), CAST('2024-02-29 13:14:15 +01:00' AS DATETIMEOFFSET(2))", "[TIME DATETIMEOFFSET]"},
		{"SELECT *, CAST(id AS BIGINT) FROM ct", "[INT NVARCHAR INT]"}, // * : positions unknown, typed from values
	} {
		if names, _ := columnTypes(t, c, tc.q); fmt.Sprint(names) != tc.want {
			t.Errorf("%s: column types %v, want %s", tc.q, names, tc.want)
		}
	}
}

// sys.dm_exec_sessions reports SQL Server's column types (smallint, bit, datetime), not the
// int its literal values would get: mssql-jdbc returns a smallint as Short.
func TestDMExecSessionsColumnTypes(t *testing.T) {
	srv := start(t, standin.Config{Databases: []string{"tenant_a"}})
	c := oneConn(t, srv)
	names, _ := columnTypes(t, c, "SELECT session_id, transaction_isolation_level, quoted_identifier, login_time, lock_timeout, "+
		"program_name FROM sys.dm_exec_sessions WHERE session_id = @@SPID")
	if want := "[SMALLINT SMALLINT BIT DATETIME INT NVARCHAR]"; fmt.Sprint(names) != want {
		t.Errorf("column types %v, want %s", names, want)
	}
}

// money and smallmoney are reported as themselves (MONEYN 8 and 4), as SQL Server does;
// before, as decimal(19,4) and decimal(10,4), which JDBC's ResultSetMetaData named "decimal".
func TestMoneyColumns(t *testing.T) {
	srv := start(t, standin.Config{Databases: []string{"tenant_a"}})
	c := oneConn(t, srv)
	if _, err := c.ExecContext(context.Background(), "CREATE TABLE m (a MONEY, b SMALLMONEY); "+
		"INSERT INTO m VALUES (123456789.1234, -214748.3648)"); err != nil {
		t.Fatal(err)
	}
	names, row := columnTypes(t, c, "SELECT a, b, CAST(1.5 AS MONEY), CAST(2 AS SMALLMONEY) FROM m")
	if fmt.Sprint(names) != "[MONEY SMALLMONEY MONEY SMALLMONEY]" {
		t.Errorf("column types %v", names)
	}
	var got []string
	for _, v := range row {
		got = append(got, fmt.Sprintf("%s", v))
	}
	if want := "[123456789.1234 -214748.3648 1.5000 2.0000]"; fmt.Sprint(got) != want {
		t.Errorf("values %v, want %s", got, want)
	}
	var out string
	if err := c.QueryRowContext(context.Background(), "DECLARE @x MONEY = 12.34; SELECT CAST(@x * 2 AS NVARCHAR(30))").Scan(&out); err != nil || out != "24.68" && out != "24.6800" {
		t.Errorf("money arithmetic: %q %v", out, err)
	}
}
