// Package load is the benchmark's load generator: go-mssqldb clients running the workloads
// ping, login, stream, idle and queue against one address, with latency percentiles and
// progress lines while they run.
package load

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	mssql "github.com/microsoft/go-mssqldb"
)

// TLS modes the client can ask for.
const (
	TLSDisable   = "disable" // plaintext (PRELOGIN ENCRYPT_NOT_SUP)
	TLSFull      = "full"    // TDS 7.x, TLS for the whole session (encrypt=true)
	TLSLoginOnly = "login"   // TDS 7.x, only LOGIN7 encrypted (encrypt=false)
	TLSStrict    = "strict"  // TDS 8: TLS first, ALPN tds/8.0 (encrypt=strict)
)

// Config is one workload run against one address.
type Config struct {
	Addr        string // host:port
	TLS         string // TLSDisable (default), TLSFull, TLSLoginOnly, TLSStrict
	CAFile      string // PEM certificate the server must present (verified for localhost); "" trusts any
	Database    string // default "bench"
	Concurrency int    // sessions / workers (default 1)
	Duration    time.Duration
	Warmup      time.Duration // run unrecorded first (ping, login, stream)
	StreamBytes int64         // stream: bytes per query (default 32 MB)
	Count       int           // stream: results per session; when > 0 it replaces Duration
	Sessions    int           // idle: sessions to hold
	Hold        time.Duration // queue: how long each session is held after its query
	// WhileHeld runs once the idle sessions are all open (measure memory there).
	WhileHeld func()
	Label     string    // shown in progress lines
	Progress  io.Writer // nil: no progress
}

// Result is what a workload measured.
type Result struct {
	Workload    string
	Label       string
	Concurrency int
	Ops         int64
	Errors      int64
	FirstError  string
	Elapsed     time.Duration
	QPS         float64
	Lat         Percentiles // per operation (ping: a query; login: connect+login+query+close)
	LoginLat    Percentiles // login and queue: connect + login (queue wait included)
	Bytes       int64       // stream: result bytes read (as requested of the backend)
	MBps        float64
	Sessions    int           // idle: sessions held
	OpenTime    time.Duration // idle: time to open them all
	Fairness    float64       // queue: Jain's index over per-worker completions (1 = fair)
	MinMaxOps   [2]int64      // queue: fewest and most completions of a worker
}

// Percentiles of a latency sample.
type Percentiles struct {
	N                   int
	Mean, P50, P90, P99 time.Duration
	P999, Max           time.Duration
}

// Summarize computes percentiles (it sorts d).
func Summarize(d []time.Duration) Percentiles {
	if len(d) == 0 {
		return Percentiles{}
	}
	slices.Sort(d)
	var sum time.Duration
	for _, v := range d {
		sum += v
	}
	at := func(q float64) time.Duration {
		i := int(q*float64(len(d))+0.5) - 1
		return d[max(0, min(len(d)-1, i))]
	}
	return Percentiles{N: len(d), Mean: sum / time.Duration(len(d)), P50: at(0.50), P90: at(0.90), P99: at(0.99),
		P999: at(0.999), Max: d[len(d)-1]}
}

// The login every workload uses; the benchmark backend is configured with it.
const (
	User     = "bench"
	Password = "Bench!pw1"
)

// DSN builds the go-mssqldb connection string.
func DSN(addr, tlsMode, caFile, database string, timeout time.Duration) string {
	if database == "" {
		database = "bench"
	}
	q := url.Values{}
	q.Set("database", database)
	q.Set("app name", "tdspool-bench")
	q.Set("connection timeout", strconv.Itoa(int(timeout.Seconds())))
	q.Set("dial timeout", "5")
	q.Set("keepAlive", "0")
	switch tlsMode {
	case TLSFull:
		q.Set("encrypt", "true")
	case TLSLoginOnly:
		q.Set("encrypt", "false")
	case TLSStrict:
		q.Set("encrypt", "strict")
	default:
		q.Set("encrypt", "disable")
	}
	if tlsMode != TLSDisable && tlsMode != "" {
		if caFile != "" {
			q.Set("certificate", caFile)
			q.Set("hostNameInCertificate", "localhost")
		} else {
			q.Set("TrustServerCertificate", "true")
		}
	}
	u := url.URL{Scheme: "sqlserver", User: url.UserPassword(User, Password), Host: addr, RawQuery: q.Encode()}
	return u.String()
}

