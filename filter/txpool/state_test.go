package txpool

import (
	"testing"
	"time"

	"github.com/tdspool/tdspool/tds"
)

// classified runs the real request classifier over a batch, as the filter does.
func classified(t *testing.T, text string) *tds.RequestFacts {
	t.Helper()
	f := tds.RequestFacts{Type: tds.PacketSQLBatch}
	tds.ClassifySQL(text, &f)
	return &f
}

func TestStateReapply(t *testing.T) {
	login := LoginState("app", "us_english")
	for _, tc := range []struct {
		name    string
		batches []string
		env     []tds.EnvChange
		want    string
		tracked bool
	}{
		{name: "nothing changed", batches: []string{"SELECT 1"}, want: "", tracked: true},
		{name: "one option", batches: []string{"SET NOCOUNT ON"}, want: "SET NOCOUNT ON;", tracked: true},
		{name: "last value wins, at its place", batches: []string{"SET XACT_ABORT ON", "SET NOCOUNT ON", "set xact_abort off"},
			want: "SET NOCOUNT ON;SET XACT_ABORT OFF;", tracked: true},
		{name: "several names one value", batches: []string{"SET ANSI_NULLS, QUOTED_IDENTIFIER OFF"},
			want: "SET ANSI_NULLS OFF;SET QUOTED_IDENTIFIER OFF;", tracked: true},
		{name: "isolation level", batches: []string{"SET TRANSACTION ISOLATION LEVEL SERIALIZABLE; SELECT 1"},
			want: "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE;", tracked: true},
		{name: "numbers", batches: []string{"SET LOCK_TIMEOUT -1; SET TEXTSIZE 2048; SET DATEFIRST 1; SET DEADLOCK_PRIORITY -5"},
			want: "SET LOCK_TIMEOUT -1;SET TEXTSIZE 2048;SET DATEFIRST 1;SET DEADLOCK_PRIORITY -5;", tracked: true},
		{name: "date format lower-cased", batches: []string{"SET DATEFORMAT dmy"}, want: "SET DATEFORMAT dmy;", tracked: true},
		{name: "ansi defaults overwrite members set before", batches: []string{"SET ANSI_NULLS OFF; SET NOCOUNT ON", "SET ANSI_DEFAULTS ON"},
			want: "SET NOCOUNT ON;SET ANSI_DEFAULTS ON;", tracked: true},
		{name: "members after ansi defaults stay", batches: []string{"SET ANSI_DEFAULTS ON", "SET IMPLICIT_TRANSACTIONS OFF"},
			want: "SET ANSI_DEFAULTS ON;SET IMPLICIT_TRANSACTIONS OFF;", tracked: true},
		{name: "null default pair exclusive", batches: []string{"SET ANSI_NULL_DFLT_ON ON", "SET ANSI_NULL_DFLT_OFF ON"},
			want: "SET ANSI_NULL_DFLT_OFF ON;", tracked: true},
		{name: "language overwrites dates set before it", batches: []string{"SET DATEFORMAT ymd; SET LANGUAGE us_english; SET DATEFIRST 3"},
			env:  []tds.EnvChange{{Type: tds.EnvLanguage, New: "Deutsch", Old: "us_english"}},
			want: "SET LANGUAGE [Deutsch];SET DATEFIRST 3;", tracked: true},
		{name: "database from envchange, quoted", env: []tds.EnvChange{{Type: tds.EnvDatabase, New: "we]ird", Old: "app"}},
			want: "USE [we]]ird];", tracked: true},
		{name: "back to the login database", env: []tds.EnvChange{{Type: tds.EnvDatabase, New: "other"}, {Type: tds.EnvDatabase, New: "app"}},
			want: "", tracked: true},
		{name: "variable value untracked", batches: []string{"SET DATEFIRST @d"}, want: "", tracked: false},
		{name: "out of range untracked", batches: []string{"SET DATEFIRST 9"}, want: "", tracked: false},
		{name: "statistics untracked", batches: []string{"SET STATISTICS IO ON"}, want: "", tracked: false},
		// Session context is no option to re-apply: the binding pins it (PinSessionContext).
		{name: "context info is not an option", batches: []string{"SET CONTEXT_INFO 0x01"}, want: "", tracked: true},
		{name: "identity insert untracked", batches: []string{"SET IDENTITY_INSERT dbo.t ON"}, want: "", tracked: false},
		{name: "conditional untracked", batches: []string{"IF 1=1 SET NOCOUNT ON"}, want: "", tracked: false},
		{name: "procedure body untracked", batches: []string{"CREATE PROCEDURE p AS SET NOCOUNT ON"}, want: "", tracked: false},
		{name: "variable assignment is not an option", batches: []string{"DECLARE @x int; SET @x = 1"}, want: "", tracked: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := login.Clone()
			tracked := true
			for _, b := range tc.batches {
				if !st.ApplyRequest(classified(t, b), StraightLine(b)) {
					tracked = false
				}
			}
			for i := range tc.env {
				st.ApplyEnvChange(&tc.env[i])
			}
			if tracked != tc.tracked {
				t.Errorf("tracked = %v, want %v", tracked, tc.tracked)
			}
			got, reset := Reapply(login, login, st)
			if got != tc.want || reset {
				t.Errorf("Reapply from the login state = %q reset=%v, want %q reset=false", got, reset, tc.want)
			}
			if again, reset := Reapply(st, login, st); again != "" || reset {
				t.Errorf("Reapply onto the same state = %q reset=%v, want nothing", again, reset)
			}
		})
	}
}

