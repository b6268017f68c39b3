package tds

// A tiny T-SQL lexer: just enough to find keywords outside comments,
// string literals and quoted identifiers. It is not a parser.

type sqlTokKind uint8

const (
	sqlWord   sqlTokKind = iota // keyword, identifier, #temp, @var, number
	sqlQuoted                   // [ident] or "ident" (text without quotes)
	sqlString                   // '...' or N'...' (text without quotes)
	sqlSymbol                   // one punctuation character
)

type sqlTok struct {
	kind sqlTokKind
	text string
}

// lexSQL splits T-SQL into tokens, dropping comments (-- line and nested
// /* */) and whitespace. Unterminated strings/comments end at the end of
// the text (the server will reject the batch anyway).
func lexSQL(s string) []sqlTok {
	var toks []sqlTok
	i := 0
	for i < len(s) {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v':
			i++
		case c == '-' && i+1 < len(s) && s[i+1] == '-':
			for i < len(s) && s[i] != '\n' {
				i++
			}
		case c == '/' && i+1 < len(s) && s[i+1] == '*':
			depth := 0
			for i < len(s) {
				if s[i] == '/' && i+1 < len(s) && s[i+1] == '*' {
					depth++
					i += 2
				} else if s[i] == '*' && i+1 < len(s) && s[i+1] == '/' {
					depth--
					i += 2
					if depth == 0 {
						break
					}
				} else {
					i++
				}
			}
		case c == '\'' || ((c == 'N' || c == 'n') && i+1 < len(s) && s[i+1] == '\''):
			if c != '\'' {
				i++
			}
			text, n := scanDelimited(s[i:], '\'', '\'')
			toks = append(toks, sqlTok{sqlString, text})
			i += n
		case c == '[':
			text, n := scanDelimited(s[i:], '[', ']')
			toks = append(toks, sqlTok{sqlQuoted, text})
			i += n
		case c == '"':
			text, n := scanDelimited(s[i:], '"', '"')
			toks = append(toks, sqlTok{sqlQuoted, text})
			i += n
		case isWordByte(c) || c >= 0x80:
			j := i + 1
			for j < len(s) && (isWordByte(s[j]) || s[j] >= 0x80) {
				j++
			}
			toks = append(toks, sqlTok{sqlWord, s[i:j]})
			i = j
		default:
			toks = append(toks, sqlTok{sqlSymbol, s[i : i+1]})
			i++
		}
	}
	return toks
}

func isWordByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '@' || c == '#' || c == '$'
}

// scanDelimited reads a literal starting at s[0]==open up to the matching
// close, where a doubled close is an escaped close character.
func scanDelimited(s string, open, close byte) (string, int) {
	var buf []byte
	i := 1
	for i < len(s) {
		if s[i] == close {
			if i+1 < len(s) && s[i+1] == close {
				buf = append(buf, close)
				i += 2
				continue
			}
			return string(buf), i + 1
		}
		buf = append(buf, s[i])
		i++
	}
	return string(buf), i
}
