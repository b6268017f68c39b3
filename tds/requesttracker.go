package tds

// RequestTracker follows a client→server byte stream that is being relayed, not terminated:
// it reads the packet headers to see where each message starts and ends [MS-TDS §2.2.3.1: a
// message ends with the packet whose status has EOM], and keeps the first MaxKept bytes of
// each message's payload, enough for ClassifyRequest to find what a request does. Unlike the
// Reassembler it never holds a whole message and never refuses one: the bytes are on their
// way to the server anyway, which judges them.
//
// It reads the caller's chunks in place; with messages shorter than 4 KiB it allocates
// nothing once its buffer has grown. A RequestTracker belongs to the one goroutine (or
// event-loop thread) that owns the connection.
type RequestTracker struct {
	// MaxKept bounds the payload bytes kept per message. Zero means DefaultMaxKept.
	MaxKept int

	hdr       [HeaderSize]byte
	hdrN      int
	remaining int // payload bytes of the current packet still to come
	inMessage bool
	msg       Message // the message being followed; Payload holds its kept prefix
	complete  bool    // no payload byte of msg was dropped
	err       error   // latched: a broken header stream cannot be resynchronised
}

// DefaultMaxKept is the default RequestTracker.MaxKept: a longer request is classified on its
// first 16 KiB (its keywords are almost always up front).
const DefaultMaxKept = 16 << 10

// keepBufferBelow is the capacity of the kept-payload buffer that survives a message; a larger
// one is dropped after its message, so an idle session holds little.
const keepBufferBelow = 4 << 10

// RequestSink receives what a RequestTracker finds, in stream order, during Feed.
type RequestSink interface {
	// OnPacket is called for every packet header.
	OnPacket()
	// OnMessageStart is called for the first packet of each message, after OnPacket, with
	// that packet's type and status.
	OnMessageStart(PacketType, PacketStatus)
	// OnMessage is called when a message's last packet has passed. m.Status is the first
	// packet's status without EOM (RESETCONNECTION lives there) plus IGNORE if the last packet
	// had it, as Reassembler reports it; m.Payload holds the first MaxKept payload bytes and
	// complete says whether that is all of it. m and its Payload are valid only during the
	// call.
	OnMessage(m *Message, complete bool)
}

// Feed follows the next chunk of the stream. It returns an error once a packet header is
// malformed (a length shorter than the header); from then on it ignores its input and keeps
// returning that error.
func (t *RequestTracker) Feed(b []byte, sink RequestSink) error {
	for len(b) > 0 && t.err == nil {
		if t.remaining > 0 {
			k := min(t.remaining, len(b))
			t.keep(b[:k])
			t.remaining -= k
			b = b[k:]
			if t.remaining == 0 && !t.inMessage {
				t.endMessage(sink)
			}
			continue
		}
		k := copy(t.hdr[t.hdrN:], b)
		t.hdrN += k
		b = b[k:]
		if t.hdrN < HeaderSize {
			break
		}
		t.hdrN = 0
		typ, status, length, spid := headerFields(&t.hdr)
		if length < HeaderSize {
			t.err = protoErr("packet header", 2, "length %d is smaller than the header", length)
			break
		}
		t.remaining = length - HeaderSize
		sink.OnPacket()
		if !t.inMessage {
			t.msg.Type, t.msg.Status, t.msg.SPID, t.msg.Packets = typ, status&^(StatusEOM|StatusIgnore), spid, 0
			t.complete = true
			sink.OnMessageStart(typ, status)
		}
		t.msg.Packets++
		t.inMessage = status&StatusEOM == 0
		if !t.inMessage {
			t.msg.Status |= status & StatusIgnore
			if t.remaining == 0 {
				t.endMessage(sink) // a header-only packet ends the message (ATTENTION)
			}
		}
	}
	return t.err
}

// MidMessage reports whether the stream stopped inside a message (part of a header, of a
// packet, or between the packets of one message) or broke: a server given this stream is
// waiting for the rest, or reading garbage, and must not be handed to another client.
func (t *RequestTracker) MidMessage() bool {
	return t.hdrN > 0 || t.remaining > 0 || t.inMessage || t.err != nil
}

func (t *RequestTracker) keep(b []byte) {
	limit := t.MaxKept
	if limit <= 0 {
		limit = DefaultMaxKept
	}
	room := limit - len(t.msg.Payload)
	if len(b) <= room {
		t.msg.Payload = append(t.msg.Payload, b...)
		return
	}
	t.complete = false
	if room > 0 {
		t.msg.Payload = append(t.msg.Payload, b[:room]...)
	}
}

func (t *RequestTracker) endMessage(sink RequestSink) {
	sink.OnMessage(&t.msg, t.complete)
	if cap(t.msg.Payload) > keepBufferBelow {
		t.msg.Payload = nil
	} else {
		t.msg.Payload = t.msg.Payload[:0]
	}
}