func TestReapplyFromAnotherBackendState(t *testing.T) {
	login := LoginState("app", "us_english")
	state := func(db string, batches ...string) State {
		s := login.Clone()
		s.Database = db
		for _, b := range batches {
			s.ApplyRequest(classified(t, b), true)
		}
		return s
	}
	for _, tc := range []struct {
		name            string
		backend, client State
		want            string
		reset           bool
	}{
		{"prefix: only the rest", state("app", "SET NOCOUNT ON"), state("app", "SET NOCOUNT ON", "SET XACT_ABORT ON"),
			"SET XACT_ABORT ON;", false},
		{"database only", state("other"), state("app"), "USE [app];", false},
		{"backend has more: reset", state("app", "SET NOCOUNT ON", "SET ARITHABORT OFF"), state("app", "SET NOCOUNT ON"),
			"SET NOCOUNT ON;", true},
		{"different value: reset", state("other", "SET NOCOUNT OFF"), state("app", "SET NOCOUNT ON"),
			"SET NOCOUNT ON;", true},
		{"reset back to the login database", state("other", "SET NOCOUNT OFF"), state("other"), "USE [other];", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, reset := Reapply(tc.backend, login, tc.client)
			if got != tc.want || reset != tc.reset {
				t.Errorf("Reapply = %q reset=%v, want %q reset=%v", got, reset, tc.want, tc.reset)
			}
		})
	}
}

func TestStraightLine(t *testing.T) {
	for text, want := range map[string]bool{
		"SET NOCOUNT ON; SELECT 1":        true,
		"SELECT diff FROM t":              true, // IF inside a word
		"SELECT @if_x":                    true,
		"if @a = 1 SET NOCOUNT ON":        false,
		"BEGIN TRY SET X ON END TRY":      false,
		"EXEC('SET NOCOUNT ON')":          false,
		"SELECT 1 -- IF only in comments": false, // conservative
		"WHILE 1=0 BREAK":                 false,
		"":                                true,
	} {
		if got := StraightLine(text); got != want {
			t.Errorf("StraightLine(%q) = %v, want %v", text, got, want)
		}
	}
}

