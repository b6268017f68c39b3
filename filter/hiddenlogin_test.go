package filter

import (
	"bytes"
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tdspool/tdspool/filter/backend"
	"github.com/tdspool/tdspool/tds"
)

// loginAckReply is a backend's successful login response (SPID 57), framed.
func loginAckReply() []byte {
	var p []byte
	p = tds.EnvChangeDatabase("db", "master").AppendEnvChange(p)
	p = tds.EnvChangePacketSize(8192, 4096).AppendEnvChange(p)
	p = tds.LoginAck{Interface: 1, TDSVersion: tds.TDSVersion74, ProgName: "Microsoft SQL Server", ProgVersion: 0x10000000}.AppendLoginAck(p)
	p = tds.Done{Token: tds.TokenDone}.AppendDone(p)
	return tds.AppendPacketsSPID(nil, tds.PacketReply, 0, 57, p, 4096)
}

// loginRefusedReply is the server's 18456 for a wrong password, framed.
func loginRefusedReply() []byte {
	p := tds.ServerMessage{Token: tds.TokenError, Number: 18456, State: 1, Class: 14,
		Text: "Login failed for user 'app'.", Server: "sql"}.AppendMessage(nil)
	p = tds.Done{Token: tds.TokenDone, Status: tds.DoneError}.AppendDone(p)
	return tds.AppendPacketsSPID(nil, tds.PacketReply, 0, 57, p, 4096)
}

// hiddenHarness is a pooled bucket's factory whose dials are recorded fakes.
type hiddenHarness struct {
	h        *harness
	mu       sync.Mutex
	dialed   []*fakeBackend
	released atomic.Int32
}

func newHiddenHarness(t *testing.T) *hiddenHarness {
	hh := &hiddenHarness{h: newHarness(t, pooledConfig)}
	hh.h.f.dial = func(tg backend.Target, hd backend.Handler) backendConn {
		fb := &fakeBackend{target: tg, h: hd}
		hh.mu.Lock()
		hh.dialed = append(hh.dialed, fb)
		hh.mu.Unlock()
		return fb
	}
	return hh
}

func (hh *hiddenHarness) backend(t *testing.T) *fakeBackend {
	t.Helper()
	hh.mu.Lock()
	defer hh.mu.Unlock()
	if len(hh.dialed) != 1 {
		t.Fatalf("%d dials, want 1", len(hh.dialed))
	}
	return hh.dialed[0]
}

