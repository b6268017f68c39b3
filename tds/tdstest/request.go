package tdstest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/big"
	"strings"
	"time"
	"unicode/utf16"

	"github.com/tdspool/tdspool/tds"
)

// Request decoding: ALL_HEADERS, SQL_BATCH text, RPC calls with typed
// parameters, TRANSACTION MANAGER requests [MS-TDS §2.2.5.3, §2.2.6.6-9].
// tds/ has no request decoders yet, so they live here; every decoder
// bounds-checks and returns errShort rather than panicking.

var errShort = errors.New("tdstest: request truncated")

// splitAllHeaders returns the transaction descriptor from ALL_HEADERS and
// the bytes after it. TDS 7.2+ requests always start with ALL_HEADERS.
func splitAllHeaders(b []byte) (desc uint64, rest []byte, err error) {
	if len(b) < 4 {
		return 0, nil, errShort
	}
	total := int(binary.LittleEndian.Uint32(b))
	if total < 4 || total > len(b) {
		return 0, nil, fmt.Errorf("tdstest: ALL_HEADERS length %d out of range", total)
	}
	for i := 4; i+6 <= total; {
		hl := int(binary.LittleEndian.Uint32(b[i:]))
		if hl < 6 || i+hl > total {
			return 0, nil, fmt.Errorf("tdstest: bad ALL_HEADERS entry")
		}
		if binary.LittleEndian.Uint16(b[i+4:]) == 2 && hl >= 6+8 {
			desc = binary.LittleEndian.Uint64(b[i+6:])
		}
		i += hl
	}
	return desc, b[total:], nil
}

func decodeUCS2(b []byte) string {
	u := make([]uint16, len(b)/2)
	for i := range u {
		u[i] = binary.LittleEndian.Uint16(b[2*i:])
	}
	return string(utf16.Decode(u))
}

func encodeUCS2(s string) []byte {
	u := utf16.Encode([]rune(s))
	b := make([]byte, 2*len(u))
	for i, c := range u {
		binary.LittleEndian.PutUint16(b[2*i:], c)
	}
	return b
}

// reader is a bounds-checked cursor over a request payload.
type reader struct {
	b   []byte
	off int
	err error
}

func (r *reader) take(n int) []byte {
	if r.err != nil || n < 0 || r.off+n > len(r.b) {
		r.err = errShort
		return nil
	}
	p := r.b[r.off : r.off+n]
	r.off += n
	return p
}
func (r *reader) u8() uint8 {
	p := r.take(1)
	if p == nil {
		return 0
	}
	return p[0]
}
func (r *reader) u16() uint16 {
	p := r.take(2)
	if p == nil {
		return 0
	}
	return binary.LittleEndian.Uint16(p)
}
func (r *reader) u32() uint32 {
	p := r.take(4)
	if p == nil {
		return 0
	}
	return binary.LittleEndian.Uint32(p)
}
func (r *reader) u64() uint64 {
	p := r.take(8)
	if p == nil {
		return 0
	}
	return binary.LittleEndian.Uint64(p)
}
func (r *reader) bvarchar() string  { return decodeUCS2(r.take(2 * int(r.u8()))) }
func (r *reader) usvarchar() string { return decodeUCS2(r.take(2 * int(r.u16()))) }
func (r *reader) rest() int         { return len(r.b) - r.off }

// rpcCall is one RPCReqBatch entry.
type rpcCall struct {
	name   string // lower-case proc name, or the well-known name of procID
	procID uint16
	flags  uint16
	params []rpcParam
}

type rpcParam struct {
	name   string // with '@', as sent; may be empty
	status uint8  // 0x01 fByRefValue (OUTPUT), 0x02 fDefaultValue
	ti     tds.TypeInfo
	val    any
}

const paramByRef = 0x01

var procIDs = map[uint16]string{
	1: "sp_cursor", 2: "sp_cursoropen", 3: "sp_cursorprepare", 4: "sp_cursorexecute", 5: "sp_cursorprepexec",
	6: "sp_cursorunprepare", 7: "sp_cursorfetch", 8: "sp_cursoroption", 9: "sp_cursorclose",
	10: "sp_executesql", 11: "sp_prepare", 12: "sp_execute", 13: "sp_prepexec", 14: "sp_prepexecrpc", 15: "sp_unprepare",
}

