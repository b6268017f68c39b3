package main

import (
	"crypto/tls"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/tdspool/tdspool/standin"
)

// Demo login and data location. The login is documented in the README.
const (
	demoUser     = "demo"
	demoPassword = "Demo-Passw0rd"
)

var backendDataDir = flag.String("backend-data", filepath.Join(os.TempDir(), "tdspool-demo"),
	"directory for the demo backends' SQLite files (one subdirectory per bucket; data survives restarts)")

// backendEncryption is each demo bucket's server policy, to show both backend legs:
// bucket-001 takes any client (module-owned leg in plaintext), bucket-002 forces encryption
// (it refuses a plaintext login; tdspool reaches it over TDS 7 full TLS on the module-owned
// leg), bucket-003 speaks TDS 8 only (module-owned leg, TDS 8) and bucket-004 takes any
// client (reached over tcp_proxy in plaintext).
func backendEncryption(i int) standin.Encryption {
	switch i {
	case 1:
		return standin.EncryptionRequired
	case 2:
		return standin.EncryptionStrict
	}
	return standin.EncryptionOptional
}

// startBackend serves one demo bucket with the SQL Server stand-in: SQL Server's protocol on
// SQLite, login demo/Demo-Passw0rd, databases master and tenant_<letter> (bucket-001 →
// tenant_a, ...), @@SERVERNAME = the bucket name, the given encryption policy, and the demo's
// certificate (cert may be nil: a self-signed one of its own).
func startBackend(name string, port int, enc standin.Encryption, cert *tls.Certificate) (stop func(), err error) {
	srv, err := standin.New(standin.Config{
		Addr:        net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		ServerName:  name,
		Users:       map[string]string{demoUser: demoPassword},
		Databases:   []string{tenantDB(name)},
		DataDir:     filepath.Join(*backendDataDir, name),
		Encryption:  enc,
		Certificate: cert,
		Logf:        log.New(os.Stderr, "["+name+"] ", log.LstdFlags).Printf,
	})
	if err != nil {
		return nil, err
	}
	if err := srv.Start(); err != nil {
		return nil, err
	}
	return func() { srv.Close() }, nil
}

// tenantDB derives the bucket's tenant database: bucket-001 → tenant_a,
// bucket-002 → tenant_b, ... (bucket-027 → tenant_aa).
func tenantDB(bucket string) string {
	n, err := strconv.Atoi(bucket[strings.LastIndexByte(bucket, '-')+1:])
	if err != nil || n < 1 {
		return "tenant_" + strings.NewReplacer("-", "_").Replace(bucket)
	}
	s := ""
	for n > 0 {
		n--
		s = string(rune('a'+n%26)) + s
		n /= 26
	}
	return fmt.Sprintf("tenant_%s", s)
}
