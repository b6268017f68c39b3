package integration

import (
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/tdspool/tdspool/internal/rawtds"
	"github.com/tdspool/tdspool/standin"
	"github.com/tdspool/tdspool/standin/standintest"
	"github.com/tdspool/tdspool/tds"
)

// startBucket starts the stand-in as one bucket's backend: ServerName is the tag (what
// PRINT @@SERVERNAME answers, so a test can tell which bucket served it), the login is
// app/pw, and the databases the routing tests name exist.
func startBucket(t *testing.T, tag string) *standin.Server {
	t.Helper()
	return standintest.Start(t, standin.Config{ServerName: tag, Users: map[string]string{"app": "pw"},
		Databases: []string{"tenant_a", "tenant_b", "tenant_c"}, DataDir: t.TempDir(), Encryption: standin.EncryptionOff})
}

// rawClient speaks just enough TDS to log in through the proxy and run batches.
type rawClient struct {
	c net.Conn
	r tds.Reassembler
}

func dialRaw(t *testing.T, addr string) *rawClient {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	t.Cleanup(func() { c.Close() })
	return &rawClient{c: c}
}

func (rc *rawClient) send(typ tds.PacketType, payload []byte) error {
	return rawtds.Send(rc.c, typ, 0, payload, tds.DefaultPacketSize)
}

func (rc *rawClient) recv() (tds.Message, error) { return rawtds.Recv(rc.c, &rc.r) }

// events decodes a reply's tokens.
func events(t *testing.T, msg tds.Message) []tds.Event {
	t.Helper()
	var sc tds.Scanner
	evs, err := sc.Feed(msg.Payload)
	if err != nil {
		t.Fatalf("reply does not parse: %v", err)
	}
	return append([]tds.Event(nil), evs...)
}

// login runs PRELOGIN and LOGIN7; it returns the login reply's events.
func (rc *rawClient) login(t *testing.T, user, db string) []tds.Event {
	t.Helper()
	evs, err := rc.tryLogin(user, db)
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

// loginNoFatal is login for use from other goroutines: nil on any failure.
func (rc *rawClient) loginNoFatal(user, db string) []tds.Event {
	evs, _ := rc.tryLogin(user, db)
	return evs
}

func (rc *rawClient) tryLogin(user, db string) ([]tds.Event, error) {
	return rc.tryLoginTo(user, db, "proxy")
}

// tryLoginTo logs in with server as the LOGIN7 ServerName (the name a client dialled).
func (rc *rawClient) tryLoginTo(user, db, server string) ([]tds.Event, error) {
	pre := tds.Prelogin{HasVersion: true, Version: 0x0C000000, HasEncryption: true, Encryption: tds.EncryptNotSup,
		HasInstance: true, HasThreadID: true, HasMARS: true}
	if err := rc.send(tds.PacketPrelogin, pre.AppendPrelogin(nil)); err != nil {
		return nil, err
	}
	msg, err := rc.recv()
	if err != nil {
		return nil, fmt.Errorf("PRELOGIN reply: %w", err)
	}
	if _, err := tds.DecodePrelogin(msg.Payload); err != nil {
		return nil, fmt.Errorf("PRELOGIN reply: %w", err)
	}
	l := tds.Login7{TDSVersion: tds.TDSVersion74, PacketSize: 4096, UserName: user, Password: tds.NewPassword("pw"),
		Database: db, ServerName: server, AppName: "integration", HostName: "h", CltIntName: "raw"}
	if err := rc.send(tds.PacketLogin7, l.AppendLogin7(nil)); err != nil {
		return nil, err
	}
	msg, err = rc.recv()
	if err != nil {
		return nil, fmt.Errorf("login reply: %w", err)
	}
	var sc tds.Scanner
	evs, err := sc.Feed(msg.Payload)
	if err != nil {
		return nil, fmt.Errorf("login reply does not parse: %w", err)
	}
	return append([]tds.Event(nil), evs...), nil
}

// batch sends a SQL_BATCH and returns the text of the first INFO/ERROR in the reply.
func (rc *rawClient) batch(t *testing.T, sql string) string {
	t.Helper()
	q := tds.SQLBatch{Headers: tds.AllHeaders{HasTransaction: true, OutstandingRequests: 1}, Text: sql}
	if err := rc.send(tds.PacketSQLBatch, q.AppendSQLBatch(nil)); err != nil {
		t.Fatal(err)
	}
	msg, err := rc.recv()
	if err != nil {
		t.Fatalf("batch reply: %v", err)
	}
	for _, ev := range events(t, msg) {
		if ev.Token == tds.TokenInfo || ev.Token == tds.TokenError {
			return ev.Message.Text
		}
	}
	return ""
}

func hasLoginAck(evs []tds.Event) bool {
	for _, ev := range evs {
		if ev.Token == tds.TokenLoginAck {
			return true
		}
	}
	return false
}

func firstError(evs []tds.Event) (tds.ServerMessage, bool) {
	for _, ev := range evs {
		if ev.Token == tds.TokenError {
			return ev.Message, true
		}
	}
	return tds.ServerMessage{}, false
}

// expectClosed asserts the server closes the connection (EOF or reset) soon.
func (rc *rawClient) expectClosed(t *testing.T) {
	t.Helper()
	_ = rc.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := rc.c.Read(make([]byte, 1))
	var ne net.Error
	if err == nil || (errors.As(err, &ne) && ne.Timeout()) {
		t.Fatalf("connection still open: %v", err)
	}
	if !errors.Is(err, io.EOF) {
		t.Logf("closed with %v", err)
	}
}
