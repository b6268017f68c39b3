package filter

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tdspool/tdspool/coordinator"
	"github.com/tdspool/tdspool/envoy/host"
	"github.com/tdspool/tdspool/envoy/host/hosttest"
	"github.com/tdspool/tdspool/proto/tdspoolpb"
	"github.com/tdspool/tdspool/tds"
)

const testConfig = `{
  "listener": {"encryption": "OFF_ALLOWED"},
  "buckets": [
    {"name": "b1", "cluster": "c1", "max_connections": 1, "queue_timeout": "0.2s"},
    {"name": "b2", "cluster": "c2", "max_connections": 5, "allowed_users": ["app"]}
  ],
  "routes": [{"database": "tenant_b", "bucket": "b2"}],
  "default_bucket": "b1"
}`

type harness struct {
	t       testing.TB
	f       *Factory
	metrics *hosttest.Metrics
}

func newHarness(t testing.TB, jsonCfg string) *harness {
	t.Helper()
	cfg, err := tdspoolpb.Load([]byte(jsonCfg))
	if err != nil {
		t.Fatal(err)
	}
	m := hosttest.NewMetrics()
	f, err := newFactory(cfg, m)
	if err != nil {
		t.Fatal(err)
	}
	if f.slots, err = newSlots(cfg, "tdspool", nil, f.coordStats); err != nil {
		t.Fatal(err)
	}
	return &harness{t: t, f: f, metrics: m}
}

// client is one simulated connection: the fake Envoy connection plus the filter.
type client struct {
	h    *harness
	conn *hosttest.Conn
	s    host.Filter
}

func (h *harness) connect() *client {
	c := hosttest.NewConn(h.metrics)
	s := h.f.NewFilter(c)
	if st := s.OnNewConnection(); st != host.StopIteration {
		h.t.Fatalf("OnNewConnection = %s, want StopIteration", st)
	}
	return &client{h: h, conn: c, s: s}
}

// fromClient delivers client bytes the way Envoy does: appended to the read buffer, which
// tcp_proxy empties when the filter lets it continue.
func (c *client) fromClient(b []byte) host.Status {
	c.conn.Read = append(c.conn.Read, b...)
	st := c.s.OnRead(len(c.conn.Read), false)
	if st == host.Continue {
		c.conn.ToUpstream = append(c.conn.ToUpstream, c.conn.Read...)
		c.conn.Read = nil
	}
	return st
}

// fromBackend delivers backend bytes to OnWrite and returns what reaches the client.
func (c *client) fromBackend(b []byte) []byte {
	c.conn.Write = append([]byte(nil), b...)
	if st := c.s.OnWrite(len(c.conn.Write), false); st == host.Continue {
		out := c.conn.Write
		c.conn.Write = nil
		return out
	}
	return nil
}

// gone is what Envoy does when a connection ends: the close event, then (after tcp_proxy has
// closed the backend leg) the filter's destroy.
func (c *client) gone(ev host.ConnectionEvent) {
	c.s.OnEvent(ev)
	c.conn.Destroy() // as Envoy: what was posted and has not run is dropped
	c.s.OnDestroy()
}

// waitPosted runs posted callbacks until at least one ran or the deadline passes.
func (c *client) waitPosted(d time.Duration) {
	c.h.t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if c.conn.RunPosted() > 0 {
			return
		}
		time.Sleep(2 * time.Millisecond)
	}
	c.h.t.Fatalf("nothing posted within %s", d)
}

func preloginMsg(enc tds.EncryptOption) []byte {
	p := tds.Prelogin{HasVersion: true, Version: 0x0C000000, HasEncryption: true, Encryption: enc,
		HasInstance: true, HasThreadID: true, ThreadID: 42, HasMARS: true}
	return tds.AppendPackets(nil, tds.PacketPrelogin, 0, p.AppendPrelogin(nil), 4096)
}

