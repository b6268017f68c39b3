package filter

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tdspool/tdspool/envoy/host"
	"github.com/tdspool/tdspool/filter/backend"
	"github.com/tdspool/tdspool/tds"
)

const warmConfig = `{
  "listener": {"encryption": "OFF_ALLOWED", "max_packet_size": 8192},
  "buckets": [{"name": "p1", "max_connections": 3, "queue_timeout": "2s",
    "backend_leg": "MODULE", "backend_addresses": ["db.internal:1433"],
    "pool": {"mode": "POOL_MODE_SESSION", "min_idle": 2,
      "warmup": {"user": "app", "database": "db", "app_name": "test", "password_env": "TDSPOOL_TEST_WARM_SECRET"}}}],
  "default_bucket": "p1"
}`

// warmHarness is a bucket with min_idle 2 whose dials are recorded fakes (safe across the
// goroutines warm-up runs on).
type warmHarness struct {
	*harness
	w      *warmer
	mu     sync.Mutex
	dialed []*fakeBackend
	// all is dialed for pooledLogin, read only while no warm-up runs.
	all []*fakeBackend
}

func newWarmHarness(t *testing.T, cfg string) *warmHarness {
	t.Setenv("TDSPOOL_TEST_WARM_SECRET", "pw")
	wh := &warmHarness{harness: newHarness(t, cfg)}
	wh.w = wh.f.buckets["p1"].pool.warm
	if wh.w == nil {
		t.Fatal("no warmer for a bucket with min_idle")
	}
	wh.f.dial = func(tg backend.Target, hd backend.Handler) backendConn {
		fb := &fakeBackend{target: tg, h: hd}
		wh.mu.Lock()
		wh.dialed = append(wh.dialed, fb)
		wh.all = append(wh.all, fb)
		wh.mu.Unlock()
		return fb
	}
	return wh
}

func (wh *warmHarness) dials() []*fakeBackend {
	wh.mu.Lock()
	defer wh.mu.Unlock()
	return append([]*fakeBackend(nil), wh.dialed...)
}

// warm runs one sweep and plays the backends' answers (reply per dial) for the dials it made.
func (wh *warmHarness) warm(t *testing.T, now time.Time, want int, reply func() []byte) []*fakeBackend {
	t.Helper()
	before := len(wh.dials())
	wh.w.tick(now)
	waitFor(t, func() bool { return len(wh.dials()) >= before+want }, "warm-up dials")
	time.Sleep(20 * time.Millisecond) // no more than wanted
	fresh := wh.dials()[before:]
	if len(fresh) != want {
		t.Fatalf("%d warm-up dials, want %d", len(fresh), want)
	}
	for _, fb := range fresh {
		fb.h.Ready(&tds.Prelogin{}, tds.EncryptionNone)
		fb.h.Data(reply())
	}
	waitFor(t, func() bool {
		wh.w.mu.Lock()
		defer wh.w.mu.Unlock()
		return wh.w.inFlight == 0
	}, "warm-up logins to settle")
	return fresh
}

// goShapedLogin is a LOGIN7 as go-mssqldb sends it.
func goShapedLogin(user, password string) []byte {
	l := tds.Login7{TDSVersion: tds.TDSVersion74, PacketSize: 4096, OptionFlags1: tds.Login7UseDB | tds.Login7SetLang,
		OptionFlags2: tds.Login7ODBC, UserName: user, Password: tds.NewPassword(password), Database: "db",
		ServerName: "proxy", AppName: "test", HostName: "h", CltIntName: "go-mssqldb"}
	return tds.AppendPackets(nil, tds.PacketLogin7, 0, l.AppendLogin7(nil), 4096)
}

