package tds

import (
	"encoding/binary"
	"fmt"
)

// Scanner walks the token stream of server responses [MS-TDS §2.2.7]
// incrementally: the caller feeds payload bytes (packet headers removed;
// see ResponseScanner for raw packets) in chunks of any size, and the
// scanner reports the tokens a pooler acts on.
//
// It does not re-buffer the stream. Row values are skipped by counting,
// across chunk boundaries, with a few bytes of carried state (a length
// prefix being assembled, bytes left to skip, the current column). Only
// tokens that must be decoded to be reported or skipped (ENVCHANGE, ERROR,
// INFO, LOGINACK, DONE*, COLMETADATA, the RETURNVALUE header,
// FEATUREEXTACK) are copied when they straddle a chunk boundary, bounded by
// MaxTokenSize.
//
// On anything it cannot interpret exactly (unknown token or type,
// ALTMETADATA/ALTROW, DATACLASSIFICATION, encrypted columns, COLMETADATA
// with "no metadata") it returns an error and stays failed: the caller must
// stop inspecting and treat the session's state as unknown (pin it). It
// never guesses. It assumes TDS 7.2+ (12-byte DONE bodies, 4-byte
// LineNumber).
//
// A Scanner is owned by one goroutine/thread; it is not safe for
// concurrent use.
type Scanner struct {
	// MaxTokenSize bounds a token the scanner has to assemble across
	// chunks. Zero means DefaultMaxTokenSize.
	MaxTokenSize int

	events []Event
	err    error

	// Current result-set layout, compiled from COLMETADATA.
	cols     []colSkip
	fixedRow int // size of a ROW body when every column is fixed-length, else -1
	hasMeta  bool
	// COLMETADATA being assembled across chunks.
	md       []Column
	mdLeft   int
	mdOff    int
	mdActive bool
	// FEATUREEXTACK being assembled across chunks.
	fa     []Feature
	faOff  int
	bitmap []byte // NBCROW null bitmap, len = ceil(ncols/8)

	st       scanState
	carry    []byte // partial structured token
	carryLen int    // bytes needed for the carried token; 0 if unknown (parse to find out)

	// Row / value state.
	nbc    bool
	bmHave int // bitmap bytes collected
	col    int
	rv     colSkip // RETURNVALUE's single value
	sub    valueState
	pfx    [8]byte
	pfxN   int    // prefix bytes collected
	need   int    // prefix size wanted
	skip   uint64 // bytes left to skip
	after  valueState

	// Stats, for metrics and tests.
	Rows       uint64 // ROW + NBCROW tokens seen
	ResultSets uint64 // COLMETADATA tokens seen
}

// DefaultMaxTokenSize bounds assembled tokens: a USHORT-length token is at
// most 64 KiB, but COLMETADATA has no length and grows with the column
// count (up to 4096 columns with long names and XML/UDT schema names).
const DefaultMaxTokenSize = 4 << 20

type scanState uint8

const (
	stToken     scanState = iota // at a token boundary
	stCarry                      // assembling a structured token in carry
	stSkip                       // skipping a length-prefixed token we do not decode
	stSkipHdr                    // collecting the length of such a token
	stBitmap                     // collecting an NBCROW bitmap
	stRow                        // inside a row
	stReturnVal                  // inside a RETURNVALUE value
)

type valueState uint8

const (
	vStart valueState = iota
	vLen1
	vLen2
	vLen4
	vPLPTotal
	vPLPChunk
	vTextPtrLen
	vTextDataLen
	vSkip
	vDone
)

type colSkip struct {
	kind valueKind
	size int
}

// Event is one reported token. Only the field matching Token is set.
// Strings are copied; byte slices are copied too, so an Event stays valid
// after the next Feed (the Events slice itself is reused).
type Event struct {
	Token         TokenType
	Done          Done          // DONE, DONEPROC, DONEINPROC
	EnvChange     EnvChange     // ENVCHANGE
	Message       ServerMessage // ERROR, INFO
	LoginAck      LoginAck      // LOGINACK
	ReturnStatus  int32         // RETURNSTATUS
	FeatureExtAck FeatureExtAck // FEATUREEXTACK
	ReturnValue   ReturnValue   // RETURNVALUE header (Value is nil)
	Columns       int           // COLMETADATA: number of columns
}

