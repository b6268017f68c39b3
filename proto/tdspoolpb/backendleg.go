package tdspoolpb

import (
	"crypto/x509"
	"errors"
	"net"
	"os"
	"time"
)

// validateBackendLeg checks a bucket's backend leg. The refused combinations:
//   - TDS7_LOGIN_ONLY or TDS7_FULL on the TCP_PROXY leg: TDS 7.x TLS travels inside PRELOGIN
//     packets, which Envoy's upstream TLS cannot produce; use MODULE.
//   - backend_addresses, backend_tls, connect_timeout or tcp_keepalive on the TCP_PROXY leg:
//     that leg's address, TLS and timeouts are the Envoy cluster's.
//   - MODULE without backend_addresses, or with an address that is not host:port.
//   - backend_tls with PLAINTEXT (nothing to verify); trust_any_certificate with ca_file;
//     a ca_file that cannot be read or holds no certificate.
func validateBackendLeg(add func(path, format string, args ...any), path string, b *Bucket) {
	enc := b.BackendEncryption
	if b.BackendLeg == BackendLeg_TCP_PROXY {
		if enc == BackendEncryption_TDS7_LOGIN_ONLY || enc == BackendEncryption_TDS7_FULL {
			add(path+".backend_encryption", "%s needs backend_leg MODULE: TDS 7.x TLS travels inside PRELOGIN packets, which Envoy's upstream TLS cannot do (TDS8 works on TCP_PROXY through the cluster's TLS transport socket)", enc)
		}
		for _, f := range []struct {
			name string
			set  bool
		}{{"backend_addresses", len(b.BackendAddresses) > 0}, {"backend_tls", b.BackendTls != nil},
			{"connect_timeout", b.ConnectTimeout != nil}, {"tcp_keepalive", b.TcpKeepalive != nil}} {
			if f.set {
				add(path+"."+f.name, "only used by backend_leg MODULE; the TCP_PROXY leg takes it from the Envoy cluster")
			}
		}
		return
	}
	if len(b.BackendAddresses) == 0 {
		add(path+".backend_addresses", "required with backend_leg MODULE: host:port of the instance")
	}
	for i, a := range b.BackendAddresses {
		if _, port, err := net.SplitHostPort(a); err != nil || port == "" {
			add(path+".backend_addresses["+itoa(i)+"]", "%q is not host:port", a)
		}
	}
	checkDuration(add, path+".connect_timeout", b.ConnectTimeout, time.Millisecond, time.Minute)
	checkDuration(add, path+".tcp_keepalive", b.TcpKeepalive, time.Second, time.Hour)
	t := b.BackendTls
	if t == nil {
		return
	}
	if enc == BackendEncryption_PLAINTEXT {
		add(path+".backend_tls", "set, but backend_encryption is PLAINTEXT: nothing would be verified")
	}
	if t.TrustAnyCertificate && t.CaFile != "" {
		add(path+".backend_tls.trust_any_certificate", "refused together with ca_file: either verify against the CA or (tests only) trust any certificate")
	}
	if t.CaFile != "" {
		if _, err := LoadCAFile(t.CaFile); err != nil {
			add(path+".backend_tls.ca_file", "%v", err)
		}
	}
}

// LoadCAFile reads a PEM file of root certificates.
func LoadCAFile(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, errors.Unwrap(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, errors.New("no PEM certificate in " + file)
	}
	return pool, nil
}

func itoa(i int) string {
	const digits = "0123456789"
	if i < 10 {
		return digits[i : i+1]
	}
	return itoa(i/10) + digits[i%10:i%10+1]
}
