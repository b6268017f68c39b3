package filter

import (
	"fmt"
	"time"

	"github.com/tdspool/tdspool/envoy/host"
	"github.com/tdspool/tdspool/filter/txpool"
	"github.com/tdspool/tdspool/tds"
)

// pinReason is why a session's backend connection cannot be handed to another client (the
// state that would not move). Today the session owns its backend for its whole life; the
// reasons are measured so that transaction pooling can be judged on real traffic.
type pinReason uint8

const (
	pinTransaction    pinReason = iota // ENVCHANGE begin tran .. commit/rollback
	pinPrepared                        // sp_prepare family: handles live in the backend session
	pinTempTable                       // #temp tables or procs
	pinSetOption                       // SET statements changed session options
	pinCursor                          // server cursors
	pinBulkLoad                        // BULK_LOAD / INSERT BULK
	pinAppRole                         // sp_setapprole: not undone by a reset
	pinUnparsed                        // the response stream could not be followed
	pinMARS                            // several requests in flight on one connection (transaction pooling)
	pinAppLock                         // sp_getapplock held (transaction pooling)
	pinSessionContext                  // sp_set_session_context or SET CONTEXT_INFO: until a reset
	numPinReasons
)

var pinReasonNames = [numPinReasons]string{"transaction", "prepared", "temp_table", "set_option", "cursor",
	"bulk_load", "app_role", "unparsed", "mars", "applock", "session_context"}

// relayState follows a logged-in session: client messages by their packet headers, server
// responses with the token scanner. It reads Envoy's buffers in place and copies nothing
// beyond what the scanner must assemble.
type relayState struct {
	client   tds.RequestTracker
	server   tds.ResponseScanner
	pins     [numPinReasons]bool
	inspect  bool // false once the server stream could not be parsed
	pending  int  // requests sent and not yet answered
	reqStart time.Time

	// Hot counters are summed here and handed to Envoy at most about once a second (and when
	// the session ends): each Envoy stat update is a C call, and a SELECT 1 round trip would
	// otherwise pay five of them.
	batch     counterBatch
	lastFlush time.Time

	// isolation is the session's transaction isolation level as its requests set it (""
	// the login's; see isolation.go); isolationPending: a request in flight changed it, so
	// an ERROR in its response makes it unknown.
	isolation        string
	isolationPending bool
}

// counterBatch holds counter deltas not yet given to Envoy.
type counterBatch struct {
	rxBytes, txBytes, rxPackets, responses uint64
	requests                               [numRequestKinds]uint64
}

const statFlushInterval = time.Second

func (s *session) flushRelayStats(now time.Time, force bool) {
	r := &s.relay
	if !force && now.Sub(r.lastFlush) < statFlushInterval {
		return
	}
	r.lastFlush = now
	b, st := &r.batch, &s.bucket.stats
	for _, c := range [...]struct {
		id host.MetricID
		n  *uint64
	}{{st.rxBytes, &b.rxBytes}, {st.txBytes, &b.txBytes}, {st.rxPackets, &b.rxPackets}, {st.responses, &b.responses}} {
		if *c.n > 0 {
			s.conn.IncCounter(c.id, *c.n)
			*c.n = 0
		}
	}
	for k, n := range b.requests {
		if n > 0 {
			s.conn.IncCounter(st.requests[k], n)
			b.requests[k] = 0
		}
	}
}

func (r *relayState) start(s *session) {
	r.inspect = true
	r.server.MaxPacketSize = tds.MaxPacketSize
	r.lastFlush = s.f.now()
}

func (s *session) relayClientBytes(chunks [][]byte, size int) {
	r := &s.relay
	r.batch.rxBytes += uint64(size)
	for _, chunk := range chunks {
		if r.client.Feed(chunk, (*requestSink)(s)) != nil {
			// A broken packet header: the backend answers that stream itself. Requests are
			// not followed any more; the bytes still flow.
			return
		}
	}
}

// requestSink is the session seen as the tds.RequestSink of its client stream.
type requestSink session

func (q *requestSink) OnPacket() { q.relay.batch.rxPackets++ }

func (q *requestSink) OnMessageStart(typ tds.PacketType, _ tds.PacketStatus) {
	r := &q.relay
	r.batch.requests[requestKindOf(typ)]++
	if typ == tds.PacketAttention && q.pool.ack != nil {
		q.pool.attnSent = true
	}
	switch typ {
	case tds.PacketSQLBatch, tds.PacketRPC, tds.PacketTransMgr, tds.PacketBulkLoad:
		if r.pending == 0 {
			r.reqStart = q.f.now()
		}
		r.pending++
	}
}

