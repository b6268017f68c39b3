package tds

import (
	"encoding/binary"
	"fmt"
	"strconv"
)

// ENVCHANGE (0xE3) [MS-TDS §2.2.7.9]: Length(2) Type(1) NewValue OldValue.
// The value encoding depends on Type: B_VARCHAR for names and the packet size (a
// decimal string), B_VARBYTE for the collation (5 bytes) and transaction descriptors (8
// bytes), L_VARBYTE for a promoted transaction, a structure of its own for routing.

// EnvChangeType is the ENVCHANGE Type byte.
type EnvChangeType uint8

const (
	EnvDatabase           EnvChangeType = 1
	EnvLanguage           EnvChangeType = 2
	EnvCharset            EnvChangeType = 3
	EnvPacketSize         EnvChangeType = 4
	EnvSortLCID           EnvChangeType = 5
	EnvSortFlags          EnvChangeType = 6
	EnvCollation          EnvChangeType = 7
	EnvBeginTran          EnvChangeType = 8
	EnvCommitTran         EnvChangeType = 9
	EnvRollbackTran       EnvChangeType = 10
	EnvEnlistDTC          EnvChangeType = 11
	EnvDefectTran         EnvChangeType = 12
	EnvMirrorPartner      EnvChangeType = 13
	EnvPromoteTran        EnvChangeType = 15
	EnvTranManagerAddress EnvChangeType = 16
	EnvTranEnded          EnvChangeType = 17
	EnvResetAck           EnvChangeType = 18
	EnvUserInstance       EnvChangeType = 19
	EnvRouting            EnvChangeType = 20
	EnvEnhancedRouting    EnvChangeType = 21
)

var envNames = map[EnvChangeType]string{
	EnvDatabase: "DATABASE", EnvLanguage: "LANGUAGE", EnvCharset: "CHARSET", EnvPacketSize: "PACKETSIZE",
	EnvSortLCID: "SORTLCID", EnvSortFlags: "SORTFLAGS", EnvCollation: "COLLATION", EnvBeginTran: "BEGINTRAN",
	EnvCommitTran: "COMMITTRAN", EnvRollbackTran: "ROLLBACKTRAN", EnvEnlistDTC: "ENLISTDTC", EnvDefectTran: "DEFECTTRAN",
	EnvMirrorPartner: "MIRRORPARTNER", EnvPromoteTran: "PROMOTETRAN", EnvTranManagerAddress: "TRANMGRADDRESS",
	EnvTranEnded: "TRANENDED", EnvResetAck: "RESETACK", EnvUserInstance: "USERINSTANCE", EnvRouting: "ROUTING",
	EnvEnhancedRouting: "ENHANCEDROUTING",
}

func (t EnvChangeType) String() string {
	if s, ok := envNames[t]; ok {
		return s
	}
	return fmt.Sprintf("EnvChangeType(%d)", uint8(t))
}

// valueForm says how a type's values are encoded.
type envForm uint8

const (
	envFormString  envForm = iota // B_VARCHAR / B_VARCHAR
	envFormBytes                  // B_VARBYTE / B_VARBYTE
	envFormPromote                // L_VARBYTE / B_VARBYTE
	envFormRouting                // US-length routing blob / US-length old value
)

func (t EnvChangeType) form() (envForm, bool) {
	switch t {
	case EnvDatabase, EnvLanguage, EnvCharset, EnvPacketSize, EnvSortLCID, EnvSortFlags, EnvMirrorPartner, EnvUserInstance:
		return envFormString, true
	case EnvCollation, EnvBeginTran, EnvCommitTran, EnvRollbackTran, EnvEnlistDTC, EnvDefectTran,
		EnvTranManagerAddress, EnvTranEnded, EnvResetAck:
		return envFormBytes, true
	case EnvPromoteTran:
		return envFormPromote, true
	case EnvRouting, EnvEnhancedRouting:
		return envFormRouting, true
	}
	return 0, false
}

// EnvChange is one ENVCHANGE token. String-valued types (database,
// language, packet size, ...) use New/Old; binary types (collation,
// transaction descriptors, ...) use NewBytes/OldBytes; routing uses Routing.
type EnvChange struct {
	Type     EnvChangeType
	New, Old string
	// NewBytes/OldBytes hold binary values; on decode they alias the input.
	NewBytes, OldBytes []byte
	Routing            Routing // EnvRouting only
	// RawOld is the routing token's old value (normally empty).
	RawOld []byte
}