func TestWarmupFillsMinIdleAndServesTheFirstClient(t *testing.T) {
	wh := newWarmHarness(t, warmConfig)
	fresh := wh.warm(t, time.Now(), 2, loginAckReply)
	l, err := tds.DecodeLogin7(fresh[0].login[tds.HeaderSize:])
	if err != nil || l.UserName != "app" || l.Password.Reveal() != "pw" || l.Database != "db" || l.HostName != "tdspool-warmup" ||
		l.OptionFlags1 != tds.Login7UseDB|tds.Login7SetLang || l.PacketSize != 8192 {
		t.Fatalf("warm-up login %v (%v)", l, err)
	}
	if st := wh.f.buckets["p1"].pool.Stats(); st.Idle != 2 || wh.held() != 2 {
		t.Fatalf("idle %d, slots held %d: want 2 warm backends holding 2 slots", st.Idle, wh.held())
	}
	wh.warm(t, time.Now(), 0, loginAckReply) // at min_idle: nothing more

	// A go-mssqldb client of the warm-up login is served without a backend login.
	c := wh.connect()
	c.fromClient(preloginMsg(tds.EncryptOff))
	c.conn.ToClient = nil
	c.fromClient(goShapedLogin("app", "pw"))
	if len(c.conn.ToClient) == 0 || len(wh.dials()) != 2 {
		t.Fatalf("first client: %d bytes answered, %d dials: want an answer from a warm backend", len(c.conn.ToClient), len(wh.dials()))
	}
	// One idle left: the next sweep tops the bucket up again (a slot is free: cap 3).
	wh.warm(t, time.Now(), 1, loginAckReply)
	c.s.OnEvent(host.RemoteClose)

	// Drained: every warm backend closed, every slot back, granted == released.
	wh.f.drainPools()
	if wh.held() != 0 {
		t.Fatalf("%d slots held after drain", wh.held())
	}
	wh.connect() // stats reach Envoy through a connection
	if g, r := wh.metrics.Value("bucket.p1.slot_granted_total"), wh.metrics.Value("bucket.p1.slot_released_total"); g != 3 || r != 3 {
		t.Fatalf("slot_granted_total %d, slot_released_total %d: want 3 and 3", g, r)
	}
}

func TestWarmupBacksOffAndLearnsTheClientsShape(t *testing.T) {
	wh := newWarmHarness(t, warmConfig)
	start := time.Now()
	wh.warm(t, start, 2, loginRefusedReply)
	if wh.w.failures.Load() != 2 || wh.held() != 0 {
		t.Fatalf("failures %d, slots held %d", wh.w.failures.Load(), wh.held())
	}
	wh.warm(t, start, 0, loginAckReply) // paused
	// The pause grows: two failures, then 1 s, then 2 s.
	if wait := wh.w.backoff; wait != 2*time.Second {
		t.Fatalf("backoff %s after two failures, want 2s", wait)
	}

	// A client of the warm-up login with its own shape logs in for real; later warm-ups
	// take that shape, so its next connections are served warm.
	c := wh.connect()
	c.pooledLogin(t, &wh.all, "app", "pw")
	wh.warm(t, time.Now().Add(time.Minute), 2, loginAckReply)
	last := wh.dials()[len(wh.dials())-1]
	l, err := tds.DecodeLogin7(last.login[tds.HeaderSize:])
	if err != nil || l.OptionFlags1 != 0 || l.HostName != "tdspool-warmup" {
		t.Fatalf("warm-up after a client's login: %v (%v)", l, err)
	}
	if wh.w.backoff != 0 {
		t.Fatal("a success did not clear the pause")
	}
	d := wh.connect()
	d.fromClient(preloginMsg(tds.EncryptOff))
	d.conn.ToClient = nil
	d.fromClient(loginFor("app", "pw"))
	if len(d.conn.ToClient) == 0 {
		t.Fatal("the client's shape was not served by the learned warm-up")
	}
}

func TestWarmupNeverAboveTheCap(t *testing.T) {
	wh := newWarmHarness(t, strings.Replace(warmConfig, `"max_connections": 3`, `"max_connections": 2`, 1))
	// Two clients of another login hold both slots: warm-up finds none and does not queue.
	for _, u := range []string{"u1", "u2"} {
		c := wh.connect()
		c.pooledLogin(t, &wh.all, u, "pw")
	}
	wh.warm(t, time.Now(), 0, loginAckReply)
	if wh.w.failures.Load() != 0 || wh.held() != 2 {
		t.Fatalf("failures %d (a busy bucket is not one), slots held %d", wh.w.failures.Load(), wh.held())
	}
}
