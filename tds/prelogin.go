package tds

import (
	"encoding/binary"
	"fmt"
	"sort"
	"strings"
)

// PRELOGIN [MS-TDS §2.2.6.5]: the first message of a TDS 7.x connection in
// both directions (the server's reply travels in a type 0x04 packet but has
// the same layout). Payload = option table (token, offset BE, length BE)
// terminated by 0xFF, then the option data. Offsets count from the start of
// the payload.

// PreloginToken identifies a PRELOGIN option.
type PreloginToken uint8

const (
	PreloginVersion         PreloginToken = 0x00
	PreloginEncryption      PreloginToken = 0x01
	PreloginInstOpt         PreloginToken = 0x02
	PreloginThreadID        PreloginToken = 0x03
	PreloginMARS            PreloginToken = 0x04
	PreloginTraceID         PreloginToken = 0x05
	PreloginFedAuthRequired PreloginToken = 0x06
	PreloginNonceOpt        PreloginToken = 0x07
	PreloginTerminator      PreloginToken = 0xFF
)

var preloginTokenNames = map[PreloginToken]string{
	PreloginVersion: "VERSION", PreloginEncryption: "ENCRYPTION", PreloginInstOpt: "INSTOPT",
	PreloginThreadID: "THREADID", PreloginMARS: "MARS", PreloginTraceID: "TRACEID",
	PreloginFedAuthRequired: "FEDAUTHREQUIRED", PreloginNonceOpt: "NONCEOPT", PreloginTerminator: "TERMINATOR",
}

func (t PreloginToken) String() string {
	if s, ok := preloginTokenNames[t]; ok {
		return s
	}
	return fmt.Sprintf("PreloginToken(0x%02X)", uint8(t))
}

// Sizes of fixed PRELOGIN option values [MS-TDS §2.2.6.5].
const (
	preloginVersionLen = 6  // UL_VERSION(4) + US_SUBBUILD(2)
	preloginTraceIDLen = 36 // ConnID GUID + ActivityID GUID + sequence
	preloginNonceLen   = 32
	// MaxPreloginSize bounds a PRELOGIN message. The spec sets no limit; a
	// real one is ~50 bytes and the option table can address only 64 KiB.
	MaxPreloginSize = 65535
)

// EncryptOption is the PRELOGIN ENCRYPTION byte [MS-TDS §2.2.6.5].
type EncryptOption uint8

const (
	EncryptOff    EncryptOption = 0x00 // can encrypt, prefers not to (login-only if both say OFF)
	EncryptOn     EncryptOption = 0x01
	EncryptNotSup EncryptOption = 0x02
	EncryptReq    EncryptOption = 0x03
	// EncryptStrict is go-mssqldb's value inside TDS 8 TLS; not in MS-TDS.
	EncryptStrict EncryptOption = 0x04
	// EncryptClientCert may be OR'ed onto a base value (client certificate auth).
	EncryptClientCert EncryptOption = 0x80
)

// Base strips the client-certificate flag.
func (e EncryptOption) Base() EncryptOption { return e &^ EncryptClientCert }

func (e EncryptOption) String() string {
	var s string
	switch e.Base() {
	case EncryptOff:
		s = "OFF"
	case EncryptOn:
		s = "ON"
	case EncryptNotSup:
		s = "NOT_SUP"
	case EncryptReq:
		s = "REQ"
	case EncryptStrict:
		s = "STRICT"
	default:
		s = fmt.Sprintf("EncryptOption(0x%02X)", uint8(e.Base()))
	}
	if e&EncryptClientCert != 0 {
		s += "|CLIENT_CERT"
	}
	return s
}

// PreloginOption is a raw option, used for tokens this package does not
// know so they survive a decode/encode round trip.
type PreloginOption struct {
	Token PreloginToken
	Data  []byte
}

