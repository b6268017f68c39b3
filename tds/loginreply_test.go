package tds

import (
	"bytes"
	"errors"
	"testing"
)

// loginReplyTokens builds a SQL Server-shaped login response; ack, when
// not nil, adds a FEATUREEXTACK before DONE.
func loginReplyTokens(packetSize int, ack []Feature) []byte {
	var b []byte
	b = EnvChangeDatabase("tenant_a", "master").AppendEnvChange(b)
	b = ServerMessage{Token: TokenInfo, Number: 5701, State: 2, Text: "Changed database context to 'tenant_a'.", Server: "srv", Line: 1}.AppendMessage(b)
	b = EnvChangeCollation(CollationLatin1General).AppendEnvChange(b)
	b = EnvChangeLanguage("us_english", "").AppendEnvChange(b)
	b = ServerMessage{Token: TokenInfo, Number: 5703, State: 1, Text: "Changed language setting to us_english.", Server: "srv", Line: 1}.AppendMessage(b)
	b = EnvChangePacketSize(packetSize, DefaultPacketSize).AppendEnvChange(b)
	b = LoginAck{Interface: 1, TDSVersion: TDSVersion74, ProgName: "Microsoft SQL Server", ProgVersion: 0x10000000}.AppendLoginAck(b)
	if ack != nil {
		b = FeatureExtAck{Features: ack}.AppendFeatureExtAck(b)
	}
	return Done{Token: TokenDone}.AppendDone(b)
}

func TestParseLoginReplyRecordsFields(t *testing.T) {
	payload := loginReplyTokens(8000, []Feature{{FeatureUTF8Support, []byte{1}}})
	r, err := ParseLoginReply(payload)
	if err != nil {
		t.Fatal(err)
	}
	if r.Database != "tenant_a" || r.Language != "us_english" || r.PacketSize != 8000 ||
		r.LoginAck.TDSVersion != TDSVersion74 || !bytes.Equal(r.Collation, CollationLatin1General[:]) ||
		len(r.Acked) != 1 || r.Acked[0] != FeatureUTF8Support || r.Size != len(payload) {
		t.Fatalf("recorded %v", r)
	}
	if !bytes.Equal(r.Payload(), payload) {
		t.Fatal("Payload() is not the recorded response")
	}
	// The recording owns its bytes.
	payload[0] ^= 0xFF
	if bytes.Equal(r.Payload(), payload) {
		t.Fatal("recording aliases the caller's buffer")
	}
}

func TestParseLoginReplyRefuses(t *testing.T) {
	done := Done{Token: TokenDone}.AppendDone(nil)
	ack := LoginAck{Interface: 1, TDSVersion: TDSVersion74, ProgName: "x"}.AppendLoginAck(nil)
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	failed := cat(ServerMessage{Token: TokenError, Number: 18456, State: 1, Class: 14, Text: "Login failed for user 'u'."}.AppendMessage(nil),
		Done{Token: TokenDone, Status: DoneError}.AppendDone(nil))
	tests := []struct {
		name    string
		payload []byte
		refused bool // *LoginRefusedError
		proto   bool // *ProtocolError rather than ErrLoginNotRecordable
	}{
		{"login failed", failed, true, false},
		{"no LOGINACK", done, false, false},
		{"two LOGINACKs", cat(ack, ack, done), false, false},
		{"routing", cat(ack, EnvChangeRouting("elsewhere", 1433).AppendEnvChange(nil), done), false, false},
		{"SSPI continuation", cat([]byte{byte(TokenSSPI), 2, 0, 1, 2}, done), false, false},
		{"transaction ENVCHANGE", cat(EnvChangeBeginTran(1).AppendEnvChange(nil), ack, done), false, false},
		{"DONE with MORE", cat(ack, Done{Token: TokenDone, Status: DoneMore}.AppendDone(nil), done), false, false},
		{"error DONE without ERROR", cat(ack, Done{Token: TokenDone, Status: DoneError}.AppendDone(nil)), false, false},
		{"two FEATUREEXTACKs", cat(ack, []byte{byte(TokenFeatureExtAck), 0xFF, byte(TokenFeatureExtAck), 0xFF}, done), false, false},
		{"no DONE", ack, false, true},
		{"token after DONE", cat(ack, done, done), false, true},
		{"truncated", cat(ack, done[:5]), false, true},
		{"bad packet size", cat(EnvChange{Type: EnvPacketSize, New: "12", Old: "4096"}.AppendEnvChange(nil), ack, done), false, true},
		{"empty", nil, false, true},
		{"too large", make([]byte, MaxLoginReplySize+1), false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := ParseLoginReply(tc.payload)
			if err == nil {
				t.Fatalf("recorded %v, want an error", r)
			}
			var refused *LoginRefusedError
			var pe *ProtocolError
			var le *LimitError
			switch {
			case tc.refused:
				if !errors.As(err, &refused) || refused.Messages[0].Number != 18456 || !errors.Is(err, ErrLoginNotRecordable) {
					t.Fatalf("err = %v, want a LoginRefusedError for 18456", err)
				}
			case tc.proto:
				if !errors.As(err, &pe) {
					t.Fatalf("err = %v, want a ProtocolError", err)
				}
			case tc.name == "too large":
				if !errors.As(err, &le) {
					t.Fatalf("err = %v, want a LimitError", err)
				}
			default:
				if !errors.Is(err, ErrLoginNotRecordable) || errors.As(err, &refused) {
					t.Fatalf("err = %v, want ErrLoginNotRecordable", err)
				}
			}
		})
	}
}

