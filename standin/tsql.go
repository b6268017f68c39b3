package standin

import (
	"strings"
	"unicode"
)

// A small T-SQL lexer and statement splitter. It knows only what the
// backend needs to route statements (session commands vs SQLite) and to
// rewrite T-SQL spellings SQLite does not accept; everything else is
// passed through token by token.

type tokKind uint8

const (
	tkWord   tokKind = iota // identifier or keyword (also #temp names)
	tkQIdent                // [x] or "x"; text is the unquoted name
	tkString                // '...' or N'...'; text is the unescaped value
	tkNumber
	tkHex    // 0x...; text is the hex digits
	tkVar    // @name; text without '@'
	tkSysVar // @@name; text without '@@'
	tkOp     // punctuation and operators
	tkSemi   // ;
)

type token struct {
	k     tokKind
	text  string
	upper string // upper-cased text for words
	space bool   // whitespace or a comment preceded it
	nchar bool   // N'...'
	pos   int    // byte offset in the batch
}

// sqlError is a SQL Server error raised by the engine.
type sqlError struct {
	number int32
	state  uint8
	class  uint8
	msg    string
}

func (e *sqlError) Error() string { return e.msg }

func errf(number int32, state, class uint8, msg string) *sqlError {
	return &sqlError{number: number, state: state, class: class, msg: msg}
}

func syntaxErr(near string) *sqlError {
	return errf(102, 1, 15, "Incorrect syntax near '"+near+"'.")
}

func lex(src string) ([]token, *sqlError) {
	var out []token
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
			depth := 0 // T-SQL block comments nest
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
			if depth != 0 {
				return nil, errf(113, 1, 15, "Missing end comment mark '*/'.")
			}
			space = true
			continue
		}
		t := token{space: space, pos: i}
		space = false
		switch {
		case c == '\'' || ((c == 'N' || c == 'n') && i+1 < len(src) && src[i+1] == '\''):
			if c != '\'' {
				t.nchar = true
				i++
			}
			text, end, ok := scanDelimited(src, i+1, '\'')
			if !ok {
				return nil, errf(105, 1, 15, "Unclosed quotation mark after the character string '"+src[i+1:]+"'.")
			}
			t.k, t.text = tkString, text
			i = end
		case c == '[':
			text, end, ok := scanDelimited(src, i+1, ']')
			if !ok {
				return nil, errf(105, 1, 15, "Unclosed quotation mark after the character string '"+src[i+1:]+"'.")
			}
			t.k, t.text = tkQIdent, text
			i = end
		case c == '"':
			j := strings.IndexByte(src[i+1:], '"')
			if j < 0 {
				return nil, errf(105, 1, 15, "Unclosed quotation mark after the character string '"+src[i+1:]+"'.")
			}
			t.k, t.text = tkQIdent, src[i+1:i+1+j]
			i += j + 2
		case c == '0' && i+1 < len(src) && (src[i+1] == 'x' || src[i+1] == 'X'):
			j := i + 2
			for j < len(src) && isHex(src[j]) {
				j++
			}
			t.k, t.text = tkHex, src[i+2:j]
			i = j
		case c >= '0' && c <= '9' || (c == '.' && i+1 < len(src) && src[i+1] >= '0' && src[i+1] <= '9'):
			j := i
			for j < len(src) && (src[j] >= '0' && src[j] <= '9' || src[j] == '.') {
				j++
			}
			if j < len(src) && (src[j] == 'e' || src[j] == 'E') {
				k := j + 1
				if k < len(src) && (src[k] == '+' || src[k] == '-') {
					k++
				}
				if k < len(src) && src[k] >= '0' && src[k] <= '9' {
					j = k
					for j < len(src) && src[j] >= '0' && src[j] <= '9' {
						j++
					}
				}
			}
			t.k, t.text = tkNumber, src[i:j]
			i = j
		case c == '@':
			j := i + 1
			k := tkVar
			if j < len(src) && src[j] == '@' {
				j++
				k = tkSysVar
			}
			start := j
			for j < len(src) && isIdent(rune(src[j])) {
				j++
			}
			t.k, t.text, t.upper = k, src[start:j], strings.ToUpper(src[start:j])
			i = j
		case c == '#' || c == '_' || c >= 0x80 || unicode.IsLetter(rune(c)):
			j := i + 1
			for j < len(src) && (isIdent(rune(src[j])) || src[j] == '#' || src[j] >= 0x80) {
				j++
			}
			t.k, t.text = tkWord, src[i:j]
			t.upper = strings.ToUpper(t.text)
			i = j
		case c == ';':
			t.k, t.text = tkSemi, ";"
			i++
		default:
			t.k = tkOp
			for _, op := range []string{"<>", "!=", ">=", "<=", "!<", "!>", "||", "+=", "-=", "*=", "/="} {
				if strings.HasPrefix(src[i:], op) {
					t.text = op
					break
				}
			}
			if t.text == "" {
				t.text = src[i : i+1]
			}
			i += len(t.text)
		}
		out = append(out, t)
	}
	return out, nil
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func isIdent(r rune) bool {
	return r == '_' || r == '$' || unicode.IsLetter(r) || unicode.IsDigit(r)
}

