package integration

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tdspool/tdspool/standin"
	"github.com/tdspool/tdspool/standin/compat"
	"github.com/tdspool/tdspool/tds"
)

// Transaction pooling through Envoy, real go-mssqldb clients, the stand-in's audit log and
// session counters as the oracle. Every client holds its own session (one sql.Conn of its own
// sql.DB); the bucket's cap counts backend sessions.

// txPool is a bucket's pool block for transaction pooling.
var txPool = map[string]any{"pool": map[string]any{"mode": "POOL_MODE_TRANSACTION"}}

func txStack(t *testing.T, capacity int) *tdsStack {
	return startTDSStack(t, tdsStackOptions{capacity: capacity, leg: "module", bucket: txPool})
}

// txClient is one client session: a sql.DB of its own with one held connection.
type txClient struct {
	db   *sql.DB
	conn *sql.Conn
}

func openTxClient(ctx context.Context, st *tdsStack) (*txClient, error) {
	db, err := sql.Open("sqlserver", fmt.Sprintf(
		"sqlserver://demo:Demo-Passw0rd@127.0.0.1:%d?database=tenant_a&encrypt=disable&dial+timeout=10&connection+timeout=60", st.port))
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1)
	c, err := db.Conn(ctx)
	if err != nil {
		db.Close()
		return nil, err
	}
	return &txClient{db: db, conn: c}, nil
}

func (c *txClient) close() {
	c.conn.Close()
	c.db.Close()
}

func mustTxClient(t *testing.T, st *tdsStack) *txClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := openTxClient(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.close)
	return c
}

func txEnvInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// openTxClients opens n client sessions, a few at a time.
func openTxClients(t *testing.T, st *tdsStack, n int) []*txClient {
	t.Helper()
	clients := make([]*txClient, n)
	errs := make(chan error, n)
	sem := make(chan struct{}, 32)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			c, err := openTxClient(ctx, st)
			if err != nil {
				errs <- fmt.Errorf("client %d: %w", i, err)
				return
			}
			clients[i] = c
		}()
	}
	wg.Wait()
	t.Cleanup(func() {
		for _, c := range clients {
			if c != nil {
				c.close()
			}
		}
	})
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	return clients
}

