package tds

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Login reply recording and replay, for a pooler that answers a client's
// LOGIN7 itself from a backend session logged in earlier with the same
// credentials and options [MS-TDS §2.2.6.4 login response, §3.2.5.3].
//
// A successful login response is a token stream of ENVCHANGE (database,
// collation, language, packet size, ...), INFO, LOGINACK, an optional
// FEATUREEXTACK and a final DONE. ParseLoginReply records it token by
// token; AppendReplay re-emits it for a later client. Two things depend on
// the client rather than on the backend session and are rewritten:
//
//   - the packet size ENVCHANGE: its new value is the size this client
//     gets (the backend session keeps the size it was logged in with; the
//     proxy re-frames between the two legs);
//   - FEATUREEXTACK: only features this client requested are acknowledged,
//     and SESSIONRECOVERY never is (a pooled backend session is not one the
//     client could recover; backend logins do not request it, see
//     StripSessionRecovery).
//
// Everything else is replayed byte for byte.

// ErrLoginNotRecordable wraps the reasons a login response cannot be
// replayed to another client (refused login, routing, SSPI/federated
// continuation, unknown tokens). The caller serves that session with a
// dedicated backend instead.
var ErrLoginNotRecordable = errors.New("tds: login response cannot be replayed")

// LoginRefusedError is returned by ParseLoginReply for a response carrying
// an ERROR (a failed login). The messages are the server's own, for the
// caller to count; the original bytes still go to the client unchanged.
type LoginRefusedError struct {
	Messages []ServerMessage
}

func (e *LoginRefusedError) Error() string {
	nums := make([]string, len(e.Messages))
	for i, m := range e.Messages {
		nums[i] = strconv.Itoa(int(m.Number))
	}
	return fmt.Sprintf("tds: login refused by the server (error %s)", strings.Join(nums, ", "))
}

func (e *LoginRefusedError) Unwrap() error { return ErrLoginNotRecordable }

// loginToken is one recorded token: its wire bytes, plus what replay needs
// to rewrite it.
type loginToken struct {
	typ      TokenType
	env      EnvChangeType // ENVCHANGE only
	raw      []byte        // the token as received (owned copy)
	features []Feature     // FEATUREEXTACK only; Data aliases raw
	oldSize  string        // packet size ENVCHANGE only: its old value
}

// LoginReply is a recorded successful login response. It is immutable once
// parsed and safe to replay from several goroutines at once.
type LoginReply struct {
	tokens []loginToken

	// What the response said, for the pool's bookkeeping and for tests.
	LoginAck   LoginAck
	Database   string // from ENVCHANGE database ("" if none)
	Language   string // from ENVCHANGE language ("" if none)
	PacketSize int    // from ENVCHANGE packet size (0 if none)
	Collation  []byte // from ENVCHANGE collation (nil if none)
	// Acked lists the features the backend acknowledged.
	Acked []FeatureID
	// Size is the recorded payload's length in bytes.
	Size int
}

// MaxLoginReplySize bounds a recorded response. SQL Server's login
// responses are a few hundred bytes; anything near this is not one.
const MaxLoginReplySize = 64 << 10

// ParseLoginReply records a backend's login response: payload is the whole
// response message (packet headers removed). It accepts only a successful
// login with nothing the proxy cannot replay: exactly one LOGINACK, a final
// DONE without the error bit as the last token, and between them only
// ENVCHANGE (not routing), INFO and at most one FEATUREEXTACK. A response
// with ERROR tokens returns *LoginRefusedError; anything else unusual an
// error wrapping ErrLoginNotRecordable or a *ProtocolError. The recording
// owns a copy of payload.
func ParseLoginReply(payload []byte) (*LoginReply, error) {
	const name = "login response"
	if len(payload) > MaxLoginReplySize {
		return nil, &LimitError{What: name, Size: len(payload), Limit: MaxLoginReplySize}
	}
	b := append([]byte(nil), payload...)
	r := &LoginReply{Size: len(b)}
	var refused []ServerMessage
	loginAcks, featureAcks := 0, 0
	done := false
	for off := 0; off < len(b); {
		if done {
			return nil, protoErr(name, off, "token %s after the final DONE", TokenType(b[off]))
		}
		t := TokenType(b[off])
		rest := b[off:]
		var n int
		var err error
		tok := loginToken{typ: t}
		switch t {
		case TokenEnvChange:
			var e EnvChange
			e, n, err = DecodeEnvChange(rest)
			if err == nil {
				tok.env = e.Type
				switch e.Type {
				case EnvDatabase:
					r.Database = e.New
				case EnvLanguage:
					r.Language = e.New
				case EnvPacketSize:
					size, ok := e.PacketSize()
					if !ok || !ValidPacketSize(size) {
						return nil, protoErr(name, off, "packet size ENVCHANGE %q is not a valid size", e.New)
					}
					r.PacketSize, tok.oldSize = size, e.Old
				case EnvCollation:
					r.Collation = e.NewBytes
				case EnvRouting, EnvEnhancedRouting:
					return nil, fmt.Errorf("%w: the server routes the client elsewhere (%s)", ErrLoginNotRecordable, e)
				case EnvCharset, EnvSortLCID, EnvSortFlags, EnvMirrorPartner, EnvUserInstance:
					// Part of a login response on some servers; replayed as is.
				default:
					return nil, fmt.Errorf("%w: %s in a login response", ErrLoginNotRecordable, e.Type)
				}
			}
		case TokenInfo:
			_, n, err = DecodeMessage(rest)
		case TokenError:
			var m ServerMessage
			m, n, err = DecodeMessage(rest)
			refused = append(refused, m)
		case TokenLoginAck:
			r.LoginAck, n, err = DecodeLoginAck(rest)
			loginAcks++
		case TokenFeatureExtAck:
			var a FeatureExtAck
			a, n, err = DecodeFeatureExtAck(rest)
			if err == nil {
				tok.features = a.Features
				for _, f := range a.Features {
					r.Acked = append(r.Acked, f.ID)
				}
			}
			featureAcks++
		case TokenDone:
			var d Done
			d, n, err = DecodeDone(rest)
			if err == nil {
				if d.Status&(DoneError|DoneSrvError) != 0 && len(refused) == 0 {
					return nil, fmt.Errorf("%w: final DONE has status %s", ErrLoginNotRecordable, d.Status)
				}
				if !d.Final() {
					return nil, fmt.Errorf("%w: DONE with status %s before the end", ErrLoginNotRecordable, d.Status)
				}
				done = true
			}
		default:
			// SSPI, FEDAUTHINFO, SESSIONSTATE and everything else: a login the
			// proxy cannot answer for another client.
			return nil, fmt.Errorf("%w: token %s", ErrLoginNotRecordable, t)
		}
		if errors.Is(err, ErrShortBuffer) {
			return nil, protoErr(name, off, "%s token truncated", t)
		}
		if err != nil {
			var pe *ProtocolError
			if errors.As(err, &pe) {
				return nil, err
			}
			return nil, fmt.Errorf("%w: %v", ErrLoginNotRecordable, err)
		}
		tok.raw = b[off : off+n]
		r.tokens = append(r.tokens, tok)
		off += n
	}
	if len(refused) > 0 {
		return nil, &LoginRefusedError{Messages: refused}
	}
	switch {
	case !done:
		return nil, protoErr(name, -1, "no final DONE")
	case loginAcks != 1:
		return nil, fmt.Errorf("%w: %d LOGINACK tokens", ErrLoginNotRecordable, loginAcks)
	case featureAcks > 1:
		return nil, fmt.Errorf("%w: %d FEATUREEXTACK tokens", ErrLoginNotRecordable, featureAcks)
	}
	return r, nil
}

