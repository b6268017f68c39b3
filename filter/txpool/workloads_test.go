package txpool_test

import (
	"context"
	"errors"
	"io"
	"net"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tdspool/tdspool/filter/txpool"
	"github.com/tdspool/tdspool/internal/tcprelay"
	"github.com/tdspool/tdspool/standin"
	"github.com/tdspool/tdspool/standin/compat"
	"github.com/tdspool/tdspool/standin/standintest"
	"github.com/tdspool/tdspool/tds"
)

// Which real workloads could move between backends, and never at the wrong moment: the
// compatibility workloads of go-mssqldb, python-tds and pymssql (FreeTDS) run through a relay
// that follows each connection with a Binding, as the filter would. The oracle is the
// server's own DONE status: a response after which the binding lets the backend go must not
// end inside a transaction (DONE_INXACT).

type followed struct {
	mu        sync.Mutex
	req       tds.Reassembler
	resp      tds.ResponseScanner
	loggedIn  bool
	state     txpool.State
	binding   *txpool.Binding
	lastInTx  bool // the last DONE of the current response said "in transaction"
	requests  int
	releases  int
	pinsSeen  map[string]string
	wrongFree []string // releases the server contradicts
	err       error
}

func (f *followed) fromClient(p []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.req.Feed(p)
	for {
		m, err := f.req.Next()
		if err != nil {
			if !errors.Is(err, tds.ErrShortBuffer) && f.err == nil {
				f.err = err
			}
			return
		}
		switch m.Type {
		case tds.PacketLogin7:
			f.loggedIn = true
		case tds.PacketSQLBatch, tds.PacketRPC, tds.PacketTransMgr, tds.PacketBulkLoad:
			facts, _ := tds.ClassifyRequest(&m)
			batch := ""
			if m.Type == tds.PacketSQLBatch {
				if q, err := tds.DecodeSQLBatch(m.Payload); err == nil {
					batch = q.Text
				}
			}
			if f.binding == nil {
				f.binding = txpool.NewBinding(f.state)
			}
			f.requests++
			if f.binding.Request(time.Now(), &facts, batch, time.Second) == txpool.Borrow {
				f.binding.Borrowed(f.binding.Backend)
			}
			f.notePins(facts.String())
		case tds.PacketAttention:
			if f.binding != nil {
				f.binding.Attention()
			}
		}
	}
}

// notePins remembers, per pin reason, what first set it (request facts name procedures and
// options, never query text).
func (f *followed) notePins(cause string) {
	if p := f.binding.Pins(); p != "" {
		for _, name := range strings.Split(p, ",") {
			if _, ok := f.pinsSeen[name]; !ok {
				f.pinsSeen[name] = cause
			}
		}
	}
}

func (f *followed) fromServer(p []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.loggedIn || f.err != nil {
		return
	}
	events, err := f.resp.Feed(p)
	if err != nil {
		f.err = err
	}
	for i := range events {
		ev := &events[i]
		switch ev.Token {
		case tds.TokenEnvChange:
			if f.binding == nil {
				f.state.ApplyEnvChange(&ev.EnvChange)
			}
		case tds.TokenDone, tds.TokenDoneProc:
			f.lastInTx = ev.Done.Status&tds.DoneInXact != 0
		}
		if f.binding == nil {
			continue
		}
		if f.binding.ServerEvent(ev) == txpool.Release {
			f.releases++
			if f.lastInTx {
				f.wrongFree = append(f.wrongFree, "released after a DONE_INXACT")
			}
		}
		f.notePins(ev.String())
	}
}

// relay accepts clients and follows each connection to the backend at addr.
type relay struct {
	ln   net.Listener
	addr string
	mu   sync.Mutex
	conn []*followed
}

func startRelay(t *testing.T, backend string) *relay {
	t.Helper()
	r := &relay{addr: backend}
	r.ln = tcprelay.Listen(t, r.serve)
	return r
}

