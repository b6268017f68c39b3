// Command demo is `make run`: it starts redis-server, one demo backend per bucket and Envoy
// with the tdspool module on the documented loopback ports, prints where everything listens,
// and stops it all on Ctrl-C (or SIGTERM).
//
// Defaults: TDS listener 127.0.0.1:11433, Envoy admin 127.0.0.1:19901, Redis 127.0.0.1:16379,
// buckets bucket-001..004 on 127.0.0.1:14331..14334.
package main

import (
	"crypto/tls"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/tdspool/tdspool/deployments/envoyconfig"
	"github.com/tdspool/tdspool/internal/stack"
	"github.com/tdspool/tdspool/internal/testcert"
)

func main() {
	listenPort := flag.Int("listen", 11433, "TDS listener port")
	adminPort := flag.Int("admin", 19901, "Envoy admin port")
	redisPort := flag.Int("redis", 16379, "Redis port")
	firstBackend := flag.Int("backend", 14331, "port of bucket-001; the next buckets follow")
	buckets := flag.Int("buckets", 4, "number of demo buckets")
	maxConns := flag.Int("max-connections", 20, "fleet-wide connection cap per bucket")
	verbose := flag.Bool("v", false, "copy Envoy's log to stderr")
	printConfig := flag.Bool("print-config", false, "print the Envoy bootstrap the demo would run, and exit")
	flag.Parse()
	if *printConfig {
		cfg, err := demoEnvoyConfig(*listenPort, *adminPort, fmt.Sprintf("127.0.0.1:%d", *redisPort), *firstBackend, *buckets, *maxConns, "", "")
		if err != nil {
			log.Fatal(err)
		}
		os.Stdout.Write(cfg)
		return
	}
	if err := run(*listenPort, *adminPort, *redisPort, *firstBackend, *buckets, *maxConns, *verbose); err != nil {
		log.Fatalf("demo: %v", err)
	}
}

func run(listenPort, adminPort, redisPort, firstBackend, nBuckets, maxConns int, verbose bool) error {
	var stopAll []func()
	defer func() {
		for i := len(stopAll) - 1; i >= 0; i-- {
			stopAll[i]()
		}
	}()

	redis, err := stack.StartRedis(redisPort, nil)
	if err != nil {
		return err
	}
	stopAll = append(stopAll, redis.Stop)

	certDir, err := os.MkdirTemp("", "tdspool-demo-tls-")
	if err != nil {
		return err
	}
	stopAll = append(stopAll, func() { os.RemoveAll(certDir) })
	certFile, keyFile, err := testcert.Write(certDir)
	if err != nil {
		return err
	}
	// The stand-ins present the same certificate, so tdspool's module-owned legs verify them
	// against it (ca_file) as they would a real server's.
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return err
	}
	var names []string
	for i := 0; i < nBuckets; i++ {
		name := bucketName(i)
		stop, err := startBackend(name, firstBackend+i, backendEncryption(i), &cert)
		if err != nil {
			return fmt.Errorf("backend %s: %w", name, err)
		}
		stopAll = append(stopAll, stop)
		names = append(names, name)
	}
	cfg, err := demoEnvoyConfig(listenPort, adminPort, redis.Addr, firstBackend, nBuckets, maxConns, certFile, keyFile)
	if err != nil {
		return err
	}
	var tee *os.File
	if verbose {
		tee = os.Stderr
	}
	warmupPassword, ok := os.LookupEnv(warmupPasswordEnv)
	if !ok {
		warmupPassword = demoPassword
	}
	envoy, err := stack.StartEnvoy(stack.EnvoyOptions{Config: cfg, AdminPort: adminPort, Tee: tee,
		Env: []string{warmupPasswordEnv + "=" + warmupPassword}})
	if err != nil {
		return err
	}
	stopAll = append(stopAll, envoy.Stop)

	fmt.Printf(`tdspool demo is up.
  TDS listener   127.0.0.1:%d   (connect your SQL Server client here)
  Envoy admin    http://127.0.0.1:%d   /stats  /stats/prometheus  /ready
  Redis          %s
  Login          %s / %s   databases tenant_a (bucket-001), tenant_b (bucket-002), tenant_c (bucket-003), tenant_d (bucket-004)
  TLS            self-signed %s (trust it, or set TrustServerCertificate)
  Try            go-mssqldb: sqlserver://%s:%s@127.0.0.1:%d?database=tenant_b&encrypt=disable
                 FreeTDS:    tsql -H 127.0.0.1 -p %d -U %s -P %s -D tenant_c
`, listenPort, adminPort, redis.Addr, demoUser, demoPassword, certFile, demoUser, demoPassword, listenPort, listenPort, demoUser, demoPassword)
	for i, n := range names {
		fmt.Printf("  %-13s  127.0.0.1:%d  (%s, cap %d)\n", n, firstBackend+i, legDescription(i, clusterName(n)), maxConns)
	}
	fmt.Printf("  Envoy config   %s\nCtrl-C stops everything.\n", envoy.ConfigPath)

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	ticker := time.NewTicker(500 * time.Millisecond)
	defer ticker.Stop()
	for {
		select {
		case s := <-sig:
			fmt.Printf("\n%s: stopping Envoy, backends and Redis\n", s)
			return nil
		case <-ticker.C:
			if exited, err := envoy.Exited(); exited {
				return fmt.Errorf("envoy exited: %v\n%s", err, envoy.Output())
			}
			if exited, err := redis.Exited(); exited {
				return fmt.Errorf("redis-server exited: %v", err)
			}
		}
	}
}

func bucketName(i int) string { return fmt.Sprintf("bucket-%03d", i+1) }

// demoEnvoyConfig renders the demo's Envoy bootstrap; with a certificate it also accepts
// TDS 7 TLS (in the filter) and TDS 8 strict (in Envoy).
func demoEnvoyConfig(listenPort, adminPort int, redisAddr string, firstBackend, nBuckets, maxConns int, certFile, keyFile string) ([]byte, error) {
	var ebs []envoyconfig.Bucket
	var names []string
	for i := 0; i < nBuckets; i++ {
		names = append(names, bucketName(i))
		ebs = append(ebs, envoyconfig.Bucket{Cluster: clusterName(bucketName(i)), Port: firstBackend + i, MaxConnections: maxConns})
	}
	return envoyconfig.Render(envoyconfig.Params{
		ListenerPort: listenPort, AdminPort: adminPort,
		FilterConfigJSON: filterConfig(names, redisAddr, maxConns, certFile, keyFile, firstBackend),
		Buckets:          ebs,
		TDS8CertFile:     certFile, TDS8KeyFile: keyFile,
	})
}

func clusterName(bucket string) string {
	b := []byte(bucket)
	for i, c := range b {
		if c == '-' {
			b[i] = '_'
		}
	}
	return string(b)
}
