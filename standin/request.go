package standin

import (
	"fmt"
	"strings"
	"time"

	"github.com/tdspool/tdspool/tds"
)

// Request decoding is tds.DecodeSQLBatch, tds.DecodeRPC (values through
// tds.RPCParam.Decode) and tds.DecodeTransMgr; this file adapts their
// results to what the executor works with.

// rpcCall is one RPCReqBatch entry, or an EXEC statement's call.
type rpcCall struct {
	name   string // lower-case proc name, or the well-known name of the ProcID
	params []rpcParam
}

type rpcParam struct {
	name   string // with '@', as sent; may be empty
	status uint8  // tds.ParamByRef (OUTPUT), tds.ParamDefault
	ti     tds.TypeInfo
	val    any
}

// Typed wrappers so parameter values keep what TYPE_INFO said about them
// where a plain Go type would lose it.
type (
	decimalValue string    // canonical decimal text, e.g. "-12.3400"
	guidValue    string    // canonical upper-case GUID text
	timeOfDay    time.Time // a time parameter (the date part is not its value)
)

// rpcCalls converts a decoded RPC request into calls with Go values.
func rpcCalls(req *tds.RPCRequest) ([]rpcCall, error) {
	calls := make([]rpcCall, 0, len(req.Calls))
	for i := range req.Calls {
		c := &req.Calls[i]
		call := rpcCall{name: strings.ToLower(c.ProcName)}
		if c.ProcID != 0 {
			call.name = c.ProcID.String()
			if strings.HasPrefix(call.name, "ProcID(") {
				call.name = fmt.Sprintf("procid %d", uint16(c.ProcID))
			}
		}
		for j := range c.Params {
			p := &c.Params[j]
			v, err := paramValue(p)
			if err != nil {
				return nil, err
			}
			call.params = append(call.params, rpcParam{name: p.Name, status: p.Status, ti: p.Type, val: v})
		}
		calls = append(calls, call)
	}
	return calls, nil
}

// paramValue decodes one parameter into the Go values the executor uses:
// decimals, money and GUIDs keep their kind through the wrappers above, and
// single-byte text is read as Latin-1.
func paramValue(p *tds.RPCParam) (any, error) {
	v, err := p.Decode()
	if err != nil {
		return nil, err
	}
	switch x := v.(type) {
	case tds.Decimal:
		return decimalValue(x.String()), nil
	case tds.GUID:
		return guidValue(x.String()), nil
	case time.Time:
		if p.Type.Type == tds.TypeTimeN {
			return timeOfDay(x), nil
		}
	case string:
		switch p.Type.Type {
		case tds.TypeBigVarChar, tds.TypeBigChar, tds.TypeVarChar, tds.TypeChar, tds.TypeText:
			return latin1([]byte(x)), nil
		}
	}
	return v, nil
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