func (e Event) String() string {
	switch e.Token {
	case TokenDone, TokenDoneProc, TokenDoneInProc:
		return e.Done.String()
	case TokenEnvChange:
		return e.EnvChange.String()
	case TokenError, TokenInfo:
		return e.Message.String()
	case TokenLoginAck:
		return e.LoginAck.String()
	case TokenReturnStatus:
		return fmt.Sprintf("RETURNSTATUS{%d}", e.ReturnStatus)
	case TokenFeatureExtAck:
		return e.FeatureExtAck.String()
	case TokenReturnValue:
		return e.ReturnValue.String()
	case TokenColMetadata:
		return fmt.Sprintf("COLMETADATA{%d columns}", e.Columns)
	}
	return e.Token.String()
}

// Feed scans chunk and returns the events completed within it. The
// returned slice is reused by the next call. After an error every later
// call returns the same error.
func (s *Scanner) Feed(chunk []byte) ([]Event, error) {
	s.events = s.events[:0]
	if s.err != nil {
		return nil, s.err
	}
	if err := s.feed(chunk); err != nil {
		s.err = err
		return s.events, err
	}
	return s.events, nil
}

// AtTokenBoundary reports whether the bytes fed so far end exactly at the
// end of a token — which must be true at the end of a response (EOM).
func (s *Scanner) AtTokenBoundary() bool { return s.st == stToken && s.err == nil }

// EndResponse is called at the EOM of a response. It checks that the
// stream ended on a token boundary and forgets the result-set layout. The
// scanner can then be reused for the next response.
func (s *Scanner) EndResponse() error {
	if s.err != nil {
		return s.err
	}
	if s.st != stToken {
		s.err = protoErr("token stream", -1, "response ended inside a token (state %d)", s.st)
		return s.err
	}
	s.hasMeta = false
	s.cols = s.cols[:0]
	return nil
}

// Err returns the sticky error, if any.
func (s *Scanner) Err() error { return s.err }

func (s *Scanner) maxToken() int {
	if s.MaxTokenSize > 0 {
		return s.MaxTokenSize
	}
	return DefaultMaxTokenSize
}

func (s *Scanner) feed(b []byte) error {
	for len(b) > 0 {
		switch s.st {
		case stToken:
			n, err := s.token(b)
			if err != nil {
				return err
			}
			b = b[n:]
		case stCarry:
			n, err := s.continueCarry(b)
			if err != nil {
				return err
			}
			b = b[n:]
		case stSkipHdr:
			// Collect the 3 (USHORT) or 5 (DWORD) header bytes of a token we skip.
			k := copy(s.pfx[s.pfxN:s.need], b)
			s.pfxN += k
			b = b[k:]
			if s.pfxN == s.need {
				if s.need == 3 {
					s.skip = uint64(binary.LittleEndian.Uint16(s.pfx[1:]))
				} else {
					s.skip = uint64(binary.LittleEndian.Uint32(s.pfx[1:]))
				}
				s.st = stSkip
				if s.skip == 0 {
					s.st = stToken
				}
			}
		case stSkip:
			if uint64(len(b)) < s.skip {
				s.skip -= uint64(len(b))
				return nil
			}
			b = b[s.skip:]
			s.skip = 0
			s.st = stToken
		case stBitmap:
			k := copy(s.bitmap[s.bmHave:], b)
			s.bmHave += k
			b = b[k:]
			if s.bmHave == len(s.bitmap) {
				s.st, s.col, s.sub = stRow, 0, vStart
				if len(b) == 0 {
					// Settle now: a row whose remaining columns are all NULL ends with its
					// bitmap, and the scanner must report a token boundary there whether or
					// not more bytes follow in this chunk (found by FuzzScanner).
					if _, err := s.rowSlow(nil); err != nil {
						return err
					}
				}
			}
		case stRow:
			n, err := s.rowSlow(b)
			if err != nil {
				return err
			}
			b = b[n:]
		case stReturnVal:
			n, done, err := s.stepValue(b, s.rv)
			if err != nil {
				return err
			}
			b = b[n:]
			if done {
				s.st = stToken
			}
		}
	}
	return nil
}

