package tds

import (
	"encoding/binary"
	"fmt"
	"strings"
)

// LOGIN7 [MS-TDS §2.2.6.4]: the client's login request, sent once after
// PRELOGIN (and TLS, if negotiated). A 94-byte fixed part holds numbers,
// flags and offset/length pairs pointing into a variable data area.
// Offsets count from the start of the LOGIN7 payload; string lengths count
// UTF-16 code units ("cch"), SSPI lengths count bytes.

const (
	// Login7HeaderSize is the fixed part for TDS 7.2+ [MS-TDS §2.2.6.4].
	Login7HeaderSize = 94
	// login7HeaderSize71 is the fixed part before 7.2, which lacks
	// ibChangePassword/cchChangePassword and cbSSPILong.
	login7HeaderSize71 = 86
	// MaxLogin7Size: "the whole LOGIN7 must be no longer than 128 KiB - 1"
	// [MS-TDS §2.2.6.4].
	MaxLogin7Size = 128*1024 - 1
)

// TDS versions as carried in LOGIN7.TDSVersion (little-endian) and
// LOGINACK.TDSVersion (big-endian).
const (
	TDSVersion70  uint32 = 0x70000000
	TDSVersion71  uint32 = 0x71000000
	TDSVersion71b uint32 = 0x71000001
	TDSVersion72  uint32 = 0x72090002
	TDSVersion73A uint32 = 0x730A0003
	TDSVersion73B uint32 = 0x730B0003
	TDSVersion74  uint32 = 0x74000004
	TDSVersion80  uint32 = 0x08000000
)

// Login7 option flag bits [MS-TDS §2.2.6.4].
const (
	// OptionFlags1
	Login7ByteOrder uint8 = 0x01
	Login7Char      uint8 = 0x02
	Login7Float     uint8 = 0x0C
	Login7DumpLoad  uint8 = 0x10
	Login7UseDB     uint8 = 0x20
	Login7Database  uint8 = 0x40 // initial-database failure is fatal
	Login7SetLang   uint8 = 0x80
	// OptionFlags2
	Login7Language    uint8 = 0x01
	Login7ODBC        uint8 = 0x02
	Login7UserType    uint8 = 0x70
	Login7IntSecurity uint8 = 0x80 // integrated (SSPI) authentication
	// TypeFlags
	Login7SQLType        uint8 = 0x0F
	Login7OLEDB          uint8 = 0x10
	Login7ReadOnlyIntent uint8 = 0x20
	// OptionFlags3
	Login7ChangePassword           uint8 = 0x01
	Login7SendYukonBinaryXML       uint8 = 0x02
	Login7UserInstance             uint8 = 0x04
	Login7UnknownCollationHandling uint8 = 0x08
	Login7Extension                uint8 = 0x10 // FeatureExt present
)

// FeatureID identifies a LOGIN7 FeatureExt / FEATUREEXTACK entry.
type FeatureID uint8

const (
	FeatureSessionRecovery        FeatureID = 0x01
	FeatureFedAuth                FeatureID = 0x02
	FeatureColumnEncryption       FeatureID = 0x04
	FeatureGlobalTransactions     FeatureID = 0x05
	FeatureAzureSQLSupport        FeatureID = 0x08
	FeatureDataClassification     FeatureID = 0x09
	FeatureUTF8Support            FeatureID = 0x0A
	FeatureAzureSQLDNSCaching     FeatureID = 0x0B
	FeatureJSONSupport            FeatureID = 0x0D
	FeatureVectorSupport          FeatureID = 0x0E
	FeatureEnhancedRoutingSupport FeatureID = 0x0F
	FeatureUserAgent              FeatureID = 0x10
	FeatureTerminator             FeatureID = 0xFF
)

var featureNames = map[FeatureID]string{
	FeatureSessionRecovery: "SESSIONRECOVERY", FeatureFedAuth: "FEDAUTH", FeatureColumnEncryption: "COLUMNENCRYPTION",
	FeatureGlobalTransactions: "GLOBALTRANSACTIONS", FeatureAzureSQLSupport: "AZURESQLSUPPORT",
	FeatureDataClassification: "DATACLASSIFICATION", FeatureUTF8Support: "UTF8_SUPPORT",
	FeatureAzureSQLDNSCaching: "AZURESQLDNSCACHING", FeatureJSONSupport: "JSONSUPPORT",
	FeatureVectorSupport: "VECTORSUPPORT", FeatureEnhancedRoutingSupport: "ENHANCEDROUTINGSUPPORT",
	FeatureUserAgent: "USERAGENT", FeatureTerminator: "TERMINATOR",
}