func (r *relay) serve(c net.Conn) {
	defer c.Close()
	b, err := net.Dial("tcp", r.addr)
	if err != nil {
		return
	}
	defer b.Close()
	f := &followed{pinsSeen: map[string]string{}}
	f.resp.MaxPacketSize = tds.MaxPacketSize
	r.mu.Lock()
	r.conn = append(r.conn, f)
	r.mu.Unlock()
	copyFollowing := func(dst, src net.Conn, follow func([]byte)) {
		buf := make([]byte, 64<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				follow(buf[:n])
				if _, werr := dst.Write(buf[:n]); werr != nil {
					break
				}
			}
			if err != nil {
				break
			}
		}
		_ = dst.(*net.TCPConn).CloseWrite()
	}
	done := make(chan struct{})
	go func() { copyFollowing(b, c, f.fromClient); close(done) }()
	copyFollowing(c, b, f.fromServer)
	<-done
}

func (r *relay) port() int { return r.ln.Addr().(*net.TCPAddr).Port }

// TestWhichWorkloadsPin runs each driver's compatibility workload (plaintext) through the
// following relay. It fails if the stream cannot be followed or the binding would let a
// backend go while the server reports an open transaction; it logs, per driver, how many
// requests ran, how often the backend could have moved and which pins held it.
func TestWhichWorkloadsPin(t *testing.T) {
	srv := standintest.Start(t, standin.Config{
		ServerName: "workloads",
		Users:      map[string]string{"demo": "Demo-Passw0rd"},
		Databases:  []string{"tenant_a"},
		DataDir:    t.TempDir(),
		Encryption: standin.EncryptionOptional,
	})
	python := compat.FindPython()
	for _, drv := range []struct {
		name, module string
		run          func(context.Context, compat.Target) error
	}{
		{"go-mssqldb", "", func(ctx context.Context, tg compat.Target) error { return compat.RunGo(ctx, tg, "disable", nil) }},
		{"python-tds", "pytds", func(ctx context.Context, tg compat.Target) error {
			_, err := compat.RunPytds(ctx, python, tg, "off")
			return err
		}},
		{"pymssql", "pymssql", func(ctx context.Context, tg compat.Target) error {
			_, err := compat.RunPymssql(ctx, python, tg, "off")
			return err
		}},
	} {
		t.Run(drv.name, func(t *testing.T) {
			if drv.module != "" && (python == "" || !compat.HasPythonModule(python, drv.module)) {
				t.Skipf("%s not installed (make setup)", drv.name)
			}
			r := startRelay(t, srv.Addr())
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			tg := compat.Target{Host: "127.0.0.1", Port: r.port(), User: "demo", Password: "Demo-Passw0rd", Database: "tenant_a"}
			if err := drv.run(ctx, tg); err != nil {
				t.Fatalf("workload: %v", err)
			}
			time.Sleep(50 * time.Millisecond) // the relay's last reads
			r.mu.Lock()
			defer r.mu.Unlock()
			var requests, releases int
			pins := map[string]string{}
			for _, f := range r.conn {
				f.mu.Lock()
				if f.err != nil && !errors.Is(f.err, io.EOF) {
					t.Errorf("stream not followed: %v", f.err)
				}
				for _, w := range f.wrongFree {
					t.Errorf("%s", w)
				}
				requests += f.requests
				releases += f.releases
				for p, cause := range f.pinsSeen {
					if _, ok := pins[p]; !ok {
						pins[p] = cause
					}
				}
				f.mu.Unlock()
			}
			if requests == 0 || releases == 0 {
				t.Fatalf("%d requests, %d releases: nothing followed", requests, releases)
			}
			var names []string
			for p, cause := range pins {
				names = append(names, p+" ("+cause+")")
			}
			sort.Strings(names)
			t.Logf("%s: %d connections, %d requests, %d points where the backend could move; pins seen, each with what first set it: %s",
				drv.name, len(r.conn), requests, releases, strings.Join(names, "; "))
		})
	}
}
