// Package txpool is the pure part of transaction pooling: a client session holds a backend
// only while it needs one, and what it set on one backend follows it to the next. It has no
// cgo, no sockets and no clock of its own (time is passed in); the filter drives it with the
// client's requests and the server's token events and carries out what it decides.
//
// # Files
//
//	state.go    State: the database, language and SET options that move with a client;
//	            Reapply: the smallest batch that takes a backend to a client's State
//	binding.go  Binding: when a client is bound to a backend, when it may let go, what an
//	            ATTENTION or a queue timeout does
//
// # What moves and what pins
//
// The database and language come from the server's ENVCHANGEs. SET options are taken from
// the client's SQL batches when SQL Server keeps them per session and a reset restores them
// (ANSI_*, ARITHABORT, ARITHIGNORE, CONCAT_NULL_YIELDS_NULL, CURSOR_CLOSE_ON_COMMIT,
// NUMERIC_ROUNDABORT, QUOTED_IDENTIFIER, NOCOUNT, XACT_ABORT, IMPLICIT_TRANSACTIONS,
// DATEFORMAT, DATEFIRST, LANGUAGE, LOCK_TIMEOUT, TEXTSIZE, ROWCOUNT, DEADLOCK_PRIORITY,
// TRANSACTION ISOLATION LEVEL) and the value is a literal we can repeat. A SET that might not
// have run as written pins the session instead: one in an RPC (dynamic SQL's settings end
// with it), in a batch with control flow or a module body (StraightLine), with a variable or
// unexpected value, or in a request whose response carried an ERROR.
//
// A batch that defines a module (CREATE/ALTER PROCEDURE, FUNCTION, TRIGGER, VIEW) changes
// nothing of the session now, whatever its body holds (DefinesModule); a temporary procedure
// pins.
//
// Pinned, the session keeps its backend: an open transaction (ENVCHANGE 8 until 9, 10 or 17),
// temp tables, server cursors, bulk load, prepared handles, application locks, an
// application role or a stream that could not be followed (these two for good), MARS,
// session context (sp_set_session_context, SET CONTEXT_INFO: values that cannot be read back
// to re-apply, and read-only keys that cannot be set twice; until the client resets its own
// session), and any untracked SET. Prepared statements pin rather than being virtualised: the handle a
// client holds names a plan in one backend session, and pinning keeps that true without the
// proxy rewriting RPCs. The pin lasts while handles are open: prepares are counted against
// unprepares (an unprepare answered with an ERROR does not count), so a driver that
// unprepares when its statement closes moves again. Measured on the compatibility workloads
// (TestWhichWorkloadsPin): go-mssqldb's database/sql prepared statements never pin (it sends
// sp_executesql); explicit sp_prepare from go-mssqldb, python-tds and pymssql pins until
// sp_unprepare.
//
// # What the filter does with a Binding
//
// It calls Request when a client request starts (with the classified facts and the batch
// text), Attention for an ATTENTION, ServerEvent for every event of the bound backend's
// response stream, Tick while Borrowing, and Borrowed when the pool lends a backend (after a
// reset the backend is in the login State). Borrow: hold the request's bytes and borrow
// (waiting at most until Deadline); a non-empty prelude from Borrowed goes out first as a SQL
// batch whose response the client never sees (ConsumingPrelude); ForwardHeld sends the held
// request; Release returns the backend to its key's pool; Refuse answers the held request
// with 10928 without running it; AnswerAttention sends DONE(ATTN) from the proxy; Fail
// discards the backend and answers the held request with an error.
package txpool