func (f FeatureID) String() string {
	if s, ok := featureNames[f]; ok {
		return s
	}
	return fmt.Sprintf("FeatureID(0x%02X)", uint8(f))
}

// Feature is one FeatureExt entry: FeatureId(1) FeatureDataLen(4 LE) Data.
type Feature struct {
	ID   FeatureID
	Data []byte
}

// appendFeatures appends a feature list terminated by 0xFF.
func appendFeatures(dst []byte, fs []Feature) []byte {
	for _, f := range fs {
		dst = append(dst, byte(f.ID))
		dst = binary.LittleEndian.AppendUint32(dst, uint32(len(f.Data)))
		dst = append(dst, f.Data...)
	}
	return append(dst, byte(FeatureTerminator))
}

// decodeFeatures parses a feature list up to and including its terminator,
// returning the entries and the bytes used. Data aliases b.
func decodeFeatures(b []byte, msg string, base int) ([]Feature, int, error) {
	var fs []Feature
	i := 0
	for {
		if i >= len(b) {
			return nil, 0, ErrShortBuffer
		}
		id := FeatureID(b[i])
		if id == FeatureTerminator {
			return fs, i + 1, nil
		}
		if i+5 > len(b) {
			return nil, 0, ErrShortBuffer
		}
		n := binary.LittleEndian.Uint32(b[i+1:])
		if uint64(n) > uint64(len(b)-i-5) {
			if uint64(n) > MaxLogin7Size {
				return nil, 0, protoErr(msg, base+i, "feature %s length %d too large", id, n)
			}
			return nil, 0, ErrShortBuffer
		}
		fs = append(fs, Feature{ID: id, Data: b[i+5 : i+5+int(n)]})
		i += 5 + int(n)
	}
}

// Login7 is a decoded LOGIN7 message. Decode, change fields, and
// AppendLogin7 re-encodes it with all offsets recomputed — which is how the
// proxy rewrites e.g. PacketSize, ServerName or the feature list.
type Login7 struct {
	TDSVersion     uint32 // little-endian on the wire
	PacketSize     uint32
	ClientProgVer  uint32
	ClientPID      uint32
	ConnectionID   uint32
	OptionFlags1   uint8
	OptionFlags2   uint8
	TypeFlags      uint8
	OptionFlags3   uint8
	ClientTimeZone int32
	ClientLCID     uint32

	HostName   string
	UserName   string
	Password   Password // de-obfuscated; prints as a redaction
	AppName    string
	ServerName string // the name the client dialled (go-mssqldb: host\instance)
	CltIntName string // client library, e.g. "go-mssqldb"
	Language   string
	Database   string
	ClientID   [6]byte // MAC address
	SSPI       []byte
	AtchDBFile string
	// ChangePassword is the new password when fChangePassword is set (7.2+).
	ChangePassword Password

	// Features is the parsed FeatureExt list (terminator excluded). When
	// non-empty, or when OptionFlags3 has Login7Extension, the encoder
	// writes a FeatureExt block and sets the flag.
	Features []Feature
	// FeatureExtRaw is the FeatureExt block as received (including the 0xFF
	// terminator); informational only — the encoder uses Features.
	FeatureExtRaw []byte
}

// Feature returns the first feature with the given id.
func (l *Login7) Feature(id FeatureID) (Feature, bool) {
	for _, f := range l.Features {
		if f.ID == id {
			return f, true
		}
	}
	return Feature{}, false
}

// RemoveFeature drops every feature with the given id and reports whether
// any was removed (e.g. SESSIONRECOVERY on backend logins).
func (l *Login7) RemoveFeature(id FeatureID) bool {
	out := l.Features[:0]
	removed := false
	for _, f := range l.Features {
		if f.ID == id {
			removed = true
			continue
		}
		out = append(out, f)
	}
	l.Features = out
	return removed
}

