package tds

import (
	"bytes"
	"errors"
	"testing"
)

func TestHeaderRoundTrip(t *testing.T) {
	tests := []Header{
		{Type: PacketPrelogin, Status: StatusEOM, Length: 47, SPID: 0, PacketID: 1},
		{Type: PacketReply, Status: 0, Length: 4096, SPID: 53, PacketID: 255},
		{Type: PacketSQLBatch, Status: StatusEOM | StatusResetConnection, Length: 8, PacketID: 1},
	}
	for _, h := range tests {
		b := h.AppendHeader(nil)
		if len(b) != HeaderSize {
			t.Fatalf("len %d", len(b))
		}
		got, err := DecodeHeader(b)
		if err != nil || got != h {
			t.Fatalf("round trip %v: got %v err %v", h, got, err)
		}
	}
	// Length and SPID are big-endian.
	b := Header{Type: PacketReply, Status: StatusEOM, Length: 0x0102, SPID: 0x0304, PacketID: 1}.AppendHeader(nil)
	if !bytes.Equal(b, []byte{4, 1, 1, 2, 3, 4, 1, 0}) {
		t.Fatalf("wire bytes % X", b)
	}
	if _, err := DecodeHeader(b[:7]); err != ErrShortBuffer {
		t.Fatalf("short: %v", err)
	}
	var pe *ProtocolError
	if _, err := DecodeHeader([]byte{4, 1, 0, 7, 0, 0, 1, 0}); !errors.As(err, &pe) {
		t.Fatalf("length<8: %v", err)
	}
}

func TestEnumStrings(t *testing.T) {
	tests := []struct{ got, want string }{
		{PacketLogin7.String(), "LOGIN7"},
		{PacketType(0x55).String(), "PacketType(0x55)"},
		{(StatusEOM | StatusResetConnection).String(), "EOM|RESETCONNECTION"},
		{PacketStatus(0).String(), "NORMAL"},
		{PacketStatus(0x41).String(), "EOM|0x40"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("got %q want %q", tt.got, tt.want)
		}
	}
}

func TestAppendPacketsAndReassemble(t *testing.T) {
	payload := make([]byte, 10000)
	for i := range payload {
		payload[i] = byte(i * 7)
	}
	tests := []struct {
		name       string
		typ        PacketType
		status     PacketStatus
		payload    []byte
		size       int
		wantPkts   int
		wantStatus PacketStatus
	}{
		{"attention", PacketAttention, 0, nil, 4096, 1, 0},
		{"one packet", PacketSQLBatch, 0, payload[:100], 4096, 1, 0},
		{"exact fit", PacketSQLBatch, 0, payload[:512-8], 512, 1, 0},
		{"split 512", PacketRPC, StatusResetConnection, payload, 512, 20, StatusResetConnection},
		{"split max", PacketReply, 0, payload, 32767, 1, 0},
		{"clamp small", PacketReply, 0, payload[:1000], 10, 2, 0},
		{"ignore", PacketSQLBatch, StatusIgnore, payload[:600], 512, 2, StatusIgnore},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wire := AppendPackets(nil, tt.typ, tt.status, tt.payload, tt.size)
			// Check framing: every non-last packet full, EOM only at end,
			// reset bits only on the first.
			n := 0
			for off := 0; off < len(wire); n++ {
				h, err := DecodeHeader(wire[off:])
				if err != nil {
					t.Fatal(err)
				}
				off += int(h.Length)
				last := off == len(wire)
				if last != (h.Status&StatusEOM != 0) {
					t.Fatalf("packet %d EOM=%v last=%v", n, h.Status&StatusEOM != 0, last)
				}
				if n > 0 && h.Status&StatusResetConnection != 0 {
					t.Fatalf("reset bit on packet %d", n)
				}
				if !last && int(h.Length) != max(tt.size, MinPacketSize) && tt.size <= MaxPacketSize {
					t.Fatalf("non-final packet %d has length %d", n, h.Length)
				}
				if h.PacketID != uint8(n+1) {
					t.Fatalf("packet id %d", h.PacketID)
				}
			}
			if n != tt.wantPkts {
				t.Fatalf("packets %d want %d", n, tt.wantPkts)
			}
			// Reassemble from 1-byte chunks and from one chunk.
			for _, step := range []int{1, 7, len(wire)} {
				var r Reassembler
				var got []Message
				for i := 0; i < len(wire); i += step {
					r.Feed(wire[i:min(i+step, len(wire))])
					for {
						m, err := r.Next()
						if err == ErrShortBuffer {
							break
						}
						if err != nil {
							t.Fatal(err)
						}
						m.Payload = append([]byte(nil), m.Payload...)
						got = append(got, m)
					}
				}
				if len(got) != 1 {
					t.Fatalf("step %d: %d messages", step, len(got))
				}
				m := got[0]
				if m.Type != tt.typ || m.Status != tt.wantStatus || !bytes.Equal(m.Payload, tt.payload) || m.Packets != n {
					t.Fatalf("step %d: got %v %v %d pkts, payload equal=%v", step, m.Type, m.Status, m.Packets, bytes.Equal(m.Payload, tt.payload))
				}
			}
		})
	}
}

