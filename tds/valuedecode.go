package tds

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/big"
	"strings"
	"time"
)

// Value decoding: the inverse of AppendValue, for RPC parameters (what a
// server needs). Go values returned per type:
//
//	NULL (any type)                 nil
//	INTN/INT1..INT8                 int64
//	BITN/BIT                        bool
//	FLTN/FLT4/FLT8                  float64
//	DECIMALN/NUMERICN/DECIMAL/NUMERIC, MONEY/MONEY4/MONEYN   Decimal
//	DATETIME/DATETIM4/DATETIMEN, DATEN, TIMEN, DATETIME2N     time.Time (UTC; TIMEN on 0001-01-01)
//	DATETIMEOFFSETN                 time.Time in a fixed zone of the sent offset
//	GUID                            GUID
//	NVARCHAR/NCHAR/NTEXT/XML        string (UTF-16 decoded)
//	BIGVARCHAR/BIGCHAR/VARCHAR/CHAR/TEXT   string, bytes as-is (caller handles the code page)
//	binary types, UDT               []byte (a copy)
//
// SQL_VARIANT is *UnsupportedError.

// Decimal is an exact decimal value: Unscaled / 10^Scale.
type Decimal struct {
	Unscaled *big.Int
	Scale    uint8
}

// String renders the value exactly, e.g. "-12.3400".
func (d Decimal) String() string {
	u := d.Unscaled
	if u == nil {
		u = new(big.Int)
	}
	return FormatScaled(u, int(d.Scale))
}

// FormatScaled renders unscaled/10^scale exactly ("-0.05" for -5, 2).
func FormatScaled(u *big.Int, scale int) string {
	neg := u.Sign() < 0
	s := new(big.Int).Abs(u).String()
	if scale > 0 {
		if len(s) <= scale {
			s = strings.Repeat("0", scale-len(s)+1) + s
		}
		s = s[:len(s)-scale] + "." + s[len(s)-scale:]
	}
	if neg {
		s = "-" + s
	}
	return s
}

// GUID is a UNIQUEIDENTIFIER in SQL Server's wire order (first three
// groups little-endian).
type GUID [16]byte

// String renders the canonical upper-case text form.
func (g GUID) String() string {
	const hexd = "0123456789ABCDEF"
	order := [...]int{3, 2, 1, 0, -1, 5, 4, -1, 7, 6, -1, 8, 9, -1, 10, 11, 12, 13, 14, 15}
	var sb strings.Builder
	sb.Grow(36)
	for _, i := range order {
		if i < 0 {
			sb.WriteByte('-')
			continue
		}
		sb.WriteByte(hexd[g[i]>>4])
		sb.WriteByte(hexd[g[i]&15])
	}
	return sb.String()
}

// Decode returns the parameter's value as a Go value (see the table above).
func (p *RPCParam) Decode() (any, error) {
	if p.Type.Type == TypeNull || p.IsNull() {
		return nil, nil
	}
	if p.Type.Type == TypeVariant {
		return nil, &UnsupportedError{What: "type", Code: int(TypeVariant), Detail: "sql_variant value"}
	}
	return DecodeValueData(&p.Type, p.Bytes())
}

