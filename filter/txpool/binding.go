package txpool

import (
	"strings"
	"time"

	"github.com/tdspool/tdspool/tds"
)

// Pin is a reason a client session keeps its backend between requests.
type Pin uint8

const (
	PinTransaction Pin = iota // ENVCHANGE begin until commit, rollback or "ended"
	PinPrepared               // sp_prepare family: the handle names a plan in that session
	PinTempTable              // #temp tables and procedures
	PinSetOption              // a SET we could not follow (see State.ApplyRequest)
	PinCursor                 // server cursors
	PinBulkLoad               // BULK_LOAD / INSERT BULK in progress
	PinAppRole                // sp_setapprole: a reset does not undo it; never released
	PinUnparsed               // the response stream could not be followed; never released
	PinMARS                   // several requests may be in flight on one connection
	PinAppLock                // sp_getapplock held (until as many sp_releaseapplock)
	// PinSessionContext: sp_set_session_context or SET CONTEXT_INFO. Neither can be read back
	// and re-applied on another backend (a read-only key cannot even be set again), so the
	// session keeps the backend that holds them until it leaves or resets its own session.
	PinSessionContext
	NumPins
)

var pinNames = [NumPins]string{"transaction", "prepared", "temp_table", "set_option", "cursor", "bulk_load",
	"app_role", "unparsed", "mars", "applock", "session_context"}

func (p Pin) String() string {
	if p < NumPins {
		return pinNames[p]
	}
	return "pin?"
}

// Phase is where a client session stands towards backends.
type Phase uint8

const (
	Unbound   Phase = iota // no backend; the next request borrows one
	Borrowing              // a request waits for a backend (bounded by the queue timeout)
	Bound                  // a backend serves the session
)

func (p Phase) String() string {
	return [...]string{"unbound", "borrowing", "bound"}[p]
}

// Action is what the filter must do after an event.
type Action uint8

const (
	None Action = iota
	// Forward: pass the client's bytes (request or ATTENTION) to the bound backend.
	Forward
	// Borrow: hold the request and ask the pool for a backend (then call Borrowed), waiting
	// at most until Deadline.
	Borrow
	// Hold: keep the request; it goes out when the backend is ready (ForwardHeld).
	Hold
	// ForwardHeld: send the held request to the bound backend now.
	ForwardHeld
	// Refuse: the held request is not executed; answer it with an ERROR (10928) and a DONE
	// with the error bit, and drop it. The session stays, unbound.
	Refuse
	// AnswerAttention: acknowledge the client's ATTENTION ourselves with DONE(ATTN); any held
	// request is dropped unexecuted.
	AnswerAttention
	// Release: the backend goes back to its key's pool; the session is unbound.
	Release
	// Fail: the backend could not be brought to the client's state (its prelude failed):
	// discard it and answer the held request with an ERROR.
	Fail
)

func (a Action) String() string {
	return [...]string{"none", "forward", "borrow", "hold", "forward-held", "refuse", "answer-attention",
		"release", "fail"}[a]
}

// Binding decides when a transaction-pooled client session has a backend. The filter calls
// Request for each client request message, Attention for an ATTENTION, Borrowed when the pool
// lends a backend, Tick while it waits, and ServerEvent for every token event of the bound
// backend's stream, and carries out the returned Action.
//
// A session is bound from its first request until the end of a response (the scanner's end
// of message after a final DONE) that leaves no request or ATTENTION unanswered, no open
// transaction and no pin. The prelude (Reapply's batch, sent before the client's first
// request on a new backend) is answered to the proxy, not to the client.
type Binding struct {
	phase    Phase
	deadline time.Time // Borrowing: when the held request is refused

	pins     [NumPins]bool
	applocks int
	// prepared counts the handles the client prepared and not yet unprepared; unprepared is
	// what the request in flight unprepares, taken off when its response carried no ERROR
	// (an unprepare of a handle that does not exist fails with 8179 and must not count).
	prepared, unprepared int
	responseErr          bool

	pending     int  // client requests forwarded and not yet answered
	attention   bool // an ATTENTION was forwarded and its DONE(ATTN) not seen
	held        bool // a request is held (Borrowing, or Bound during the prelude)
	prelude     bool // the prelude's response is being consumed
	preludeErr  bool // it carried an ERROR
	setsPending bool // a forwarded request changed tracked SET options; an ERROR makes them uncertain
	// isolationUnknown: the bound backend's isolation level may differ from Backend's (a SET
	// the proxy could not follow). A reset keeps the level, so the next borrower must set
	// its own.
	isolationUnknown bool

	// heldRequests counts the held requests: the first, and any the client sent before it
	// went out (not TDS without MARS, but a server answers each in turn, so each is pending).
	heldRequests int

	// Client is the state that moves with the session; Backend the state of the bound
	// backend's session as far as the proxy knows it (valid while Bound).
	Client  State
	Backend State
	login   State
	// beforeHeld is the client's state before the held request: what the prelude re-applies
	// (the request's own SETs run with it).
	beforeHeld State
}

