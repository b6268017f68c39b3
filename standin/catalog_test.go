package standin_test

import (
	"context"
	"testing"

	mssql "github.com/microsoft/go-mssqldb"

	"github.com/tdspool/tdspool/standin"
)

// The catalog views and optional keywords that ORMs and tools send at connection setup and
// for schema discovery (column names as SQL Server's; values for the current database).
func TestCatalogViewsAndOptionalKeywords(t *testing.T) {
	srv := start(t, standin.Config{Databases: []string{"tenant_a"}})
	c := oneConn(t, srv)
	runSteps(t, c, []step{
		{q: "CREATE TABLE cat_items (id INT NOT NULL PRIMARY KEY, name NVARCHAR(40) NULL, price DECIMAL(10,2) NOT NULL DEFAULT 0, blob VARBINARY(MAX))"},
		{q: "CREATE TABLE #tmp_only (x INT)"},
		// sys.databases: the system databases and the configured one, with DB_ID's ids.
		{q: "SELECT COUNT(*) FROM sys.databases", want: 5}, // master, tempdb, model, msdb, tenant_a
		{q: "SELECT database_id FROM sys.databases WHERE name = 'tenant_a'", want: 5},
		{q: "SELECT name FROM sys.databases WHERE database_id = DB_ID()", want: "tenant_a"},
		{q: "SELECT state_desc FROM master.sys.databases WHERE name = N'master'", want: "ONLINE"},
		// sys.schemas, sys.tables, sys.columns; object_id agrees with OBJECT_ID().
		{q: "SELECT schema_id FROM sys.schemas WHERE name = 'dbo'", want: 1},
		{q: "SELECT t.name FROM sys.tables t JOIN sys.schemas s ON s.schema_id = t.schema_id WHERE s.name = 'dbo'", want: "cat_items"},
		{q: "SELECT COUNT(*) FROM sys.tables WHERE object_id = OBJECT_ID(N'dbo.cat_items')", want: 1},
		{q: "SELECT type_desc FROM sys.tables WHERE name = 'cat_items'", want: "USER_TABLE"},
		{q: "SELECT COUNT(*) FROM sys.tables WHERE name LIKE '%tmp_only%'", want: 0}, // temp tables live in tempdb
		{q: "SELECT COUNT(*) FROM sys.columns WHERE object_id = OBJECT_ID('cat_items')", want: 4},
		{q: "SELECT max_length FROM sys.columns WHERE object_id = OBJECT_ID('cat_items') AND name = 'name'", want: 80},
		// INFORMATION_SCHEMA.
		{q: "SELECT TABLE_CATALOG + '.' + TABLE_SCHEMA + '.' + TABLE_NAME FROM INFORMATION_SCHEMA.TABLES WHERE TABLE_TYPE = 'BASE TABLE'", want: "tenant_a.dbo.cat_items"},
		{q: "SELECT COUNT(*) FROM INFORMATION_SCHEMA.COLUMNS WHERE TABLE_NAME = 'cat_items'", want: 4},
		{q: "SELECT DATA_TYPE FROM INFORMATION_SCHEMA.COLUMNS WHERE TABLE_NAME = 'cat_items' AND ORDINAL_POSITION = 2", want: "nvarchar"},
		{q: "SELECT CHARACTER_MAXIMUM_LENGTH FROM INFORMATION_SCHEMA.COLUMNS WHERE COLUMN_NAME = 'name'", want: 40},
		{q: "SELECT CHARACTER_MAXIMUM_LENGTH FROM INFORMATION_SCHEMA.COLUMNS WHERE COLUMN_NAME = 'blob'", want: -1},
		{q: "SELECT IS_NULLABLE FROM INFORMATION_SCHEMA.COLUMNS WHERE COLUMN_NAME = 'id'", want: "NO"},
		{q: "SELECT CAST(NUMERIC_PRECISION AS INT) * 100 + NUMERIC_SCALE FROM INFORMATION_SCHEMA.COLUMNS WHERE COLUMN_NAME = 'price'", want: 1002},
		{q: "SELECT COUNT(*) FROM INFORMATION_SCHEMA.COLUMNS WHERE TABLE_NAME = 'no_such_table'", want: 0},
		// SERVERPROPERTY as tools and drivers probe it (values of a SQL Server 2022 RTM default instance).
		{q: "SELECT SERVERPROPERTY('ProductMajorVersion')", want: "16"},
		{q: "SELECT CAST(SERVERPROPERTY('ProductLevel') AS NVARCHAR(10))", want: "RTM"},
		{q: "SELECT SERVERPROPERTY('Collation')", want: "SQL_Latin1_General_CP1_CI_AS"},
		{q: "SELECT CAST(SERVERPROPERTY('IsHadrEnabled') AS INT) + CAST(SERVERPROPERTY('IsClustered') AS INT)", want: 0},
		{q: "SELECT SERVERPROPERTY('InstanceName')", want: "<nil>"},
		// INSERT without INTO, DELETE without FROM.
		{q: "INSERT cat_items (id, name, price) VALUES (1, N'a', 1.5)"},
		{q: "INSERT dbo.cat_items VALUES (2, N'b', 2.5, NULL)"},
		{q: "SELECT COUNT(*) FROM cat_items", want: 2},
		{q: "DELETE cat_items WHERE id = 1"},
		{q: "SELECT SUM(id) FROM cat_items", want: 2},
		{q: "DECLARE @t TABLE (k INT); INSERT @t VALUES (7); SELECT k FROM @t", want: 7},
	})
}

