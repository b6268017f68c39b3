package testcert

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"testing"
)

func TestWriteMakesAPairClientsCanVerify(t *testing.T) {
	certFile, keyFile, err := Write(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	pemBytes, _ := os.ReadFile(certFile)
	verify(t, pair, pemBytes, "localhost", "127.0.0.1")
}

func TestNewCoversEveryHostAndMatchesItsPEM(t *testing.T) {
	p, err := New("db.example", "::1", "10.1.2.3")
	if err != nil {
		t.Fatal(err)
	}
	fromPEM, err := tls.X509KeyPair(p.CertPEM, p.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	if string(fromPEM.Certificate[0]) != string(p.TLS.Certificate[0]) {
		t.Error("PEM and tls.Certificate hold different certificates")
	}
	verify(t, p.TLS, p.CertPEM, "db.example", "::1", "10.1.2.3")
	leaf, _ := x509.ParseCertificate(p.TLS.Certificate[0])
	if err := leaf.VerifyHostname("localhost"); err == nil {
		t.Error("a certificate for explicit hosts also covers localhost")
	}
}

func verify(t *testing.T, pair tls.Certificate, caPEM []byte, names ...string) {
	t.Helper()
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatal("CertPEM holds no certificate")
	}
	for _, name := range names {
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: pool}); err != nil {
			t.Errorf("verify for %s: %v", name, err)
		}
	}
}
