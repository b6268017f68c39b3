package integration

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mssql "github.com/microsoft/go-mssqldb"

	"github.com/tdspool/tdspool/internal/stack"
	"github.com/tdspool/tdspool/standin/compat"
	"github.com/tdspool/tdspool/tds"
)

func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}

// TestEnvoySurvivesConnectionChurnUnderGCPressure runs the module with GOGC=1 (a collection
// after nearly every allocation, so goroutine stacks are shrunk and grown again constantly)
// while real drivers in every encryption mode and raw sockets churn thousands of connections.
// Every value Envoy hands the module, and every value the module hands back, sits in Go stack
// frames that the runtime then copies; a non-pointer in a pointer-typed slot kills the process
// with "invalid pointer found on stack", which no recover can catch. The oracle is the process
// itself: same PID, no fatal error in its log. TDSPOOL_CHURN_SECONDS, _CLIENTS, _CAP and
// _REDIS=1 scale it up (the defaults keep `make test` short); with TDSPOOL_BACKEND_LEG=module,
// TDSPOOL_CHURN_BACKEND_ENCRYPTION (e.g. TDS7_FULL) is the module leg's backend_encryption.
func TestEnvoySurvivesConnectionChurnUnderGCPressure(t *testing.T) {
	// The bucket is startTDSStack's, so TDSPOOL_BACKEND_LEG=module churns the module-owned leg
	// (a whole "buckets" list in extra replaced it and always churned tcp_proxy).
	s := startTDSStack(t, tdsStackOptions{capacity: envInt("TDSPOOL_CHURN_CAP", 8), tls: true,
		redis: os.Getenv("TDSPOOL_CHURN_REDIS") != "", envoyEnv: []string{"GOGC=1"},
		bucket: map[string]any{"max_queue": 1000}, backendEnc: os.Getenv("TDSPOOL_CHURN_BACKEND_ENCRYPTION")})
	runChurn(t, s, time.Duration(envInt("TDSPOOL_CHURN_SECONDS", 20))*time.Second, envInt("TDSPOOL_CHURN_CLIENTS", 12), 4)
	assertLegUsed(t, s)
}

// assertLegUsed checks that the sessions went through the leg TDSPOOL_BACKEND_LEG names:
// tcp_proxy opens its upstream connections to the bucket's cluster, the module-owned leg
// never does.
func assertLegUsed(t *testing.T, s *tdsStack) {
	t.Helper()
	stats, err := s.envoy.Stats()
	if err != nil {
		t.Fatal(err)
	}
	upstream := stats["cluster.bucket_001.upstream_cx_total"]
	module := os.Getenv("TDSPOOL_BACKEND_LEG") == "module"
	t.Logf("backend leg %q: %d tcp_proxy upstream connections", os.Getenv("TDSPOOL_BACKEND_LEG"), upstream)
	if module != (upstream == 0) {
		t.Fatalf("TDSPOOL_BACKEND_LEG=%q but tcp_proxy opened %d upstream connections", os.Getenv("TDSPOOL_BACKEND_LEG"), upstream)
	}
}

// TestNoNonPointerValueInAPointerSlot runs the module built with every function prologue
// moving its goroutine's stack (make build-stackmove: -d=maymorestack=runtime.mayMoreStackMove).
// A stack move checks every pointer slot of every frame, so a handle smuggled through a
// pointer type crashes Envoy on the first connection instead of once in a few thousand.
func TestNoNonPointerValueInAPointerSlot(t *testing.T) {
	dir, err := stack.ModuleDir()
	if err != nil {
		t.Fatal(err)
	}
	moveDir := filepath.Join(dir, "stackmove")
	if _, err := os.Stat(filepath.Join(moveDir, "libtdspool.so")); err != nil {
		t.Fatalf("stack-moving module missing (make build-stackmove): %v", err)
	}
	s := startTDSStack(t, tdsStackOptions{capacity: 4, tls: true, redis: true, moduleDir: moveDir})
	runChurn(t, s, 6*time.Second, len(compat.GoEncryptModes), 2)
}

