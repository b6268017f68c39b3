package filter

import "testing"

func tdsPacket(payloadLen int) []byte {
	n := payloadLen + 8
	b := make([]byte, n)
	b[0], b[1], b[2], b[3] = 0x04, 0x01, byte(n>>8), byte(n)
	return b
}

func TestPacketCounterAcrossChunkBoundaries(t *testing.T) {
	var stream []byte
	for _, l := range []int{0, 1, 100, 4088, 3} {
		stream = append(stream, tdsPacket(l)...)
	}
	for _, chunk := range []int{1, 2, 3, 7, 8, 9, 100, len(stream)} {
		var p packetCounter
		got := 0
		for off := 0; off < len(stream); off += chunk {
			got += p.feed(stream[off:min(off+chunk, len(stream))])
		}
		if got != 5 || p.lost {
			t.Errorf("chunk %d: counted %d packets (lost=%v), want 5", chunk, got, p.lost)
		}
	}
}

func TestPacketCounterStopsOnImpossibleHeader(t *testing.T) {
	var p packetCounter
	if n := p.feed([]byte{0x16, 0x03, 0x00, 0x05, 1, 2}); n != 0 || !p.lost {
		t.Fatalf("feed(non-TDS) = %d, lost=%v", n, p.lost)
	}
	if n := p.feed(tdsPacket(10)); n != 0 {
		t.Fatalf("counted after losing sync: %d", n)
	}
}

func FuzzPacketCounter(f *testing.F) {
	f.Add(tdsPacket(3), 2)
	f.Add([]byte{0x12, 0x01, 0x00, 0x02}, 1)
	f.Fuzz(func(t *testing.T, b []byte, chunk int) {
		if chunk <= 0 {
			chunk = 1
		}
		var whole, split packetCounter
		a := whole.feed(b)
		s := 0
		for off := 0; off < len(b); off += chunk {
			s += split.feed(b[off:min(off+chunk, len(b))])
		}
		if a != s || whole.lost != split.lost {
			t.Fatalf("whole=%d/%v split=%d/%v", a, whole.lost, s, split.lost)
		}
	})
}
