// Command kubecheck is the client side of `make image-test`: it runs next to the stack that
// deployments/kubernetes brings up (a container on the same network) and talks to tdspool
// with go-mssqldb.
//
//	kubecheck -addr tdspool:1433 -mode buckets   # every bucket answers as itself (retries while the stack starts)
//	kubecheck -addr tdspool:1433 -mode hold -for 15s   # one session, a query a second, all must succeed
//	kubecheck -addr tdspool:1433 -mode refused   # new connections must fail (a drained proxy)
//	kubecheck -addr tdspool:1433 -mode endpoints # from outside the pod: admin (9901) closed, 9902 serves /ready and metrics only
package main

import (
	"context"
	"database/sql"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	_ "github.com/microsoft/go-mssqldb"
)

// buckets is what the manifests serve: database → the stand-in bucket that holds it.
var buckets = []struct{ database, server string }{
	{"tenant_a", "bucket-001"},
	{"tenant_b", "bucket-002"},
	{"tenant_c", "bucket-003"},
}

func main() {
	addr := flag.String("addr", "tdspool:1433", "tdspool's TDS listener")
	mode := flag.String("mode", "buckets", "buckets | hold | refused | endpoints")
	holdFor := flag.Duration("for", 15*time.Second, "hold: how long to keep the session busy")
	wait := flag.Duration("wait", 90*time.Second, "buckets: how long to retry while the stack starts")
	flag.Parse()
	log.SetFlags(log.Ltime | log.Lmicroseconds)
	var err error
	switch *mode {
	case "buckets":
		err = checkBuckets(*addr, *wait)
	case "hold":
		err = hold(*addr, *holdFor)
	case "refused":
		err = refused(*addr)
	case "endpoints":
		err = endpoints(*addr)
	default:
		err = fmt.Errorf("unknown -mode %q", *mode)
	}
	if err != nil {
		log.Printf("FAIL: %v", err)
		os.Exit(1)
	}
}

func open(addr, database string) (*sql.DB, error) {
	u := url.URL{Scheme: "sqlserver", User: url.UserPassword("demo", "Demo-Passw0rd"), Host: addr,
		RawQuery: url.Values{"database": {database}, "encrypt": {"disable"}, "dial timeout": {"5"},
			"connection timeout": {"15"}}.Encode()}
	return sql.Open("sqlserver", u.String())
}

func serverName(ctx context.Context, db *sql.DB) (string, string, error) {
	var server, database string
	err := db.QueryRowContext(ctx, "select @@servername, db_name()").Scan(&server, &database)
	return server, database, err
}

// checkBuckets logs in to each tenant database through tdspool and checks which stand-in
// answered. Until the deadline, failures are retried: Envoy marks a bucket healthy only after
// its health checks pass, and answers "backend unavailable" before that.
func checkBuckets(addr string, wait time.Duration) error {
	deadline := time.Now().Add(wait)
	for _, b := range buckets {
		for attempt := 1; ; attempt++ {
			err := func() error {
				db, err := open(addr, b.database)
				if err != nil {
					return err
				}
				defer db.Close()
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				server, database, err := serverName(ctx, db)
				if err != nil {
					return err
				}
				if server != b.server || database != b.database {
					return fmt.Errorf("database %s answered by %s/%s, want %s", b.database, server, database, b.server)
				}
				log.Printf("database %s → %s (attempt %d)", b.database, server, attempt)
				return nil
			}()
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("database %s: %w", b.database, err)
			}
			log.Printf("database %s: %v (retrying)", b.database, err)
			time.Sleep(2 * time.Second)
		}
	}
	return nil
}

// hold keeps one session and runs a query on it every second: every query must succeed.
func hold(addr string, d time.Duration) error {
	db, err := open(addr, "tenant_a")
	if err != nil {
		return err
	}
	defer db.Close()
	ctx := context.Background()
	conn, err := db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	end := time.Now().Add(d)
	for n := 1; ; n++ {
		var server string
		qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := conn.QueryRowContext(qctx, "select @@servername").Scan(&server)
		cancel()
		if err != nil {
			return fmt.Errorf("query %d on the held session: %w", n, err)
		}
		if n == 1 {
			log.Printf("holding a session on %s", server)
		}
		if time.Now().After(end) {
			log.Printf("held session answered %d queries", n)
			return nil
		}
		time.Sleep(time.Second)
	}
}

// refused expects no new session to be possible: the TCP connect must fail.
func refused(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("%s still accepts connections", addr)
	}
	log.Printf("new connection refused as expected: %v", err)
	return nil
}

// endpoints checks what the pod exposes besides TDS, as another pod sees it: the admin
// interface is not reachable, the metrics listener answers /ready and /stats/prometheus (with
// the buckets' sessions counted) and nothing else.
func endpoints(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if c, err := net.DialTimeout("tcp", net.JoinHostPort(host, "9901"), 3*time.Second); err == nil {
		c.Close()
		return fmt.Errorf("the admin port 9901 is reachable from outside the pod")
	}
	get := func(path string) (int, string, error) {
		client := http.Client{Timeout: 5 * time.Second}
		resp, err := client.Get("http://" + net.JoinHostPort(host, "9902") + path)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body), err
	}
	if code, body, err := get("/ready"); err != nil || code != 200 || strings.TrimSpace(body) != "LIVE" {
		return fmt.Errorf("GET :9902/ready = %d %q, %v; want 200 LIVE", code, body, err)
	}
	code, body, err := get("/stats/prometheus")
	if err != nil || code != 200 {
		return fmt.Errorf("GET :9902/stats/prometheus = %d, %v", code, err)
	}
	for _, b := range buckets {
		want := fmt.Sprintf("envoy_tdspool_bucket_sessions_total{bucket=%q}", b.server)
		if !strings.Contains(body, want) {
			return fmt.Errorf("/stats/prometheus has no %s", want)
		}
	}
	for _, path := range []string{"/clusters", "/quitquitquit", "/drain_listeners"} {
		if code, _, err := get(path); err != nil || code != 404 {
			return fmt.Errorf("GET :9902%s = %d, %v; want 404", path, code, err)
		}
	}
	log.Printf("admin 9901 closed to other pods; 9902 serves /ready (LIVE) and /stats/prometheus (all buckets), 404 otherwise")
	return nil
}
