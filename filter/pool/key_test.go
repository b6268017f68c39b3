package pool

import (
	"fmt"
	"strings"
	"testing"

	"github.com/tdspool/tdspool/tds"
)

func baseLogin() *tds.Login7 {
	return &tds.Login7{TDSVersion: tds.TDSVersion74, PacketSize: 4096, ClientProgVer: 7, ClientPID: 100, ConnectionID: 1,
		OptionFlags1: 0xE0, OptionFlags2: 0x03, TypeFlags: 0, OptionFlags3: tds.Login7Extension, ClientTimeZone: -60,
		ClientLCID: 0x409, HostName: "app-1", UserName: "demo", Password: tds.NewPassword("Demo-Passw0rd"),
		AppName: "billing", ServerName: "bucket-001", CltIntName: "go-mssqldb", Language: "", Database: "tenant_a",
		ClientID: [6]byte{1, 2, 3, 4, 5, 6},
		Features: []tds.Feature{{ID: tds.FeatureUTF8Support, Data: []byte{}}, {ID: tds.FeatureColumnEncryption, Data: []byte{1}}}}
}

func mustHasher(t testing.TB) *Hasher {
	h, err := NewHasher()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestKeyFields(t *testing.T) {
	h := mustHasher(t)
	base, d := KeyFromLogin7("bucket-001", baseLogin(), h)
	if d != Poolable {
		t.Fatalf("base login is %s", d)
	}
	tests := []struct {
		name   string
		bucket string
		change func(l *tds.Login7)
		same   bool
	}{
		// Part of the key: a change means another backend.
		{"bucket", "bucket-002", func(l *tds.Login7) {}, false},
		{"user", "", func(l *tds.Login7) { l.UserName = "other" }, false},
		{"password", "", func(l *tds.Login7) { l.Password = tds.NewPassword("Demo-Passw0rd!") }, false},
		{"database", "", func(l *tds.Login7) { l.Database = "tenant_b" }, false},
		{"language", "", func(l *tds.Login7) { l.Language = "Deutsch" }, false},
		{"TDS version", "", func(l *tds.Login7) { l.TDSVersion = tds.TDSVersion73B }, false},
		{"option flags 1", "", func(l *tds.Login7) { l.OptionFlags1 &^= tds.Login7SetLang }, false},
		{"option flags 2 (ODBC)", "", func(l *tds.Login7) { l.OptionFlags2 &^= tds.Login7ODBC }, false},
		{"read-only intent", "", func(l *tds.Login7) { l.TypeFlags |= tds.Login7ReadOnlyIntent }, false},
		{"option flags 3 (collation handling)", "", func(l *tds.Login7) { l.OptionFlags3 |= tds.Login7UnknownCollationHandling }, false},
		{"LCID", "", func(l *tds.Login7) { l.ClientLCID = 0x407 }, false},
		{"feature removed", "", func(l *tds.Login7) { l.Features = l.Features[:1] }, false},
		{"feature data", "", func(l *tds.Login7) { l.Features[1].Data = []byte{2} }, false},
		{"app name", "", func(l *tds.Login7) { l.AppName = "reports" }, false},
		// Not part of the key.
		{"host name", "", func(l *tds.Login7) { l.HostName = "app-2" }, true},
		{"PID and connection id", "", func(l *tds.Login7) { l.ClientPID, l.ConnectionID = 200, 2 }, true},
		{"client id", "", func(l *tds.Login7) { l.ClientID = [6]byte{9} }, true},
		{"server name", "", func(l *tds.Login7) { l.ServerName = "bucket-001.example" }, true},
		{"client library", "", func(l *tds.Login7) { l.CltIntName, l.ClientProgVer = "ODBC", 9 }, true},
		{"packet size", "", func(l *tds.Login7) { l.PacketSize = 32767 }, true},
		{"time zone", "", func(l *tds.Login7) { l.ClientTimeZone = 120 }, true},
		{"TDS 8 is 7.4 to the backend", "", func(l *tds.Login7) { l.TDSVersion = tds.TDSVersion80 }, true},
		{"SESSIONRECOVERY asked", "", func(l *tds.Login7) {
			l.Features = append(l.Features, tds.Feature{ID: tds.FeatureSessionRecovery, Data: []byte{1, 2}})
		}, true},
		{"feature order", "", func(l *tds.Login7) { l.Features[0], l.Features[1] = l.Features[1], l.Features[0] }, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := baseLogin()
			tc.change(l)
			bucket := "bucket-001"
			if tc.bucket != "" {
				bucket = tc.bucket
			}
			k, d := KeyFromLogin7(bucket, l, h)
			if d != Poolable {
				t.Fatalf("dedicated: %s", d)
			}
			same := k.Identity == base.Identity && k.Credential.Equal(base.Credential)
			if same != tc.same {
				t.Fatalf("same key = %v, want %v\nbase %v\n got %v", same, tc.same, base, k)
			}
		})
	}
}