func openDB(c *Config, timeout time.Duration) (*sql.DB, error) {
	conn, err := mssql.NewConnector(DSN(c.Addr, c.TLS, c.CAFile, c.Database, timeout))
	if err != nil {
		return nil, err
	}
	return sql.OpenDB(conn), nil
}

type recorder struct {
	ops, errs atomic.Int64
	mu        sync.Mutex
	first     error
	lat       [][]time.Duration
	login     [][]time.Duration
	perWorker []int64
}

func newRecorder(n int) *recorder {
	return &recorder{lat: make([][]time.Duration, n), login: make([][]time.Duration, n), perWorker: make([]int64, n)}
}

func (r *recorder) fail(err error) {
	r.errs.Add(1)
	r.mu.Lock()
	if r.first == nil {
		r.first = err
	}
	r.mu.Unlock()
}

func (r *recorder) result(c *Config, workload string, elapsed time.Duration) Result {
	var all, logins []time.Duration
	for i := range r.lat {
		all = append(all, r.lat[i]...)
		logins = append(logins, r.login[i]...)
	}
	res := Result{Workload: workload, Label: c.Label, Concurrency: c.Concurrency, Ops: r.ops.Load(), Errors: r.errs.Load(),
		Elapsed: elapsed, Lat: Summarize(all), LoginLat: Summarize(logins)}
	if r.first != nil {
		res.FirstError = r.first.Error()
	}
	if elapsed > 0 {
		res.QPS = float64(res.Ops) / elapsed.Seconds()
	}
	// Fairness: Jain's index over the workers' completions.
	var sum, sumSq float64
	res.MinMaxOps = [2]int64{-1, 0}
	for i := range r.lat {
		n := int64(len(r.lat[i]))
		sum += float64(n)
		sumSq += float64(n) * float64(n)
		if res.MinMaxOps[0] < 0 || n < res.MinMaxOps[0] {
			res.MinMaxOps[0] = n
		}
		res.MinMaxOps[1] = max(res.MinMaxOps[1], n)
	}
	if sumSq > 0 {
		res.Fairness = sum * sum / (float64(len(r.lat)) * sumSq)
	}
	return res
}

// progress prints a line every interval until stop is closed.
func progress(c *Config, r *recorder, start time.Time, total time.Duration, stop <-chan struct{}) {
	if c.Progress == nil {
		return
	}
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	var last int64
	lastT := start
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			ops := r.ops.Load()
			rate := float64(ops-last) / now.Sub(lastT).Seconds()
			last, lastT = ops, now
			fmt.Fprintf(c.Progress, "  [%s] %4.1fs/%s ops=%d (%.0f/s) errors=%d\n", c.Label,
				now.Sub(start).Seconds(), total, ops, rate, r.errs.Load())
		}
	}
}

func defaults(c *Config) {
	if c.Concurrency <= 0 {
		c.Concurrency = 1
	}
	if c.Duration <= 0 {
		c.Duration = 5 * time.Second
	}
	if c.StreamBytes <= 0 {
		c.StreamBytes = 32 << 20
	}
	if c.TLS == "" {
		c.TLS = TLSDisable
	}
}

// timed runs body in Concurrency workers: first for Warmup (discarded), then for Duration.
// body gets the worker index and whether to record.
func timed(c *Config, workload string, body func(ctx context.Context, w int, rec *recorder, record bool)) Result {
	rec := newRecorder(c.Concurrency)
	var recording atomic.Bool
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for w := 0; w < c.Concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				body(ctx, w, rec, recording.Load())
			}
		}()
	}
	if c.Warmup > 0 {
		time.Sleep(c.Warmup)
	}
	rec.mu.Lock()
	rec.ops.Store(0)
	rec.errs.Store(0)
	rec.first = nil
	rec.mu.Unlock()
	recording.Store(true)
	start := time.Now()
	stop := make(chan struct{})
	go progress(c, rec, start, c.Duration, stop)
	time.Sleep(c.Duration)
	recording.Store(false)
	elapsed := time.Since(start)
	close(stop)
	cancel()
	wg.Wait()
	return rec.result(c, workload, elapsed)
}

