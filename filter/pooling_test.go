package filter

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/tdspool/tdspool/envoy/host"
	"github.com/tdspool/tdspool/envoy/host/hosttest"
	"github.com/tdspool/tdspool/filter/backend"
	"github.com/tdspool/tdspool/filter/pool"
	"github.com/tdspool/tdspool/tds"
)

const pooledConfig = `{
  "listener": {"encryption": "OFF_ALLOWED", "max_packet_size": 8192},
  "buckets": [{"name": "p1", "max_connections": 1, "queue_timeout": "2s",
    "backend_leg": "MODULE", "backend_addresses": ["db.internal:1433"],
    "pool": {"mode": "POOL_MODE_SESSION"}}],
  "default_bucket": "p1"
}`

func pooledHarness(t testing.TB) (*harness, *[]*fakeBackend) {
	h := newHarness(t, pooledConfig)
	dialed := &[]*fakeBackend{}
	h.f.dial = func(tg backend.Target, hd backend.Handler) backendConn {
		fb := &fakeBackend{target: tg, h: hd}
		*dialed = append(*dialed, fb)
		return fb
	}
	return h, dialed
}

func loginFor(user, password string) []byte {
	l := tds.Login7{TDSVersion: tds.TDSVersion74, PacketSize: 4096, UserName: user, Password: tds.NewPassword(password),
		Database: "db", ServerName: "proxy", AppName: "test", HostName: "h", CltIntName: "go-test",
		OptionFlags3: tds.Login7Extension, Features: []tds.Feature{{ID: tds.FeatureSessionRecovery, Data: []byte{0, 0, 0, 0}}}}
	return tds.AppendPackets(nil, tds.PacketLogin7, 0, l.AppendLogin7(nil), 4096)
}

// held is how many slots of bucket p1 are taken (the session's or the pool's).
func (h *harness) held() int {
	ls := h.f.slots.(*localSlots)
	ls.mu.Lock()
	defer ls.mu.Unlock()
	return ls.buckets["p1"].held
}

// pooledLogin logs a client in; when the pool has nothing for it, it plays the backend's
// handshake and login response on the next dialed connection.
func (c *client) pooledLogin(t testing.TB, dialed *[]*fakeBackend, user, password string) (fb *fakeBackend, reused bool) {
	t.Helper()
	n := len(*dialed)
	c.fromClient(preloginMsg(tds.EncryptOff))
	c.conn.ToClient = nil
	c.fromClient(loginFor(user, password))
	if len(c.conn.ToClient) > 0 {
		return nil, true // answered from the pool at once
	}
	deadline := time.Now().Add(2 * time.Second)
	for len(*dialed) == n && time.Now().Before(deadline) {
		c.conn.RunPosted()
		time.Sleep(time.Millisecond)
	}
	if len(*dialed) != n+1 {
		t.Fatalf("no backend dialed for %s", user)
	}
	fb = (*dialed)[n]
	fb.h.Ready(&tds.Prelogin{}, tds.EncryptionNone)
	c.waitPosted(time.Second)
	l, err := tds.DecodeLogin7(fb.login[tds.HeaderSize:])
	if err != nil {
		t.Fatal(err)
	}
	if _, asked := l.Feature(tds.FeatureSessionRecovery); asked || l.PacketSize != 8192 {
		t.Fatalf("backend login %v: want no SESSIONRECOVERY and the listener's packet size", l)
	}
	var p []byte
	p = tds.EnvChangeDatabase("db", "master").AppendEnvChange(p)
	p = tds.EnvChangePacketSize(8192, 4096).AppendEnvChange(p)
	p = tds.LoginAck{Interface: 1, TDSVersion: tds.TDSVersion74, ProgName: "Microsoft SQL Server", ProgVersion: 0x10000000}.AppendLoginAck(p)
	p = tds.Done{Token: tds.TokenDone}.AppendDone(p)
	fb.h.Data(tds.AppendPacketsSPID(nil, tds.PacketReply, 0, 57, p, 4096))
	c.waitPosted(time.Second)
	return fb, false
}

