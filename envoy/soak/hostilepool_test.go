package soak

import (
	"context"
	"database/sql"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tdspool/tdspool/deployments/envoyconfig"
	"github.com/tdspool/tdspool/internal/stack"
	"github.com/tdspool/tdspool/tds"
)

// batch is a SQL_BATCH payload with the ALL_HEADERS a TDS 7.2+ client sends.
func batch(sql string) []byte {
	return (&tds.SQLBatch{Headers: tds.AllHeaders{HasTransaction: true, OutstandingRequests: 1}, Text: sql}).AppendSQLBatch(nil)
}

// untilDone reads messages until one ends in a final DONE (no MORE bit) and returns every
// event seen; with attn it waits for the DONE that acknowledges an ATTENTION instead.
func (rc *rawConn) untilDone(attn bool) ([]tds.Event, error) {
	var all []tds.Event
	for {
		evs, err := rc.reply()
		all = append(all, evs...)
		if err != nil {
			return all, err
		}
		for _, ev := range evs {
			if ev.Token != tds.TokenDone {
				continue
			}
			if attn && ev.Done.Status&tds.DoneAttn != 0 || !attn && ev.Done.Status&tds.DoneMore == 0 {
				return all, nil
			}
		}
	}
}

// checkClean runs SELECT 1, 2, 3 and reports anything in the answer that is not its own: a
// stray result of an earlier request (another column count), an error, an ATTENTION ack.
func (rc *rawConn) checkClean() error {
	if err := rc.send(tds.PacketSQLBatch, batch("SELECT 1, 2, 3")); err != nil {
		return err
	}
	evs, err := rc.untilDone(false)
	if err != nil {
		return fmt.Errorf("no answer to the follow-up query: %w", err)
	}
	for _, ev := range evs {
		switch {
		case ev.Token == tds.TokenColMetadata && ev.Columns != 3,
			ev.Token == tds.TokenError,
			ev.Token == tds.TokenDone && ev.Done.Status&(tds.DoneAttn|tds.DoneError) != 0:
			return fmt.Errorf("the follow-up query's answer carries %v (all: %v)", ev, evs)
		}
	}
	return nil
}

// loginFailures counts the hostile clients' own logins that failed, and keeps the first
// reason: an attack that never got past its login proved nothing.
var loginFailures atomic.Int64
var firstLoginFailure atomic.Value

func pooledLogin(addr, database string) (*rawConn, error) {
	rc, err := rawLogin(addr, demoUser, demoPassword, database)
	if err != nil {
		loginFailures.Add(1)
		firstLoginFailure.CompareAndSwap(nil, err.Error())
	}
	return rc, err
}

