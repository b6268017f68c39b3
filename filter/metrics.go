package filter

import (
	"fmt"

	"github.com/tdspool/tdspool/envoy/host"
	"github.com/tdspool/tdspool/tds"
)

// Stat names live under the module's metrics namespace (Envoy config: metrics_namespace
// "tdspool"), so /stats shows "tdspool.<name>", or "tdspool.listener.<stat_prefix>.<name>" when
// the config names its listener (two listeners' stats must not merge). Per-bucket stats are named
// "tdspool.bucket.<bucket>.<stat>"; the shipped Envoy configs turn <bucket> into a "bucket" tag,
// which Prometheus shows as a label (the ABI has no labels of its own).

// globalStats are the listener-wide metrics.
type globalStats struct {
	connectionsTotal  host.MetricID // counter: downstream connections accepted
	connectionsActive host.MetricID // gauge
	noRoute           host.MetricID // counter: logins that matched no bucket
	routeFailed       host.MetricID // counter: Envoy refused the cluster filter state
	refusedPolicy     host.MetricID // counter: encryption or allow-list refusals
	protocolErrors    host.MetricID // counter: malformed PRELOGIN/LOGIN7, closed
	loginTimeouts     host.MetricID // counter: PRELOGIN..LOGINACK took longer than login_timeout
	rxBytesLogin      host.MetricID // counter: client bytes read before a bucket was chosen
	tlsNone           host.MetricID // counter: sessions without TLS
	tlsLoginOnly      host.MetricID // counter: TDS 7 login-only TLS handshakes started
	tlsFull           host.MetricID // counter: TDS 7 full TLS handshakes started
	tlsFailed         host.MetricID // counter: client TLS handshakes that failed
	tlsStrict         host.MetricID // counter: TDS 8 sessions (TLS terminated by Envoy)
	errorsByKind      [numErrorKinds]host.MetricID

	// From the coordinator (flushed by connections; see coordStats).
	redisCalls        host.MetricID // counter
	redisErrors       host.MetricID // counter
	redisLatencyUs    host.MetricID // histogram
	releasedOnDestroy host.MetricID // counter: slots released by a destroy without a close event
	coordinatorPanics host.MetricID // counter: panics recovered inside coordinator goroutines
}

// bucketStats are one bucket's metrics.
type bucketStats struct {
	sessionsTotal  host.MetricID // counter: logins completed through this bucket
	sessionsActive host.MetricID // gauge: logged-in sessions
	sessionsQueued host.MetricID // gauge: sessions waiting for a slot
	sessionsPinned host.MetricID // gauge: sessions with any pin reason
	maxConnections host.MetricID // gauge: the fleet-wide cap in force (Redis's, else the configured one)
	bucketState    host.MetricID // gauge: operator state 0 serving, 1 paused, 2 draining, 3 disabled
	sessionsKilled host.MetricID // counter: sessions ended by an operator's kill
	pinnedBy       [numPinReasons]host.MetricID
	pinEvents      [numPinReasons]host.MetricID

	slotGranted   host.MetricID // counters: acquires by outcome, and releases
	slotTimedOut  host.MetricID
	slotQueueFull host.MetricID
	slotRefused   host.MetricID
	slotCancelled host.MetricID
	slotFallback  host.MetricID
	slotReleased  host.MetricID
	queueWaitMs   host.MetricID // histogram

	backendUnavailable host.MetricID // counter: no backend PRELOGIN reply in time
	loginOK            host.MetricID // counter
	loginFailed        host.MetricID // counter: the backend refused the login
	loginMs            host.MetricID // histogram: PRELOGIN to LOGINACK

	rxBytes, txBytes     host.MetricID                  // counters
	rxPackets            host.MetricID                  // counter: client → server packets (relay)
	requests             [numRequestKinds]host.MetricID // counters by request kind
	requestsUnclassified host.MetricID                  // counter: requests whose body could not be decoded
	responses            host.MetricID                  // counter: complete responses
	requestUs            host.MetricID                  // histogram: request → end of its response
	serverErrors         host.MetricID                  // counter: ERROR tokens from the backend
	resets               host.MetricID                  // counter: RESETCONNECTION acknowledged
	inspectStopped       host.MetricID                  // counter: sessions whose stream could not be followed
	fallbackActive       host.MetricID                  // gauge 0/1
	queueFleet           host.MetricID                  // gauge: fleet-wide waiters as Redis last reported
	leasesRenewed        host.MetricID                  // counter
	leasesExpired        host.MetricID                  // counter
	coordinatorAcquires  host.MetricID                  // counter: grants as the coordinator saw them
	pool                 poolStats                      // session pooling (zero unless pool mode SESSION)
	tx                   txStats                        // transaction pooling (pool mode TRANSACTION)
}

