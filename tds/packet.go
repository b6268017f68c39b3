package tds

import (
	"encoding/binary"
	"fmt"
	"strings"
)

// Packet layer [MS-TDS §2.2.3]. Every TDS message travels as one or more
// packets, each with an 8-byte header; the message is the concatenation of
// the payloads up to and including the packet whose status has EOM.

// Size bounds from MS-TDS.
const (
	// HeaderSize is the fixed packet header length [MS-TDS §2.2.3.1].
	HeaderSize = 8
	// MinPacketSize and MaxPacketSize bound the negotiated packet size
	// (LOGIN7.PacketSize / ENVCHANGE type 4) [MS-TDS §2.2.6.4, §2.2.7.9].
	MinPacketSize = 512
	MaxPacketSize = 32767
	// DefaultPacketSize is what PRELOGIN, LOGIN7 and the login response use
	// before a size is negotiated, and what most drivers request.
	DefaultPacketSize = 4096
	// DefaultMaxMessageSize bounds a reassembled message unless the caller
	// configures another limit. TDS itself has no message limit (a SQL_BATCH
	// may be any length); this protects the proxy's memory.
	DefaultMaxMessageSize = 64 << 20
)

// PacketType is the first header byte: the kind of message [MS-TDS §2.2.3.1.1].
type PacketType uint8

const (
	PacketSQLBatch     PacketType = 0x01
	PacketPreTDS7Login PacketType = 0x02
	PacketRPC          PacketType = 0x03
	PacketReply        PacketType = 0x04 // "tabular result": every server response
	PacketAttention    PacketType = 0x06
	PacketBulkLoad     PacketType = 0x07
	PacketFedAuthToken PacketType = 0x08
	PacketTransMgr     PacketType = 0x0E
	PacketLogin7       PacketType = 0x10
	PacketSSPI         PacketType = 0x11
	PacketPrelogin     PacketType = 0x12 // also wraps TDS 7.x TLS handshake records
)

var packetTypeNames = map[PacketType]string{
	PacketSQLBatch:     "SQL_BATCH",
	PacketPreTDS7Login: "PRE_TDS7_LOGIN",
	PacketRPC:          "RPC",
	PacketReply:        "REPLY",
	PacketAttention:    "ATTENTION",
	PacketBulkLoad:     "BULK_LOAD",
	PacketFedAuthToken: "FEDAUTH_TOKEN",
	PacketTransMgr:     "TRANSACTION_MANAGER",
	PacketLogin7:       "LOGIN7",
	PacketSSPI:         "SSPI",
	PacketPrelogin:     "PRELOGIN",
}

func (t PacketType) String() string {
	if s, ok := packetTypeNames[t]; ok {
		return s
	}
	return fmt.Sprintf("PacketType(0x%02X)", uint8(t))
}

// Known reports whether t is a message type defined by MS-TDS.
func (t PacketType) Known() bool { _, ok := packetTypeNames[t]; return ok }

// PacketStatus is the header's bit field [MS-TDS §2.2.3.1.2].
type PacketStatus uint8

const (
	// StatusEOM marks the last packet of a message.
	StatusEOM PacketStatus = 0x01
	// StatusIgnore (client→server, with EOM) asks the server to drop the message.
	StatusIgnore PacketStatus = 0x02
	// StatusResetConnection (7.1+) resets the session before running the request.
	// Meaningful only on the first packet of SQL_BATCH, RPC and TM requests.
	StatusResetConnection PacketStatus = 0x08
	// StatusResetConnectionSkipTran (7.3+) resets but keeps the open transaction.
	StatusResetConnectionSkipTran PacketStatus = 0x10
)

func (s PacketStatus) String() string {
	if s == 0 {
		return "NORMAL"
	}
	var parts []string
	add := func(bit PacketStatus, name string) {
		if s&bit != 0 {
			parts = append(parts, name)
			s &^= bit
		}
	}
	add(StatusEOM, "EOM")
	add(StatusIgnore, "IGNORE")
	add(StatusResetConnection, "RESETCONNECTION")
	add(StatusResetConnectionSkipTran, "RESETCONNECTIONSKIPTRAN")
	if s != 0 {
		parts = append(parts, fmt.Sprintf("0x%02X", uint8(s)))
	}
	return strings.Join(parts, "|")
}

