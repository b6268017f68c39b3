package txpool

import (
	"strings"
	"testing"
	"time"

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

// FuzzBindingReleasesOnlyWhenFree drives a Binding with any order of client actions against
// a model server that answers only what was sent to it, in order. Whatever the order, the
// binding lets the backend go only when the model has nothing left to send (so no late DONE
// can reach the backend's next client), no transaction is open on it and no temp table lives
// in it; it refuses only a waiting request and answers an ATTENTION itself only when nothing
// of the client's is on the backend.
func FuzzBindingReleasesOnlyWhenFree(f *testing.F) {
	f.Add([]byte{0, 2, 5, 5, 1, 0, 5, 6, 5})
	f.Add([]byte{3, 2, 5, 0, 5, 6, 5, 4, 5, 5})
	f.Add([]byte{0, 7, 7, 0, 2, 8, 5, 5})
	f.Fuzz(func(t *testing.T, ops []byte) {
		batches := []string{"SELECT 1", "SET NOCOUNT ON", "BEGIN TRAN", "COMMIT", "CREATE TABLE #t (a int)", "SET XACT_ABORT ON"}
		b := NewBinding(LoginState("app", "us_english"))
		now := time.Unix(0, 0)
		type work struct {
			batch   string // "" for the prelude
			attn    bool
			failing bool
		}
		var sent []work // what the backend has been sent and not yet answered
		var held *string
		inTran, tempTable, bound := false, false, false
		for i, op := range ops {
			var a Action
			switch op % 9 {
			case 0, 3, 4: // a client request
				text := batches[(int(op)/9+i)%len(batches)]
				facts := tds.RequestFacts{Type: tds.PacketSQLBatch}
				tds.ClassifySQL(text, &facts)
				a = b.Request(now, &facts, text, time.Second)
				switch a {
				case Borrow, Hold:
					if held == nil {
						held = &text
					}
				case Forward:
					sent = append(sent, work{batch: text})
				default:
					t.Fatalf("op %d: request → %s", i, a)
				}
			case 1: // ATTENTION
				a = b.Attention()
				switch a {
				case Forward:
					sent = append(sent, work{attn: true})
				case AnswerAttention:
					held = nil
					for _, w := range sent {
						if w.batch != "" || w.attn {
							t.Fatalf("op %d: ATTENTION answered by the proxy with the client's work on the backend", i)
						}
					}
				default:
					t.Fatalf("op %d: attention → %s", i, a)
				}
			case 2: // the pool lends a backend
				var prelude string
				prelude, _, a = b.Borrowed(b.login)
				if prelude != "" {
					sent = append(sent, work{failing: op >= 128})
				}
				if b.Phase() == Bound {
					bound = true
				}
			case 5, 6: // the backend answers the oldest thing it was sent
				if len(sent) == 0 || !bound {
					continue
				}
				w := sent[0]
				sent = sent[1:]
				if w.attn {
					sent = nil // an ATTENTION ends everything sent before it
					b.ServerEvent(&tds.Event{Token: tds.TokenDone, Done: tds.Done{Token: tds.TokenDone, Status: tds.DoneAttn}})
				}
				switch w.batch {
				case "BEGIN TRAN":
					inTran = true
					b.ServerEvent(&tds.Event{Token: tds.TokenEnvChange, EnvChange: tds.EnvChange{Type: tds.EnvBeginTran}})
				case "COMMIT":
					if inTran {
						inTran = false
						b.ServerEvent(&tds.Event{Token: tds.TokenEnvChange, EnvChange: tds.EnvChange{Type: tds.EnvCommitTran}})
					} else {
						b.ServerEvent(&tds.Event{Token: tds.TokenError})
					}
				case "CREATE TABLE #t (a int)":
					tempTable = true
				}
				if w.failing {
					b.ServerEvent(&tds.Event{Token: tds.TokenError})
				}
				a = b.ServerEvent(&tds.Event{Token: tds.TokenEndOfMessage})
				if a == ForwardHeld {
					sent = append(sent, work{batch: *held})
					held = nil
				}
			case 7: // time passes
				now = now.Add(600 * time.Millisecond)
				phase := b.Phase()
				a = b.Tick(now)
				if a == Refuse {
					if phase != Borrowing {
						t.Fatalf("op %d: refused in phase %s", i, phase)
					}
					held = nil
				}
			case 8:
				continue
			}
			switch a {
			case ForwardHeld:
				if held != nil && op%9 == 2 {
					sent = append(sent, work{batch: *held})
					held = nil
				}
			case Release:
				if len(sent) > 0 || inTran || tempTable {
					t.Fatalf("op %d: released with %d unanswered, in transaction %v, temp table %v", i, len(sent), inTran, tempTable)
				}
				bound = false
			case Fail:
				sent, held, bound, inTran, tempTable = nil, nil, false, false, false // backend discarded
			}
		}
	})
}