// openSessions opens c.Concurrency sessions held for a whole workload; closeAll closes them
// and their pool.
func openSessions(c *Config, workload string) (conns []*sql.Conn, closeAll func(), err error) {
	db, err := openDB(c, 15*time.Second)
	if err != nil {
		return nil, nil, err
	}
	db.SetMaxOpenConns(c.Concurrency)
	db.SetMaxIdleConns(c.Concurrency)
	closeAll = func() {
		for _, cn := range conns {
			if cn != nil {
				cn.Close()
			}
		}
		db.Close()
	}
	conns = make([]*sql.Conn, c.Concurrency)
	for i := range conns {
		if conns[i], err = db.Conn(context.Background()); err != nil {
			closeAll()
			return nil, nil, fmt.Errorf("%s: open session %d: %w", workload, i, err)
		}
	}
	return conns, closeAll, nil
}

// Ping: Concurrency sessions each run SELECT 1 back to back.
func Ping(c Config) (Result, error) {
	defaults(&c)
	conns, closeAll, err := openSessions(&c, "ping")
	if err != nil {
		return Result{}, err
	}
	defer closeAll()
	res := timed(&c, "ping", func(ctx context.Context, w int, rec *recorder, record bool) {
		var v int
		t0 := time.Now()
		err := conns[w].QueryRowContext(context.Background(), "SELECT 1").Scan(&v)
		d := time.Since(t0)
		if !record {
			return
		}
		if err != nil {
			rec.fail(err)
			time.Sleep(10 * time.Millisecond)
			return
		}
		rec.ops.Add(1)
		rec.lat[w] = append(rec.lat[w], d)
	})
	return res, nil
}

// connectQuery is one login operation: connect + login, SELECT 1, close. It returns the
// login time and the whole time.
func connectQuery(ctx context.Context, db *sql.DB, hold time.Duration) (login, total time.Duration, err error) {
	t0 := time.Now()
	conn, err := db.Conn(ctx)
	if err != nil {
		return 0, 0, err
	}
	login = time.Since(t0)
	var v int
	err = conn.QueryRowContext(ctx, "SELECT 1").Scan(&v)
	if err == nil && hold > 0 {
		time.Sleep(hold)
	}
	// MaxIdleConns is 0, so releasing the connection closes it (a logout, as with no pool).
	conn.Close()
	return login, time.Since(t0), err
}

// Login: Concurrency workers each connect, log in, run SELECT 1 and close, back to back.
func Login(c Config) (Result, error) {
	defaults(&c)
	return connectLoop(&c, "login", 15*time.Second, 0)
}

// connectLoop is login and queue: each worker connects, logs in, queries, holds the session
// for hold and closes it, back to back; connections are never reused.
func connectLoop(c *Config, workload string, dialTimeout, hold time.Duration) (Result, error) {
	db, err := openDB(c, dialTimeout)
	if err != nil {
		return Result{}, err
	}
	defer db.Close()
	db.SetMaxIdleConns(-1)
	res := timed(c, workload, func(ctx context.Context, w int, rec *recorder, record bool) {
		login, total, err := connectQuery(context.Background(), db, hold)
		if !record {
			return
		}
		if err != nil {
			rec.fail(err)
			time.Sleep(10 * time.Millisecond)
			return
		}
		rec.ops.Add(1)
		rec.lat[w] = append(rec.lat[w], total)
		rec.login[w] = append(rec.login[w], login)
	})
	return res, nil
}