func TestReassemblerErrors(t *testing.T) {
	var le *LimitError
	var pe *ProtocolError
	tests := []struct {
		name  string
		cfg   Reassembler
		wire  []byte
		check func(error) bool
	}{
		{"packet too large", Reassembler{MaxPacketSize: 512}, Header{Type: PacketSQLBatch, Status: StatusEOM, Length: 513}.AppendHeader(nil),
			func(err error) bool { return errors.As(err, &le) && le.What == "packet" }},
		{"message too large", Reassembler{MaxMessageSize: 1000}, AppendPackets(nil, PacketSQLBatch, 0, make([]byte, 1001), 512),
			func(err error) bool { return errors.As(err, &le) && le.What == "message" }},
		{"type change", Reassembler{}, append(Header{Type: PacketSQLBatch, Length: 9}.AppendHeader(nil), append([]byte{0}, Header{Type: PacketRPC, Status: StatusEOM, Length: 8}.AppendHeader(nil)...)...),
			func(err error) bool { return errors.As(err, &pe) }},
		{"bad length", Reassembler{}, []byte{1, 1, 0, 3, 0, 0, 0, 0},
			func(err error) bool { return errors.As(err, &pe) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := tt.cfg
			r.Feed(tt.wire)
			_, err := r.Next()
			if !tt.check(err) {
				t.Fatalf("got %v", err)
			}
			if _, err2 := r.Next(); err2 != err {
				t.Fatalf("error not sticky: %v", err2)
			}
		})
	}
}

func TestReassemblerManyMessages(t *testing.T) {
	var wire []byte
	for i := 0; i < 50; i++ {
		wire = AppendPackets(wire, PacketReply, 0, bytes.Repeat([]byte{byte(i)}, i*100), 512)
	}
	var r Reassembler
	count := 0
	for i := 0; i < len(wire); i += 333 {
		r.Feed(wire[i:min(i+333, len(wire))])
		for {
			m, err := r.Next()
			if err == ErrShortBuffer {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(m.Payload) != count*100 {
				t.Fatalf("msg %d len %d", count, len(m.Payload))
			}
			count++
		}
	}
	if count != 50 || r.Buffered() != 0 {
		t.Fatalf("count %d buffered %d", count, r.Buffered())
	}
}

func FuzzReassembler(f *testing.F) {
	f.Add(AppendPackets(nil, PacketSQLBatch, StatusResetConnection, []byte("select 1"), 512), uint16(3))
	f.Add(AppendPackets(nil, PacketReply, 0, make([]byte, 2000), 512), uint16(100))
	f.Add([]byte{1, 0, 0, 8, 0, 0, 0, 0, 1, 1, 0, 8, 0, 0, 0, 0}, uint16(1))
	f.Fuzz(func(t *testing.T, wire []byte, step uint16) {
		if step == 0 {
			step = 1
		}
		r := Reassembler{MaxMessageSize: 1 << 16}
		var total int
		for i := 0; i < len(wire); i += int(step) {
			r.Feed(wire[i:min(i+int(step), len(wire))])
			for {
				m, err := r.Next()
				if err != nil {
					break
				}
				total += len(m.Payload)
				// Re-framing a reassembled message must reassemble to the same payload.
				re := AppendPackets(nil, m.Type, m.Status, m.Payload, 512)
				var r2 Reassembler
				r2.Feed(re)
				m2, err := r2.Next()
				if err != nil || !bytes.Equal(m2.Payload, m.Payload) || m2.Type != m.Type {
					t.Fatalf("reframe mismatch: %v", err)
				}
			}
		}
		if total > len(wire) {
			t.Fatalf("more payload than input")
		}
	})
}
