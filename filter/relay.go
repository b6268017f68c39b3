package filter

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/tdspool/tdspool/envoy/host"
	"github.com/tdspool/tdspool/tds"
)

// pinReason is why a session's backend connection cannot be handed to another client (the
// state that would not move). Today the session owns its backend for its whole life; the
// reasons are measured so that transaction pooling can be judged on real traffic.
type pinReason uint8

const (
	pinTransaction pinReason = iota // ENVCHANGE begin tran .. commit/rollback
	pinUnparsed                     // the response stream could not be followed
	numPinReasons
)

var pinReasonNames = [numPinReasons]string{"transaction", "unparsed"}

// relayState follows a logged-in session: client messages by their packet headers, server
// responses with the token scanner. It reads Envoy's buffers in place and copies nothing
// beyond what the scanner must assemble.
type relayState struct {
	client   messageTracker
	server   tds.ResponseScanner
	pins     [numPinReasons]bool
	inspect  bool // false once the server stream could not be parsed
	pending  int  // requests sent and not yet answered
	reqStart time.Time
}

func (r *relayState) start(s *session) {
	r.inspect = true
	r.server.MaxPacketSize = tds.MaxPacketSize
}

func (s *session) relayClientBytes(size int) {
	r := &s.relay
	b := s.bucket
	s.conn.IncCounter(b.stats.rxBytes, uint64(size))
	for _, chunk := range s.conn.ReadBuffer() {
		r.client.feed(chunk, func(typ tds.PacketType, status tds.PacketStatus) {
			s.onClientMessageStart(typ, status)
		}, func() { s.conn.IncCounter(b.stats.rxPackets, 1) })
	}
}

func (s *session) onClientMessageStart(typ tds.PacketType, status tds.PacketStatus) {
	r := &s.relay
	b := s.bucket
	id, ok := b.stats.requestsByType[typ]
	if !ok {
		id = b.stats.requestsOther
	}
	s.conn.IncCounter(id, 1)
	switch typ {
	case tds.PacketSQLBatch, tds.PacketRPC, tds.PacketTransMgr, tds.PacketBulkLoad:
		if r.pending == 0 {
			r.reqStart = s.f.now()
		}
		r.pending++
	}
}

func (s *session) relayServerBytes(size int) {
	r := &s.relay
	b := s.bucket
	s.conn.IncCounter(b.stats.txBytes, uint64(size))
	if !r.inspect {
		return
	}
	for _, chunk := range s.conn.WriteBuffer() {
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
		s.conn.IncCounter(b.stats.responses, 1)
		if r.pending > 0 {
			r.pending--
			s.conn.RecordHistogram(b.stats.requestUs, uint64(s.f.now().Sub(r.reqStart).Microseconds()))
			r.reqStart = s.f.now()
		}
	case tds.TokenError:
		s.conn.IncCounter(b.stats.serverErrors, 1)
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
	if now := r.pinned(); now != wasPinned {
		if now {
			s.conn.IncGauge(b.stats.sessionsPinned, 1)
		} else {
			s.conn.DecGauge(b.stats.sessionsPinned, 1)
		}
	}
}

func (r *relayState) pinned() bool {
	for _, p := range r.pins {
		if p {
			return true
		}
	}
	return false
}

// finish takes the session's pins out of the gauges.
func (r *relayState) finish(s *session) {
	for i := range r.pins {
		s.setPin(pinReason(i), false)
	}
}

// messageTracker follows packet headers in the client→server stream to see where each
// message starts (MS-TDS 2.2.3.1: a message ends with the packet whose status has EOM).
type messageTracker struct {
	remaining int
	hdr       [tds.HeaderSize]byte
	hdrN      int
	inMessage bool
	lost      bool
}

func (m *messageTracker) feed(b []byte, onStart func(tds.PacketType, tds.PacketStatus), onPacket func()) {
	for len(b) > 0 && !m.lost {
		if m.remaining > 0 {
			k := min(m.remaining, len(b))
			m.remaining -= k
			b = b[k:]
			continue
		}
		k := copy(m.hdr[m.hdrN:], b)
		m.hdrN += k
		b = b[k:]
		if m.hdrN < tds.HeaderSize {
			return
		}
		m.hdrN = 0
		length := int(binary.BigEndian.Uint16(m.hdr[2:4]))
		if length < tds.HeaderSize {
			m.lost = true
			return
		}
		m.remaining = length - tds.HeaderSize
		typ, status := tds.PacketType(m.hdr[0]), tds.PacketStatus(m.hdr[1])
		onPacket()
		if !m.inMessage {
			onStart(typ, status)
		}
		m.inMessage = status&tds.StatusEOM == 0
	}
}