func doneReply(extra ...[]byte) []byte {
	p := bytes.Join(extra, nil)
	p = tds.Done{Token: tds.TokenDone, Status: tds.DoneCount, RowCount: 1}.AppendDone(p)
	return tds.AppendPacketsSPID(nil, tds.PacketReply, 0, 57, p, 8192)
}

// roundTrip sends a batch and plays the backend's reply; it returns what the backend got
// and what the client got.
func (c *client) roundTrip(t *testing.T, fb *fakeBackend, reply []byte) (sent, got []byte) {
	t.Helper()
	fb.written = nil
	c.fromClient(tds.AppendPackets(nil, tds.PacketSQLBatch, 0, (&tds.SQLBatch{Text: "select 1"}).AppendSQLBatch(nil), 8192))
	sent = fb.written
	c.conn.ToClient = nil
	fb.h.Data(reply)
	c.waitPosted(time.Second)
	return sent, c.conn.ToClient
}

func TestPooledBackendIsReusedAndReset(t *testing.T) {
	h, dialed := pooledHarness(t)
	a := h.connect()
	fb, reused := a.pooledLogin(t, dialed, "app", "pw")
	if reused {
		t.Fatal("first login served from an empty pool")
	}
	if sent, _ := a.roundTrip(t, fb, doneReply()); sent[1]&byte(tds.StatusResetConnection) != 0 {
		t.Fatal("a fresh backend's first request was marked for reset")
	}
	a.s.OnRead(0, true) // the client hangs up
	a.s.OnEvent(host.RemoteClose)
	if fb.closed || fb.h != nil || h.held() != 1 {
		t.Fatalf("backend closed=%v handler=%v, slots held %d: want it idle in the pool with its slot", fb.closed, fb.h, h.held())
	}

	// B: same login, no dial, the recorded reply with its own SPID; its first request is reset.
	b := h.connect()
	if _, reused := b.pooledLogin(t, dialed, "app", "pw"); !reused || len(*dialed) != 1 {
		t.Fatalf("reused=%v dials=%d", reused, len(*dialed))
	}
	var r tds.Reassembler
	r.Feed(b.conn.ToClient)
	msg, err := r.Next()
	if err != nil {
		t.Fatal(err)
	}
	rec, err := tds.ParseLoginReply(msg.Payload)
	if err != nil || rec.PacketSize != 8192 || rec.Database != "db" || b.conn.ToClient[5] != 57 {
		t.Fatalf("replayed reply %v (%v), spid byte %d", rec, err, b.conn.ToClient[5])
	}
	fb.h = b.s.(*session).leg.(*moduleLeg)
	sent, got := b.roundTrip(t, fb, doneReply(tds.EnvChangeDatabase("db", "other").AppendEnvChange(nil), tds.EnvChangeResetAck().AppendEnvChange(nil)))
	if tds.PacketStatus(sent[1])&tds.StatusResetConnection == 0 {
		t.Fatal("the reused backend's first request does not carry RESETCONNECTION")
	}
	if !bytes.Equal(got, doneReply()) {
		t.Fatalf("client got % x, want the reply without the reset's tokens", got)
	}
	if sent, _ := b.roundTrip(t, fb, doneReply()); tds.PacketStatus(sent[1])&tds.StatusResetConnection != 0 {
		t.Fatal("the second request was marked for reset too")
	}
	if v := h.metrics.Value("bucket.p1.resets_total"); v != 1 {
		t.Fatalf("resets_total = %d", v)
	}
	b.s.OnEvent(host.RemoteClose)
	for name, want := range map[string]uint64{
		"bucket.p1.pool_created_total": 1, "bucket.p1.pool_borrowed_total": 1, "bucket.p1.pool_logins_saved_total": 1,
		"bucket.p1.pool_idle": 1, "bucket.p1.pool_active": 0, "bucket.p1.pool_closed_total": 0,
		"bucket.p1.pool_keys": 1, "bucket.p1.slot_granted_total": 1, "bucket.p1.login_ok_total": 2,
	} {
		if got := h.metrics.Value(name); got != want {
			t.Errorf("%s = %d, want %d", name, got, want)
		}
	}
	// One warm borrow (B's), one borrow-wait sample: A's real login is not a borrow.
	if w := h.metrics.Samples("bucket.p1.pool_borrow_wait_us"); len(w) != 1 {
		t.Errorf("pool_borrow_wait_us samples %v, want one (B's borrow)", w)
	}

	// C: another login waits for the one slot; the idle backend is evicted to free it.
	c := h.connect()
	fc, reused := c.pooledLogin(t, dialed, "other", "pw")
	if reused || !fb.closed || fc == nil {
		t.Fatalf("reused=%v evicted=%v", reused, fb.closed)
	}
	c.s.OnEvent(host.RemoteClose)
	h.f.Destroy()
	if !fc.closed || h.held() != 0 {
		t.Fatalf("after Destroy: backend closed=%v, slots held %d", fc.closed, h.held())
	}
}

