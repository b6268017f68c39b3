package txpool

import (
	"slices"
	"strconv"
	"strings"

	"github.com/tdspool/tdspool/tds"
)

// Setting is one SET option the client changed, in the form it is re-applied: Name is the
// option as SQL Server spells it (upper case), Value a checked value word or number.
type Setting struct {
	Name  string
	Value string
}

// State is the part of a client's session that moves with it from backend to backend: the
// current database and language (from the server's ENVCHANGEs, which are authoritative) and
// the SET options the client changed since its login, oldest first. A freshly reset backend
// is in the login's State: the login database and language, no settings.
type State struct {
	Database string
	Language string
	// settings holds each option once, at the place of its last change: replaying them in
	// order reproduces the effect of options that overwrite others (ANSI_DEFAULTS, LANGUAGE
	// on DATEFORMAT and DATEFIRST, ANSI_NULL_DFLT_ON against ANSI_NULL_DFLT_OFF).
	settings []Setting
}

// LoginState is the State of a session right after its login (or a reset): the database and
// language the login reply announced, no settings.
func LoginState(database, language string) State {
	return State{Database: database, Language: language}
}

// Settings returns the client's changed options in replay order.
func (s *State) Settings() []Setting { return slices.Clone(s.settings) }

// Clone returns a copy that shares nothing with s.
func (s State) Clone() State {
	s.settings = slices.Clone(s.settings)
	return s
}

// Equal reports whether two states re-apply to the same session.
func (s State) Equal(o State) bool {
	return s.Database == o.Database && s.Language == o.Language && slices.Equal(s.settings, o.settings)
}

// ApplyEnvChange takes the database and language from the server's ENVCHANGE tokens; every
// other type is not session state that moves (packet size is fixed per pooled bucket,
// collation follows the database, transactions are the binding's business).
func (s *State) ApplyEnvChange(e *tds.EnvChange) {
	switch e.Type {
	case tds.EnvDatabase:
		s.Database = e.New
	case tds.EnvLanguage:
		s.Language = e.New
	}
}

// optionKind is how a tracked option's value is checked.
type optionKind uint8

const (
	onOff optionKind = iota
	dateFormat
	dateFirst
	lockTimeout
	nonNegative
	deadlockPriority
	isolationLevel
)

// trackedOptions are the SET options that move with a client: the ones SQL Server keeps per
// session and a reset puts back to the login's values. Anything else a client SETs
// (IDENTITY_INSERT, STATISTICS, SHOWPLAN, FMTONLY, ...) pins the session (SET CONTEXT_INFO
// too, as session context: the classifier does not list it among the options).
var trackedOptions = map[string]optionKind{
	"ANSI_DEFAULTS": onOff, "ANSI_NULLS": onOff, "ANSI_NULL_DFLT_ON": onOff, "ANSI_NULL_DFLT_OFF": onOff,
	"ANSI_PADDING": onOff, "ANSI_WARNINGS": onOff, "ARITHABORT": onOff, "ARITHIGNORE": onOff,
	"CONCAT_NULL_YIELDS_NULL": onOff, "CURSOR_CLOSE_ON_COMMIT": onOff, "NUMERIC_ROUNDABORT": onOff,
	"QUOTED_IDENTIFIER": onOff, "NOCOUNT": onOff, "XACT_ABORT": onOff, "IMPLICIT_TRANSACTIONS": onOff,
	"DATEFORMAT": dateFormat, "DATEFIRST": dateFirst, "LOCK_TIMEOUT": lockTimeout,
	"TEXTSIZE": nonNegative, "ROWCOUNT": nonNegative, "DEADLOCK_PRIORITY": deadlockPriority,
	"TRANSACTION ISOLATION LEVEL": isolationLevel,
}

// supersedes lists, per option, the options whose earlier settings it overwrites.
var supersedes = map[string][]string{
	// SET ANSI_DEFAULTS sets these together.
	"ANSI_DEFAULTS": {"ANSI_NULLS", "ANSI_NULL_DFLT_ON", "ANSI_NULL_DFLT_OFF", "ANSI_PADDING", "ANSI_WARNINGS",
		"CURSOR_CLOSE_ON_COMMIT", "IMPLICIT_TRANSACTIONS", "QUOTED_IDENTIFIER"},
	// The two are exclusive: turning one on turns the other off.
	"ANSI_NULL_DFLT_ON":  {"ANSI_NULL_DFLT_OFF"},
	"ANSI_NULL_DFLT_OFF": {"ANSI_NULL_DFLT_ON"},
	// SET LANGUAGE sets the language's date format and first day of the week.
	"LANGUAGE": {"DATEFORMAT", "DATEFIRST"},
}

