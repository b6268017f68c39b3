package pool

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash"
	"io"
	"slices"
	"strings"
	"sync"

	"github.com/tdspool/tdspool/tds"
)

// Identity is the non-secret part of a pool key: everything a login sets
// about the backend session that a later client could observe. It is
// comparable and used as a map key.
type Identity struct {
	Bucket   string
	User     string
	Database string
	Language string
	// TDSVersion is the version the backend login announces (TDS 8.0 is
	// 7.4 towards the backend, tds.BackendTDSVersion).
	TDSVersion uint32
	// The LOGIN7 option and type flags: ANSI defaults, ODBC behaviour,
	// read-only intent, user type, collation handling. OptionFlags3 leaves
	// out fExtension (the feature set below says it) and fChangePassword
	// (such logins are never pooled).
	OptionFlags1, OptionFlags2, TypeFlags, OptionFlags3 uint8
	ClientLCID                                          uint32
	// Features is the requested FeatureExt set in a canonical form (sorted
	// by id, each id+length+data), SESSIONRECOVERY left out.
	Features string
	AppName  string
}

// Credential is a keyed hash of a login's user name and password. The
// password itself is never stored; two credentials are compared in
// constant time. It prints as a redaction.
type Credential struct {
	sum [sha256.Size]byte
	set bool
}

// Equal compares in constant time.
func (c Credential) Equal(d Credential) bool {
	return c.set && d.set && hmac.Equal(c.sum[:], d.sum[:])
}

// IsZero reports whether c was never computed.
func (c Credential) IsZero() bool { return !c.set }

func (c Credential) String() string   { return "[REDACTED]" }
func (c Credential) GoString() string { return "pool.Credential{[REDACTED]}" }

// Format prints the redaction for every verb, so no %x or %v of a key
// reveals the hash.
func (c Credential) Format(f fmt.State, verb rune) { io.WriteString(f, "[REDACTED]") }

// Hasher computes credentials with a per-process random key, so a hash
// taken from memory cannot be checked against guesses offline without the
// key, and hashes are useless outside this process.
type Hasher struct {
	key [32]byte
	// macs keeps keyed HMAC states (with a scratch buffer) for reuse: a new
	// one per login is several allocations.
	macs sync.Pool
}

// keyedMAC is a reusable HMAC state and the buffer its input is built in.
type keyedMAC struct {
	h   hash.Hash
	buf []byte
}

// NewHasher draws a fresh random key.
func NewHasher() (*Hasher, error) {
	h := &Hasher{}
	if _, err := rand.Read(h.key[:]); err != nil {
		return nil, fmt.Errorf("pool: drawing the credential key: %w", err)
	}
	return h, nil
}

// Credential hashes user and password (length-prefixed, so no two pairs
// share an input).
func (h *Hasher) Credential(user string, password tds.Password) Credential {
	m, _ := h.macs.Get().(*keyedMAC)
	if m == nil {
		m = &keyedMAC{h: hmac.New(sha256.New, h.key[:])}
	}
	m.buf = binary.BigEndian.AppendUint32(m.buf[:0], uint32(len(user)))
	m.buf = append(m.buf, user...)
	m.buf = append(m.buf, password.Reveal()...)
	m.h.Write(m.buf)
	clear(m.buf) // the password does not stay in the pooled buffer
	var c Credential
	m.h.Sum(c.sum[:0])
	m.h.Reset()
	c.set = true
	h.macs.Put(m)
	return c
}

// Key is what a pooled backend session is filed under: a later client gets
// it only if every field matches and its credential is equal.
type Key struct {
	Identity
	Credential Credential
}

func (k Key) String() string {
	return fmt.Sprintf("Key{bucket=%q user=%q db=%q lang=%q tds=0x%08X flags=%02X/%02X/%02X/%02X lcid=0x%X features=%s app=%q credential=%s}",
		k.Bucket, k.User, k.Database, k.Language, k.TDSVersion, k.OptionFlags1, k.OptionFlags2, k.TypeFlags, k.OptionFlags3,
		k.ClientLCID, featureNames(k.Features), k.AppName, k.Credential)
}

// GoString keeps %#v as safe as %v.
func (k Key) GoString() string { return k.String() }

// Dedicated says why a login is never pooled: its backend session is the
// client's alone and is closed when the client leaves.
type Dedicated uint8

const (
	Poolable Dedicated = iota
	// DedicatedIntegratedAuth: SSPI/Kerberos/NTLM; the proxy never sees a
	// password it could check a later client against.
	DedicatedIntegratedAuth
	// DedicatedFederatedAuth: FEDAUTH (Azure AD tokens); same reason.
	DedicatedFederatedAuth
	// DedicatedChangePassword: the login changes the password; its effect
	// must come from the server, once.
	DedicatedChangePassword
	// DedicatedAttachDBFile: the login attaches a database file.
	DedicatedAttachDBFile
	// DedicatedUserInstance: the login starts a user instance.
	DedicatedUserInstance
	dedicatedCount
)

