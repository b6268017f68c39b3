package tds

import (
	"encoding/binary"
	"fmt"
)

// ALL_HEADERS [MS-TDS §2.2.5.3]: the prefix of SQL_BATCH, RPC and
// TRANSACTION MANAGER requests in TDS 7.2+. TotalLength(4, counts itself),
// then headers: HeaderLength(4, counts itself) HeaderType(2) Data.

// HeaderType is an ALL_HEADERS entry type.
type HeaderType uint16

const (
	HeaderQueryNotifications    HeaderType = 1
	HeaderTransactionDescriptor HeaderType = 2
	HeaderTraceActivity         HeaderType = 3
)

func (h HeaderType) String() string {
	switch h {
	case HeaderQueryNotifications:
		return "QUERY_NOTIFICATIONS"
	case HeaderTransactionDescriptor:
		return "TRANSACTION_DESCRIPTOR"
	case HeaderTraceActivity:
		return "TRACE_ACTIVITY"
	}
	return fmt.Sprintf("HeaderType(%d)", uint16(h))
}

// AllHeaders is a decoded ALL_HEADERS block.
type AllHeaders struct {
	// HasTransaction reports a transaction descriptor header (required by
	// the spec; every driver sends it).
	HasTransaction bool
	// TransactionDescriptor is 0 outside a transaction, else the value the
	// server sent in ENVCHANGE 8.
	TransactionDescriptor uint64
	OutstandingRequests   uint32 // 1 without MARS
	// QueryNotification and TraceActivity are kept raw (Data only).
	QueryNotification []byte
	TraceActivity     []byte
	// Other holds unknown header types, raw.
	Other []RawHeader
}

// RawHeader is an ALL_HEADERS entry kept undecoded.
type RawHeader struct {
	Type HeaderType
	Data []byte
}

// DecodeAllHeaders parses ALL_HEADERS at the start of b and returns the
// size of the block. Byte slices alias b.
func DecodeAllHeaders(b []byte) (AllHeaders, int, error) {
	const name = "ALL_HEADERS"
	var h AllHeaders
	if len(b) < 4 {
		return h, 0, protoErr(name, 0, "missing TotalLength")
	}
	total := binary.LittleEndian.Uint32(b)
	if total < 4 || uint64(total) > uint64(len(b)) {
		return h, 0, protoErr(name, 0, "TotalLength %d outside request of %d bytes", total, len(b))
	}
	body := b[4:total]
	for off := 4; len(body) > 0; {
		if len(body) < 6 {
			return h, 0, protoErr(name, off, "truncated header")
		}
		l := binary.LittleEndian.Uint32(body)
		if l < 6 || uint64(l) > uint64(len(body)) {
			return h, 0, protoErr(name, off, "HeaderLength %d invalid", l)
		}
		t := HeaderType(binary.LittleEndian.Uint16(body[4:]))
		d := body[6:l]
		switch t {
		case HeaderTransactionDescriptor:
			if len(d) != 12 {
				return h, 0, protoErr(name, off, "transaction descriptor header has %d bytes, want 12", len(d))
			}
			h.HasTransaction = true
			h.TransactionDescriptor = binary.LittleEndian.Uint64(d)
			h.OutstandingRequests = binary.LittleEndian.Uint32(d[8:])
		case HeaderQueryNotifications:
			h.QueryNotification = d
		case HeaderTraceActivity:
			h.TraceActivity = d
		default:
			h.Other = append(h.Other, RawHeader{Type: t, Data: d})
		}
		body = body[l:]
		off += int(l)
	}
	return h, int(total), nil
}

// AppendAllHeaders appends the block. The transaction descriptor header is
// always written (the spec requires it in 7.2+); the others when set.
func (h *AllHeaders) AppendAllHeaders(dst []byte) []byte {
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0)
	put := func(t HeaderType, d []byte) {
		dst = binary.LittleEndian.AppendUint32(dst, uint32(6+len(d)))
		dst = binary.LittleEndian.AppendUint16(dst, uint16(t))
		dst = append(dst, d...)
	}
	if h.QueryNotification != nil {
		put(HeaderQueryNotifications, h.QueryNotification)
	}
	td := binary.LittleEndian.AppendUint64(nil, h.TransactionDescriptor)
	outstanding := h.OutstandingRequests
	if outstanding == 0 {
		outstanding = 1
	}
	put(HeaderTransactionDescriptor, binary.LittleEndian.AppendUint32(td, outstanding))
	if h.TraceActivity != nil {
		put(HeaderTraceActivity, h.TraceActivity)
	}
	for _, o := range h.Other {
		put(o.Type, o.Data)
	}
	binary.LittleEndian.PutUint32(dst[start:], uint32(len(dst)-start))
	return dst
}

func (h AllHeaders) String() string {
	return fmt.Sprintf("ALL_HEADERS{txn=0x%X outstanding=%d}", h.TransactionDescriptor, h.OutstandingRequests)
}
