package txpool

import (
	"testing"

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