// EXEC ( string ): dynamic SQL as migration tools and ORMs send it, in a variable scope of
// its own.
func TestExecString(t *testing.T) {
	srv := start(t, standin.Config{Databases: []string{"tenant_a"}})
	c := oneConn(t, srv)
	runSteps(t, c, []step{
		{q: "EXEC('SELECT 41 + 1')", want: 42},
		{q: "EXEC (N'SELECT ' + N'''dyn''')", want: "dyn"},
		{q: "IF OBJECT_ID('dyn_t') IS NULL EXEC('CREATE TABLE dyn_t (a INT); INSERT INTO dyn_t VALUES (5)')"},
		{q: "IF OBJECT_ID('dyn_t') IS NULL EXEC('CREATE TABLE dyn_t (a INT)')"}, // exists now: not run again
		{q: "SELECT SUM(a) FROM dyn_t", want: 5},
		{q: "DECLARE @sql NVARCHAR(200) = N'SELECT COUNT(*) FROM dyn_t'; EXEC(@sql)", want: 1},
		{q: "DECLARE @x INT = 1; EXEC('SELECT @x')", errCode: 137}, // the caller's variables are not in scope
		{q: "EXEC('SELECT 1') junk", errCode: 102},
	})
}

// A parameter selected on its own comes back with its own type, not the one SQLite's value
// suggests: a bit as bit (drivers give a boolean), a uniqueidentifier as uniqueidentifier.
func TestSelectedParameterKeepsItsType(t *testing.T) {
	srv := start(t, standin.Config{Databases: []string{"tenant_a"}})
	c := oneConn(t, srv)
	var b, n any
	if err := c.QueryRowContext(context.Background(), "SELECT @p1, @p2 + 1", true, 41).Scan(&b, &n); err != nil {
		t.Fatal(err)
	}
	if b != true || n != int64(42) {
		t.Errorf("SELECT @bit, @int + 1 = %v (%T), %v (%T); want true (bool), 42 (int64)", b, b, n, n)
	}
	g := mssql.UniqueIdentifier{0x6F, 0x96, 0x19, 0xFF, 0x8B, 0x86, 0xD0, 0x11, 0xB4, 0x2D, 0x00, 0xC0, 0x4F, 0xC9, 0x64, 0xFF}
	var back mssql.UniqueIdentifier
	if err := c.QueryRowContext(context.Background(), "SELECT @p1 AS id", g).Scan(&back); err != nil || back != g {
		t.Errorf("SELECT @guid = %v, %v; want %v", back, err, g)
	}
}

// sp_executesql as T-SQL sends it: named or positional arguments, named @stmt/@params, an
// empty parameter list, OUTPUT back into the caller's variable.
func TestSpExecuteSQLSpellings(t *testing.T) {
	srv := start(t, standin.Config{Databases: []string{"tenant_a"}})
	c := oneConn(t, srv)
	runSteps(t, c, []step{
		{q: "EXEC sp_executesql N'SELECT @x + 1', N'@x INT', @x = 5", want: 6},
		{q: "EXEC sp_executesql N'SELECT @x + 1', N'@x INT', 5", want: 6},
		{q: "EXEC sp_executesql @stmt = N'SELECT 7'", want: 7},
		{q: "EXEC sp_executesql @statement = N'SELECT @a * 2', @params = N'@a INT', @a = 4", want: 8},
		{q: "EXEC sp_executesql N'SELECT 1', N''", want: 1},
		{q: "DECLARE @o INT; EXEC sp_executesql N'SET @o = 9', N'@o INT OUTPUT', @o = @o OUTPUT; SELECT @o", want: 9},
		{q: "EXEC sp_executesql N'SELECT @x', N'@x INT'", errCode: 8178},
		{q: "SET TEXTSIZE 100; SELECT @@TEXTSIZE", want: 100},
	})
}

// Three-part names reach another database of the same server (db.schema.table, db..table,
// bracketed), reading and writing its table, not a same-named one of the current database.
func TestThreePartNamesReachTheOtherDatabase(t *testing.T) {
	srv := start(t, standin.Config{Databases: []string{"tenant_a", "tenant_b"}})
	c := oneConn(t, srv)
	runSteps(t, c, []step{
		{q: "CREATE TABLE shared (v INT); INSERT INTO shared VALUES (1)"}, // in tenant_a
		{q: "USE tenant_b; CREATE TABLE shared (v INT); INSERT INTO shared VALUES (20); USE tenant_a"},
		{q: "SELECT v FROM shared", want: 1},
		{q: "SELECT v FROM tenant_b.dbo.shared", want: 20},
		{q: "SELECT v FROM [tenant_b].[dbo].[shared]", want: 20},
		{q: "INSERT INTO tenant_b..shared VALUES (22)"},
		{q: "SELECT SUM(s.v) FROM tenant_b.dbo.shared s", want: 42},
		{q: "SELECT a.v * 100 + b.v FROM shared a JOIN tenant_b.dbo.shared b ON b.v = 20", want: 120},
		{q: "SELECT v FROM tenant_a.dbo.shared", want: 1},           // the current database's own name still works
		{q: "SELECT COUNT(*) FROM tenant_b.sys.databases", want: 6}, // server-wide: the 4 system databases and both tenants
	})
	// SQLite cannot ATTACH inside a transaction: a first reference there is refused, not misread.
	runSteps(t, oneConn(t, srv), []step{
		{q: "BEGIN TRAN; SELECT v FROM tenant_b.dbo.shared", errCode: 50000},
		{q: "IF @@TRANCOUNT > 0 ROLLBACK"},
		{q: "SELECT COUNT(*) FROM tenant_b.dbo.shared", want: 2},
	})
}