// token handles bytes starting at a token boundary; it consumes as many
// whole tokens as it can in one go (the hot loop for row-heavy results).
func (s *Scanner) token(b []byte) (int, error) {
	pos := 0
	for pos < len(b) {
		t := TokenType(b[pos])
		switch t {
		case TokenRow:
			if !s.hasMeta {
				return pos, protoErr("ROW", -1, "row without COLMETADATA")
			}
			if s.fixedRow >= 0 {
				if pos+1+s.fixedRow <= len(b) {
					pos += 1 + s.fixedRow
					s.Rows++
					continue
				}
			} else if n, ok := s.rowFast(b[pos+1:], false); ok {
				pos += 1 + n
				s.Rows++
				continue
			}
			s.Rows++
			s.nbc, s.col, s.sub = false, 0, vStart
			s.st = stRow
			return pos + 1, nil
		case TokenNBCRow:
			if !s.hasMeta {
				return pos, protoErr("NBCROW", -1, "row without COLMETADATA")
			}
			s.Rows++
			bm := len(s.bitmap)
			if pos+1+bm <= len(b) {
				copy(s.bitmap, b[pos+1:])
				if n, ok := s.rowFast(b[pos+1+bm:], true); ok {
					pos += 1 + bm + n
					continue
				}
				s.nbc, s.col, s.sub = true, 0, vStart
				s.st = stRow
				return pos + 1 + bm, nil
			}
			s.nbc, s.bmHave = true, 0
			s.st = stBitmap
			return pos + 1, nil
		case TokenDone, TokenDoneProc, TokenDoneInProc, TokenReturnStatus,
			TokenEnvChange, TokenError, TokenInfo, TokenLoginAck,
			TokenColMetadata, TokenFeatureExtAck, TokenReturnValue:
			n, err := s.structured(b[pos:])
			if err == ErrShortBuffer {
				// Start carrying this token; continueCarry takes it from here.
				s.carry = append(s.carry[:0], b[pos:]...)
				s.carryLen = fixedTokenLen(b[pos:])
				s.st = stCarry
				if len(s.carry) > s.maxToken() {
					return 0, &LimitError{What: t.String() + " token", Size: len(s.carry), Limit: s.maxToken()}
				}
				return len(b), nil
			}
			if err != nil {
				return pos, err
			}
			pos += n
			if s.st != stToken { // RETURNVALUE moved into its value
				return pos, nil
			}
		case TokenOffset:
			if pos+5 <= len(b) {
				pos += 5
				continue
			}
			s.skip = uint64(5 - (len(b) - pos))
			s.st = stSkip
			return len(b), nil
		case TokenOrder, TokenColInfo, TokenTabName, TokenSSPI, TokenFedAuthInfo, TokenSessionState:
			// Length-prefixed tokens nobody needs decoded: skip by count.
			hdr := 3
			if t == TokenFedAuthInfo || t == TokenSessionState {
				hdr = 5
				s.events = append(s.events, Event{Token: t}) // caller may want to know
			}
			s.pfxN, s.need = 0, hdr
			s.st = stSkipHdr
			return pos, nil
		default:
			return pos, &UnsupportedError{What: "token", Code: int(t), Detail: "cannot skip"}
		}
	}
	return pos, nil
}

// fixedTokenLen returns the total size of a token whose size is known from
// its first bytes (0 if not yet known or not length-prefixed).
func fixedTokenLen(b []byte) int {
	switch TokenType(b[0]) {
	case TokenDone, TokenDoneProc, TokenDoneInProc:
		return 1 + doneBodyLen
	case TokenReturnStatus:
		return 5
	case TokenEnvChange, TokenError, TokenInfo, TokenLoginAck:
		if len(b) >= 3 {
			return 3 + int(binary.LittleEndian.Uint16(b[1:]))
		}
	}
	return 0
}

