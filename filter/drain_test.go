package filter

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tdspool/tdspool/envoy/host"
	"github.com/tdspool/tdspool/tds"
)

const drainConfig = `{
  "listener": {"encryption": "OFF_ALLOWED"},
  "stat_prefix": "tds",
  "buckets": [{"name": "b1", "cluster": "c1", "max_connections": 5}],
  "default_bucket": "b1",
  "timeouts": {"drain_timeout": "0.2s"}
}`

func reply(tokens ...[]byte) []byte {
	var p []byte
	for _, t := range tokens {
		p = append(p, t...)
	}
	p = tds.Done{Token: tds.TokenDone}.AppendDone(p)
	return tds.AppendPackets(nil, tds.PacketReply, 0, p, 4096)
}

func (c *client) request(t *testing.T, sql string) {
	t.Helper()
	q := tds.SQLBatch{Headers: tds.AllHeaders{HasTransaction: true, OutstandingRequests: 1}, Text: sql}
	if st := c.fromClient(tds.AppendPackets(nil, tds.PacketSQLBatch, 0, q.AppendSQLBatch(nil), 4096)); st != host.Continue {
		t.Fatalf("relay OnRead = %s", st)
	}
}

// runPostedFor runs what the session posts for d (drain start, reply ends, the deadline).
func (c *client) runPostedFor(d time.Duration) {
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(2 * time.Millisecond) {
		c.conn.RunPosted()
	}
}

func TestDrainClosesTransactionsAtTheirEndAndTheRestAtTheTimeout(t *testing.T) {
	h := newHarness(t, drainConfig)
	idle, busy, inTx, laterTx, pinned := h.connect(), h.connect(), h.connect(), h.connect(), h.connect()
	all := []*client{idle, busy, inTx, laterTx, pinned}
	for _, c := range all {
		c.login(t, "app", "tenant_a")
	}
	inTx.request(t, "begin tran")
	inTx.fromBackend(reply(tds.EnvChangeBeginTran(7).AppendEnvChange(nil)))
	pinned.request(t, "create table #t (id int)")
	pinned.fromBackend(reply())
	if v := h.metrics.Value("listener.tds.bucket.b1.pinned_temp_table"); v != 1 {
		t.Fatalf("pinned_temp_table = %d, want 1", v)
	}
	busy.request(t, "waitfor delay '00:00:01'") // its answer comes during the drain

	if !h.f.beginDrain() {
		t.Fatal("beginDrain: not started")
	}
	if h.f.beginDrain() {
		t.Fatal("a second beginDrain started again")
	}
	for _, c := range all {
		c.conn.RunPosted()
		if c.conn.Closed {
			t.Fatalf("a session closed as the drain began (%s)", c.conn.CloseDetails)
		}
	}

	// Work outside a transaction carries on during the drain.
	if out := busy.fromBackend(reply()); len(out) == 0 {
		t.Fatal("the answer did not reach the client")
	}
	busy.request(t, "select 1")
	busy.fromBackend(reply())
	busy.conn.RunPosted()
	if busy.conn.Closed {
		t.Fatalf("a session outside a transaction closed after a request during the drain (%s)", busy.conn.CloseDetails)
	}

	// A statement inside the transaction is not its end; the COMMIT is, and its answer reaches
	// the client before the close.
	inTx.request(t, "insert t values (1)")
	inTx.fromBackend(reply())
	inTx.conn.RunPosted()
	if inTx.conn.Closed {
		t.Fatal("closed in the middle of its transaction")
	}
	inTx.request(t, "commit")
	if out := inTx.fromBackend(reply(tds.EnvChangeCommitTran(7).AppendEnvChange(nil))); len(out) == 0 || inTx.conn.Closed {
		t.Fatal("the COMMIT's answer did not pass before the close")
	}
	inTx.conn.RunPosted()
	if !inTx.conn.Closed || inTx.conn.CloseType != host.FlushWrite || inTx.conn.CloseDetails != "tdspool_drained" {
		t.Fatalf("session after its COMMIT: closed %v %v %q", inTx.conn.Closed, inTx.conn.CloseType, inTx.conn.CloseDetails)
	}

	// A transaction begun during the drain ends the session the same way.
	laterTx.request(t, "begin tran")
	laterTx.fromBackend(reply(tds.EnvChangeBeginTran(8).AppendEnvChange(nil)))
	laterTx.conn.RunPosted()
	if laterTx.conn.Closed {
		t.Fatal("closed when its transaction began")
	}
	laterTx.request(t, "rollback")
	laterTx.fromBackend(reply(tds.EnvChangeRollbackTran(8).AppendEnvChange(nil)))
	laterTx.conn.RunPosted()
	if !laterTx.conn.Closed || laterTx.conn.CloseDetails != "tdspool_drained" {
		t.Fatalf("session after its ROLLBACK: closed %v %q", laterTx.conn.Closed, laterTx.conn.CloseDetails)
	}

	// The others are closed at the drain timeout.
	idle.runPostedFor(400 * time.Millisecond)
	for name, c := range map[string]*client{"idle": idle, "busy": busy, "pinned": pinned} {
		c.runPostedFor(20 * time.Millisecond)
		if !c.conn.Closed || c.conn.CloseDetails != "tdspool_drain_timeout" {
			t.Fatalf("%s session at the drain timeout: closed %v %q", name, c.conn.Closed, c.conn.CloseDetails)
		}
	}
	for _, c := range all {
		c.gone(host.LocalClose)
	}
	if v := h.metrics.Value("listener.tds.drain_sessions_closed_total"); v != 2 {
		t.Errorf("drain_sessions_closed_total = %d, want 2", v)
	}
	if v := h.metrics.Value("listener.tds.drain_sessions_timed_out_total"); v != 3 {
		t.Errorf("drain_sessions_timed_out_total = %d, want 3", v)
	}
	if v := h.metrics.Value("listener.tds.bucket.b1.slot_released_total"); v != 5 {
		t.Errorf("slot_released_total = %d, want 5", v)
	}
	h.f.drainSet.mu.Lock()
	left := len(h.f.drainSet.sessions)
	h.f.drainSet.mu.Unlock()
	if left != 0 {
		t.Errorf("%d sessions still tracked after their destroy", left)
	}
}