// runChurn loops go-mssqldb clients (connect → query → close, each in one encryption mode)
// and raw sockets (a PRELOGIN, garbage or an immediate hang-up) for d, then checks that Envoy
// lived through it, served the drivers and ended idle. Each raw socket waits for Envoy's answer
// or close before the next one: a raw client that hangs up and dials again at once is an open
// loop that, whenever Envoy falls behind (GOGC=1 on a loaded machine), fills the listener's
// accept queue with connections nobody waits for, and the kernel then drops every SYN, the
// drivers' too (they failed with dial timeouts). Closed loops keep the churn at Envoy's pace.
func runChurn(t *testing.T, s *tdsStack, d time.Duration, clients, rawClients int) {
	t.Helper()
	pid := s.envoy.Pid()
	if s.redis != nil {
		warmUp(t, s)
	}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()

	var drivers driverTally
	var raw atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < clients; w++ {
		connector, err := mssql.NewConnector(compat.GoDSN(s.target(), compat.GoEncryptModes[w%len(compat.GoEncryptModes)]))
		if err != nil {
			t.Fatal(err)
		}
		db := sql.OpenDB(connector)
		db.SetMaxIdleConns(0) // every query is a new session
		db.SetMaxOpenConns(1)
		t.Cleanup(func() { db.Close() })
		wg.Add(1)
		go func() {
			defer wg.Done()
			drivers.loop(ctx, db)
		}()
	}
	addr := fmt.Sprintf("127.0.0.1:%d", s.port)
	for w := 0; w < rawClients; w++ {
		wg.Add(1)
		go func(seed uint64) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, 1))
			for ctx.Err() == nil {
				c, err := net.DialTimeout("tcp", addr, 2*time.Second)
				if err != nil {
					continue
				}
				raw.Add(1)
				_ = c.SetDeadline(time.Now().Add(2 * time.Second))
				switch rng.IntN(3) {
				case 0:
					pre := tds.Prelogin{HasVersion: true, Version: 0x0C000000, HasEncryption: true, Encryption: tds.EncryptNotSup}
					_, _ = c.Write(tds.AppendPackets(nil, tds.PacketPrelogin, 0, pre.AppendPrelogin(nil), 4096))
					_, _ = c.Read(make([]byte, 512))
				case 1:
					junk := make([]byte, 1+rng.IntN(600))
					for i := range junk {
						junk[i] = byte(rng.Uint32())
					}
					_, _ = c.Write(junk)
					awaitClose(c)
				default: // hang up before sending anything
					_ = c.(*net.TCPConn).CloseWrite()
					awaitClose(c)
				}
				c.Close()
			}
		}(uint64(w))
	}
	wg.Wait()

	t.Logf("churn for %s: %d driver sessions served, %d driver errors, %d raw connections (%d driver failures after the deadline not counted)", d, drivers.served.Load(), drivers.failed.Load(), raw.Load(), drivers.late.Load())
	if exited, err := s.envoy.Exited(); exited {
		t.Fatalf("Envoy (pid %d) died under churn: %v\n%s", pid, err, fatalLines(s.envoy.Output()))
	}
	if out := s.envoy.Output(); strings.Contains(out, "fatal error") {
		t.Fatalf("Envoy logged a fatal error:\n%s", fatalLines(out))
	}
	if s.envoy.Pid() != pid {
		t.Fatalf("Envoy PID changed from %d to %d", pid, s.envoy.Pid())
	}
	if drivers.served.Load() == 0 {
		t.Fatalf("no driver session was served (first error: %v)", drivers.firstErr.Load())
	}
	if e := drivers.failed.Load(); e > drivers.served.Load()/100 {
		t.Errorf("%d driver errors against %d served (first: %v; by kind: %s)", e, drivers.served.Load(), drivers.firstErr.Load(), drivers.failures())
	}
	s.waitIdle(t)
}

// warmUp runs one driver session: the first grant from a fresh Redis waits out the
// coordinator's start-up grace, which a timed run should not count.
func warmUp(t *testing.T, s *tdsStack) {
	t.Helper()
	warm := s.db(t, 1)
	if err := driverRoundTrip(context.Background(), warm); err != nil {
		t.Fatalf("warm-up session: %v", err)
	}
	warm.Close()
}

// awaitClose reads until Envoy closes c (or c's deadline passes): Envoy has taken the
// connection off its accept queue and dealt with it.
func awaitClose(c net.Conn) {
	buf := make([]byte, 512)
	for {
		if _, err := c.Read(buf); err != nil {
			return
		}
	}
}

// driverTally counts driver round trips: served, failed, the first failure's text and the
// failures by kind (so a failed run says which kinds, not just the first).
type driverTally struct {
	served, failed atomic.Int64
	late           atomic.Int64 // failures at or after the deadline, before ctx.Err() said so
	firstErr       atomic.Value
	mu             sync.Mutex
	kinds          map[string]int
}

