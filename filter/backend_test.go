package filter

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/tdspool/tdspool/envoy/host"
	"github.com/tdspool/tdspool/filter/backend"
	"github.com/tdspool/tdspool/tds"
)

const moduleConfig = `{
  "listener": {"encryption": "OFF_ALLOWED"},
  "buckets": [{"name": "m1", "max_connections": 1, "queue_timeout": "0.2s",
    "backend_leg": "MODULE", "backend_addresses": ["db.internal:1433"]}],
  "default_bucket": "m1"
}`

// fakeBackend stands in for backend.Conn: it records what the session writes and lets the
// test play the backend's events (as the connection's goroutine would, through Post).
type fakeBackend struct {
	target   backend.Target
	h        backend.Handler
	login    []byte
	written  []byte
	backlog  int
	paused   bool
	consumed int
	closed   bool
	dead     bool // a byte arrived while idle in a pool, or the socket failed
}

func (f *fakeBackend) WriteLogin(b []byte) (int, error) {
	f.login = append(f.login, b...)
	return 0, nil
}
func (f *fakeBackend) Write(b []byte) (int, error) {
	f.written = append(f.written, b...)
	return f.backlog, nil
}
func (f *fakeBackend) Consumed(n int)        { f.consumed += n }
func (f *fakeBackend) PauseReads(pause bool) { f.paused = pause }
func (f *fakeBackend) AfterClose(fn func())  { fn() }
func (f *fakeBackend) Close()                { f.closed = true }
func (f *fakeBackend) Alive() bool           { return !f.closed && !f.dead }
func (f *fakeBackend) SetHandler(h backend.Handler) {
	f.h = h
}

func moduleHarness(t *testing.T) (*harness, *[]*fakeBackend) {
	h := newHarness(t, moduleConfig)
	var dialed []*fakeBackend
	h.f.dial = func(tg backend.Target, hd backend.Handler) backendConn {
		fb := &fakeBackend{target: tg, h: hd}
		dialed = append(dialed, fb)
		return fb
	}
	return h, &dialed
}

// loginModule drives a client through PRELOGIN, LOGIN7, the slot and the module leg's
// handshake; tcp_proxy is never continued.
func (c *client) loginModule(t *testing.T, dialed *[]*fakeBackend) *fakeBackend {
	t.Helper()
	c.fromClient(preloginMsg(tds.EncryptOff))
	c.fromClient(login7Msg("app", "db", "proxy"))
	c.waitPosted(time.Second)
	if len(*dialed) != 1 {
		t.Fatalf("%d dials, want 1", len(*dialed))
	}
	fb := (*dialed)[0]
	if fb.target.Addresses[0] != "db.internal:1433" || fb.target.Encryption != tds.ClientPlaintext {
		t.Fatalf("target %+v", fb.target)
	}
	fb.h.Ready(&tds.Prelogin{}, tds.EncryptionNone)
	c.waitPosted(time.Second)
	if len(fb.login) == 0 || fb.login[0] != byte(tds.PacketLogin7) {
		t.Fatal("LOGIN7 not sent to the backend")
	}
	resp := loginResponse(true)
	c.conn.ToClient = nil
	fb.h.Data(resp)
	c.waitPosted(time.Second)
	if !bytes.Equal(c.conn.ToClient, resp) {
		t.Fatal("login response not passed to the client")
	}
	if c.conn.Continued != 0 {
		t.Fatalf("tcp_proxy continued %d times on the module leg", c.conn.Continued)
	}
	return fb
}