// Routing is the ENVCHANGE 20 value: where the client must reconnect.
type Routing struct {
	Protocol uint8 // 0 = TCP
	Port     uint16
	Server   string
}

// Constructors for the values servers (and the proxy) send.

func EnvChangeDatabase(newDB, oldDB string) EnvChange {
	return EnvChange{Type: EnvDatabase, New: newDB, Old: oldDB}
}
func EnvChangeLanguage(newLang, oldLang string) EnvChange {
	return EnvChange{Type: EnvLanguage, New: newLang, Old: oldLang}
}

// EnvChangePacketSize carries sizes as decimal strings, as SQL Server does.
func EnvChangePacketSize(newSize, oldSize int) EnvChange {
	return EnvChange{Type: EnvPacketSize, New: strconv.Itoa(newSize), Old: strconv.Itoa(oldSize)}
}

// EnvChangeCollation: the new value must be exactly 5 bytes (go-mssqldb
// panics otherwise); the old value is empty.
func EnvChangeCollation(c Collation) EnvChange {
	return EnvChange{Type: EnvCollation, NewBytes: append([]byte(nil), c[:]...)}
}

// EnvChangeBeginTran announces a new transaction descriptor, which clients
// copy into the ALL_HEADERS of later requests.
func EnvChangeBeginTran(desc uint64) EnvChange {
	return EnvChange{Type: EnvBeginTran, NewBytes: binary.LittleEndian.AppendUint64(nil, desc)}
}
func EnvChangeCommitTran(desc uint64) EnvChange {
	return EnvChange{Type: EnvCommitTran, OldBytes: binary.LittleEndian.AppendUint64(nil, desc)}
}
func EnvChangeRollbackTran(desc uint64) EnvChange {
	return EnvChange{Type: EnvRollbackTran, OldBytes: binary.LittleEndian.AppendUint64(nil, desc)}
}
func EnvChangeTranEnded(desc uint64) EnvChange {
	return EnvChange{Type: EnvTranEnded, OldBytes: binary.LittleEndian.AppendUint64(nil, desc)}
}

// EnvChangeResetAck acknowledges RESETCONNECTION; both values are empty.
func EnvChangeResetAck() EnvChange { return EnvChange{Type: EnvResetAck} }

// EnvChangeRouting redirects the client; it must follow LOGINACK.
func EnvChangeRouting(server string, port uint16) EnvChange {
	return EnvChange{Type: EnvRouting, Routing: Routing{Protocol: 0, Port: port, Server: server}}
}

// Descriptor returns the 8-byte transaction descriptor of a transaction
// ENVCHANGE (new value for BEGIN/DEFECT, old value for COMMIT/ROLLBACK/ENDED).
func (e EnvChange) Descriptor() (uint64, bool) {
	v := e.NewBytes
	if e.Type == EnvCommitTran || e.Type == EnvRollbackTran || e.Type == EnvTranEnded {
		v = e.OldBytes
	}
	if len(v) != 8 {
		return 0, false
	}
	return binary.LittleEndian.Uint64(v), true
}

// PacketSize returns the new packet size of an EnvPacketSize change.
func (e EnvChange) PacketSize() (int, bool) {
	if e.Type != EnvPacketSize {
		return 0, false
	}
	n, err := strconv.Atoi(e.New)
	return n, err == nil
}

// AppendEnvChange appends the token. Unknown types are encoded as binary.
func (e EnvChange) AppendEnvChange(dst []byte) []byte {
	dst, at := beginUSLen(dst, TokenEnvChange)
	dst = append(dst, byte(e.Type))
	form, _ := e.Type.form()
	switch form {
	case envFormString:
		dst = appendBVarchar(dst, e.New)
		dst = appendBVarchar(dst, e.Old)
	case envFormBytes:
		dst = appendBVarbyte(dst, e.NewBytes)
		dst = appendBVarbyte(dst, e.OldBytes)
	case envFormPromote:
		dst = binary.LittleEndian.AppendUint32(dst, uint32(len(e.NewBytes)))
		dst = append(dst, e.NewBytes...)
		dst = appendBVarbyte(dst, e.OldBytes)
	case envFormRouting:
		r := e.Routing
		s := truncateUCS2(r.Server, 0xFFFF-5)
		n := 1 + 2 + 2 + 2*ucs2Len(s)
		dst = binary.LittleEndian.AppendUint16(dst, uint16(n))
		dst = append(dst, r.Protocol)
		dst = binary.LittleEndian.AppendUint16(dst, r.Port)
		dst = appendUSVarchar(dst, s)
		dst = binary.LittleEndian.AppendUint16(dst, uint16(len(e.RawOld)))
		dst = append(dst, e.RawOld...)
	}
	return finishUSLen(dst, at)
}