func TestDrainLeavesSessionsThatStartLater(t *testing.T) {
	h := newHarness(t, drainConfig)
	h.f.beginDrain()
	c := h.connect()
	c.login(t, "app", "tenant_a")
	c.request(t, "begin tran")
	c.fromBackend(reply(tds.EnvChangeBeginTran(9).AppendEnvChange(nil)))
	c.request(t, "commit")
	c.fromBackend(reply(tds.EnvChangeCommitTran(9).AppendEnvChange(nil)))
	c.runPostedFor(300 * time.Millisecond)
	if c.conn.Closed {
		t.Fatalf("a session begun after the drain was closed (%s)", c.conn.CloseDetails)
	}
	c.gone(host.RemoteClose)
}

func TestConfigsToDrain(t *testing.T) {
	live := func(prefix string) *Factory {
		h := newHarness(t, strings.Replace(drainConfig, `"stat_prefix": "tds"`, `"stat_prefix": "`+prefix+`"`, 1))
		registerLive(h.f)
		t.Cleanup(func() { unregisterLive(h.f) })
		return h.f
	}
	same := func(got []*Factory, want ...*Factory) bool {
		if len(got) != len(want) {
			return false
		}
		for _, w := range want {
			if !slices.Contains(got, w) {
				return false
			}
		}
		return true
	}
	drainAll := func(fs []*Factory) {
		for _, f := range fs {
			f.beginDrain()
		}
	}
	// Two filter chains of listener "tds" and one of "other", loaded at start-up.
	tdsA, tdsB, other := live("tds"), live("tds"), live("other")
	(&lifecycle{}).OnServerInitialized()

	// LDS replaces "tds" (both chains): its new configs load, then Envoy reports the update.
	newA, newB := live("tds"), live("tds")
	got, partial := configsToDrain("tds", true, false)
	if partial || !same(got, tdsA, tdsB) {
		t.Fatalf("update of tds drains %d configs (partial %v), want the 2 loaded before it", len(got), partial)
	}
	drainAll(got)

	// An in-place update of one chain: one new config, two old ones not draining. Envoy keeps
	// the other chain's config in service, and which one that is cannot be told: none drains.
	inPlace := live("tds")
	if got, partial := configsToDrain("tds", true, false); !partial || len(got) != 0 {
		t.Fatalf("in-place update of one chain drains %d configs (partial %v), want none", len(got), partial)
	}
	// After its drain time Envoy destroys the replaced chain's config (say newB's).
	unregisterLive(newB)

	// Both chains replaced again: every older config is drained (those draining already stay so).
	live("tds")
	live("tds")
	got, partial = configsToDrain("tds", true, false)
	if partial || !same(got, tdsA, tdsB, newA, inPlace) {
		t.Fatalf("second full update drains %d configs (partial %v), want the 4 older live ones", len(got), partial)
	}

	if got, _ := configsToDrain("other", false, false); !same(got, other) {
		t.Fatalf("removal of other drains %d configs, want 1", len(got))
	}
	if got, _ := configsToDrain("nobody", true, false); len(got) != 0 {
		t.Fatalf("an update of an unknown listener drains %d configs", len(got))
	}
	if got, _ := configsToDrain("", false, true); len(got) < 7 {
		t.Fatalf("server drain drains %d configs, want all 7", len(got))
	}
}

