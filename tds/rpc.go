package tds

import (
	"encoding/binary"
	"fmt"
	"strings"
)

// RPC (0x03) [MS-TDS §2.2.6.6]:
//
//	ALL_HEADERS
//	RPCReqBatch { ProcName(US_VARCHAR) | 0xFFFF ProcID(2) ; OptionFlags(2) ; Param* }
//	( BatchFlag RPCReqBatch )*   -- 0xFF in 7.2+, 0x80 before; 0xFE = NoExec
//	Param = Name(B_VARCHAR) StatusFlags(1) TYPE_INFO Value

// ProcID is a well-known stored procedure id sent instead of a name.
type ProcID uint16

const (
	ProcCursor          ProcID = 1
	ProcCursorOpen      ProcID = 2
	ProcCursorPrepare   ProcID = 3
	ProcCursorExecute   ProcID = 4
	ProcCursorPrepExec  ProcID = 5
	ProcCursorUnprepare ProcID = 6
	ProcCursorFetch     ProcID = 7
	ProcCursorOption    ProcID = 8
	ProcCursorClose     ProcID = 9
	ProcExecuteSQL      ProcID = 10
	ProcPrepare         ProcID = 11
	ProcExecute         ProcID = 12
	ProcPrepExec        ProcID = 13
	ProcPrepExecRPC     ProcID = 14
	ProcUnprepare       ProcID = 15
)

var procNames = map[ProcID]string{
	ProcCursor: "sp_cursor", ProcCursorOpen: "sp_cursoropen", ProcCursorPrepare: "sp_cursorprepare",
	ProcCursorExecute: "sp_cursorexecute", ProcCursorPrepExec: "sp_cursorprepexec", ProcCursorUnprepare: "sp_cursorunprepare",
	ProcCursorFetch: "sp_cursorfetch", ProcCursorOption: "sp_cursoroption", ProcCursorClose: "sp_cursorclose",
	ProcExecuteSQL: "sp_executesql", ProcPrepare: "sp_prepare", ProcExecute: "sp_execute", ProcPrepExec: "sp_prepexec",
	ProcPrepExecRPC: "sp_prepexecrpc", ProcUnprepare: "sp_unprepare",
}

func (p ProcID) String() string {
	if s, ok := procNames[p]; ok {
		return s
	}
	return fmt.Sprintf("ProcID(%d)", uint16(p))
}

// procIDByName maps a procedure name (any case, optional "sys."/"dbo."
// and "master.." prefixes) to its well-known id.
func procIDByName(name string) (ProcID, bool) {
	n := strings.ToLower(name)
	if i := strings.LastIndexByte(n, '.'); i >= 0 {
		n = n[i+1:]
	}
	n = strings.Trim(n, "[]")
	for id, s := range procNames {
		if s == n {
			return id, true
		}
	}
	return 0, false
}

// RPC option flags and parameter status flags.
const (
	RPCWithRecompile  uint16 = 0x01
	RPCNoMetadata     uint16 = 0x02
	RPCReuseMetadata  uint16 = 0x04
	ParamByRef        uint8  = 0x01 // OUTPUT parameter
	ParamDefault      uint8  = 0x02
	ParamEncrypted    uint8  = 0x08
	rpcBatchFlag      byte   = 0xFF
	rpcBatchFlagOld   byte   = 0x80
	rpcBatchFlagNoExe byte   = 0xFE
)

// RPCParam is one parameter. Value holds the raw encoded value exactly as
// on the wire (length prefix / PLP chunks included); use the accessors to
// interpret common types.
type RPCParam struct {
	Name   string
	Status uint8
	Type   TypeInfo
	Value  []byte
}

// RPCCall is one RPCReqBatch.
type RPCCall struct {
	ProcID   ProcID // non-zero when sent by id
	ProcName string // set when sent by name
	Options  uint16
	Params   []RPCParam
	// NoExec is set when this call was introduced by the 0xFE batch flag.
	NoExec bool
}

// Proc returns the well-known id, resolving names like "sp_executesql".
func (c *RPCCall) Proc() (ProcID, bool) {
	if c.ProcID != 0 {
		return c.ProcID, true
	}
	return procIDByName(c.ProcName)
}

// Name returns the procedure name, whether sent by name or id.
func (c *RPCCall) Name() string {
	if c.ProcID != 0 {
		return c.ProcID.String()
	}
	return c.ProcName
}

// RPCRequest is a decoded RPC message.
type RPCRequest struct {
	Headers AllHeaders
	Calls   []RPCCall
}

// DecodeRPC parses an RPC payload (TDS 7.2+). Parameter values alias b.
// TVP and encrypted parameters are reported as *UnsupportedError.
func DecodeRPC(b []byte) (*RPCRequest, error) {
	r, err := decodeRPCPrefix(b)
	if err != nil {
		return nil, err
	}
	return r, nil
}

