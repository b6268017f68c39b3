package tds

// Message is one reassembled TDS message.
type Message struct {
	Type PacketType
	// Status is the first packet's status with EOM removed; it is where
	// RESETCONNECTION and RESETCONNECTIONSKIPTRAN live [MS-TDS §2.2.3.1.2].
	// StatusIgnore is added if the last packet carried it.
	Status  PacketStatus
	SPID    uint16 // from the first packet
	Packets int    // how many packets made up the message
	// Payload is the concatenated packet payloads. It aliases the
	// Reassembler's buffer and is valid only until the next call to Feed or
	// Next; copy it to keep it.
	Payload []byte
}

// ResetConnection reports whether the request asks for a session reset
// (either flavour).
func (m *Message) ResetConnection() bool {
	return m.Status&(StatusResetConnection|StatusResetConnectionSkipTran) != 0
}

// Reassembler turns a byte stream cut at arbitrary places into whole TDS
// messages. It never does I/O: the owner calls Feed with whatever bytes
// arrived and then Next until it returns ErrShortBuffer.
//
// Memory: it keeps the unconsumed tail of the input plus the message being
// built, both bounded by MaxMessageSize + one packet.
//
// A Reassembler is not safe for concurrent use; it belongs to the one
// goroutine (or event-loop thread) that owns the connection.
type Reassembler struct {
	// MaxPacketSize bounds each packet's Length field. Zero means
	// MaxPacketSize (32767); set it to the negotiated size to enforce it.
	MaxPacketSize int
	// MaxMessageSize bounds the reassembled payload. Zero means DefaultMaxMessageSize.
	MaxMessageSize int

	in    []byte // unparsed input
	off   int    // consumed prefix of in
	msg   []byte // payload being assembled
	cur   Message
	inMsg bool
	err   error // latched: once the stream is broken it stays broken
}

// Feed appends received bytes. The slice is copied; the caller may reuse it.
func (r *Reassembler) Feed(chunk []byte) {
	if r.off > 0 && r.off == len(r.in) {
		r.in, r.off = r.in[:0], 0
	} else if r.off > 4096 && r.off > len(r.in)/2 {
		// Compact so a long-lived connection does not grow the buffer forever.
		n := copy(r.in, r.in[r.off:])
		r.in, r.off = r.in[:n], 0
	}
	r.in = append(r.in, chunk...)
}

// Buffered is the number of fed bytes not yet returned in a message
// (including a partially assembled message).
func (r *Reassembler) Buffered() int { return len(r.in) - r.off + len(r.msg) }

// InMessage reports whether at least one packet of an unfinished message
// has been consumed.
func (r *Reassembler) InMessage() bool { return r.inMsg }

// Next returns the next complete message, or ErrShortBuffer if more bytes
// are needed. Errors other than ErrShortBuffer are *ProtocolError or
// *LimitError and are sticky: the stream cannot be resynchronised.
func (r *Reassembler) Next() (Message, error) {
	if r.err != nil {
		return Message{}, r.err
	}
	if !r.inMsg {
		r.msg = r.msg[:0]
	}
	maxPkt := r.MaxPacketSize
	if maxPkt <= 0 || maxPkt > MaxPacketSize {
		maxPkt = MaxPacketSize
	}
	maxMsg := r.MaxMessageSize
	if maxMsg <= 0 {
		maxMsg = DefaultMaxMessageSize
	}
	for {
		buf := r.in[r.off:]
		h, err := DecodeHeader(buf)
		if err == ErrShortBuffer {
			return Message{}, err
		}
		if err != nil {
			r.err = err
			return Message{}, err
		}
		if int(h.Length) > maxPkt {
			r.err = &LimitError{What: "packet", Size: int(h.Length), Limit: maxPkt}
			return Message{}, r.err
		}
		if len(buf) < int(h.Length) {
			return Message{}, ErrShortBuffer
		}
		if !r.inMsg {
			r.cur = Message{Type: h.Type, Status: h.Status &^ (StatusEOM | StatusIgnore), SPID: h.SPID}
			r.inMsg = true
		} else if h.Type != r.cur.Type {
			r.err = protoErr("packet", -1, "packet type %s inside a %s message", h.Type, r.cur.Type)
			return Message{}, r.err
		}
		body := buf[HeaderSize:h.Length]
		if len(r.msg)+len(body) > maxMsg {
			r.err = &LimitError{What: "message", Size: len(r.msg) + len(body), Limit: maxMsg}
			return Message{}, r.err
		}
		r.msg = append(r.msg, body...)
		r.off += int(h.Length)
		r.cur.Packets++
		if h.Status&StatusEOM != 0 {
			r.inMsg = false
			m := r.cur
			m.Status |= h.Status & StatusIgnore
			m.Payload = r.msg
			return m, nil
		}
	}
}
