package main

import (
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

// startBackend serves one demo bucket with the TDS test backend
// (tds/standin): SQL Server's protocol on SQLite, login demo/Demo-Passw0rd,
// databases master and tenant_<letter> (bucket-001 → tenant_a, ...),
// @@SERVERNAME = the bucket name, TLS optional (self-signed certificate).
func startBackend(name string, port int) (stop func(), err error) {
	srv, err := standin.New(standin.Config{
		Addr:       net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		ServerName: name,
		Users:      map[string]string{demoUser: demoPassword},
		Databases:  []string{tenantDB(name)},
		DataDir:    filepath.Join(*backendDataDir, name),
		Encryption: standin.EncryptionOptional,
		Logf:       log.New(os.Stderr, "["+name+"] ", log.LstdFlags).Printf,
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
