// Command standin serves one or more TDS test backends (package standin):
// SQL Server's wire protocol executing on SQLite, one loopback port and one
// data directory per bucket.
//
//	go run ./tds/standin/cmd/standin -buckets 3 -port 14331
//
// serves bucket-001 on 14331 with databases master and tenant_a, bucket-002
// on 14332 with tenant_b, and so on; Ctrl-C stops them.
package main

import (
	"crypto/tls"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/tdspool/tdspool/internal/testcert"
	"github.com/tdspool/tdspool/standin"
)

func main() {
	host := flag.String("host", "127.0.0.1", "address to listen on")
	port := flag.Int("port", 14331, "port of the first bucket; the next buckets use the following ports")
	buckets := flag.Int("buckets", 1, "number of buckets to serve")
	first := flag.Int("first", 1, "number of the first bucket (a container serving only bucket-002 says -first 2)")
	prefix := flag.String("prefix", "bucket-", "bucket name prefix; names are <prefix>001, <prefix>002, ... (also @@SERVERNAME)")
	dbs := flag.String("databases", "", "comma-separated databases per bucket besides master (default: tenant_a for bucket 1, tenant_b for 2, ...)")
	user := flag.String("user", "demo", "SQL login")
	password := flag.String("password", "Demo-Passw0rd", "password of -user")
	dataDir := flag.String("data", filepath.Join(os.TempDir(), "tdspool-demo"), "data directory; each bucket uses <data>/<bucket>/<db>.sqlite")
	encryption := flag.String("encryption", "optional", "TLS policy: optional (login-only/full/none as the client asks, and TDS 8), off, required, strict (TDS 8 only)")
	certFile := flag.String("cert", "", "PEM certificate for TLS (default: a generated self-signed one)")
	keyFile := flag.String("key", "", "PEM private key for -cert")
	writeCA := flag.String("write-ca", "", "write the generated certificate to this file, for clients that verify it")
	maxConns := flag.Int("max-connections", 0, "logged-in sessions per bucket before logins fail with error 17809 (0 = unlimited)")
	delay := flag.Duration("delay", 0, "delay added before every request")
	loginDelay := flag.Duration("login-delay", 0, "time spent before each password check (models authentication cost)")
	mars := flag.Bool("mars", false, "offer MARS (PRELOGIN MARS=1 and SMP sessions) to clients that ask")
	redirect := flag.String("redirect", "", "host:port every login is routed to (routing ENVCHANGE), e.g. to model Azure SQL redirect")
	verbose := flag.Bool("v", false, "log connection-level diagnostics")
	flag.Parse()

	enc, err := standin.ParseEncryption(*encryption)
	if err != nil {
		log.Fatal(err)
	}
	var cert *tls.Certificate
	if *certFile != "" {
		c, err := tls.LoadX509KeyPair(*certFile, *keyFile)
		if err != nil {
			log.Fatal(err)
		}
		cert = &c
	} else if *writeCA != "" {
		// One generated pair for every bucket, so one CA file serves all.
		pair, err := testcert.New("localhost", *host, "127.0.0.1", "::1")
		if err != nil {
			log.Fatal(err)
		}
		if err := os.WriteFile(*writeCA, pair.CertPEM, 0o644); err != nil {
			log.Fatal(err)
		}
		cert = &pair.TLS
	}
	var servers []*standin.Server
	for i := 0; i < *buckets; i++ {
		n := *first + i
		name := fmt.Sprintf("%s%03d", *prefix, n)
		databases := []string{tenant(n)}
		if *dbs != "" {
			databases = strings.Split(*dbs, ",")
		}
		cfg := standin.Config{
			Addr:           net.JoinHostPort(*host, strconv.Itoa(*port+i)),
			ServerName:     name,
			Users:          map[string]string{*user: *password},
			Databases:      databases,
			DataDir:        filepath.Join(*dataDir, name),
			MaxConnections: *maxConns,
			Delay:          *delay,
			Encryption:     enc,
			Certificate:    cert,
			LoginDelay:     *loginDelay,
			MARS:           *mars,
			Redirect:       *redirect,
			Admins:         []string{*user},
		}
		if *verbose {
			cfg.Logf = log.New(os.Stderr, "["+name+"] ", log.LstdFlags).Printf
		}
		srv, err := standin.New(cfg)
		if err != nil {
			log.Fatal(err)
		}
		if err := srv.Start(); err != nil {
			log.Fatalf("%s: %v", name, err)
		}
		servers = append(servers, srv)
		log.Printf("%s: listening on %s, databases master,%s, encryption %s, data %s", name, srv.Addr(), strings.Join(databases, ","), enc, cfg.DataDir)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	<-sig
	done := make(chan struct{})
	go func() {
		for _, s := range servers {
			s.Close()
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		log.Print("shutdown timed out")
	}
}

// tenant is tenant_a for 1, tenant_b for 2, ... tenant_aa for 27.
func tenant(n int) string {
	s := ""
	for n > 0 {
		n--
		s = string(rune('a'+n%26)) + s
		n /= 26
	}
	return "tenant_" + s
}
