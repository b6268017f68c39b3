package standin_test

import (
	"context"
	"testing"

	"github.com/tdspool/tdspool/standin"
)

// SQLGetTypeInfo in FreeTDS's ODBC driver sends "sp_datatype_info_100 <type>,3" as a batch:
// a procedure named, without EXEC, as the batch's first statement. pyodbc binds parameters by
// the answers (COLUMN_SIZE of varchar, nvarchar, varbinary and timestamp); without them it cut
// nvarchar(max) values to 4000 characters and datetimes to the second. Before, the stand-in
// answered error 102 to the batch and had no such procedure.
func TestDatatypeInfo(t *testing.T) {
	srv := start(t, standin.Config{Databases: []string{"tenant_a"}})
	c := oneConn(t, srv)
	for _, tc := range []struct {
		q         string
		name      string
		dataType  int64
		precision int64
		rows      int
	}{
		{"sp_datatype_info_100 93,3", "datetime", 93, 23, 3},
		{"sp_datatype_info_100 -9,3", "nvarchar", -9, 4000, 1},
		{"sp_datatype_info_100 -3,3", "varbinary", -3, 8000, 1},
		{"sp_datatype_info_100 12,3", "varchar", 12, 8000, 1},
		{"EXEC sp_datatype_info 11", "datetime", 11, 23, 3}, // ODBC 2 numbering (the default)
		{"EXEC sys.sp_datatype_info_100 @data_type = 4, @ODBCVer = 3", "int", 4, 10, 1},
		{"sp_datatype_info_100 0,3", "uniqueidentifier", -11, 36, 24}, // every type, by DATA_TYPE
	} {
		rows, err := c.QueryContext(context.Background(), tc.q)
		if err != nil {
			t.Errorf("%s: %v", tc.q, err)
			continue
		}
		cols, _ := rows.Columns()
		n := 0
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatalf("%s: %v", tc.q, err)
			}
			if n == 0 && (vals[0] != tc.name || vals[1] != tc.dataType || vals[2] != tc.precision) {
				t.Errorf("%s: first row %v %v %v, want %s %d %d", tc.q, vals[0], vals[1], vals[2], tc.name, tc.dataType, tc.precision)
			}
			n++
		}
		rows.Close()
		if len(cols) != 20 || cols[0] != "TYPE_NAME" || cols[2] != "PRECISION" || cols[19] != "USERTYPE" || n != tc.rows {
			t.Errorf("%s: %d rows of columns %v; want %d rows of SQL Server's 20 columns", tc.q, n, cols, tc.rows)
		}
	}
	runSteps(t, c, []step{
		{"CREATE PROCEDURE ti_seven AS SELECT 7", nil, 0},
		{"ti_seven", int64(7), 0},        // a user procedure first in the batch runs too
		{"sp_no_such_proc 1", nil, 2812}, // as SQL Server: a call, of a missing procedure
		{"exec_nothing_here", nil, 2812},
	})
}
