package tds

import (
	"encoding/binary"
	"fmt"
)

// LOGINACK (0xAD) [MS-TDS §2.2.7.14]: Length(2) Interface(1)
// TDSVersion(4, big-endian) ProgName(B_VARCHAR) ProgVersion(4: major,
// minor, build hi, build lo).

// LoginAck is the server's acceptance of a login.
type LoginAck struct {
	Interface   uint8  // 0 SQL_DFLT, 1 SQL_TSQL
	TDSVersion  uint32 // e.g. TDSVersion74; tedious rejects unknown values
	ProgName    string // "Microsoft SQL Server"
	ProgVersion uint32 // big-endian bytes major.minor.build
}

// AppendLoginAck appends the token.
func (a LoginAck) AppendLoginAck(dst []byte) []byte {
	dst, at := beginUSLen(dst, TokenLoginAck)
	dst = append(dst, a.Interface)
	dst = binary.BigEndian.AppendUint32(dst, a.TDSVersion)
	dst = appendBVarchar(dst, a.ProgName)
	dst = binary.BigEndian.AppendUint32(dst, a.ProgVersion)
	return finishUSLen(dst, at)
}

// DecodeLoginAck parses the token including its token byte.
func DecodeLoginAck(b []byte) (LoginAck, int, error) {
	body, n, err := usLenBody(b)
	if err != nil {
		return LoginAck{}, 0, err
	}
	a, err := decodeLoginAckBody(body)
	return a, n, err
}

func decodeLoginAckBody(b []byte) (LoginAck, error) {
	if len(b) < 10 {
		return LoginAck{}, protoErr("LOGINACK", 0, "body of %d bytes too short", len(b))
	}
	a := LoginAck{Interface: b[0], TDSVersion: binary.BigEndian.Uint32(b[1:])}
	name, n, err := readBVarchar(b[5:])
	if err != nil || 5+n+4 != len(b) {
		return a, protoErr("LOGINACK", 5, "ProgName does not fit the token length")
	}
	a.ProgName = name
	a.ProgVersion = binary.BigEndian.Uint32(b[5+n:])
	return a, nil
}

func (a LoginAck) String() string {
	return fmt.Sprintf("LOGINACK{interface=%d tds=0x%08X prog=%q version=%d.%d.%d}", a.Interface, a.TDSVersion,
		a.ProgName, a.ProgVersion>>24, (a.ProgVersion>>16)&0xFF, a.ProgVersion&0xFFFF)
}