// decodeRPCPrefix is DecodeRPC that also returns, with its error, what it decoded before it:
// the calls whose name or id it read, the last one with the parameters read so far. A
// request classified on its first bytes (a long one's kept prefix) still names its procedures.
func decodeRPCPrefix(b []byte) (*RPCRequest, error) {
	const name = "RPC"
	h, i, err := DecodeAllHeaders(b)
	if err != nil {
		return nil, err
	}
	r := &RPCRequest{Headers: h}
	noExec := false
	for {
		if i+2 > len(b) {
			return r, protoErr(name, i, "truncated procedure name")
		}
		var c RPCCall
		c.NoExec = noExec
		partial := func(c RPCCall) *RPCRequest { r.Calls = append(r.Calls, c); return r }
		if l := binary.LittleEndian.Uint16(b[i:]); l == 0xFFFF {
			if i+4 > len(b) {
				return r, protoErr(name, i, "truncated ProcID")
			}
			c.ProcID = ProcID(binary.LittleEndian.Uint16(b[i+2:]))
			i += 4
		} else {
			s, n, err := readUSVarchar(b[i:])
			if err != nil {
				return r, protoErr(name, i, "truncated ProcName")
			}
			c.ProcName = s
			i += n
		}
		if i+2 > len(b) {
			return partial(c), protoErr(name, i, "truncated OptionFlags")
		}
		c.Options = binary.LittleEndian.Uint16(b[i:])
		i += 2
		for i < len(b) {
			if f := b[i]; f == rpcBatchFlag || f == rpcBatchFlagOld || f == rpcBatchFlagNoExe {
				break
			}
			p, n, err := decodeRPCParam(b[i:])
			if err != nil {
				if pe, ok := err.(*ProtocolError); ok {
					pe.Offset += i
				}
				return partial(c), err
			}
			c.Params = append(c.Params, p)
			i += n
		}
		r.Calls = append(r.Calls, c)
		if i >= len(b) {
			return r, nil
		}
		noExec = b[i] == rpcBatchFlagNoExe
		i++
		if i >= len(b) {
			// A trailing batch flag with nothing after it; tolerated.
			return r, nil
		}
	}
}

func decodeRPCParam(b []byte) (RPCParam, int, error) {
	const name = "RPC parameter"
	var p RPCParam
	s, n, err := readBVarchar(b)
	if err != nil {
		return p, 0, protoErr(name, 0, "truncated name")
	}
	p.Name = s
	i := n
	if i >= len(b) {
		return p, 0, protoErr(name, i, "truncated status")
	}
	p.Status = b[i]
	i++
	if p.Status&ParamEncrypted != 0 {
		return p, 0, &UnsupportedError{What: "RPC parameter", Code: int(p.Status), Detail: "encrypted parameter"}
	}
	if i < len(b) && DataType(b[i]) == TypeTVP {
		return p, 0, &UnsupportedError{What: "type", Code: int(TypeTVP), Detail: "table-valued parameter"}
	}
	ti, n, err := DecodeTypeInfo(b[i:])
	if err == ErrShortBuffer {
		return p, 0, protoErr(name, i, "truncated TYPE_INFO")
	}
	if err != nil {
		return p, 0, err
	}
	p.Type = ti
	i += n
	vl, err := valueLen(b[i:], &ti)
	if err != nil {
		return p, 0, protoErr(name, i, "value of %s: %v", ti, err)
	}
	p.Value = b[i : i+vl]
	return p, i + vl, nil
}

// valueLen returns the encoded size of one value at b[0:].
func valueLen(b []byte, ti *TypeInfo) (int, error) {
	kind, size := ti.kind()
	le := binary.LittleEndian
	switch kind {
	case kindFixed:
		if len(b) < size {
			return 0, ErrShortBuffer
		}
		return size, nil
	case kindLen1:
		if len(b) < 1 || len(b) < 1+int(b[0]) {
			return 0, ErrShortBuffer
		}
		return 1 + int(b[0]), nil
	case kindLen2:
		if len(b) < 2 {
			return 0, ErrShortBuffer
		}
		l := int(le.Uint16(b))
		if l == 0xFFFF {
			return 2, nil
		}
		if len(b) < 2+l {
			return 0, ErrShortBuffer
		}
		return 2 + l, nil
	case kindLen4:
		if len(b) < 4 || uint64(le.Uint32(b)) > uint64(len(b)-4) {
			return 0, ErrShortBuffer
		}
		return 4 + int(le.Uint32(b)), nil
	case kindPLP:
		if len(b) < 8 {
			return 0, ErrShortBuffer
		}
		if le.Uint64(b) == plpNull {
			return 8, nil
		}
		i := 8
		for {
			if len(b) < i+4 {
				return 0, ErrShortBuffer
			}
			l := uint64(le.Uint32(b[i:]))
			i += 4
			if l == 0 {
				return i, nil
			}
			if l > uint64(len(b)-i) {
				return 0, ErrShortBuffer
			}
			i += int(l)
		}
	case kindTextPtr:
		// In RPC parameters text/ntext/image values are LONGLEN without a
		// text pointer [MS-TDS §2.2.6.6]; NULL is 0xFFFFFFFF.
		if len(b) < 4 {
			return 0, ErrShortBuffer
		}
		l := le.Uint32(b)
		if l == 0xFFFFFFFF {
			return 4, nil
		}
		if uint64(l) > uint64(len(b)-4) {
			return 0, ErrShortBuffer
		}
		return 4 + int(l), nil
	}
	return 0, ErrShortBuffer
}

