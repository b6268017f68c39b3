package tds

import (
	"fmt"
	"strings"
)

// The one T-SQL lexer of the project: the request classifier uses it to
// find keywords outside comments, string literals and quoted identifiers,
// and the SQL Server stand-in executes what it returns. It is not a
// parser: it knows T-SQL's literal, identifier and comment rules and
// nothing about statements.

// SQLTokenKind is the kind of a T-SQL token.
type SQLTokenKind uint8

const (
	SQLWord        SQLTokenKind = iota // keyword or identifier, including #temp, ##global and $action
	SQLQuotedIdent                     // [name] or "name"; Text is the name, doubled delimiters undone
	SQLString                          // 'text' or N'text'; Text is the value, doubled quotes undone
	SQLNumber                          // 12, 1.5, .5, 1e-3
	SQLHex                             // 0x0A0B; Text is the digits after 0x
	SQLVar                             // @name; Text without the '@'
	SQLSysVar                          // @@name; Text without the '@@'
	SQLOp                              // punctuation and operators (<>, !=, >=, <=, !<, !>, compound assignments, one byte otherwise)
	SQLSemi                            // ;
)

// SQLToken is one token of a T-SQL text.
type SQLToken struct {
	Kind SQLTokenKind
	Text string
	// Pos is the byte offset of the token's first character (of the N of
	// N'...').
	Pos int
	// SpaceBefore reports whitespace or a comment between this token and
	// the previous one.
	SpaceBefore bool
	// NChar marks an N'...' literal.
	NChar bool
}

// SQLLexError reports a literal, quoted identifier or block comment that
// is not closed before the end of the text.
type SQLLexError struct {
	Pos  int  // where the unclosed construct starts
	Open byte // '\'', '[', '"' or '*' (a /* comment)
}

func (e *SQLLexError) Error() string {
	if e.Open == '*' {
		return fmt.Sprintf("missing end comment mark '*/' (comment opened at byte %d)", e.Pos)
	}
	return fmt.Sprintf("unclosed %c at byte %d", e.Open, e.Pos)
}

// sqlOps are the multi-byte operators, longest first where one prefixes
// another.
var sqlOps = []string{"<>", "!=", ">=", "<=", "!<", "!>", "||", "+=", "-=", "*=", "/=", "%=", "&=", "|=", "^="}

// LexSQL splits T-SQL text into tokens, dropping whitespace and comments
// (-- to end of line; /* */, which nest in T-SQL). An unclosed literal,
// quoted identifier or comment runs to the end of the text: its token (if
// any) is still returned, with a *SQLLexError.
func LexSQL(src string) ([]SQLToken, error) {
	var out []SQLToken
	var lexErr error
	space := false
	i := 0
	for i < len(src) {
		c := src[i]
		switch {
		case c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v':
			space = true
			i++
			continue
		case c == '-' && i+1 < len(src) && src[i+1] == '-':
			for i < len(src) && src[i] != '\n' {
				i++
			}
			space = true
			continue
		case c == '/' && i+1 < len(src) && src[i+1] == '*':
			start, depth := i, 0
			for i < len(src) {
				if strings.HasPrefix(src[i:], "/*") {
					depth++
					i += 2
				} else if strings.HasPrefix(src[i:], "*/") {
					depth--
					i += 2
					if depth == 0 {
						break
					}
				} else {
					i++
				}
			}
			if depth != 0 && lexErr == nil {
				lexErr = &SQLLexError{Pos: start, Open: '*'}
			}
			space = true
			continue
		}
		t := SQLToken{Pos: i, SpaceBefore: space}
		space = false
		switch {
		case c == '\'' || ((c == 'N' || c == 'n') && i+1 < len(src) && src[i+1] == '\''):
			if c != '\'' {
				t.NChar = true
				i++
			}
			text, end, ok := scanDelimited(src, i+1, '\'')
			if !ok && lexErr == nil {
				lexErr = &SQLLexError{Pos: t.Pos, Open: '\''}
			}
			t.Kind, t.Text, i = SQLString, text, end
		case c == '[' || c == '"':
			closer := byte(']')
			if c == '"' {
				closer = '"'
			}
			text, end, ok := scanDelimited(src, i+1, closer)
			if !ok && lexErr == nil {
				lexErr = &SQLLexError{Pos: t.Pos, Open: c}
			}
			t.Kind, t.Text, i = SQLQuotedIdent, text, end
		case c == '0' && i+1 < len(src) && (src[i+1] == 'x' || src[i+1] == 'X'):
			j := i + 2
			for j < len(src) && isHexDigit(src[j]) {
				j++
			}
			t.Kind, t.Text, i = SQLHex, src[i+2:j], j
		case isDigit(c) || (c == '.' && i+1 < len(src) && isDigit(src[i+1])):
			j := i
			for j < len(src) && (isDigit(src[j]) || src[j] == '.') {
				j++
			}
			if j < len(src) && (src[j] == 'e' || src[j] == 'E') {
				k := j + 1
				if k < len(src) && (src[k] == '+' || src[k] == '-') {
					k++
				}
				if k < len(src) && isDigit(src[k]) {
					for j = k; j < len(src) && isDigit(src[j]); j++ {
					}
				}
			}
			t.Kind, t.Text, i = SQLNumber, src[i:j], j
		case c == '@':
			j := i + 1
			t.Kind = SQLVar
			if j < len(src) && src[j] == '@' {
				j++
				t.Kind = SQLSysVar
			}
			start := j
			for j < len(src) && isIdentByte(src[j]) {
				j++
			}
			t.Text, i = src[start:j], j
		case isIdentStart(c):
			j := i + 1
			for j < len(src) && isIdentByte(src[j]) {
				j++
			}
			t.Kind, t.Text, i = SQLWord, src[i:j], j
		case c == ';':
			t.Kind, t.Text = SQLSemi, ";"
			i++
		default:
			t.Kind = SQLOp
			for _, op := range sqlOps {
				if strings.HasPrefix(src[i:], op) {
					t.Text = op
					break
				}
			}
			if t.Text == "" {
				t.Text = src[i : i+1]
			}
			i += len(t.Text)
		}
		out = append(out, t)
	}
	return out, lexErr
}

