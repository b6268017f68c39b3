// Package coordinator hands out fleet-wide connection slots per bucket (one
// SQL Server instance) through Redis: a cap that holds across every proxy, a
// fair FIFO queue across proxies, leases that come back by themselves when a
// proxy dies, and a safe local quota while Redis is unreachable. It knows
// nothing of TDS or Envoy.
//
// # Files
//
//	coordinator.go  public API: Coordinator, Acquire/AcquireRequest/Cancel/
//	                Release, SetCap, Snapshot, Close; Request, Holder,
//	                Result, Lease, Ticket, Outcome, Mode, State; the Pub/Sub
//	                listener, the heartbeat ticker and the proxy table entry
//	fleet.go        Fleet: the operator's side (tdspoolctl): read proxies,
//	                buckets, leases and holders; set cap or state; kill
//	clients.go      holder changes (Lease.SetHolder) and client records
//	                (AddClient): batched writes off the caller's path
//	bucket.go       one bucket's local state and its worker goroutine (the
//	                only goroutine that calls Redis for the bucket), fallback
//	                quota, reply parsing
//	scripts.go      the Lua: one script per atomic operation (acquire,
//	                release/cancel, heartbeat, setcap) on a shared prelude
//	                (TIME, epoch/grace, state, pump); the proxy table's script
//	config.go       Config, BucketConfig, RedisConfig (AUTH/ACL user, TLS,
//	                Sentinel, Cluster via go-redis UniversalOptions), defaults,
//	                Validate, key names
//	metrics.go      the Metrics hooks the filter implements
//	internal/proxysim   one simulated proxy process for multi-process tests
//
// # Redis keys (per bucket b, prefix P; "{b}" is the Cluster hash tag)
//
//	P:{b}:h     ZSET lease id -> expiry ms (Redis TIME)      TTL 2×max(lease, waiter TTL)
//	P:{b}:q     ZSET waiter id -> ticket                     same
//	P:{b}:qa    ZSET waiter id -> liveness deadline ms       same
//	P:{b}:seq   STRING ticket counter (INCR)                 same
//	P:{b}:px    ZSET proxy id -> last call ms (live proxies) same
//	P:{b}:meta  HASH cap, cap_by, cap_at, state, state_by,   MetaTTL (24h)
//	                 state_at, epoch, grace_until, seen, grants
//	P:{b}:i     HASH id -> "<since ms> <holder JSON>"        2×max(lease, waiter TTL)
//	P:{b}:kill  SET lease ids an operator asked to end      1 min
//	P:{b}:c:<proxyId>  HASH client id -> "<since ms> <holder JSON>": client sessions
//	                 holding no slot (never counted)         LeaseTTL, renewed by heartbeats
//	P:proxies   HASH proxy id -> JSON (host, pid, buckets, labels, seen)  MetaTTL
//	P:grant:<proxyId>  Pub/Sub channel: "<bucket>\n<id>\n<ticket>\n<grantSeq>"
//	P:control   Pub/Sub channel: "<bucket>": an operator changed it; heartbeat now
//
// Ids are "<proxyId>:<n>"; a request keeps its id from Acquire to Release, so
// every script is idempotent (a retried acquire finds its id, a second
// release finds nothing).
//
// # Lifecycle of one slot
//
//  1. Acquire (any goroutine, returns at once) creates a Ticket and wakes the
//     bucket's worker.
//  2. The worker sends every unsent ticket of the bucket in one acquire
//     script call (batching). The script reaps expired leases and dead
//     waiters, then grants at once if the queue is empty and a slot is free
//     (one round trip), refuses if the queue is at MaxQueue, or enqueues the
//     id under a ticket from INCR.
//  3. Whenever a slot frees (release, cancel, expiry, cap raised), the script
//     that freed it hands it to the head ticket (ZADD into h) and notifies
//     only the owner: in its own reply (a full lease), or by PUBLISH to the
//     owner's channel (a lease of ClaimTTL only). A waiter whose proxy has
//     not called within ClaimTTL is skipped (dropped; a live proxy re-queues
//     it with its old ticket at its next heartbeat).
//  4. A hinted grant is claimed first: the worker runs a heartbeat, which
//     renews it to a full lease and reports it (the heartbeat, every
//     Heartbeat per bucket with work, also polls for grants whose hint was
//     lost). Then the callback gets Granted with a Lease. The heartbeat renews
//     all of this proxy's leases of the bucket in one call (upsert: a lease
//     Redis lost is taken back).
//  5. Release drops the lease locally and the worker ZREMs it; the freed slot
//     goes to the head waiter in that same script.
//  6. A deadline (timer) or Cancel ends a waiting ticket; the worker ZREMs the
//     id everywhere, so a grant that raced with it passes to the next waiter.
//
// # Threads
//
// Acquire, Cancel, Release, SetCap, Snapshot and Lease.SetPins take a mutex for
// microseconds and never touch Redis, so the filter may call them on Envoy's
// worker thread. Callbacks and Metrics run on coordinator goroutines (bucket
// workers, timers, the Pub/Sub listener), never inside those calls; they must
// be cheap (the filter posts the result to its Envoy worker) and may call
// Release or Cancel. Each bucket's Redis calls are serialised in its worker,
// so a heartbeat that re-asserts a lease always precedes the release that
// drops it; a call never takes longer than CallTimeout.
//
// # Guarantees
//
// Healthy Redis: admission is checked inside one script against the count
// of unexpired leases, so the cap is never exceeded; grants follow ticket
// order (a waiter whose proxy stops renewing it is dropped after WaiterTTL
// and re-queued with its old ticket if the proxy comes back).
//
// Killed proxy: its leases expire LeaseTTL after their last renewal and the
// next call of any proxy reaps them: slots return within LeaseTTL +
// Heartbeat. Its waiters are granted nothing once ClaimTTL has passed since
// its last call, and what they were granted before (unclaimed) returns
// ClaimTTL after the grant, so slots freed after its death go to live
// proxies' waiters. TestMultiProcessKillProxyReclaim measures it with the
// filter's timings (lease 8 s, heartbeat 2 s): reclaimed in 7.9–8.0 s,
// grants to the dead made within 1.2 s of its death and kept at most 3.0 s
// (claim window 2.5 s; before claims they kept the slot for the full 8 s
// lease). Its waiters vanish after
// WaiterTTL.
//
// Data loss (restart without persistence, failover to an empty replica,
// FLUSHALL, meta expired): the first call finds no epoch, starts a new one
// and pauses grants for Grace while every live proxy re-asserts its leases
// and waiters (with their old tickets; new tickets are seeded from the clock
// so they sort after). The same pause follows a silence longer than
// SilenceGap while leases exist (Redis stopped, or unreachable for everyone),
// so leases whose scores ran out meanwhile are not reaped before their
// owners renew them. A bucket's first use also pays this pause once.
//
// Redis unreachable from this proxy (FallbackAfter failed calls in a row):
// sessions are never killed. New sessions are admitted while this proxy
// holds fewer than quota = owned + share leases, where owned is the number of
// its leases Redis still counts (granted and not confirmed released; a
// release whose call timed out counts as done, since it may have run) and
// share = floor((cap − held) / live proxies) from the last reply, if that
// reply is younger than LeaseTTL and not in grace. Others wait in a local
// FIFO with the same deadline. Bound, when Redis is down for every proxy:
// Σ owned ≤ the leases Redis held when it went down, so the fleet holds at
// most cap + Σ share − (free slots when Redis went down) ≤ cap + the net
// growth of the bucket's lease count during the last Heartbeat before the
// outage, plus the shares of proxies that joined the bucket within that
// window. It is exactly cap when the bucket was at its cap (share 0) or
// steady, and always exactly cap with Config.FallbackStrict (share 0). A
// proxy that never got a reply has quota 0. A partition that cuts off one
// proxy for longer than LeaseTTL lets Redis re-grant that proxy's slots
// while its sessions stay open: the overshoot is at most what that proxy
// held, and it drains (re-assert pushes the count above the cap, which stops
// grants). On recovery the heartbeat re-asserts every open session's lease,
// re-queues waiters, and the worker sends pending releases and new acquires.
//
// Caps: Redis stores the cap (and who set it, when). A coordinator writes its
// configured caps when it starts (New), and the filter starts a new
// coordinator for every config Envoy loads, so the most recently loaded
// config sets the fleet's cap; Fleet.SetCap (an
// operator) overrides it until the next config load anywhere. Raising grants
// queued waiters at once (the control channel makes every proxy with waiters
// call); lowering never removes a lease: grants stop until the count is under
// the new cap. Every reply carries the enforced cap (Result.Cap, Snapshot,
// Metrics.Enforced).
//
// Operator state (Fleet.SetState, meta "state"), checked inside the scripts:
// paused grants nothing (requests queue until their deadline; resume grants
// them in ticket order); draining and disabled refuse new requests at once
// (Outcome Draining, Disabled) and waiters when their proxy hears of it (its
// next reply: at once through the control channel, else within Heartbeat);
// held leases live on until released. Fleet.Kill puts a lease id in the kill
// set; its owner's next heartbeat takes it out and calls Request.OnKill.
//
// Holders: AcquireRequest stores a JSON record (proxy, client, user, app,
// database, pins) for each waiter and lease in the same script call; a grant
// restamps its "since"; a release, reap or dead waiter removes it; pins
// changed by Lease.SetPins, and a holder replaced by Lease.SetHolder (a pooled
// backend lent to another client, or idle), are written by the bucket's worker
// in one call per 100 ms of changes (clients.go); so are client records
// (AddClient: a session holding no slot, which a kill can end too). Every Heartbeat a
// coordinator also writes its entry in P:proxies (host, pid, buckets, labels;
// "seen" from Redis TIME), and a bucket with no work still calls every
// RefreshEvery, so an idle proxy's view of cap and state stays current.
//
// # Debugging
//
//	redis-cli ZRANGE 'P:{b}:h' 0 -1 WITHSCORES     who holds slots, until when
//	redis-cli ZRANGE 'P:{b}:q' 0 -1 WITHSCORES     the queue in ticket order
//	redis-cli HGETALL 'P:{b}:meta'                 cap, epoch, grace, grants
//	redis-cli SUBSCRIBE 'P:grant:<proxyId>'        grant hints for one proxy
//	redis-cli HGETALL 'P:{b}:i'                    who each lease and waiter is for
//	tdspoolctl pools|clients|proxies               the same, as tables or JSON
//
// Snapshot gives the same view without a call; Metrics.RedisCall carries
// every script error with the bucket and operation in it.
package coordinator
