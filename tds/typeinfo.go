package tds

import (
	"encoding/binary"
	"fmt"
)

// TYPE_INFO [MS-TDS §2.2.5.6] describes a column, parameter or return
// value type; it decides how the value is laid out in ROW/NBCROW,
// RETURNVALUE and RPC parameters [MS-TDS §2.2.5.2.3, §2.2.5.4].

// DataType is the TYPE_INFO type byte.
type DataType uint8

const (
	// Fixed-length types [MS-TDS §2.2.5.4.1]: no length prefix on values.
	TypeNull     DataType = 0x1F
	TypeInt1     DataType = 0x30
	TypeBit      DataType = 0x32
	TypeInt2     DataType = 0x34
	TypeInt4     DataType = 0x38
	TypeDateTim4 DataType = 0x3A
	TypeFlt4     DataType = 0x3B
	TypeMoney    DataType = 0x3C
	TypeDateTime DataType = 0x3D
	TypeFlt8     DataType = 0x3E
	TypeMoney4   DataType = 0x7A
	TypeInt8     DataType = 0x7F

	// 1-byte length types [MS-TDS §2.2.5.4.2].
	TypeGUID            DataType = 0x24
	TypeIntN            DataType = 0x26
	TypeDecimal         DataType = 0x37 // legacy
	TypeNumeric         DataType = 0x3F // legacy
	TypeBitN            DataType = 0x68
	TypeDecimalN        DataType = 0x6A
	TypeNumericN        DataType = 0x6C
	TypeFltN            DataType = 0x6D
	TypeMoneyN          DataType = 0x6E
	TypeDateTimeN       DataType = 0x6F
	TypeDateN           DataType = 0x28
	TypeTimeN           DataType = 0x29
	TypeDateTime2N      DataType = 0x2A
	TypeDateTimeOffsetN DataType = 0x2B
	TypeChar            DataType = 0x2F // legacy
	TypeVarChar         DataType = 0x27 // legacy
	TypeBinary          DataType = 0x2D // legacy
	TypeVarBinary       DataType = 0x25 // legacy

	// 2-byte length types; MaxLen 0xFFFF means a PLP (MAX) type.
	TypeBigVarBinary DataType = 0xA5
	TypeBigVarChar   DataType = 0xA7
	TypeBigBinary    DataType = 0xAD
	TypeBigChar      DataType = 0xAF
	TypeNVarChar     DataType = 0xE7
	TypeNChar        DataType = 0xEF

	// Always PLP.
	TypeXML DataType = 0xF1
	TypeUDT DataType = 0xF0

	// 4-byte length types.
	TypeText    DataType = 0x23
	TypeImage   DataType = 0x22
	TypeNText   DataType = 0x63
	TypeVariant DataType = 0x62

	// TypeTVP appears only in RPC parameters.
	TypeTVP DataType = 0xF3
)

var dataTypeNames = map[DataType]string{
	TypeNull: "NULL", TypeInt1: "INT1", TypeBit: "BIT", TypeInt2: "INT2", TypeInt4: "INT4", TypeDateTim4: "DATETIM4",
	TypeFlt4: "FLT4", TypeMoney: "MONEY", TypeDateTime: "DATETIME", TypeFlt8: "FLT8", TypeMoney4: "MONEY4", TypeInt8: "INT8",
	TypeGUID: "GUID", TypeIntN: "INTN", TypeDecimal: "DECIMAL", TypeNumeric: "NUMERIC", TypeBitN: "BITN",
	TypeDecimalN: "DECIMALN", TypeNumericN: "NUMERICN", TypeFltN: "FLTN", TypeMoneyN: "MONEYN", TypeDateTimeN: "DATETIMN",
	TypeDateN: "DATEN", TypeTimeN: "TIMEN", TypeDateTime2N: "DATETIME2N", TypeDateTimeOffsetN: "DATETIMEOFFSETN",
	TypeChar: "CHAR", TypeVarChar: "VARCHAR", TypeBinary: "BINARY", TypeVarBinary: "VARBINARY",
	TypeBigVarBinary: "BIGVARBINARY", TypeBigVarChar: "BIGVARCHAR", TypeBigBinary: "BIGBINARY", TypeBigChar: "BIGCHAR",
	TypeNVarChar: "NVARCHAR", TypeNChar: "NCHAR", TypeXML: "XML", TypeUDT: "UDT", TypeText: "TEXT", TypeImage: "IMAGE",
	TypeNText: "NTEXT", TypeVariant: "SSVARIANT", TypeTVP: "TVP",
}

