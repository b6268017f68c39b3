package tds

import (
	"encoding/binary"
	"fmt"
)

// ERROR (0xAA) and INFO (0xAB) [MS-TDS §2.2.7.10, §2.2.7.13] share a
// layout: Length(2) Number(4) State(1) Class(1) MsgText(US_VARCHAR)
// ServerName(B_VARCHAR) ProcName(B_VARCHAR) LineNumber(4 in 7.2+).

// ServerMessage is an ERROR or INFO token.
type ServerMessage struct {
	Token  TokenType // TokenError or TokenInfo
	Number int32
	State  uint8
	Class  uint8 // severity: <=10 info, 11-16 user, 17-19 resource, >=20 fatal
	Text   string
	Server string
	Proc   string
	Line   int32
}

// AppendMessage appends the token. Token defaults to ERROR when Class > 10
// and INFO otherwise if left zero.
func (m ServerMessage) AppendMessage(dst []byte) []byte {
	t := m.Token
	if t == 0 {
		t = TokenInfo
		if m.Class > 10 {
			t = TokenError
		}
	}
	dst, at := beginUSLen(dst, t)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(m.Number))
	dst = append(dst, m.State, m.Class)
	dst = appendUSVarchar(dst, m.Text)
	dst = appendBVarchar(dst, m.Server)
	dst = appendBVarchar(dst, m.Proc)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(m.Line))
	return finishUSLen(dst, at)
}

// DecodeMessage parses an ERROR or INFO token including its token byte.
func DecodeMessage(b []byte) (ServerMessage, int, error) {
	body, n, err := usLenBody(b)
	if err != nil {
		return ServerMessage{}, 0, err
	}
	m, err := decodeMessageBody(TokenType(b[0]), body)
	return m, n, err
}

func decodeMessageBody(t TokenType, b []byte) (ServerMessage, error) {
	name := t.String()
	if len(b) < 6 {
		return ServerMessage{}, protoErr(name, 0, "body of %d bytes too short", len(b))
	}
	m := ServerMessage{Token: t, Number: int32(binary.LittleEndian.Uint32(b)), State: b[4], Class: b[5]}
	i := 6
	var n int
	var err error
	if m.Text, n, err = readUSVarchar(b[i:]); err != nil {
		return m, protoErr(name, i, "truncated MsgText")
	}
	i += n
	if m.Server, n, err = readBVarchar(b[i:]); err != nil {
		return m, protoErr(name, i, "truncated ServerName")
	}
	i += n
	if m.Proc, n, err = readBVarchar(b[i:]); err != nil {
		return m, protoErr(name, i, "truncated ProcName")
	}
	i += n
	switch len(b) - i {
	case 4:
		m.Line = int32(binary.LittleEndian.Uint32(b[i:]))
	case 2: // TDS < 7.2
		m.Line = int32(binary.LittleEndian.Uint16(b[i:]))
	default:
		return m, protoErr(name, i, "%d trailing bytes where LineNumber should be", len(b)-i)
	}
	return m, nil
}

// usLenBody splits a token with a USHORT length: it returns the body and
// the total size including token and length.
func usLenBody(b []byte) ([]byte, int, error) {
	if len(b) < 3 {
		return nil, 0, ErrShortBuffer
	}
	n := 3 + int(binary.LittleEndian.Uint16(b[1:]))
	if len(b) < n {
		return nil, 0, ErrShortBuffer
	}
	return b[3:n], n, nil
}

func (m ServerMessage) String() string {
	return fmt.Sprintf("%s{number=%d state=%d class=%d text=%q server=%q proc=%q line=%d}",
		m.Token, m.Number, m.State, m.Class, m.Text, m.Server, m.Proc, m.Line)
}

// ErrorMessage returns an ERROR token followed by DONE(status ERROR),
// ready to frame with AppendPackets as a PacketReply message. This is the
// shape every driver needs to surface a server error: go-mssqldb only turns
// collected ERROR tokens into an error when it reaches the DONE.
// Use it for login failures (then close) and for request-level failures.
func ErrorMessage(number int32, state, class uint8, msg, server, proc string, line int32) []byte {
	dst := ServerMessage{Token: TokenError, Number: number, State: state, Class: class,
		Text: msg, Server: server, Proc: proc, Line: line}.AppendMessage(nil)
	return Done{Token: TokenDone, Status: DoneError}.AppendDone(dst)
}
