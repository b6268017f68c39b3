package backend

import (
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tdspool/tdspool/standin"
	"github.com/tdspool/tdspool/tds"
)

// awaitMessage is waitMessage for goroutines other than the test's: an error, not a Fatal.
func (e *events) awaitMessage(d time.Duration) ([]byte, error) {
	select {
	case <-e.done:
	case err := <-e.closed:
		return nil, fmt.Errorf("closed: %w", err)
	case <-time.After(d):
		return nil, errors.New("no response")
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	b := append([]byte(nil), e.data.Bytes()...)
	e.data.Reset()
	return b, nil
}

// Many connections at once, opened and closed for a while, plaintext and TLS, some of them
// pausing their reads around a query: every login and every query is answered, and every
// closed connection runs its AfterClose. Descriptors are reused constantly (each close frees
// a number the next dial takes), so a read that reached the wrong connection, or a wake-up
// lost between pausing and resuming, shows up as a missing answer.
func TestConnChurnEveryAnswerArrives(t *testing.T) {
	srv, roots := startStandin(t, standin.EncryptionOptional)
	modes := []tds.ClientEncryption{tds.ClientPlaintext, tds.ClientTDS7Full, tds.ClientTDS7LoginOnly}
	const workers = 24
	run := 3 * time.Second
	if testing.Short() {
		run = time.Second
	}
	deadline := time.Now().Add(run)
	var sessions, queries, released atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for time.Now().Before(deadline) {
				err := churnOnce(srv.Addr(), modes[w%len(modes)], roots, rng, &queries, &released)
				sessions.Add(1) // dialed: its AfterClose must run whether it failed or not
				if err != nil {
					errs <- fmt.Errorf("worker %d (%s): %w", w, modes[w%len(modes)], err)
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
	// Every AfterClose runs within closeWait of its Close.
	end := time.Now().Add(closeWait + 2*time.Second)
	for released.Load() != sessions.Load() && time.Now().Before(end) {
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("%d sessions, %d queries, %d released", sessions.Load(), queries.Load(), released.Load())
	if r, s := released.Load(), sessions.Load(); r != s {
		t.Errorf("%d of %d closed connections never ran AfterClose", s-r, s)
	}
	if sessions.Load() == 0 {
		t.Fatal("no session completed")
	}
}

// churnOnce is one client session: dial, log in, one to three queries (some with reads paused
// and resumed while the answer is on its way), close.
func churnOnce(addr string, mode tds.ClientEncryption, roots *x509.CertPool, rng *rand.Rand, queries, released *atomic.Int64) error {
	ev := newEvents()
	tgt := Target{Addresses: []string{addr}, ConnectTimeout: time.Second, Encryption: mode,
		Prelogin: tds.Prelogin{HasVersion: true}, PacketSize: 4096}
	if mode != tds.ClientPlaintext {
		tgt = target(addr, mode, roots, "localhost")
	}
	// A loopback dial that waits for a busy accept loop is not what this test is about: CI saw
	// a 1 s connect time out at load 10.
	tgt.ConnectTimeout = 10 * time.Second
	c := Dial(tgt, ev)
	ev.c = c
	c.AfterClose(func() { released.Add(1) })
	defer c.Close()
	select {
	case <-ev.ready:
	case err := <-ev.closed:
		return fmt.Errorf("closed before ready: %w", err)
	case <-time.After(10 * time.Second):
		return errors.New("no handshake in 10s")
	}
	if _, err := c.WriteLogin(login7("demo", "Demo-Passw0rd")); err != nil {
		return err
	}
	resp, err := ev.awaitMessage(10 * time.Second)
	if err != nil {
		return fmt.Errorf("login: %w", err)
	}
	if !bytes.Contains(resp, []byte{byte(tds.TokenLoginAck)}) {
		return errors.New("no LOGINACK")
	}
	for q := range 1 + rng.IntN(3) {
		pause := rng.IntN(3) == 0
		if pause {
			c.PauseReads(true)
		}
		want := rng.IntN(1 << 20)
		if _, err := c.Write(batch(fmt.Sprintf("select %d", want))); err != nil {
			return err
		}
		if pause {
			time.Sleep(time.Duration(rng.IntN(3)) * time.Millisecond)
			c.PauseReads(false)
		}
		resp, err := ev.awaitMessage(10 * time.Second)
		if err != nil {
			return fmt.Errorf("query %d: %w", q, err)
		}
		if !bytes.Contains(resp, le32(want)) {
			return fmt.Errorf("query %d: %d not in the answer % X", q, want, resp[:min(len(resp), 64)])
		}
		queries.Add(1)
	}
	return nil
}

func le32(v int) []byte { return []byte{byte(v), byte(v >> 8), byte(v >> 16), byte(v >> 24)} }

// An idle connection nobody owns (pooled) still hears its server end the session: it stops
// being Alive and its AfterClose runs, without an owner calling Close.
func TestConnUnownedNoticesServerClose(t *testing.T) {
	for _, mode := range []tds.ClientEncryption{tds.ClientPlaintext, tds.ClientTDS7Full} {
		t.Run(mode.String(), func(t *testing.T) {
			srv, roots := startStandin(t, standin.EncryptionOptional)
			ev := newEvents()
			c := Dial(target(srv.Addr(), mode, roots, "localhost"), ev)
			ev.c = c
			defer c.Close()
			ev.waitReady(t)
			if _, err := c.WriteLogin(login7("demo", "Demo-Passw0rd")); err != nil {
				t.Fatal(err)
			}
			ev.waitMessage(t)
			c.SetHandler(nil)
			gone := make(chan struct{})
			c.AfterClose(func() { close(gone) })
			time.Sleep(50 * time.Millisecond)
			if !c.Alive() {
				t.Fatal("not alive when idle")
			}
			srv.DropAll()
			select {
			case <-gone:
			case <-time.After(5 * time.Second):
				t.Fatal("the idle connection never noticed its server closing")
			}
			if c.Alive() {
				t.Fatal("still alive after the server closed it")
			}
		})
	}
}
