package tds

import (
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestFreeTDSCapture runs FreeTDS's tsql against the mini server, once per
// encryption setting, and checks our decoders on what it sent. It skips
// when tsql is not installed.
func TestFreeTDSCapture(t *testing.T) {
	tsql, err := exec.LookPath("tsql")
	if err != nil {
		t.Skip("tsql (freetds-bin) not installed")
	}
	tests := []struct {
		encryption string // freetds.conf "encryption"
		want       EncryptOption
		result     EncryptionResult
	}{
		{"off", EncryptNotSup, EncryptionNone},
		{"request", EncryptOff, EncryptionLoginOnly},
		{"require", EncryptOn, EncryptionFull},
	}
	for _, tt := range tests {
		for _, maxTLS := range []uint16{tls.VersionTLS12} { // TLS 1.3: see NewTLSServer
			t.Run(tt.encryption+"-"+tls.VersionName(maxTLS), func(t *testing.T) {
				s := startMiniServer(t, EncryptOff)
				s.maxTLS = maxTLS
				dir := t.TempDir()
				conf := filepath.Join(dir, "freetds.conf")
				os.WriteFile(conf, []byte(fmt.Sprintf("[mini]\n\thost = 127.0.0.1\n\tport = %d\n\ttds version = 7.4\n\tencryption = %s\n",
					s.port(), tt.encryption)), 0o644)
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				cmd := exec.CommandContext(ctx, tsql, "-S", "mini", "-U", "sa", "-P", "Secret!1", "-D", "app")
				cmd.Env = append(os.Environ(), "FREETDSCONF="+conf, "HOME="+dir)
				cmd.Stdin = strings.NewReader("select 1\ngo\nexit\n")
				out, err := cmd.CombinedOutput()
				s.check(t)
				s.mu.Lock()
				defer s.mu.Unlock()
				if len(s.prelogin) == 0 {
					t.Fatalf("no PRELOGIN captured (tsql: %v)\n%s", err, out)
				}
				p, derr := DecodePrelogin(s.prelogin[0])
				if derr != nil {
					t.Fatal(derr)
				}
				if p.Encryption.Base() != tt.want || s.results[0] != tt.result {
					t.Fatalf("sent %s, negotiated %s", p.Encryption, s.results[0])
				}
				if len(s.login7) == 0 {
					t.Fatalf("no LOGIN7 captured (tsql: %v)\n%s", err, out)
				}
				l, derr := DecodeLogin7(s.login7[0])
				if derr != nil {
					t.Fatal(derr)
				}
				if l.UserName != "sa" || l.Password.Reveal() != "Secret!1" || l.Database != "app" {
					t.Fatalf("%v", l)
				}
				if len(s.requests) == 0 {
					t.Fatalf("no request after login (tsql: %v)\n%s", err, out)
				}
				if os.Getenv("TDS_UPDATE_CAPTURES") != "" && tt.encryption == "off" {
					dir := filepath.Join("testdata", "captures")
					os.WriteFile(filepath.Join(dir, "freetds-prelogin.bin"), s.prelogin[0], 0o644)
					login := append([]byte(nil), s.login7[0]...)
					copy(login[16:20], []byte{0, 0, 0, 0}) // pid
					os.WriteFile(filepath.Join(dir, "freetds-login7.bin"), login, 0o644)
				}
			})
		}
	}
}