// canonicalValue checks a value as the request classifier wrote it (upper-case words) and
// returns it as it is re-applied; false when the value is not one we can repeat safely
// (a variable, an expression, anything unexpected).
func canonicalValue(kind optionKind, v string) (string, bool) {
	switch kind {
	case onOff:
		if v == "ON" || v == "OFF" {
			return v, true
		}
	case dateFormat:
		switch v {
		case "MDY", "DMY", "YMD", "YDM", "MYD", "DYM":
			return strings.ToLower(v), true
		}
	case dateFirst:
		if n, err := strconv.Atoi(v); err == nil && n >= 1 && n <= 7 && len(v) == 1 {
			return v, true
		}
	case lockTimeout:
		if n, err := strconv.ParseInt(v, 10, 32); err == nil && n >= -1 {
			return strconv.FormatInt(n, 10), true
		}
	case nonNegative:
		if n, err := strconv.ParseInt(v, 10, 32); err == nil && n >= 0 {
			return strconv.FormatInt(n, 10), true
		}
	case deadlockPriority:
		switch v {
		case "LOW", "NORMAL", "HIGH":
			return v, true
		}
		if n, err := strconv.Atoi(v); err == nil && n >= -10 && n <= 10 {
			return strconv.Itoa(n), true
		}
	case isolationLevel:
		switch v {
		case "READ UNCOMMITTED", "READ COMMITTED", "REPEATABLE READ", "SNAPSHOT", "SERIALIZABLE":
			return v, true
		}
	}
	return "", false
}

// ApplySet records one SET statement of the client's. It returns false when the option or
// its value is not tracked: the session must then keep its backend (the state would not
// move). SET LANGUAGE is tracked through its effect (the ENVCHANGE carries the name); here it
// only overwrites earlier date settings, as it does on the server.
func (s *State) ApplySet(o tds.SetOption) bool {
	if o.Name == "LANGUAGE" {
		s.drop(supersedes["LANGUAGE"]...)
		return true
	}
	kind, ok := trackedOptions[o.Name]
	if !ok {
		return false
	}
	v, ok := canonicalValue(kind, o.Value)
	if !ok {
		return false
	}
	s.drop(o.Name)
	s.drop(supersedes[o.Name]...)
	s.settings = append(s.settings, Setting{Name: o.Name, Value: v})
	return true
}

func (s *State) drop(names ...string) {
	s.settings = slices.DeleteFunc(s.settings, func(x Setting) bool { return slices.Contains(names, x.Name) })
}

// ApplyRequest records what a client request changes and reports whether all of it was
// tracked. SET statements count only in a SQL batch whose statements all run in order
// (straightLine, see StraightLine): a SET inside a procedure or dynamic SQL (an RPC's
// sp_executesql) ends with it, and one behind IF/WHILE/TRY may not run, so those are
// untracked. USE is left to the ENVCHANGE that follows it.
func (s *State) ApplyRequest(f *tds.RequestFacts, straightLine bool) (tracked bool) {
	if len(f.SetOptions) == 0 {
		return true
	}
	if f.Type != tds.PacketSQLBatch || !straightLine {
		return false
	}
	tracked = true
	for _, o := range f.SetOptions {
		if !s.ApplySet(o) {
			tracked = false
		}
	}
	return tracked
}

// controlWords are the words that make a batch's statements run conditionally, or hold SETs
// that do not run now (procedure, function and trigger bodies).
var controlWords = []string{"IF", "WHILE", "GOTO", "TRY", "CATCH", "RETURN", "BREAK", "CONTINUE",
	"CREATE", "ALTER", "EXEC", "EXECUTE", "WAITFOR"}

// StraightLine reports whether a batch's text has none of the control words, so every SET in
// it runs, in order, in the session's own scope (unless a statement fails, which the binding
// sees as an ERROR in the response). It matches words anywhere, comments and literals
// included: a false "no" only keeps a session on its backend.
func StraightLine(text string) bool {
	up := strings.ToUpper(text)
	for _, w := range controlWords {
		for i := 0; ; {
			j := strings.Index(up[i:], w)
			if j < 0 {
				break
			}
			j += i
			end := j + len(w)
			if (j == 0 || !identByte(up[j-1])) && (end == len(up) || !identByte(up[end])) {
				return false
			}
			i = end
		}
	}
	return true
}

// DefinesModule reports whether a batch is a CREATE [OR ALTER] or ALTER of a procedure,
// function, trigger or view (T-SQL has such a statement begin its batch, and the rest of the
// batch is the body), and whether the module is a temporary procedure (#name).
func DefinesModule(text string) (defines, temp bool) {
	words := strings.Fields(strings.ToUpper(stripLeadingComments(text)))
	i := 0
	switch {
	case len(words) > 2 && words[0] == "CREATE" && words[1] == "OR" && words[2] == "ALTER":
		i = 3
	case len(words) > 0 && (words[0] == "CREATE" || words[0] == "ALTER"):
		i = 1
	default:
		return false, false
	}
	if i >= len(words) {
		return false, false
	}
	switch words[i] {
	case "PROC", "PROCEDURE", "FUNCTION", "TRIGGER", "VIEW":
		return true, i+1 < len(words) && strings.HasPrefix(words[i+1], "#")
	}
	return false, false
}

func stripLeadingComments(s string) string {
	for {
		s = strings.TrimLeft(s, " \t\r\n;")
		switch {
		case strings.HasPrefix(s, "--"):
			nl := strings.IndexByte(s, '\n')
			if nl < 0 {
				return ""
			}
			s = s[nl+1:]
		case strings.HasPrefix(s, "/*"):
			end := strings.Index(s, "*/")
			if end < 0 {
				return ""
			}
			s = s[end+2:]
		default:
			return s
		}
	}
}

