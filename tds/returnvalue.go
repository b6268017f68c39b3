package tds

import (
	"encoding/binary"
	"fmt"
)

// RETURNSTATUS (0x79) [MS-TDS §2.2.7.18]: a procedure's return code.

// AppendReturnStatus appends RETURNSTATUS with value v.
func AppendReturnStatus(dst []byte, v int32) []byte {
	return binary.LittleEndian.AppendUint32(append(dst, byte(TokenReturnStatus)), uint32(v))
}

// RETURNVALUE (0xAC) [MS-TDS §2.2.7.17]: an output parameter or UDF
// result: ParamOrdinal(2) ParamName(B_VARCHAR) Status(1) UserType(4)
// Flags(2) TYPE_INFO [CryptoMetadata] Value. sp_prepare / sp_prepexec
// return the statement handle this way.

// ReturnValue status values.
const (
	ReturnValueOutput uint8 = 0x01 // output parameter of an RPC
	ReturnValueUDF    uint8 = 0x02 // return value of a user-defined function
)

// ReturnValue is a RETURNVALUE token header plus its value for encoding.
type ReturnValue struct {
	Ordinal  uint16
	Name     string // "@handle" or ""
	Status   uint8
	UserType uint32
	Flags    uint16
	Type     TypeInfo
	Value    any // for AppendReturnValue; nil = NULL
}

// AppendReturnValue appends the token.
func (r *ReturnValue) AppendReturnValue(dst []byte) ([]byte, error) {
	start := len(dst)
	dst = append(dst, byte(TokenReturnValue))
	dst = binary.LittleEndian.AppendUint16(dst, r.Ordinal)
	dst = appendBVarchar(dst, r.Name)
	dst = append(dst, r.Status)
	dst = binary.LittleEndian.AppendUint32(dst, r.UserType)
	dst = binary.LittleEndian.AppendUint16(dst, r.Flags)
	dst = r.Type.AppendTypeInfo(dst)
	dst, err := AppendValue(dst, &r.Type, r.Value)
	if err != nil {
		return dst[:start], err
	}
	return dst, nil
}

// decodeReturnValueHeader parses everything before the value and returns
// the header size (token byte included). The value itself is skipped (or
// decoded) by the caller according to Type.
func decodeReturnValueHeader(b []byte) (ReturnValue, int, error) {
	if len(b) < 4 {
		return ReturnValue{}, 0, ErrShortBuffer
	}
	r := ReturnValue{Ordinal: binary.LittleEndian.Uint16(b[1:])}
	name, n, err := readBVarchar(b[3:])
	if err != nil {
		return r, 0, err
	}
	r.Name = name
	i := 3 + n
	if len(b) < i+7 {
		return r, 0, ErrShortBuffer
	}
	r.Status = b[i]
	r.UserType = binary.LittleEndian.Uint32(b[i+1:])
	r.Flags = binary.LittleEndian.Uint16(b[i+5:])
	i += 7
	if r.Flags&ColEncrypted != 0 {
		return r, 0, &UnsupportedError{What: "RETURNVALUE", Code: int(TokenReturnValue), Detail: "encrypted value"}
	}
	ti, n, err := DecodeTypeInfo(b[i:])
	if err != nil {
		return r, 0, err
	}
	r.Type = ti
	return r, i + n, nil
}

func (r ReturnValue) String() string {
	return fmt.Sprintf("RETURNVALUE{ordinal=%d name=%q status=%d type=%s}", r.Ordinal, r.Name, r.Status, r.Type)
}
