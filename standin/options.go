package standin

import (
	"strconv"
	"strings"

	"github.com/tdspool/tdspool/tds"
)

// Session options: what SET changes, per session, starting from what the
// LOGIN7 asked for and put back by RESETCONNECTION.

// Bits of @@OPTIONS, as SQL Server documents them for the 'user options'
// server setting.
const (
	optDisableDefCnstChk    uint32 = 1
	optImplicitTransactions uint32 = 2
	optCursorCloseOnCommit  uint32 = 4
	optAnsiWarnings         uint32 = 8
	optAnsiPadding          uint32 = 16
	optAnsiNulls            uint32 = 32
	optArithAbort           uint32 = 64
	optArithIgnore          uint32 = 128
	optQuotedIdentifier     uint32 = 256
	optNoCount              uint32 = 512
	optAnsiNullDfltOn       uint32 = 1024
	optAnsiNullDfltOff      uint32 = 2048
	optConcatNullYieldsNull uint32 = 4096
	optNumericRoundAbort    uint32 = 8192
	optXactAbort            uint32 = 16384
)

var optionBits = map[string]uint32{
	"DISABLE_DEF_CNST_CHK": optDisableDefCnstChk, "IMPLICIT_TRANSACTIONS": optImplicitTransactions,
	"CURSOR_CLOSE_ON_COMMIT": optCursorCloseOnCommit, "ANSI_WARNINGS": optAnsiWarnings,
	"ANSI_PADDING": optAnsiPadding, "ANSI_NULLS": optAnsiNulls, "ARITHABORT": optArithAbort,
	"ARITHIGNORE": optArithIgnore, "QUOTED_IDENTIFIER": optQuotedIdentifier, "NOCOUNT": optNoCount,
	"ANSI_NULL_DFLT_ON": optAnsiNullDfltOn, "ANSI_NULL_DFLT_OFF": optAnsiNullDfltOff,
	"CONCAT_NULL_YIELDS_NULL": optConcatNullYieldsNull, "NUMERIC_ROUNDABORT": optNumericRoundAbort,
	"XACT_ABORT": optXactAbort,
}

// SET ANSI_DEFAULTS ON turns these on (and OFF turns them off).
const ansiDefaults = optAnsiNulls | optAnsiNullDfltOn | optAnsiPadding | optAnsiWarnings |
	optCursorCloseOnCommit | optImplicitTransactions | optQuotedIdentifier

// Transaction isolation levels, numbered as sys.dm_exec_sessions'
// transaction_isolation_level and TM_BEGIN_XACT's isolation byte.
const (
	isoReadUncommitted = 1
	isoReadCommitted   = 2
	isoRepeatableRead  = 3
	isoSerializable    = 4
	isoSnapshot        = 5
)

var isolationNames = map[string]int{
	"READ UNCOMMITTED": isoReadUncommitted, "READ COMMITTED": isoReadCommitted,
	"REPEATABLE READ": isoRepeatableRead, "SERIALIZABLE": isoSerializable, "SNAPSHOT": isoSnapshot,
}

// options is one session's SET state.
type options struct {
	flags            uint32 // @@OPTIONS
	language         string // @@LANGUAGE
	dateFormat       string // mdy, dmy, ...
	dateFirst        int    // @@DATEFIRST
	lockTimeout      int64  // @@LOCK_TIMEOUT, ms; -1 waits forever
	textSize         int64  // @@TEXTSIZE
	isolation        int    // isoReadCommitted ...
	deadlockPriority int    // -10..10
	rowcountLimit    int64  // SET ROWCOUNT; 0 = none
	// other records every other option as last set (upper-case name →
	// upper-case value), e.g. STATISTICS IO, FMTONLY, IDENTITY_INSERT.
	other map[string]string
}

// loginOptions are the options a new session starts with. fODBC in
// OptionFlags2 (which go-mssqldb, python-tds and FreeTDS set) makes SQL
// Server apply ANSI_DEFAULTS ON and then CURSOR_CLOSE_ON_COMMIT and
// IMPLICIT_TRANSACTIONS OFF, TEXTSIZE unlimited and ROWCOUNT unlimited
// [MS-TDS §2.2.6.4]; CONCAT_NULL_YIELDS_NULL is on as for every ODBC/OLE DB
// connection. Without it (DB-Library) everything starts OFF.
func loginOptions(l *tds.Login7) options {
	o := options{language: defaultLanguage, dateFormat: "mdy", dateFirst: 7, lockTimeout: -1,
		textSize: 4096, isolation: isoReadCommitted}
	if l == nil || l.OptionFlags2&tds.Login7ODBC != 0 {
		o.flags = (ansiDefaults &^ (optCursorCloseOnCommit | optImplicitTransactions)) | optConcatNullYieldsNull
		o.textSize = 2147483647
	}
	return o
}