func login7Msg(user, db, server string) []byte {
	l := tds.Login7{TDSVersion: tds.TDSVersion74, PacketSize: 4096, UserName: user, Password: tds.NewPassword("s3cret!"),
		Database: db, ServerName: server, AppName: "test", HostName: "h", CltIntName: "go-test"}
	return tds.AppendPackets(nil, tds.PacketLogin7, 0, l.AppendLogin7(nil), 4096)
}

func loginResponse(ok bool) []byte {
	var p []byte
	if ok {
		p = tds.EnvChangeDatabase("master", "master").AppendEnvChange(p)
		p = tds.LoginAck{Interface: 1, TDSVersion: tds.TDSVersion74, ProgName: "Microsoft SQL Server", ProgVersion: 0x10000000}.AppendLoginAck(p)
		p = tds.Done{Token: tds.TokenDone}.AppendDone(p)
	} else {
		p = tds.ErrorMessage(18456, 1, 14, "Login failed for user 'app'.", "backend", "", 1)
	}
	return tds.AppendPackets(nil, tds.PacketReply, 0, p, 4096)
}

func backendPreloginReply() []byte {
	return tds.AppendPackets(nil, tds.PacketReply, 0, tds.ServerPreloginReply(0x10000000, tds.EncryptNotSup).AppendPrelogin(nil), 4096)
}

// login drives a client through PRELOGIN, LOGIN7, slot and backend handshake.
func (c *client) login(t *testing.T, user, db string) {
	t.Helper()
	c.fromClient(preloginMsg(tds.EncryptOff))
	if len(c.conn.ToClient) == 0 {
		t.Fatal("no PRELOGIN reply")
	}
	c.fromClient(login7Msg(user, db, "proxy"))
	c.waitPosted(time.Second)
	if c.conn.Closed {
		t.Fatalf("closed during login: %s", c.conn.CloseDetails)
	}
	if c.conn.Continued != 1 {
		t.Fatalf("ContinueReading calls = %d, want 1", c.conn.Continued)
	}
	// The read buffer now holds our PRELOGIN for the backend (tcp_proxy sends it).
	if len(c.conn.Read) == 0 || c.conn.Read[0] != byte(tds.PacketPrelogin) {
		t.Fatalf("no PRELOGIN queued for the backend: % x", c.conn.Read)
	}
	c.conn.Read = nil
	if out := c.fromBackend(backendPreloginReply()); len(out) != 0 {
		t.Fatalf("backend PRELOGIN reply leaked to the client: % x", out)
	}
	if len(c.conn.ToUpstream) == 0 || c.conn.ToUpstream[0] != byte(tds.PacketLogin7) {
		t.Fatalf("LOGIN7 not injected upstream")
	}
	resp := loginResponse(true)
	if out := c.fromBackend(resp); !bytes.Equal(out, resp) {
		t.Fatalf("login response altered on its way to the client")
	}
}

func TestSessionRoutesByDatabaseAndRelays(t *testing.T) {
	h := newHarness(t, testConfig)
	c := h.connect()
	c.login(t, "app", "tenant_b")
	if got := c.conn.FilterState[ClusterFilterStateKey]; got != "c2" {
		t.Fatalf("cluster = %q, want c2", got)
	}
	if v := h.metrics.Value("bucket.b2.sessions_active"); v != 1 {
		t.Fatalf("sessions_active = %d", v)
	}
	// A transaction pins the session until it ends.
	batch := tds.AppendPackets(nil, tds.PacketSQLBatch, 0, []byte("begin tran"), 4096)
	if st := c.fromClient(batch); st != host.Continue {
		t.Fatalf("relay OnRead = %s", st)
	}
	var p []byte
	p = tds.EnvChangeBeginTran(7).AppendEnvChange(p)
	p = tds.Done{Token: tds.TokenDone}.AppendDone(p)
	c.fromBackend(tds.AppendPackets(nil, tds.PacketReply, 0, p, 4096))
	if v := h.metrics.Value("bucket.b2.pinned_transaction"); v != 1 {
		t.Fatalf("pinned_transaction = %d after BEGIN TRAN", v)
	}
	p = tds.EnvChangeCommitTran(7).AppendEnvChange(nil)
	p = tds.Done{Token: tds.TokenDone}.AppendDone(p)
	c.fromBackend(tds.AppendPackets(nil, tds.PacketReply, 0, p, 4096))
	if v := h.metrics.Value("bucket.b2.pinned_transaction"); v != 0 {
		t.Fatalf("pinned_transaction = %d after COMMIT", v)
	}
	// Hot counters reach Envoy in batches (about once a second) and when the session ends.
	c.s.OnEvent(host.RemoteClose)
	for name, want := range map[string]uint64{
		"bucket.b2.requests_sql_batch_total": 1, "bucket.b2.responses_total": 2,
		"bucket.b2.slot_granted_total": 1, "bucket.b2.slot_released_total": 1,
		"bucket.b2.sessions_active": 0, "connections_active": 0, "bucket.b2.sessions_pinned": 0,
	} {
		if got := h.metrics.Value(name); got != want {
			t.Errorf("%s = %d, want %d", name, got, want)
		}
	}
}