func TestPooledSessionTaintsAndFailures(t *testing.T) {
	for _, tc := range []struct {
		name string
		play func(t *testing.T, c *client, fb *fakeBackend)
	}{
		{"application role", func(t *testing.T, c *client, fb *fakeBackend) {
			c.fromClient(tds.AppendPackets(nil, tds.PacketSQLBatch, 0, (&tds.SQLBatch{Text: "EXEC sp_setapprole 'r', 'p'"}).AppendSQLBatch(nil), 8192))
			fb.h.Data(doneReply())
			c.waitPosted(time.Second)
		}},
		{"request in flight", func(t *testing.T, c *client, fb *fakeBackend) {
			c.fromClient(tds.AppendPackets(nil, tds.PacketSQLBatch, 0, (&tds.SQLBatch{Text: "waitfor delay '1:00'"}).AppendSQLBatch(nil), 8192))
		}},
		{"unparsed response", func(t *testing.T, c *client, fb *fakeBackend) {
			c.fromClient(tds.AppendPackets(nil, tds.PacketSQLBatch, 0, (&tds.SQLBatch{Text: "select 1"}).AppendSQLBatch(nil), 8192))
			fb.h.Data(tds.AppendPackets(nil, tds.PacketReply, 0, []byte{0x01, 0x02}, 8192))
			c.waitPosted(time.Second)
		}},
		{"backend died while lent", func(t *testing.T, c *client, fb *fakeBackend) { fb.dead = true }},
		{"transaction left open", func(t *testing.T, c *client, fb *fakeBackend) {
			c.fromClient(tds.AppendPackets(nil, tds.PacketSQLBatch, 0, (&tds.SQLBatch{Text: "BEGIN TRAN; UPDATE t SET a = 1"}).AppendSQLBatch(nil), 8192))
			fb.h.Data(doneReply(tds.EnvChangeBeginTran(7).AppendEnvChange(nil)))
			c.waitPosted(time.Second)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, dialed := pooledHarness(t)
			a := h.connect()
			fb, _ := a.pooledLogin(t, dialed, "app", "pw")
			tc.play(t, a, fb)
			a.s.OnEvent(host.RemoteClose)
			if !fb.closed || h.held() != 0 {
				t.Fatalf("backend closed=%v, slots held %d: a tainted backend must be closed and its slot freed", fb.closed, h.held())
			}
		})
	}
}