// Header is the 8-byte packet header [MS-TDS §2.2.3.1]. Length and SPID are
// big-endian on the wire.
type Header struct {
	Type     PacketType
	Status   PacketStatus
	Length   uint16 // whole packet, header included
	SPID     uint16
	PacketID uint8 // 1 for the first packet of a message, +1 mod 256; receivers ignore it
	Window   uint8 // always 0
}

// DecodeHeader parses a header from the first 8 bytes of b. It checks only
// that Length covers the header itself; bounds against the negotiated size
// are the caller's (or the Reassembler's) business.
func DecodeHeader(b []byte) (Header, error) {
	if len(b) < HeaderSize {
		return Header{}, ErrShortBuffer
	}
	h := Header{
		Type:     PacketType(b[0]),
		Status:   PacketStatus(b[1]),
		Length:   binary.BigEndian.Uint16(b[2:]),
		SPID:     binary.BigEndian.Uint16(b[4:]),
		PacketID: b[6],
		Window:   b[7],
	}
	if h.Length < HeaderSize {
		return h, protoErr("packet header", 2, "length %d is smaller than the header", h.Length)
	}
	return h, nil
}

// headerFields reads what a relay needs from a packet header, unchecked. It exists beside
// DecodeHeader for RequestTracker's per-packet path: a Header has six fields, so the compiler
// builds it in memory, and copying it after byte-wide stores stalls the CPU (measured: it
// doubled the tracker's cost per small message).
func headerFields(b *[HeaderSize]byte) (typ PacketType, status PacketStatus, length int, spid uint16) {
	return PacketType(b[0]), PacketStatus(b[1]), int(binary.BigEndian.Uint16(b[2:4])), binary.BigEndian.Uint16(b[4:6])
}

// AppendHeader appends the 8-byte encoding of h.
func (h Header) AppendHeader(dst []byte) []byte {
	return append(dst, byte(h.Type), byte(h.Status), byte(h.Length>>8), byte(h.Length),
		byte(h.SPID>>8), byte(h.SPID), h.PacketID, h.Window)
}

func (h Header) String() string {
	return fmt.Sprintf("Header{%s %s len=%d spid=%d id=%d}", h.Type, h.Status, h.Length, h.SPID, h.PacketID)
}

// ValidPacketSize reports whether n is a packet size MS-TDS allows.
func ValidPacketSize(n int) bool { return n >= MinPacketSize && n <= MaxPacketSize }

// AppendPackets frames payload as one message of type typ, split into
// packets of at most packetSize bytes (header included), and appends them
// to dst. Every packet but the last is filled completely, which 7.3+ peers
// expect. status is applied to the first packet; RESETCONNECTION bits are
// stripped from later packets (the spec makes them meaningful only on the
// first), IGNORE is kept only on the last, and EOM is set on the last packet
// only. An empty payload still produces one header-only packet (ATTENTION).
//
// For server→client messages pass status 0: go-mssqldb treats any non-zero
// status as end-of-message, so a server must emit only 0x00 and 0x01.
//
// An out-of-range packetSize is clamped into MinPacketSize..MaxPacketSize.
func AppendPackets(dst []byte, typ PacketType, status PacketStatus, payload []byte, packetSize int) []byte {
	return AppendPacketsSPID(dst, typ, status, 0, payload, packetSize)
}

// AppendPacketsSPID is AppendPackets with a SPID in every header, which
// servers put on their replies (FreeTDS uses the login reply's SPID as the
// session id).
func AppendPacketsSPID(dst []byte, typ PacketType, status PacketStatus, spid uint16, payload []byte, packetSize int) []byte {
	if packetSize < MinPacketSize {
		packetSize = MinPacketSize
	} else if packetSize > MaxPacketSize {
		packetSize = MaxPacketSize
	}
	max := packetSize - HeaderSize
	first := status &^ (StatusEOM | StatusIgnore)
	var id uint8 = 1
	for {
		n := len(payload)
		last := n <= max
		if !last {
			n = max
		}
		st := first
		if last {
			st |= StatusEOM | (status & StatusIgnore)
		}
		h := Header{Type: typ, Status: st, Length: uint16(n + HeaderSize), SPID: spid, PacketID: id}
		dst = h.AppendHeader(dst)
		dst = append(dst, payload[:n]...)
		payload = payload[n:]
		if last {
			return dst
		}
		first &^= StatusResetConnection | StatusResetConnectionSkipTran
		id++
	}
}