func isDigit(c byte) bool    { return c >= '0' && c <= '9' }
func isHexDigit(c byte) bool { return isDigit(c) || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' }

// isIdentStart: letters, '_', '#' (temp objects), '$' ($action,
// $identity) and any non-ASCII byte (identifiers may be Unicode letters).
func isIdentStart(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || c == '#' || c == '$' || c >= 0x80
}

func isIdentByte(c byte) bool { return isIdentStart(c) || isDigit(c) || c == '@' }

// scanDelimited reads from start up to the closing delimiter q, where a
// doubled q stands for one (T-SQL's rule for 'strings', [identifiers] and
// "identifiers"). end is the index after the closing delimiter; without
// one, ok is false and text runs to the end.
func scanDelimited(src string, start int, q byte) (text string, end int, ok bool) {
	var sb strings.Builder
	for j := start; j < len(src); j++ {
		if src[j] != q {
			sb.WriteByte(src[j])
			continue
		}
		if j+1 < len(src) && src[j+1] == q {
			sb.WriteByte(q)
			j++
			continue
		}
		return sb.String(), j + 1, true
	}
	return sb.String(), len(src), false
}

// The classifier's view of the tokens: it needs only words (keywords,
// names, @variables, numbers), quoted names, strings and single symbols.

type sqlTokKind uint8

const (
	sqlWord   sqlTokKind = iota // keyword, identifier, #temp, @var, @@var, number, 0x...
	sqlQuoted                   // [ident] or "ident" (text without quotes)
	sqlString                   // '...' or N'...' (text without quotes)
	sqlSymbol                   // one punctuation character
)

type sqlTok struct {
	kind sqlTokKind
	text string
}

// lexSQL is LexSQL for the classifier: unclosed literals and comments end
// at the end of the text (the server will reject the batch anyway).
func lexSQL(s string) []sqlTok {
	toks, _ := LexSQL(s)
	out := make([]sqlTok, 0, len(toks))
	for _, t := range toks {
		switch t.Kind {
		case SQLWord, SQLNumber:
			out = append(out, sqlTok{sqlWord, t.Text})
		case SQLVar:
			out = append(out, sqlTok{sqlWord, "@" + t.Text})
		case SQLSysVar:
			out = append(out, sqlTok{sqlWord, "@@" + t.Text})
		case SQLHex:
			out = append(out, sqlTok{sqlWord, "0x" + t.Text})
		case SQLQuotedIdent:
			out = append(out, sqlTok{sqlQuoted, t.Text})
		case SQLString:
			out = append(out, sqlTok{sqlString, t.Text})
		default: // operators become one symbol per byte, ';' included
			for k := 0; k < len(t.Text); k++ {
				out = append(out, sqlTok{sqlSymbol, t.Text[k : k+1]})
			}
		}
	}
	return out
}