// continueCarry adds bytes to a carried token. For tokens of known size it
// copies exactly what is missing; for COLMETADATA, FEATUREEXTACK and the
// RETURNVALUE header it appends and re-parses.
func (s *Scanner) continueCarry(b []byte) (int, error) {
	used := 0
	switch TokenType(s.carry[0]) {
	case TokenEnvChange, TokenError, TokenInfo, TokenLoginAck:
		if len(s.carry) < 3 {
			// Only the USHORT length is missing; take just that much so
			// the exact size is known before copying more.
			used = min(3-len(s.carry), len(b))
			s.carry = append(s.carry, b[:used]...)
			b = b[used:]
		}
	}
	if s.carryLen == 0 {
		s.carryLen = fixedTokenLen(s.carry)
	}
	if s.carryLen > 0 {
		k := min(s.carryLen-len(s.carry), len(b))
		s.carry = append(s.carry, b[:k]...)
		if len(s.carry) < s.carryLen {
			return used + k, nil
		}
		s.st = stToken
		_, err := s.structured(s.carry)
		return used + k, err
	}
	if used > 0 {
		return used, nil // length still incomplete
	}
	old := len(s.carry)
	s.carry = append(s.carry, b...)
	if len(s.carry) > s.maxToken() {
		return 0, &LimitError{What: TokenType(s.carry[0]).String() + " token", Size: len(s.carry), Limit: s.maxToken()}
	}
	s.st = stToken
	var n int
	var err error
	if TokenType(s.carry[0]) == TokenColMetadata && s.mdActive {
		// Resume after the last complete column instead of re-parsing
		// from the start, so a byte-at-a-time peer costs linear time.
		n, err = s.colMetadata(s.carry, false)
	} else if TokenType(s.carry[0]) == TokenFeatureExtAck {
		n, err = s.featureExtAck(s.carry, false)
	} else {
		n, err = s.structured(s.carry)
	}
	if err == ErrShortBuffer {
		s.st = stCarry
		return len(b), nil
	}
	if err != nil {
		return 0, err
	}
	return n - old, nil
}

// structured decodes one token that must be parsed as a whole (b starts at
// its token byte) and emits its event. Byte slices in events are copied,
// since b may be the caller's chunk or the reused carry buffer.
func (s *Scanner) structured(b []byte) (int, error) {
	t := TokenType(b[0])
	switch t {
	case TokenDone, TokenDoneProc, TokenDoneInProc:
		if len(b) < 1+doneBodyLen {
			return 0, ErrShortBuffer
		}
		s.events = append(s.events, Event{Token: t, Done: decodeDoneBody(t, b[1:])})
		return 1 + doneBodyLen, nil
	case TokenReturnStatus:
		if len(b) < 5 {
			return 0, ErrShortBuffer
		}
		s.events = append(s.events, Event{Token: t, ReturnStatus: int32(binary.LittleEndian.Uint32(b[1:]))})
		return 5, nil
	case TokenEnvChange:
		body, n, err := usLenBody(b)
		if err != nil {
			return 0, err
		}
		e, err := decodeEnvChangeBody(body)
		if err != nil {
			return 0, err
		}
		e.NewBytes, e.OldBytes, e.RawOld = clone(e.NewBytes), clone(e.OldBytes), clone(e.RawOld)
		s.events = append(s.events, Event{Token: t, EnvChange: e})
		return n, nil
	case TokenError, TokenInfo:
		body, n, err := usLenBody(b)
		if err != nil {
			return 0, err
		}
		m, err := decodeMessageBody(t, body)
		if err != nil {
			return 0, err
		}
		s.events = append(s.events, Event{Token: t, Message: m})
		return n, nil
	case TokenLoginAck:
		body, n, err := usLenBody(b)
		if err != nil {
			return 0, err
		}
		a, err := decodeLoginAckBody(body)
		if err != nil {
			return 0, err
		}
		s.events = append(s.events, Event{Token: t, LoginAck: a})
		return n, nil
	case TokenFeatureExtAck:
		return s.featureExtAck(b, true)
	case TokenColMetadata:
		return s.colMetadata(b, true)
	case TokenReturnValue:
		r, n, err := decodeReturnValueHeader(b)
		if err != nil {
			return 0, err
		}
		k, size := r.Type.kind()
		s.rv = colSkip{kind: k, size: size}
		s.sub = vStart
		s.st = stReturnVal
		s.events = append(s.events, Event{Token: t, ReturnValue: r})
		return n, nil
	}
	return 0, &UnsupportedError{What: "token", Code: int(t), Detail: "not a structured token"}
}

