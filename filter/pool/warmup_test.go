package pool

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tdspool/tdspool/tds"
)

func TestSecretSource(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	t.Setenv("TDSPOOL_TEST_WARM_SECRET", "from-env")
	t.Setenv("TDSPOOL_TEST_EMPTY_SECRET", "")
	tests := []struct {
		name    string
		src     SecretSource
		want    string
		errPart string
	}{
		{"file", SecretSource{File: write("s1", "s3cret")}, "s3cret", ""},
		{"file with a trailing newline", SecretSource{File: write("s2", "s3cret\n")}, "s3cret", ""},
		{"file with CRLF", SecretSource{File: write("s3", "s3cret\r\n")}, "s3cret", ""},
		{"env", SecretSource{Env: "TDSPOOL_TEST_WARM_SECRET"}, "from-env", ""},
		{"neither", SecretSource{}, "", "neither"},
		{"both", SecretSource{File: "x", Env: "y"}, "", "both"},
		{"missing file", SecretSource{File: filepath.Join(dir, "nope")}, "", "reading secret file"},
		{"empty file", SecretSource{File: write("s4", "\n")}, "", "empty"},
		{"unset env", SecretSource{Env: "TDSPOOL_TEST_UNSET_SECRET"}, "", "not set"},
		{"empty env", SecretSource{Env: "TDSPOOL_TEST_EMPTY_SECRET"}, "", "empty"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pw, err := tc.src.Load()
			if tc.errPart != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errPart) {
					t.Fatalf("err = %v, want one mentioning %q", err, tc.errPart)
				}
				if tc.src.Check() == nil {
					t.Fatal("Check passes a bad source")
				}
				return
			}
			if err != nil || pw.Reveal() != tc.want {
				t.Fatalf("Load = %v, %v", pw, err)
			}
			if strings.Contains(err2str(tc.src.Check()), tc.want) {
				t.Fatal("Check leaks the secret")
			}
		})
	}
	if _, err := (SecretSource{}).Load(); !errors.Is(err, ErrNoSecret) {
		t.Fatalf("err = %v", err)
	}
}

func err2str(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// The warm-up login made from a client's LOGIN7 falls in the key of that
// client when the operator's credentials are the client's.
func TestWarmupLoginMatchesClientKey(t *testing.T) {
	h := mustHasher(t)
	client := baseLogin()
	client.TDSVersion = tds.TDSVersion80
	client.Features = append(client.Features, tds.Feature{ID: tds.FeatureSessionRecovery, Data: []byte{1}})
	w := Warmup{User: client.UserName, Database: client.Database, AppName: client.AppName, Language: client.Language}
	warm := w.Login7(client, tds.NewPassword("Demo-Passw0rd"))
	if warm.HostName == client.HostName || warm.ClientPID != 0 || warm.TDSVersion != tds.TDSVersion74 {
		t.Fatalf("per-client fields kept: %v", warm)
	}
	if _, ok := warm.Feature(tds.FeatureSessionRecovery); ok {
		t.Fatal("warm-up login asks for SESSIONRECOVERY")
	}
	if _, ok := client.Feature(tds.FeatureSessionRecovery); !ok {
		t.Fatal("the template was modified")
	}
	kc, _ := KeyFromLogin7("b", client, h)
	kw, _ := KeyFromLogin7("b", warm, h)
	if kc.Identity != kw.Identity || !kc.Credential.Equal(kw.Credential) {
		t.Fatalf("keys differ\nclient %v\nwarm   %v", kc, kw)
	}
	// Encodable as a LOGIN7.
	if _, err := tds.DecodeLogin7(warm.AppendLogin7(nil)); err != nil {
		t.Fatal(err)
	}
}
