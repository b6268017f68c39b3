package main

import (
	"bufio"
	"context"
	"database/sql"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	_ "github.com/microsoft/go-mssqldb"

	"github.com/tdspool/tdspool/internal/stack"
)

// TestDemoServesEveryBucketAndStopsCleanly runs the demo command as `make run` does (on free
// ports), connects with go-mssqldb to each tenant database, checks the session landed on the
// right bucket, then stops the demo with SIGINT and checks nothing is left listening.
func TestDemoServesEveryBucketAndStopsCleanly(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "demo")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build demo: %v\n%s", err, out)
	}
	// The demo needs consecutive backend ports; other test packages run in parallel and may
	// take one between our check and the demo's bind, so a start that fails is retried.
	var cmd *exec.Cmd
	var listen, admin, redis, first int
	for attempt := 1; ; attempt++ {
		var banner string
		var ok bool
		listen, admin, redis, first = freePort(t), freePort(t), freePort(t), freeRun(t, 4)
		cmd, banner, ok = startDemo(t, bin, listen, admin, redis, first)
		if ok {
			t.Logf("demo banner:\n%s", banner)
			break
		}
		if attempt == 3 {
			t.Fatal("demo did not come up in 3 attempts")
		}
	}
	defer func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }()

	demoWarmFirstLogin(t, listen, first)

	for i, db := range []string{"tenant_a", "tenant_b", "tenant_c", "tenant_d"} {
		want := fmt.Sprintf("bucket-%03d", i+1)
		for _, enc := range []string{"disable", "false", "true"} {
			dsn := fmt.Sprintf("sqlserver://demo:Demo-Passw0rd@127.0.0.1:%d?database=%s&encrypt=%s&TrustServerCertificate=true", listen, db, enc)
			conn, err := sql.Open("sqlserver", dsn)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			var server string
			err = conn.QueryRowContext(ctx, "SELECT @@SERVERNAME").Scan(&server)
			cancel()
			conn.Close()
			if err != nil {
				t.Fatalf("%s (encrypt=%s): %v", db, enc, err)
			}
			if server != want {
				t.Fatalf("%s landed on %s, want %s", db, server, want)
			}
		}
	}

	// bucket-001 and bucket-002 pool sessions: a client that reconnects gets the same backend
	// session (@@SPID) and takes no slot, because no backend login happens (the stand-in would
	// hand out the same lowest free SPID to a new session too, so the slot count is the proof).
	// The pause lets the first close reach the proxy. bucket-004, on the tcp_proxy leg, does
	// not pool: each reconnect takes a slot.
	for _, tc := range []struct {
		bucket, db string
		pooled     bool
	}{{"bucket-001", "tenant_a", true}, {"bucket-002", "tenant_b", true}, {"bucket-004", "tenant_d", false}} {
		var spids []int
		var granted []int
		for range 2 {
			conn, err := sql.Open("sqlserver", fmt.Sprintf("sqlserver://demo:Demo-Passw0rd@127.0.0.1:%d?database=%s&encrypt=disable", listen, tc.db))
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			var spid int
			err = conn.QueryRowContext(ctx, "SELECT @@SPID").Scan(&spid)
			cancel()
			conn.Close()
			if err != nil {
				t.Fatal(err)
			}
			spids = append(spids, spid)
			granted = append(granted, adminCounter(t, admin, "tdspool.bucket."+tc.bucket+".slot_granted_total"))
			time.Sleep(200 * time.Millisecond)
		}
		if tc.pooled && (spids[0] != spids[1] || granted[0] != granted[1]) {
			t.Fatalf("%s reconnect: @@SPID %d then %d, slots granted %d then %d; want the pooled session, no new slot",
				tc.bucket, spids[0], spids[1], granted[0], granted[1])
		}
		if !tc.pooled && granted[1] != granted[0]+1 {
			t.Fatalf("%s (tcp_proxy leg) reconnect: slots granted %d then %d; want a slot per session", tc.bucket, granted[0], granted[1])
		}
	}

	// bucket-003 pools transactions: 200 clients hold open sessions on tenant_c and run
	// statements, all served by backends under its cap of 20 (every backend takes a slot).
	served := demoTransactionPooling(t, listen, 200)
	// The pool's counters reach Envoy's stats at most once a second, through a session.
	time.Sleep(1100 * time.Millisecond)
	if demoTransactionPooling(t, listen, 1) != 1 {
		t.Fatal("bucket-003: a last client was not served")
	}
	created := adminCounter(t, admin, "tdspool.bucket.bucket-003.pool_created_total")
	pooled := adminCounter(t, admin, "tdspool.bucket.bucket-003.pool_idle") + adminCounter(t, admin, "tdspool.bucket.bucket-003.pool_active")
	t.Logf("bucket-003: %d of 200 clients served by %d backends (%d created)", served, pooled, created)
	if served != 200 || pooled > 20 || pooled == 0 {
		t.Fatalf("bucket-003: %d of 200 clients served by %d backends; want all, by 1..20", served, pooled)
	}

	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGINT)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("demo exited with %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("demo did not stop on SIGINT")
	}
	for _, p := range []int{listen, admin, redis, first, first + 1, first + 2, first + 3} {
		if !portFree(p) {
			t.Errorf("port %d still in use after the demo stopped", p)
		}
	}
}

