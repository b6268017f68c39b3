package tds

import (
	"errors"
	"strings"
	"testing"
)

func TestLexSQL(t *testing.T) {
	type tok struct {
		k    SQLTokenKind
		text string
	}
	tests := []struct {
		src  string
		want []tok
		open byte // expected SQLLexError.Open, 0 for none
	}{
		{`SELECT [a]]b], "c""d", N'it''s', 'x' FROM #t`, []tok{{SQLWord, "SELECT"}, {SQLQuotedIdent, "a]b"}, {SQLOp, ","},
			{SQLQuotedIdent, `c"d`}, {SQLOp, ","}, {SQLString, "it's"}, {SQLOp, ","}, {SQLString, "x"}, {SQLWord, "FROM"}, {SQLWord, "#t"}}, 0},
		{`@x<>@@SPID;0x0aFF 1.5e-3 .5`, []tok{{SQLVar, "x"}, {SQLOp, "<>"}, {SQLSysVar, "SPID"}, {SQLSemi, ";"},
			{SQLHex, "0aFF"}, {SQLNumber, "1.5e-3"}, {SQLNumber, ".5"}}, 0},
		{"a -- line\n/* /* nested */ */ b", []tok{{SQLWord, "a"}, {SQLWord, "b"}}, 0},
		{`SET @n += 1`, []tok{{SQLWord, "SET"}, {SQLVar, "n"}, {SQLOp, "+="}, {SQLNumber, "1"}}, 0},
		{`OUTPUT $action, ##g`, []tok{{SQLWord, "OUTPUT"}, {SQLWord, "$action"}, {SQLOp, ","}, {SQLWord, "##g"}}, 0},
		{`'open`, []tok{{SQLString, "open"}}, '\''},
		{`[open`, []tok{{SQLQuotedIdent, "open"}}, '['},
		{`x /* open`, []tok{{SQLWord, "x"}}, '*'},
	}
	for _, tt := range tests {
		toks, err := LexSQL(tt.src)
		var got []tok
		for _, x := range toks {
			got = append(got, tok{x.Kind, x.Text})
		}
		if len(got) != len(tt.want) {
			t.Errorf("LexSQL(%q) = %v, want %v", tt.src, got, tt.want)
			continue
		}
		for i := range got {
			if got[i] != tt.want[i] {
				t.Errorf("LexSQL(%q)[%d] = %v, want %v", tt.src, i, got[i], tt.want[i])
			}
		}
		var le *SQLLexError
		if tt.open == 0 && err != nil || tt.open != 0 && (!errors.As(err, &le) || le.Open != tt.open) {
			t.Errorf("LexSQL(%q) error %v, want open %q", tt.src, err, tt.open)
		}
	}
	toks, _ := LexSQL("a  N'b'")
	if !toks[1].SpaceBefore || !toks[1].NChar || toks[1].Pos != 3 || toks[0].SpaceBefore {
		t.Errorf("positions/flags: %+v", toks)
	}
}

// FuzzLexSQL: never panics; tokens are in order inside the text; a word,
// number, hex or operator token is the text at its position.
func FuzzLexSQL(f *testing.F) {
	for _, s := range []string{"SELECT 1", "N'x''y' [a]]] \"q\"", "/* /* */", "@@v @x 0x 1e+ .", "'", "--"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		toks, _ := LexSQL(s)
		last := -1
		for _, tk := range toks {
			if tk.Pos <= last || tk.Pos >= len(s) {
				t.Fatalf("token %+v out of order or range (last %d, len %d)", tk, last, len(s))
			}
			last = tk.Pos
			switch tk.Kind {
			case SQLWord, SQLNumber, SQLOp, SQLSemi:
				if !strings.HasPrefix(s[tk.Pos:], tk.Text) || tk.Text == "" {
					t.Fatalf("token %+v is not the text at its position", tk)
				}
			}
		}
	})
}
