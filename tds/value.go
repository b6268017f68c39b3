package tds

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
	"math/big"
	"strings"
	"time"
)

// Value encoding for ROW/NBCROW, RETURNVALUE and RPC parameters
// [MS-TDS §2.2.5.5.x]. Supported Go values per type:
//
//	INTN/INT1..INT8      int, int8..int64, uint8..uint32
//	BITN/BIT             bool
//	FLTN/FLT4/FLT8       float32, float64
//	DECIMALN/NUMERICN    Decimal, *big.Int (unscaled), string ("-12.34"), int64
//	NVARCHAR/NCHAR       string (MAX types as PLP)
//	BIGVARCHAR/BIGCHAR   string or []byte, bytes as-is (caller handles code page)
//	BIGVARBINARY/BINARY  []byte (MAX as PLP)
//	DATETIME2N/DATEN/TIMEN time.Time (wall clock is used, location ignored)
//	DATETIMEN/DATETIME/DATETIM4 time.Time (wall clock; DATETIME rounded to
//	                     1/300 s, SMALLDATETIME to the minute)
//	DATETIMEOFFSETN      time.Time (sent as UTC plus the location's offset)
//	MONEYN/MONEY/MONEY4  Decimal, *big.Int (unscaled, scale 4), string, int64
//	GUID                 GUID or [16]byte in wire order, or a canonical string
//	                     "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx"
//
// nil encodes NULL (not allowed for fixed-length types in ROW).