// DecodeLogin7 parses a LOGIN7 payload (without packet headers). Strings
// are copied; SSPI and feature data alias b.
func DecodeLogin7(b []byte) (*Login7, error) {
	const name = "LOGIN7"
	if len(b) > MaxLogin7Size {
		return nil, &LimitError{What: name, Size: len(b), Limit: MaxLogin7Size}
	}
	if len(b) < login7HeaderSize71 {
		return nil, protoErr(name, 0, "%d bytes is shorter than the fixed header", len(b))
	}
	le := binary.LittleEndian
	l := &Login7{
		TDSVersion:     le.Uint32(b[4:]),
		PacketSize:     le.Uint32(b[8:]),
		ClientProgVer:  le.Uint32(b[12:]),
		ClientPID:      le.Uint32(b[16:]),
		ConnectionID:   le.Uint32(b[20:]),
		OptionFlags1:   b[24],
		OptionFlags2:   b[25],
		TypeFlags:      b[26],
		OptionFlags3:   b[27],
		ClientTimeZone: int32(le.Uint32(b[28:])),
		ClientLCID:     le.Uint32(b[32:]),
	}
	if total := le.Uint32(b[0:]); total != uint32(len(b)) {
		return nil, protoErr(name, 0, "Length field %d but message has %d bytes", total, len(b))
	}
	// ibHostName marks where the variable part begins; a 7.0/7.1 client
	// uses the 86-byte header without ChangePassword/cbSSPILong.
	hdr := Login7HeaderSize
	if ib := int(le.Uint16(b[36:])); ib < Login7HeaderSize {
		if ib < login7HeaderSize71 {
			return nil, protoErr(name, 36, "ibHostName %d points into the fixed header", ib)
		}
		hdr = login7HeaderSize71
	}
	if len(b) < hdr {
		return nil, protoErr(name, 0, "%d bytes is shorter than the fixed header", len(b))
	}
	field := func(at int, units int) ([]byte, error) {
		ib := int(le.Uint16(b[at:]))
		n := int(le.Uint16(b[at+2:])) * units
		if n == 0 {
			return nil, nil
		}
		if ib < hdr || ib+n > len(b) {
			return nil, protoErr(name, at, "field [%d,%d) outside message of %d bytes", ib, ib+n, len(b))
		}
		return b[ib : ib+n], nil
	}
	str := func(at int, dst *string) error {
		d, err := field(at, 2)
		if err != nil {
			return err
		}
		*dst = ucs2String(d)
		return nil
	}
	for _, f := range []struct {
		at  int
		dst *string
	}{{36, &l.HostName}, {40, &l.UserName}, {48, &l.AppName}, {52, &l.ServerName},
		{60, &l.CltIntName}, {64, &l.Language}, {68, &l.Database}, {82, &l.AtchDBFile}} {
		if err := str(f.at, f.dst); err != nil {
			return nil, err
		}
	}
	pw, err := field(44, 2)
	if err != nil {
		return nil, err
	}
	l.Password = Password{s: deobfuscatePassword(pw)}
	copy(l.ClientID[:], b[72:78])

	// SSPI: cbSSPI counts bytes; 0xFFFF means "see cbSSPILong" (7.2+).
	ibSSPI := int(le.Uint16(b[78:]))
	cbSSPI := int(le.Uint16(b[80:]))
	if cbSSPI == 0xFFFF && hdr == Login7HeaderSize {
		cbSSPI = int(le.Uint32(b[90:]))
	}
	if cbSSPI > 0 {
		if ibSSPI < hdr || ibSSPI+cbSSPI > len(b) || ibSSPI+cbSSPI < ibSSPI {
			return nil, protoErr(name, 78, "SSPI [%d,+%d) outside message of %d bytes", ibSSPI, cbSSPI, len(b))
		}
		l.SSPI = b[ibSSPI : ibSSPI+cbSSPI]
	}
	if hdr == Login7HeaderSize {
		cp, err := field(86, 2)
		if err != nil {
			return nil, err
		}
		l.ChangePassword = Password{s: deobfuscatePassword(cp)}
	}

	// FeatureExt: ibExtension points at a DWORD holding the block's offset.
	if l.OptionFlags3&Login7Extension != 0 {
		ext, err := field(56, 1)
		if err != nil {
			return nil, err
		}
		if len(ext) < 4 {
			return nil, protoErr(name, 56, "extension pointer has %d bytes, want 4", len(ext))
		}
		off := le.Uint32(ext)
		if off < uint32(hdr) || off >= uint32(len(b)) {
			return nil, protoErr(name, 56, "FeatureExt offset %d outside message of %d bytes", off, len(b))
		}
		fs, n, err := decodeFeatures(b[off:], name, int(off))
		if err == ErrShortBuffer {
			return nil, protoErr(name, int(off), "FeatureExt block truncated")
		}
		if err != nil {
			return nil, err
		}
		l.Features = fs
		l.FeatureExtRaw = b[off : int(off)+n]
	}
	return l, nil
}

