package standin_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/tdspool/tdspool/standin"
)

// sp_tables and sp_pkeys, which mssql-jdbc's DatabaseMetaData.getTables and getPrimaryKeys
// call (ORMs read them to validate a schema), answer from the database's schema with SQL
// Server's columns; before, both were error 2812 (no such procedure).
func TestCatalogProcedures(t *testing.T) {
	srv := start(t, standin.Config{Databases: []string{"tenant_a"}})
	c := oneConn(t, srv)
	ctx := context.Background()
	if _, err := c.ExecContext(ctx, "CREATE TABLE orders (id INT NOT NULL, line INT NOT NULL, qty INT, PRIMARY KEY (id, line)); "+
		"CREATE TABLE order_notes (id INT PRIMARY KEY, note NVARCHAR(50))"); err != nil {
		t.Fatal(err)
	}
	rowsOf := func(q string, args ...any) []string {
		t.Helper()
		rows, err := c.QueryContext(ctx, q, args...)
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		defer rows.Close()
		cols, _ := rows.Columns()
		var out []string
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			out = append(out, strings.TrimSuffix(fmt.Sprintln(vals...), "\n"))
		}
		return out
	}
	for _, tc := range []struct{ q, want string }{
		{"EXEC sp_tables @table_name = 'order%', @table_type = '''TABLE'''", "[tenant_a dbo order_notes TABLE <nil> tenant_a dbo orders TABLE <nil>]"},
		{"EXEC sp_tables 'order[_]%'", "[tenant_a dbo order_notes TABLE <nil>]"},
		{"EXEC sp_tables NULL, 'dbo', NULL, '''VIEW'''", "[]"},
		{"EXEC sp_tables 'orders', 'sys'", "[]"},
		{"EXEC sp_pkeys @table_name = 'orders'", "[tenant_a dbo orders id 1 PK_orders tenant_a dbo orders line 2 PK_orders]"},
		{"EXEC sp_pkeys 'ORDER_NOTES'", "[tenant_a dbo order_notes id 1 PK_order_notes]"},
	} {
		if got := fmt.Sprint(rowsOf(tc.q)); got != tc.want {
			t.Errorf("%s:\n got %s\nwant %s", tc.q, got, tc.want)
		}
	}
	if _, err := c.ExecContext(ctx, "EXEC sp_tables 'orders', NULL, 'master'"); err == nil {
		t.Error("sp_tables with another database's qualifier: no error, want 15250")
	}
}