// AppendValue appends v encoded for type ti.
func AppendValue(dst []byte, ti *TypeInfo, v any) ([]byte, error) {
	kind, fixed := ti.kind()
	if v == nil {
		switch kind {
		case kindFixed:
			return dst, fmt.Errorf("tds: NULL for fixed-length type %s (use NBCROW)", ti.Type)
		case kindLen1:
			return append(dst, 0), nil
		case kindLen2:
			return append(dst, 0xFF, 0xFF), nil
		case kindLen4:
			return append(dst, 0, 0, 0, 0), nil
		case kindPLP:
			return binary.LittleEndian.AppendUint64(dst, math.MaxUint64), nil
		case kindTextPtr:
			return append(dst, 0), nil
		}
	}
	switch ti.Type {
	case TypeIntN, TypeInt1, TypeInt2, TypeInt4, TypeInt8:
		n, ok := toInt64(v)
		if !ok {
			return dst, typeErr(ti, v)
		}
		size := fixed
		if kind == kindLen1 {
			size = int(ti.MaxLen)
			dst = append(dst, byte(size))
		}
		switch size {
		case 1:
			if n < 0 || n > 255 {
				return dst, rangeErr(ti, v)
			}
			return append(dst, byte(n)), nil
		case 2:
			if n < math.MinInt16 || n > math.MaxInt16 {
				return dst, rangeErr(ti, v)
			}
			return binary.LittleEndian.AppendUint16(dst, uint16(n)), nil
		case 4:
			if n < math.MinInt32 || n > math.MaxInt32 {
				return dst, rangeErr(ti, v)
			}
			return binary.LittleEndian.AppendUint32(dst, uint32(n)), nil
		case 8:
			return binary.LittleEndian.AppendUint64(dst, uint64(n)), nil
		}
		return dst, fmt.Errorf("tds: %s with MaxLen %d", ti.Type, ti.MaxLen)
	case TypeBitN, TypeBit:
		b, ok := v.(bool)
		if !ok {
			return dst, typeErr(ti, v)
		}
		if kind == kindLen1 {
			dst = append(dst, 1)
		}
		if b {
			return append(dst, 1), nil
		}
		return append(dst, 0), nil
	case TypeFltN, TypeFlt4, TypeFlt8:
		var f float64
		switch x := v.(type) {
		case float64:
			f = x
		case float32:
			f = float64(x)
		default:
			return dst, typeErr(ti, v)
		}
		size := fixed
		if kind == kindLen1 {
			size = int(ti.MaxLen)
			dst = append(dst, byte(size))
		}
		switch size {
		case 4:
			return binary.LittleEndian.AppendUint32(dst, math.Float32bits(float32(f))), nil
		case 8:
			return binary.LittleEndian.AppendUint64(dst, math.Float64bits(f)), nil
		}
		return dst, fmt.Errorf("tds: FLTN with MaxLen %d", ti.MaxLen)
	case TypeDecimalN, TypeNumericN, TypeDecimal, TypeNumeric:
		u, err := unscaledDecimal(v, ti.Scale)
		if err != nil {
			return dst, err
		}
		n := decimalLen(ti.Precision) - 1
		mag := new(big.Int).Abs(u).Bytes() // big-endian
		if len(mag) > n {
			return dst, rangeErr(ti, v)
		}
		sign := byte(1)
		if u.Sign() < 0 {
			sign = 0
		}
		dst = append(dst, byte(n+1), sign)
		for i := 0; i < n; i++ {
			var c byte
			if i < len(mag) {
				c = mag[len(mag)-1-i]
			}
			dst = append(dst, c)
		}
		return dst, nil
	case TypeNVarChar, TypeNChar:
		s, ok := v.(string)
		if !ok {
			return dst, typeErr(ti, v)
		}
		return appendVarBytes(dst, ti, kind, appendUCS2(nil, s))
	case TypeBigVarChar, TypeBigChar, TypeBigVarBinary, TypeBigBinary, TypeXML, TypeUDT:
		var b []byte
		switch x := v.(type) {
		case []byte:
			b = x
		case string:
			if ti.Type == TypeBigVarBinary || ti.Type == TypeBigBinary {
				return dst, typeErr(ti, v)
			}
			b = []byte(x)
			if ti.Type == TypeXML {
				b = appendUCS2(nil, x) // XML values are UTF-16
			}
		default:
			return dst, typeErr(ti, v)
		}
		return appendVarBytes(dst, ti, kind, b)
	case TypeGUID:
		var g [16]byte
		switch x := v.(type) {
		case [16]byte:
			g = x
		case GUID:
			g = x
		case string:
			var err error
			if g, err = parseGUID(x); err != nil {
				return dst, err
			}
		default:
			return dst, typeErr(ti, v)
		}
		return append(append(dst, 16), g[:]...), nil
	case TypeMoneyN, TypeMoney, TypeMoney4:
		u, err := unscaledDecimal(v, 4)
		if err != nil {
			return dst, err
		}
		size := fixed
		if kind == kindLen1 {
			size = int(ti.MaxLen)
			dst = append(dst, byte(size))
		}
		if !u.IsInt64() {
			return dst, rangeErr(ti, v)
		}
		n := u.Int64()
		switch size {
		case 4:
			if n < math.MinInt32 || n > math.MaxInt32 {
				return dst, rangeErr(ti, v)
			}
			return binary.LittleEndian.AppendUint32(dst, uint32(n)), nil
		case 8: // high 32 bits first
			dst = binary.LittleEndian.AppendUint32(dst, uint32(n>>32))
			return binary.LittleEndian.AppendUint32(dst, uint32(n)), nil
		}
		return dst, fmt.Errorf("tds: %s with MaxLen %d", ti.Type, ti.MaxLen)
	case TypeDateTimeN, TypeDateTime, TypeDateTim4:
		t, ok := v.(time.Time)
		if !ok {
			return dst, typeErr(ti, v)
		}
		size := fixed
		if kind == kindLen1 {
			size = int(ti.MaxLen)
			dst = append(dst, byte(size))
		}
		switch size {
		case 4:
			days, mins, ok := smallDateTimeParts(t)
			if !ok {
				return dst, rangeErr(ti, v)
			}
			dst = binary.LittleEndian.AppendUint16(dst, days)
			return binary.LittleEndian.AppendUint16(dst, mins), nil
		case 8:
			days, ticks, ok := dateTimeParts(t)
			if !ok {
				return dst, rangeErr(ti, v)
			}
			dst = binary.LittleEndian.AppendUint32(dst, uint32(days))
			return binary.LittleEndian.AppendUint32(dst, ticks), nil
		}
		return dst, fmt.Errorf("tds: %s with MaxLen %d", ti.Type, ti.MaxLen)
	case TypeDateTimeOffsetN:
		t, ok := v.(time.Time)
		if !ok {
			return dst, typeErr(ti, v)
		}
		if ti.Scale > maxTimeScale {
			return dst, fmt.Errorf("tds: %s scale %d", ti.Type, ti.Scale)
		}
		_, off := t.Zone()
		if off%60 != 0 || off < -14*3600 || off > 14*3600 {
			return dst, rangeErr(ti, v)
		}
		u := t.UTC()
		dst = append(dst, byte(timeLen(ti.Scale)+5))
		dst = appendDate(appendTime(dst, u, ti.Scale), u)
		return binary.LittleEndian.AppendUint16(dst, uint16(int16(off/60))), nil
	case TypeDateTime2N, TypeDateN, TypeTimeN:
		t, ok := v.(time.Time)
		if !ok {
			return dst, typeErr(ti, v)
		}
		if ti.Scale > maxTimeScale {
			return dst, fmt.Errorf("tds: %s scale %d", ti.Type, ti.Scale)
		}
		var body []byte
		if ti.Type != TypeDateN {
			body = appendTime(body, t, ti.Scale)
		}
		if ti.Type != TypeTimeN {
			body = appendDate(body, t)
		}
		return append(append(dst, byte(len(body))), body...), nil
	}
	return dst, fmt.Errorf("tds: encoding values of type %s is not supported", ti.Type)
}