// colMetadata parses COLMETADATA incrementally: columns decoded so far are
// kept in s.md, and a later call with fresh=false resumes at s.mdOff.
func (s *Scanner) colMetadata(b []byte, fresh bool) (int, error) {
	if fresh {
		if len(b) < 3 {
			return 0, ErrShortBuffer
		}
		count := int(binary.LittleEndian.Uint16(b[1:]))
		if count == NoMetadata {
			return 0, &UnsupportedError{What: "COLMETADATA", Code: int(TokenColMetadata), Detail: "no-metadata (0xFFFF): row layout unknown"}
		}
		s.md, s.mdLeft, s.mdOff, s.mdActive = s.md[:0], count, 3, true
	}
	for s.mdLeft > 0 {
		col, n, err := decodeColumn(b[s.mdOff:])
		if err != nil {
			if pe, ok := err.(*ProtocolError); ok {
				pe.Offset += s.mdOff
			}
			return 0, err
		}
		s.md = append(s.md, col)
		s.mdOff += n
		s.mdLeft--
	}
	s.mdActive = false
	s.setMetadata(s.md)
	s.ResultSets++
	s.events = append(s.events, Event{Token: TokenColMetadata, Columns: len(s.md)})
	return s.mdOff, nil
}

// featureExtAck parses FEATUREEXTACK incrementally (it has no length
// prefix, and re-parsing it from the start for every chunk would be
// quadratic); s.faOff is where the next feature starts.
func (s *Scanner) featureExtAck(b []byte, fresh bool) (int, error) {
	if fresh {
		s.fa, s.faOff = s.fa[:0], 1
	}
	for {
		if s.faOff >= len(b) {
			return 0, ErrShortBuffer
		}
		id := FeatureID(b[s.faOff])
		if id == FeatureTerminator {
			break
		}
		if s.faOff+5 > len(b) {
			return 0, ErrShortBuffer
		}
		n := uint64(binary.LittleEndian.Uint32(b[s.faOff+1:]))
		if n > uint64(s.maxToken()) {
			return 0, &LimitError{What: "FEATUREEXTACK feature", Size: int(min(n, 1<<31)), Limit: s.maxToken()}
		}
		if uint64(len(b)-s.faOff-5) < n {
			return 0, ErrShortBuffer
		}
		s.fa = append(s.fa, Feature{ID: id, Data: clone(b[s.faOff+5 : s.faOff+5+int(n)])})
		s.faOff += 5 + int(n)
	}
	s.events = append(s.events, Event{Token: TokenFeatureExtAck, FeatureExtAck: FeatureExtAck{Features: append([]Feature(nil), s.fa...)}})
	return s.faOff + 1, nil
}

func clone(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append([]byte(nil), b...)
}

func (s *Scanner) setMetadata(cols []Column) {
	s.cols = s.cols[:0]
	s.fixedRow = 0
	for i := range cols {
		k, size := cols[i].Type.kind()
		s.cols = append(s.cols, colSkip{kind: k, size: size})
		if k == kindFixed && s.fixedRow >= 0 {
			s.fixedRow += size
		} else {
			s.fixedRow = -1
		}
	}
	n := (len(cols) + 7) / 8
	if cap(s.bitmap) < n {
		s.bitmap = make([]byte, n)
	}
	s.bitmap = s.bitmap[:n]
	s.hasMeta = true
}

func (s *Scanner) isNull(col int) bool {
	return s.nbc && s.bitmap[col>>3]&(1<<(col&7)) != 0
}