func (t DataType) String() string {
	if s, ok := dataTypeNames[t]; ok {
		return s
	}
	return fmt.Sprintf("DataType(0x%02X)", uint8(t))
}

// fixedSize returns the value size of a fixed-length type, or 0.
func (t DataType) fixedSize() int {
	switch t {
	case TypeNull:
		return 0
	case TypeInt1, TypeBit:
		return 1
	case TypeInt2:
		return 2
	case TypeInt4, TypeDateTim4, TypeFlt4, TypeMoney4:
		return 4
	case TypeMoney, TypeDateTime, TypeFlt8, TypeInt8:
		return 8
	}
	return -1
}

// Collation is the 5-byte COLLATION structure [MS-TDS §2.2.5.1.2].
type Collation [5]byte

// CollationLatin1General is SQL_Latin1_General_CP1_CI_AS, the common
// server default (the bytes commonly observed in its ENVCHANGE).
var CollationLatin1General = Collation{0x09, 0x04, 0xD0, 0x00, 0x34}

// MaxLenPLP is the USHORT MaxLen that marks a (MAX) type sent as PLP.
const MaxLenPLP = 0xFFFF

// Scales above 7 are invalid for time types [MS-TDS §2.2.5.4.2].
const maxTimeScale = 7

// TypeInfo is a decoded TYPE_INFO.
type TypeInfo struct {
	Type      DataType
	MaxLen    uint32 // BYTELEN/USHORTLEN/LONGLEN max length; 0xFFFF for (MAX); UDT MaxByteSize
	Precision uint8  // decimal/numeric
	Scale     uint8  // decimal/numeric and time types
	Collation Collation
	// XML schema (XML with SchemaPresent) and UDT names.
	SchemaPresent bool
	DBName        string
	OwningSchema  string
	TypeName      string // UDT
	// SchemaCollection for XML, AssemblyQualifiedName for UDT.
	SchemaCollection string
}

// Constructors for the common column types.

func IntNType(size int) TypeInfo { return TypeInfo{Type: TypeIntN, MaxLen: uint32(size)} }
func BitNType() TypeInfo         { return TypeInfo{Type: TypeBitN, MaxLen: 1} }
func FltNType(size int) TypeInfo { return TypeInfo{Type: TypeFltN, MaxLen: uint32(size)} }
func DecimalNType(prec, scale uint8) TypeInfo {
	return TypeInfo{Type: TypeDecimalN, MaxLen: uint32(decimalLen(prec)), Precision: prec, Scale: scale}
}
func GUIDType() TypeInfo                  { return TypeInfo{Type: TypeGUID, MaxLen: 16} }
func DateTime2NType(scale uint8) TypeInfo { return TypeInfo{Type: TypeDateTime2N, Scale: scale} }
func DateNType() TypeInfo                 { return TypeInfo{Type: TypeDateN} }

// NVarCharType: maxChars 0 means NVARCHAR(MAX).
func NVarCharType(maxChars int) TypeInfo {
	if maxChars <= 0 || maxChars*2 >= MaxLenPLP {
		return TypeInfo{Type: TypeNVarChar, MaxLen: MaxLenPLP, Collation: CollationLatin1General}
	}
	return TypeInfo{Type: TypeNVarChar, MaxLen: uint32(maxChars * 2), Collation: CollationLatin1General}
}

// VarBinaryType: maxBytes 0 means VARBINARY(MAX).
func VarBinaryType(maxBytes int) TypeInfo {
	if maxBytes <= 0 || maxBytes >= MaxLenPLP {
		return TypeInfo{Type: TypeBigVarBinary, MaxLen: MaxLenPLP}
	}
	return TypeInfo{Type: TypeBigVarBinary, MaxLen: uint32(maxBytes)}
}

// IsPLP reports whether values of this type are PLP streams.
func (ti *TypeInfo) IsPLP() bool {
	switch ti.Type {
	case TypeXML, TypeUDT:
		return true
	case TypeBigVarBinary, TypeBigVarChar, TypeBigBinary, TypeBigChar, TypeNVarChar, TypeNChar:
		return ti.MaxLen == MaxLenPLP
	}
	return false
}