func appendVarBytes(dst []byte, ti *TypeInfo, kind valueKind, b []byte) ([]byte, error) {
	if kind == kindPLP {
		dst = binary.LittleEndian.AppendUint64(dst, uint64(len(b)))
		// One chunk is valid PLP; split at 1 MiB only to keep chunk
		// lengths modest for readers that buffer per chunk.
		for len(b) > 0 {
			n := min(len(b), 1<<20)
			dst = binary.LittleEndian.AppendUint32(dst, uint32(n))
			dst = append(dst, b[:n]...)
			b = b[n:]
		}
		return binary.LittleEndian.AppendUint32(dst, 0), nil
	}
	if uint32(len(b)) > ti.MaxLen || len(b) >= 0xFFFF {
		return dst, fmt.Errorf("tds: %d bytes exceed %s", len(b), ti)
	}
	dst = binary.LittleEndian.AppendUint16(dst, uint16(len(b)))
	return append(dst, b...), nil
}

// appendTime appends the TIME part: 10^-scale second units since midnight,
// in 3, 4 or 5 bytes depending on scale [MS-TDS §2.2.5.5.1.8].
func appendTime(dst []byte, t time.Time, scale uint8) []byte {
	ns := int64(t.Hour())*int64(time.Hour) + int64(t.Minute())*int64(time.Minute) +
		int64(t.Second())*int64(time.Second) + int64(t.Nanosecond())
	units := ns / int64(math.Pow10(9-int(scale)))
	n := timeLen(scale)
	for i := 0; i < n; i++ {
		dst = append(dst, byte(units>>(8*i)))
	}
	return dst
}

func timeLen(scale uint8) int {
	switch {
	case scale <= 2:
		return 3
	case scale <= 4:
		return 4
	}
	return 5
}

// appendDate appends days since 0001-01-01 in 3 bytes.
func appendDate(dst []byte, t time.Time) []byte {
	y, m, d := t.Date()
	// Not time.Sub: a Duration overflows after ~292 years.
	const unixEpochDays = 719162 // days from 0001-01-01 to 1970-01-01
	days := time.Date(y, m, d, 0, 0, 0, 0, time.UTC).Unix()/86400 + unixEpochDays
	return append(dst, byte(days), byte(days>>8), byte(days>>16))
}

// daysSince1900 counts whole days from 1900-01-01 to t's date (wall clock).
func daysSince1900(t time.Time) int64 {
	y, m, d := t.Date()
	const days1900ToUnix = 25567
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC).Unix()/86400 + days1900ToUnix
}

// dateTimeParts splits t (wall clock) into DATETIME's days since 1900 and
// 1/300 s ticks since midnight, rounding to the nearest tick as SQL Server
// does. ok is false outside 1753-01-01..9999-12-31.
func dateTimeParts(t time.Time) (days int32, ticks uint32, ok bool) {
	ns := int64(t.Hour())*int64(time.Hour) + int64(t.Minute())*int64(time.Minute) +
		int64(t.Second())*int64(time.Second) + int64(t.Nanosecond())
	tk := (ns*300 + 5e8) / 1e9
	d := daysSince1900(t)
	if tk >= 300*86400 {
		tk -= 300 * 86400
		d++
	}
	const minDays, maxDays = -53690, 2958463 // 1753-01-01, 9999-12-31
	if d < minDays || d > maxDays {
		return 0, 0, false
	}
	return int32(d), uint32(tk), true
}