// IsNull reports a NULL value.
func (p *RPCParam) IsNull() bool {
	d := p.Value
	kind, _ := p.Type.kind()
	switch kind {
	case kindLen1:
		return len(d) == 1 && d[0] == 0
	case kindLen2:
		return len(d) == 2 && d[0] == 0xFF && d[1] == 0xFF
	case kindPLP:
		return len(d) == 8 && binary.LittleEndian.Uint64(d) == plpNull
	case kindLen4:
		return len(d) == 4 && binary.LittleEndian.Uint32(d) == 0
	case kindTextPtr:
		return len(d) == 4 && binary.LittleEndian.Uint32(d) == 0xFFFFFFFF
	}
	return false
}

// Bytes returns the value's data without length prefix or PLP framing
// (PLP chunks are concatenated, which allocates).
func (p *RPCParam) Bytes() []byte {
	if p.IsNull() {
		return nil
	}
	d := p.Value
	kind, _ := p.Type.kind()
	switch kind {
	case kindFixed:
		return d
	case kindLen1:
		return d[1:]
	case kindLen2, kindLen4:
		if kind == kindLen2 {
			return d[2:]
		}
		return d[4:]
	case kindTextPtr:
		return d[4:]
	case kindPLP:
		var out []byte
		for i := 8; i+4 <= len(d); {
			l := int(binary.LittleEndian.Uint32(d[i:]))
			i += 4
			if l == 0 || i+l > len(d) {
				break
			}
			out = append(out, d[i:i+l]...)
			i += l
		}
		return out
	}
	return nil
}

// String returns the text of an NVARCHAR/NCHAR/NTEXT/XML parameter (UTF-16
// decoded) or a VARCHAR/CHAR/TEXT parameter (bytes as-is).
func (p *RPCParam) String() (string, bool) {
	switch p.Type.Type {
	case TypeNVarChar, TypeNChar, TypeNText, TypeXML:
		if p.IsNull() {
			return "", false
		}
		return ucs2String(p.Bytes()), true
	case TypeBigVarChar, TypeBigChar, TypeText, TypeVarChar, TypeChar:
		if p.IsNull() {
			return "", false
		}
		return string(p.Bytes()), true
	}
	return "", false
}

// Int returns an integer parameter's value (INTN and INT1..INT8).
func (p *RPCParam) Int() (int64, bool) {
	switch p.Type.Type {
	case TypeIntN, TypeInt1, TypeInt2, TypeInt4, TypeInt8:
	default:
		return 0, false
	}
	d := p.Bytes()
	switch len(d) {
	case 1:
		return int64(d[0]), true
	case 2:
		return int64(int16(binary.LittleEndian.Uint16(d))), true
	case 4:
		return int64(int32(binary.LittleEndian.Uint32(d))), true
	case 8:
		return int64(binary.LittleEndian.Uint64(d)), true
	}
	return 0, false
}

// NewRPCParam encodes a parameter value for AppendRPC using AppendValue.
func NewRPCParam(name string, status uint8, ti TypeInfo, v any) (RPCParam, error) {
	val, err := AppendValue(nil, &ti, v)
	if err != nil {
		return RPCParam{}, err
	}
	return RPCParam{Name: name, Status: status, Type: ti, Value: val}, nil
}

// AppendRPC appends the RPC payload (frame with PacketRPC).
func (r *RPCRequest) AppendRPC(dst []byte) []byte {
	dst = r.Headers.AppendAllHeaders(dst)
	for k, c := range r.Calls {
		if k > 0 {
			if c.NoExec {
				dst = append(dst, rpcBatchFlagNoExe)
			} else {
				dst = append(dst, rpcBatchFlag)
			}
		}
		if c.ProcID != 0 {
			dst = append(dst, 0xFF, 0xFF)
			dst = binary.LittleEndian.AppendUint16(dst, uint16(c.ProcID))
		} else {
			dst = appendUSVarchar(dst, c.ProcName)
		}
		dst = binary.LittleEndian.AppendUint16(dst, c.Options)
		for _, p := range c.Params {
			dst = appendBVarchar(dst, p.Name)
			dst = append(dst, p.Status)
			dst = p.Type.AppendTypeInfo(dst)
			dst = append(dst, p.Value...)
		}
	}
	return dst
}

func (r *RPCRequest) String() string {
	var parts []string
	for _, c := range r.Calls {
		var ps []string
		for _, p := range c.Params {
			ps = append(ps, fmt.Sprintf("%s %s", p.Name, p.Type))
		}
		parts = append(parts, fmt.Sprintf("%s(%s)", c.Name(), strings.Join(ps, ", ")))
	}
	return fmt.Sprintf("RPC{txn=0x%X %s}", r.Headers.TransactionDescriptor, strings.Join(parts, "; "))
}
