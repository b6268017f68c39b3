package tds

import (
	"encoding/binary"
	"fmt"
	"strings"
)

// DONE, DONEPROC, DONEINPROC [MS-TDS §2.2.7.6-8]: Status(2) CurCmd(2)
// RowCount(8) in TDS 7.2+ (RowCount was 4 bytes before).

// doneBodyLen is the size after the token byte for TDS 7.2+.
const doneBodyLen = 12

// DoneStatus is the DONE* status bit field.
type DoneStatus uint16

const (
	DoneFinal    DoneStatus = 0x000
	DoneMore     DoneStatus = 0x001 // more results follow
	DoneError    DoneStatus = 0x002 // the statement failed
	DoneInXact   DoneStatus = 0x004 // a transaction is in progress (not reliable; use ENVCHANGE)
	DoneCount    DoneStatus = 0x010 // RowCount is valid
	DoneAttn     DoneStatus = 0x020 // acknowledges an ATTENTION
	DoneSrvError DoneStatus = 0x100 // severe error; discard the result set
)

func (s DoneStatus) String() string {
	if s == 0 {
		return "FINAL"
	}
	var parts []string
	for _, b := range []struct {
		bit  DoneStatus
		name string
	}{{DoneMore, "MORE"}, {DoneError, "ERROR"}, {DoneInXact, "INXACT"}, {DoneCount, "COUNT"}, {DoneAttn, "ATTN"}, {DoneSrvError, "SRVERROR"}} {
		if s&b.bit != 0 {
			parts = append(parts, b.name)
			s &^= b.bit
		}
	}
	if s != 0 {
		parts = append(parts, fmt.Sprintf("0x%X", uint16(s)))
	}
	return strings.Join(parts, "|")
}

// Done is a DONE, DONEPROC or DONEINPROC token.
type Done struct {
	Token    TokenType // TokenDone, TokenDoneProc or TokenDoneInProc
	Status   DoneStatus
	CurCmd   uint16 // statement kind, e.g. 0xC1 SELECT (undocumented, informational)
	RowCount uint64
}

// AppendDone appends the token (Token defaults to DONE when zero).
func (d Done) AppendDone(dst []byte) []byte {
	t := d.Token
	if t == 0 {
		t = TokenDone
	}
	dst = append(dst, byte(t))
	dst = binary.LittleEndian.AppendUint16(dst, uint16(d.Status))
	dst = binary.LittleEndian.AppendUint16(dst, d.CurCmd)
	return binary.LittleEndian.AppendUint64(dst, d.RowCount)
}

// DecodeDone parses a DONE* token including its token byte.
func DecodeDone(b []byte) (Done, int, error) {
	if len(b) < 1+doneBodyLen {
		return Done{}, 0, ErrShortBuffer
	}
	t := TokenType(b[0])
	if t != TokenDone && t != TokenDoneProc && t != TokenDoneInProc {
		return Done{}, 0, protoErr("DONE", 0, "token %s is not a DONE token", t)
	}
	return decodeDoneBody(t, b[1:]), 1 + doneBodyLen, nil
}

func decodeDoneBody(t TokenType, b []byte) Done {
	return Done{Token: t, Status: DoneStatus(binary.LittleEndian.Uint16(b)),
		CurCmd: binary.LittleEndian.Uint16(b[2:]), RowCount: binary.LittleEndian.Uint64(b[4:])}
}

// Final reports whether this token ends the response (no MORE bit on a
// DONE or DONEPROC).
func (d Done) Final() bool { return d.Status&DoneMore == 0 && d.Token != TokenDoneInProc }

func (d Done) String() string {
	return fmt.Sprintf("%s{status=%s curcmd=0x%X rows=%d}", d.Token, d.Status, d.CurCmd, d.RowCount)
}