// noDefaultConfig routes only tenant_b; any other database has no route.
const noDefaultConfig = `{"listener": {"encryption": "OFF_ALLOWED"},
  "buckets": [{"name": "b2", "cluster": "c2", "max_connections": 5, "allowed_users": ["app"]}],
  "routes": [{"database": "tenant_b", "bucket": "b2"}]%s}`

func TestSessionRefusals(t *testing.T) {
	tests := []struct {
		name, config, user, db string
		wantNumber             int32
		wantClass              uint8
		wantText               string
	}{
		{"allow-list", fmt.Sprintf(noDefaultConfig, ""), "intruder", "tenant_b", 18456, 14, "not allowed on bucket 'b2'"},
		{"allow-list, seed numbers", fmt.Sprintf(noDefaultConfig, `, "error_numbers": "SEED"`), "intruder", "tenant_b",
			50004, 14, "not allowed on bucket 'b2'"},
		{"no route", fmt.Sprintf(noDefaultConfig, ""), "app", "elsewhere", 40532, 20, "no route for server 'proxy'"},
		{"no route, seed numbers", fmt.Sprintf(noDefaultConfig, `, "error_numbers": "SEED"`), "app", "elsewhere",
			50002, 20, "no route for server 'proxy'"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, tt.config)
			c := h.connect()
			c.fromClient(preloginMsg(tds.EncryptOff))
			c.conn.ToClient = nil
			c.fromClient(login7Msg(tt.user, tt.db, "proxy"))
			m := assertClientError(t, c.conn, tt.wantText)
			if m.Number != tt.wantNumber || m.Class != tt.wantClass {
				t.Errorf("error %d class %d, want %d class %d", m.Number, m.Class, tt.wantNumber, tt.wantClass)
			}
		})
	}
}

// fixedSlots answers every Acquire with the same result, as a coordinator would.
type fixedSlots struct{ r SlotResult }

func (f fixedSlots) Acquire(_ SlotRequest, done func(SlotResult)) func() bool {
	go done(f.r)
	return func() bool { return false }
}

func (fixedSlots) Close() error { return nil }

// TestSessionSlotOutcomes: each way a slot request can end without a slot reaches the client
// as its own error and counts in its own stat.
func TestSessionSlotOutcomes(t *testing.T) {
	tests := []struct {
		outcome    coordinator.Outcome
		wantStat   string
		wantNumber int32
		wantText   string
	}{
		{coordinator.TimedOut, "slot_timed_out_total", 10928, "no connection slot became free"},
		{coordinator.QueueFull, "slot_queue_full_total", 10928, "its wait queue is full"},
		{coordinator.Refused, "slot_refused_total", 10928, "pool exhausted for bucket 'b1'"},
		{coordinator.Draining, "slot_refused_total", 40613, "is being drained"},
		{coordinator.Disabled, "slot_refused_total", 40532, "is disabled"},
	}
	for _, tt := range tests {
		t.Run(tt.outcome.String(), func(t *testing.T) {
			h := newHarness(t, testConfig)
			h.f.slots = fixedSlots{SlotResult{Outcome: tt.outcome}}
			c := h.connect()
			c.fromClient(preloginMsg(tds.EncryptOff))
			c.conn.ToClient = nil
			c.fromClient(login7Msg("app", "", "proxy"))
			c.waitPosted(time.Second)
			m := assertClientError(t, c.conn, tt.wantText)
			if m.Number != tt.wantNumber {
				t.Errorf("error number %d, want %d", m.Number, tt.wantNumber)
			}
			if v := h.metrics.Value("bucket.b1." + tt.wantStat); v != 1 {
				t.Errorf("%s = %d, want 1", tt.wantStat, v)
			}
		})
	}
}

