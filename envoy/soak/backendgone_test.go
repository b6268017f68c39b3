package soak

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/tdspool/tdspool/deployments/envoyconfig"
	"github.com/tdspool/tdspool/internal/stack"
	"github.com/tdspool/tdspool/internal/tcprelay"
	"github.com/tdspool/tdspool/standin"
	"github.com/tdspool/tdspool/standin/standintest"
	"github.com/tdspool/tdspool/tds"
)

// dyingServer is how a backend goes away during the login, as a killed server does: the
// stand-in behind a relay that ends the connection at one point of the handshake.
type dyingServer struct {
	name string
	// afterPrelogin: the PRELOGIN answer reaches the proxy and the server closes with it (the
	// FIN in the same read as the answer), before the proxy sends its LOGIN7.
	afterPrelogin bool
	// afterLogin: the server closes once the LOGIN7 has arrived, without answering it.
	afterLogin bool
	// reset: a TCP RST instead of a FIN.
	reset bool
}

var dyingServers = []dyingServer{
	{name: "answers PRELOGIN and closes", afterPrelogin: true},
	{name: "answers PRELOGIN and resets", afterPrelogin: true, reset: true},
	{name: "takes LOGIN7 and closes", afterLogin: true},
	{name: "takes LOGIN7 and resets", afterLogin: true, reset: true},
	{name: "closes before its PRELOGIN answer"},
}

// relay serves one proxy connection: the stand-in answers the PRELOGIN, and the connection
// ends where d says.
func (d dyingServer) relay(backendAddr string) func(net.Conn) {
	return func(c net.Conn) {
		defer func() {
			if tc, ok := c.(*net.TCPConn); ok && d.reset {
				_ = tc.SetLinger(0)
			}
			c.Close()
		}()
		_ = c.SetDeadline(time.Now().Add(20 * time.Second))
		var fromProxy tds.Reassembler
		pre, err := readMessage(c, &fromProxy)
		if err != nil {
			return
		}
		if !d.afterPrelogin && !d.afterLogin {
			return
		}
		b, err := net.Dial("tcp", backendAddr)
		if err != nil {
			return
		}
		defer b.Close()
		_ = b.SetDeadline(time.Now().Add(20 * time.Second))
		if _, err := b.Write(pre); err != nil {
			return
		}
		var fromServer tds.Reassembler
		answer, err := readMessage(b, &fromServer)
		if err != nil {
			return
		}
		if _, err := c.Write(answer); err != nil || d.afterPrelogin {
			return
		}
		_, _ = readMessage(c, &fromProxy) // the LOGIN7, which the server never answers
	}
}

// readMessage reads one whole TDS message and returns its bytes as they came (packets and
// all), to pass on unchanged.
func readMessage(r io.Reader, asm *tds.Reassembler) ([]byte, error) {
	var raw []byte
	buf := make([]byte, 4096)
	for {
		if _, err := asm.Next(); err == nil {
			return raw, nil
		}
		n, err := r.Read(buf)
		if n > 0 {
			raw = append(raw, buf[:n]...)
			asm.Feed(buf[:n])
		}
		if err != nil {
			return nil, err
		}
	}
}

