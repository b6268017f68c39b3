package backend

import (
	"bytes"
	"crypto/x509"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tdspool/tdspool/standin"
	"github.com/tdspool/tdspool/tds"
)

// events records a Conn's Handler calls and consumes Data at once.
type events struct {
	c      *Conn
	mu     sync.Mutex
	ready  chan tds.EncryptionResult
	closed chan error
	in     tds.ResponseScanner
	data   bytes.Buffer
	done   chan struct{} // one per end of message
}

func newEvents() *events {
	return &events{ready: make(chan tds.EncryptionResult, 1), closed: make(chan error, 1), done: make(chan struct{}, 16)}
}

func (e *events) Ready(reply *tds.Prelogin, r tds.EncryptionResult) { e.ready <- r }
func (e *events) Drained()                                          {}
func (e *events) Closed(err error)                                  { e.closed <- err }
func (e *events) Data(b []byte) {
	e.mu.Lock()
	e.data.Write(b)
	evs, _ := e.in.Feed(b)
	e.mu.Unlock()
	for _, ev := range evs {
		if ev.Token == tds.TokenEndOfMessage {
			e.done <- struct{}{}
		}
	}
	e.c.Consumed(len(b))
}

func (e *events) waitReady(t *testing.T) tds.EncryptionResult {
	t.Helper()
	select {
	case r := <-e.ready:
		return r
	case err := <-e.closed:
		t.Fatalf("closed before ready: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("no handshake in 10s")
	}
	return 0
}

func (e *events) waitMessage(t *testing.T) []byte {
	t.Helper()
	select {
	case <-e.done:
	case err := <-e.closed:
		t.Fatalf("closed: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("no response in 10s")
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	b := append([]byte(nil), e.data.Bytes()...)
	e.data.Reset()
	return b
}

func startStandin(t *testing.T, enc standin.Encryption) (*standin.Server, *x509.CertPool) {
	t.Helper()
	srv, err := standin.New(standin.Config{Addr: "127.0.0.1:0", ServerName: "b1", Encryption: enc,
		Users: map[string]string{"demo": "Demo-Passw0rd"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(srv.CertPEM())
	return srv, roots
}

func login7(user, password string) []byte {
	l := tds.Login7{TDSVersion: tds.TDSVersion74, PacketSize: 4096, UserName: user, Password: tds.NewPassword(password),
		AppName: "backend-test", Database: "master", ClientProgVer: 1}
	return tds.AppendPackets(nil, tds.PacketLogin7, 0, l.AppendLogin7(nil), 4096)
}

func batch(sql string) []byte {
	q := tds.SQLBatch{Headers: tds.AllHeaders{HasTransaction: true}, Text: sql}
	return tds.AppendPackets(nil, tds.PacketSQLBatch, 0, q.AppendSQLBatch(nil), 4096)
}

func target(addr string, enc tds.ClientEncryption, roots *x509.CertPool, serverName string) Target {
	return Target{Addresses: []string{addr}, ConnectTimeout: time.Second, Encryption: enc,
		TLS: tds.ClientTLSConfig(enc, serverName, roots, false), Prelogin: tds.Prelogin{HasVersion: true}, PacketSize: 4096}
}

// Every backend encryption mode against every stand-in policy that can serve it: the login
// and a query work, and the stand-in counts the login under the transport we meant.
func TestConnAgainstStandin(t *testing.T) {
	for _, tc := range []struct {
		server standin.Encryption
		client tds.ClientEncryption
		result tds.EncryptionResult
		count  func(standin.Stats) int64
	}{
		{standin.EncryptionOff, tds.ClientPlaintext, tds.EncryptionNone, func(s standin.Stats) int64 { return s.Plain }},
		{standin.EncryptionOptional, tds.ClientPlaintext, tds.EncryptionNone, func(s standin.Stats) int64 { return s.Plain }},
		{standin.EncryptionOptional, tds.ClientTDS7LoginOnly, tds.EncryptionLoginOnly, func(s standin.Stats) int64 { return s.LoginOnly }},
		{standin.EncryptionRequired, tds.ClientTDS7LoginOnly, tds.EncryptionFull, func(s standin.Stats) int64 { return s.FullTLS }},
		{standin.EncryptionOptional, tds.ClientTDS7Full, tds.EncryptionFull, func(s standin.Stats) int64 { return s.FullTLS }},
		{standin.EncryptionRequired, tds.ClientTDS7Full, tds.EncryptionFull, func(s standin.Stats) int64 { return s.FullTLS }},
		{standin.EncryptionOptional, tds.ClientTDS8, tds.EncryptionFull, func(s standin.Stats) int64 { return s.Strict }},
		{standin.EncryptionStrict, tds.ClientTDS8, tds.EncryptionFull, func(s standin.Stats) int64 { return s.Strict }},
	} {
		t.Run(tc.server.String()+"/"+tc.client.String(), func(t *testing.T) {
			srv, roots := startStandin(t, tc.server)
			ev := newEvents()
			c := Dial(target(srv.Addr(), tc.client, roots, "localhost"), ev)
			ev.c = c
			defer c.Close()
			if r := ev.waitReady(t); r != tc.result {
				t.Fatalf("result %s, want %s", r, tc.result)
			}
			if _, err := c.WriteLogin(login7("demo", "Demo-Passw0rd")); err != nil {
				t.Fatal(err)
			}
			if resp := ev.waitMessage(t); !bytes.Contains(resp, []byte{byte(tds.TokenLoginAck)}) {
				t.Fatalf("no LOGINACK in % X", resp[:min(len(resp), 64)])
			}
			if _, err := c.Write(batch("select @@servername")); err != nil {
				t.Fatal(err)
			}
			if resp := ev.waitMessage(t); !bytes.Contains(resp, []byte{'b', 0, '1', 0}) {
				t.Fatalf("no server name in the reply % X", resp)
			}
			if n := tc.count(srv.Stats()); n != 1 {
				t.Fatalf("stand-in counted %d logins under the expected transport: %+v", n, srv.Stats())
			}
		})
	}
}

// The failures a bucket must turn into "backend unavailable" with the reason.
func TestConnRefusals(t *testing.T) {
	_, otherRoots := startStandin(t, standin.EncryptionOff) // a CA that signed nothing of srv's
	for _, tc := range []struct {
		name   string
		server standin.Encryption
		client tds.ClientEncryption
		roots  func(own *x509.CertPool) *x509.CertPool
		sni    string
		want   string
	}{
		{"plaintext to a ForceEncryption server", standin.EncryptionRequired, tds.ClientPlaintext, nil, "localhost", "requires encryption"},
		{"TLS to a server without TLS", standin.EncryptionOff, tds.ClientTDS7Full, nil, "localhost", "does not support encryption"},
		{"TDS 7 to a TDS 8-only server", standin.EncryptionStrict, tds.ClientTDS7Full, nil, "localhost", "closed the connection"},
		{"wrong CA", standin.EncryptionRequired, tds.ClientTDS7Full, func(*x509.CertPool) *x509.CertPool { return otherRoots }, "localhost", "unknown authority"},
		{"wrong server name", standin.EncryptionRequired, tds.ClientTDS7Full, nil, "db.example.com", "db.example.com"},
		{"wrong CA, TDS 8", standin.EncryptionStrict, tds.ClientTDS8, func(*x509.CertPool) *x509.CertPool { return otherRoots }, "localhost", "unknown authority"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, roots := startStandin(t, tc.server)
			if tc.roots != nil {
				roots = tc.roots(roots)
			}
			ev := newEvents()
			c := Dial(target(srv.Addr(), tc.client, roots, tc.sni), ev)
			ev.c = c
			defer c.Close()
			select {
			case err := <-ev.closed:
				if !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("error %q does not say %q", err, tc.want)
				}
			case <-ev.ready:
				t.Fatal("handshake succeeded")
			case <-time.After(10 * time.Second):
				t.Fatal("no answer in 10s")
			}
		})
	}
}

func TestConnDialFailures(t *testing.T) {
	// A port nobody listens on: refused at once.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	ev := newEvents()
	c := Dial(Target{Addresses: []string{dead}, ConnectTimeout: time.Second}, ev)
	ev.c = c
	defer c.Close()
	select {
	case err := <-ev.closed:
		if !strings.Contains(err.Error(), "connect") {
			t.Fatalf("error %q", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no failure in 5s")
	}

	// A listener that accepts and never answers: the handshake waits until the owner closes,
	// and then no Handler call follows.
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	go func() {
		for {
			nc, err := silent.Accept()
			if err != nil {
				return
			}
			defer nc.Close()
		}
	}()
	ev2 := newEvents()
	c2 := Dial(Target{Addresses: []string{silent.Addr().String()}, ConnectTimeout: time.Second, PacketSize: 4096}, ev2)
	ev2.c = c2
	time.Sleep(100 * time.Millisecond)
	c2.Close()
	select {
	case err := <-ev2.closed:
		t.Fatalf("Closed(%v) after the owner's Close", err)
	case <-ev2.ready:
		t.Fatal("ready from a silent server")
	case <-time.After(200 * time.Millisecond):
	}

	// A second address is tried when the first refuses.
	srv, _ := startStandin(t, standin.EncryptionOff)
	ev3 := newEvents()
	c3 := Dial(Target{Addresses: []string{dead, srv.Addr()}, ConnectTimeout: time.Second, PacketSize: 4096}, ev3)
	ev3.c = c3
	defer c3.Close()
	ev3.waitReady(t)
}

// A backend that dies mid-session is reported as Closed with the cause.
func TestConnBackendKilled(t *testing.T) {
	srv, roots := startStandin(t, standin.EncryptionRequired)
	ev := newEvents()
	c := Dial(target(srv.Addr(), tds.ClientTDS7Full, roots, "localhost"), ev)
	ev.c = c
	defer c.Close()
	ev.waitReady(t)
	if _, err := c.WriteLogin(login7("demo", "Demo-Passw0rd")); err != nil {
		t.Fatal(err)
	}
	ev.waitMessage(t)
	srv.DropAll()
	select {
	case err := <-ev.closed:
		if err == nil {
			t.Fatal("nil error")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no Closed after the backend dropped")
	}
}

// A paused Conn stops reading: the backend's writes back up in the kernel, and the bytes
// handed over stay within the in-flight bound.
func TestConnPauseBoundsMemory(t *testing.T) {
	srv, _ := startStandin(t, standin.EncryptionOff)
	ev := &slowEvents{events: newEvents()}
	c := Dial(Target{Addresses: []string{srv.Addr()}, ConnectTimeout: time.Second, PacketSize: 4096}, ev)
	ev.c = c
	defer c.Close()
	ev.waitReady(t)
	if _, err := c.WriteLogin(login7("demo", "Demo-Passw0rd")); err != nil {
		t.Fatal(err)
	}
	ev.waitMessage(t)
	ev.smu.Lock()
	ev.hold = true
	ev.smu.Unlock()
	// About 20 MB of rows.
	if _, err := c.Write(batch("with recursive n(i) as (select 1 union all select i+1 from n where i < 200000) select i, printf('%0100d', i) from n")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	if n := ev.held(); n > maxInFlight+readSize {
		t.Fatalf("%d bytes handed over while nothing was consumed (bound %d)", n, maxInFlight+readSize)
	} else if n == 0 {
		t.Fatal("nothing arrived")
	}
	c.PauseReads(true)
	ev.releaseAll()
	time.Sleep(300 * time.Millisecond)
	before := ev.held()
	time.Sleep(300 * time.Millisecond)
	if after := ev.held(); after != before {
		t.Fatalf("reads went on while paused: %d → %d", before, after)
	}
	c.PauseReads(false)
	select {
	case <-ev.done:
	case <-time.After(30 * time.Second):
		t.Fatal("the result never completed after resuming")
	}
}

// slowEvents holds Data without consuming it while hold is set.
type slowEvents struct {
	*events
	hold    bool
	smu     sync.Mutex
	pending int
	total   int
}

func (e *slowEvents) Data(b []byte) {
	e.smu.Lock()
	e.total += len(b)
	if e.hold {
		e.pending += len(b)
		e.smu.Unlock()
		e.events.mu.Lock()
		evs, _ := e.in.Feed(b)
		e.events.mu.Unlock()
		for _, ev := range evs {
			if ev.Token == tds.TokenEndOfMessage {
				e.done <- struct{}{}
			}
		}
		return
	}
	e.smu.Unlock()
	e.events.Data(b)
}

func (e *slowEvents) held() int {
	e.smu.Lock()
	defer e.smu.Unlock()
	return e.total
}

func (e *slowEvents) releaseAll() {
	e.smu.Lock()
	n := e.pending
	e.pending = 0
	e.hold = false
	e.smu.Unlock()
	e.c.Consumed(n)
}

// An unowned (pooled) connection that receives bytes, or whose backend goes away, is no
// longer Alive.
func TestConnAliveWhileUnowned(t *testing.T) {
	srv, _ := startStandin(t, standin.EncryptionOff)
	ev := newEvents()
	c := Dial(Target{Addresses: []string{srv.Addr()}, ConnectTimeout: time.Second, PacketSize: 4096}, ev)
	ev.c = c
	defer c.Close()
	ev.waitReady(t)
	if !c.Alive() {
		t.Fatal("not alive after the handshake")
	}
	if _, err := c.WriteLogin(login7("demo", "Demo-Passw0rd")); err != nil {
		t.Fatal(err)
	}
	ev.waitMessage(t)
	c.SetHandler(nil)
	if !c.Alive() {
		t.Fatal("not alive when idle")
	}
	// A request whose answer nobody owns.
	if _, err := c.Write(batch("select 1")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for c.Alive() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if c.Alive() {
		t.Fatal("still alive after unowned bytes")
	}
}

// Close half-closes and AfterClose runs once the server has ended the session: a slot
// released then is never held by two backend sessions at once.
func TestConnAfterCloseFollowsTheServersClose(t *testing.T) {
	srv, _ := startStandin(t, standin.EncryptionOff)
	ev := newEvents()
	c := Dial(Target{Addresses: []string{srv.Addr()}, ConnectTimeout: time.Second, PacketSize: 4096}, ev)
	ev.c = c
	ev.waitReady(t)
	if _, err := c.WriteLogin(login7("demo", "Demo-Passw0rd")); err != nil {
		t.Fatal(err)
	}
	ev.waitMessage(t)
	if n := srv.Sessions(); n != 1 {
		t.Fatalf("stand-in holds %d sessions, want 1", n)
	}
	sessionsAtRelease := make(chan int, 1)
	c.AfterClose(func() { sessionsAtRelease <- srv.Sessions() })
	c.Close()
	select {
	case n := <-sessionsAtRelease:
		if n != 0 {
			t.Fatalf("AfterClose ran while the stand-in still held %d sessions", n)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("AfterClose never ran")
	}
	// Registered after the end: runs at once.
	ran := false
	c.AfterClose(func() { ran = true })
	if !ran {
		t.Fatal("AfterClose after the end did not run at once")
	}
}

// A Close while the server has not yet answered PRELOGIN has the last word: the handshake
// that completes afterwards must not mark the connection alive (a pool would lend it).
func TestConnCloseDuringHandshakeStaysDead(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	gotPrelogin, answer := make(chan struct{}), make(chan struct{})
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		defer nc.Close()
		buf := make([]byte, 4096)
		if _, err := nc.Read(buf); err != nil {
			return
		}
		close(gotPrelogin)
		<-answer
		reply := tds.ServerPreloginReply(0x10000000, tds.EncryptNotSup)
		_, _ = nc.Write(tds.AppendPackets(nil, tds.PacketReply, 0, reply.AppendPrelogin(nil), 4096))
		_, _ = nc.Read(buf) // hold the session open until the client ends it
	}()
	ev := newEvents()
	c := Dial(Target{Addresses: []string{ln.Addr().String()}, ConnectTimeout: time.Second, PacketSize: 4096}, ev)
	ev.c = c
	select {
	case <-gotPrelogin:
	case <-time.After(10 * time.Second):
		t.Fatal("no PRELOGIN in 10s")
	}
	c.Close()
	close(answer)
	for end := time.Now().Add(500 * time.Millisecond); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		if c.Alive() {
			t.Fatal("alive after a Close during the handshake")
		}
	}
	select {
	case r := <-ev.ready:
		t.Fatalf("Ready(%v) after Close", r)
	default:
	}
}