// A reused backend whose reset fails, with no other idle backend of the key, is replaced by a
// hidden login with the session's kept LOGIN7 and the client's request is resent: the client
// sees one ordinary answer. A refused login gives the client the server's own error; a client
// that leaves meanwhile leaves no slot behind.
func TestPooledResetFailureLogsInANewBackend(t *testing.T) {
	for _, tc := range []struct {
		name    string
		fail    func(fb *fakeBackend)
		outcome string // "ok", "refused", "client leaves"
	}{
		{"no acknowledgement", func(fb *fakeBackend) { fb.h.Data(doneReply()) }, "ok"},
		{"backend gone", func(fb *fakeBackend) { fb.h.Closed(io.EOF) }, "ok"},
		{"login refused", func(fb *fakeBackend) { fb.h.Data(doneReply()) }, "refused"},
		{"client leaves during the login", func(fb *fakeBackend) { fb.h.Closed(io.EOF) }, "client leaves"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, dialed := pooledHarness(t)
			a := h.connect()
			fb, _ := a.pooledLogin(t, dialed, "app", "pw")
			firstLogin := append([]byte(nil), fb.login...)
			a.s.OnEvent(host.RemoteClose)
			b := h.connect()
			b.pooledLogin(t, dialed, "app", "pw")
			sess := b.s.(*session)
			if sess.pool.relogin == nil || sess.login7 != nil {
				t.Fatal("a session served from the pool keeps no LOGIN7 for a re-login (or a framed one it never sends)")
			}
			batch := tds.AppendPackets(nil, tds.PacketSQLBatch, 0, (&tds.SQLBatch{Text: "select 1"}).AppendSQLBatch(nil), 8192)
			b.fromClient(batch)
			sent := append([]byte(nil), fb.written...)
			b.conn.ToClient = nil
			tc.fail(fb)
			b.waitPosted(time.Second) // the failure, then the old slot's hand-over
			b.conn.RunPosted()
			if !fb.closed || len(*dialed) != 2 || b.conn.Closed || h.held() != 1 {
				t.Fatalf("failed backend closed=%v, dials %d, client closed %v, slots %d", fb.closed, len(*dialed), b.conn.Closed, h.held())
			}
			zeroed := func() {
				t.Helper()
				if sess.pool.relogin != nil {
					t.Fatal("the kept LOGIN7 was not dropped once sent")
				}
			}
			// Meanwhile the client's next bytes wait in Envoy's buffer.
			b.conn.Read = append(b.conn.Read, 0x01)
			if st := b.s.OnRead(len(b.conn.Read), false); st != host.StopIteration || len(b.conn.Read) != 1 {
				t.Fatal("client bytes during the re-login were not held")
			}
			b.conn.Read = nil
			nb := (*dialed)[1]
			if tc.outcome == "client leaves" {
				b.s.OnEvent(host.RemoteClose)
				b.s.OnDestroy()
				nb.h.Ready(&tds.Prelogin{}, tds.EncryptionNone)
				time.Sleep(10 * time.Millisecond)
				if !nb.closed || h.held() != 0 || len(nb.login) != 0 {
					t.Fatalf("new backend closed=%v, slots held %d, login sent %d bytes", nb.closed, h.held(), len(nb.login))
				}
				zeroed()
				return
			}
			nb.h.Ready(&tds.Prelogin{}, tds.EncryptionNone)
			if !bytes.Equal(nb.login, firstLogin) {
				t.Fatal("the hidden login did not send the session's prepared LOGIN7")
			}
			zeroed()
			if tc.outcome == "refused" {
				nb.h.Data(loginRefusedReply())
				b.waitPosted(time.Second)
				var r tds.Reassembler
				r.Feed(b.conn.ToClient)
				msg, err := r.Next()
				if err != nil || !bytes.Contains(msg.Payload, []byte("L\x00o\x00g\x00i\x00n\x00")) || !b.conn.Closed || h.held() != 0 {
					t.Fatalf("client got %v (% x), closed %v, slots %d", err, msg.Payload, b.conn.Closed, h.held())
				}
				return
			}
			nb.h.Data(loginAckReply())
			b.waitPosted(time.Second)
			if !bytes.Equal(nb.written, sent) || len(b.conn.ToClient) != 0 {
				t.Fatalf("resent %v, client got %d bytes", bytes.Equal(nb.written, sent), len(b.conn.ToClient))
			}
			nb.h.Data(doneReply(tds.EnvChangeResetAck().AppendEnvChange(nil)))
			b.waitPosted(time.Second)
			if !bytes.Equal(b.conn.ToClient, doneReply()) || b.conn.Closed {
				t.Fatalf("client got % x (closed %v), want one ordinary answer", b.conn.ToClient, b.conn.Closed)
			}
			if v := h.metrics.Value("bucket.p1.pool_relogins_total"); v != 1 {
				t.Fatalf("pool_relogins_total = %d", v)
			}
			b.s.OnEvent(host.RemoteClose)
			if nb.closed || h.held() != 1 {
				t.Fatalf("new backend closed=%v, slots %d: want it idle in the pool", nb.closed, h.held())
			}
			c := h.connect()
			if _, reused := c.pooledLogin(t, dialed, "app", "pw"); !reused {
				t.Fatal("the replacement backend does not serve the key")
			}
		})
	}
}

