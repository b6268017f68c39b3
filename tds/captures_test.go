package tds

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// The captures are bytes real drivers sent, recorded by the driver tests in
// standin/drivers_test.go (TDS_UPDATE_CAPTURES=1 refreshes them).

// TestCapturedGoMssqldb decodes the committed captures.
func TestCapturedGoMssqldb(t *testing.T) {
	dir := filepath.Join("testdata", "captures")
	pre, err := os.ReadFile(filepath.Join(dir, "go-mssqldb-prelogin.bin"))
	if err != nil {
		t.Skip("no captures")
	}
	p, err := DecodePrelogin(pre)
	if err != nil || p.Encryption != EncryptNotSup {
		t.Fatalf("%v %v", p, err)
	}
	if !bytes.Equal(p.AppendPrelogin(nil), pre) {
		t.Error("PRELOGIN re-encode differs")
	}
	login, err := os.ReadFile(filepath.Join(dir, "go-mssqldb-login7.bin"))
	if err != nil {
		t.Fatal(err)
	}
	l, err := DecodeLogin7(login)
	if err != nil || l.UserName != "sa" || l.CltIntName != "go-mssqldb" {
		t.Fatalf("%v %v", l, err)
	}
	if !bytes.Equal(l.AppendLogin7(nil), login) {
		t.Error("LOGIN7 re-encode differs")
	}
	reqs, _ := filepath.Glob(filepath.Join(dir, "go-mssqldb-req*.bin"))
	if len(reqs) == 0 {
		t.Fatal("no request captures")
	}
	for _, name := range reqs {
		b, _ := os.ReadFile(name)
		m := Message{Type: PacketType(b[0]), Status: PacketStatus(b[1]), Payload: b[2:]}
		if _, err := ClassifyRequest(&m); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestCapturedFreeTDS decodes the committed FreeTDS (tsql, TDS 7.4) captures.
func TestCapturedFreeTDS(t *testing.T) {
	dir := filepath.Join("testdata", "captures")
	pre, err := os.ReadFile(filepath.Join(dir, "freetds-prelogin.bin"))
	if err != nil {
		t.Skip("no captures")
	}
	p, err := DecodePrelogin(pre)
	if err != nil || p.Encryption != EncryptNotSup || !p.HasMARS {
		t.Fatalf("%v %v", p, err)
	}
	if !bytes.Equal(p.AppendPrelogin(nil), pre) {
		t.Error("PRELOGIN re-encode differs")
	}
	login, _ := os.ReadFile(filepath.Join(dir, "freetds-login7.bin"))
	l, err := DecodeLogin7(login)
	if err != nil || l.UserName != "sa" || l.Password.Reveal() != "Secret!1" || l.Database != "app" {
		t.Fatalf("%v %v", l, err)
	}
	if got := l.AppendLogin7(nil); !bytes.Equal(got, login) {
		t.Logf("FreeTDS LOGIN7 re-encodes to a different layout (%d vs %d bytes); checking semantic equality", len(got), len(login))
		l2, err := DecodeLogin7(got)
		if err != nil || l2.String() != l.String() || !l2.Password.Equal(l.Password) {
			t.Fatalf("re-encoded LOGIN7 differs: %v", l2)
		}
	}
}