// statementStarts are keywords that begin a new statement when they appear
// at parenthesis depth 0 (T-SQL does not need semicolons).
var statementStarts = map[string]bool{
	"SELECT": true, "INSERT": true, "UPDATE": true, "DELETE": true, "CREATE": true, "DROP": true,
	"ALTER": true, "SET": true, "USE": true, "BEGIN": true, "COMMIT": true, "ROLLBACK": true,
	"SAVE": true, "WAITFOR": true, "RAISERROR": true, "THROW": true, "PRINT": true, "IF": true,
	"DECLARE": true, "EXEC": true, "EXECUTE": true, "TRUNCATE": true, "WITH": true, "ELSE": true,
	"RETURN": true, "MERGE": true,
}

// splitStatements cuts a token list into statements: at ';' and before a
// statement keyword at depth 0, except where that keyword continues the
// current statement (INSERT ... SELECT, UPDATE ... SET, UNION SELECT,
// BEGIN TRAN, COMMIT TRAN WORK, WITH ... SELECT).
func splitStatements(toks []token) [][]token {
	var out [][]token
	var cur []token
	depth := 0
	flush := func() {
		if len(cur) > 0 {
			out = append(out, cur)
		}
		cur = nil
	}
	for i, t := range toks {
		if t.k == tkSemi && depth == 0 {
			flush()
			continue
		}
		if t.k == tkOp && t.text == "(" {
			depth++
		} else if t.k == tkOp && t.text == ")" && depth > 0 {
			depth--
		}
		if t.k == tkWord && depth == 0 && len(cur) > 0 && statementStarts[t.upper] && !continues(cur, t, toks[i-1]) {
			flush()
		}
		cur = append(cur, t)
	}
	flush()
	return out
}

func continues(cur []token, t token, prev token) bool {
	head := cur[0].upper
	p := prev.upper
	switch t.upper {
	case "SELECT":
		if p == "UNION" || p == "ALL" || p == "EXCEPT" || p == "INTERSECT" || prev.text == "(" {
			return true
		}
		if head == "INSERT" && !hasWord(cur, "VALUES") && !hasWord(cur, "SELECT") {
			return true
		}
		if head == "WITH" && !hasWord(cur, "SELECT") {
			return true
		}
		if head == "IF" || head == "ELSE" {
			return len(cur) == 1 || (head == "IF" && p == "EXISTS")
		}
	case "SET":
		if head == "UPDATE" && !hasWord(cur, "SET") {
			return true
		}
		if head == "IF" || head == "ELSE" {
			return len(cur) == 1
		}
	case "INSERT", "UPDATE", "DELETE":
		if head == "WITH" && !hasAnyDML(cur) {
			return true
		}
	case "WITH":
		// table hints "WITH (NOLOCK)" and "WITH TIES" continue.
		return true
	case "ELSE":
		return false
	case "IF":
		return p == "TABLE" || p == "VIEW" || p == "INDEX" // DROP TABLE IF EXISTS
	}
	if head == "BEGIN" || head == "COMMIT" || head == "ROLLBACK" || head == "SAVE" {
		// BEGIN TRAN/TRANSACTION/DISTRIBUTED, COMMIT WORK: the statement is
		// at most keyword + TRAN + name; a statement keyword ends it.
		return false
	}
	return false
}

func hasWord(ts []token, w string) bool {
	for _, t := range ts {
		if t.k == tkWord && t.upper == w {
			return true
		}
	}
	return false
}

func hasAnyDML(ts []token) bool {
	return hasWord(ts, "SELECT") || hasWord(ts, "INSERT") || hasWord(ts, "UPDATE") || hasWord(ts, "DELETE")
}

// text re-joins tokens for messages.
func joinTokens(ts []token) string {
	var sb strings.Builder
	for i, t := range ts {
		if i > 0 && t.space {
			sb.WriteByte(' ')
		}
		switch t.k {
		case tkString:
			if t.nchar {
				sb.WriteByte('N')
			}
			sb.WriteString("'" + strings.ReplaceAll(t.text, "'", "''") + "'")
		case tkQIdent:
			sb.WriteString("[" + t.text + "]")
		case tkHex:
			sb.WriteString("0x" + t.text)
		case tkVar:
			sb.WriteString("@" + t.text)
		case tkSysVar:
			sb.WriteString("@@" + t.text)
		default:
			sb.WriteString(t.text)
		}
	}
	return sb.String()
}

// name returns the identifier text of a word or quoted identifier.
func (t token) name() (string, bool) {
	if t.k == tkWord || t.k == tkQIdent {
		return t.text, true
	}
	return "", false
}

// scanDelimited reads from start up to the closing delimiter q, where a doubled q stands for
// one (T-SQL's rule for both 'strings' and [identifiers]). end is the index after the closing
// delimiter; ok is false when there is none.
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
	return "", len(src), false
}