// smallDateTimeParts splits t into SMALLDATETIME's days since 1900 and
// minutes since midnight, rounded to the nearest minute (30 s up).
// ok is false outside 1900-01-01..2079-06-06.
func smallDateTimeParts(t time.Time) (days, mins uint16, ok bool) {
	ns := int64(t.Hour())*int64(time.Hour) + int64(t.Minute())*int64(time.Minute) +
		int64(t.Second())*int64(time.Second) + int64(t.Nanosecond())
	m := (ns + int64(30*time.Second)) / int64(time.Minute)
	d := daysSince1900(t)
	if m >= 24*60 {
		m -= 24 * 60
		d++
	}
	if d < 0 || d > 65535 {
		return 0, 0, false
	}
	return uint16(d), uint16(m), true
}

// parseGUID converts the canonical text form into SQL Server's wire order:
// the first three groups are little-endian.
func parseGUID(s string) ([16]byte, error) {
	var g [16]byte
	h := strings.ReplaceAll(strings.Trim(s, "{}"), "-", "")
	b, err := hex.DecodeString(h)
	if err != nil || len(b) != 16 {
		return g, fmt.Errorf("tds: invalid GUID %q", s)
	}
	copy(g[:], b)
	g[0], g[1], g[2], g[3] = b[3], b[2], b[1], b[0]
	g[4], g[5] = b[5], b[4]
	g[6], g[7] = b[7], b[6]
	return g, nil
}

func unscaledDecimal(v any, scale uint8) (*big.Int, error) {
	switch x := v.(type) {
	case Decimal:
		u := x.Unscaled
		if u == nil {
			u = new(big.Int)
		}
		if x.Scale <= scale {
			return new(big.Int).Mul(u, new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(scale-x.Scale)), nil)), nil
		}
		q, r := new(big.Int).QuoRem(u, new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(x.Scale-scale)), nil), new(big.Int))
		if r.Sign() != 0 {
			return nil, fmt.Errorf("tds: decimal %s has more than %d fractional digits", x, scale)
		}
		return q, nil
	case *big.Int:
		return x, nil
	case string:
		s := strings.TrimSpace(x)
		neg := strings.HasPrefix(s, "-")
		s = strings.TrimLeft(s, "+-")
		intPart, frac, _ := strings.Cut(s, ".")
		if len(frac) > int(scale) {
			if strings.Trim(frac[scale:], "0") != "" {
				return nil, fmt.Errorf("tds: decimal %q has more than %d fractional digits", x, scale)
			}
			frac = frac[:scale]
		}
		frac += strings.Repeat("0", int(scale)-len(frac))
		u, ok := new(big.Int).SetString(intPart+frac, 10)
		if !ok || intPart+frac == "" {
			return nil, fmt.Errorf("tds: invalid decimal %q", x)
		}
		if neg {
			u.Neg(u)
		}
		return u, nil
	}
	n, ok := toInt64(v)
	if !ok {
		return nil, fmt.Errorf("tds: cannot encode %T as decimal", v)
	}
	return new(big.Int).Mul(big.NewInt(n), new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(scale)), nil)), nil
}

func toInt64(v any) (int64, bool) {
	switch x := v.(type) {
	case int:
		return int64(x), true
	case int8:
		return int64(x), true
	case int16:
		return int64(x), true
	case int32:
		return int64(x), true
	case int64:
		return x, true
	case uint8:
		return int64(x), true
	case uint16:
		return int64(x), true
	case uint32:
		return int64(x), true
	}
	return 0, false
}

func typeErr(ti *TypeInfo, v any) error {
	return fmt.Errorf("tds: cannot encode %T as %s", v, ti)
}

func rangeErr(ti *TypeInfo, v any) error {
	return fmt.Errorf("tds: value %v out of range for %s", v, ti)
}
