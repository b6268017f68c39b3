package tds

// TokenEndOfMessage is a pseudo token (not on the wire) that
// ResponseScanner emits when the EOM packet of a response has been
// consumed: the response is complete.
const TokenEndOfMessage TokenType = 0x00

func init() { tokenNames[TokenEndOfMessage] = "END_OF_MESSAGE" }

// ResponseScanner scans raw server→client bytes: it follows the packet
// headers itself (without copying payloads) and feeds the payloads to an
// embedded Scanner, so the proxy can inspect a response while forwarding it
// chunk by chunk. Every message must be a tabular result (type 0x04); the
// PRELOGIN reply and TLS handshake are not token streams and must not be
// fed.
type ResponseScanner struct {
	Scanner
	// MaxPacketSize bounds packet lengths (0 = MaxPacketSize).
	MaxPacketSize int

	out      []Event
	hdr      [HeaderSize]byte
	hdrN     int
	left     int // payload bytes left in the current packet
	inPacket bool
	eom      bool
	rerr     error

	// Messages counts completed responses.
	Messages uint64
}

// Feed consumes wire bytes and returns the events completed in them, with
// a TokenEndOfMessage event after each response's last token. The slice is
// reused by the next call. Errors are sticky.
func (r *ResponseScanner) Feed(b []byte) ([]Event, error) {
	r.out = r.out[:0]
	if r.rerr != nil {
		return nil, r.rerr
	}
	if err := r.feed(b); err != nil {
		r.rerr = err
		return r.out, err
	}
	return r.out, nil
}

func (r *ResponseScanner) feed(b []byte) error {
	maxPkt := r.MaxPacketSize
	if maxPkt <= 0 || maxPkt > MaxPacketSize {
		maxPkt = MaxPacketSize
	}
	for len(b) > 0 {
		if !r.inPacket {
			k := copy(r.hdr[r.hdrN:], b)
			r.hdrN += k
			b = b[k:]
			if r.hdrN < HeaderSize {
				return nil
			}
			r.hdrN = 0
			h, err := DecodeHeader(r.hdr[:])
			if err != nil {
				return err
			}
			if h.Type != PacketReply {
				return protoErr("response", -1, "packet type %s is not a tabular result", h.Type)
			}
			if int(h.Length) > maxPkt {
				return &LimitError{What: "packet", Size: int(h.Length), Limit: maxPkt}
			}
			r.inPacket, r.left, r.eom = true, int(h.Length)-HeaderSize, h.Status&StatusEOM != 0
		}
		n := min(r.left, len(b))
		if n > 0 {
			ev, err := r.Scanner.Feed(b[:n])
			r.out = append(r.out, ev...)
			if err != nil {
				return err
			}
			r.left -= n
			b = b[n:]
		}
		if r.left == 0 {
			r.inPacket = false
			if r.eom {
				if err := r.Scanner.EndResponse(); err != nil {
					return err
				}
				r.Messages++
				r.out = append(r.out, Event{Token: TokenEndOfMessage})
			}
		}
	}
	return nil
}