// Prelogin is a decoded PRELOGIN message. Has* fields record presence, so
// encoding reproduces exactly the options that were decoded.
type Prelogin struct {
	HasVersion bool
	Version    uint32 // big-endian on the wire: major, minor, build(2); 0x0C0007D0 = 12.0.2000
	SubBuild   uint16 // little-endian on the wire

	HasEncryption bool
	Encryption    EncryptOption

	HasInstance bool
	Instance    string // client: instance name (MBCS, NUL-terminated on the wire); server: "" = OK

	HasThreadID bool
	ThreadID    uint32 // clients send 4 bytes; servers send an empty value (ThreadIDEmpty)
	// ThreadIDEmpty records a zero-length THREADID option (what servers send).
	ThreadIDEmpty bool

	HasMARS bool
	MARS    bool

	HasTraceID bool
	TraceID    []byte // 36 bytes: ConnID(16) ActivityID(16) Sequence(4)

	HasFedAuthRequired bool
	FedAuthRequired    uint8

	HasNonce bool
	Nonce    []byte // 32 bytes

	// Extra holds unknown options in wire order.
	Extra []PreloginOption
}

// DecodePrelogin parses a PRELOGIN payload (the message, without packet
// headers). Byte slices in the result alias b.
func DecodePrelogin(b []byte) (*Prelogin, error) {
	const name = "PRELOGIN"
	if len(b) > MaxPreloginSize {
		return nil, &LimitError{What: name, Size: len(b), Limit: MaxPreloginSize}
	}
	p := &Prelogin{}
	for i := 0; ; i += 5 {
		if i >= len(b) {
			return nil, protoErr(name, i, "option table has no terminator")
		}
		tok := PreloginToken(b[i])
		if tok == PreloginTerminator {
			break
		}
		if i+5 > len(b) {
			return nil, protoErr(name, i, "truncated option table entry")
		}
		off := int(binary.BigEndian.Uint16(b[i+1:]))
		n := int(binary.BigEndian.Uint16(b[i+3:]))
		if off+n > len(b) {
			return nil, protoErr(name, i, "option %s data [%d,%d) outside payload of %d bytes", tok, off, off+n, len(b))
		}
		d := b[off : off+n]
		need := func(min int) error {
			if n < min {
				return protoErr(name, off, "option %s has %d bytes, want at least %d", tok, n, min)
			}
			return nil
		}
		switch tok {
		case PreloginVersion:
			if err := need(4); err != nil {
				return nil, err
			}
			p.HasVersion = true
			p.Version = binary.BigEndian.Uint32(d)
			if n >= preloginVersionLen {
				p.SubBuild = binary.LittleEndian.Uint16(d[4:])
			}
		case PreloginEncryption:
			if err := need(1); err != nil {
				return nil, err
			}
			p.HasEncryption, p.Encryption = true, EncryptOption(d[0])
		case PreloginInstOpt:
			p.HasInstance = true
			if j := indexByte(d, 0); j >= 0 {
				d = d[:j]
			}
			p.Instance = string(d)
		case PreloginThreadID:
			p.HasThreadID = true
			if n == 0 {
				p.ThreadIDEmpty = true
			} else if err := need(4); err != nil {
				return nil, err
			} else {
				p.ThreadID = binary.BigEndian.Uint32(d)
			}
		case PreloginMARS:
			if err := need(1); err != nil {
				return nil, err
			}
			p.HasMARS, p.MARS = true, d[0] != 0
		case PreloginTraceID:
			p.HasTraceID, p.TraceID = true, d
		case PreloginFedAuthRequired:
			if err := need(1); err != nil {
				return nil, err
			}
			p.HasFedAuthRequired, p.FedAuthRequired = true, d[0]
		case PreloginNonceOpt:
			p.HasNonce, p.Nonce = true, d
		default:
			p.Extra = append(p.Extra, PreloginOption{Token: tok, Data: d})
		}
	}
	return p, nil
}

func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}