// A login still queued for a slot at the drain timeout is owed an answer.
func TestDrainTimeoutAnswersAQueuedLogin(t *testing.T) {
	h := newHarness(t, strings.Replace(drainConfig, `"max_connections": 5`, `"max_connections": 1, "queue_timeout": "5s"`, 1))
	holder := h.connect()
	holder.login(t, "app", "tenant_a")
	queued := h.connect()
	queued.fromClient(preloginMsg(tds.EncryptOff))
	queued.conn.ToClient = nil
	queued.fromClient(login7Msg("app", "tenant_a", "proxy"))
	h.f.beginDrain()
	queued.runPostedFor(400 * time.Millisecond)
	if !queued.conn.Closed {
		t.Fatal("queued login still open after the drain timeout")
	}
	assertClientError(t, queued.conn, "drained by Envoy")
	holder.runPostedFor(50 * time.Millisecond)
	if !holder.conn.Closed || holder.conn.CloseDetails != "tdspool_drain_timeout" {
		t.Fatalf("idle session at the drain timeout: closed %v %q", holder.conn.Closed, holder.conn.CloseDetails)
	}
	queued.gone(host.LocalClose)
	holder.gone(host.LocalClose)
}

func TestDrainTimeFromEnvoyArgs(t *testing.T) {
	def := 600 * time.Second
	for _, tc := range []struct {
		args string
		want time.Duration
	}{
		{"envoy -c x.yaml", def},
		{"envoy -c x.yaml --drain-time-s 30", 30 * time.Second},
		{"envoy --drain-time-s=45 -l info", 45 * time.Second},
		{"envoy --drain-time-s", def},
		{"envoy --drain-time-s abc", def},
		{"envoy --drain-time-s 0", 0},
	} {
		var args [][]byte
		for _, a := range strings.Fields(tc.args) {
			args = append(args, []byte(a))
		}
		if got := drainTimeFromArgs(args, def); got != tc.want {
			t.Errorf("%q: %s, want %s", tc.args, got, tc.want)
		}
	}
}

func TestNewLifecycleRefusesAConfig(t *testing.T) {
	for cfg, ok := range map[string]bool{"": true, "{}": true, " ": true, `{"drain_timeout": "5s"}`: false} {
		_, err := NewLifecycle("tdspool", []byte(cfg), func(host.LogLevel, string) {})
		if (err == nil) != ok {
			t.Errorf("config %q: err %v", cfg, err)
		}
	}
}

// A drain closes the config's idle pooled backends and gives their slots back at once.
func TestDrainClosesIdlePooledBackends(t *testing.T) {
	h, dialed := pooledHarness(t)
	a := h.connect()
	fb, _ := a.pooledLogin(t, dialed, "app", "pw")
	a.s.OnRead(0, true) // the client hangs up: its backend goes idle into the pool
	a.s.OnEvent(host.RemoteClose)
	if fb.closed || h.held() != 1 {
		t.Fatalf("before the drain: backend closed=%v, slots held %d; want idle in the pool with its slot", fb.closed, h.held())
	}
	h.f.beginDrain()
	if !fb.closed || h.held() != 0 {
		t.Fatalf("after the drain began: backend closed=%v, slots held %d; want closed and 0", fb.closed, h.held())
	}
	a.s.OnDestroy()
}