func TestSessionNoRouteWithoutDefault(t *testing.T) {
	h := newHarness(t, `{"listener": {"encryption": "OFF_ALLOWED"},
	  "buckets": [{"name": "b1", "cluster": "c1", "max_connections": 1}],
	  "routes": [{"database": "only_this", "bucket": "b1"}]}`)
	c := h.connect()
	c.fromClient(preloginMsg(tds.EncryptOff))
	c.conn.ToClient = nil
	c.fromClient(login7Msg("app", "elsewhere", "proxy"))
	assertClientError(t, c.conn, "no route for server 'proxy', database 'elsewhere'")
	if h.metrics.Value("no_route_total") != 1 {
		t.Fatal("no_route_total not counted")
	}
}

func TestSessionPoolExhaustedAfterQueueTimeoutAndSlotsBalance(t *testing.T) {
	h := newHarness(t, testConfig)
	first := h.connect()
	first.login(t, "app", "") // b1, cap 1
	second := h.connect()
	second.fromClient(preloginMsg(tds.EncryptOff))
	second.conn.ToClient = nil
	second.fromClient(login7Msg("app", "", "proxy"))
	if v := h.metrics.Value("bucket.b1.sessions_queued"); v != 1 {
		t.Fatalf("sessions_queued = %d", v)
	}
	second.waitPosted(2 * time.Second) // queue_timeout is 0.2s
	assertClientError(t, second.conn, "pool exhausted for bucket 'b1' (cap 1 connections)")

	// A third waits and gets the slot when the first leaves.
	third := h.connect()
	third.fromClient(preloginMsg(tds.EncryptOff))
	third.fromClient(login7Msg("app", "", "proxy"))
	first.gone(host.RemoteClose)
	third.waitPosted(time.Second)
	if third.conn.Closed || third.conn.FilterState[ClusterFilterStateKey] != "c1" {
		t.Fatalf("third session not admitted after release (closed=%v %s)", third.conn.Closed, third.conn.CloseDetails)
	}
	third.gone(host.LocalClose)
	second.gone(host.LocalClose)
	granted, released := h.metrics.Value("bucket.b1.slot_granted_total"), h.metrics.Value("bucket.b1.slot_released_total")
	if granted != 2 || released != 2 {
		t.Fatalf("granted=%d released=%d, want 2/2", granted, released)
	}
}

func TestSessionClientLeavesWhileQueuedReleasesNothingTwice(t *testing.T) {
	h := newHarness(t, testConfig)
	first := h.connect()
	first.login(t, "app", "")
	waiter := h.connect()
	waiter.fromClient(preloginMsg(tds.EncryptOff))
	waiter.fromClient(login7Msg("app", "", "proxy"))
	waiter.gone(host.RemoteClose) // gives up while queued
	first.gone(host.RemoteClose)
	// The slot must be free again: a new client gets it at once.
	next := h.connect()
	next.login(t, "app", "")
	next.gone(host.RemoteClose)
	if q := h.metrics.Value("bucket.b1.sessions_queued"); q != 0 {
		t.Fatalf("sessions_queued = %d", q)
	}
	if c := h.metrics.Value("bucket.b1.slot_cancelled_total"); c != 1 {
		t.Fatalf("slot_cancelled_total = %d", c)
	}
}

