package standin

import "testing"

func TestLexDelimitedStringsAndIdentifiers(t *testing.T) {
	tests := []struct {
		src  string
		kind tokKind
		text string
	}{
		{`'it''s'`, tkString, "it's"},
		{`N'é'`, tkString, "é"},
		{`''`, tkString, ""},
		{`[a]]b]`, tkQIdent, "a]b"},
		{`[order details]`, tkQIdent, "order details"},
	}
	for _, tt := range tests {
		toks, err := lex(tt.src)
		if err != nil || len(toks) == 0 {
			t.Fatalf("lex(%q): %v", tt.src, err)
		}
		if toks[0].k != tt.kind || toks[0].text != tt.text {
			t.Errorf("lex(%q) = %v %q, want %v %q", tt.src, toks[0].k, toks[0].text, tt.kind, tt.text)
		}
	}
	for _, bad := range []string{`'open`, `[open`, `'a''`} {
		if _, err := lex(bad); err == nil || err.number != 105 {
			t.Errorf("lex(%q) = %v, want error 105", bad, err)
		}
	}
}