// AppendLogin7 appends the encoded LOGIN7 payload (no packet header).
// Offsets and lengths are recomputed from the fields; variable data is laid
// out in header order with the FeatureExt block last (as go-mssqldb does).
// Strings longer than 65535 code units are an encoding error the caller
// must avoid; they are truncated to keep the output well-formed.
func (l *Login7) AppendLogin7(dst []byte) []byte {
	start := len(dst)
	le := binary.LittleEndian
	hdr := make([]byte, Login7HeaderSize)
	le.PutUint32(hdr[4:], l.TDSVersion)
	le.PutUint32(hdr[8:], l.PacketSize)
	le.PutUint32(hdr[12:], l.ClientProgVer)
	le.PutUint32(hdr[16:], l.ClientPID)
	le.PutUint32(hdr[20:], l.ConnectionID)
	hdr[24], hdr[25], hdr[26] = l.OptionFlags1, l.OptionFlags2, l.TypeFlags
	flags3 := l.OptionFlags3
	if len(l.Features) > 0 {
		flags3 |= Login7Extension
	}
	hdr[27] = flags3
	le.PutUint32(hdr[28:], uint32(l.ClientTimeZone))
	le.PutUint32(hdr[32:], l.ClientLCID)
	copy(hdr[72:78], l.ClientID[:])
	dst = append(dst, hdr...)
	h := dst[start:] // re-sliced after appends below via put()

	put := func(at int, data []byte, count int) {
		h = dst[start:]
		off := len(dst) - start
		le.PutUint16(h[at:], uint16(off))
		le.PutUint16(h[at+2:], uint16(count))
		dst = append(dst, data...)
	}
	putStr := func(at int, s string) {
		s = truncateUCS2(s, 0xFFFF)
		put(at, appendUCS2(nil, s), ucs2Len(s))
	}
	putStr(36, l.HostName)
	putStr(40, l.UserName)
	pw := truncateUCS2(l.Password.s, 0xFFFF)
	put(44, obfuscatePassword(nil, pw), ucs2Len(pw))
	putStr(48, l.AppName)
	putStr(52, l.ServerName)
	extPtrAt := -1
	if flags3&Login7Extension != 0 {
		extPtrAt = len(dst) - start
		put(56, []byte{0, 0, 0, 0}, 4)
	}
	// Without fExtension the pair stays 0/0, as go-mssqldb leaves it.
	putStr(60, l.CltIntName)
	putStr(64, l.Language)
	putStr(68, l.Database)
	sspi := l.SSPI
	if len(sspi) >= 0xFFFF {
		put(78, sspi, 0xFFFF)
		le.PutUint32(dst[start+90:], uint32(len(sspi)))
	} else {
		put(78, sspi, len(sspi))
	}
	putStr(82, l.AtchDBFile)
	cp := truncateUCS2(l.ChangePassword.s, 0xFFFF)
	put(86, obfuscatePassword(nil, cp), ucs2Len(cp))
	if extPtrAt >= 0 {
		le.PutUint32(dst[start+extPtrAt:], uint32(len(dst)-start))
		dst = appendFeatures(dst, l.Features)
	}
	le.PutUint32(dst[start:], uint32(len(dst)-start))
	return dst
}

func (l *Login7) String() string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "LOGIN7{tds=0x%08X packetsize=%d host=%q user=%q password=%s app=%q server=%q lib=%q lang=%q db=%q",
		l.TDSVersion, l.PacketSize, l.HostName, l.UserName, l.Password, l.AppName, l.ServerName, l.CltIntName, l.Language, l.Database)
	fmt.Fprintf(&sb, " flags=%02X/%02X/%02X/%02X", l.OptionFlags1, l.OptionFlags2, l.TypeFlags, l.OptionFlags3)
	if len(l.SSPI) > 0 {
		fmt.Fprintf(&sb, " sspi=%dB", len(l.SSPI))
	}
	if l.AtchDBFile != "" {
		fmt.Fprintf(&sb, " attachdb=%q", l.AtchDBFile)
	}
	if !l.ChangePassword.IsZero() {
		fmt.Fprintf(&sb, " changepassword=%s", l.ChangePassword)
	}
	for _, f := range l.Features {
		fmt.Fprintf(&sb, " feature=%s(%dB)", f.ID, len(f.Data))
	}
	sb.WriteString("}")
	return sb.String()
}

// GoString keeps %#v of a Login7 as safe as %v.
func (l *Login7) GoString() string { return l.String() }