func TestSessionBackendLoginFailureReachesClientAndReleases(t *testing.T) {
	h := newHarness(t, testConfig)
	c := h.connect()
	c.fromClient(preloginMsg(tds.EncryptOff))
	c.fromClient(login7Msg("app", "", "proxy"))
	c.waitPosted(time.Second)
	c.conn.Read = nil
	c.fromBackend(backendPreloginReply())
	resp := loginResponse(false)
	if out := c.fromBackend(resp); !bytes.Equal(out, resp) {
		t.Fatal("the backend's login error must reach the client unchanged")
	}
	// Closing inside OnWrite would lose the very bytes passing through it (Envoy moves them
	// into its write buffer only after the filter returns): the close comes after, flushing.
	if c.conn.Closed {
		t.Fatal("closed while the login error was still in the write filter chain")
	}
	c.waitPosted(time.Second)
	if c.conn.CloseType != host.FlushWrite {
		t.Fatalf("close type %v, want FlushWrite", c.conn.CloseType)
	}
	if !c.conn.Closed || h.metrics.Value("bucket.b1.slot_released_total") != 1 || h.metrics.Value("bucket.b1.login_failed_total") != 1 {
		t.Fatalf("closed=%v released=%d failed=%d", c.conn.Closed,
			h.metrics.Value("bucket.b1.slot_released_total"), h.metrics.Value("bucket.b1.login_failed_total"))
	}
}

func TestSessionMalformedInputClosesWithoutSlot(t *testing.T) {
	for name, input := range map[string][]byte{
		"garbage":          []byte("GET / HTTP/1.1\r\n\r\n"),
		"login7 first":     login7Msg("app", "", "x"),
		"truncated login7": append(preloginMsg(tds.EncryptOff), tds.AppendPackets(nil, tds.PacketLogin7, 0, []byte{1, 2, 3}, 4096)...),
	} {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t, testConfig)
			c := h.connect()
			c.fromClient(input)
			if !c.conn.Closed {
				t.Fatal("malformed input did not close the connection")
			}
			if h.metrics.Value("bucket.b1.slot_granted_total") != 0 || h.metrics.Value("protocol_errors_total") != 1 {
				t.Fatalf("granted=%d protocol_errors=%d", h.metrics.Value("bucket.b1.slot_granted_total"), h.metrics.Value("protocol_errors_total"))
			}
			c.s.OnEvent(host.LocalClose)
			if v := h.metrics.Value("connections_active"); v != 0 {
				t.Fatalf("connections_active = %d", v)
			}
		})
	}
}

// assertClientError checks that the client got one ERROR (whose text contains wantText) then
// DONE with the error bit, and that the connection is closed; it returns the ERROR.
func assertClientError(t *testing.T, c *hosttest.Conn, wantText string) tds.ServerMessage {
	t.Helper()
	if !c.Closed {
		t.Fatal("connection not closed after a refusal")
	}
	var r tds.Reassembler
	r.Feed(c.ToClient)
	msg, err := r.Next()
	if err != nil || msg.Type != tds.PacketReply {
		t.Fatalf("no reply message to the client: %v", err)
	}
	var sc tds.Scanner
	events, err := sc.Feed(msg.Payload)
	if err != nil {
		t.Fatalf("error message does not parse: %v", err)
	}
	var sawError, sawDoneError bool
	var got tds.ServerMessage
	for _, ev := range events {
		switch ev.Token {
		case tds.TokenError:
			sawError = true
			got = ev.Message
			if !strings.Contains(ev.Message.Text, wantText) {
				t.Errorf("error text %q lacks %q", ev.Message.Text, wantText)
			}
		case tds.TokenDone:
			sawDoneError = ev.Done.Status&tds.DoneError != 0
		}
	}
	if !sawError || !sawDoneError {
		t.Fatalf("want ERROR then DONE(error): %v", events)
	}
	return got
}