// pooledHostileKinds attack a session of a pooled bucket (database picks the bucket) at the
// moments the proxy has its own bytes in flight: the reset acknowledgement of a reused
// backend, a transaction-mode prelude, a borrowed backend bound to one request. Each returns
// a finding ("" if none) about what a well-behaved client would have seen.
var pooledHostileKinds = []struct {
	name string
	run  func(rng *rand.Rand, addr, database string) string
}{
	{"request then close at once", func(rng *rand.Rand, addr, database string) string {
		rc, err := pooledLogin(addr, database)
		if err != nil {
			return ""
		}
		_ = rc.send(tds.PacketSQLBatch, batch([]string{"SELECT id, pad FROM big", "BEGIN TRANSACTION; INSERT INTO soak_rows VALUES (-3, 1)", "SELECT 1"}[rng.IntN(3)]))
		if tc, ok := rc.c.(*net.TCPConn); ok && rng.IntN(2) == 0 {
			_ = tc.SetLinger(0)
		}
		rc.c.Close()
		return ""
	}},
	{"ATTENTION at a random point", func(rng *rand.Rand, addr, database string) string {
		rc, err := pooledLogin(addr, database)
		if err != nil {
			return ""
		}
		defer rc.c.Close()
		_ = rc.c.SetDeadline(time.Now().Add(8 * time.Second))
		point := rng.IntN(4)
		if point >= 1 { // 1: right after the request; 2: mid-result; 3: after the whole answer
			if rc.send(tds.PacketSQLBatch, batch("SELECT id, pad FROM big")) != nil {
				return ""
			}
			switch point {
			case 2:
				if _, err := rc.reply(); err != nil {
					return ""
				}
			case 3:
				if _, err := rc.untilDone(false); err != nil {
					return fmt.Sprintf("the big result did not arrive: %v", err)
				}
			}
		}
		if rc.send(tds.PacketAttention, nil) != nil {
			return ""
		}
		if point == 0 || point == 3 {
			// Nothing runs: SQL Server acknowledges at once; read briefly, then go on.
			_ = rc.c.SetReadDeadline(time.Now().Add(2 * time.Second))
		}
		if _, err := rc.untilDone(true); err != nil {
			return fmt.Sprintf("ATTENTION at point %d: no acknowledgement: %v", point, err)
		}
		_ = rc.c.SetDeadline(time.Now().Add(8 * time.Second))
		if err := rc.checkClean(); err != nil {
			return fmt.Sprintf("after ATTENTION at point %d: %v", point, err)
		}
		return ""
	}},
	{"truncated packet as the first request", func(rng *rand.Rand, addr, database string) string {
		rc, err := pooledLogin(addr, database)
		if err != nil {
			return ""
		}
		defer rc.c.Close()
		p := tds.AppendPackets(nil, tds.PacketSQLBatch, 0, batch("SELECT id, pad FROM big"), 4096)
		_, _ = rc.c.Write(p[:1+rng.IntN(len(p)-1)])
		_ = rc.c.SetReadDeadline(time.Now().Add(time.Duration(rng.IntN(300)) * time.Millisecond))
		_, _ = rc.c.Read(make([]byte, 4096))
		return ""
	}},
	{"lying packet header as the first request", func(rng *rand.Rand, addr, database string) string {
		rc, err := pooledLogin(addr, database)
		if err != nil {
			return ""
		}
		defer rc.c.Close()
		p := tds.AppendPackets(nil, tds.PacketSQLBatch, 0, batch("SELECT 1"), 4096)
		binary.BigEndian.PutUint16(p[2:4], uint16(rng.IntN(65536)))
		_, _ = rc.c.Write(p)
		_ = rc.c.SetReadDeadline(time.Now().Add(2 * time.Second))
		_, _ = rc.c.Read(make([]byte, 4096))
		return ""
	}},
	{"garbage request after a moved SET and USE", func(rng *rand.Rand, addr, database string) string {
		rc, err := pooledLogin(addr, database)
		if err != nil {
			return ""
		}
		defer rc.c.Close()
		_ = rc.c.SetDeadline(time.Now().Add(8 * time.Second))
		// The session's state now differs from a fresh login's: the next borrow re-applies it
		// (transaction mode) ahead of the request, which here is garbage or cut short.
		if rc.send(tds.PacketSQLBatch, batch("SET DATEFORMAT dmy; SET NOCOUNT ON")) != nil {
			return ""
		}
		if _, err := rc.untilDone(false); err != nil {
			return ""
		}
		time.Sleep(time.Duration(rng.IntN(50)) * time.Millisecond)
		if rng.IntN(2) == 0 {
			_ = rc.send(tds.PacketType(rng.IntN(256)), randomBytes(rng, rng.IntN(300)))
		} else {
			p := tds.AppendPackets(nil, tds.PacketSQLBatch, 0, batch("SELECT 1"), 4096)
			_, _ = rc.c.Write(p[:rng.IntN(len(p))])
		}
		_ = rc.c.SetReadDeadline(time.Now().Add(time.Duration(rng.IntN(500)) * time.Millisecond))
		_, _ = rc.c.Read(make([]byte, 4096))
		return ""
	}},
	{"message without EOM, then close", func(rng *rand.Rand, addr, database string) string {
		rc, err := pooledLogin(addr, database)
		if err != nil {
			return ""
		}
		p := tds.AppendPackets(nil, tds.PacketSQLBatch, 0, batch("SELECT 1"), 4096)
		p[1] &^= byte(tds.StatusEOM)
		_, _ = rc.c.Write(p)
		time.Sleep(time.Duration(rng.IntN(50)) * time.Millisecond)
		rc.c.Close()
		return ""
	}},
}