func (q *requestSink) OnMessage(m *tds.Message, complete bool) {
	s := (*session)(q)
	if m.ResetConnection() {
		// The backend resets the session before running the request: temp tables,
		// prepared handles, cursors, SET options and session context are gone.
		for _, reason := range [...]pinReason{pinPrepared, pinTempTable, pinSetOption, pinCursor, pinBulkLoad, pinSessionContext} {
			s.setPin(reason, false)
		}
	}
	if m.Type == tds.PacketSQLBatch && !tds.BatchMayPin(m.Payload) {
		return // most batches are plain DML and queries: skip the full classification
	}
	facts, err := tds.ClassifyRequest(m)
	if err != nil && complete {
		s.conn.IncCounter(s.bucket.stats.requestsUnclassified, 1)
	}
	s.applyRequestFacts(&facts)
	s.noteIsolation(m, &facts, complete, err)
}

// applyRequestFacts turns what a request does into pin reasons. Transactions are left to the
// server's ENVCHANGEs, which are authoritative; resets are handled from the header.
func (s *session) applyRequestFacts(f *tds.RequestFacts) {
	if f.Prepare {
		s.setPin(pinPrepared, true)
	}
	if f.TempTable {
		s.setPin(pinTempTable, true)
	}
	if len(f.SetOptions) > 0 {
		s.setPin(pinSetOption, true)
	}
	if f.Cursor {
		s.setPin(pinCursor, true)
	}
	if f.BulkLoad {
		s.setPin(pinBulkLoad, true)
	}
	if f.AppRole {
		s.setPin(pinAppRole, true)
	}
	if f.SessionContext {
		s.setPin(pinSessionContext, true)
	}
}

func (s *session) relayServerBytes(chunks [][]byte, size int) {
	r := &s.relay
	b := s.bucket
	r.batch.txBytes += uint64(size)
	if !r.inspect {
		// No response boundaries to flush on any more: check the clock here instead.
		s.flushRelayStats(s.f.now(), false)
		return
	}
	for _, chunk := range chunks {
		events, err := r.server.Feed(chunk)
		for i := range events {
			s.onServerEvent(&events[i])
		}
		if err != nil {
			r.inspect = false
			s.setPin(pinUnparsed, true)
			s.conn.IncCounter(b.stats.inspectStopped, 1)
			s.conn.Log(host.LogInfo, fmt.Sprintf("bucket %s: response stream not followed any more: %v", b.cfg.Name, err))
			return
		}
	}
}

func (s *session) onServerEvent(ev *tds.Event) {
	r := &s.relay
	b := s.bucket
	switch ev.Token {
	case tds.TokenEndOfMessage:
		r.batch.responses++
		now := s.f.now()
		if r.pending > 0 {
			r.pending--
			s.conn.RecordHistogram(b.stats.requestUs, uint64(now.Sub(r.reqStart).Microseconds()))
			r.reqStart = now
		}
		if r.pending == 0 {
			r.isolationPending = false
		}
		s.flushRelayStats(now, false)
		s.drainOnReplyEnd()
	case tds.TokenError:
		s.conn.IncCounter(b.stats.serverErrors, 1)
		if r.isolationPending {
			r.isolation = txpool.UnknownIsolation // which SET ran is not known now
		}
	case tds.TokenEnvChange:
		switch ev.EnvChange.Type {
		case tds.EnvBeginTran:
			s.setPin(pinTransaction, true)
		case tds.EnvCommitTran, tds.EnvRollbackTran, tds.EnvTranEnded:
			s.setPin(pinTransaction, false)
		case tds.EnvResetAck:
			s.conn.IncCounter(b.stats.resets, 1)
		}
	}
}

func (s *session) setPin(reason pinReason, on bool) {
	r := &s.relay
	if r.pins[reason] == on {
		return
	}
	wasPinned := r.pinned()
	r.pins[reason] = on
	b := s.bucket
	if on {
		s.conn.IncGauge(b.stats.pinnedBy[reason], 1)
		s.conn.IncCounter(b.stats.pinEvents[reason], 1)
	} else {
		s.conn.DecGauge(b.stats.pinnedBy[reason], 1)
	}
	if s.setPins != nil {
		s.setPins(r.pinNames())
	}
	if now := r.pinned(); now != wasPinned {
		if now {
			s.conn.IncGauge(b.stats.sessionsPinned, 1)
		} else {
			s.conn.DecGauge(b.stats.sessionsPinned, 1)
		}
	}
}

// pinNames lists the session's pin reasons, comma separated (for the fleet view).
func (r *relayState) pinNames() string {
	var b []byte
	for reason, on := range r.pins {
		if on {
			if len(b) > 0 {
				b = append(b, ',')
			}
			b = append(b, pinReasonNames[reason]...)
		}
	}
	return string(b)
}

// idle: no request is waiting for (or receiving) its response, so a message of ours can go
// to the client without cutting into the server's stream.
func (r *relayState) idle() bool { return r.inspect && r.pending == 0 }

func (r *relayState) pinned() bool {
	for _, p := range r.pins {
		if p {
			return true
		}
	}
	return false
}

// finish takes the session's pins out of the gauges and flushes its counters.
func (r *relayState) finish(s *session) {
	s.flushRelayStats(s.f.now(), true)
	for i := range r.pins {
		s.setPin(pinReason(i), false)
	}
}
