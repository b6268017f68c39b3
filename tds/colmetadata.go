package tds

import (
	"encoding/binary"
	"fmt"
	"strings"
)

// COLMETADATA (0x81) [MS-TDS §2.2.7.4]: Count(2), then per column
// UserType(4) Flags(2) TYPE_INFO [TableName — text/ntext/image only]
// ColName(B_VARCHAR). Count 0xFFFF means "no metadata" (rows reuse
// metadata the client already has, e.g. cursor fetches).

// Column flags [MS-TDS §2.2.7.4].
const (
	ColNullable     uint16 = 0x0001
	ColCaseSen      uint16 = 0x0002
	ColUpdateable   uint16 = 0x0008 // 2 bits: 0 read-only, 1 read/write, 2 unknown
	ColIdentity     uint16 = 0x0010
	ColComputed     uint16 = 0x0020
	ColFixedLenCLR  uint16 = 0x0100
	ColSparseColSet uint16 = 0x0400
	ColEncrypted    uint16 = 0x0800 // Always Encrypted: CryptoMetadata follows
	ColHidden       uint16 = 0x2000
	ColKey          uint16 = 0x4000
	ColNullableUnk  uint16 = 0x8000
)

// NoMetadata is the COLMETADATA count meaning "no metadata".
const NoMetadata = 0xFFFF

// Column is one COLMETADATA entry.
type Column struct {
	UserType  uint32
	Flags     uint16
	Type      TypeInfo
	TableName []string // text/ntext/image only: multi-part table name
	Name      string
}

// ColMetadata is a COLMETADATA token. NoMetadata is true for count 0xFFFF.
type ColMetadata struct {
	Columns    []Column
	NoMetadata bool
}

// AppendColMetadata appends the token.
func (c ColMetadata) AppendColMetadata(dst []byte) []byte {
	dst = append(dst, byte(TokenColMetadata))
	if c.NoMetadata {
		return append(dst, 0xFF, 0xFF)
	}
	dst = binary.LittleEndian.AppendUint16(dst, uint16(len(c.Columns)))
	for i := range c.Columns {
		col := &c.Columns[i]
		dst = binary.LittleEndian.AppendUint32(dst, col.UserType)
		dst = binary.LittleEndian.AppendUint16(dst, col.Flags)
		dst = col.Type.AppendTypeInfo(dst)
		if col.Type.IsTextPointer() {
			dst = append(dst, byte(len(col.TableName)))
			for _, p := range col.TableName {
				dst = appendUSVarchar(dst, p)
			}
		}
		dst = appendBVarchar(dst, col.Name)
	}
	return dst
}

// DecodeColMetadata parses the token including its token byte. It returns
// ErrShortBuffer when b ends inside the token, *UnsupportedError for
// encrypted columns (Always Encrypted metadata is not supported) or unknown
// types.
func DecodeColMetadata(b []byte) (ColMetadata, int, error) {
	if len(b) < 3 {
		return ColMetadata{}, 0, ErrShortBuffer
	}
	count := int(binary.LittleEndian.Uint16(b[1:]))
	if count == NoMetadata {
		return ColMetadata{NoMetadata: true}, 3, nil
	}
	// Each column needs at least 8 bytes; reject absurd counts early
	// without allocating for them.
	cols := make([]Column, 0, min(count, len(b)/8+1))
	i := 3
	for k := 0; k < count; k++ {
		col, n, err := decodeColumn(b[i:])
		if err != nil {
			if pe, ok := err.(*ProtocolError); ok {
				pe.Offset += i
			}
			return ColMetadata{}, 0, err
		}
		cols = append(cols, col)
		i += n
	}
	return ColMetadata{Columns: cols}, i, nil
}

func decodeColumn(b []byte) (Column, int, error) {
	if len(b) < 7 {
		return Column{}, 0, ErrShortBuffer
	}
	col := Column{UserType: binary.LittleEndian.Uint32(b), Flags: binary.LittleEndian.Uint16(b[4:])}
	if col.Flags&ColEncrypted != 0 {
		return col, 0, &UnsupportedError{What: "COLMETADATA", Code: int(b[6]), Detail: "encrypted column (Always Encrypted)"}
	}
	ti, n, err := DecodeTypeInfo(b[6:])
	if err != nil {
		return col, 0, err
	}
	if ti.Type == TypeTVP {
		return col, 0, &UnsupportedError{What: "type", Code: int(ti.Type), Detail: "TVP in a result set"}
	}
	col.Type = ti
	i := 6 + n
	if ti.IsTextPointer() {
		if len(b) < i+1 {
			return col, 0, ErrShortBuffer
		}
		parts := int(b[i])
		i++
		for p := 0; p < parts; p++ {
			s, n, err := readUSVarchar(b[i:])
			if err != nil {
				return col, 0, err
			}
			col.TableName = append(col.TableName, s)
			i += n
		}
	}
	name, n, err := readBVarchar(b[i:])
	if err != nil {
		return col, 0, err
	}
	col.Name = name
	return col, i + n, nil
}

func (c ColMetadata) String() string {
	if c.NoMetadata {
		return "COLMETADATA{none}"
	}
	var parts []string
	for _, col := range c.Columns {
		parts = append(parts, fmt.Sprintf("%s %s", col.Name, col.Type))
	}
	return "COLMETADATA{" + strings.Join(parts, ", ") + "}"
}