// txStats are a TRANSACTION-mode bucket's own stats.
type txStats struct {
	bound        host.MetricID // gauge: sessions holding a borrowed backend now
	borrowWaitUs host.MetricID // histogram: a request's start to its backend (idle, handed over or new)
}

type metricDefiner struct {
	m      host.Metrics
	prefix string // "listener.<stat_prefix>." or ""
	err    error
}

func (d *metricDefiner) counter(name string) host.MetricID { return d.define(name, d.m.DefineCounter) }
func (d *metricDefiner) gauge(name string) host.MetricID   { return d.define(name, d.m.DefineGauge) }
func (d *metricDefiner) histogram(name string) host.MetricID {
	return d.define(name, d.m.DefineHistogram)
}

func (d *metricDefiner) define(name string, f func(string) (host.MetricID, error)) host.MetricID {
	if d.err != nil {
		return 0
	}
	id, err := f(d.prefix + name)
	if err != nil {
		d.err = fmt.Errorf("metric %s: %w", name, err)
	}
	return id
}

func defineGlobalStats(d *metricDefiner) globalStats {
	g := globalStats{
		connectionsTotal:  d.counter("connections_total"),
		connectionsActive: d.gauge("connections_active"),
		noRoute:           d.counter("no_route_total"),
		routeFailed:       d.counter("route_failed_total"),
		refusedPolicy:     d.counter("refused_policy_total"),
		protocolErrors:    d.counter("protocol_errors_total"),
		loginTimeouts:     d.counter("login_timeouts_total"),
		rxBytesLogin:      d.counter("login_rx_bytes_total"),
		tlsNone:           d.counter("tls_none_total"),
		tlsLoginOnly:      d.counter("tls_login_only_total"),
		tlsFull:           d.counter("tls_full_total"),
		tlsFailed:         d.counter("tls_failed_total"),
		tlsStrict:         d.counter("tls_strict_total"),
		redisCalls:        d.counter("redis_calls_total"),
		redisErrors:       d.counter("redis_errors_total"),
		redisLatencyUs:    d.histogram("redis_latency_us"),
		releasedOnDestroy: d.counter("slot_released_on_destroy_total"),
		coordinatorPanics: d.counter("coordinator_panics_total"),
	}
	for k := range g.errorsByKind {
		g.errorsByKind[k] = d.counter("client_errors_" + errorKind(k).String() + "_total")
	}
	return g
}

