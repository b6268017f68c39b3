package tds

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
)

// trackerLog records what a RequestTracker reports, in order.
type trackerLog struct {
	packets  int
	starts   []PacketType
	messages []trackedMessage
}

type trackedMessage struct {
	Type     PacketType
	Status   PacketStatus
	SPID     uint16
	Packets  int
	Payload  []byte
	Complete bool
}

func (l *trackerLog) OnPacket()                                     { l.packets++ }
func (l *trackerLog) OnMessageStart(typ PacketType, _ PacketStatus) { l.starts = append(l.starts, typ) }
func (l *trackerLog) OnMessage(m *Message, complete bool) {
	l.messages = append(l.messages, trackedMessage{m.Type, m.Status, m.SPID, m.Packets, bytes.Clone(m.Payload), complete})
}

func TestRequestTrackerFindsEveryMessageWhateverTheChunking(t *testing.T) {
	long := bytes.Repeat([]byte("x"), 9000)
	var stream []byte
	stream = AppendPackets(stream, PacketSQLBatch, StatusResetConnection, batchPayload("select 1"), 4096)
	stream = AppendPackets(stream, PacketRPC, 0, long, 4096) // 3 packets
	stream = AppendAttention(stream)
	stream = AppendPackets(stream, PacketSQLBatch, StatusIgnore, []byte("ab"), 4096)
	want := []trackedMessage{
		{PacketSQLBatch, StatusResetConnection, 0, 1, batchPayload("select 1"), true},
		{PacketRPC, 0, 0, 3, long[:5000], false},
		{PacketAttention, 0, 0, 1, []byte{}, true},
		{PacketSQLBatch, StatusIgnore, 0, 1, []byte("ab"), true},
	}
	for _, chunk := range []int{1, 2, 7, 8, 9, 100, 4096, len(stream)} {
		t.Run(fmt.Sprint(chunk), func(t *testing.T) {
			tr := RequestTracker{MaxKept: 5000}
			var log trackerLog
			for off := 0; off < len(stream); off += chunk {
				if err := tr.Feed(stream[off:min(off+chunk, len(stream))], &log); err != nil {
					t.Fatal(err)
				}
			}
			if log.packets != 6 || len(log.starts) != 4 {
				t.Errorf("packets %d, message starts %v", log.packets, log.starts)
			}
			if len(log.messages) != len(want) {
				t.Fatalf("messages %+v, want %d", log.messages, len(want))
			}
			for i, m := range log.messages {
				w := want[i]
				if m.Type != w.Type || m.Status != w.Status || m.Packets != w.Packets || m.Complete != w.Complete ||
					!bytes.Equal(m.Payload, w.Payload) {
					t.Errorf("message %d: %s %s packets=%d complete=%v %d bytes; want %s %s packets=%d complete=%v %d bytes",
						i, m.Type, m.Status, m.Packets, m.Complete, len(m.Payload), w.Type, w.Status, w.Packets, w.Complete, len(w.Payload))
				}
			}
		})
	}
}

func TestRequestTrackerStopsAtABrokenHeader(t *testing.T) {
	var tr RequestTracker
	var log trackerLog
	stream := append(AppendPackets(nil, PacketSQLBatch, 0, []byte("ok"), 4096), 0x01, 0x01, 0x00, 0x04, 0, 0, 0, 0)
	stream = AppendPackets(stream, PacketSQLBatch, 0, []byte("never seen"), 4096)
	var pe *ProtocolError
	if err := tr.Feed(stream, &log); !errors.As(err, &pe) {
		t.Fatalf("Feed = %v, want a *ProtocolError", err)
	}
	if err := tr.Feed(stream, &log); err == nil {
		t.Fatal("the error is not latched")
	}
	if len(log.messages) != 1 {
		t.Fatalf("messages after the broken header: %+v", log.messages)
	}
}

// FuzzRequestTracker: on any byte stream cut into any chunks, the tracker never panics and,
// up to the point where the Reassembler finds the stream broken, reports the same messages
// (type, status, packets, payload prefix) as the Reassembler.
func FuzzRequestTracker(f *testing.F) {
	var seed []byte
	seed = AppendPackets(seed, PacketSQLBatch, StatusResetConnectionSkipTran, batchPayload("set nocount on"), 512)
	seed = AppendAttention(seed)
	seed = AppendPackets(seed, PacketRPC, 0, bytes.Repeat([]byte{7}, 1200), 512)
	f.Add(seed, uint8(3))
	f.Add([]byte{0x01, 0x01, 0x00, 0x02}, uint8(1))
	f.Add(AppendPackets(nil, PacketTransMgr, StatusIgnore, []byte{5, 0}, 512), uint8(200))
	f.Fuzz(func(t *testing.T, stream []byte, chunk uint8) {
		const maxKept = 600
		tr := RequestTracker{MaxKept: maxKept}
		var log trackerLog
		step := int(chunk%64) + 1
		for off := 0; off < len(stream); off += step {
			tr.Feed(stream[off:min(off+step, len(stream))], &log)
		}
		var r Reassembler // its packet-size limit and type checks only end the comparison early
		r.Feed(stream)
		for i := 0; ; i++ {
			m, err := r.Next()
			if err != nil {
				return
			}
			if i >= len(log.messages) {
				t.Fatalf("reassembler found message %d (%s), the tracker did not", i, m.Type)
			}
			got := log.messages[i]
			kept := m.Payload[:min(len(m.Payload), maxKept)]
			if got.Type != m.Type || got.Status != m.Status || got.SPID != m.SPID || got.Packets != m.Packets ||
				!bytes.Equal(got.Payload, kept) || got.Complete != (len(m.Payload) <= maxKept) {
				t.Fatalf("message %d: tracker %+v, reassembler %s %s packets=%d len=%d", i, got, m.Type, m.Status, m.Packets, len(m.Payload))
			}
		}
	})
}

type countingSink struct{ messages int }

func (s *countingSink) OnPacket()                               {}
func (s *countingSink) OnMessageStart(PacketType, PacketStatus) {}
func (s *countingSink) OnMessage(*Message, bool)                { s.messages++ }

func benchmarkRequestTracker(b *testing.B, stream []byte) {
	var tr RequestTracker
	var sink countingSink
	b.SetBytes(int64(len(stream)))
	b.ReportAllocs()
	for b.Loop() {
		for off := 0; off < len(stream); off += 1500 {
			tr.Feed(stream[off:min(off+1500, len(stream))], &sink)
		}
	}
}

// BenchmarkRequestTrackerSmall: sixteen small batches per loop, cut like TCP segments. The
// relay's common case; it must not allocate.
func BenchmarkRequestTrackerSmall(b *testing.B) {
	var stream []byte
	for i := 0; i < 16; i++ {
		stream = AppendPackets(stream, PacketSQLBatch, 0, batchPayload("select 1"), 4096)
	}
	benchmarkRequestTracker(b, stream)
}

// BenchmarkRequestTrackerLarge: one 20 KB request, longer than what is kept.
func BenchmarkRequestTrackerLarge(b *testing.B) {
	benchmarkRequestTracker(b, AppendPackets(nil, PacketSQLBatch, 0, make([]byte, 20000), 4096))
}