// NewBinding starts an unbound session whose login left it in state login.
func NewBinding(login State) *Binding {
	return &Binding{Client: login.Clone(), Backend: login.Clone(), login: login.Clone()}
}

// Phase returns where the session stands.
func (b *Binding) Phase() Phase { return b.phase }

// Deadline is when a Borrowing session's held request is refused.
func (b *Binding) Deadline() time.Time { return b.deadline }

// Pinned reports whether any pin holds the backend.
func (b *Binding) Pinned() bool {
	for _, p := range b.pins {
		if p {
			return true
		}
	}
	return false
}

// Pins lists the pins that hold the backend, comma separated (for logs and the fleet view).
func (b *Binding) Pins() string {
	var names []string
	for p, on := range b.pins {
		if on {
			names = append(names, Pin(p).String())
		}
	}
	return strings.Join(names, ",")
}

// SetPin turns a pin on or off (MARS and the unparsed stream are the filter's to set).
func (b *Binding) SetPin(p Pin, on bool) {
	if p == PinAppRole || p == PinUnparsed {
		on = on || b.pins[p] // for good
	}
	b.pins[p] = on
}

// Request is a client request message (SQL batch, RPC, transaction manager, bulk load)
// with its classified facts; batch is a SQL batch's text ("" for other messages, or for a
// batch the filter did not classify because tds.BatchMayPin ruled every fact out).
func (b *Binding) Request(now time.Time, f *tds.RequestFacts, batch string, queueTimeout time.Duration) Action {
	if b.phase == Unbound {
		b.beforeHeld = b.Client.Clone()
		b.isolationUnknown = false // a new backend: what it does is known again
	}
	b.noteRequest(f, batch)
	switch b.phase {
	case Unbound:
		b.phase, b.held, b.heldRequests, b.deadline = Borrowing, true, 1, now.Add(queueTimeout)
		return Borrow
	case Borrowing:
		b.heldRequests++
		return Hold // not expected without MARS; kept in order behind the first
	}
	if b.prelude {
		b.held = true
		b.heldRequests++
		return Hold
	}
	b.pending++
	return Forward
}

// noteRequest applies what the request changes to the session's state and pins.
func (b *Binding) noteRequest(f *tds.RequestFacts, batch string) {
	if f.Type == tds.PacketSQLBatch {
		if defines, temp := DefinesModule(batch); defines {
			// CREATE/ALTER PROCEDURE, FUNCTION, TRIGGER or VIEW: the batch is the module's
			// body, which runs later (in its own scope), not now. Only a temporary
			// procedure is state of the session.
			if temp {
				b.pins[PinTempTable] = true
			}
			return
		}
	}
	if f.ResetConnection {
		// The client resets its own session (a driver pool's reuse): temp tables, handles,
		// cursors and options go, on whichever backend runs it.
		for _, p := range [...]Pin{PinPrepared, PinTempTable, PinSetOption, PinCursor, PinBulkLoad, PinAppLock, PinSessionContext} {
			b.pins[p] = false
		}
		b.applocks, b.prepared = 0, 0
		b.Client = AfterReset(b.login, b.Client.Isolation()) // the reset keeps the level
	}
	if len(f.SetOptions) > 0 {
		if b.Client.ApplyRequest(f, StraightLine(batch)) {
			b.setsPending = true
		} else {
			b.pins[PinSetOption] = true
			b.isolationUnknown = true
		}
	}
	if f.Isolation != tds.IsolationUnchanged {
		// A transaction-manager begin's isolation byte sets the session's level for good.
		if name := IsolationName(f.Isolation); name != UnknownIsolation &&
			b.Client.ApplySet(tds.SetOption{Name: isolationOption, Value: name}) {
			b.setsPending = true
		} else {
			b.pins[PinSetOption], b.isolationUnknown = true, true
		}
	}
	b.notePrepared(f)
	if f.TempTable {
		b.pins[PinTempTable] = true
	}
	if f.Cursor {
		b.pins[PinCursor] = true
	}
	if f.BulkLoad {
		b.pins[PinBulkLoad] = true
	}
	if f.AppRole {
		b.pins[PinAppRole] = true
	}
	if f.SessionContext {
		b.pins[PinSessionContext] = true
	}
	if f.Distributed {
		b.pins[PinTransaction] = true
	}
	for _, p := range f.Procs {
		switch procBase(p) {
		case "sp_getapplock":
			b.applocks++
		case "sp_releaseapplock":
			if b.applocks > 0 {
				b.applocks--
			}
		}
	}
	b.pins[PinAppLock] = b.applocks > 0
}

