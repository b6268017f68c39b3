package tds

import (
	"bytes"
	"errors"
	"testing"
)

func TestMarkResetConnection(t *testing.T) {
	tests := []struct {
		name   string
		typ    PacketType
		status PacketStatus
		want   PacketStatus // first packet's status after marking
		ok     bool
	}{
		{"SQL batch", PacketSQLBatch, 0, StatusResetConnection, true},
		{"RPC", PacketRPC, 0, StatusResetConnection, true},
		{"TM request", PacketTransMgr, 0, StatusResetConnection, true},
		{"already marked", PacketSQLBatch, StatusResetConnection, StatusResetConnection, true},
		{"skip-tran becomes a full reset", PacketRPC, StatusResetConnectionSkipTran, StatusResetConnection, true},
		{"attention", PacketAttention, 0, 0, false},
		{"bulk load", PacketBulkLoad, 0, 0, false},
		{"login", PacketLogin7, 0, 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// Three packets, so the flag must land on the first one only.
			wire := AppendPackets(nil, tc.typ, tc.status, bytes.Repeat([]byte{7}, 1200), 512)
			before := append([]byte(nil), wire...)
			err := MarkResetConnection(wire)
			if (err == nil) != tc.ok {
				t.Fatalf("err = %v, want ok=%v", err, tc.ok)
			}
			if !tc.ok {
				if !bytes.Equal(wire, before) {
					t.Fatal("a refused mark changed the bytes")
				}
				return
			}
			r := Reassembler{}
			r.Feed(wire)
			msg, err := r.Next()
			if err != nil {
				t.Fatal(err)
			}
			if got := msg.Status &^ StatusEOM; got != tc.want {
				t.Fatalf("message status %s, want %s", got, tc.want)
			}
			if !bytes.Equal(msg.Payload, bytes.Repeat([]byte{7}, 1200)) {
				t.Fatal("payload changed")
			}
			for i := 1; i < 8; i++ {
				if i != 1 && wire[i] != before[i] {
					t.Fatalf("header byte %d changed", i)
				}
			}
			if !bytes.Equal(wire[8:], before[8:]) {
				t.Fatal("bytes after the first header changed")
			}
		})
	}
	if err := MarkResetConnection([]byte{1, 0, 0}); !errors.Is(err, ErrShortBuffer) {
		t.Fatalf("short header: %v", err)
	}
}

// resetResponse is a response to a reset-marked request, with the given
// tokens in front of the request's own result.
func resetResponse(head ...[]byte) (withReset, without []byte) {
	var result []byte
	result = EnvChangeDatabase("tenant_b", "tenant_a").AppendEnvChange(result) // the request's own USE
	result = ServerMessage{Token: TokenInfo, Number: 5701, State: 1, Text: "Changed database context to 'tenant_b'."}.AppendMessage(result)
	result = Done{Token: TokenDone, Status: DoneCount, RowCount: 3}.AppendDone(result)
	return append(bytes.Join(head, nil), result...), result
}

func TestResetAckConsumer(t *testing.T) {
	ack := EnvChangeResetAck().AppendEnvChange(nil)
	dbBack := EnvChangeDatabase("tenant_a", "master").AppendEnvChange(nil)
	langBack := EnvChangeLanguage("us_english", "Deutsch").AppendEnvChange(nil)
	info := ServerMessage{Token: TokenInfo, Number: 1, Text: "x"}.AppendMessage(nil)
	tests := []struct {
		name       string
		head       [][]byte
		packetSize int
		acked      bool
		stripped   bool // the client sees the response without head
	}{
		{"ack alone", [][]byte{ack}, 4096, true, true},
		{"database back to the login's, then ack", [][]byte{dbBack, ack}, 4096, true, true},
		{"database and language, then ack", [][]byte{dbBack, langBack, ack}, 4096, true, true},
		{"no ack", nil, 4096, false, false},
		{"ack after another token is not the reset's", [][]byte{info, ack}, 4096, false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			payload, result := resetResponse(tc.head...)
			wire := AppendPacketsSPID(nil, PacketReply, 0, 57, payload, tc.packetSize)
			want := wire
			if tc.stripped {
				want = AppendPacketsSPID(nil, PacketReply, 0, 57, result, tc.packetSize)
			}
			// Every split of the wire into two chunks gives the same output.
			for split := 0; split <= len(wire); split++ {
				var c ResetAckConsumer
				out, err := c.Feed(nil, wire[:split])
				if err == nil {
					out, err = c.Feed(out, wire[split:])
				}
				if err != nil {
					t.Fatalf("split %d: %v", split, err)
				}
				if c.Acked() != tc.acked || !c.Settled() {
					t.Fatalf("split %d: acked=%v settled=%v", split, c.Acked(), c.Settled())
				}
				if !bytes.Equal(out, want) {
					t.Fatalf("split %d:\n got %X\nwant %X", split, out, want)
				}
			}
		})
	}
}

