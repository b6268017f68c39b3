package tds

import (
	"encoding/binary"
	"fmt"
)

// TRANSACTION MANAGER request (0x0E) [MS-TDS §2.2.6.9]: ALL_HEADERS,
// RequestType(2), then a type-specific payload. go-mssqldb, tedious,
// pytds and SqlClient drive transactions this way instead of T-SQL.
//
// A transaction name is one length byte and UTF-16LE, and the length counts
// bytes, not characters: SqlClient, tedious and Microsoft's Rust driver all
// write 2 × the name's length (go-mssqldb and pytds send empty names, where
// the two readings agree). Read as a character count, tedious's
// beginTransaction(cb, "tx") looked truncated and the request unparseable.

// TMRequestType is the transaction manager request type.
type TMRequestType uint16

const (
	TMGetDTCAddress TMRequestType = 0
	TMPropagateXact TMRequestType = 1
	TMBeginXact     TMRequestType = 5
	TMPromoteXact   TMRequestType = 6
	TMCommitXact    TMRequestType = 7
	TMRollbackXact  TMRequestType = 8
	TMSaveXact      TMRequestType = 9
)

func (t TMRequestType) String() string {
	switch t {
	case TMGetDTCAddress:
		return "TM_GET_DTC_ADDRESS"
	case TMPropagateXact:
		return "TM_PROPAGATE_XACT"
	case TMBeginXact:
		return "TM_BEGIN_XACT"
	case TMPromoteXact:
		return "TM_PROMOTE_XACT"
	case TMCommitXact:
		return "TM_COMMIT_XACT"
	case TMRollbackXact:
		return "TM_ROLLBACK_XACT"
	case TMSaveXact:
		return "TM_SAVE_XACT"
	}
	return fmt.Sprintf("TMRequestType(%d)", uint16(t))
}

// IsolationLevel values used by TM_BEGIN_XACT.
type IsolationLevel uint8

const (
	IsolationUnchanged IsolationLevel = iota
	IsolationReadUncommitted
	IsolationReadCommitted
	IsolationRepeatableRead
	IsolationSerializable
	IsolationSnapshot
)

func (l IsolationLevel) String() string {
	names := [...]string{"UNCHANGED", "READ UNCOMMITTED", "READ COMMITTED", "REPEATABLE READ", "SERIALIZABLE", "SNAPSHOT"}
	if int(l) < len(names) {
		return names[l]
	}
	return fmt.Sprintf("IsolationLevel(%d)", uint8(l))
}

// TMBeginXactFlag in commit/rollback: start a new transaction at once.
const TMBeginXactFlag uint8 = 0x01

// TransMgrRequest is a decoded TRANSACTION MANAGER request.
type TransMgrRequest struct {
	Headers   AllHeaders
	Type      TMRequestType
	Isolation IsolationLevel // BEGIN, and COMMIT/ROLLBACK with TMBeginXactFlag
	Name      string         // BEGIN, COMMIT, ROLLBACK, SAVE
	Flags     uint8          // COMMIT/ROLLBACK
	NewName   string         // COMMIT/ROLLBACK with TMBeginXactFlag
	Payload   []byte         // PROPAGATE's DTC cookie; other types' raw remainder
}

// BeginsTransaction reports whether the request leaves a new transaction open.
func (t *TransMgrRequest) BeginsTransaction() bool {
	return t.Type == TMBeginXact || ((t.Type == TMCommitXact || t.Type == TMRollbackXact) && t.Flags&TMBeginXactFlag != 0)
}