// decodeRPC parses the RPC body after ALL_HEADERS: one or more calls
// separated by a batch flag byte (0xFF in 7.2+, 0x80 before, 0xFE NoExec).
func decodeRPC(b []byte) ([]rpcCall, error) {
	r := &reader{b: b}
	var calls []rpcCall
	for r.rest() > 0 {
		var c rpcCall
		n := r.u16()
		if n == 0xFFFF {
			c.procID = r.u16()
			c.name = procIDs[c.procID]
			if c.name == "" {
				c.name = fmt.Sprintf("procid %d", c.procID)
			}
		} else {
			c.name = strings.ToLower(decodeUCS2(r.take(2 * int(n))))
		}
		c.flags = r.u16()
		for r.err == nil && r.rest() > 0 {
			if f := r.b[r.off]; f == 0xFF || f == 0x80 || f == 0xFE {
				r.off++
				break
			}
			var p rpcParam
			p.name = r.bvarchar()
			p.status = r.u8()
			if r.err != nil {
				break
			}
			ti, k, err := tds.DecodeTypeInfo(r.b[r.off:])
			if err != nil {
				return nil, err
			}
			r.off += k
			p.ti = ti
			v, k, err := decodeValue(&ti, r.b[r.off:])
			if err != nil {
				return nil, err
			}
			r.off += k
			p.val = v
			c.params = append(c.params, p)
		}
		if r.err != nil {
			return nil, r.err
		}
		calls = append(calls, c)
	}
	return calls, r.err
}

// Typed wrappers so parameter values keep what TYPE_INFO said about them
// where a plain Go type would lose it.
type (
	decimalValue string // canonical decimal text, e.g. "-12.3400"
	guidValue    string // canonical upper-case GUID text
)

// decodeValue decodes one TYPE_INFO-typed value (RPC parameter layout:
// TEXT/NTEXT/IMAGE use a LONGLEN prefix, no text pointer). NULL is nil.
func decodeValue(ti *tds.TypeInfo, b []byte) (any, int, error) {
	r := &reader{b: b}
	v, err := decodeValueR(ti, r)
	if err == nil {
		err = r.err
	}
	return v, r.off, err
}

func decodeValueR(ti *tds.TypeInfo, r *reader) (any, error) {
	switch ti.Type {
	case tds.TypeNull:
		return nil, nil
	case tds.TypeInt1:
		return int64(r.u8()), nil
	case tds.TypeBit:
		return r.u8() != 0, nil
	case tds.TypeInt2:
		return int64(int16(r.u16())), nil
	case tds.TypeInt4:
		return int64(int32(r.u32())), nil
	case tds.TypeInt8:
		return int64(r.u64()), nil
	case tds.TypeFlt4:
		return float64(math.Float32frombits(r.u32())), nil
	case tds.TypeFlt8:
		return math.Float64frombits(r.u64()), nil
	case tds.TypeMoney:
		return moneyValue(r.take(8)), nil
	case tds.TypeMoney4:
		return moneyValue(r.take(4)), nil
	case tds.TypeDateTime:
		return legacyDateTime(r.take(8)), nil
	case tds.TypeDateTim4:
		return legacyDateTime(r.take(4)), nil
	}
	switch ti.Type {
	case tds.TypeIntN, tds.TypeBitN, tds.TypeFltN, tds.TypeMoneyN, tds.TypeDateTimeN, tds.TypeGUID,
		tds.TypeDecimalN, tds.TypeNumericN, tds.TypeDecimal, tds.TypeNumeric,
		tds.TypeDateN, tds.TypeTimeN, tds.TypeDateTime2N, tds.TypeDateTimeOffsetN,
		tds.TypeChar, tds.TypeVarChar, tds.TypeBinary, tds.TypeVarBinary:
		n := int(r.u8())
		p := r.take(n)
		if r.err != nil {
			return nil, r.err
		}
		if n == 0 {
			switch ti.Type {
			case tds.TypeChar, tds.TypeVarChar:
				return nil, nil // legacy types: 0 means NULL too
			}
			return nil, nil
		}
		return decodeLen1(ti, p)
	case tds.TypeBigVarBinary, tds.TypeBigBinary, tds.TypeBigVarChar, tds.TypeBigChar, tds.TypeNVarChar, tds.TypeNChar, tds.TypeXML:
		var p []byte
		if ti.IsPLP() || ti.Type == tds.TypeXML {
			total := r.u64()
			if total == math.MaxUint64 {
				return nil, r.err
			}
			for r.err == nil {
				n := r.u32()
				if n == 0 {
					break
				}
				p = append(p, r.take(int(n))...)
			}
		} else {
			n := r.u16()
			if n == 0xFFFF {
				return nil, r.err
			}
			p = r.take(int(n))
		}
		if r.err != nil {
			return nil, r.err
		}
		switch ti.Type {
		case tds.TypeNVarChar, tds.TypeNChar, tds.TypeXML:
			return decodeUCS2(p), nil
		case tds.TypeBigVarChar, tds.TypeBigChar:
			return latin1(p), nil
		}
		return append([]byte{}, p...), nil
	case tds.TypeText, tds.TypeNText, tds.TypeImage:
		n := r.u32()
		if n == 0xFFFFFFFF {
			return nil, r.err
		}
		p := r.take(int(n))
		switch ti.Type {
		case tds.TypeNText:
			return decodeUCS2(p), r.err
		case tds.TypeText:
			return latin1(p), r.err
		}
		return append([]byte{}, p...), r.err
	}
	return nil, fmt.Errorf("tdstest: parameters of type %s are not supported", ti.Type)
}