// TestHostileInputPooled: the pooled attacks above, on a session-pooled and a
// transaction-pooled bucket of one Envoy, while real go-mssqldb clients run the isolation
// checks of the pooled soak on both. Every real session succeeds and stays isolated, every
// ATTENTION is acknowledged and leaves nothing stray, Envoy keeps its PID with no panic, and
// at rest each bucket's backend connections are exactly its idle pooled ones
// (granted − released), none for the transaction bucket once max_idle_time passed.
func TestHostileInputPooled(t *testing.T) {
	f := &pooledFleet{t: t}
	f.startBackends()
	var buckets []map[string]any
	var clusters []envoyconfig.Bucket
	for i, b := range f.buckets {
		mode := "POOL_MODE_SESSION"
		if b.tx {
			mode = "POOL_MODE_TRANSACTION"
		}
		cluster := fmt.Sprintf("pool_%d", i)
		buckets = append(buckets, map[string]any{"name": b.name, "cluster": cluster, "max_connections": poolCapacity,
			"queue_timeout": "5s", "max_queue": 500, "backend_leg": "MODULE",
			"backend_addresses": []string{fmt.Sprintf("127.0.0.1:%d", b.backend.port)}, "backend_encryption": "PLAINTEXT",
			"pool": map[string]any{"mode": mode, "max_idle_time": "2s"}})
		clusters = append(clusters, envoyconfig.Bucket{Cluster: cluster, Port: b.backend.port})
	}
	js, _ := json.Marshal(map[string]any{
		"listener": map[string]any{"encryption": "OFF_ALLOWED"}, "buckets": buckets,
		"routes":         []map[string]any{{"database": txDatabase, "bucket": txBucket}},
		"default_bucket": sesBucket,
		"timeouts":       map[string]any{"first_byte_timeout": "2s", "login_timeout": "4s"},
	})
	listen, _ := stack.FreePort()
	admin, _ := stack.FreePort()
	yaml, err := envoyconfig.Render(envoyconfig.Params{ListenerPort: listen, AdminPort: admin, FilterConfigJSON: string(js), Buckets: clusters})
	if err != nil {
		t.Fatal(err)
	}
	e, err := stack.StartEnvoy(stack.EnvoyOptions{Config: yaml, AdminPort: admin, ComponentLogLevel: envoyLogLevels})
	if err != nil {
		t.Fatal(err)
	}
	p := &proxyProc{id: "hostile-pool", envoy: e, port: listen, pid: e.Pid()}
	t.Cleanup(func() {
		e.Stop()
		if t.Failed() {
			dir, _, _ := saveLogs(map[string]string{p.id: e.Output()}, nil)
			t.Logf("envoy output (tail; the whole log kept in %s):\n%s", dir, tail(e.Output(), 60))
		}
	})
	addr := fmt.Sprintf("127.0.0.1:%d", listen)

	total := 200
	if long() {
		total = 5000
	}
	var next atomic.Int64
	var byKind sync.Map
	var findingsMu sync.Mutex
	var findings []string
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(seed uint64) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, 42))
			for next.Add(1) <= int64(total) {
				k := pooledHostileKinds[rng.IntN(len(pooledHostileKinds))]
				b := f.buckets[rng.IntN(2)]
				if msg := k.run(rng, addr, b.database); msg != "" {
					findingsMu.Lock()
					if len(findings) < 20 {
						findings = append(findings, fmt.Sprintf("%s on %s: %s", k.name, b.name, msg))
					}
					findingsMu.Unlock()
				}
				n, _ := byKind.LoadOrStore(k.name, new(atomic.Int64))
				n.(*atomic.Int64).Add(1)
			}
		}(uint64(w))
	}
	var real, realErrs atomic.Int64
	var firstErr atomic.Value
	done := make(chan struct{})
	var rw sync.WaitGroup
	for i, b := range f.buckets {
		db := f.dbFor(p, b)
		defer db.Close()
		base := map[bool]int64{}
		direct, _ := sql.Open("sqlserver", fmt.Sprintf("sqlserver://%s:%s@127.0.0.1:%d?database=%s&encrypt=disable",
			demoUser, demoPassword, b.backend.port, b.database))
		var o int64
		if err := direct.QueryRow("SELECT @@OPTIONS").Scan(&o); err != nil {
			t.Fatal(err)
		}
		direct.Close()
		base[b.tx] = o
		for c := 0; c < 2; c++ {
			rw.Add(1)
			go func(seed uint64) {
				defer rw.Done()
				rng := rand.New(rand.NewPCG(seed, 3))
				for id := int(seed) * 1000000; ; id++ {
					select {
					case <-done:
						return
					default:
					}
					if err := pooledSession(context.Background(), db, b, id, base[b.tx], rng); err != nil {
						realErrs.Add(1)
						firstErr.CompareAndSwap(nil, fmt.Sprintf("%s: %v", b.name, err))
					} else {
						real.Add(1)
					}
				}
			}(uint64(10*i + c + 1))
		}
	}
	wg.Wait()
	close(done)
	rw.Wait()

	kinds := []string{}
	byKind.Range(func(k, v any) bool {
		kinds = append(kinds, fmt.Sprintf("%s×%d", k, v.(*atomic.Int64).Load()))
		return true
	})
	t.Logf("FIGURES %d pooled hostile connections [%s]; %d real sessions, %d failed", total, strings.Join(kinds, ", "), real.Load(), realErrs.Load())
	t.Logf("FIGURES %d hostile logins failed (first: %v)", loginFailures.Load(), firstLoginFailure.Load())
	if loginFailures.Load() > int64(total)/20 {
		t.Errorf("%d of %d hostile clients could not log in (first: %v)", loginFailures.Load(), total, firstLoginFailure.Load())
	}
	for _, m := range findings {
		t.Errorf("%s", m)
	}
	if realErrs.Load() != 0 {
		t.Errorf("%d real sessions failed among the hostile traffic (first: %v)", realErrs.Load(), firstErr.Load())
	}
	if real.Load() == 0 {
		t.Errorf("no real session ran")
	}
	if exited, err := e.Exited(); exited || e.Pid() != p.pid {
		t.Fatalf("Envoy died: %v", err)
	}
	if strings.Contains(e.Output(), "fatal error") {
		t.Errorf("Envoy logged a fatal error")
	}
	var stats map[string]uint64
	// With idle pooled backends (a client just left, max_idle_time 2 s not yet passed): the
	// slots Envoy counts as held are exactly the backends it keeps.
	for _, b := range f.buckets {
		if rc, err := rawLogin(addr, demoUser, demoPassword, b.database); err == nil {
			_ = rc.checkClean()
			rc.c.Close()
		}
		var open int
		var g, r uint64
		for deadline := time.Now().Add(1500 * time.Millisecond); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			if c, err := net.Dial("tcp", addr); err == nil {
				c.Close()
			}
			if stats, err = e.Stats(); err != nil {
				continue
			}
			open = b.backend.current().OpenConnections()
			g, r = stats["tdspool.bucket."+b.name+".slot_granted_total"], stats["tdspool.bucket."+b.name+".slot_released_total"]
			if open > 0 && g-r == uint64(open) {
				break
			}
		}
		if open == 0 || g-r != uint64(open) {
			t.Errorf("%s with idle pooled backends: %d backend connections, slots granted − released %d (%d − %d)", b.name, open, g-r, g, r)
		}
	}
	// At rest (max_idle_time 2 s): no client connection, no backend connection, every slot back.
	rest := func() bool {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
		}
		if stats, err = e.Stats(); err != nil {
			return false
		}
		for _, b := range f.buckets {
			g, r := stats["tdspool.bucket."+b.name+".slot_granted_total"], stats["tdspool.bucket."+b.name+".slot_released_total"]
			if b.backend.current().OpenConnections() != 0 || g != r {
				return false
			}
		}
		return statSum(stats, "connections_active") <= 1
	}
	for deadline := time.Now().Add(15 * time.Second); !rest() && time.Now().Before(deadline); {
		time.Sleep(200 * time.Millisecond)
	}
	for _, b := range f.buckets {
		g, r := stats["tdspool.bucket."+b.name+".slot_granted_total"], stats["tdspool.bucket."+b.name+".slot_released_total"]
		if n := b.backend.current().OpenConnections(); n != 0 || g != r {
			t.Errorf("%s at rest: %d backend connections, slots granted %d released %d; sessions %+v", b.name, n, g, r, b.backend.current().SessionInfos())
		}
		st := b.backend.current().Stats()
		t.Logf("FIGURES %s: %d backend logins, %d resets, %d attentions; slots granted %d released %d",
			b.name, st.Logins, st.Resets, st.Attentions, g, r)
	}
	if v := statSum(stats, "connections_active"); v > 1 { // the probe's own connection may still count
		t.Errorf("connections_active = %d at the end", v)
	}
	for name, v := range stats {
		if strings.HasSuffix(name, "panics_total") && v != 0 {
			t.Errorf("%s = %d", name, v)
		}
	}
}
