package tds

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// go-mssqldb's mock LOGIN7 (tds_login_test.go) with driver version, pid and
// client id zeroed, packet header stripped: user "test"/"secret", host
// "localhost", app "go-mssqldb", server "localhost", library "go-mssqldb".
const goMssqldbLogin7 = `be 00 00 00 04 00 00 74
00 10 00 00 00 00 00 00 00 00 00 00 00 00 00 00
A0 02 00 00 00 00 00 00  00 00 00 00 5e 00 09 00
70 00 04 00 78 00 06 00  84 00 0a 00 98 00 09 00
00 00 00 00 aa 00 0a 00  be 00 00 00 be 00 00 00
00 00 00 00 00 00 be 00  00 00 be 00 00 00 be 00
00 00 00 00 00 00 6c 00  6f 00 63 00 61 00 6c 00
68 00 6f 00 73 00 74 00  74 00 65 00 73 00 74 00
92 a5 f3 a5 93 a5 82 a5  f3 a5 e2 a5 67 00 6f 00
2d 00 6d 00 73 00 73 00  71 00 6c 00 64 00 62 00
6c 00 6f 00 63 00 61 00  6c 00 68 00 6f 00 73 00
74 00 67 00 6f 00 2d 00  6d 00 73 00 73 00 71 00
6c 00 64 00 62 00`

func TestLogin7DecodeGoMssqldbFixture(t *testing.T) {
	b := unhex(t, goMssqldbLogin7)
	l, err := DecodeLogin7(b)
	if err != nil {
		t.Fatal(err)
	}
	if l.TDSVersion != TDSVersion74 || l.PacketSize != 4096 || l.OptionFlags1 != 0xA0 || l.OptionFlags2 != Login7ODBC {
		t.Fatalf("header: %v", l)
	}
	if l.HostName != "localhost" || l.UserName != "test" || l.Password.Reveal() != "secret" ||
		l.AppName != "go-mssqldb" || l.ServerName != "localhost" || l.CltIntName != "go-mssqldb" {
		t.Fatalf("fields: %v", l)
	}
	// Re-encoding an unchanged LOGIN7 reproduces the driver's bytes exactly.
	if got := l.AppendLogin7(nil); !bytes.Equal(got, b) {
		t.Fatalf("re-encode\n got % X\nwant % X", got, b)
	}
}

func TestPasswordObfuscation(t *testing.T) {
	// Worked example (nibbles swapped, XOR 0xA5): "secret" -> 92 A5 F3 A5 93 A5 82 A5 F3 A5 E2 A5.
	got := obfuscatePassword(nil, "secret")
	if want := unhex(t, "92 A5 F3 A5 93 A5 82 A5 F3 A5 E2 A5"); !bytes.Equal(got, want) {
		t.Fatalf("% X", got)
	}
	for _, s := range []string{"", "secret", "pässwörd", "日本語", "emoji😀", strings.Repeat("x", 128)} {
		if back := deobfuscatePassword(obfuscatePassword(nil, s)); back != s {
			t.Errorf("%q -> %q", s, back)
		}
	}
}

func TestPasswordRedaction(t *testing.T) {
	p := NewPassword("hunter2")
	l := &Login7{UserName: "u", Password: p, ChangePassword: NewPassword("hunter3")}
	type wrapper struct {
		P Password
		L *Login7
	}
	var outs []string
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%10s", "%T"} {
		outs = append(outs, fmt.Sprintf(verb, p), fmt.Sprintf(verb, l), fmt.Sprintf(verb, *l),
			fmt.Sprintf(verb, wrapper{p, l}), fmt.Sprintf(verb, []Password{p}), fmt.Sprintf(verb, &p))
	}
	outs = append(outs, p.String(), p.GoString(), l.String(), fmt.Sprint(p), fmt.Sprintln(l))
	j, _ := json.Marshal(wrapper{P: p, L: l})
	outs = append(outs, string(j))
	for _, o := range outs {
		if strings.Contains(o, "hunter") || strings.Contains(o, "68756e746572") || strings.Contains(o, "68756E746572") {
			t.Errorf("leak: %s", o)
		}
	}
	if !strings.Contains(fmt.Sprintf("%v", p), redacted) || !strings.Contains(l.String(), redacted) {
		t.Error("no redaction marker")
	}
	if p.Reveal() != "hunter2" || !p.Equal(NewPassword("hunter2")) {
		t.Error("Reveal")
	}
}