func TestSessionBackendSilentGivesBackendUnavailable(t *testing.T) {
	h := newHarness(t, `{"listener": {"encryption": "OFF_ALLOWED"},
	  "buckets": [{"name": "b1", "cluster": "c1", "max_connections": 1}], "default_bucket": "b1",
	  "timeouts": {"backend_handshake_timeout": "0.05s"}}`)
	c := h.connect()
	c.fromClient(preloginMsg(tds.EncryptOff))
	c.conn.ToClient = nil
	c.fromClient(login7Msg("app", "", "proxy"))
	c.waitPosted(time.Second) // slot granted
	c.waitPosted(time.Second) // backend timer
	assertClientError(t, c.conn, "bucket 'b1' is not currently available (no PRELOGIN answer")
	if h.metrics.Value("bucket.b1.slot_released_total") != 1 || h.metrics.Value("bucket.b1.backend_unavailable_total") != 1 {
		t.Fatal("slot not released or failure not counted")
	}
}

func TestSessionBackendSilentAfterLogin7GivesBackendUnavailable(t *testing.T) {
	h := newHarness(t, `{"listener": {"encryption": "OFF_ALLOWED"},
	  "buckets": [{"name": "b1", "cluster": "c1", "max_connections": 1}], "default_bucket": "b1",
	  "timeouts": {"login_timeout": "0.1s"}}`)
	c := h.connect()
	c.fromClient(preloginMsg(tds.EncryptOff))
	c.fromClient(login7Msg("app", "", "proxy"))
	c.waitPosted(time.Second) // slot granted
	c.conn.Read, c.conn.ToClient = nil, nil
	c.fromBackend(backendPreloginReply()) // LOGIN7 goes to the backend, which then says nothing
	c.waitPosted(time.Second)             // login timer
	assertClientError(t, c.conn, "bucket 'b1' is not currently available (no login answer within 100ms")
	if !c.conn.Closed || c.conn.CloseType != host.FlushWrite {
		t.Fatalf("closed=%v type=%v, want a flushed close after the error", c.conn.Closed, c.conn.CloseType)
	}
	if h.metrics.Value("bucket.b1.slot_released_total") != 1 || h.metrics.Value("bucket.b1.backend_unavailable_total") != 1 {
		t.Fatal("slot not released or failure not counted")
	}
}

func TestSessionUnhealthyClusterRefusedBeforeQueueing(t *testing.T) {
	h := newHarness(t, testConfig)
	c := h.connect()
	c.conn.UnhealthyClusters = map[string]bool{"c1": true}
	c.fromClient(preloginMsg(tds.EncryptOff))
	c.conn.ToClient = nil
	c.fromClient(login7Msg("app", "", "proxy"))
	assertClientError(t, c.conn, "bucket 'b1' is not currently available (none of its 1 hosts is healthy)")
	if h.metrics.Value("bucket.b1.slot_granted_total") != 0 || h.metrics.Value("bucket.b1.sessions_queued") != 0 {
		t.Fatal("queued for an unhealthy backend")
	}
}

func TestSeedErrorNumbersOption(t *testing.T) {
	for _, tc := range []struct {
		set  string
		want int32
	}{{"TRANSIENT", 40532}, {"SEED", 50002}} {
		h := newHarness(t, `{"listener": {"encryption": "OFF_ALLOWED"}, "error_numbers": "`+tc.set+`",
		  "buckets": [{"name": "b1", "cluster": "c1", "max_connections": 1}],
		  "routes": [{"database": "only", "bucket": "b1"}]}`)
		c := h.connect()
		c.fromClient(preloginMsg(tds.EncryptOff))
		c.conn.ToClient = nil
		c.fromClient(login7Msg("app", "other", "proxy"))
		var r tds.Reassembler
		r.Feed(c.conn.ToClient)
		msg, err := r.Next()
		if err != nil {
			t.Fatal(err)
		}
		var sc tds.Scanner
		evs, _ := sc.Feed(msg.Payload)
		if len(evs) == 0 || evs[0].Token != tds.TokenError || evs[0].Message.Number != tc.want {
			t.Errorf("%s: got %v, want error %d", tc.set, evs, tc.want)
		}
	}
}