// A reused backend whose reset fails (no acknowledgement, or it is gone before answering)
// is closed and the client's request goes to the key's next idle backend: the client sees
// one ordinary answer and its session goes on.
func TestPooledResetRetriedOnAnotherBackend(t *testing.T) {
	for _, tc := range []struct {
		name string
		fail func(c *client, fb *fakeBackend)
	}{
		{"no acknowledgement", func(c *client, fb *fakeBackend) { fb.h.Data(doneReply()) }},
		{"backend gone", func(c *client, fb *fakeBackend) { fb.h.Closed(io.EOF) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, strings.Replace(pooledConfig, `"max_connections": 1`, `"max_connections": 2`, 1))
			dialed := &[]*fakeBackend{}
			h.f.dial = func(tg backend.Target, hd backend.Handler) backendConn {
				fb := &fakeBackend{target: tg, h: hd}
				*dialed = append(*dialed, fb)
				return fb
			}
			a1, a2 := h.connect(), h.connect()
			fb1, _ := a1.pooledLogin(t, dialed, "app", "pw")
			fb2, _ := a2.pooledLogin(t, dialed, "app", "pw")
			a1.s.OnEvent(host.RemoteClose)
			a2.s.OnEvent(host.RemoteClose) // fb2 is on top of the idle stack

			b := h.connect()
			if _, reused := b.pooledLogin(t, dialed, "app", "pw"); !reused {
				t.Fatal("not served from the pool")
			}
			if fb2.h == nil {
				t.Fatal("the top of the stack was not lent")
			}
			batch := tds.AppendPackets(nil, tds.PacketSQLBatch, 0, (&tds.SQLBatch{Text: "select 1"}).AppendSQLBatch(nil), 8192)
			b.fromClient(batch)
			sent := append([]byte(nil), fb2.written...)
			b.conn.ToClient = nil
			tc.fail(b, fb2)
			b.waitPosted(time.Second)
			if !fb2.closed || fb1.h == nil || !bytes.Equal(fb1.written, sent) || b.conn.Closed || len(b.conn.ToClient) != 0 {
				t.Fatalf("failed backend closed=%v, next lent=%v, resent=%v, client closed=%v got %d bytes",
					fb2.closed, fb1.h != nil, bytes.Equal(fb1.written, sent), b.conn.Closed, len(b.conn.ToClient))
			}
			fb1.h.Data(doneReply(tds.EnvChangeResetAck().AppendEnvChange(nil)))
			b.waitPosted(time.Second)
			if !bytes.Equal(b.conn.ToClient, doneReply()) || b.conn.Closed {
				t.Fatalf("client got % x (closed %v), want one ordinary answer", b.conn.ToClient, b.conn.Closed)
			}
			b.s.OnEvent(host.RemoteClose)
			if fb1.closed || h.held() != 1 {
				t.Fatalf("backend closed=%v, slots held %d: want the good backend back in the pool", fb1.closed, h.held())
			}
			if v := h.metrics.Value("bucket.p1.pool_reset_failures_total"); v != 1 {
				t.Fatalf("pool_reset_failures_total = %d", v)
			}
		})
	}
}