// DecodeValueData decodes a non-NULL value's data, without its length
// prefix or PLP framing (RPCParam.Bytes), as a Go value of the table above.
func DecodeValueData(ti *TypeInfo, p []byte) (any, error) {
	le := binary.LittleEndian
	bad := func() (any, error) {
		return nil, fmt.Errorf("tds: bad %d-byte value for %s", len(p), ti.Type)
	}
	switch ti.Type {
	case TypeIntN, TypeInt1, TypeInt2, TypeInt4, TypeInt8:
		switch len(p) {
		case 1:
			return int64(p[0]), nil
		case 2:
			return int64(int16(le.Uint16(p))), nil
		case 4:
			return int64(int32(le.Uint32(p))), nil
		case 8:
			return int64(le.Uint64(p)), nil
		}
	case TypeBit, TypeBitN:
		if len(p) == 1 {
			return p[0] != 0, nil
		}
	case TypeFlt4, TypeFlt8, TypeFltN:
		switch len(p) {
		case 4:
			return float64(math.Float32frombits(le.Uint32(p))), nil
		case 8:
			return math.Float64frombits(le.Uint64(p)), nil
		}
	case TypeMoney, TypeMoney4, TypeMoneyN:
		switch len(p) {
		case 4:
			return Decimal{Unscaled: big.NewInt(int64(int32(le.Uint32(p)))), Scale: 4}, nil
		case 8:
			v := int64(int32(le.Uint32(p)))<<32 | int64(le.Uint32(p[4:]))
			return Decimal{Unscaled: big.NewInt(v), Scale: 4}, nil
		}
	case TypeDateTime, TypeDateTim4, TypeDateTimeN:
		base := time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC)
		switch len(p) {
		case 4: // SMALLDATETIME: days since 1900, minutes
			return base.AddDate(0, 0, int(le.Uint16(p))).Add(time.Duration(le.Uint16(p[2:])) * time.Minute), nil
		case 8: // DATETIME: days since 1900, 1/300 s ticks
			days := int32(le.Uint32(p))
			return base.AddDate(0, 0, int(days)).Add(time.Duration(le.Uint32(p[4:])) * time.Second / 300), nil
		}
	case TypeGUID:
		if len(p) == 16 {
			return GUID(p), nil
		}
	case TypeDecimalN, TypeNumericN, TypeDecimal, TypeNumeric:
		if len(p) < 2 {
			break
		}
		mag := make([]byte, len(p)-1)
		for i := range mag { // little-endian magnitude → big-endian for big.Int
			mag[i] = p[len(p)-1-i]
		}
		u := new(big.Int).SetBytes(mag)
		if p[0] == 0 {
			u.Neg(u)
		}
		return Decimal{Unscaled: u, Scale: ti.Scale}, nil
	case TypeDateN:
		if len(p) == 3 {
			return dateFromDays(p), nil
		}
	case TypeTimeN, TypeDateTime2N, TypeDateTimeOffsetN:
		if ti.Scale > maxTimeScale {
			break
		}
		tl := timeLen(ti.Scale)
		want := tl
		switch ti.Type {
		case TypeDateTime2N:
			want += 3
		case TypeDateTimeOffsetN:
			want += 5
		}
		if len(p) != want {
			break
		}
		var units uint64
		for i := 0; i < tl; i++ {
			units |= uint64(p[i]) << (8 * i)
		}
		ns := time.Duration(units * uint64(math.Pow10(9-int(ti.Scale))))
		if ti.Type == TypeTimeN {
			return time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC).Add(ns), nil
		}
		d := dateFromDays(p[tl : tl+3]).Add(ns)
		if ti.Type == TypeDateTimeOffsetN {
			// The stored date/time is UTC; present the sender's wall clock.
			off := int(int16(le.Uint16(p[tl+3:])))
			return d.In(time.FixedZone("", off*60)), nil
		}
		return d, nil
	case TypeNVarChar, TypeNChar, TypeNText, TypeXML:
		return ucs2String(p), nil
	case TypeBigVarChar, TypeBigChar, TypeVarChar, TypeChar, TypeText:
		return string(p), nil
	case TypeBigVarBinary, TypeBigBinary, TypeVarBinary, TypeBinary, TypeImage, TypeUDT:
		return append([]byte{}, p...), nil
	default:
		return nil, &UnsupportedError{What: "type", Code: int(ti.Type), Detail: "value decoding"}
	}
	return bad()
}

// dateFromDays decodes DATEN's 3-byte days since 0001-01-01.
func dateFromDays(p []byte) time.Time {
	days := int(p[0]) | int(p[1])<<8 | int(p[2])<<16
	return time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, days)
}
