package filter

import "encoding/binary"

// packetCounter counts TDS packets in one direction of a byte stream that arrives in arbitrary
// chunks, by following the Length field of each 8-byte header (MS-TDS 2.2.3.1). It keeps no
// copy of the data. When a header is impossible (Length < 8) it stops counting: the stream is
// not TDS, or we lost sync, and a wrong count is worse than none.
type packetCounter struct {
	remaining int     // bytes of the current packet not yet seen, header included
	hdr       [4]byte // first bytes of a header split across chunks
	hdrN      int
	lost      bool
}

const tdsHeaderLen = 8

// feed consumes b and returns how many packets started in it.
func (p *packetCounter) feed(b []byte) int {
	n := 0
	for len(b) > 0 && !p.lost {
		if p.remaining > 0 {
			k := min(p.remaining, len(b))
			p.remaining -= k
			b = b[k:]
			continue
		}
		// At a header: gather its first 4 bytes (type, status, length).
		k := copy(p.hdr[p.hdrN:], b)
		p.hdrN += k
		if p.hdrN < len(p.hdr) {
			return n
		}
		length := int(binary.BigEndian.Uint16(p.hdr[2:4]))
		if length < tdsHeaderLen {
			p.lost = true
			return n
		}
		n++
		p.remaining = length - (p.hdrN - k) // bytes of this packet from the start of b
		p.hdrN = 0
	}
	return n
}