// latin1 decodes single-byte text (the test server's varchar code page is
// CP1252 ≈ Latin-1; ASCII is what drivers send in practice).
func latin1(p []byte) string {
	rs := make([]rune, len(p))
	for i, c := range p {
		rs[i] = rune(c)
	}
	return string(rs)
}

func decodeLen1(ti *tds.TypeInfo, p []byte) (any, error) {
	switch ti.Type {
	case tds.TypeIntN:
		switch len(p) {
		case 1:
			return int64(p[0]), nil
		case 2:
			return int64(int16(binary.LittleEndian.Uint16(p))), nil
		case 4:
			return int64(int32(binary.LittleEndian.Uint32(p))), nil
		case 8:
			return int64(binary.LittleEndian.Uint64(p)), nil
		}
	case tds.TypeBitN:
		return p[0] != 0, nil
	case tds.TypeFltN:
		switch len(p) {
		case 4:
			return float64(math.Float32frombits(binary.LittleEndian.Uint32(p))), nil
		case 8:
			return math.Float64frombits(binary.LittleEndian.Uint64(p)), nil
		}
	case tds.TypeMoneyN:
		if len(p) == 4 || len(p) == 8 {
			return moneyValue(p), nil
		}
	case tds.TypeDateTimeN:
		if len(p) == 4 || len(p) == 8 {
			return legacyDateTime(p), nil
		}
	case tds.TypeGUID:
		if len(p) == 16 {
			return guidValue(formatGUID(p)), nil
		}
	case tds.TypeDecimalN, tds.TypeNumericN, tds.TypeDecimal, tds.TypeNumeric:
		mag := make([]byte, len(p)-1)
		for i := range mag { // little-endian magnitude → big-endian for big.Int
			mag[i] = p[len(p)-1-i]
		}
		u := new(big.Int).SetBytes(mag)
		if p[0] == 0 {
			u.Neg(u)
		}
		return decimalValue(formatScaled(u, int(ti.Scale))), nil
	case tds.TypeDateN:
		if len(p) == 3 {
			return dateFromDays(p), nil
		}
	case tds.TypeTimeN, tds.TypeDateTime2N, tds.TypeDateTimeOffsetN:
		tl := timeLen(ti.Scale)
		t := time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC)
		if len(p) < tl {
			break
		}
		var units uint64
		for i := 0; i < tl; i++ {
			units |= uint64(p[i]) << (8 * i)
		}
		ns := time.Duration(units * uint64(math.Pow10(9-int(ti.Scale))))
		if ti.Type == tds.TypeTimeN {
			return t.Add(ns), nil
		}
		if len(p) < tl+3 {
			break
		}
		d := dateFromDays(p[tl : tl+3]).Add(ns)
		if ti.Type == tds.TypeDateTimeOffsetN {
			if len(p) < tl+5 {
				break
			}
			off := int(int16(binary.LittleEndian.Uint16(p[tl+3:])))
			// The stored date/time is UTC; present local wall-clock time,
			// which is what converting to datetime2 keeps.
			return d.In(time.FixedZone("", off*60)), nil
		}
		return d, nil
	case tds.TypeChar, tds.TypeVarChar:
		return latin1(p), nil
	case tds.TypeBinary, tds.TypeVarBinary:
		return append([]byte{}, p...), nil
	}
	return nil, fmt.Errorf("tdstest: bad %d-byte value for %s", len(p), ti.Type)
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