func defineBucketStats(d *metricDefiner, bucket string) bucketStats {
	p := "bucket." + bucket + "."
	s := bucketStats{
		sessionsTotal:        d.counter(p + "sessions_total"),
		sessionsActive:       d.gauge(p + "sessions_active"),
		sessionsQueued:       d.gauge(p + "sessions_queued"),
		sessionsPinned:       d.gauge(p + "sessions_pinned"),
		maxConnections:       d.gauge(p + "max_connections"),
		bucketState:          d.gauge(p + "state"),
		sessionsKilled:       d.counter(p + "sessions_killed_total"),
		slotGranted:          d.counter(p + "slot_granted_total"),
		slotTimedOut:         d.counter(p + "slot_timed_out_total"),
		slotQueueFull:        d.counter(p + "slot_queue_full_total"),
		slotRefused:          d.counter(p + "slot_refused_total"),
		slotCancelled:        d.counter(p + "slot_cancelled_total"),
		slotFallback:         d.counter(p + "slot_fallback_total"),
		slotReleased:         d.counter(p + "slot_released_total"),
		queueWaitMs:          d.histogram(p + "queue_wait_ms"),
		loginOK:              d.counter(p + "login_ok_total"),
		backendUnavailable:   d.counter(p + "backend_unavailable_total"),
		loginFailed:          d.counter(p + "login_failed_total"),
		loginMs:              d.histogram(p + "login_ms"),
		rxBytes:              d.counter(p + "rx_bytes_total"),
		txBytes:              d.counter(p + "tx_bytes_total"),
		rxPackets:            d.counter(p + "rx_packets_total"),
		requestsUnclassified: d.counter(p + "requests_unclassified_total"),
		responses:            d.counter(p + "responses_total"),
		requestUs:            d.histogram(p + "request_duration_us"),
		serverErrors:         d.counter(p + "server_errors_total"),
		resets:               d.counter(p + "resets_total"),
		inspectStopped:       d.counter(p + "inspect_stopped_total"),
		fallbackActive:       d.gauge(p + "fallback_active"),
		queueFleet:           d.gauge(p + "queue_fleet"),
		leasesRenewed:        d.counter(p + "leases_renewed_total"),
		leasesExpired:        d.counter(p + "leases_expired_total"),
		coordinatorAcquires:  d.counter(p + "coordinator_acquires_total"),
		pool: poolStats{
			idle:           d.gauge(p + "pool_idle"),
			active:         d.gauge(p + "pool_active"),
			keys:           d.gauge(p + "pool_keys"),
			borrowWaitUs:   d.histogram(p + "pool_borrow_wait_us"),
			borrowed:       d.counter(p + "pool_borrowed_total"),
			created:        d.counter(p + "pool_created_total"),
			loginsSaved:    d.counter(p + "pool_logins_saved_total"),
			resetFailures:  d.counter(p + "pool_reset_failures_total"),
			evictions:      d.counter(p + "pool_evictions_total"),
			closed:         d.counter(p + "pool_closed_total"),
			relogins:       d.counter(p + "pool_relogins_total"),
			returnWaits:    d.counter(p + "pool_return_waits_total"),
			warmed:         d.counter(p + "pool_warmed_total"),
			warmupFailures: d.counter(p + "pool_warmup_failures_total"),
		},
	}
	s.tx = txStats{bound: d.gauge(p + "tx_bound"), borrowWaitUs: d.histogram(p + "tx_borrow_wait_us")}
	for r := pinReason(0); r < numPinReasons; r++ {
		s.pinnedBy[r] = d.gauge(p + "pinned_" + pinReasonNames[r])
		s.pinEvents[r] = d.counter(p + "pin_" + pinReasonNames[r] + "_total")
	}
	for k := requestKind(0); k < numRequestKinds; k++ {
		s.requests[k] = d.counter(p + "requests_" + requestKindNames[k] + "_total")
	}
	return s
}

// requestKind indexes the per-type request counters (an array, not a map: it is bumped on
// every request).
type requestKind uint8

const (
	reqSQLBatch requestKind = iota
	reqRPC
	reqAttention
	reqTransMgr
	reqBulkLoad
	reqOther
	numRequestKinds
)

var requestKindNames = [numRequestKinds]string{"sql_batch", "rpc", "attention", "transaction_manager", "bulk_load", "other"}

func requestKindOf(typ tds.PacketType) requestKind {
	switch typ {
	case tds.PacketSQLBatch:
		return reqSQLBatch
	case tds.PacketRPC:
		return reqRPC
	case tds.PacketAttention:
		return reqAttention
	case tds.PacketTransMgr:
		return reqTransMgr
	case tds.PacketBulkLoad:
		return reqBulkLoad
	}
	return reqOther
}
