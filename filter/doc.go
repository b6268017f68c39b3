// Package filter is tdspool's session logic: one state machine per client connection that
// answers PRELOGIN, terminates TDS 7.x TLS, reads LOGIN7, routes the login to a bucket, waits
// for a fleet-wide slot, starts the backend leg (Envoy's tcp_proxy, or a connection the
// module owns) and then relays the session while reading both directions for pin reasons and
// statistics. It has no cgo: it
// sees Envoy only through the interfaces of package envoy/host, so every test drives it with
// envoy/host/hosttest and a fake clock. docs/ARCHITECTURE.md has the picture and the phases.
//
// # Files
//
//	factory.go     Factory: one loaded filter config (validated config, stats, router, slot
//	               provider); NewFactory is the host.ConfigFactory the module registers
//	session.go     session: the phases (prelogin → client_tls → login → wait_slot →
//	               backend_prelogin → backend_login → relay → closed), timers, refusals, the
//	               one-time finish that releases the slot
//	tls.go         clientTLS: TDS 7.x TLS for the client, handshake steps off the worker
//	backend.go     backendLeg: the tcp_proxy leg and the module-owned leg (package
//	               filter/backend dials and holds those connections; filter/pool keeps
//	               logged-in ones for the next client with the same login)
//	pooling.go     session pooling (pool mode SESSION): a login answered from a pooled backend
//	               (replayed login reply, RESETCONNECTION on the first request, its ack
//	               consumed), misses handed to the pool with their slot, taints, a failed
//	               reset replaced by another idle backend or a hidden login with the kept
//	               LOGIN7, eviction for waiters, the sweeper, pool stats
//	txmode.go      transaction pooling (pool mode TRANSACTION): a login answered from its
//	               key's recorded reply (no backend, no slot) or, the key's first, logged in
//	               for real and its backend given to the pool; then a txLeg that cuts the
//	               client stream into packets, tells a txpool.Binding about each request,
//	               borrows a backend of the key per request (the bucket's FIFO of waiters,
//	               hand-off on release, 10928 past queue_timeout), sends the reset and the
//	               Reapply prelude whose answer it consumes, follows the response for the
//	               binding, answers a late ATTENTION, and gives the backend back at the end
//	txmode_grow.go a request finding no idle backend under the cap (after txGrowDelay): a slot
//	               and a hidden login with the client's LOGIN7; the new backend goes to the
//	               key's oldest waiter
//	hiddenlogin.go the hidden backend login: a new module-owned connection of a bucket is
//	               dialed (PRELOGIN/TLS by filter/backend) and logged in with a given LOGIN7,
//	               its response read and parsed, and nothing reaches any client;
//	               startHiddenLogin(hiddenLoginRequest{Bucket, Login7, Release, Deliver, Done})
//	               is bounded by login_timeout and calls Done once, on Deliver's thread (the
//	               session's worker: conn.Post) or a new goroutine (no session: warm-up), with
//	               a hiddenLoginResult — LOGINACK: the connection (no handler), its slot's
//	               Release, the recorded tds.LoginReply and the SPID; a refusal: the server's
//	               ERROR tokens. The slot's Release is the hidden login's from the call: on every
//	               failure (and a refused delivery) it closes the connection and releases the
//	               slot once the connection is gone; on success the receiver owns both
//	warmup.go      min_idle warm-up: the pool sweeper's goroutine tops each pooled bucket up
//	               with hidden logins of the operator's warm-up login, each on a real slot from
//	               the coordinator (never above the cap), at most two at a time, pausing longer
//	               after each failure; slots held by the pool count in slot_granted/released
//	               when they are taken and given back, whichever session is gone by then
//	relay.go       the relay phase: client messages classified, the response stream scanned,
//	               pin reasons, counters batched and flushed about once a second
//	isolation.go   a session-pooled session's transaction isolation level, followed from its
//	               requests: a reset keeps it, so a backend left at another level is closed
//	router.go      the routing rules (server name or SNI → database → user → default)
//	slots.go       Slots: the coordinator adapter and localSlots (caps in this process only)
//	fleet.go       the fleet view of pooled backends: a slot's holder record travels with it
//	               (slotKill.fleet) and shows the client it is lent to, with that session's
//	               pins, or idle; client records for sessions holding no slot (coordinator
//	               AddClient); only marks changes, the coordinator's worker writes Redis
//	txmode_fleet.go a transaction-pooled session's client record, the bound backend's holder
//	               and kill route, and its idle_timeout check
//	coordstats.go  coordinator measurements gathered off the worker, flushed through a
//	               connection (the ABI only updates stats through one)
//	metrics.go     every stat name, defined once per config
//	errors.go      the refusals a client sees (ERROR + DONE) and their numbers
//	drain.go       Envoy's drains (hot restart, /drain_listeners, LDS updates and removals, heard
//	               by the bootstrap extension, NewLifecycle): a session in a transaction closes
//	               when it ends, the others at timeouts.drain_timeout
//	env.go         small helpers reading the environment for the Redis client
//
// # Threads
//
// Envoy calls a session's methods on the connection's worker thread, one at a time; the
// session is never touched anywhere else. Slot answers, TLS handshake steps and timers run on
// other goroutines and hop back with host.Conn.Post; a post that fails (the connection is
// gone) releases what it carried. A post that was accepted can still be dropped unrun (Envoy
// destroys the connection first), so a slot or backend it carries is also kept where the
// session's end takes it back (a waiter's handed lease, a grant or a re-login in flight).
// The Factory is built on Envoy's main thread and then only
// read.
//
// # Invariants the tests hold
//
// Every slot that is granted is released exactly once, on every path (close, destroy without
// close, refusal after the grant, panic); FuzzSessionClientBytes checks it for arbitrary
// input. Every refusal reaches the client as a TDS ERROR then DONE with the error bit.
//
// # Debugging
//
// Envoy's log carries the session's decisions tagged [C<connection id>] (no passwords, no
// query text); the per-bucket stats show where sessions wait, why they are pinned and how
// they end.
package filter