// TestBackendGoneDuringLoginIsAnsweredAtOnce: a backend that closes its connection during the
// login (a server killed between its PRELOGIN answer and the LOGIN7's answer) is noticed when
// its socket closes, and the client gets 40613 then, not at login_timeout; on both legs.
func TestBackendGoneDuringLoginIsAnsweredAtOnce(t *testing.T) {
	backend := standintest.Start(t, standin.Config{ServerName: bucket, Users: map[string]string{demoUser: demoPassword},
		Databases: []string{demoDatabase}, DataDir: t.TempDir(), Encryption: standin.EncryptionOptional})
	backendAddr := fmt.Sprintf("127.0.0.1:%d", backend.Port())
	const loginTimeout = 12 * time.Second
	var buckets []map[string]any
	var clusters []envoyconfig.Bucket
	var routes []map[string]any
	// tcp_proxy meets an upstream RST by resetting the client at once: the filter hears of it
	// only as its own connection's close, too late to write an ERROR. A server that closed with
	// its PRELOGIN answer resets the LOGIN7 sent after it, which may come first.
	bareCloseOK := map[string]bool{}
	for i, d := range dyingServers {
		port := tcprelay.Listen(t, d.relay(backendAddr)).Addr().(*net.TCPAddr).Port
		for _, leg := range []string{"tcp", "module"} {
			name, cluster := fmt.Sprintf("dying-%d-%s", i, leg), fmt.Sprintf("dying_%d_%s", i, leg)
			b := map[string]any{"name": name, "cluster": cluster, "max_connections": 4, "queue_timeout": "2s"}
			if leg == "module" {
				b["backend_leg"] = "MODULE"
				b["backend_addresses"] = []string{fmt.Sprintf("127.0.0.1:%d", port)}
			}
			buckets = append(buckets, b)
			clusters = append(clusters, envoyconfig.Bucket{Cluster: cluster, Port: port})
			routes = append(routes, map[string]any{"database": name, "bucket": name})
			bareCloseOK[name] = leg == "tcp" && (d.reset || d.afterPrelogin)
		}
	}
	cfg := map[string]any{
		"listener":       map[string]any{"encryption": "OFF_ALLOWED"},
		"buckets":        buckets,
		"routes":         routes,
		"default_bucket": buckets[0]["name"],
		"timeouts":       map[string]any{"login_timeout": fmt.Sprintf("%gs", loginTimeout.Seconds())},
	}
	js, _ := json.Marshal(cfg)
	listen, _ := stack.FreePort()
	admin, _ := stack.FreePort()
	yaml, err := envoyconfig.Render(envoyconfig.Params{ListenerPort: listen, AdminPort: admin, FilterConfigJSON: string(js),
		Buckets: clusters})
	if err != nil {
		t.Fatal(err)
	}
	e, err := stack.StartEnvoy(stack.EnvoyOptions{Config: yaml, AdminPort: admin, ComponentLogLevel: envoyLogLevels})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		e.Stop()
		if t.Failed() {
			t.Logf("envoy output (tail):\n%s", tail(e.Output(), 80))
		}
	})
	addr := fmt.Sprintf("127.0.0.1:%d", listen)
	for _, b := range buckets {
		name := b["name"].(string)
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			start := time.Now()
			number, err := loginErrorNumber(addr, name)
			took := time.Since(start)
			if bareCloseOK[name] && err != nil {
				t.Logf("closed without an ERROR after %s, as tcp_proxy does: %v", took.Round(time.Millisecond), err)
			} else if err != nil || number != 40613 {
				t.Errorf("after %s the client got error %d (%v), want ERROR 40613", took.Round(time.Millisecond), number, err)
			}
			// Seen when the socket closed, not at login_timeout; the bound is loose for a busy machine.
			if took > loginTimeout/2 {
				t.Errorf("answered after %s (login_timeout %s): the closed backend was not noticed", took.Round(time.Millisecond), loginTimeout)
			}
		})
	}
}

// loginErrorNumber logs in to database through addr and returns the number of the first
// ERROR token of the login's answer (0 if it had none).
func loginErrorNumber(addr, database string) (int32, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	rc := &rawConn{c: c}
	if err := rc.send(tds.PacketPrelogin, preloginBytes()); err != nil {
		return 0, err
	}
	if err := rc.preloginReply(); err != nil {
		return 0, fmt.Errorf("PRELOGIN reply: %w", err)
	}
	if err := rc.send(tds.PacketLogin7, login7Bytes(demoUser, demoPassword, database)); err != nil {
		return 0, err
	}
	evs, err := rc.reply()
	for _, ev := range evs {
		if ev.Token == tds.TokenError {
			return ev.Message.Number, nil
		}
	}
	if err == nil {
		err = fmt.Errorf("login answered without an ERROR: %v", evs)
	}
	return 0, fmt.Errorf("login reply: %w", err)
}