func dateFromDays(p []byte) time.Time {
	days := int(p[0]) | int(p[1])<<8 | int(p[2])<<16
	return time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, days)
}

// legacyDateTime decodes DATETIME (days since 1900 + 1/300 s ticks) and
// SMALLDATETIME (days since 1900 + minutes).
func legacyDateTime(p []byte) time.Time {
	base := time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC)
	if len(p) == 4 {
		days := binary.LittleEndian.Uint16(p)
		mins := binary.LittleEndian.Uint16(p[2:])
		return base.AddDate(0, 0, int(days)).Add(time.Duration(mins) * time.Minute)
	}
	days := int32(binary.LittleEndian.Uint32(p))
	ticks := binary.LittleEndian.Uint32(p[4:])
	return base.AddDate(0, 0, int(days)).Add(time.Duration(ticks) * time.Second / 300)
}

func moneyValue(p []byte) decimalValue {
	var v int64
	if len(p) == 4 {
		v = int64(int32(binary.LittleEndian.Uint32(p)))
	} else {
		hi := int64(int32(binary.LittleEndian.Uint32(p)))
		lo := int64(binary.LittleEndian.Uint32(p[4:]))
		v = hi<<32 | lo
	}
	return decimalValue(formatScaled(big.NewInt(v), 4))
}

// formatScaled renders unscaled/10^scale exactly.
func formatScaled(u *big.Int, scale int) string {
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

// formatGUID renders SQL Server's wire order (first three groups
// little-endian) as canonical upper-case text.
func formatGUID(p []byte) string {
	const hexd = "0123456789ABCDEF"
	order := []int{3, 2, 1, 0, -1, 5, 4, -1, 7, 6, -1, 8, 9, -1, 10, 11, 12, 13, 14, 15}
	var sb strings.Builder
	for _, i := range order {
		if i < 0 {
			sb.WriteByte('-')
			continue
		}
		sb.WriteByte(hexd[p[i]>>4])
		sb.WriteByte(hexd[p[i]&15])
	}
	return sb.String()
}

// tmRequest is a TRANSACTION MANAGER request [MS-TDS §2.2.6.9].
type tmRequest struct {
	kind      uint16 // 5 begin, 7 commit, 8 rollback, 9 save, others unsupported
	isolation uint8
	name      string
	beginNext bool // fBeginXact on commit/rollback: start a new transaction
	newIso    uint8
	newName   string
}

const (
	tmBegin    = 5
	tmCommit   = 7
	tmRollback = 8
	tmSave     = 9
)

func decodeTM(b []byte) (tmRequest, error) {
	r := &reader{b: b}
	t := tmRequest{kind: r.u16()}
	switch t.kind {
	case tmBegin:
		t.isolation = r.u8()
		t.name = r.bvarchar()
	case tmCommit, tmRollback:
		t.name = r.bvarchar()
		flags := r.u8()
		if flags&1 != 0 {
			t.beginNext = true
			t.newIso = r.u8()
			t.newName = r.bvarchar()
		}
	case tmSave:
		t.name = r.bvarchar()
	}
	if r.off < 2 {
		return t, r.err
	}
	// Trailing optional fields (name, isolation) are sometimes omitted by
	// older drivers; what was read is enough.
	return t, nil
}
