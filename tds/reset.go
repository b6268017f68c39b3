package tds

import "fmt"

// Resetting a pooled backend session for its next client [MS-TDS
// §2.2.3.1.2, §2.2.7.9]. The proxy sets RESETCONNECTION on the first
// packet of the borrower's first request; the server resets the session
// (as if logged out and in again) before running it and answers with an
// ENVCHANGE type 18 at the head of the response. The client did not ask
// for that reset, so ResetAckConsumer takes the acknowledgement (and the
// ENVCHANGEs the reset itself caused) out of the response.

// Resettable reports whether a request of type t may carry
// RESETCONNECTION: the flag is honoured only on SQL batches, RPCs and
// transaction manager requests.
func Resettable(t PacketType) bool {
	return t == PacketSQLBatch || t == PacketRPC || t == PacketTransMgr
}

// MarkResetConnection sets RESETCONNECTION in the header of the first
// packet of a request in wire form (wire starts with that header and may
// hold more). A RESETCONNECTIONSKIPTRAN the client set itself becomes a
// full reset: a new borrower never inherits a transaction, and the two
// bits must never be set together. wire is changed in place.
func MarkResetConnection(wire []byte) error {
	h, err := DecodeHeader(wire)
	if err != nil {
		return fmt.Errorf("tds: marking a reset: %w", err)
	}
	if !Resettable(h.Type) {
		return fmt.Errorf("tds: a %s request cannot carry RESETCONNECTION", h.Type)
	}
	st := (h.Status &^ StatusResetConnectionSkipTran) | StatusResetConnection
	wire[1] = byte(st)
	return nil
}

// ResetAckConsumer edits the response to a request marked with
// MarkResetConnection, in wire form as the backend sends it, so the
// client sees the response it would have had without the reset.
//
// It collects the response's first packet (at most MaxPacketSize bytes)
// and looks at the run of ENVCHANGE tokens it starts with. If that run
// holds the reset acknowledgement (type 18), every token up to and
// including it is removed: the acknowledgement and the ENVCHANGEs that
// come before it describe the reset itself (a database or language going
// back to the login's), which the client already believes in; tokens after
// it belong to the request. The packet's length is adjusted; a packet left
// empty that is not the last of its message is dropped. Everything from
// the second packet on passes through untouched.
//
// If the first packet does not start with such a run, nothing is removed
// and Acked stays false: the reset did not happen as asked, and the caller
// should not trust the session (SQL Server reports a failed reset with an
// error and closes the connection).
//
// A ResetAckConsumer handles one response; use a new one per reset.
type ResetAckConsumer struct {
	// MaxPacketSize bounds the first packet's length (0 = MaxPacketSize).
	MaxPacketSize int

	pkt     []byte
	passing bool
	acked   bool
	removed int
	err     error
}

// Feed takes the next chunk of backend bytes and appends what should be
// forwarded to the client to dst. Until the first packet is complete it
// forwards nothing. Errors (a malformed header, a packet over the limit, a
// type other than a tabular result) are sticky; the caller should close
// the backend.
func (c *ResetAckConsumer) Feed(dst, chunk []byte) ([]byte, error) {
	if c.err != nil {
		return dst, c.err
	}
	if c.passing {
		return append(dst, chunk...), nil
	}
	c.pkt = append(c.pkt, chunk...)
	if len(c.pkt) < HeaderSize {
		return dst, nil
	}
	h, err := DecodeHeader(c.pkt)
	if err == nil && h.Type != PacketReply {
		err = protoErr("response", 0, "packet type %s is not a tabular result", h.Type)
	}
	limit := c.MaxPacketSize
	if limit <= 0 || limit > MaxPacketSize {
		limit = MaxPacketSize
	}
	if err == nil && int(h.Length) > limit {
		err = &LimitError{What: "packet", Size: int(h.Length), Limit: limit}
	}
	if err != nil {
		c.err = err
		return dst, err
	}
	if len(c.pkt) < int(h.Length) {
		return dst, nil
	}
	first, rest := c.pkt[:h.Length], c.pkt[h.Length:]
	dst = c.editFirst(dst, h, first[HeaderSize:])
	dst = append(dst, rest...)
	c.pkt, c.passing = nil, true
	return dst, nil
}

// editFirst appends the first packet without the reset's tokens.
func (c *ResetAckConsumer) editFirst(dst []byte, h Header, payload []byte) []byte {
	cut := 0
	for off := 0; off < len(payload) && TokenType(payload[off]) == TokenEnvChange; {
		body, n, err := usLenBody(payload[off:])
		if err != nil || len(body) == 0 {
			break
		}
		off += n
		if EnvChangeType(body[0]) == EnvResetAck {
			cut, c.acked = off, true
			break
		}
	}
	if cut == 0 {
		return append(h.AppendHeader(dst), payload...)
	}
	c.removed = cut
	payload = payload[cut:]
	if len(payload) == 0 && h.Status&StatusEOM == 0 {
		return dst
	}
	h.Length = uint16(HeaderSize + len(payload))
	return append(h.AppendHeader(dst), payload...)
}

// Acked reports whether the reset acknowledgement was found (and removed).
func (c *ResetAckConsumer) Acked() bool { return c.acked }

// Settled reports whether the first packet has been handled: from now on
// Feed only copies, and the caller may stop routing bytes through it.
func (c *ResetAckConsumer) Settled() bool { return c.passing }

// Removed is the number of payload bytes taken out of the first packet.
func (c *ResetAckConsumer) Removed() int { return c.removed }

// ResetMarker does MarkResetConnection on a client→backend byte stream that
// arrives in chunks of any size, as a relay sees it: it sets
// RESETCONNECTION in the first packet header of the stream, even when that
// header is split across chunks, and then lets everything through. Chunks
// are changed in place.
type ResetMarker struct {
	seen int        // header bytes seen so far (0..2)
	typ  PacketType // the first byte, once seen
	err  error
}

// Mark inspects the next chunk and sets the flag when the chunk holds the
// first packet's status byte. It reports whether the marker is done (the
// flag is set; later chunks need not be passed). An error means the first
// request cannot carry a reset (see Resettable); it is sticky.
func (m *ResetMarker) Mark(chunk []byte) (done bool, err error) {
	if m.err != nil {
		return false, m.err
	}
	for i := 0; i < len(chunk) && m.seen < 2; i++ {
		if m.seen == 0 {
			m.typ = PacketType(chunk[i])
			if !Resettable(m.typ) {
				m.err = fmt.Errorf("tds: a %s request cannot carry RESETCONNECTION", m.typ)
				return false, m.err
			}
		} else {
			st := (PacketStatus(chunk[i]) &^ StatusResetConnectionSkipTran) | StatusResetConnection
			chunk[i] = byte(st)
		}
		m.seen++
	}
	return m.seen == 2, nil
}

// Seen is how many bytes of the first packet header the marker has seen (0..2).
func (m *ResetMarker) Seen() int { return m.seen }

// Done reports whether the flag has been set.
func (m *ResetMarker) Done() bool { return m.seen == 2 }