func TestLogin7RoundTrip(t *testing.T) {
	full := &Login7{
		TDSVersion: TDSVersion74, PacketSize: 8000, ClientProgVer: 0x07000000, ClientPID: 4242, ConnectionID: 0,
		OptionFlags1: Login7UseDB | Login7SetLang, OptionFlags2: Login7ODBC | Login7Language, TypeFlags: Login7ReadOnlyIntent,
		OptionFlags3: Login7ChangePassword | Login7UnknownCollationHandling, ClientTimeZone: -480, ClientLCID: 0x409,
		HostName: "host-😀", UserName: "sa", Password: NewPassword("Str0ng!Pw"), AppName: "app", ServerName: `srv\inst`,
		CltIntName: "ODBC", Language: "us_english", Database: "db1", ClientID: [6]byte{1, 2, 3, 4, 5, 6},
		SSPI: []byte{9, 8, 7}, AtchDBFile: `c:\x.mdf`, ChangePassword: NewPassword("n3w"),
		Features: []Feature{{FeatureSessionRecovery, nil}, {FeatureFedAuth, []byte{0x05, 1, 2}}, {FeatureUTF8Support, []byte{}}},
	}
	bigSSPI := &Login7{TDSVersion: TDSVersion74, SSPI: bytes.Repeat([]byte{0xEE}, 70000), OptionFlags2: Login7IntSecurity}
	emptyExt := &Login7{TDSVersion: TDSVersion73B, OptionFlags3: Login7Extension}
	for i, l := range []*Login7{full, bigSSPI, emptyExt, {}} {
		b := l.AppendLogin7(nil)
		got, err := DecodeLogin7(b)
		if err != nil {
			t.Fatalf("%d: %v", i, err)
		}
		if len(l.Features) > 0 {
			if got.OptionFlags3&Login7Extension == 0 {
				t.Fatalf("%d: fExtension not set", i)
			}
			got.OptionFlags3 &^= Login7Extension
		}
		got.FeatureExtRaw = nil
		if len(got.SSPI) == 0 {
			got.SSPI = l.SSPI
		}
		if !reflect.DeepEqual(normFeatures(got), normFeatures(l)) {
			t.Fatalf("%d: round trip\n got %v\nwant %v", i, got, l)
		}
		if !bytes.Equal(got.AppendLogin7(nil), b) {
			t.Fatalf("%d: second encode differs", i)
		}
	}
}

func normFeatures(l *Login7) *Login7 {
	c := *l
	for i := range c.Features {
		if len(c.Features[i].Data) == 0 {
			c.Features[i].Data = nil
		}
	}
	if len(c.Features) == 0 {
		c.Features = nil
	}
	return &c
}

func TestLogin7Rewrite(t *testing.T) {
	l, err := DecodeLogin7(unhex(t, goMssqldbLogin7))
	if err != nil {
		t.Fatal(err)
	}
	l.PacketSize = 16383
	l.ServerName = "backend-01.internal"
	l.Features = append(l.Features, Feature{FeatureSessionRecovery, []byte{1}})
	l.RemoveFeature(FeatureSessionRecovery)
	l.Features = append(l.Features, Feature{FeatureUTF8Support, nil})
	l2, err := DecodeLogin7(l.AppendLogin7(nil))
	if err != nil {
		t.Fatal(err)
	}
	if l2.PacketSize != 16383 || l2.ServerName != "backend-01.internal" || l2.Password.Reveal() != "secret" ||
		l2.Database != "" || len(l2.Features) != 1 || l2.Features[0].ID != FeatureUTF8Support {
		t.Fatalf("%v", l2)
	}
	if _, ok := l2.Feature(FeatureSessionRecovery); ok {
		t.Fatal("feature not removed")
	}
}

func TestLogin7Errors(t *testing.T) {
	good := (&Login7{HostName: "h", Features: []Feature{{FeatureUTF8Support, nil}}}).AppendLogin7(nil)
	mut := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	tests := []struct {
		name string
		in   []byte
	}{
		{"short", good[:50]},
		{"length mismatch", mut(func(b []byte) []byte { b[0]++; return b })},
		{"host out of range", mut(func(b []byte) []byte { b[38] = 0xFF; return b })},
		{"ib into header", mut(func(b []byte) []byte { b[36] = 10; return b })},
		{"feature offset bad", mut(func(b []byte) []byte {
			ib := int(b[56]) | int(b[57])<<8
			b[ib], b[ib+1] = 0xFF, 0xFF
			return b
		})},
		{"feature unterminated", mut(func(b []byte) []byte { return b[:len(b)-1] })},
	}
	for _, tt := range tests {
		if tt.name == "feature unterminated" {
			// keep Length consistent so the feature parser is what fails
			tt.in[0]--
		}
		if _, err := DecodeLogin7(tt.in); err == nil {
			t.Errorf("%s: no error", tt.name)
		}
	}
}

func FuzzLogin7(f *testing.F) {
	f.Add(unhex(f, goMssqldbLogin7))
	f.Add((&Login7{TDSVersion: TDSVersion74, HostName: "h", Password: NewPassword("p"),
		Features: []Feature{{FeatureFedAuth, []byte{1, 2, 3}}}, SSPI: []byte{1}}).AppendLogin7(nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		l, err := DecodeLogin7(b)
		if err != nil {
			return
		}
		_ = l.String()
		b2 := l.AppendLogin7(nil)
		l2, err := DecodeLogin7(b2)
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		if b3 := l2.AppendLogin7(nil); !bytes.Equal(b2, b3) {
			t.Fatalf("encoding not stable")
		}
	})
}
