// Package compat holds the driver workloads that check the stand-in, and the proxy in front
// of it, against real SQL Server drivers: go-mssqldb in process (RunGo), python-tds and
// pymssql (FreeTDS) as child processes running the embedded Python scripts (RunPytds,
// RunPymssql), tedious (Node.js) as a node child process (RunTedious, a shorter workload:
// parameters, transactions through the driver's API, a procedure with OUTPUT, a server
// error), and mssql-jdbc (Java) as one JVM per run of jdbc/JdbcWorkload.java (RunJDBC: every
// step batched in one run, including a query timeout and Statement.cancel, which send
// ATTENTION; RunJDBCLoginError for the proxy's own login errors). The same workload runs
// against the stand-in directly and through Envoy. pyodbc on FreeTDS's ODBC driver runs
// odbc_workload.py, every mode in one process (RunODBC; RunODBCConnectTwice,
// RunODBCIsolation and RunODBCLoginError for the pooling and refusal tests). RunConnectTwice, RunTediousConnectTwice
// and RunJDBCConnectTwice connect twice with one DSN (the pooling tests).
//
// Each workload checks, with the driver's own APIs: every column type
// round trip, a committed and a rolled-back transaction through the
// driver's autocommit-off API (the rollback must undo the insert and the
// update), prepared statements, OUTPUT parameters, a stored procedure with
// an OUTPUT parameter, TRY/CATCH (the caught error's number and message,
// and THROW surfacing it to the driver), a session-option round trip
// (DATEFIRST, LOCK_TIMEOUT, XACT_ABORT set and read back), a temp table
// gone after the pool's reset, a cancelled WAITFOR and server errors.
package compat