// AppendReplay appends the login response for client, a later LOGIN7 of
// the same pool key, as a message payload (frame it with AppendPacketsSPID
// and the backend session's SPID). packetSize is the size this client is
// given; 0 keeps the recorded one. Requirements on client: only its
// FeatureExt list is read, so the caller must have checked that it belongs
// to the recording's key.
func (r *LoginReply) AppendReplay(dst []byte, client *Login7, packetSize int) []byte {
	for _, t := range r.tokens {
		switch {
		case t.typ == TokenEnvChange && t.env == EnvPacketSize && packetSize > 0 && packetSize != r.PacketSize:
			dst = EnvChange{Type: EnvPacketSize, New: strconv.Itoa(packetSize), Old: t.oldSize}.AppendEnvChange(dst)
		case t.typ == TokenFeatureExtAck:
			dst = appendTrimmedAck(dst, t, client)
		default:
			dst = append(dst, t.raw...)
		}
	}
	return dst
}

// appendTrimmedAck appends the recorded FEATUREEXTACK keeping only features
// the client asked for, never SESSIONRECOVERY. A client that sent no
// FeatureExt at all gets no FEATUREEXTACK; one that did gets the token even
// if nothing is left in it, as a server answering that login would.
func appendTrimmedAck(dst []byte, t loginToken, client *Login7) []byte {
	if len(client.Features) == 0 && client.OptionFlags3&Login7Extension == 0 {
		return dst
	}
	keep := make([]Feature, 0, len(t.features))
	trimmed := false
	for _, f := range t.features {
		if _, asked := client.Feature(f.ID); asked && f.ID != FeatureSessionRecovery {
			keep = append(keep, f)
		} else {
			trimmed = true
		}
	}
	if !trimmed {
		return append(dst, t.raw...)
	}
	return FeatureExtAck{Features: keep}.AppendFeatureExtAck(dst)
}

// Payload returns a copy of the recorded response as received.
func (r *LoginReply) Payload() []byte {
	out := make([]byte, 0, r.Size)
	for _, t := range r.tokens {
		out = append(out, t.raw...)
	}
	return out
}

func (r *LoginReply) String() string {
	acked := make([]string, len(r.Acked))
	for i, id := range r.Acked {
		acked[i] = id.String()
	}
	return fmt.Sprintf("LoginReply{%s db=%q lang=%q packetsize=%d features=[%s] %d tokens %dB}",
		r.LoginAck, r.Database, r.Language, r.PacketSize, strings.Join(acked, " "), len(r.tokens), r.Size)
}

// StripSessionRecovery removes SESSIONRECOVERY from a LOGIN7 bound for a
// pooled backend: a pooled session outlives its client, so the server must
// not hand out recovery state for it. When no feature is left the
// fExtension flag is cleared too, so the backend sees an ordinary login
// without an empty FeatureExt block. It reports whether l changed.
func StripSessionRecovery(l *Login7) bool {
	removed := l.RemoveFeature(FeatureSessionRecovery)
	if removed && len(l.Features) == 0 {
		l.OptionFlags3 &^= Login7Extension
	}
	return removed
}

// BackendTDSVersion is the TDS version a backend login announces for a
// client's LOGIN7.TDSVersion: TDS 8 is TLS-first framing around TDS 7.4
// tokens, so a client that spoke TDS 8 to the proxy logs in as 7.4 on a
// leg whose TLS (if any) the proxy set up itself.
func BackendTDSVersion(v uint32) uint32 {
	if v == TDSVersion80 {
		return TDSVersion74
	}
	return v
}