func TestHiddenLogin(t *testing.T) {
	login := loginFor("app", "pw")
	tests := []struct {
		name    string
		timeout time.Duration
		refuse  bool // Deliver refuses (the session is gone)
		play    func(fb *fakeBackend, cancel func())
		wantOK  bool
		wantErr error // errors.Is, when set
		wantMsg int32 // a refusal's error number
		noDone  bool  // Done must not run
	}{
		{name: "loginack in pieces", wantOK: true, play: func(fb *fakeBackend, _ func()) {
			fb.h.Ready(&tds.Prelogin{}, tds.EncryptionNone)
			r := loginAckReply()
			fb.h.Data(r[:3]) // split inside the packet header
			fb.h.Data(r[3:20])
			fb.h.Data(r[20:])
		}},
		{name: "server refuses", wantErr: errHiddenLoginRefused, wantMsg: 18456, play: func(fb *fakeBackend, _ func()) {
			fb.h.Ready(&tds.Prelogin{}, tds.EncryptionNone)
			fb.h.Data(loginRefusedReply())
		}},
		{name: "backend closes after LOGIN7", play: func(fb *fakeBackend, _ func()) {
			fb.h.Ready(&tds.Prelogin{}, tds.EncryptionNone)
			fb.h.Closed(io.EOF)
		}},
		{name: "dial fails", play: func(fb *fakeBackend, _ func()) { fb.h.Closed(errors.New("connection refused")) }},
		{name: "silent backend times out", timeout: 30 * time.Millisecond, play: func(fb *fakeBackend, _ func()) {
			fb.h.Ready(&tds.Prelogin{}, tds.EncryptionNone)
		}},
		{name: "not a reply", play: func(fb *fakeBackend, _ func()) {
			fb.h.Ready(&tds.Prelogin{}, tds.EncryptionNone)
			fb.h.Data(tds.AppendPackets(nil, tds.PacketSQLBatch, 0, []byte{1, 2}, 4096))
		}},
		{name: "cancelled", wantErr: errHiddenLoginCancelled, play: func(fb *fakeBackend, cancel func()) {
			fb.h.Ready(&tds.Prelogin{}, tds.EncryptionNone)
			cancel()
			cancel()
			fb.h.Data(loginAckReply()) // too late: ignored
		}},
		{name: "success delivered to a gone session", refuse: true, noDone: true, play: func(fb *fakeBackend, _ func()) {
			fb.h.Ready(&tds.Prelogin{}, tds.EncryptionNone)
			fb.h.Data(loginAckReply())
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			hh := newHiddenHarness(t)
			if tc.timeout > 0 {
				hh.h.f.loginTimeout = tc.timeout
			}
			results := make(chan hiddenLoginResult, 2)
			sent := bytes.Clone(login)
			var deliver func(func()) bool
			if tc.refuse {
				deliver = func(func()) bool { return false }
			}
			cancel := hh.h.f.startHiddenLogin(hiddenLoginRequest{
				Bucket: hh.h.f.buckets["p1"], Login7: sent,
				Release: func() { hh.released.Add(1) },
				Deliver: deliver,
				Done:    func(r hiddenLoginResult) { results <- r },
			})
			fb := hh.backend(t)
			tc.play(fb, cancel)
			if tc.noDone {
				time.Sleep(20 * time.Millisecond)
				if len(results) != 0 || !fb.closed || hh.released.Load() != 1 {
					t.Fatalf("Done ran %d times, closed=%v, released %d: want 0, true, 1", len(results), fb.closed, hh.released.Load())
				}
				return
			}
			var r hiddenLoginResult
			select {
			case r = <-results:
			case <-time.After(2 * time.Second):
				t.Fatal("Done never ran")
			}
			if !bytes.Equal(fb.login, login) && len(fb.login) > 0 {
				t.Fatal("the backend did not get the LOGIN7 as given")
			}
			if len(fb.login) > 0 && bytes.Count(sent, []byte{0}) != len(sent) {
				t.Fatal("the LOGIN7 bytes were not zeroed once sent")
			}
			if r.OK() != tc.wantOK {
				t.Fatalf("OK = %v (err %v), want %v", r.OK(), r.Err, tc.wantOK)
			}
			if tc.wantErr != nil && !errors.Is(r.Err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", r.Err, tc.wantErr)
			}
			if tc.wantMsg != 0 && (len(r.Refused) != 1 || r.Refused[0].Number != tc.wantMsg || len(r.Response) == 0) {
				t.Fatalf("refused %+v, response %d bytes", r.Refused, len(r.Response))
			}
			if tc.wantOK {
				if r.Conn != backendConn(fb) || r.Release == nil || r.Reply == nil || r.SPID != 57 || fb.h != nil {
					t.Fatalf("result %+v, handler %v: want the connection without handler, its slot, the reply, SPID 57", r, fb.h)
				}
				if fb.closed || hh.released.Load() != 0 {
					t.Fatal("a successful login closed its connection or released its slot")
				}
				closeReleasing(r.Conn, r.Release) // the receiver's part
			} else if r.Conn != nil || r.Release != nil || !fb.closed {
				t.Fatalf("a failure handed over conn=%v release=%v, closed=%v", r.Conn, r.Release != nil, fb.closed)
			}
			time.Sleep(10 * time.Millisecond) // a second Done would have arrived by now
			if len(results) != 0 || hh.released.Load() != 1 {
				t.Fatalf("Done ran again (%d) or the slot was released %d times", len(results), hh.released.Load())
			}
		})
	}
}

func TestHiddenLoginWithoutModuleLegReleasesTheSlot(t *testing.T) {
	h := newHarness(t, testConfig)
	var released atomic.Int32
	done := make(chan hiddenLoginResult, 1)
	var anyBucket *bucketState
	for _, b := range h.f.buckets {
		anyBucket = b
	}
	h.f.startHiddenLogin(hiddenLoginRequest{Bucket: anyBucket, Login7: loginFor("app", "pw"),
		Release: func() { released.Add(1) }, Done: func(r hiddenLoginResult) { done <- r }})
	select {
	case r := <-done:
		if r.OK() || released.Load() != 1 {
			t.Fatalf("ok=%v released %d", r.OK(), released.Load())
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Done never ran")
	}
}