func identByte(c byte) bool {
	return c == '_' || c == '@' || c == '#' || c == '$' || c >= '0' && c <= '9' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= 0x80
}

// Reapply returns the T-SQL batch that takes a backend whose session is in state backend to
// the client's state, and whether the backend must be reset first. A backend whose settings
// are a prefix of the client's needs only the rest; any other difference in settings needs a
// reset (what an option was before a client changed it is not known here), after which the
// backend is in the login state but for its isolation level, which a reset keeps: the batch
// then sets the client's level when the backend's may differ, READ COMMITTED included. An
// empty batch means nothing to send.
//
// The batch re-applies, in order: the database (USE), the language, then the settings in the
// order the client last changed them. Names are quoted, so a database or language name
// cannot change what the batch does.
func Reapply(backend, login, client State) (batch string, reset bool) {
	from := backend
	if len(backend.settings) > len(client.settings) || !slices.Equal(backend.settings, client.settings[:len(backend.settings)]) {
		reset, from = true, login
	}
	var b strings.Builder
	if reset && backend.Isolation() != LoginIsolation &&
		!slices.ContainsFunc(client.settings, func(st Setting) bool { return st.Name == isolationOption }) {
		// The reset keeps the backend's level and the client's settings do not set one.
		b.WriteString("SET " + isolationOption + " " + LoginIsolation + ";")
	}
	if client.Database != from.Database {
		b.WriteString("USE " + QuoteName(client.Database) + ";")
	}
	if client.Language != from.Language {
		b.WriteString("SET LANGUAGE " + QuoteName(client.Language) + ";")
	}
	rest := client.settings[len(from.settings):]
	if client.Language != from.Language && len(from.settings) > 0 {
		// The language change overwrote date settings the backend already had.
		rest = client.settings
	}
	for _, st := range rest {
		b.WriteString("SET " + st.Name + " " + st.Value + ";")
	}
	return b.String(), reset
}

// isolationOption is the tracked option a reset does not put back: SQL Server's
// sp_reset_connection (the RESETCONNECTION flag) keeps the session's transaction isolation
// level, by design.
const isolationOption = "TRANSACTION ISOLATION LEVEL"

// LoginIsolation is the isolation level every login starts at.
const LoginIsolation = "READ COMMITTED"

// Isolation returns the transaction isolation level the state's settings leave the session
// at: the last SET TRANSACTION ISOLATION LEVEL, or the login's.
func (s *State) Isolation() string {
	for i := len(s.settings) - 1; i >= 0; i-- {
		if s.settings[i].Name == isolationOption {
			return s.settings[i].Value
		}
	}
	return LoginIsolation
}

// UnknownIsolation stands for a level the proxy could not follow; it equals no level a
// client sets, so the next client's level is always set.
const UnknownIsolation = "?"

// AfterReset is the state a reset leaves a session in whose isolation level was isolation
// ("" the login's, UnknownIsolation when not known): the login's, except that the isolation
// level stays.
func AfterReset(login State, isolation string) State {
	s := login.Clone()
	if isolation != "" && isolation != LoginIsolation {
		s.settings = append(s.settings, Setting{Name: isolationOption, Value: isolation})
	}
	return s
}

// IsolationAfterRequest returns the session's isolation level after a request, from
// current (LoginIsolation, a level, or UnknownIsolation): the last SET TRANSACTION ISOLATION
// LEVEL of a straight-line SQL batch (see StraightLine), UnknownIsolation for one the proxy
// cannot follow (a variable, behind IF, in dynamic SQL or a procedure), or the level a
// transaction-manager BEGIN's isolation byte sets.
func IsolationAfterRequest(current string, f *tds.RequestFacts, straightLine bool) string {
	for _, o := range f.SetOptions {
		if o.Name != isolationOption {
			continue
		}
		v, ok := canonicalValue(isolationLevel, o.Value)
		if !ok || f.Type != tds.PacketSQLBatch || !straightLine {
			return UnknownIsolation
		}
		current = v
	}
	if f.Isolation != tds.IsolationUnchanged {
		current = IsolationName(f.Isolation)
	}
	return current
}

// IsolationName is the level a transaction-manager isolation byte names, as SET spells it
// (UnknownIsolation for a byte outside MS-TDS's 1..5).
func IsolationName(l tds.IsolationLevel) string {
	switch l {
	case tds.IsolationReadUncommitted:
		return "READ UNCOMMITTED"
	case tds.IsolationReadCommitted:
		return LoginIsolation
	case tds.IsolationRepeatableRead:
		return "REPEATABLE READ"
	case tds.IsolationSerializable:
		return "SERIALIZABLE"
	case tds.IsolationSnapshot:
		return "SNAPSHOT"
	}
	return UnknownIsolation
}

// QuoteName quotes an identifier as T-SQL's QUOTENAME does with brackets.
func QuoteName(name string) string {
	return "[" + strings.ReplaceAll(name, "]", "]]") + "]"
}