// tdspoolctl kill of a slot whose backend is in the pool: an idle backend is closed and its
// slot freed; a backend lent to a later client ends that client's session (its ERROR) and goes
// too.
func TestPooledBackendKilledByOperator(t *testing.T) {
	for _, lent := range []bool{false, true} {
		t.Run(map[bool]string{false: "idle", true: "lent"}[lent], func(t *testing.T) {
			h, dialed := pooledHarness(t)
			a := h.connect()
			fb, _ := a.pooledLogin(t, dialed, "app", "pw")
			kill := a.s.(*session).pool.slotKill
			a.s.OnEvent(host.RemoteClose)
			var b *client
			if lent {
				b = h.connect()
				if _, reused := b.pooledLogin(t, dialed, "app", "pw"); !reused {
					t.Fatal("not served from the pool")
				}
				b.conn.ToClient = nil
			}
			kill.kill() // the coordinator's goroutine in production
			if lent {
				b.waitPosted(time.Second)
				if !b.conn.Closed || !bytes.Contains(b.conn.ToClient, []byte{byte(tds.TokenError)}) {
					t.Fatalf("lent: client closed %v, got % x", b.conn.Closed, b.conn.ToClient)
				}
			}
			if !fb.closed || h.held() != 0 {
				t.Fatalf("backend closed %v, slots held %d", fb.closed, h.held())
			}
			if g, r := h.metrics.Value("bucket.p1.slot_granted_total"), h.metrics.Value("bucket.p1.slot_released_total"); lent && g != r {
				t.Fatalf("granted %d, released %d", g, r)
			}
		})
	}
}

// A login whose key has its backend lent out waits briefly for it to come back (a client's
// close and its reconnect race on different workers) instead of opening a second backend; a
// backend that stays lent makes it log in for real after maxReturnWait.
func TestPooledLoginWaitsForALentBackend(t *testing.T) {
	for _, returns := range []bool{true, false} {
		t.Run(map[bool]string{true: "comes back", false: "stays lent"}[returns], func(t *testing.T) {
			h, dialed := newHarness(t, strings.Replace(pooledConfig, `"max_connections": 1`, `"max_connections": 2`, 1)), &[]*fakeBackend{}
			h.f.dial = func(tg backend.Target, hd backend.Handler) backendConn {
				fb := &fakeBackend{target: tg, h: hd}
				*dialed = append(*dialed, fb)
				return fb
			}
			a := h.connect()
			a.pooledLogin(t, dialed, "app", "pw")
			b := h.connect()
			b.fromClient(preloginMsg(tds.EncryptOff))
			b.conn.ToClient = nil
			b.fromClient(loginFor("app", "pw"))
			if len(b.conn.ToClient) != 0 || len(*dialed) != 1 {
				t.Fatal("the login did not wait for the lent backend")
			}
			if n := h.metrics.Value("bucket.p1.pool_return_waits_total"); n != 0 {
				t.Fatalf("pool_return_waits_total %d before a flush", n)
			}
			// A second login of the key while B waits: the key's clients outnumber its
			// backends, so it logs a new one in at once instead of queueing behind B.
			c := h.connect()
			c.fromClient(preloginMsg(tds.EncryptOff))
			c.fromClient(loginFor("app", "pw"))
			for deadline := time.Now().Add(time.Second); len(*dialed) == 1 && time.Now().Before(deadline); {
				c.conn.RunPosted()
				time.Sleep(time.Millisecond)
			}
			if len(*dialed) != 2 {
				t.Fatal("a second login of the key waited for a lent backend too")
			}
			c.gone(host.RemoteClose)
			if returns {
				a.s.OnEvent(host.RemoteClose) // A's close, handled after B's login arrived
				b.waitPosted(time.Second)
				if len(b.conn.ToClient) == 0 || len(*dialed) != 2 {
					t.Fatalf("B answered %d bytes with %d dials: want the returned backend", len(b.conn.ToClient), len(*dialed))
				}
				b.s.(*session).flushPoolStats(true)
				if n := h.metrics.Value("bucket.p1.pool_return_waits_total"); n != 1 {
					t.Fatalf("pool_return_waits_total %d, want 1 (B's)", n)
				}
				return
			}
			deadline := time.Now().Add(time.Second)
			for len(*dialed) == 2 && time.Now().Before(deadline) {
				b.conn.RunPosted()
				time.Sleep(time.Millisecond)
			}
			if len(*dialed) != 3 {
				t.Fatal("a login kept waiting for a backend that stays lent")
			}
		})
	}
}