func TestModuleLegRelaysPinsAndReleases(t *testing.T) {
	h, dialed := moduleHarness(t)
	c := h.connect()
	fb := c.loginModule(t, dialed)
	if v := h.metrics.Value("bucket.m1.sessions_active"); v != 1 {
		t.Fatalf("sessions_active = %d", v)
	}
	// Client bytes go to the backend, not on through the filter chain.
	batch := tds.AppendPackets(nil, tds.PacketSQLBatch, 0, []byte("begin tran"), 4096)
	if st := c.fromClient(batch); st != host.StopIteration {
		t.Fatalf("relay OnRead = %s, want StopIteration (tcp_proxy stays idle)", st)
	}
	if !bytes.Equal(fb.written, batch) || len(c.conn.Read) != 0 {
		t.Fatalf("backend got % x, read buffer left %d", fb.written, len(c.conn.Read))
	}
	var p []byte
	p = tds.EnvChangeBeginTran(7).AppendEnvChange(p)
	p = tds.Done{Token: tds.TokenDone}.AppendDone(p)
	fb.h.Data(tds.AppendPackets(nil, tds.PacketReply, 0, p, 4096))
	c.waitPosted(time.Second)
	if v := h.metrics.Value("bucket.m1.pinned_transaction"); v != 1 {
		t.Fatalf("pinned_transaction = %d after BEGIN TRAN", v)
	}
	if fb.consumed == 0 {
		t.Fatal("read credit never returned")
	}
	// Watermarks pause and resume the backend.
	c.s.OnWatermark(true)
	if !fb.paused {
		t.Fatal("high watermark did not pause the backend")
	}
	c.s.OnWatermark(false)
	if fb.paused {
		t.Fatal("low watermark did not resume the backend")
	}
	// A slow backend read-disables the client until its queue drains.
	fb.backlog = maxBackendBacklog + 1
	c.fromClient(batch)
	if c.conn.ReadDisabled != 1 {
		t.Fatalf("read-disabled %d, want 1", c.conn.ReadDisabled)
	}
	fb.h.Drained()
	c.waitPosted(time.Second)
	if c.conn.ReadDisabled != 0 {
		t.Fatalf("read-disabled %d after drain, want 0", c.conn.ReadDisabled)
	}
	// The backend goes away mid-session: the client is closed, pins and slot settle.
	fb.h.Closed(io.EOF)
	c.waitPosted(time.Second)
	if !c.conn.Closed || c.conn.CloseDetails != "tdspool_backend_closed" {
		t.Fatalf("closed %v (%s)", c.conn.Closed, c.conn.CloseDetails)
	}
	if !fb.closed {
		t.Fatal("backend connection not closed")
	}
	c.s.OnEvent(host.LocalClose)
	for name, want := range map[string]uint64{
		"bucket.m1.slot_granted_total": 1, "bucket.m1.slot_released_total": 1,
		"bucket.m1.sessions_active": 0, "connections_active": 0, "bucket.m1.sessions_pinned": 0,
		"bucket.m1.pinned_transaction": 0, "bucket.m1.requests_sql_batch_total": 2,
	} {
		if got := h.metrics.Value(name); got != want {
			t.Errorf("%s = %d, want %d", name, got, want)
		}
	}
}

func TestModuleLegFailureBeforeLoginIs40613(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"refused", errors.New("connect: dial tcp 10.0.0.1:1433: connect: connection refused"), "connection refused"},
		{"plaintext to a forced server", tds.ErrServerRequiresEncryption, "requires encryption"},
		{"closed", io.EOF, "closed the connection"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, dialed := moduleHarness(t)
			c := h.connect()
			c.fromClient(preloginMsg(tds.EncryptOff))
			c.fromClient(login7Msg("app", "db", "proxy"))
			c.waitPosted(time.Second)
			c.conn.ToClient = nil
			(*dialed)[0].h.Closed(tc.err)
			c.waitPosted(time.Second)
			msg := errorIn(t, c.conn.ToClient)
			if msg.Number != 40613 || !bytes.Contains([]byte(msg.Text), []byte(tc.want)) {
				t.Fatalf("got %d %q, want 40613 saying %q", msg.Number, msg.Text, tc.want)
			}
			c.s.OnEvent(host.LocalClose)
			if g, r := h.metrics.Value("bucket.m1.slot_granted_total"), h.metrics.Value("bucket.m1.slot_released_total"); g != 1 || r != 1 {
				t.Fatalf("slots granted %d released %d", g, r)
			}
		})
	}
}

// errorIn returns the first ERROR token of a reply the filter wrote.
func errorIn(t *testing.T, b []byte) tds.ServerMessage {
	t.Helper()
	var r tds.Reassembler
	r.Feed(b)
	msg, err := r.Next()
	if err != nil {
		t.Fatalf("no message in % x: %v", b, err)
	}
	var sc tds.Scanner
	evs, err := sc.Feed(msg.Payload)
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range evs {
		if ev.Token == tds.TokenError {
			return ev.Message
		}
	}
	t.Fatal("no ERROR token")
	return tds.ServerMessage{}
}