// notePrepared counts prepared handles: an RPC names one procedure (its flags say which); a
// batch may EXEC several, which its Procs list.
func (b *Binding) notePrepared(f *tds.RequestFacts) {
	prep, unprep := 0, 0
	for _, p := range f.Procs {
		switch procBase(p) {
		case "sp_prepare", "sp_prepexec", "sp_prepexecrpc", "sp_cursorprepare", "sp_cursorprepexec", "sp_xml_preparedocument":
			prep++
		case "sp_unprepare", "sp_cursorunprepare", "sp_xml_removedocument":
			unprep++
		}
	}
	if f.Prepare && prep == 0 {
		prep = 1
	}
	if f.Unprepare && unprep == 0 {
		unprep = 1
	}
	b.prepared += prep
	b.unprepared += unprep
	b.pins[PinPrepared] = b.prepared > 0
}

func procBase(name string) string {
	n := strings.ToLower(name)
	if i := strings.LastIndexByte(n, '.'); i >= 0 {
		n = n[i+1:]
	}
	return n
}

// Borrowed: the pool lent a backend whose session is in state backend (after a reset: the
// login state with the backend's isolation level, see AfterReset). It returns the prelude batch to send before the held request (empty: send the
// request now, Action ForwardHeld) and whether the backend must be reset first.
func (b *Binding) Borrowed(backend State) (prelude string, reset bool, a Action) {
	login := b.login
	if b.phase != Borrowing {
		return "", false, None
	}
	b.phase = Bound
	prelude, reset = Reapply(backend, login, b.beforeHeld)
	b.Backend = backend.Clone()
	if reset {
		b.Backend = AfterReset(login, backend.Isolation())
	}
	if prelude == "" {
		b.Backend = b.beforeHeld.Clone()
	}
	if prelude != "" {
		b.prelude, b.preludeErr = true, false
		return prelude, reset, None
	}
	return "", reset, b.forwardHeld()
}

func (b *Binding) forwardHeld() Action {
	if !b.held {
		return None
	}
	b.held = false
	b.pending += max(b.heldRequests, 1)
	b.heldRequests = 0
	return ForwardHeld
}

// HeldRequests is how many requests are held (each is refused, or forwarded, with the first).
func (b *Binding) HeldRequests() int { return b.heldRequests }

// Tick is called while Borrowing: past the deadline the held request is refused (Refuse);
// the filter cancels its wait for a backend.
func (b *Binding) Tick(now time.Time) Action {
	if b.phase != Borrowing || now.Before(b.deadline) {
		return None
	}
	b.phase, b.held, b.heldRequests = Unbound, false, 0
	return Refuse
}

// Attention is the client's ATTENTION. Bound, it goes to the backend (SQL Server answers an
// ATTENTION even between requests) and the session stays bound until the server's
// DONE(ATTN), so a late acknowledgement can only reach this client. Otherwise nothing of the
// client's runs anywhere: the held request (if any) is dropped and the proxy answers. During
// the prelude the client's request has not gone out: it is dropped and the proxy answers
// (the prelude's own response is consumed as usual).
func (b *Binding) Attention() Action {
	switch b.phase {
	case Bound:
		if !b.prelude {
			b.attention = true
			return Forward
		}
		b.held, b.heldRequests = false, 0
		return AnswerAttention
	case Borrowing:
		b.phase, b.held, b.heldRequests = Unbound, false, 0
		return AnswerAttention
	}
	return AnswerAttention
}