func hasCollation(t DataType) bool {
	switch t {
	case TypeBigChar, TypeBigVarChar, TypeText, TypeNText, TypeNChar, TypeNVarChar:
		return true
	}
	return false
}

// IsTextPointer reports the legacy LOB types whose COLMETADATA carries a
// TableName and whose values use the text-pointer form.
func (ti *TypeInfo) IsTextPointer() bool {
	return ti.Type == TypeText || ti.Type == TypeNText || ti.Type == TypeImage
}

// DecodeTypeInfo parses a TYPE_INFO at b[0:]. It returns ErrShortBuffer if
// b ends early and *UnsupportedError for type bytes it does not know.
func DecodeTypeInfo(b []byte) (TypeInfo, int, error) {
	if len(b) < 1 {
		return TypeInfo{}, 0, ErrShortBuffer
	}
	ti := TypeInfo{Type: DataType(b[0])}
	i := 1
	need := func(n int) bool { return len(b) >= i+n }
	switch ti.Type {
	case TypeNull, TypeInt1, TypeBit, TypeInt2, TypeInt4, TypeDateTim4, TypeFlt4, TypeMoney, TypeDateTime, TypeFlt8, TypeMoney4, TypeInt8:
		ti.MaxLen = uint32(ti.Type.fixedSize())
	case TypeGUID, TypeIntN, TypeBitN, TypeFltN, TypeMoneyN, TypeDateTimeN, TypeChar, TypeVarChar, TypeBinary, TypeVarBinary:
		if !need(1) {
			return ti, 0, ErrShortBuffer
		}
		ti.MaxLen = uint32(b[i])
		i++
	case TypeDecimal, TypeNumeric, TypeDecimalN, TypeNumericN:
		if !need(3) {
			return ti, 0, ErrShortBuffer
		}
		ti.MaxLen, ti.Precision, ti.Scale = uint32(b[i]), b[i+1], b[i+2]
		i += 3
	case TypeDateN:
		ti.MaxLen = 3
	case TypeTimeN, TypeDateTime2N, TypeDateTimeOffsetN:
		if !need(1) {
			return ti, 0, ErrShortBuffer
		}
		ti.Scale = b[i]
		i++
		if ti.Scale > maxTimeScale {
			return ti, 0, protoErr("TYPE_INFO", 1, "%s scale %d > 7", ti.Type, ti.Scale)
		}
	case TypeBigVarBinary, TypeBigBinary, TypeBigVarChar, TypeBigChar, TypeNVarChar, TypeNChar:
		if !need(2) {
			return ti, 0, ErrShortBuffer
		}
		ti.MaxLen = uint32(binary.LittleEndian.Uint16(b[i:]))
		i += 2
		if hasCollation(ti.Type) {
			if !need(5) {
				return ti, 0, ErrShortBuffer
			}
			copy(ti.Collation[:], b[i:])
			i += 5
		}
	case TypeText, TypeNText, TypeImage, TypeVariant:
		if !need(4) {
			return ti, 0, ErrShortBuffer
		}
		ti.MaxLen = binary.LittleEndian.Uint32(b[i:])
		i += 4
		if hasCollation(ti.Type) {
			if !need(5) {
				return ti, 0, ErrShortBuffer
			}
			copy(ti.Collation[:], b[i:])
			i += 5
		}
	case TypeXML:
		if !need(1) {
			return ti, 0, ErrShortBuffer
		}
		ti.SchemaPresent = b[i] != 0
		i++
		ti.MaxLen = MaxLenPLP
		if ti.SchemaPresent {
			var n int
			var err error
			if ti.DBName, n, err = readBVarchar(b[i:]); err != nil {
				return ti, 0, err
			}
			i += n
			if ti.OwningSchema, n, err = readBVarchar(b[i:]); err != nil {
				return ti, 0, err
			}
			i += n
			if ti.SchemaCollection, n, err = readUSVarchar(b[i:]); err != nil {
				return ti, 0, err
			}
			i += n
		}
	case TypeUDT:
		if !need(2) {
			return ti, 0, ErrShortBuffer
		}
		ti.MaxLen = uint32(binary.LittleEndian.Uint16(b[i:]))
		i += 2
		for _, dst := range []*string{&ti.DBName, &ti.OwningSchema, &ti.TypeName} {
			s, n, err := readBVarchar(b[i:])
			if err != nil {
				return ti, 0, err
			}
			*dst = s
			i += n
		}
		s, n, err := readUSVarchar(b[i:])
		if err != nil {
			return ti, 0, err
		}
		ti.SchemaCollection = s
		i += n
	default:
		return ti, 0, &UnsupportedError{What: "type", Code: int(ti.Type), Detail: "unknown TYPE_INFO"}
	}
	return ti, i, nil
}