func TestLoginTimeoutClosesAStalledClient(t *testing.T) {
	h := newHarness(t, `{"listener": {"encryption": "OFF_ALLOWED"}, "timeouts": {"login_timeout": "0.05s"},
	  "buckets": [{"name": "b1", "cluster": "c1", "max_connections": 1}], "default_bucket": "b1"}`)
	c := h.connect()
	c.fromClient(preloginMsg(tds.EncryptOff)) // and then nothing
	c.waitPosted(time.Second)
	if !c.conn.Closed || h.metrics.Value("login_timeouts_total") != 1 {
		t.Fatalf("stalled client not closed (closed=%v)", c.conn.Closed)
	}
}

func TestFirstByteTimeoutDropsSilentClients(t *testing.T) {
	h := newHarness(t, `{"listener": {"encryption": "OFF_ALLOWED"}, "timeouts": {"first_byte_timeout": "0.05s"},
	  "buckets": [{"name": "b1", "cluster": "c1", "max_connections": 1}], "default_bucket": "b1"}`)
	silent := h.connect()
	talker := h.connect()
	talker.fromClient(preloginMsg(tds.EncryptOff)) // then waits for up to login_timeout (15s)
	silent.waitPosted(time.Second)
	if !silent.conn.Closed {
		t.Fatal("silent client not dropped after first_byte_timeout")
	}
	time.Sleep(100 * time.Millisecond)
	talker.conn.RunPosted()
	if talker.conn.Closed {
		t.Fatal("a client that spoke was dropped by the first-byte timer")
	}
}

func TestLogin7PacketSizeCappedBeforeTheBackend(t *testing.T) {
	h := newHarness(t, `{"listener": {"encryption": "OFF_ALLOWED", "max_packet_size": 4096},
	  "buckets": [{"name": "b1", "cluster": "c1", "max_connections": 1}], "default_bucket": "b1"}`)
	c := h.connect()
	c.fromClient(preloginMsg(tds.EncryptOff))
	l := tds.Login7{TDSVersion: tds.TDSVersion74, PacketSize: 32767, UserName: "app", Password: tds.NewPassword("x"),
		AppName: "t", HostName: "h", CltIntName: "c"}
	c.fromClient(tds.AppendPackets(nil, tds.PacketLogin7, 0, l.AppendLogin7(nil), 4096))
	c.waitPosted(time.Second)
	c.conn.Read = nil
	c.fromBackend(backendPreloginReply())
	var r tds.Reassembler
	r.Feed(c.conn.ToUpstream)
	msg, err := r.Next()
	if err != nil {
		t.Fatal(err)
	}
	got, err := tds.DecodeLogin7(msg.Payload)
	if err != nil {
		t.Fatal(err)
	}
	if got.PacketSize != 4096 || got.UserName != "app" || got.Password.Reveal() != "x" {
		t.Fatalf("forwarded LOGIN7: packet size %d user %q", got.PacketSize, got.UserName)
	}
}

func TestClientHangingUpBeforeTheSessionClosesAtOnce(t *testing.T) {
	// tcp_proxy enables half-close, so a client's FIN arrives as end_stream on OnRead, not as
	// a close event: the filter must close, give up any queue place and settle its gauges.
	for _, tc := range []struct {
		name  string
		drive func(c *client)
	}{
		{"silent", func(c *client) {}},
		{"mid prelogin", func(c *client) { c.fromClient(preloginMsg(tds.EncryptOff)[:5]) }},
		{"after prelogin", func(c *client) { c.fromClient(preloginMsg(tds.EncryptOff)) }},
		{"queued for a slot", func(c *client) {
			c.fromClient(preloginMsg(tds.EncryptOff))
			c.fromClient(login7Msg("app", "", "proxy"))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, testConfig)
			holder := h.connect()
			holder.login(t, "app", "") // b1's only slot is taken: a login waits in the queue
			c := h.connect()
			tc.drive(c)
			if st := c.s.OnRead(0, true); st != host.StopIteration {
				t.Fatalf("OnRead(end_stream) = %s", st)
			}
			if !c.conn.Closed {
				t.Fatal("a client that hung up is still held open")
			}
			c.gone(host.LocalClose)
			holder.gone(host.RemoteClose)
			if v := h.metrics.Value("connections_active"); v != 0 {
				t.Fatalf("connections_active = %d", v)
			}
			if v := h.metrics.Value("bucket.b1.sessions_queued"); v != 0 {
				t.Fatalf("sessions_queued = %d", v)
			}
			// The slot is free: the next client gets it at once.
			next := h.connect()
			next.login(t, "app", "")
			next.gone(host.RemoteClose)
		})
	}
}