// rowFast skips one whole row body if it is entirely inside b, without
// touching the carried state. It reports ok=false if b ends first.
func (s *Scanner) rowFast(b []byte, nbc bool) (int, bool) {
	s.nbc = nbc
	pos := 0
	le := binary.LittleEndian
	for c := range s.cols {
		if nbc && s.bitmap[c>>3]&(1<<(c&7)) != 0 {
			continue
		}
		cs := s.cols[c]
		switch cs.kind {
		case kindFixed:
			pos += cs.size
		case kindLen1:
			if pos >= len(b) {
				return 0, false
			}
			pos += 1 + int(b[pos])
		case kindLen2:
			if pos+2 > len(b) {
				return 0, false
			}
			l := int(le.Uint16(b[pos:]))
			pos += 2
			if l != 0xFFFF {
				pos += l
			}
		case kindLen4:
			if pos+4 > len(b) {
				return 0, false
			}
			l := uint64(le.Uint32(b[pos:]))
			if l > uint64(len(b)) {
				return 0, false
			}
			pos += 4 + int(l)
		case kindPLP:
			if pos+8 > len(b) {
				return 0, false
			}
			total := le.Uint64(b[pos:])
			pos += 8
			if total == plpNull {
				continue
			}
			for {
				if pos+4 > len(b) {
					return 0, false
				}
				l := uint64(le.Uint32(b[pos:]))
				pos += 4
				if l == 0 {
					break
				}
				if l > uint64(len(b)) {
					return 0, false
				}
				pos += int(l)
			}
		case kindTextPtr:
			if pos >= len(b) {
				return 0, false
			}
			tp := int(b[pos])
			pos++
			if tp == 0 {
				continue
			}
			pos += tp + 8
			if pos+4 > len(b) {
				return 0, false
			}
			l := uint64(le.Uint32(b[pos:]))
			if l > uint64(len(b)) {
				return 0, false
			}
			pos += 4 + int(l)
		}
		if pos > len(b) {
			return 0, false
		}
	}
	return pos, true
}

const plpNull = 0xFFFFFFFFFFFFFFFF

// rowSlow continues a row across chunk boundaries, one value at a time.
func (s *Scanner) rowSlow(b []byte) (int, error) {
	pos := 0
	for s.col < len(s.cols) {
		if s.sub == vStart && s.isNull(s.col) {
			s.col++
			continue
		}
		n, done, err := s.stepValue(b[pos:], s.cols[s.col])
		pos += n
		if err != nil {
			return pos, err
		}
		if !done {
			return pos, nil
		}
		s.col++
	}
	s.st = stToken
	return pos, nil
}

// stepValue advances through one value; done reports its end.
func (s *Scanner) stepValue(b []byte, cs colSkip) (int, bool, error) {
	pos := 0
	for {
		switch s.sub {
		case vStart:
			switch cs.kind {
			case kindFixed:
				s.skip, s.sub, s.after = uint64(cs.size), vSkip, vDone
				continue
			case kindLen1:
				s.sub, s.need = vLen1, 1
			case kindLen2:
				s.sub, s.need = vLen2, 2
			case kindLen4:
				s.sub, s.need = vLen4, 4
			case kindPLP:
				s.sub, s.need = vPLPTotal, 8
			case kindTextPtr:
				s.sub, s.need = vTextPtrLen, 1
			}
			s.pfxN = 0
		case vSkip:
			if uint64(len(b)-pos) < s.skip {
				s.skip -= uint64(len(b) - pos)
				return len(b), false, nil
			}
			pos += int(s.skip)
			s.skip = 0
			s.sub = s.after
			if s.sub != vDone {
				s.pfxN = 0
			}
		case vDone:
			s.sub = vStart
			return pos, true, nil
		default: // collecting a length prefix
			k := copy(s.pfx[s.pfxN:s.need], b[pos:])
			s.pfxN += k
			pos += k
			if s.pfxN < s.need {
				return pos, false, nil
			}
			p := s.pfx[:s.need]
			le := binary.LittleEndian
			switch s.sub {
			case vLen1:
				s.skip, s.sub, s.after = uint64(p[0]), vSkip, vDone
			case vLen2:
				l := le.Uint16(p)
				if l == 0xFFFF {
					s.sub = vDone
				} else {
					s.skip, s.sub, s.after = uint64(l), vSkip, vDone
				}
			case vLen4:
				s.skip, s.sub, s.after = uint64(le.Uint32(p)), vSkip, vDone
			case vPLPTotal:
				if le.Uint64(p) == plpNull {
					s.sub = vDone
				} else {
					s.sub, s.need, s.pfxN = vPLPChunk, 4, 0
				}
			case vPLPChunk:
				l := le.Uint32(p)
				if l == 0 {
					s.sub = vDone
				} else {
					s.skip, s.sub, s.after = uint64(l), vSkip, vPLPChunk
					s.need = 4
				}
			case vTextPtrLen:
				if p[0] == 0 {
					s.sub = vDone
				} else {
					s.skip, s.sub, s.after = uint64(p[0])+8, vSkip, vTextDataLen
					s.need = 4
				}
			case vTextDataLen:
				s.skip, s.sub, s.after = uint64(le.Uint32(p)), vSkip, vDone
			}
		}
	}
}
