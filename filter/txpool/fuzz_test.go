package txpool

import (
	"strings"
	"testing"

	"github.com/tdspool/tdspool/tds"
)

// FuzzReapplyStaysWithinItsStatements: whatever a client's batches and the server's names
// hold, the prelude is only USE, SET LANGUAGE and SET statements of the tracked options, with
// names quoted so they cannot end a statement.
func FuzzReapplyStaysWithinItsStatements(f *testing.F) {
	f.Add("SET NOCOUNT ON; SET DATEFORMAT ymd", "db]; DROP TABLE t --", "us_english")
	f.Add("SET LOCK_TIMEOUT -1 SET TRANSACTION ISOLATION LEVEL READ COMMITTED", "x", "y")
	f.Add("set ansi_defaults on; set datefirst 7", "", "")
	f.Fuzz(func(t *testing.T, batch, db, lang string) {
		login := LoginState("app", "us_english")
		s := login.Clone()
		facts := tds.RequestFacts{Type: tds.PacketSQLBatch}
		tds.ClassifySQL(batch, &facts)
		s.ApplyRequest(&facts, StraightLine(batch))
		s.ApplyEnvChange(&tds.EnvChange{Type: tds.EnvDatabase, New: db})
		s.ApplyEnvChange(&tds.EnvChange{Type: tds.EnvLanguage, New: lang})
		out, _ := Reapply(login, login, s)
		rest := out
		if db != "app" {
			want := "USE " + QuoteName(db) + ";"
			if !strings.HasPrefix(rest, want) {
				t.Fatalf("prelude %q does not start with %q", out, want)
			}
			rest = rest[len(want):]
		}
		if lang != "us_english" {
			want := "SET LANGUAGE " + QuoteName(lang) + ";"
			if !strings.HasPrefix(rest, want) {
				t.Fatalf("prelude %q lacks %q", out, want)
			}
			rest = rest[len(want):]
		}
		for _, st := range s.Settings() {
			want := "SET " + st.Name + " " + st.Value + ";"
			if _, ok := trackedOptions[st.Name]; !ok || !strings.HasPrefix(rest, want) || strings.ContainsAny(st.Value, ";'[]\"-/*") && st.Value[0] != '-' {
				t.Fatalf("prelude %q: setting %+v not as expected", out, st)
			}
			rest = rest[len(want):]
		}
		if rest != "" {
			t.Fatalf("prelude %q has more: %q", out, rest)
		}
	})
}