// AppendTypeInfo appends the TYPE_INFO encoding.
func (ti *TypeInfo) AppendTypeInfo(dst []byte) []byte {
	dst = append(dst, byte(ti.Type))
	switch ti.Type {
	case TypeGUID, TypeIntN, TypeBitN, TypeFltN, TypeMoneyN, TypeDateTimeN, TypeChar, TypeVarChar, TypeBinary, TypeVarBinary:
		dst = append(dst, byte(ti.MaxLen))
	case TypeDecimal, TypeNumeric, TypeDecimalN, TypeNumericN:
		dst = append(dst, byte(ti.MaxLen), ti.Precision, ti.Scale)
	case TypeTimeN, TypeDateTime2N, TypeDateTimeOffsetN:
		dst = append(dst, ti.Scale)
	case TypeBigVarBinary, TypeBigBinary, TypeBigVarChar, TypeBigChar, TypeNVarChar, TypeNChar:
		dst = binary.LittleEndian.AppendUint16(dst, uint16(ti.MaxLen))
		if hasCollation(ti.Type) {
			dst = append(dst, ti.Collation[:]...)
		}
	case TypeText, TypeNText, TypeImage, TypeVariant:
		dst = binary.LittleEndian.AppendUint32(dst, ti.MaxLen)
		if hasCollation(ti.Type) {
			dst = append(dst, ti.Collation[:]...)
		}
	case TypeXML:
		if ti.SchemaPresent {
			dst = append(dst, 1)
			dst = appendBVarchar(dst, ti.DBName)
			dst = appendBVarchar(dst, ti.OwningSchema)
			dst = appendUSVarchar(dst, ti.SchemaCollection)
		} else {
			dst = append(dst, 0)
		}
	case TypeUDT:
		dst = binary.LittleEndian.AppendUint16(dst, uint16(ti.MaxLen))
		dst = appendBVarchar(dst, ti.DBName)
		dst = appendBVarchar(dst, ti.OwningSchema)
		dst = appendBVarchar(dst, ti.TypeName)
		dst = appendUSVarchar(dst, ti.SchemaCollection)
	}
	return dst
}

func (ti TypeInfo) String() string {
	switch ti.Type {
	case TypeDecimal, TypeNumeric, TypeDecimalN, TypeNumericN:
		return fmt.Sprintf("%s(%d,%d)", ti.Type, ti.Precision, ti.Scale)
	case TypeTimeN, TypeDateTime2N, TypeDateTimeOffsetN:
		return fmt.Sprintf("%s(%d)", ti.Type, ti.Scale)
	case TypeXML, TypeUDT:
		return ti.Type.String()
	}
	if ti.IsPLP() {
		return ti.Type.String() + "(MAX)"
	}
	return fmt.Sprintf("%s(%d)", ti.Type, ti.MaxLen)
}

// valueKind classifies how a value of a type is laid out, which is all the
// scanner needs to skip it.
type valueKind uint8

const (
	kindFixed   valueKind = iota // exactly fixed bytes
	kindLen1                     // BYTELEN prefix
	kindLen2                     // USHORTLEN prefix, 0xFFFF = NULL
	kindLen4                     // LONGLEN prefix (sql_variant)
	kindPLP                      // PLP chunks
	kindTextPtr                  // text/ntext/image text-pointer form
)

func (ti *TypeInfo) kind() (valueKind, int) {
	if n := ti.Type.fixedSize(); n >= 0 {
		return kindFixed, n
	}
	switch ti.Type {
	case TypeText, TypeNText, TypeImage:
		return kindTextPtr, 0
	case TypeVariant:
		return kindLen4, 0
	}
	if ti.IsPLP() {
		return kindPLP, 0
	}
	switch ti.Type {
	case TypeBigVarBinary, TypeBigBinary, TypeBigVarChar, TypeBigChar, TypeNVarChar, TypeNChar:
		return kindLen2, 0
	}
	return kindLen1, 0
}

func decimalLen(prec uint8) int {
	switch {
	case prec <= 9:
		return 5
	case prec <= 19:
		return 9
	case prec <= 28:
		return 13
	}
	return 17
}