var dedicatedNames = [dedicatedCount]string{"poolable", "integrated_auth", "federated_auth", "change_password",
	"attach_db_file", "user_instance"}

func (d Dedicated) String() string {
	if d < dedicatedCount {
		return dedicatedNames[d]
	}
	return fmt.Sprintf("Dedicated(%d)", uint8(d))
}

// DedicatedReason tells whether a LOGIN7 may use a pooled backend.
func DedicatedReason(l *tds.Login7) Dedicated {
	switch {
	case l.OptionFlags2&tds.Login7IntSecurity != 0 || len(l.SSPI) > 0:
		return DedicatedIntegratedAuth
	case hasFeature(l, tds.FeatureFedAuth):
		return DedicatedFederatedAuth
	case l.OptionFlags3&tds.Login7ChangePassword != 0 || !l.ChangePassword.IsZero():
		return DedicatedChangePassword
	case l.AtchDBFile != "":
		return DedicatedAttachDBFile
	case l.OptionFlags3&tds.Login7UserInstance != 0:
		return DedicatedUserInstance
	}
	return Poolable
}

func hasFeature(l *tds.Login7, id tds.FeatureID) bool {
	_, ok := l.Feature(id)
	return ok
}

// KeyFromLogin7 derives the pool key of a client's LOGIN7 for bucket. It
// returns a reason other than Poolable (and a zero Key) for logins that
// must get a dedicated backend.
func KeyFromLogin7(bucket string, l *tds.Login7, h *Hasher) (Key, Dedicated) {
	if d := DedicatedReason(l); d != Poolable {
		return Key{}, d
	}
	id := Identity{
		Bucket:       bucket,
		User:         l.UserName,
		Database:     l.Database,
		Language:     l.Language,
		TDSVersion:   tds.BackendTDSVersion(l.TDSVersion),
		OptionFlags1: l.OptionFlags1,
		OptionFlags2: l.OptionFlags2,
		TypeFlags:    l.TypeFlags,
		OptionFlags3: l.OptionFlags3 &^ (tds.Login7Extension | tds.Login7ChangePassword),
		ClientLCID:   l.ClientLCID,
		Features:     canonicalFeatures(l.Features),
		AppName:      l.AppName,
	}
	return Key{Identity: id, Credential: h.Credential(l.UserName, l.Password)}, Poolable
}

// canonicalFeatures encodes the requested features sorted by id, without
// SESSIONRECOVERY (backend logins never request it).
func canonicalFeatures(fs []tds.Feature) string {
	sorted := slices.Clone(fs)
	slices.SortStableFunc(sorted, func(a, b tds.Feature) int { return int(a.ID) - int(b.ID) })
	var sb strings.Builder
	for _, f := range sorted {
		if f.ID == tds.FeatureSessionRecovery {
			continue
		}
		var n [4]byte
		binary.LittleEndian.PutUint32(n[:], uint32(len(f.Data)))
		sb.WriteByte(byte(f.ID))
		sb.Write(n[:])
		sb.Write(f.Data)
	}
	return sb.String()
}

// featureNames lists a canonical feature string's ids for String.
func featureNames(s string) string {
	var names []string
	for b := []byte(s); len(b) >= 5; {
		n := int(binary.LittleEndian.Uint32(b[1:]))
		names = append(names, tds.FeatureID(b[0]).String())
		if n > len(b)-5 {
			break
		}
		b = b[5+n:]
	}
	return "[" + strings.Join(names, " ") + "]"
}

// Taint is a reason found during a session why its backend must not be
// handed to another client: the session's state can no longer be trusted
// to be cleared by a reset.
type Taint uint8

const (
	// TaintAppRole: sp_setapprole was used; a reset does not undo an
	// application role.
	TaintAppRole Taint = iota
	// TaintUnparsed: the response stream could not be parsed, so the
	// session's state is unknown.
	TaintUnparsed
	// TaintRequestInFlight: the client left with a request unanswered; the
	// backend may still be sending its result.
	TaintRequestInFlight
	// TaintKilled: an operator killed the session's slot lease; its backend
	// goes with it.
	TaintKilled
	// TaintOpenState: the client left with a transaction, an application
	// lock or other pinned state open. Closing the backend ends it at once
	// (the server rolls back); kept idle, it would hold its locks until the
	// next borrower's reset.
	TaintOpenState
	// TaintIsolationLevel: the client left its session at a transaction
	// isolation level other than READ COMMITTED (or one the proxy could not
	// follow). A reset keeps the level (sp_reset_connection does not restore
	// it), so pooled, the backend would run the next client at it.
	TaintIsolationLevel
	taintCount
)

var taintNames = [taintCount]string{"app_role", "unparsed", "request_in_flight", "killed", "open_state", "isolation_level"}

func (t Taint) String() string {
	if t < taintCount {
		return taintNames[t]
	}
	return fmt.Sprintf("Taint(%d)", uint8(t))
}

// Taints lists every taint reason, for stats.
func Taints() []Taint { return []Taint{TaintAppRole, TaintUnparsed, TaintRequestInFlight, TaintKilled} }
