package soak

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tdspool/tdspool/tds"
)

// loginTrace is when one driver session's PRELOGIN and LOGIN7 went out and when the first
// bytes of each answer came back, read off its socket: a login that gets no answer says
// which wait it was stuck in (the PRELOGIN, which the filter answers itself, or the LOGIN7,
// which waits for a slot and the backend), and from which client address, so its Envoy
// connection can be found in the debug log.
type loginTrace struct {
	mu                                                     sync.Mutex
	start, dialed                                          time.Time
	local                                                  string
	preloginSent, preloginAnswered, loginSent, loginAnswer time.Time
}

type traceKey struct{}

// withTrace returns ctx carrying a new trace that tracingDialer fills in.
func withTrace(ctx context.Context) (context.Context, *loginTrace) {
	tr := &loginTrace{start: time.Now()}
	return context.WithValue(ctx, traceKey{}, tr), tr
}

// waits are the PRELOGIN and LOGIN7 answer waits; a wait still open counts up to now.
func (tr *loginTrace) waits() (prelogin, login time.Duration) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	wait := func(sent, answered time.Time) time.Duration {
		switch {
		case sent.IsZero():
			return 0
		case answered.IsZero():
			return time.Since(sent)
		}
		return answered.Sub(sent)
	}
	return wait(tr.preloginSent, tr.preloginAnswered), wait(tr.loginSent, tr.loginAnswer)
}

// String is the session's login timeline, relative to its start.
func (tr *loginTrace) String() string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	at := func(t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		return "+" + t.Sub(tr.start).Round(time.Millisecond).String()
	}
	return fmt.Sprintf("client %s: dialed %s, PRELOGIN sent %s answered %s, LOGIN7 sent %s answered %s",
		tr.local, at(tr.dialed), at(tr.preloginSent), at(tr.preloginAnswered), at(tr.loginSent), at(tr.loginAnswer))
}

// tracingDialer is go-mssqldb's dialer, with the connection of a traced context wrapped.
type tracingDialer struct{ d net.Dialer }

func (td *tracingDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := td.d.DialContext(ctx, network, addr)
	tr, _ := ctx.Value(traceKey{}).(*loginTrace)
	if err != nil || tr == nil {
		return c, err
	}
	tr.mu.Lock()
	tr.dialed, tr.local = time.Now(), c.LocalAddr().String()
	tr.mu.Unlock()
	return &tracedConn{Conn: c, tr: tr}, nil
}

// tracedConn stamps the trace: go-mssqldb writes each packet with one Write (the soak's
// clients do not encrypt), so a write's first byte is its packet type.
type tracedConn struct {
	net.Conn
	tr   *loginTrace
	last tds.PacketType
}

func (c *tracedConn) Write(b []byte) (int, error) {
	if len(b) > 0 {
		c.last = tds.PacketType(b[0])
		c.tr.mu.Lock()
		switch {
		case c.last == tds.PacketPrelogin && c.tr.preloginSent.IsZero():
			c.tr.preloginSent = time.Now()
		case c.last == tds.PacketLogin7 && c.tr.loginSent.IsZero():
			c.tr.loginSent = time.Now()
		}
		c.tr.mu.Unlock()
	}
	return c.Conn.Write(b)
}

func (c *tracedConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 {
		c.tr.mu.Lock()
		switch {
		case c.last == tds.PacketPrelogin && c.tr.preloginAnswered.IsZero():
			c.tr.preloginAnswered = time.Now()
		case c.last == tds.PacketLogin7 && c.tr.loginAnswer.IsZero():
			c.tr.loginAnswer = time.Now()
		}
		c.tr.mu.Unlock()
	}
	return n, err
}

// envoyLogLevels: the debug components that tie a client address to Envoy's connection id
// ("[C12] new connection from …") and follow that connection through the filter, tcp_proxy
// and the module, without the rest of Envoy's debug output.
const envoyLogLevels = "conn_handler:debug,connection:debug,filter:debug,dynamic_modules:debug"

// saveLogs writes each Envoy's whole output to a kept directory (TDSPOOL_SOAK_LOGS, else
// the system temp dir) and returns the lines of the connections whose client addresses are
// given, so a failed run shows what Envoy did with the sessions that failed.
func saveLogs(outputs map[string]string, clients []string) (dir string, excerpts string, err error) {
	dir = os.Getenv("TDSPOOL_SOAK_LOGS")
	if dir == "" {
		dir = os.TempDir()
	}
	if dir, err = os.MkdirTemp(dir, "tdspool-soak-"+time.Now().Format("150405")+"-"); err != nil {
		return "", "", err
	}
	var b strings.Builder
	for id, out := range outputs {
		if err := os.WriteFile(filepath.Join(dir, id+".log"), []byte(out), 0o644); err != nil {
			return dir, "", err
		}
		lines := strings.Split(out, "\n")
		for _, client := range clients {
			cid := ""
			for _, l := range lines {
				if strings.Contains(l, "new connection from "+client) {
					if i := strings.Index(l, "[C"); i >= 0 {
						if j := strings.Index(l[i:], "]"); j > 0 {
							cid = l[i : i+j+1]
						}
					}
				}
			}
			if cid == "" {
				continue
			}
			fmt.Fprintf(&b, "--- %s, client %s = %s\n", id, client, cid)
			for _, l := range lines {
				if strings.Contains(l, cid+" ") {
					b.WriteString(l + "\n")
				}
			}
		}
	}
	return dir, b.String(), nil
}

func TestChaosSpanLabelsByStartAndExcusesAKillInBetween(t *testing.T) {
	var l chaosLog
	for _, c := range []chaosState{{"steady", false}, {"redis restarted empty", false}, {"backend killed", true}, {"steady after", false}} {
		l.set(c)
	}
	for _, tc := range []struct {
		from, to              int
		label                 string
		broken, startedInKill bool
	}{
		{0, 0, "steady", false, false},
		{1, 1, "redis restarted empty", false, false},
		{1, 3, "redis restarted empty (spanning backend killed)", true, false},
		{2, 3, "backend killed", true, true},
		{3, 3, "steady after", false, false},
	} {
		label, broken, started := l.span(tc.from, tc.to)
		if label != tc.label || broken != tc.broken || started != tc.startedInKill {
			t.Errorf("span(%d, %d) = %q, %v, %v; want %q, %v, %v", tc.from, tc.to, label, broken, started, tc.label, tc.broken, tc.startedInKill)
		}
	}
}

func TestSaveLogsKeepsEverythingAndPicksTheFailedConnections(t *testing.T) {
	t.Setenv("TDSPOOL_SOAK_LOGS", t.TempDir())
	out := "[t][debug][conn_handler] [C7] new connection from 127.0.0.1:5000\n" +
		"[t][debug][conn_handler] [C70] new connection from 127.0.0.1:5001\n" +
		"[t][info][dynamic_modules] [C7] closing: login not complete\n" +
		"[t][info][dynamic_modules] [C70] closing: other\n"
	dir, excerpts, err := saveLogs(map[string]string{"e1": out}, []string{"127.0.0.1:5000"})
	if err != nil {
		t.Fatal(err)
	}
	if kept, err := os.ReadFile(filepath.Join(dir, "e1.log")); err != nil || string(kept) != out {
		t.Errorf("kept log %q, %v", kept, err)
	}
	if !strings.Contains(excerpts, "[C7] closing: login not complete") || strings.Contains(excerpts, "C70") {
		t.Errorf("excerpts:\n%s", excerpts)
	}
}
