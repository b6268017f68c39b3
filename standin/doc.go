// Package standin is a TDS server that real SQL Server drivers cannot tell
// from SQL Server where a pooler can observe it, executing a T-SQL subset on
// SQLite (modernc.org/sqlite, pure Go). It is test and demo infrastructure:
// the module's production code never imports it.
//
// # Files
//
//	server.go   Config (validated at once, every problem listed), Server:
//	            Start/Close, oracle counters (OpenConnections, PeakConnections,
//	            Sessions, SPIDs, Stats), fault injection (DropAll, ResetAll,
//	            Kill, RefuseNew, SetDelay), the accept loop, SPID allocation.
//	conn.go     One client connection: first-byte sniffing (0x12 PRELOGIN vs
//	            0x16 TDS 8 ClientHello), PRELOGIN and encryption negotiation
//	            (tds.NegotiateEncryption), TLS, LOGIN7 checks and the login
//	            response, then the reader/executor pair and ATTENTION handling.
//	tlsconn.go  TLS for TDS 7.x: a blocking io.ReadWriter around
//	            tds.TLSAdapter (PRELOGIN-wrapped handshake, login-only
//	            sniffing), message reading.
//	request.go  RPC calls from tds.DecodeRPC, parameter values from
//	            tds.RPCParam.Decode adapted to the executor's Go values.
//	session.go  Per-session state (SQLite connection, transaction, SET
//	            options, prepared handles), reply assembly, RESETCONNECTION,
//	            transactions with ENVCHANGE 8/9/10, TM requests.
//	options.go  SET options as per-session state: @@OPTIONS bits, the
//	            LOGIN7 defaults (fODBC), language, date, lock, text size,
//	            isolation level, deadlock priority.
//	context.go  CONTEXT_INFO, SESSION_CONTEXT, application roles.
//	control.go  BEGIN/END, IF/ELSE, WHILE, TRY/CATCH, THROW, ERROR_*(),
//	            table variables, OUTPUT INSERTED/DELETED.
//	procs.go    Stored procedures.
//	catalogprocs.go  sp_tables and sp_pkeys (JDBC's getTables and
//	            getPrimaryKeys) from the current database's schema.
//	cursors.go  STATIC server cursors: DECLARE/OPEN/FETCH/CLOSE/DEALLOCATE
//	            with @@FETCH_STATUS and CURSOR_STATUS, and the
//	            sp_cursoropen/sp_cursorfetch/sp_cursorclose RPCs.
//	logins.go   Logins at run time: CREATE/ALTER (PASSWORD, DISABLE,
//	            ENABLE)/DROP LOGIN by Config.Admins, the Go API
//	            (SetPassword, DisableLogin, ...), Config.LoginDelay.
//	smp.go      MARS: the SMP session multiplexer (Config.MARS).
//	applock.go  sp_getapplock/sp_releaseapplock/APPLOCK_MODE: session- or
//	            transaction-owned, SQL Server's mode compatibility, waits
//	            bounded by @LockTimeout or @@LOCK_TIMEOUT.
//	audit.go    The audit log (per request: SPID, login, database, kind,
//	            reset flags), SessionInfos and sys.dm_exec_sessions.
//	catalog.go  sys.databases/schemas/tables/columns and INFORMATION_SCHEMA
//	            TABLES/COLUMNS from the current database's SQLite schema.
//	tsql.go     Statements from tds.LexSQL tokens (the protocol library's
//	            lexer, shared with the request classifier).
//	exec.go     Statement execution: session commands and the T-SQL → SQLite
//	            rewrite; result sets as COLMETADATA + ROW; error mapping.
//	rpc.go      sp_executesql, sp_prepare/sp_execute/sp_prepexec/sp_unprepare,
//	            sp_reset_connection; T-SQL EXEC of the same procedures and
//	            EXEC ( string ) in a scope of its own.
//	types.go    SQL Server types, their SQLite storage, value conversion.
//	store.go    One SQLite file per database (<DataDir>/<db>.sqlite).
//	lean.go     Lean mode (Config.Lean), the benchmark's backend: the same
//	            handshake and login, no SQLite; SELECT 1 and STREAM <bytes>
//	            answered from prebuilt bytes by one goroutine per session.
//	compat/     The driver compatibility workload (go-mssqldb, python-tds,
//	            pymssql, tedious, mssql-jdbc), written once with the target
//	            address as a parameter.
//	cmd/standin  A command serving N buckets on consecutive ports.
//
// # Lifecycle of a connection
//
//  1. The accept loop counts the TCP connection (OpenConnections/Peak) and
//     gives it the lowest free SPID from 51; every reply header carries it.
//  2. serve reads one byte. 0x16: TLS first with ALPN "tds/8.0" (TDS 8
//     strict), then PRELOGIN inside TLS, answered NOT_SUP so no second TLS
//     layer starts. 0x12: PRELOGIN in clear; the answer follows the
//     MS-TDS matrix for the server's Encryption policy; then no TLS,
//     login-only TLS (LOGIN7's first packet or all of it encrypted, as the
//     driver sends it) or full TLS, the handshake wrapped in PRELOGIN packets.
//  3. LOGIN7: after Config.LoginDelay, SQL authentication against the
//     logins (Config.Users as changed at run time; a disabled one fails
//     with 18470 "Reason: The account is disabled."), then the database,
//     then MaxConnections. Failures are ERROR(s) + DONE(ERROR) exactly as
//     SQL Server sends them — 18456/1/14 "Login failed for user '<u>'.",
//     4060/1/11 then 18456 for an unknown database, 17809/3/20 over the
//     connection limit — and the connection closes.
//  4. The login response: ENVCHANGE database, INFO 5701, ENVCHANGE
//     collation (SQL_Latin1_General_CP1_CI_AS), ENVCHANGE language, INFO
//     5703, ENVCHANGE packet size, LOGINACK (TDS 7.4, "Microsoft SQL
//     Server" 16.0.1000 = SQL Server 2022), FEATUREEXTACK when the LOGIN7
//     has a FeatureExt (SESSIONRECOVERY and UTF8_SUPPORT acknowledged if
//     asked), DONE. The negotiated packet size applies from the next
//     message on.
//  5. A reader goroutine reads whole messages and hands them to the
//     executor (the connection's goroutine), which runs them one at a time
//     and writes every reply. ATTENTION is seen by the reader at once: it
//     cancels the running request's context (WAITFOR and SQLite queries
//     stop) and the executor ends the reply there with DONE(ERROR), then
//     sends DONE(ATTN) as a message of its own, as SQL Server does (only the
//     acknowledgement if the request had already been answered).
//  6. The connection ends on client close, a protocol error, DropAll/Kill,
//     or Close. A panic anywhere in the connection's goroutines is
//     recovered, logged and closes only that connection. The session's
//     transaction is rolled back and its temp tables dropped.
//
// # SQL
//
// Each session holds its own SQLite connection to its current database, so
// #temp tables (SQLite TEMP tables) are private to the session and
// BEGIN/COMMIT map onto SQLite transactions (WAL mode, 10 s busy timeout for
// lock waits between sessions). Declared SQL Server column types are kept in
// SQLite's schema (see types.go) so SELECT returns them. A batch is lexed
// (tds.LexSQL), split into statements and parsed into a tree of BEGIN ...
// END blocks, IF/ELSE, WHILE (BREAK/CONTINUE) and TRY/CATCH (control.go).
// Session commands (SET, USE, BEGIN/COMMIT/ROLLBACK/SAVE TRAN, WAITFOR
// DELAY, RAISERROR/THROW, PRINT, DECLARE incl. table variables, RETURN,
// EXEC) are interpreted; everything else is rewritten ([x], #t, N'..',
// 0x.., @vars, @@vars, TOP n, dbo. prefixes, GETDATE/NEWID/ISNULL/LEN/
// CAST/CONVERT/OBJECT_ID, IDENTITY as AUTOINCREMENT, OUTPUT INSERTED/
// DELETED as RETURNING) and run by SQLite. An error not caught by TRY ends
// the batch. Stored procedures (procs.go) live in each database's file
// (table __standin_procedures): CREATE [OR ALTER] / ALTER / DROP PROCEDURE,
// parameters with defaults and OUTPUT, RETURN status, ERROR_PROCEDURE(),
// error 266 on an unbalanced @@TRANCOUNT, called by RPC or EXEC.
//
// # Transactions
//
// As SQL Server: BEGIN TRAN nests (@@TRANCOUNT), only the outermost opens
// a SQLite transaction and announces its descriptor (ENVCHANGE 8); the last
// COMMIT commits (ENVCHANGE 9); ROLLBACK undoes everything (ENVCHANGE 10)
// unless it names a savepoint (SAVE TRAN), and a name that is neither the
// outermost transaction's nor a savepoint is error 6401. With SET
// IMPLICIT_TRANSACTIONS ON the statements SQL Server lists (DML, DDL,
// SELECT from a table, BEGIN TRAN) open a transaction when none is open.
// XACT_ABORT ON makes a run-time error roll the transaction back; with it
// OFF only the failing statement is undone. Inside TRY, XACT_ABORT dooms
// the transaction instead: XACT_STATE() -1, COMMIT and writes fail with
// 3930, and one still open at the end of the batch is rolled back with
// 3998. Transaction-manager requests begin (with an isolation level),
// commit, roll back and save the same way. Where SQLite ends a
// transaction on its own (an interrupted write), the session announces the
// rollback rather than keep a @@TRANCOUNT nothing backs; SQL Server would
// keep the transaction.
//
// # Session state and RESETCONNECTION
//
// A session starts from its LOGIN7: options from OptionFlags2 (fODBC:
// ANSI_DEFAULTS less IMPLICIT_TRANSACTIONS and CURSOR_CLOSE_ON_COMMIT,
// plus CONCAT_NULL_YIELDS_NULL = @@OPTIONS 5432), language us_english,
// DATEFIRST 7, DATEFORMAT mdy, LOCK_TIMEOUT -1, read committed, host and
// application names, the database. RESETCONNECTION (the packet flag or
// sp_reset_connection) rolls back the transaction (not with
// RESETCONNECTIONSKIPTRAN; announced with ENVCHANGE 10 ahead of the ack),
// drops temp tables and prepared handles, clears
// CONTEXT_INFO and SESSION_CONTEXT, deallocates cursors, releases
// session-owned application locks, restores every option but the
// transaction isolation level (sp_reset_connection keeps it, by design)
// and the login database (ENVCHANGE database/language when they differ) and
// acknowledges with ENVCHANGE 18. Under an application role set without a
// cookie being unset, the reset is refused with 18059 and the connection
// dropped, as SQL Server does.
//
// # Topologies
//
// Config.Redirect (SetRedirect at run time) answers every login with a
// routing ENVCHANGE (type 20) after LOGINACK, as Azure SQL's redirect
// policy and Availability Group read-only routing do; the client
// reconnects to the target and the connection closes. Encryption
// EncryptionRequired is SQL Server's Force Encryption: a client that
// cannot do TLS (PRELOGIN NOT_SUP) is refused and login-only clients are
// upgraded to full TLS. Config.MARS offers Multiple Active Result Sets
// (PRELOGIN MARS=1 to a client asking, not under login-only TLS) and
// serves SMP [MC-SMP] (smp.go): LOGIN7 on the first SMP session, more
// sessions by SYN, each reply on the session of its request, flow control
// by the SMP windows; the sessions share one SQL session and their
// requests run one at a time. Without it PRELOGIN answers MARS=0.
//
// # Oracle
//
// Audit (and AuditSince/AuditSeq) lists logins and requests with SPID,
// login, database, kind, RPC procedure names and the reset flags;
// SessionInfos shows each session's state as of its last request; Stats
// counts logins, failed logins, resets, attentions and peak sessions.
// SELECT ... FROM sys.dm_exec_sessions gives the same view in T-SQL with
// SQL Server's column names (session_id, login_name, host_name,
// program_name, database_id, open_transaction_count,
// transaction_isolation_level, context_info, date_format, ...).
//
// # What it does not do
//
// Known gaps a driver or ORM may hit: a three-part name (db.schema.table)
// reaches another database (SQLite ATTACH), but not for the first time
// inside a transaction, and every schema is dbo; no USE inside a
// transaction; + concatenates only next
// to a string literal (col + col adds); no divide-by-zero error (SQLite
// gives NULL); MERGE, PIVOT, window functions beyond SQLite's, sequences,
// triggers and views' SQL Server metadata are missing; of the catalog views
// only sys.dm_exec_sessions, sys.databases, sys.schemas, sys.tables (also
// as sys.objects), sys.columns, INFORMATION_SCHEMA.TABLES and .COLUMNS
// exist, with their common columns (catalog.go), every table in dbo and
// varchar/nchar columns reported as nvarchar; an expression over variables
// is typed from its value (a lone bit or uniqueidentifier variable in a
// FROM-less SELECT keeps its type, datetime and decimal ones do not; a
// select-list item that is one CAST or CONVERT has the target type);
// INSERT ... EXEC (and so JDBC's getColumns, which reads sp_columns_100
// that way) and OUTPUT ... INTO are refused; of the catalog procedures
// only sp_tables and sp_pkeys exist; cursors are STATIC only
// (no WHERE CURRENT OF, no ROWSTAT column on API cursor fetches);
// one language
// (us_english); lock waits between sessions are SQLite's database locks,
// not row locks; no Windows/Azure AD authentication, no DTC.
//
// # Debugging
//
// Set Config.Logf to see handshake failures, protocol errors and panics
// per connection (tagged with the server name and SPID); passwords and
// query text are never logged. Stats counts logins by transport (plain,
// login-only, full TLS, strict), resets and attentions, which tells which
// path a driver took. The SQLite files under DataDir can be opened with
// any SQLite tool while the server is stopped.
package standin