func (o options) clone() options {
	c := o
	c.other = nil
	if len(o.other) > 0 {
		c.other = make(map[string]string, len(o.other))
		for k, v := range o.other {
			c.other[k] = v
		}
	}
	return c
}

func (o options) has(bit uint32) bool { return o.flags&bit != 0 }

var dateFormats = map[string]bool{"MDY": true, "DMY": true, "YMD": true, "YDM": true, "MYD": true, "DYM": true}

// set applies one SET statement's option list and value (upper-cased
// words). Values SQL Server would reject are answered with a syntax error
// (the stand-in does not reproduce each option's own range message).
func (o *options) set(names []string, val string) *sqlError {
	onOff := func() (bool, *sqlError) {
		switch val {
		case "ON":
			return true, nil
		case "OFF":
			return false, nil
		}
		return false, syntaxErr(val)
	}
	for _, n := range names {
		if bit, ok := optionBits[n]; ok {
			on, e := onOff()
			if e != nil {
				return e
			}
			if on {
				o.flags |= bit
				// The two null-default options exclude each other.
				if bit == optAnsiNullDfltOn {
					o.flags &^= optAnsiNullDfltOff
				} else if bit == optAnsiNullDfltOff {
					o.flags &^= optAnsiNullDfltOn
				}
			} else {
				o.flags &^= bit
			}
			continue
		}
		switch n {
		case "ANSI_DEFAULTS":
			on, e := onOff()
			if e != nil {
				return e
			}
			if on {
				o.flags |= ansiDefaults
				o.flags &^= optAnsiNullDfltOff
			} else {
				o.flags &^= ansiDefaults
			}
		case "DATEFORMAT":
			v := strings.Trim(val, "'")
			if !dateFormats[v] {
				return syntaxErr(val)
			}
			o.dateFormat = strings.ToLower(v)
		case "DATEFIRST":
			d, err := strconv.Atoi(val)
			if err != nil || d < 1 || d > 7 {
				return syntaxErr(val)
			}
			o.dateFirst = d
		case "LOCK_TIMEOUT":
			d, err := strconv.ParseInt(val, 10, 64)
			if err != nil || d < -1 {
				return syntaxErr(val)
			}
			o.lockTimeout = d
		case "TEXTSIZE":
			d, err := strconv.ParseInt(val, 10, 64)
			if err != nil || d < 0 {
				return syntaxErr(val)
			}
			if d == 0 {
				d = 4096 // 0 restores the default
			}
			o.textSize = d
		case "ROWCOUNT":
			d, err := strconv.ParseInt(val, 10, 64)
			if err != nil || d < 0 {
				return syntaxErr(val)
			}
			o.rowcountLimit = d
		case "TRANSACTION ISOLATION LEVEL":
			l, ok := isolationNames[val]
			if !ok {
				return syntaxErr(val)
			}
			o.isolation = l
		case "DEADLOCK_PRIORITY":
			switch val {
			case "LOW":
				o.deadlockPriority = -5
			case "NORMAL":
				o.deadlockPriority = 0
			case "HIGH":
				o.deadlockPriority = 5
			default:
				d, err := strconv.Atoi(val)
				if err != nil || d < -10 || d > 10 {
					return syntaxErr(val)
				}
				o.deadlockPriority = d
			}
		default:
			if o.other == nil {
				o.other = map[string]string{}
			}
			o.other[n] = val
		}
	}
	return nil
}

// sessionProperty answers SESSIONPROPERTY(name): 1/0 for the ANSI-style
// options it documents, NULL for anything else.
func (o options) sessionProperty(name string) any {
	bits := map[string]uint32{"ANSI_NULLS": optAnsiNulls, "ANSI_PADDING": optAnsiPadding,
		"ANSI_WARNINGS": optAnsiWarnings, "ARITHABORT": optArithAbort,
		"CONCAT_NULL_YIELDS_NULL": optConcatNullYieldsNull, "NUMERIC_ROUNDABORT": optNumericRoundAbort,
		"QUOTED_IDENTIFIER": optQuotedIdentifier}
	if b, ok := bits[strings.ToUpper(name)]; ok {
		if o.has(b) {
			return int64(1)
		}
		return int64(0)
	}
	return nil
}