func TestDedicatedReason(t *testing.T) {
	tests := []struct {
		name   string
		change func(l *tds.Login7)
		want   Dedicated
	}{
		{"SQL login", func(l *tds.Login7) {}, Poolable},
		{"integrated flag", func(l *tds.Login7) { l.OptionFlags2 |= tds.Login7IntSecurity }, DedicatedIntegratedAuth},
		{"SSPI bytes", func(l *tds.Login7) { l.SSPI = []byte{0x4E, 0x54} }, DedicatedIntegratedAuth},
		{"FEDAUTH", func(l *tds.Login7) {
			l.Features = append(l.Features, tds.Feature{ID: tds.FeatureFedAuth, Data: []byte{2}})
		}, DedicatedFederatedAuth},
		{"change password flag", func(l *tds.Login7) { l.OptionFlags3 |= tds.Login7ChangePassword }, DedicatedChangePassword},
		{"change password text", func(l *tds.Login7) { l.ChangePassword = tds.NewPassword("new") }, DedicatedChangePassword},
		{"AttachDBFile", func(l *tds.Login7) { l.AtchDBFile = `C:\data\x.mdf` }, DedicatedAttachDBFile},
		{"user instance", func(l *tds.Login7) { l.OptionFlags3 |= tds.Login7UserInstance }, DedicatedUserInstance},
	}
	h := mustHasher(t)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := baseLogin()
			tc.change(l)
			if got := DedicatedReason(l); got != tc.want {
				t.Fatalf("DedicatedReason = %s, want %s", got, tc.want)
			}
			k, d := KeyFromLogin7("b", l, h)
			if d != tc.want || (d != Poolable && (k != Key{})) {
				t.Fatalf("KeyFromLogin7 = %v, %s", k, d)
			}
		})
	}
}

func TestCredential(t *testing.T) {
	h1, h2 := mustHasher(t), mustHasher(t)
	pw := tds.NewPassword("Demo-Passw0rd")
	a, b := h1.Credential("demo", pw), h1.Credential("demo", pw)
	if !a.Equal(b) {
		t.Fatal("same user and password, different credentials")
	}
	for name, c := range map[string]Credential{
		"other password":           h1.Credential("demo", tds.NewPassword("Demo-Passw0rd2")),
		"other user":               h1.Credential("demo2", pw),
		"boundary moved":           h1.Credential("demoD", tds.NewPassword("emo-Passw0rd")),
		"another process's hasher": h2.Credential("demo", pw),
		"zero":                     {},
	} {
		if a.Equal(c) || c.Equal(a) {
			t.Errorf("%s: equal", name)
		}
	}
	if (Credential{}).Equal(Credential{}) {
		t.Error("two zero credentials are equal")
	}
}

// No formatting path shows the password or its hash.
func TestKeyRedaction(t *testing.T) {
	h := mustHasher(t)
	l := baseLogin()
	k, _ := KeyFromLogin7("bucket-001", l, h)
	sum := fmt.Sprintf("%x", k.Credential.sum[:4])
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x", "%q"} {
		for _, v := range []any{k, &k, k.Credential} {
			out := fmt.Sprintf(verb, v)
			if strings.Contains(out, "Demo-Passw0rd") || strings.Contains(out, sum) {
				t.Errorf("%s of %T leaks: %s", verb, v, out)
			}
		}
	}
	if s := k.String(); !strings.Contains(s, "[REDACTED]") || !strings.Contains(s, `user="demo"`) ||
		!strings.Contains(s, "UTF8_SUPPORT") {
		t.Errorf("String() = %s", s)
	}
}

func TestTaintNames(t *testing.T) {
	for _, tt := range Taints() {
		if strings.HasPrefix(tt.String(), "Taint(") {
			t.Errorf("taint %d has no name", tt)
		}
	}
}
