package standin

import (
	"errors"
	"strings"

	"github.com/tdspool/tdspool/tds"
)

// Statement splitting on top of the protocol library's T-SQL lexer
// (tds.LexSQL): the stand-in's view of a batch as statements, which is
// executor logic, not lexing.

// tokKind is tds.SQLTokenKind under the executor's short names.
type tokKind = tds.SQLTokenKind

const (
	tkWord   = tds.SQLWord        // identifier or keyword (also #temp names)
	tkQIdent = tds.SQLQuotedIdent // [x] or "x"; text is the unquoted name
	tkString = tds.SQLString      // '...' or N'...'; text is the unescaped value
	tkNumber = tds.SQLNumber
	tkHex    = tds.SQLHex    // 0x...; text is the hex digits
	tkVar    = tds.SQLVar    // @name; text without '@'
	tkSysVar = tds.SQLSysVar // @@name; text without '@@'
	tkOp     = tds.SQLOp     // punctuation and operators
	tkSemi   = tds.SQLSemi   // ;
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
	proc   string // the procedure it was raised in
}

func (e *sqlError) Error() string { return e.msg }

func errf(number int32, state, class uint8, msg string) *sqlError {
	return &sqlError{number: number, state: state, class: class, msg: msg}
}

func syntaxErr(near string) *sqlError {
	return errf(102, 1, 15, "Incorrect syntax near '"+near+"'.")
}

// lex tokenizes a batch with tds.LexSQL; an unclosed literal or comment
// is SQL Server's compile error for it.
func lex(src string) ([]token, *sqlError) {
	ts, err := tds.LexSQL(src)
	if err != nil {
		var le *tds.SQLLexError
		if errors.As(err, &le) && le.Open == '*' {
			return nil, errf(113, 1, 15, "Missing end comment mark '*/'.")
		}
		rest := ""
		if errors.As(err, &le) && le.Pos+1 <= len(src) {
			rest = src[le.Pos+1:]
			if le.Open == '\'' && le.Pos < len(src) && src[le.Pos] != '\'' {
				rest = src[le.Pos+2:] // N'...
			}
		}
		return nil, errf(105, 1, 15, "Unclosed quotation mark after the character string '"+rest+"'.")
	}
	out := make([]token, len(ts))
	for i, t := range ts {
		out[i] = token{k: t.Kind, text: t.Text, space: t.SpaceBefore, nchar: t.NChar, pos: t.Pos}
		switch t.Kind {
		case tkWord, tkVar, tkSysVar:
			out[i].upper = strings.ToUpper(t.Text)
		}
	}
	return out, nil
}

// statementStarts are keywords that begin a new statement when they appear
// at parenthesis depth 0 (T-SQL does not need semicolons).
var statementStarts = map[string]bool{
	"SELECT": true, "INSERT": true, "UPDATE": true, "DELETE": true, "CREATE": true, "DROP": true,
	"ALTER": true, "SET": true, "USE": true, "BEGIN": true, "COMMIT": true, "ROLLBACK": true,
	"SAVE": true, "WAITFOR": true, "RAISERROR": true, "THROW": true, "PRINT": true, "IF": true,
	"DECLARE": true, "EXEC": true, "EXECUTE": true, "TRUNCATE": true, "WITH": true, "ELSE": true,
	"RETURN": true, "MERGE": true, "END": true, "WHILE": true, "BREAK": true, "CONTINUE": true,
	"OPEN": true, "FETCH": true, "CLOSE": true, "DEALLOCATE": true,
}

// splitStatements cuts a token list into statements: at ';' and before a
// statement keyword at depth 0, except where that keyword continues the
// current statement (INSERT ... SELECT, UPDATE ... SET, UNION SELECT,
// BEGIN TRAN, COMMIT TRAN WORK, WITH ... SELECT).
func splitStatements(toks []token) [][]token {
	var out [][]token
	var cur []token
	depth := 0
	cases := 0 // open CASE expressions: their ELSE and END do not split
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
		if t.k == tkWord && t.upper == "CASE" {
			cases++
		}
		if t.k == tkWord && t.upper == "END" && cases > 0 {
			cases--
			cur = append(cur, t)
			continue
		}
		if t.k == tkWord && depth == 0 && cases == 0 && len(cur) > 0 && statementStarts[t.upper] && !continues(cur, t, toks[i-1]) {
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
		if head == "DECLARE" && p == "FOR" { // DECLARE c CURSOR FOR SELECT
			return true
		}
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
		// DROP TABLE|PROCEDURE|... IF EXISTS
		return p == "TABLE" || p == "VIEW" || p == "INDEX" || p == "PROC" || p == "PROCEDURE" ||
			p == "FUNCTION" || p == "TRIGGER" || p == "SCHEMA" || p == "TYPE"
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