// The filter chains of one listener each have their own pool of a bucket and write the same
// stats: the pool gauges show the sum of both pools, not whichever flushed last.
func TestPoolGaugesSumTheChainsPools(t *testing.T) {
	m := hosttest.NewMetrics()
	st := &poolStats{}
	for name, id := range map[string]*host.MetricID{"pool_idle": &st.idle, "pool_active": &st.active, "pool_keys": &st.keys,
		"borrowed": &st.borrowed, "created": &st.created, "saved": &st.loginsSaved, "reset_failures": &st.resetFailures,
		"evictions": &st.evictions, "closed": &st.closed, "warmed": &st.warmed, "warmup_failures": &st.warmupFailures,
		"relogins": &st.relogins, "borrow_wait": &st.borrowWaitUs} {
		*id, _ = m.DefineGauge("bucket.b." + name)
	}
	conn := hosttest.NewConn(m)
	now := time.Unix(1000, 0)
	var pools []*bucketPool
	for chain, idle := range []int{2, 1} {
		bp := &bucketPool{Pool: pool.New[*pooledBackend](pool.Config{})}
		for i := range idle {
			key := pool.Key{Identity: pool.Identity{Bucket: "b", User: fmt.Sprintf("u%d-%d", chain, i)}}
			bp.AdoptIdle(key, &pooledBackend{c: &fakeBackend{}}, &tds.LoginReply{}, func() {}, now)
		}
		bp.flush(conn, st, now, true)
		pools = append(pools, bp)
	}
	if idle, keys := m.Value("bucket.b.pool_idle"), m.Value("bucket.b.pool_keys"); idle != 3 || keys != 3 {
		t.Fatalf("pool_idle %d, pool_keys %d; want 3 and 3 (2 + 1 across the two pools)", idle, keys)
	}
	pools[0].Drain()
	pools[0].flush(conn, st, now.Add(time.Minute), true)
	if idle := m.Value("bucket.b.pool_idle"); idle != 1 {
		t.Fatalf("pool_idle %d after one pool drained, want the other's 1", idle)
	}
}