// errKind is an error's text with addresses and numbers stripped, to group failures.
func errKind(err error) string {
	var b strings.Builder
	digits := false
	for _, r := range err.Error() {
		if r >= '0' && r <= '9' {
			if !digits {
				b.WriteByte('#')
			}
			digits = true
			continue
		}
		digits = false
		b.WriteRune(r)
	}
	return b.String()
}

// failures lists the failure kinds with their counts.
func (n *driverTally) failures() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	var parts []string
	for k, c := range n.kinds {
		parts = append(parts, fmt.Sprintf("%d× %s", c, k))
	}
	return strings.Join(parts, "; ")
}

// loop runs round trips on db until ctx's deadline; a failure after the deadline is not
// counted. The deadline is read from the clock, not from ctx.Err(): a dial started just after
// the deadline fails at once with "i/o timeout" (the net package compares the deadline with
// the clock), while ctx.Err() stays nil until the context's timer goroutine runs, which on a
// loaded machine is milliseconds later; every driver loop then spun through failed dials, and
// the run reported hundreds of "dial tcp: i/o timeout" errors that all came after its end.
// late counts those.
func (n *driverTally) loop(ctx context.Context, db *sql.DB) {
	deadline, ok := ctx.Deadline()
	if !ok {
		panic("driverTally.loop needs a context with a deadline")
	}
	for ctx.Err() == nil && time.Now().Before(deadline) {
		start := time.Now()
		err := driverRoundTrip(ctx, db)
		if err == nil {
			n.served.Add(1)
			continue
		}
		if ctx.Err() != nil || !time.Now().Before(deadline) {
			if ctx.Err() == nil {
				n.late.Add(1)
			}
			return
		}
		n.failed.Add(1)
		n.firstErr.CompareAndSwap(nil, fmt.Sprintf("after %v: %v", time.Since(start).Round(time.Millisecond), err))
		n.mu.Lock()
		if n.kinds == nil {
			n.kinds = map[string]int{}
		}
		n.kinds[errKind(err)]++
		n.mu.Unlock()
	}
}

// driverRoundTrip opens a session, runs one query and closes it (db keeps no idle sessions).
func driverRoundTrip(ctx context.Context, db *sql.DB) error {
	cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	var n int
	if err := db.QueryRowContext(cctx, "SELECT 1").Scan(&n); err != nil {
		return err
	}
	if n != 1 {
		return fmt.Errorf("SELECT 1 returned %d", n)
	}
	return nil
}

// fatalLines is the part of a log around the first "fatal error" (the runtime's own report).
func fatalLines(out string) string {
	i := strings.Index(out, "fatal error")
	if i < 0 {
		return tailLines(out, 30)
	}
	return out[max(0, i-2000):min(len(out), i+4000)]
}

// TestBackendNeverSeesMoreSessionsThanTheCap churns driver sessions through a small cap and
// reads the backend's own count: a slot is a backend connection, so it may only be handed to
// the next session once the previous session's backend connection is gone. (Drivers close
// with a FIN; Envoy's half-close then waits for the backend to close its side. A client
// that resets instead makes Envoy close the backend leg, which the backend learns of a moment
// later, on its own schedule.)
func TestBackendNeverSeesMoreSessionsThanTheCap(t *testing.T) {
	const capacity = 2
	for _, withRedis := range []bool{false, true} {
		t.Run(map[bool]string{false: "local slots", true: "Redis slots"}[withRedis], func(t *testing.T) {
			s := startTDSStack(t, tdsStackOptions{capacity: capacity, redis: withRedis})
			if withRedis {
				warmUp(t, s)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Duration(envInt("TDSPOOL_CAP_CHURN_SECONDS", 5))*time.Second)
			defer cancel()
			var drivers driverTally
			var wg sync.WaitGroup
			for w := 0; w < 4*capacity; w++ {
				db := s.db(t, 1)
				db.SetMaxIdleConns(0)
				wg.Add(1)
				go func() {
					defer wg.Done()
					drivers.loop(ctx, db)
				}()
			}
			wg.Wait()
			peak := s.backend.Stats().PeakSessions
			t.Logf("%d sessions served (%d failed, first: %v) through cap %d; backend peak %d sessions", drivers.served.Load(), drivers.failed.Load(), drivers.firstErr.Load(), capacity, peak)
			if peak > capacity {
				t.Errorf("the backend saw %d sessions at once, cap %d", peak, capacity)
			}
			if drivers.served.Load() < 20 {
				t.Errorf("only %d sessions served: too little churn to say anything", drivers.served.Load())
			}
			s.waitIdle(t)
		})
	}
}