func TestDefinesModule(t *testing.T) {
	for _, tc := range []struct {
		text          string
		defines, temp bool
	}{
		{"CREATE PROCEDURE p AS SET NOCOUNT ON", true, false},
		{"  -- a comment\n/* another */ create or alter proc dbo.p as select 1", true, false},
		{"ALTER FUNCTION f() RETURNS int AS BEGIN RETURN 1 END", true, false},
		{"CREATE TRIGGER tr ON t AFTER INSERT AS SET NOCOUNT ON", true, false},
		{"CREATE VIEW v AS SELECT 1 AS a", true, false},
		{"CREATE PROC #p AS SELECT 1", true, true},
		{"CREATE TABLE t (a int)", false, false},
		{"SELECT 1; CREATE PROCEDURE p AS SELECT 1", false, false},
		{"", false, false},
	} {
		if d, tmp := DefinesModule(tc.text); d != tc.defines || tmp != tc.temp {
			t.Errorf("DefinesModule(%q) = %v, %v; want %v, %v", tc.text, d, tmp, tc.defines, tc.temp)
		}
	}
}

// A reset keeps a session's isolation level (SQL Server's sp_reset_connection does not
// restore it): the prelude on a reused backend sets the client's level whenever the
// backend's may differ, READ COMMITTED included, and the backend's level as a binding
// last saw it says when that is.
func TestReapplyAfterResetKeepsIsolation(t *testing.T) {
	login := LoginState("app", "us_english")
	client := func(batches ...string) State {
		s := login.Clone()
		for _, b := range batches {
			s.ApplyRequest(classified(t, b), true)
		}
		return s
	}
	for _, tc := range []struct {
		name             string
		backendIsolation string // as the last binding left it
		client           State
		want             string
	}{
		{"serializable backend, client at the login's", "SERIALIZABLE", client(),
			"SET TRANSACTION ISOLATION LEVEL READ COMMITTED;"},
		{"read uncommitted backend, client sets other options", "READ UNCOMMITTED", client("SET NOCOUNT ON"),
			"SET TRANSACTION ISOLATION LEVEL READ COMMITTED;SET NOCOUNT ON;"},
		{"unknown backend level, client at the login's", UnknownIsolation, client(),
			"SET TRANSACTION ISOLATION LEVEL READ COMMITTED;"},
		{"unknown backend level, client serializable", UnknownIsolation, client("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE"),
			"SET TRANSACTION ISOLATION LEVEL SERIALIZABLE;"},
		{"backend at another level than the client's", "SERIALIZABLE", client("SET TRANSACTION ISOLATION LEVEL SNAPSHOT"),
			"SET TRANSACTION ISOLATION LEVEL SNAPSHOT;"},
		{"client set read committed back explicitly", "REPEATABLE READ",
			client("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", "SET TRANSACTION ISOLATION LEVEL READ COMMITTED"),
			"SET TRANSACTION ISOLATION LEVEL READ COMMITTED;"},
		{"same level: nothing to send", "SERIALIZABLE", client("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE"), ""},
		{"same level, then the rest", "SERIALIZABLE", client("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", "SET NOCOUNT ON"),
			"SET NOCOUNT ON;"},
		{"read committed backend, client at the login's", "READ COMMITTED", client(), ""},
		{"fresh backend (the login's level)", "", client(), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			backend := AfterReset(login, tc.backendIsolation)
			got, _ := Reapply(backend, login, tc.client)
			if got != tc.want {
				t.Errorf("Reapply = %q, want %q", got, tc.want)
			}
		})
	}
}