// A backend's replayed login reply is cached for its next client: every variant (another
// recorded reply, a client asking for no FEATUREEXTACK, another packet size or framing) gets
// exactly the bytes built afresh, and a repeat reuses them.
func TestReplayCacheMatchesAFreshReplay(t *testing.T) {
	record := func(db string) *tds.LoginReply {
		var p []byte
		p = tds.EnvChangeDatabase(db, "master").AppendEnvChange(p)
		p = tds.EnvChangePacketSize(8192, 4096).AppendEnvChange(p)
		p = tds.LoginAck{Interface: 1, TDSVersion: tds.TDSVersion74, ProgName: "Microsoft SQL Server", ProgVersion: 0x10000000}.AppendLoginAck(p)
		p = tds.FeatureExtAck{Features: []tds.Feature{{ID: tds.FeatureUTF8Support, Data: []byte{1}}, {ID: tds.FeatureSessionRecovery, Data: []byte{0, 0, 0, 0}}}}.AppendFeatureExtAck(p)
		p = tds.Done{Token: tds.TokenDone}.AppendDone(p)
		r, err := tds.ParseLoginReply(p)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	withAck := &tds.Login7{OptionFlags3: tds.Login7Extension, Features: []tds.Feature{{ID: tds.FeatureUTF8Support}}}
	noAck := &tds.Login7{}
	r1, r2 := record("db"), record("other")
	pb := &pooledBackend{spid: 57}
	var prev []byte
	for i, tc := range []struct {
		reply           *tds.LoginReply
		client          *tds.Login7
		size, frameSize int
		reused          bool
	}{
		{r1, withAck, 8192, 4096, false},
		{r1, withAck, 8192, 4096, true},
		{r1, noAck, 8192, 4096, false},
		{r1, noAck, 16384, 4096, false},
		{r1, noAck, 16384, 512, false},
		{r2, noAck, 16384, 512, false},
		{r2, noAck, 16384, 512, true},
	} {
		got := pb.replayTo(tc.reply, tc.client, tc.size, tc.frameSize)
		want := tds.AppendPacketsSPID(nil, tds.PacketReply, 0, 57, tc.reply.AppendReplay(nil, tc.client, tc.size), tc.frameSize)
		if !bytes.Equal(got, want) {
			t.Fatalf("case %d: cached replay differs from a fresh one", i)
		}
		if same := len(prev) > 0 && &got[0] == &prev[0]; same != tc.reused {
			t.Fatalf("case %d: reused %v, want %v", i, same, tc.reused)
		}
		prev = got
	}
}

// A waiter woken by a return whose backend another login took first waits on for the next
// return (it is served without a backend login), and a session that leaves while waiting is
// no longer woken.
func TestPooledWaiterWokenAfterItsBackendWasTaken(t *testing.T) {
	h, dialed := newHarness(t, strings.Replace(pooledConfig, `"max_connections": 1`, `"max_connections": 3`, 1)), &[]*fakeBackend{}
	h.f.dial = func(tg backend.Target, hd backend.Handler) backendConn {
		fb := &fakeBackend{target: tg, h: hd}
		*dialed = append(*dialed, fb)
		return fb
	}
	a := h.connect()
	a.pooledLogin(t, dialed, "app", "pw")
	waitingLogin := func() *client {
		c := h.connect()
		c.fromClient(preloginMsg(tds.EncryptOff))
		c.conn.ToClient = nil
		c.fromClient(loginFor("app", "pw"))
		return c
	}
	b := waitingLogin()
	if len(b.conn.ToClient) != 0 {
		t.Fatal("B was answered with the only backend lent")
	}
	a.gone(host.RemoteClose) // wakes B (posted to B's connection, not run yet)
	c := h.connect()
	if _, reused := c.pooledLogin(t, dialed, "app", "pw"); !reused {
		t.Fatal("C did not get the returned backend")
	}
	b.conn.RunPosted() // B finds nothing idle, its key's backend lent to C: it waits on
	if len(b.conn.ToClient) != 0 || len(*dialed) != 1 {
		t.Fatalf("B answered %d bytes, %d dials: want it still waiting", len(b.conn.ToClient), len(*dialed))
	}
	c.gone(host.RemoteClose)
	b.waitPosted(time.Second)
	if len(b.conn.ToClient) == 0 || len(*dialed) != 1 {
		t.Fatalf("B answered %d bytes with %d dials: want C's returned backend", len(b.conn.ToClient), len(*dialed))
	}

	// D waits for B's backend and leaves: B's return wakes nobody.
	d := waitingLogin()
	d.gone(host.RemoteClose)
	b.gone(host.RemoteClose)
	if n := d.conn.RunPosted(); n != 0 {
		t.Fatalf("%d callbacks posted to a session that left while waiting", n)
	}
	if len(*dialed) != 1 || h.held() != 1 {
		t.Fatalf("%d dials, %d slots held: want one backend, idle", len(*dialed), h.held())
	}
}