// A first packet holding nothing but the reset's tokens disappears; the
// next packet carries the response.
func TestResetAckConsumerDropsEmptyPacket(t *testing.T) {
	head := append(EnvChangeDatabase("tenant_a", "tenant_b").AppendEnvChange(nil), EnvChangeResetAck().AppendEnvChange(nil)...)
	_, result := resetResponse()
	wire := Header{Type: PacketReply, Length: uint16(HeaderSize + len(head)), SPID: 57, PacketID: 1}.AppendHeader(nil)
	wire = append(wire, head...)
	rest := AppendPacketsSPID(nil, PacketReply, 0, 57, result, 4096)
	rest[6] = 2 // PacketID of the second packet
	wire = append(wire, rest...)
	var c ResetAckConsumer
	out, err := c.Feed(nil, wire)
	if err != nil {
		t.Fatal(err)
	}
	if !c.Acked() || !bytes.Equal(out, rest) {
		t.Fatalf("acked=%v\n got %X\nwant %X", c.Acked(), out, rest)
	}
}

func TestResetAckConsumerErrors(t *testing.T) {
	tests := []struct {
		name string
		wire []byte
		max  int
	}{
		{"not a tabular result", AppendPackets(nil, PacketSQLBatch, 0, []byte{1}, 4096), 0},
		{"header length below 8", []byte{4, 1, 0, 4, 0, 0, 1, 0}, 0},
		{"packet over the limit", AppendPackets(nil, PacketReply, 0, make([]byte, 1000), 4096), 512},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := ResetAckConsumer{MaxPacketSize: tc.max}
			if _, err := c.Feed(nil, tc.wire); err == nil {
				t.Fatal("no error")
			}
			if _, err := c.Feed(nil, []byte{1}); err == nil {
				t.Fatal("error is not sticky")
			}
		})
	}
}

// FuzzResetAckConsumer: never panics; output is never longer than input;
// with the ack removed the rest of the stream is unchanged.
func FuzzResetAckConsumer(f *testing.F) {
	p, _ := resetResponse(EnvChangeDatabase("a", "b").AppendEnvChange(nil), EnvChangeResetAck().AppendEnvChange(nil))
	f.Add(AppendPackets(nil, PacketReply, 0, p, 512), 5)
	f.Add(AppendPackets(nil, PacketReply, 0, []byte{0xE3, 3, 0, 18, 0, 0}, 512), 0)
	f.Add([]byte{4, 0, 0, 14, 0, 0, 0, 0, 0xE3, 0xFF, 0xFF, 18, 0, 0}, 3)
	f.Fuzz(func(t *testing.T, wire []byte, split int) {
		if split < 0 || split > len(wire) {
			split = len(wire) / 2
		}
		var c ResetAckConsumer
		out, err := c.Feed(nil, wire[:split])
		if err != nil {
			return
		}
		out, err = c.Feed(out, wire[split:])
		if err != nil {
			return
		}
		if len(out) > len(wire) {
			t.Fatalf("output %d bytes from %d", len(out), len(wire))
		}
		if c.Settled() && !c.Acked() && !bytes.Equal(out, wire) {
			t.Fatalf("nothing acked but bytes changed")
		}
		if c.Acked() && c.Removed() == 0 {
			t.Fatal("acked without removing anything")
		}
	})
}

// ResetMarker on a chunked stream gives the same bytes as
// MarkResetConnection on the whole request, at every split.
func TestResetMarkerChunked(t *testing.T) {
	for _, tc := range []struct {
		name string
		typ  PacketType
		ok   bool
	}{{"SQL batch", PacketSQLBatch, true}, {"RPC", PacketRPC, true}, {"attention", PacketAttention, false}} {
		t.Run(tc.name, func(t *testing.T) {
			wire := AppendPackets(nil, tc.typ, StatusResetConnectionSkipTran, bytes.Repeat([]byte{3}, 600), 512)
			want := append([]byte(nil), wire...)
			wantErr := MarkResetConnection(want)
			for a := 0; a <= 3; a++ {
				for b := a; b <= 4; b++ {
					got := append([]byte(nil), wire...)
					var m ResetMarker
					var err error
					for _, chunk := range [][]byte{got[:a], got[a:b], got[b:]} {
						if _, err = m.Mark(chunk); err != nil {
							break
						}
					}
					if (err == nil) != tc.ok || (wantErr == nil) != tc.ok {
						t.Fatalf("splits %d,%d: err=%v, whole-message err=%v", a, b, err, wantErr)
					}
					if tc.ok && (!m.Done() || !bytes.Equal(got, want)) {
						t.Fatalf("splits %d,%d: done=%v\n got %X\nwant %X", a, b, m.Done(), got[:10], want[:10])
					}
				}
			}
		})
	}
}