func TestAppendReplay(t *testing.T) {
	utf8 := Feature{FeatureUTF8Support, []byte{1}}
	sr := Feature{FeatureSessionRecovery, []byte{0, 0, 0, 0}}
	ce := Feature{FeatureColumnEncryption, []byte{1}}
	recorded := loginReplyTokens(4096, []Feature{utf8, ce})
	r, err := ParseLoginReply(recorded)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		client     Login7
		packetSize int
		want       []byte
	}{
		{"same request: byte for byte", Login7{Features: []Feature{utf8, ce}}, 0, recorded},
		{"same packet size given explicitly", Login7{Features: []Feature{utf8, ce}}, 4096, recorded},
		{"other packet size", Login7{Features: []Feature{utf8, ce}}, 8000, loginReplyTokens(8000, []Feature{utf8, ce})},
		{"trimmed to what the client asked", Login7{Features: []Feature{ce}}, 0, loginReplyTokens(4096, []Feature{ce})},
		{"asked for features, none acked", Login7{Features: []Feature{{FeatureAzureSQLSupport, []byte{1}}}}, 0, loginReplyTokens(4096, []Feature{})},
		{"extension flag alone", Login7{OptionFlags3: Login7Extension}, 0, loginReplyTokens(4096, []Feature{})},
		{"no FeatureExt at all: no FEATUREEXTACK", Login7{}, 0, loginReplyTokens(4096, nil)},
		{"SESSIONRECOVERY asked: not acked", Login7{Features: []Feature{sr, utf8, ce}}, 0, recorded},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := r.AppendReplay(nil, &tc.client, tc.packetSize)
			if !bytes.Equal(got, tc.want) {
				t.Fatalf("replay\n got %X\nwant %X", got, tc.want)
			}
			if _, err := ParseLoginReply(got); err != nil {
				t.Fatalf("replay does not parse as a login reply: %v", err)
			}
		})
	}
}

// A backend that acked SESSIONRECOVERY anyway (a login that still asked
// for it) never passes the ack on.
func TestAppendReplayNeverAcksSessionRecovery(t *testing.T) {
	sr := Feature{FeatureSessionRecovery, []byte{0, 0, 0, 0}}
	r, err := ParseLoginReply(loginReplyTokens(4096, []Feature{sr}))
	if err != nil {
		t.Fatal(err)
	}
	got := r.AppendReplay(nil, &Login7{Features: []Feature{sr}}, 0)
	if want := loginReplyTokens(4096, []Feature{}); !bytes.Equal(got, want) {
		t.Fatalf("replay\n got %X\nwant %X", got, want)
	}
}

func TestStripSessionRecovery(t *testing.T) {
	sr := Feature{FeatureSessionRecovery, []byte{1}}
	utf8 := Feature{FeatureUTF8Support, nil}
	tests := []struct {
		name      string
		in        []Feature
		changed   bool
		wantFlag  bool
		wantFeats int
	}{
		{"only SESSIONRECOVERY", []Feature{sr}, true, false, 0},
		{"with another", []Feature{sr, utf8}, true, true, 1},
		{"without it", []Feature{utf8}, false, true, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := &Login7{TDSVersion: TDSVersion74, UserName: "u", OptionFlags3: Login7Extension, Features: append([]Feature(nil), tc.in...)}
			if got := StripSessionRecovery(l); got != tc.changed {
				t.Fatalf("changed = %v", got)
			}
			l2, err := DecodeLogin7(l.AppendLogin7(nil))
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := l2.Feature(FeatureSessionRecovery); ok {
				t.Fatal("SESSIONRECOVERY survived re-encoding")
			}
			if got := l2.OptionFlags3&Login7Extension != 0; got != tc.wantFlag || len(l2.Features) != tc.wantFeats {
				t.Fatalf("fExtension=%v features=%d", got, len(l2.Features))
			}
		})
	}
}

func TestBackendTDSVersion(t *testing.T) {
	for in, want := range map[uint32]uint32{TDSVersion80: TDSVersion74, TDSVersion74: TDSVersion74, TDSVersion73B: TDSVersion73B, TDSVersion72: TDSVersion72} {
		if got := BackendTDSVersion(in); got != want {
			t.Errorf("BackendTDSVersion(%#x) = %#x, want %#x", in, got, want)
		}
	}
}

// FuzzLoginReply: the parser never panics, and whatever it records replays
// into a response it accepts again.
func FuzzLoginReply(f *testing.F) {
	f.Add(loginReplyTokens(4096, nil))
	f.Add(loginReplyTokens(8000, []Feature{{FeatureUTF8Support, []byte{1}}, {FeatureSessionRecovery, []byte{1, 2, 3}}}))
	f.Add(append(LoginAck{TDSVersion: TDSVersion74}.AppendLoginAck(nil), Done{Token: TokenDone, Status: DoneError}.AppendDone(nil)...))
	f.Add([]byte{byte(TokenFeatureExtAck), 1, 0xFF, 0xFF, 0xFF, 0x7F})
	f.Add([]byte{byte(TokenEnvChange), 1, 0, 4})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseLoginReply(b)
		if err != nil {
			return
		}
		for _, client := range []*Login7{{}, {Features: []Feature{{FeatureUTF8Support, nil}}}} {
			out := r.AppendReplay(nil, client, 8000)
			if _, err := ParseLoginReply(out); err != nil {
				t.Fatalf("replay of an accepted reply is refused: %v\nin  %X\nout %X", err, b, out)
			}
		}
	})
}