// startDemo starts the demo and waits for its banner; false if it exited or hung first.
func startDemo(t *testing.T, bin string, listen, admin, redis, first int) (*exec.Cmd, string, bool) {
	cmd := exec.Command(bin, "-listen", fmt.Sprint(listen), "-admin", fmt.Sprint(admin), "-redis", fmt.Sprint(redis),
		"-backend", fmt.Sprint(first), "-backend-data", t.TempDir())
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		var banner strings.Builder
		for sc.Scan() {
			banner.WriteString(sc.Text() + "\n")
			if strings.Contains(sc.Text(), "Ctrl-C stops everything") {
				ready <- banner.String()
			}
		}
		close(ready)
	}()
	select {
	case banner, ok := <-ready:
		if ok {
			return cmd, banner, true
		}
	case <-time.After(60 * time.Second):
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	_ = cmd.Wait()
	return nil, "", false
}

func freePort(t *testing.T) int {
	p, err := stack.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// freeRun finds n consecutive free loopback ports. It looks below Linux's default ephemeral
// range (32768-60999): inside it, the outgoing connections of tests running beside this one
// take ports all over, and a run of four free ones was often not found in 50 tries.
func freeRun(t *testing.T, n int) int {
	for i := 0; i < 200; i++ {
		first := 20000 + rand.IntN(12000)
		ok := true
		for j := 0; j < n; j++ {
			l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", first+j))
			if err != nil {
				ok = false
				break
			}
			l.Close()
		}
		if ok {
			return first
		}
	}
	t.Fatal("no run of free ports")
	return 0
}

func portFree(p int) bool {
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", p), 200*time.Millisecond)
	if err != nil {
		return true
	}
	c.Close()
	return false
}

// adminCounter reads one counter from Envoy's admin /stats.
func adminCounter(t *testing.T, admin int, name string) int {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/stats?filter=%s", admin, regexp.QuoteMeta(name)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, name+": "); ok {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			return n
		}
	}
	t.Fatalf("%s not in /stats:\n%s", name, body)
	return 0
}

