package main

import (
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"

	"github.com/tdspool/tdspool/tds/tdstest"
)

// writeDemoCert writes a fresh self-signed certificate for localhost/127.0.0.1 and its key,
// for the demo listener's TLS (TDS 7 in the filter, TDS 8 in Envoy).
func writeDemoCert(dir string) (certFile, keyFile string, err error) {
	cert, certPEM, err := tdstest.SelfSignedCert("localhost", "127.0.0.1")
	if err != nil {
		return "", "", err
	}
	der, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		return "", "", err
	}
	certFile, keyFile = filepath.Join(dir, "demo-cert.pem"), filepath.Join(dir, "demo-key.pem")
	if err := os.WriteFile(certFile, certPEM, 0o644); err != nil {
		return "", "", err
	}
	return certFile, keyFile, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
}