// DecodeTransMgr parses a TRANSACTION MANAGER payload.
func DecodeTransMgr(b []byte) (*TransMgrRequest, error) {
	const name = "TRANSACTION_MANAGER"
	h, i, err := DecodeAllHeaders(b)
	if err != nil {
		return nil, err
	}
	if i+2 > len(b) {
		return nil, protoErr(name, i, "missing RequestType")
	}
	t := &TransMgrRequest{Headers: h, Type: TMRequestType(binary.LittleEndian.Uint16(b[i:]))}
	i += 2
	p := b[i:]
	short := func(what string) error { return protoErr(name, i, "%s: truncated %s", t.Type, what) }
	switch t.Type {
	case TMBeginXact:
		if len(p) < 1 {
			return nil, short("isolation level")
		}
		t.Isolation = IsolationLevel(p[0])
		s, _, err := readTMName(p[1:])
		if err != nil {
			return nil, short("name")
		}
		t.Name = s
	case TMCommitXact, TMRollbackXact:
		s, n, err := readTMName(p)
		if err != nil {
			return nil, short("name")
		}
		t.Name = s
		if len(p) < n+1 {
			return nil, short("flags")
		}
		t.Flags = p[n]
		if t.Flags&TMBeginXactFlag != 0 {
			if len(p) < n+2 {
				return nil, short("new isolation level")
			}
			t.Isolation = IsolationLevel(p[n+1])
			s, _, err := readTMName(p[n+2:])
			if err != nil {
				return nil, short("new name")
			}
			t.NewName = s
		}
	case TMSaveXact:
		s, _, err := readTMName(p)
		if err != nil {
			return nil, short("name")
		}
		t.Name = s
	case TMPropagateXact:
		if len(p) < 2 || int(binary.LittleEndian.Uint16(p)) > len(p)-2 {
			return nil, short("DTC cookie")
		}
		t.Payload = p[2 : 2+int(binary.LittleEndian.Uint16(p))]
	default:
		t.Payload = p
	}
	return t, nil
}

// AppendTransMgr appends the payload (frame with PacketTransMgr).
func (t *TransMgrRequest) AppendTransMgr(dst []byte) []byte {
	dst = t.Headers.AppendAllHeaders(dst)
	dst = binary.LittleEndian.AppendUint16(dst, uint16(t.Type))
	switch t.Type {
	case TMBeginXact:
		dst = append(dst, byte(t.Isolation))
		dst = appendTMName(dst, t.Name)
	case TMCommitXact, TMRollbackXact:
		dst = appendTMName(dst, t.Name)
		dst = append(dst, t.Flags)
		if t.Flags&TMBeginXactFlag != 0 {
			dst = append(dst, byte(t.Isolation))
			dst = appendTMName(dst, t.NewName)
		}
	case TMSaveXact:
		dst = appendTMName(dst, t.Name)
	case TMPropagateXact:
		dst = binary.LittleEndian.AppendUint16(dst, uint16(len(t.Payload)))
		dst = append(dst, t.Payload...)
	case TMGetDTCAddress:
		if t.Payload == nil {
			dst = append(dst, 0, 0)
		} else {
			dst = append(dst, t.Payload...)
		}
	default:
		dst = append(dst, t.Payload...)
	}
	return dst
}

// readTMName decodes a transaction name at b[0:]: a byte count, then that
// many bytes of UTF-16LE (an odd count is malformed).
func readTMName(b []byte) (string, int, error) {
	if len(b) < 1 {
		return "", 0, ErrShortBuffer
	}
	n := 1 + int(b[0])
	if b[0]%2 != 0 || len(b) < n {
		return "", 0, ErrShortBuffer
	}
	return ucs2String(b[1:n]), n, nil
}

// appendTMName appends a transaction name as readTMName reads it (at most
// 127 UTF-16 code units; SQL Server's limit is 32 characters).
func appendTMName(dst []byte, s string) []byte {
	s = truncateUCS2(s, 127)
	dst = append(dst, byte(2*ucs2Len(s)))
	return appendUCS2(dst, s)
}

func (t *TransMgrRequest) String() string {
	return fmt.Sprintf("TM{%s txn=0x%X name=%q isolation=%s flags=%d}", t.Type, t.Headers.TransactionDescriptor, t.Name, t.Isolation, t.Flags)
}

// AppendAttention appends an ATTENTION message: a header-only packet with
// EOM [MS-TDS §2.2.1.7]. The server answers with DONE carrying DoneAttn.
func AppendAttention(dst []byte) []byte {
	return AppendPackets(dst, PacketAttention, 0, nil, MinPacketSize)
}