// AttentionPending reports that an ATTENTION went to the bound backend and its DONE(ATTN)
// has not come back yet.
func (b *Binding) AttentionPending() bool { return b.attention }

// ConsumingPrelude reports that the bound backend's response belongs to the prelude: the
// filter passes the events to ServerEvent but not the bytes to the client.
func (b *Binding) ConsumingPrelude() bool { return b.prelude }

// ServerEvent follows the bound backend's response stream (tds.ResponseScanner events,
// TokenEndOfMessage included).
func (b *Binding) ServerEvent(ev *tds.Event) Action {
	if b.phase != Bound {
		return None
	}
	switch ev.Token {
	case tds.TokenEnvChange:
		switch ev.EnvChange.Type {
		case tds.EnvBeginTran, tds.EnvEnlistDTC, tds.EnvPromoteTran:
			b.pins[PinTransaction] = true
		case tds.EnvCommitTran, tds.EnvRollbackTran, tds.EnvTranEnded, tds.EnvDefectTran:
			b.pins[PinTransaction] = false
		}
		b.Backend.ApplyEnvChange(&ev.EnvChange)
		if !b.prelude {
			b.Client.ApplyEnvChange(&ev.EnvChange)
		}
	case tds.TokenError:
		b.responseErr = true
		if b.prelude {
			b.preludeErr = true
		} else if b.setsPending {
			b.pins[PinSetOption] = true // which SET ran is unknown now
			b.isolationUnknown = true
		}
	case tds.TokenDone, tds.TokenDoneProc:
		if ev.Done.Status&tds.DoneAttn != 0 {
			b.attention = false
			b.pending = 0 // the ATTENTION ends every request before it
		}
	case tds.TokenEndOfMessage:
		return b.endOfMessage()
	}
	return None
}

func (b *Binding) endOfMessage() Action {
	if b.prelude {
		b.prelude, b.responseErr = false, false
		if b.preludeErr {
			b.phase, b.held, b.heldRequests = Unbound, false, 0
			return Fail
		}
		b.Backend = b.beforeHeld.Clone()
		if !b.held {
			return b.releaseIfFree() // the request was cancelled during the prelude
		}
		return b.forwardHeld()
	}
	if b.pending > 0 {
		b.pending--
	}
	if b.unprepared > 0 {
		if !b.responseErr {
			b.prepared = max(b.prepared-b.unprepared, 0)
		}
		b.unprepared = 0
		b.pins[PinPrepared] = b.prepared > 0
	}
	b.responseErr = false
	if b.pending == 0 {
		if b.setsPending {
			b.setsPending = false
			if !b.pins[PinSetOption] {
				b.Backend = b.Client.Clone()
			}
		}
	}
	return b.releaseIfFree()
}

// releaseIfFree lets the backend go when nothing needs it.
func (b *Binding) releaseIfFree() Action {
	if b.pending > 0 || b.attention || b.held || b.prelude || b.Pinned() {
		return None
	}
	b.phase = Unbound
	return Release
}

// BackendLost: the bound backend closed or failed. The session is unbound; a pinned session
// has lost state it cannot get back, which the filter reports by closing the client.
func (b *Binding) BackendLost() (statefulLoss bool) {
	statefulLoss = b.phase == Bound && (b.Pinned() || b.pending > 0 || b.attention)
	b.phase, b.pending, b.attention, b.held, b.heldRequests, b.prelude = Unbound, 0, false, false, 0, false
	return statefulLoss
}

// BackendIsolation is the bound (or last bound) backend's transaction isolation level as
// far as the proxy knows it, UnknownIsolation when it does not: what AfterReset needs when
// the backend is lent again.
func (b *Binding) BackendIsolation() string {
	if b.isolationUnknown || b.setsPending {
		return UnknownIsolation
	}
	return b.Backend.Isolation()
}

// PinnedBy reports whether pin p holds the backend.
func (b *Binding) PinnedBy(p Pin) bool { return p < NumPins && b.pins[p] }