func TestBoundsCountFromTheAcceptTime(t *testing.T) {
	// A listener filter (tls_inspector) may hold a connection before tdspool starts; the
	// accept time in the filter state makes first_byte_timeout count from the accept.
	const cfg = `{"listener": {"encryption": "OFF_ALLOWED"}, "timeouts": {"first_byte_timeout": "10s"},
	  "buckets": [{"name": "b1", "cluster": "c1", "max_connections": 1}], "default_bucket": "b1"}`
	stamp := func(t time.Time) string { return fmt.Sprintf("%d.%06d", t.Unix(), t.Nanosecond()/1000) }
	for _, tc := range []struct {
		name       string
		acceptedAt string
		wantClosed bool
	}{
		{"accepted 9.95s ago", stamp(time.Now().Add(-9950 * time.Millisecond)), true},
		{"accepted just now", stamp(time.Now()), false},
		{"in the future (clock step)", stamp(time.Now().Add(time.Hour)), false},
		{"hours ago (foreign value)", stamp(time.Now().Add(-3 * time.Hour)), false},
		{"garbage", "soon", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, cfg)
			conn := hosttest.NewConn(h.metrics)
			conn.FilterState[AcceptedAtFilterStateKey] = tc.acceptedAt
			s := h.f.NewFilter(conn)
			s.OnNewConnection()
			time.Sleep(300 * time.Millisecond)
			conn.RunPosted()
			if conn.Closed != tc.wantClosed {
				t.Fatalf("closed = %v after 0.3 s, want %v", conn.Closed, tc.wantClosed)
			}
			s.OnEvent(host.LocalClose)
		})
	}
}

func TestSlotGoesBackOnlyWhenTheConnectionIsDestroyed(t *testing.T) {
	// tcp_proxy closes the backend connection after the client's close event reached us; the
	// slot (a backend connection) must not reach the next session before Envoy destroys the
	// filter, or the backend briefly holds cap+1 connections.
	h := newHarness(t, testConfig)
	first := h.connect()
	first.login(t, "app", "") // b1, cap 1
	waiter := h.connect()
	waiter.fromClient(preloginMsg(tds.EncryptOff))
	waiter.fromClient(login7Msg("app", "", "proxy"))
	first.s.OnEvent(host.RemoteClose)
	if v := h.metrics.Value("bucket.b1.slot_released_total"); v != 1 {
		t.Fatalf("slot_released_total = %d after the close event, want 1", v)
	}
	time.Sleep(50 * time.Millisecond)
	if n := waiter.conn.RunPosted(); n != 0 || waiter.conn.FilterState[ClusterFilterStateKey] != "" {
		t.Fatal("the slot reached the next session before the first connection was destroyed")
	}
	first.s.OnDestroy()
	waiter.waitPosted(time.Second)
	if waiter.conn.Closed || waiter.conn.FilterState[ClusterFilterStateKey] != "c1" {
		t.Fatalf("waiter not admitted after the destroy (closed=%v %s)", waiter.conn.Closed, waiter.conn.CloseDetails)
	}
	waiter.gone(host.RemoteClose)
	if v := h.metrics.Value("slot_released_on_destroy_total"); v != 0 {
		t.Fatalf("slot_released_on_destroy_total = %d: a normal close is not a destroy without close", v)
	}
}
