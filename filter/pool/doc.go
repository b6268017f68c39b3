// Package pool keeps logged-in backend sessions of one bucket for reuse by
// later clients with the same login: session pooling. It is pure Go (no
// cgo, no sockets, time passed in) and generic over the backend connection
// type, which only has to Close and say whether it is Alive.
//
// # Files
//
//	key.go          Identity, Credential (keyed hash), Hasher, Key, KeyFromLogin7,
//	                Dedicated (logins never pooled), Taint (sessions never reused)
//	pool.go         Pool: per-key LIFO idle stacks, Borrow/Adopt/Lease, eviction,
//	                sweeping, drain
//	stats.go        Stats, KeyStats, the borrow-wait Histogram
//	warmup.go       Warmup and SecretSource: operator credentials for MinIdle
//	golden_test.go  against the stand-in: a replayed login reply and a reset
//	                session's answer are what the server itself sends
//
// # The key
//
// A backend session is reused only by a client whose Key equals the one it
// was logged in with (KeyFromLogin7):
//
//   - bucket, user, database, language, app name: they set what the session
//     is (DB_NAME(), @@LANGUAGE, APP_NAME(), permissions);
//   - a keyed hash of user+password (Credential): HMAC-SHA256 with a key
//     drawn per process, compared in constant time, printed as a
//     redaction; the password itself is never stored;
//   - the TDS version as the backend sees it (8.0 becomes 7.4: TDS 8 is
//     TLS framing around 7.4 tokens);
//   - the LOGIN7 option and type flags, which set the session's ANSI
//     defaults, ODBC behaviour, read-only intent and user type. Two bits
//     are left out: fExtension (the feature set says it) and
//     fChangePassword (such logins are never pooled);
//   - the client LCID;
//   - the requested FeatureExt set with each feature's data, sorted, but
//     without SESSIONRECOVERY: backend logins never ask for it
//     (tds.StripSessionRecovery) and clients never get it acknowledged, so
//     a client that asks and one that does not get the same backend.
//
// Not in the key, and therefore reported from the first client of the
// backend session: host name (HOST_NAME()), client PID, connection and
// client ids, server name, client library name and version, time zone.
// The packet size is not in the key either: each client is answered with
// its own (tds.LoginReply.AppendReplay) and the proxy frames each leg at
// its size.
//
// # Never pooled
//
// DedicatedReason: integrated (SSPI) and federated (FEDAUTH)
// authentication (no password to check a later client against),
// change-password logins, AttachDBFile and user instances. Sessions that
// turn out unsafe to reuse are tainted through their Lease (Taint): an
// application role was set (a reset does not undo it), the response stream
// could not be parsed, the client left with a request in flight, or it
// left with a transaction or server cursor open (idle, the backend would
// hold their locks until the next borrower's reset; closed, the server
// rolls back at once). A tainted backend is closed when the session ends.
//
// # Lifecycle of a backend
//
//  1. A client's LOGIN7 → KeyFromLogin7 → Borrow. A Hit lends the most
//     recently used idle backend of the key (LIFO, so a quiet pool's spare
//     backends age out through MaxIdleTime); the client is answered from
//     Lease.Reply and its first request carries RESETCONNECTION. A backend
//     that died while idle or outlived its limits is closed on the way and
//     the next one tried.
//  2. A Miss (no idle backend, another credential, ReauthAfter due, no
//     recorded reply, draining) means a real login on a new backend with a
//     slot of its own. Its success goes to Adopt with the recorded reply
//     and the slot's release; a refusal of the key's trusted credential to
//     LoginRefused, which forgets the key.
//  3. The reset's outcome: Lease.ResetDone. A failed reset closes the
//     backend; the session borrows again and resends its first request.
//     With no other idle backend, Lease.DetachFailed hands the failed
//     backend's slot to the session, which logs a new backend in with the
//     client's login and Adopts it.
//  4. The client leaves: Lease.Return puts the backend on top of its key's
//     idle stack, or closes it (tainted, dead, past MaxLifetime, an old
//     credential, draining). Lease.Discard closes it outright.
//  5. Around that: EvictIdle frees a slot for a waiter of the bucket by
//     closing the oldest idle backend of another key; Sweep closes idle
//     backends past their limits; WarmupNeeded and AdoptIdle keep MinIdle
//     warm backends with the operator's credentials (Warmup); Drain closes
//     the idle ones and every one that comes back.
//
// A pooled backend keeps the slot it was created with: the bucket's cap
// counts backend connections. The pool calls the slot's release exactly
// once, after closing the connection, on every path.
//
// # Passwords and the reauth window
//
// Reusing a backend skips the server's password check. A wrong password
// never reuses (its credential differs: a real login, and the server's own
// error reaches the client). A password changed or a login disabled on the
// server keeps working from the pool until ReauthAfter has passed since
// the key's last real login; the next borrow then logs in for real, the
// server refuses it, and LoginRefused closes the key's idle backends.
// MaxLifetime bounds how long any one backend session lives.
//
// # Threads
//
// Pool methods are safe for concurrent use; one mutex per bucket guards the
// stacks and counters. Sessions call Borrow, Adopt and their Lease's
// methods from their Envoy worker thread; a Lease belongs to one session.
// The bucket's maintenance goroutine calls Sweep, EvictIdle, WarmupNeeded
// and AdoptIdle; Envoy's drain calls Drain. Conn.Alive is called under the
// lock and must not block; Conn.Close and slot releases run after the lock
// is dropped, on the calling goroutine.
//
// # Stats
//
// Pool.Stats and Pool.KeyStats return plain Go values: idle / active /
// pooled gauges, per-key counts, borrowed, created, logins saved, reset
// failures, evictions, misses and taints by reason, and the borrow-wait
// histogram the session feeds with ObserveBorrowWait.
package pool