// options returns the options to encode in ascending token order (VERSION
// must come first [MS-TDS §2.2.6.5]; go-mssqldb also sorts by token).
func (p *Prelogin) options() []PreloginOption {
	var opts []PreloginOption
	if p.HasVersion {
		v := make([]byte, preloginVersionLen)
		binary.BigEndian.PutUint32(v, p.Version)
		binary.LittleEndian.PutUint16(v[4:], p.SubBuild)
		opts = append(opts, PreloginOption{PreloginVersion, v})
	}
	if p.HasEncryption {
		opts = append(opts, PreloginOption{PreloginEncryption, []byte{byte(p.Encryption)}})
	}
	if p.HasInstance {
		opts = append(opts, PreloginOption{PreloginInstOpt, append([]byte(p.Instance), 0)})
	}
	if p.HasThreadID {
		if p.ThreadIDEmpty {
			opts = append(opts, PreloginOption{PreloginThreadID, nil})
		} else {
			opts = append(opts, PreloginOption{PreloginThreadID, binary.BigEndian.AppendUint32(nil, p.ThreadID)})
		}
	}
	if p.HasMARS {
		m := byte(0)
		if p.MARS {
			m = 1
		}
		opts = append(opts, PreloginOption{PreloginMARS, []byte{m}})
	}
	if p.HasTraceID {
		opts = append(opts, PreloginOption{PreloginTraceID, p.TraceID})
	}
	if p.HasFedAuthRequired {
		opts = append(opts, PreloginOption{PreloginFedAuthRequired, []byte{p.FedAuthRequired}})
	}
	if p.HasNonce {
		opts = append(opts, PreloginOption{PreloginNonceOpt, p.Nonce})
	}
	extra := append([]PreloginOption(nil), p.Extra...)
	sort.SliceStable(extra, func(i, j int) bool { return extra[i].Token < extra[j].Token })
	return append(opts, extra...)
}

// AppendPrelogin appends the PRELOGIN payload (no packet header). Frame it
// with AppendPackets: type PacketPrelogin from a client, PacketReply from a
// server.
func (p *Prelogin) AppendPrelogin(dst []byte) []byte {
	opts := p.options()
	off := len(opts)*5 + 1
	for _, o := range opts {
		dst = append(dst, byte(o.Token), byte(off>>8), byte(off), byte(len(o.Data)>>8), byte(len(o.Data)))
		off += len(o.Data)
	}
	dst = append(dst, byte(PreloginTerminator))
	for _, o := range opts {
		dst = append(dst, o.Data...)
	}
	return dst
}

func (p *Prelogin) String() string {
	var sb strings.Builder
	sb.WriteString("PRELOGIN{")
	sep := ""
	f := func(format string, args ...any) {
		sb.WriteString(sep)
		fmt.Fprintf(&sb, format, args...)
		sep = " "
	}
	if p.HasVersion {
		f("version=%d.%d.%d.%d", p.Version>>24, (p.Version>>16)&0xFF, p.Version&0xFFFF, p.SubBuild)
	}
	if p.HasEncryption {
		f("encryption=%s", p.Encryption)
	}
	if p.HasInstance {
		f("instance=%q", p.Instance)
	}
	if p.HasThreadID {
		f("threadid=%d", p.ThreadID)
	}
	if p.HasMARS {
		f("mars=%v", p.MARS)
	}
	if p.HasTraceID {
		f("traceid=%X", p.TraceID)
	}
	if p.HasFedAuthRequired {
		f("fedauthrequired=%d", p.FedAuthRequired)
	}
	if p.HasNonce {
		f("nonce=%dB", len(p.Nonce))
	}
	for _, o := range p.Extra {
		f("%s=%X", o.Token, o.Data)
	}
	sb.WriteString("}")
	return sb.String()
}

// ServerPreloginReply builds the PRELOGIN reply a server (or the proxy)
// sends: VERSION, ENCRYPTION, INSTOPT=OK and MARS=0 — the minimum every
// known client accepts (go-mssqldb needs ENCRYPTION; FreeTDS silently falls
// back to TDS 7.1 without MARS). MARS is always refused because neither the
// proxy nor the test server multiplexes sessions.
func ServerPreloginReply(version uint32, enc EncryptOption) *Prelogin {
	return &Prelogin{
		HasVersion: true, Version: version,
		HasEncryption: true, Encryption: enc,
		HasInstance: true,
		HasMARS:     true,
	}
}