// Many clients (200; TDSPOOL_TX_CLIENTS sets another number) hold sessions on a bucket capped
// at 20 and run autocommit statements at once: none fails, the backend never has more than
// 20 sessions, and every client reads its own answers and its login's database.
func TestTxPoolManyClientsOnTwentyBackends(t *testing.T) {
	n := txEnvInt("TDSPOOL_TX_CLIENTS", 200)
	rounds := txEnvInt("TDSPOOL_TX_ROUNDS", 5)
	st := txStack(t, 20)
	clients := openTxClients(t, st, n)
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
			defer cancel()
			for k := range rounds {
				var got int
				var dbName string
				if err := c.conn.QueryRowContext(ctx, "SELECT @p1 * 1000 + @p2, DB_NAME()", i, k).Scan(&got, &dbName); err != nil {
					errs <- fmt.Errorf("client %d round %d: %w", i, k, err)
					return
				}
				if got != i*1000+k || dbName != "tenant_a" {
					errs <- fmt.Errorf("client %d round %d: got %d in %q, want %d in tenant_a", i, k, got, dbName, i*1000+k)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	peak := st.backend.Stats().PeakSessions
	idle := st.backend.Sessions()
	t.Logf("%d clients × %d statements in %s; backend sessions: peak %d, now %d for %d connected clients (%.3f per client)",
		n, rounds, time.Since(start).Round(time.Millisecond), peak, idle, n, float64(idle)/float64(n))
	if peak > 20 {
		t.Fatalf("backend peak %d sessions, cap 20", peak)
	}
}

// audit returns the stand-in's records of requests (not logins) since seq.
func requestsSince(srv *standin.Server, seq int64) []standin.AuditRecord {
	var out []standin.AuditRecord
	for _, r := range srv.AuditSince(seq) {
		if r.Kind == standin.AuditSQLBatch || r.Kind == standin.AuditRPC || r.Kind == standin.AuditTransMgr {
			out = append(out, r)
		}
	}
	return out
}

// Every statement of an explicit transaction runs on one backend session, while other
// clients keep the pool busy; a rollback undoes that client's work and nobody else's.
func TestTxPoolTransactionStaysOnOneSPIDAndRollsBackOnlyItsOwn(t *testing.T) {
	st := txStack(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	setup := mustTxClient(t, st)
	// Two tables: the stand-in locks whole tables, so B works beside A's open transaction.
	for _, q := range []string{"CREATE TABLE txp_a (n int)", "CREATE TABLE txp_b (n int)", "INSERT INTO txp_a (n) VALUES (-1)"} {
		if _, err := setup.conn.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	a, b := mustTxClient(t, st), mustTxClient(t, st)
	if _, err := b.conn.ExecContext(ctx, "INSERT INTO txp_b (n) VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	var spidsInTx []int
	seq := st.backend.AuditSeq()
	tx, err := a.conn.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k := range 5 {
		var spid int
		if err := tx.QueryRowContext(ctx, "INSERT INTO txp_a (n) VALUES (@p1); SELECT @@SPID", k).Scan(&spid); err != nil {
			t.Fatal(err)
		}
		spidsInTx = append(spidsInTx, spid)
		// Another client's autocommit work between the transaction's statements (reads: the
		// stand-in's storage takes one writer per database at a time).
		var seen int
		if err := b.conn.QueryRowContext(ctx, "SELECT COUNT(*) FROM txp_b WHERE n >= @p1", 0).Scan(&seen); err != nil || seen != 1 {
			t.Fatalf("B's read during A's transaction: %d, %v", seen, err)
		}
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	for _, s := range spidsInTx[1:] {
		if s != spidsInTx[0] {
			t.Fatalf("the transaction's statements ran on SPIDs %v", spidsInTx)
		}
	}
	// The oracle: every request of client A from BEGIN to ROLLBACK ran on that SPID.
	aRequests := 0
	for _, r := range requestsSince(st.backend, seq) {
		if r.SPID == spidsInTx[0] {
			aRequests++
		}
	}
	if aRequests < 6 {
		t.Fatalf("audit: %d requests on SPID %d, want the transaction's begin, 5 statements and rollback", aRequests, spidsInTx[0])
	}
	var own, others int
	if err := b.conn.QueryRowContext(ctx, "SELECT COUNT(*) FROM txp_a").Scan(&own); err != nil {
		t.Fatal(err)
	}
	if err := b.conn.QueryRowContext(ctx, "SELECT COUNT(*) FROM txp_b").Scan(&others); err != nil {
		t.Fatal(err)
	}
	if own != 1 || others != 1 {
		t.Fatalf("after A's rollback: %d rows in A's table (want the 1 from before), %d in B's (want B's 1)", own, others)
	}
}

// A pin (an application lock held by the session) keeps the backend across statements, even
// while another client wants one; releasing the lock lets the session move again.
func TestTxPoolPinHoldsThenReleases(t *testing.T) {
	st := txStack(t, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	a, x := mustTxClient(t, st), mustTxClient(t, st)
	spid := func(c *txClient) int {
		var s int
		if err := c.conn.QueryRowContext(ctx, "SELECT @@SPID").Scan(&s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	var rc int
	if err := a.conn.QueryRowContext(ctx, "DECLARE @r int; EXEC @r = sp_getapplock @Resource = 'txp', @LockMode = 'Exclusive', @LockOwner = 'Session'; SELECT @r").Scan(&rc); err != nil || rc < 0 {
		t.Fatalf("sp_getapplock = %d, %v", rc, err)
	}
	waitStat(t, st.envoy, "tdspool.bucket.bucket-001.pinned_applock", 1)
	held := spid(a)
	for range 5 {
		x.conn.ExecContext(ctx, "SELECT 1") // another client uses the other backend
		if s := spid(a); s != held {
			t.Fatalf("pinned session moved from SPID %d to %d", held, s)
		}
	}
	if _, err := a.conn.ExecContext(ctx, "EXEC sp_releaseapplock @Resource = 'txp', @LockOwner = 'Session'"); err != nil {
		t.Fatal(err)
	}
	waitStat(t, st.envoy, "tdspool.bucket.bucket-001.pinned_applock", 0)
	// Free again: while x holds the last backend A used in a transaction, A runs elsewhere.
	last := spid(a)
	tx, err := x.conn.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	var xs int
	if err := tx.QueryRowContext(ctx, "SELECT @@SPID").Scan(&xs); err != nil {
		t.Fatal(err)
	}
	if xs != last {
		t.Logf("x borrowed SPID %d (A's last was %d)", xs, last)
	}
	if s := spid(a); s == xs {
		t.Fatalf("A ran on SPID %d, which x holds in a transaction", s)
	}
	tx.Rollback()
}

// Session settings and the database follow a client from backend to backend: after each
// forced move it reads the same @@OPTIONS, DB_NAME(), @@DATEFIRST, @@LOCK_TIMEOUT.
func TestTxPoolSettingsSurviveMoves(t *testing.T) {
	st := txStack(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	a, x := mustTxClient(t, st), mustTxClient(t, st)
	for _, q := range []string{"SET DATEFIRST 3", "SET LOCK_TIMEOUT 1234", "SET ANSI_NULLS OFF", "SET NOCOUNT ON", "USE master"} {
		if _, err := a.conn.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	read := func() (string, int) {
		var opts, dateFirst, lockTimeout, spid int
		var dbName string
		if err := a.conn.QueryRowContext(ctx, "SELECT @@OPTIONS, DB_NAME(), @@DATEFIRST, @@LOCK_TIMEOUT, @@SPID").Scan(
			&opts, &dbName, &dateFirst, &lockTimeout, &spid); err != nil {
			t.Fatal(err)
		}
		return fmt.Sprintf("options=%d db=%s datefirst=%d lock_timeout=%d", opts, dbName, dateFirst, lockTimeout), spid
	}
	want, first := read()
	if want == "" || first == 0 {
		t.Fatal("no state read")
	}
	spids := map[int]bool{first: true}
	for range 4 {
		// x takes the backend A used last (LIFO) and keeps it in a transaction: A must move.
		tx, err := x.conn.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.ExecContext(ctx, "SELECT 1"); err != nil {
			t.Fatal(err)
		}
		got, spid := read()
		spids[spid] = true
		if got != want {
			t.Fatalf("after a move to SPID %d: %s, want %s", spid, got, want)
		}
		tx.Rollback()
	}
	if len(spids) < 2 {
		t.Fatalf("the client never moved (SPIDs %v): the test proves nothing", spids)
	}
	t.Logf("state %q held across SPIDs %v", want, spids)
}

// Server-side prepared handles pin the session to the backend that holds them until
// sp_unprepare; the handle keeps working across other clients' traffic.
func TestTxPoolPreparedStatementsPin(t *testing.T) {
	st := txStack(t, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	a, x := mustTxClient(t, st), mustTxClient(t, st)
	var handle int32
	if _, err := a.conn.ExecContext(ctx, "sp_prepare", sql.Named("handle", sql.Out{Dest: &handle}),
		sql.Named("params", "@a int"), sql.Named("stmt", "SELECT @a * 2"), sql.Named("options", 1)); err != nil || handle == 0 {
		t.Fatalf("sp_prepare: handle %d, %v", handle, err)
	}
	waitStat(t, st.envoy, "tdspool.bucket.bucket-001.pinned_prepared", 1)
	for k := range 4 {
		x.conn.ExecContext(ctx, "SELECT 1")
		var got int
		if err := a.conn.QueryRowContext(ctx, "sp_execute", handle, k).Scan(&got); err != nil || got != 2*k {
			t.Fatalf("sp_execute %d: %d, %v", k, got, err)
		}
	}
	if _, err := a.conn.ExecContext(ctx, "sp_unprepare", handle); err != nil {
		t.Fatal(err)
	}
	waitStat(t, st.envoy, "tdspool.bucket.bucket-001.pinned_prepared", 0)
}

// A cancel (ATTENTION) during a running statement goes to the bound backend, whose
// acknowledgement comes back to that client; one sent with nothing bound (late: its request
// already answered) is answered by the proxy. Either way the next batch reads its own answer
// and no stray DONE(ATTN). (A raw client: go-mssqldb gives up a connection after a cancel.)
func TestTxPoolAttentionIsAnswered(t *testing.T) {
	st := txStack(t, 2)
	rc := mustPoolClient(t, st, poolLogin{})
	batch := func(text string) {
		t.Helper()
		q := tds.SQLBatch{Headers: tds.AllHeaders{HasTransaction: true, OutstandingRequests: 1}, Text: text}
		if err := rc.send(tds.PacketSQLBatch, q.AppendSQLBatch(nil)); err != nil {
			t.Fatal(err)
		}
	}
	attention := func() []tds.Event {
		t.Helper()
		if err := rc.send(tds.PacketAttention, nil); err != nil {
			t.Fatal(err)
		}
		// SQL Server ends the interrupted request's response (DONE(ERROR)) and sends the
		// acknowledgement as a message of its own: read up to the one that ends in DONE(ATTN).
		var evs []tds.Event
		for range 2 {
			msg, err := rc.recv()
			if err != nil {
				t.Fatal(err)
			}
			if evs = events(t, msg); len(evs) > 0 && evs[len(evs)-1].Token == tds.TokenDone && evs[len(evs)-1].Done.Status&tds.DoneAttn != 0 {
				break
			}
		}
		return evs
	}
	acked := func(evs []tds.Event) bool {
		return len(evs) > 0 && evs[len(evs)-1].Token == tds.TokenDone && evs[len(evs)-1].Done.Status&tds.DoneAttn != 0
	}
	answer := func(text string, want int64) {
		t.Helper()
		batch(text)
		msg, err := rc.recv()
		if err != nil {
			t.Fatal(err)
		}
		evs := events(t, msg)
		for _, ev := range evs {
			if ev.Token == tds.TokenDone && ev.Done.Status&tds.DoneAttn != 0 {
				t.Fatalf("a stray DONE(ATTN) in the answer to %q: %v", text, evs)
			}
		}
		if !rowHolds(msg, want) {
			t.Fatalf("answer to %q: %v, want a row with %d", text, evs, want)
		}
	}

	before := st.backend.Stats().Attentions
	batch("WAITFOR DELAY '00:00:05'")
	time.Sleep(200 * time.Millisecond)
	start := time.Now()
	if evs := attention(); !acked(evs) {
		t.Fatalf("ATTENTION during WAITFOR answered with %v", evs)
	}
	if n := st.backend.Stats().Attentions - before; n != 1 || time.Since(start) > 3*time.Second {
		t.Fatalf("the backend saw %d attentions (want 1: forwarded to the bound backend), ack after %s", n, time.Since(start))
	}
	answer("SELECT 600613", 600613)

	// Late: nothing is bound; the proxy answers at once and the backend sees nothing.
	if evs := attention(); !acked(evs) {
		t.Fatalf("late ATTENTION answered with %v", evs)
	}
	if n := st.backend.Stats().Attentions - before; n != 1 {
		t.Fatalf("the backend saw %d attentions; the late one should have been answered by the proxy", n)
	}
	answer("SELECT 700714", 700714)
}

// rowHolds reports whether a reply carries a ROW whose int column is want (INT or INTN(4)
// encoding; the values the tests use are distinctive enough to find as bytes).
func rowHolds(msg tds.Message, want int64) bool {
	v := binary.LittleEndian.AppendUint32(nil, uint32(want))
	return bytes.Contains(msg.Payload, append([]byte{byte(tds.TokenRow), 4}, v...)) ||
		bytes.Contains(msg.Payload, append([]byte{byte(tds.TokenRow)}, v...))
}

// Figures (TDSPOOL_TX_FIGURES=1): backend sessions per connected client. N clients
// (TDSPOOL_TX_FIGURE_CLIENTS, default "100,1000") hold sessions on a bucket capped at 20 and
// each runs one autocommit statement, then thinks for about TDSPOOL_TX_FIGURE_THINK (default
// 1s, jittered ±50%) — an application's mostly idle driver-pool connections — for
// TDSPOOL_TX_FIGURE_SECONDS (default 10). The stand-in's logged-in sessions are sampled every
// 50 ms; the figures are their peak and mean over N. TDSPOOL_TX_FIGURE_MAX_IDLE sets the
// pool's max_idle_time (default 300s); TDSPOOL_TX_FIGURE_TRACE=1 logs a sample a second and
// the borrow-wait histogram.
func TestTxPoolBackendsPerClientFigures(t *testing.T) {
	if os.Getenv("TDSPOOL_TX_FIGURES") == "" {
		t.Skip("set TDSPOOL_TX_FIGURES=1 to measure backend sessions per client")
	}
	think, err := time.ParseDuration(os.Getenv("TDSPOOL_TX_FIGURE_THINK"))
	if err != nil {
		think = time.Second
	}
	seconds := txEnvInt("TDSPOOL_TX_FIGURE_SECONDS", 10)
	counts := []int{100, 1000}
	if v := os.Getenv("TDSPOOL_TX_FIGURE_CLIENTS"); v != "" {
		counts = nil
		for _, f := range strings.Split(v, ",") {
			if n, err := strconv.Atoi(f); err == nil && n > 0 {
				counts = append(counts, n)
			}
		}
	}
	poolCfg := map[string]any{"mode": "POOL_MODE_TRANSACTION"}
	if v := os.Getenv("TDSPOOL_TX_FIGURE_MAX_IDLE"); v != "" {
		poolCfg["max_idle_time"] = v // spare backends age out (LIFO keeps the busy ones warm)
	}
	for _, n := range counts {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			st := startTDSStack(t, tdsStackOptions{capacity: 20, leg: "module", bucket: map[string]any{"pool": poolCfg}})
			clients := openTxClients(t, st, n)
			ctx, cancel := context.WithTimeout(context.Background(), time.Duration(seconds)*time.Second)
			defer cancel()
			var statements, failures atomic.Int64
			var wg sync.WaitGroup
			for i, c := range clients {
				wg.Add(1)
				go func() {
					defer wg.Done()
					rnd := rand.New(rand.NewPCG(uint64(i), 7))
					// Start spread over one think time, as a real fleet's clients are.
					sleep := time.Duration(rnd.Int64N(int64(think)))
					for {
						select {
						case <-ctx.Done():
							return
						case <-time.After(sleep):
						}
						var got int
						err := c.conn.QueryRowContext(ctx, "SELECT @p1", i).Scan(&got)
						switch {
						case ctx.Err() != nil:
							return
						case err != nil || got != i:
							failures.Add(1)
						default:
							statements.Add(1)
						}
						sleep = think/2 + time.Duration(rnd.Int64N(int64(think)))
					}
				}()
			}
			peak, sum, samples := 0, 0, 0
			tick := time.NewTicker(50 * time.Millisecond)
		sample:
			for {
				select {
				case <-ctx.Done():
					break sample
				case <-tick.C:
					s := st.backend.Sessions()
					peak = max(peak, s)
					sum += s
					samples++
					if os.Getenv("TDSPOOL_TX_FIGURE_TRACE") != "" && samples%20 == 0 {
						stats, _ := st.envoy.Stats()
						t.Logf("t=%ds backend sessions %d, bound %d, pinned %d, queued %d, pool idle %d active %d",
							samples/20, s, stats["tdspool.bucket.bucket-001.tx_bound"], stats["tdspool.bucket.bucket-001.sessions_pinned"],
							stats["tdspool.bucket.bucket-001.sessions_queued"], stats["tdspool.bucket.bucket-001.pool_idle"], stats["tdspool.bucket.bucket-001.pool_active"])
					}
				}
			}
			tick.Stop()
			wg.Wait()
			mean := float64(sum) / float64(max(samples, 1))
			t.Logf("%d clients, think %s, %d s: %d statements (%d failed); backend sessions peak %d (%.3f per client), mean %.1f (%.3f per client); stand-in peak since start %d",
				n, think, seconds, statements.Load(), failures.Load(), peak, float64(peak)/float64(n), mean, mean/float64(n),
				st.backend.Stats().PeakSessions)
			if os.Getenv("TDSPOOL_TX_FIGURE_TRACE") != "" {
				body, _ := st.envoy.Admin("/stats?filter=tx_borrow_wait_us|pool_created|pool_borrowed|queue_wait")
				t.Logf("%s", body)
			}
			if failures.Load() > 0 {
				t.Fatalf("%d statements failed", failures.Load())
			}
		})
	}
}

// The compatibility workloads (transactions through the drivers' APIs, prepared statements,
// temp tables, output parameters, TRY/CATCH, option round trips) of go-mssqldb, python-tds and
// pymssql in every client encryption mode pass through a transaction-pooled bucket.
func TestTxPoolDriverWorkloads(t *testing.T) {
	st := startTDSStack(t, tdsStackOptions{capacity: 4, tls: true, leg: "module", bucket: txPool})
	target := st.target()
	python := compat.FindPython()
	if python == "" {
		t.Fatal("no Python with python-tds and pymssql (make setup installs them)")
	}
	runDriverWorkloads(t, target, python, false)
	// Not asserted here: with these workloads the stand-in has counted 5 sessions at once on
	// cap 4 in session pooling too (a closed backend's slot handed on before the stand-in
	// dropped the session); TestTxPoolManyClientsOnTwentyBackends holds the cap.
	t.Logf("backend peak %d sessions, cap 4", st.backend.Stats().PeakSessions)
}