func appendBVarbyte(dst, v []byte) []byte {
	if len(v) > 255 {
		v = v[:255]
	}
	return append(append(dst, byte(len(v))), v...)
}

// DecodeEnvChange parses the token including its token byte.
func DecodeEnvChange(b []byte) (EnvChange, int, error) {
	body, n, err := usLenBody(b)
	if err != nil {
		return EnvChange{}, 0, err
	}
	e, err := decodeEnvChangeBody(body)
	return e, n, err
}

func decodeEnvChangeBody(b []byte) (EnvChange, error) {
	const name = "ENVCHANGE"
	if len(b) < 1 {
		return EnvChange{}, protoErr(name, 0, "empty body")
	}
	e := EnvChange{Type: EnvChangeType(b[0])}
	form, ok := e.Type.form()
	if !ok {
		return e, &UnsupportedError{What: "ENVCHANGE type", Code: int(e.Type), Detail: "unknown value encoding"}
	}
	v := b[1:]
	bad := func(what string) error {
		return protoErr(name, 1, "%s: %s value does not fit the token length", e.Type, what)
	}
	var n int
	var err error
	switch form {
	case envFormString:
		if e.New, n, err = readBVarchar(v); err != nil {
			return e, bad("new")
		}
		v = v[n:]
		if e.Old, n, err = readBVarchar(v); err != nil {
			return e, bad("old")
		}
		v = v[n:]
	case envFormBytes:
		if e.NewBytes, n, err = readBVarbyte(v); err != nil {
			return e, bad("new")
		}
		v = v[n:]
		if e.OldBytes, n, err = readBVarbyte(v); err != nil {
			return e, bad("old")
		}
		v = v[n:]
	case envFormPromote:
		if len(v) < 4 || uint64(binary.LittleEndian.Uint32(v)) > uint64(len(v)-4) {
			return e, bad("new")
		}
		l := int(binary.LittleEndian.Uint32(v))
		e.NewBytes, v = v[4:4+l], v[4+l:]
		if e.OldBytes, n, err = readBVarbyte(v); err != nil {
			return e, bad("old")
		}
		v = v[n:]
	case envFormRouting:
		if len(v) < 2 || int(binary.LittleEndian.Uint16(v)) > len(v)-2 {
			return e, bad("new")
		}
		l := int(binary.LittleEndian.Uint16(v))
		r := v[2 : 2+l]
		v = v[2+l:]
		if e.Type == EnvRouting {
			if len(r) < 3 {
				return e, bad("routing")
			}
			e.Routing.Protocol = r[0]
			e.Routing.Port = binary.LittleEndian.Uint16(r[1:])
			s, m, err := readUSVarchar(r[3:])
			if err != nil || 3+m != len(r) {
				return e, bad("routing server")
			}
			e.Routing.Server = s
		} else {
			e.NewBytes = r
		}
		if len(v) < 2 || int(binary.LittleEndian.Uint16(v)) != len(v)-2 {
			return e, bad("old")
		}
		e.RawOld = v[2:]
		v = nil
	}
	if len(v) != 0 {
		return e, protoErr(name, len(b)-len(v), "%s: %d trailing bytes", e.Type, len(v))
	}
	return e, nil
}

func (e EnvChange) String() string {
	form, _ := e.Type.form()
	switch {
	case e.Type == EnvRouting:
		return fmt.Sprintf("ENVCHANGE{%s protocol=%d server=%q port=%d}", e.Type, e.Routing.Protocol, e.Routing.Server, e.Routing.Port)
	case form == envFormString:
		return fmt.Sprintf("ENVCHANGE{%s new=%q old=%q}", e.Type, e.New, e.Old)
	}
	return fmt.Sprintf("ENVCHANGE{%s new=%X old=%X}", e.Type, e.NewBytes, e.OldBytes)
}