// demoTransactionPooling opens n client sessions on tenant_c, each on its own held
// connection, runs three statements on each at once, and returns how many read their answers.
func demoTransactionPooling(t *testing.T, listen, n int) int {
	t.Helper()
	results := make(chan bool, n)
	var conns []*sql.Conn
	var dbs []*sql.DB
	defer func() {
		for _, c := range conns {
			c.Close()
		}
		for _, d := range dbs {
			d.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for i := range n {
		db, err := sql.Open("sqlserver", fmt.Sprintf("sqlserver://demo:Demo-Passw0rd@127.0.0.1:%d?database=tenant_c&encrypt=disable", listen))
		if err != nil {
			t.Fatal(err)
		}
		dbs = append(dbs, db)
		c, err := db.Conn(ctx)
		if err != nil {
			t.Fatalf("client %d: %v", i, err)
		}
		conns = append(conns, c)
	}
	for i, c := range conns {
		go func() {
			for k := range 3 {
				var got int
				if err := c.QueryRowContext(ctx, "SELECT @p1 * 10 + @p2", i, k).Scan(&got); err != nil || got != i*10+k {
					t.Logf("client %d statement %d: %d, %v", i, k, got, err)
					results <- false
					return
				}
			}
			results <- true
		}()
	}
	served := 0
	for range conns {
		if <-results {
			served++
		}
	}
	return served
}

// demoWarmFirstLogin checks bucket-001's warm-up (min_idle 1 with the demo login and
// go-mssqldb's shape, in each of the listener's two filter chains, TDS 7 and TDS 8): right
// after start the stand-in has exactly those two warm-up sessions and no other, and the first
// go-mssqldb client of demo/tenant_a runs on one of them: it caused no backend login (a login
// of its own would be a new session). While that client holds its backend its chain's pool
// tops itself up to min_idle idle again, which the test waits for: from then on a single client
// at a time never leaves fewer than min_idle idle, so no warm-up login runs behind the
// reconnect checks below.
func demoWarmFirstLogin(t *testing.T, listen, first int) {
	t.Helper()
	backend, err := sql.Open("sqlserver", fmt.Sprintf("sqlserver://demo:Demo-Passw0rd@127.0.0.1:%d?database=tenant_a&encrypt=disable&app+name=demo-test-observer", first))
	if err != nil {
		t.Fatal(err)
	}
	defer backend.Close()
	// warmSessions are the stand-in's sessions of the warm-up login (app name go-mssqldb), read
	// directly from bucket-001's stand-in; the observer's own session has another app name.
	warmLogin := map[int]string{} // session id → login_time
	warmSessions := func() []int {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		rows, err := backend.QueryContext(ctx, "SELECT session_id, login_time FROM sys.dm_exec_sessions WHERE login_name = 'demo' AND program_name = 'go-mssqldb' ORDER BY session_id")
		if err != nil {
			t.Fatalf("sys.dm_exec_sessions on bucket-001's stand-in: %v", err)
		}
		defer rows.Close()
		var ids []int
		for rows.Next() {
			var id int
			var login string
			if err := rows.Scan(&id, &login); err != nil {
				t.Fatal(err)
			}
			ids = append(ids, id)
			warmLogin[id] = login
		}
		return ids
	}
	waitSessions := func(n int, what string) []int {
		var ids []int
		for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			if ids = warmSessions(); len(ids) >= n {
				break
			}
		}
		if len(ids) != n {
			t.Fatalf("bucket-001: stand-in sessions of the warm-up login %v, want %d %s", ids, n, what)
		}
		return ids
	}
	const chains = 2 // the listener's TDS 7 and TDS 8 filter chains, a pool each
	warm := waitSessions(chains*warmIdle(0), "(min_idle per filter chain) right after start")

	client, err := sql.Open("sqlserver", fmt.Sprintf("sqlserver://demo:Demo-Passw0rd@127.0.0.1:%d?database=tenant_a&encrypt=disable", listen))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := client.Conn(ctx)
	if err != nil {
		t.Fatalf("first client of bucket-001: %v", err)
	}
	defer conn.Close()
	var spid int
	if err := conn.QueryRowContext(ctx, "SELECT @@SPID").Scan(&spid); err != nil {
		t.Fatalf("first client of bucket-001: %v", err)
	}
	if !slices.Contains(warm, spid) {
		t.Fatalf("bucket-001: first client on backend session %d, not one of the warm ones %v: it logged in for real", spid, warm)
	}
	// What the README tells a user to look at: the client's own session reports the warm-up's
	// login time, read before the client connected.
	var seen string
	if err := conn.QueryRowContext(ctx, "SELECT login_time FROM sys.dm_exec_sessions WHERE session_id = @@SPID").Scan(&seen); err != nil {
		t.Fatalf("first client of bucket-001: sys.dm_exec_sessions: %v", err)
	}
	if seen != warmLogin[spid] {
		t.Fatalf("bucket-001: first client's session %d reports login_time %q, the warm-up's was %q", spid, seen, warmLogin[spid])
	}
	topped := waitSessions(chains*warmIdle(0)+1, "(the warm ones plus the top-up while one is lent)")
	t.Logf("bucket-001: warm-up sessions %v at start; first client served by %d; %v after the top-up", warm, spid, topped)
}