// Stream: Concurrency sessions each read a StreamBytes result end to end, repeatedly.
func Stream(c Config) (Result, error) {
	defaults(&c)
	conns, closeAll, err := openSessions(&c, "stream")
	if err != nil {
		return Result{}, err
	}
	defer closeAll()
	query := fmt.Sprintf("STREAM %d", c.StreamBytes)
	if c.Count > 0 {
		// A fixed amount of work: results take long enough that a time window would cut
		// them off and count whole results only.
		return counted(&c, conns, query)
	}
	res := timed(&c, "stream", func(ctx context.Context, w int, rec *recorder, record bool) {
		t0 := time.Now()
		err := readAll(conns[w], query)
		d := time.Since(t0)
		if !record {
			return
		}
		if err != nil {
			rec.fail(err)
			time.Sleep(10 * time.Millisecond)
			return
		}
		rec.ops.Add(1)
		rec.lat[w] = append(rec.lat[w], d)
	})
	// Only whole results count; MB/s from completed results over the window.
	res.Bytes = res.Ops * c.StreamBytes
	if res.Elapsed > 0 {
		res.MBps = float64(res.Bytes) / 1e6 / res.Elapsed.Seconds()
	}
	return res, nil
}

func counted(c *Config, conns []*sql.Conn, query string) (Result, error) {
	if c.Warmup > 0 {
		_ = readAll(conns[0], query)
	}
	rec := newRecorder(c.Concurrency)
	start := time.Now()
	stop := make(chan struct{})
	go progress(c, rec, start, 0, stop)
	var wg sync.WaitGroup
	for w := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < c.Count; i++ {
				t0 := time.Now()
				if err := readAll(conns[w], query); err != nil {
					rec.fail(err)
					return
				}
				rec.lat[w] = append(rec.lat[w], time.Since(t0))
				rec.ops.Add(1)
			}
		}()
	}
	wg.Wait()
	close(stop)
	res := rec.result(c, "stream", time.Since(start))
	res.Bytes = res.Ops * c.StreamBytes
	if res.Elapsed > 0 {
		res.MBps = float64(res.Bytes) / 1e6 / res.Elapsed.Seconds()
	}
	return res, nil
}

func readAll(conn *sql.Conn, query string) error {
	rows, err := conn.QueryContext(context.Background(), query)
	if err != nil {
		return err
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	n := 0
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return err
		}
		n++
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if n == 0 {
		return errors.New("stream: no rows")
	}
	return nil
}

// Idle opens Sessions sessions (Concurrency at a time), checks each with a query, calls
// WhileHeld, then closes them all.
func Idle(c Config) (Result, error) {
	defaults(&c)
	db, err := openDB(&c, 60*time.Second)
	if err != nil {
		return Result{}, err
	}
	defer db.Close()
	db.SetMaxOpenConns(0)
	db.SetMaxIdleConns(c.Sessions + 1)
	rec := newRecorder(c.Concurrency)
	conns := make([]*sql.Conn, c.Sessions)
	var next atomic.Int64
	start := time.Now()
	stop := make(chan struct{})
	go progress(&c, rec, start, 0, stop)
	var wg sync.WaitGroup
	for w := 0; w < c.Concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= c.Sessions {
					return
				}
				t0 := time.Now()
				conn, err := db.Conn(context.Background())
				if err == nil {
					var v int
					if err = conn.QueryRowContext(context.Background(), "SELECT 1").Scan(&v); err != nil {
						conn.Close()
					}
				}
				if err != nil {
					rec.fail(err)
					continue
				}
				rec.login[w] = append(rec.login[w], time.Since(t0))
				conns[i] = conn
				rec.ops.Add(1)
			}
		}()
	}
	wg.Wait()
	close(stop)
	openTime := time.Since(start)
	res := rec.result(&c, "idle", openTime)
	res.Sessions = int(rec.ops.Load())
	res.OpenTime = openTime
	if c.WhileHeld != nil {
		c.WhileHeld()
	}
	for _, conn := range conns {
		if conn != nil {
			conn.Close()
		}
	}
	return res, nil
}

// Queue: Concurrency workers (more than the bucket's cap) each connect, query, hold the
// session for Hold and close, back to back. LoginLat is then mostly queue wait; Fairness is
// Jain's index over the workers' completions.
func Queue(c Config) (Result, error) {
	defaults(&c)
	return connectLoop(&c, "queue", 60*time.Second, c.Hold)
}