// What a binding reports as its backend's isolation level for the next borrower.
func TestBindingBackendIsolation(t *testing.T) {
	login := LoginState("app", "us_english")
	batch := func(text string) *tds.RequestFacts { return classified(t, text) }
	for _, tc := range []struct {
		name string
		reqs []*tds.RequestFacts
		text []string
		want string
	}{
		{"untouched", nil, nil, "READ COMMITTED"},
		{"a SET it follows", []*tds.RequestFacts{batch("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE")},
			[]string{"SET TRANSACTION ISOLATION LEVEL SERIALIZABLE"}, "SERIALIZABLE"},
		{"a SET behind IF is not known", []*tds.RequestFacts{batch("IF 1 = 1 SET TRANSACTION ISOLATION LEVEL SERIALIZABLE")},
			[]string{"IF 1 = 1 SET TRANSACTION ISOLATION LEVEL SERIALIZABLE"}, UnknownIsolation},
		{"a TM begin's level", []*tds.RequestFacts{{Type: tds.PacketTransMgr, BeginTran: true, Isolation: tds.IsolationSerializable}},
			[]string{""}, "SERIALIZABLE"},
		{"a TM begin that keeps the level", []*tds.RequestFacts{batch("SET TRANSACTION ISOLATION LEVEL SNAPSHOT"),
			{Type: tds.PacketTransMgr, BeginTran: true}}, []string{"SET TRANSACTION ISOLATION LEVEL SNAPSHOT", ""}, "SNAPSHOT"},
		{"a TM begin's level byte out of range", []*tds.RequestFacts{{Type: tds.PacketTransMgr, BeginTran: true, Isolation: 9}},
			[]string{""}, UnknownIsolation},
		{"the client's own reset keeps the level",
			[]*tds.RequestFacts{batch("SET TRANSACTION ISOLATION LEVEL SNAPSHOT"), {Type: tds.PacketSQLBatch, ResetConnection: true}},
			[]string{"SET TRANSACTION ISOLATION LEVEL SNAPSHOT", "SELECT 1"}, "SNAPSHOT"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := NewBinding(login)
			now := time.Unix(0, 0)
			for i, f := range tc.reqs {
				a := b.Request(now, f, tc.text[i], time.Second)
				if a == Borrow {
					b.Borrowed(login)
					if b.ConsumingPrelude() {
						b.ServerEvent(&tds.Event{Token: tds.TokenEndOfMessage})
					}
				}
				b.ServerEvent(&tds.Event{Token: tds.TokenEndOfMessage})
			}
			if got := b.BackendIsolation(); got != tc.want {
				t.Errorf("BackendIsolation = %q, want %q (client %q)", got, tc.want, b.Client.Isolation())
			}
		})
	}
}

// The level a session-pooled client leaves its session at, followed request by request.
func TestIsolationAfterRequest(t *testing.T) {
	for _, tc := range []struct {
		name, current, batch string
		straight             bool
		facts                *tds.RequestFacts // instead of batch
		want                 string
	}{
		{"plain query keeps it", "SERIALIZABLE", "SELECT 1", true, nil, "SERIALIZABLE"},
		{"SET", LoginIsolation, "SET TRANSACTION ISOLATION LEVEL SNAPSHOT", true, nil, "SNAPSHOT"},
		{"the last SET wins", LoginIsolation, "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE; SET TRANSACTION ISOLATION LEVEL READ COMMITTED", true, nil, LoginIsolation},
		{"behind IF: unknown", LoginIsolation, "IF 1 = 1 SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", false, nil, UnknownIsolation},
		{"a known SET after an unknown one", UnknownIsolation, "SET TRANSACTION ISOLATION LEVEL READ COMMITTED", true, nil, LoginIsolation},
		{"TM begin", LoginIsolation, "", true, &tds.RequestFacts{Type: tds.PacketTransMgr, BeginTran: true, Isolation: tds.IsolationReadUncommitted}, "READ UNCOMMITTED"},
		{"TM begin without a level", "SERIALIZABLE", "", true, &tds.RequestFacts{Type: tds.PacketTransMgr, BeginTran: true}, "SERIALIZABLE"},
		{"SET in an RPC: unknown", LoginIsolation, "", true, &tds.RequestFacts{Type: tds.PacketRPC,
			SetOptions: []tds.SetOption{{Name: "TRANSACTION ISOLATION LEVEL", Value: "SERIALIZABLE"}}}, UnknownIsolation},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := tc.facts
			if f == nil {
				f = classified(t, tc.batch)
			}
			if got := IsolationAfterRequest(tc.current, f, tc.straight); got != tc.want {
				t.Errorf("IsolationAfterRequest = %q, want %q", got, tc.want)
			}
		})
	}
}