// EncryptionResult is what a connection does after PRELOGIN.
type EncryptionResult uint8

const (
	// EncryptionNone: no TLS at all.
	EncryptionNone EncryptionResult = iota
	// EncryptionLoginOnly: TLS handshake, LOGIN7 encrypted, then plaintext.
	EncryptionLoginOnly
	// EncryptionFull: everything after the handshake is inside TLS.
	EncryptionFull
	// EncryptionRefuse: the combination cannot work; one side terminates.
	EncryptionRefuse
)

func (r EncryptionResult) String() string {
	switch r {
	case EncryptionNone:
		return "none"
	case EncryptionLoginOnly:
		return "login-only"
	case EncryptionFull:
		return "full"
	case EncryptionRefuse:
		return "refuse"
	}
	return fmt.Sprintf("EncryptionResult(%d)", uint8(r))
}

// NegotiateEncryption is the server side of PRELOGIN encryption
// negotiation [MS-TDS §2.2.6.5]: given the client's ENCRYPTION byte and the
// server's policy (expressed as the value the server would announce:
// OFF, ON, NOT_SUP or REQ), it returns the byte to put in the reply and what
// happens next. It is a pure function of its inputs.
//
// Quirks this follows (TestEncryptionDriverQuirks): go-mssqldb and FreeTDS start TLS for
// any reply other than NOT_SUP, even when they sent NOT_SUP; so a NOT_SUP
// client is always answered NOT_SUP, or refused when the policy requires
// encryption. The client-certificate flag (0x80) is ignored for the matrix:
// client certificate authentication is not supported, and the reply never
// carries it. Values outside OFF..REQ (e.g. go-mssqldb's STRICT, which is
// only sent inside TDS 8 TLS where this negotiation does not apply) are
// refused rather than guessed at.
func NegotiateEncryption(client, policy EncryptOption) (reply EncryptOption, result EncryptionResult) {
	c, s := client.Base(), policy.Base()
	if s > EncryptReq {
		return EncryptNotSup, EncryptionRefuse
	}
	switch c {
	case EncryptOff:
		switch s {
		case EncryptOff:
			return EncryptOff, EncryptionLoginOnly
		case EncryptNotSup:
			return EncryptNotSup, EncryptionNone
		default: // ON, REQ: the server insists on full encryption
			return EncryptReq, EncryptionFull
		}
	case EncryptOn, EncryptReq:
		if s == EncryptNotSup {
			return EncryptNotSup, EncryptionRefuse // the client aborts
		}
		return EncryptOn, EncryptionFull
	case EncryptNotSup:
		switch s {
		case EncryptOff, EncryptNotSup:
			return EncryptNotSup, EncryptionNone
		default:
			return EncryptReq, EncryptionRefuse // server requires, client cannot
		}
	}
	return EncryptNotSup, EncryptionRefuse
}

// ClientEncryptionResult is the client side: given what a client sent and
// what the server replied, what the client does next (SqlClient
// ResolveEncryption / go-mssqldb interpretPreloginResponse semantics). The
// proxy uses it on backend connections.
func ClientEncryptionResult(sent, reply EncryptOption) EncryptionResult {
	c, s := sent.Base(), reply.Base()
	switch {
	case s == EncryptNotSup:
		if c == EncryptOn || c == EncryptReq {
			return EncryptionRefuse
		}
		return EncryptionNone
	case c == EncryptNotSup:
		// Spec-conforming clients terminate here (go-mssqldb would
		// instead start TLS; we do not imitate that).
		return EncryptionRefuse
	case s == EncryptOff:
		return EncryptionLoginOnly
	case s == EncryptOn || s == EncryptReq:
		return EncryptionFull
	}
	return EncryptionRefuse
}
