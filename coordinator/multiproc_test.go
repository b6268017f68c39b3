package coordinator

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tdspool/tdspool/internal/redistest"
)

// The multi-process tests run N proxysim processes (each a Coordinator with
// M clients) against one real redis-server, with an oracle that counts slots
// from the clients' side. COORD_SOAK=1 runs longer variants.

func soak() bool { return os.Getenv("COORD_SOAK") != "" }

var (
	simOnce sync.Once
	simBin  string
	simErr  error
)

func buildSim(t *testing.T) string {
	t.Helper()
	simOnce.Do(func() {
		goBin, err := exec.LookPath("go")
		if err != nil {
			simErr = err
			return
		}
		dir, err := os.MkdirTemp("", "proxysim")
		if err != nil {
			simErr = err
			return
		}
		simBin = filepath.Join(dir, "proxysim")
		out, err := exec.Command(goBin, "build", "-o", simBin, "github.com/tdspool/tdspool/coordinator/internal/proxysim").CombinedOutput()
		if err != nil {
			simErr = fmt.Errorf("build proxysim: %v\n%s", err, out)
		}
	})
	if simErr != nil {
		t.Fatal(simErr)
	}
	return simBin
}

// oracle counts concurrently held slots as the clients report them.
type oracle struct {
	ln     net.Listener
	mu     sync.Mutex
	cur    int
	peak   int
	grants []oracleGrant
}

type oracleGrant struct {
	proxy       string
	ticket, seq int64
	fallback    bool
}

func startOracle(t *testing.T) *oracle {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	o := &oracle{ln: ln}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go o.serve(c)
		}
	}()
	return o
}

func (o *oracle) serve(c net.Conn) {
	defer c.Close()
	rd := bufio.NewReader(c)
	line, err := rd.ReadString('\n')
	if err != nil {
		return
	}
	f := strings.Fields(line)
	if len(f) != 4 {
		return
	}
	g := oracleGrant{proxy: f[0], fallback: f[3] == "true"}
	g.ticket, _ = strconv.ParseInt(f[1], 10, 64)
	g.seq, _ = strconv.ParseInt(f[2], 10, 64)
	o.mu.Lock()
	o.cur++
	o.peak = max(o.peak, o.cur)
	o.grants = append(o.grants, g)
	o.mu.Unlock()
	_, err = rd.ReadString('\n') // "R" before release, or EOF when killed
	o.mu.Lock()
	o.cur--
	o.mu.Unlock()
	if err == nil {
		c.Write([]byte("ok\n"))
	}
}

func (o *oracle) stats() (peak int, grants []oracleGrant) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.peak, append([]oracleGrant(nil), o.grants...)
}

// inversions counts pairs of queued grants served against ticket order.
func inversions(gs []oracleGrant) (inv, n int) {
	var q []oracleGrant
	for _, g := range gs {
		if g.ticket > 0 && g.seq > 0 && !g.fallback {
			q = append(q, g)
		}
	}
	sort.Slice(q, func(i, j int) bool { return q[i].seq < q[j].seq })
	for i := range q {
		for j := i + 1; j < len(q); j++ {
			if q[j].ticket < q[i].ticket {
				inv++
			}
		}
	}
	return inv, len(q)
}

type simProc struct {
	cmd   *exec.Cmd
	id    string
	out   *bufio.Reader
	stats struct {
		ProxyID        string `json:"proxy_id"`
		Granted        int64  `json:"granted"`
		Released       int64  `json:"released"`
		FallbackGrants int64  `json:"fallback_grants"`
		TimedOut       int64  `json:"timed_out"`
		QueueFull      int64  `json:"queue_full"`
		Abandoned      int64  `json:"abandoned"`
		Refused        int64  `json:"refused"`
		MaxLateMs      int64  `json:"max_late_ms"`
		MaxShare       int64  `json:"max_share"`
		FallbackSeen   bool   `json:"fallback_seen"`
		GraceSeen      bool   `json:"grace_seen"`
		MaxWaitMs      int64  `json:"max_wait_ms"`
		SumWaitMs      int64  `json:"sum_wait_ms"`
	}
}

func startSim(t *testing.T, bin string, args ...string) *simProc {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &simProc{cmd: cmd, out: bufio.NewReader(stdout)}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, err := p.out.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "READY ") {
		t.Fatalf("proxysim: %q %v", line, err)
	}
	p.id = strings.TrimSpace(strings.TrimPrefix(line, "READY "))
	return p
}

// stop ends the process with SIGTERM and reads its counters.
func (p *simProc) stop(t *testing.T) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	type res struct {
		line string
		err  error
	}
	ch := make(chan res, 1)
	go func() { l, err := p.out.ReadString('\n'); ch <- res{l, err} }()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("proxysim %s: %v", p.id, r.err)
		}
		if err := json.Unmarshal([]byte(r.line), &p.stats); err != nil {
			t.Fatalf("proxysim %s: %v in %q", p.id, err, r.line)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("proxysim %s did not stop", p.id)
	}
	_ = p.cmd.Wait()
}

// sampler polls ZCARD of the holders set and keeps the maximum.
type sampler struct {
	mu   sync.Mutex
	peak int64
	stop chan struct{}
	done chan struct{}
}

func sampleHolders(srv *redistest.Server, key string) *sampler {
	s := &sampler{stop: make(chan struct{}), done: make(chan struct{})}
	rdb := srv.Client()
	go func() {
		defer close(s.done)
		for {
			select {
			case <-s.stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			n, err := rdb.ZCard(ctx, key).Result()
			cancel()
			if err == nil {
				s.mu.Lock()
				s.peak = max(s.peak, n)
				s.mu.Unlock()
			}
		}
	}()
	return s
}

func (s *sampler) end() int64 {
	close(s.stop)
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peak
}

const simCap = 8

// simKeys are the bucket keys proxysim uses (prefix "sim", bucket "b1").
var simKeys = Config{Prefix: "sim"}.keys("b1")

type scenario struct {
	procs, clients int
	timing         []string
}

var fastTiming = []string{"-lease=3s", "-heartbeat=250ms", "-waiter-ttl=2s", "-grace=1s", "-silence-gap=1s", "-queue-timeout=3s"}

func (sc scenario) start(t *testing.T, srv *redistest.Server, o *oracle, extra ...string) []*simProc {
	bin := buildSim(t)
	// An established bucket: no first-use grace.
	if err := srv.Client().HSet(context.Background(), simKeys[5], "epoch", "1").Err(); err != nil {
		t.Fatal(err)
	}
	var ps []*simProc
	for i := 0; i < sc.procs; i++ {
		args := append([]string{"-redis=" + srv.Addr, "-oracle=" + o.ln.Addr().String(),
			fmt.Sprintf("-cap=%d", simCap), fmt.Sprintf("-clients=%d", sc.clients), "-abandon=0.1"}, sc.timing...)
		ps = append(ps, startSim(t, bin, append(args, extra...)...))
	}
	return ps
}

// finish stops the processes and checks the invariants every scenario
// shares: every grant released, every wait decided by queue_timeout + 1s,
// nothing left in Redis at quiescence.
func finish(t *testing.T, srv *redistest.Server, ps []*simProc, within time.Duration) (granted, shares int64) {
	for _, p := range ps {
		if p.cmd.ProcessState != nil {
			continue // killed
		}
		p.stop(t)
		s := p.stats
		if s.Granted != s.Released {
			t.Errorf("proxy %s: granted %d, released %d", p.id, s.Granted, s.Released)
		}
		if s.MaxLateMs > 1000 {
			t.Errorf("proxy %s: a decision came %d ms after its deadline", p.id, s.MaxLateMs)
		}
		granted += s.Granted
		shares += s.MaxShare
		t.Logf("proxy %s: %+v", p.id, s)
	}
	rdb := srv.Client()
	deadline := time.Now().Add(within)
	for {
		h, _ := rdb.ZCard(context.Background(), simKeys[0]).Result()
		q, _ := rdb.ZCard(context.Background(), simKeys[1]).Result()
		if h == 0 && q == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("at quiescence: %d leases, %d waiters remain", h, q)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return granted, shares
}

func TestMultiProcessSteady(t *testing.T) {
	srv := redistest.Start(t)
	o := startOracle(t)
	sc := scenario{procs: 3, clients: 20, timing: fastTiming}
	run := 4 * time.Second
	if soak() {
		sc.procs, sc.clients, run = 5, 40, 60*time.Second
	}
	ps := sc.start(t, srv, o)
	smp := sampleHolders(srv, simKeys[0])
	time.Sleep(run)
	zpeak := smp.end()
	granted, _ := finish(t, srv, ps, time.Second)
	peak, gs := o.stats()
	inv, queued := inversions(gs)
	t.Logf("MULTIPROC steady: procs=%d clients=%d cap=%d grants=%d oracle_peak=%d zcard_peak=%d inversions=%d/%d queued grants",
		sc.procs, sc.clients, simCap, granted, peak, zpeak, inv, queued)
	if peak > simCap || zpeak > simCap {
		t.Errorf("cap %d exceeded: oracle peak %d, ZCARD peak %d", simCap, peak, zpeak)
	}
	if inv != 0 {
		t.Errorf("%d FIFO inversions among %d queued grants", inv, queued)
	}
	if queued == 0 || granted < 50 {
		t.Errorf("too little traffic to judge: %d grants, %d queued", granted, queued)
	}
}

// TestMultiProcessKillProxyReclaim SIGKILLs one of three proxies while its
// clients hold slots and wait in the queue, with the filter's default timings
// (lease 8s, heartbeat 2s, waiter TTL 6s, call timeout 250ms). The dead
// proxy's leases must come back within lease + heartbeat + 1s, and slots freed
// after its death must not be parked on its dead waiters: a grant to the dead
// proxy may happen only within the claim window after its last call, and
// lives only for the claim window.
func TestMultiProcessKillProxyReclaim(t *testing.T) {
	srv := redistest.Start(t)
	o := startOracle(t)
	const (
		lease, heartbeat, callTimeout = 8 * time.Second, 2 * time.Second, 250 * time.Millisecond
		claim                         = heartbeat + 2*callTimeout // the coordinator's default
	)
	sc := scenario{procs: 3, clients: 10, timing: []string{"-lease=8s", "-heartbeat=2s", "-waiter-ttl=6s",
		"-call-timeout=250ms", "-queue-timeout=8s", "-hold-min=50ms", "-hold-max=300ms"}}
	ps := sc.start(t, srv, o)
	smp := sampleHolders(srv, simKeys[0])
	rdb := srv.Client()
	victim := ps[0]
	victimIDs := func() []string {
		ids, _ := rdb.ZRange(context.Background(), simKeys[0], 0, -1).Result()
		var mine []string
		for _, id := range ids {
			if strings.HasPrefix(id, victim.id+":") {
				mine = append(mine, id)
			}
		}
		return mine
	}
	queuedVictims := func() int {
		ids, _ := rdb.ZRange(context.Background(), simKeys[1], 0, -1).Result()
		n := 0
		for _, id := range ids {
			if strings.HasPrefix(id, victim.id+":") {
				n++
			}
		}
		return n
	}
	time.Sleep(3 * time.Second) // every proxy churning
	eventually(t, 15*time.Second, "victim holds slots and waits in the queue", func() bool {
		return len(victimIDs()) >= 2 && queuedVictims() >= 2
	})
	atKill := map[string]bool{}
	for _, id := range victimIDs() {
		atKill[id] = true
	}
	_ = victim.cmd.Process.Kill()
	killed := time.Now()
	_ = victim.cmd.Wait()

	// Watch the holders: every victim lease granted after the kill, when it
	// appeared and when it went.
	type span struct{ first, last time.Duration }
	late := map[string]*span{}
	var reclaim time.Duration
	for deadline := killed.Add(lease + heartbeat + 5*time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		ids := victimIDs()
		at := time.Since(killed)
		for _, id := range ids {
			if atKill[id] {
				continue
			}
			if late[id] == nil {
				late[id] = &span{first: at}
			}
			late[id].last = at
		}
		if len(ids) == 0 {
			reclaim = at
			break
		}
	}
	zpeak := smp.end()
	granted, _ := finish(t, srv, ps, 12*time.Second)
	peak, _ := o.stats()
	var lastGrant, longest time.Duration
	for _, sp := range late {
		lastGrant = max(lastGrant, sp.first)
		longest = max(longest, sp.last-sp.first)
	}
	t.Logf("MULTIPROC kill: victim held %d slots at SIGKILL; reclaimed %.2fs after it (bound %.0fs); %d grants to the dead after the kill, the last %.2fs after it, the longest kept %.2fs (claim window %.2fs); oracle_peak=%d zcard_peak=%d cap=%d grants=%d",
		len(atKill), reclaim.Seconds(), (lease + heartbeat + time.Second).Seconds(), len(late), lastGrant.Seconds(), longest.Seconds(), claim.Seconds(), peak, zpeak, simCap, granted)
	if reclaim == 0 || reclaim > lease+heartbeat+time.Second {
		t.Errorf("the dead proxy's slots came back after %v (0: not within the watch); want at most lease + heartbeat + 1s", reclaim)
	}
	if lastGrant > claim+time.Second {
		t.Errorf("a slot was granted to the dead proxy %v after its death; want within the claim window %v (+1s)", lastGrant, claim)
	}
	if longest > claim+heartbeat+time.Second {
		t.Errorf("a slot granted to the dead proxy stayed %v; want at most claim window + heartbeat (+1s)", longest)
	}
	if peak > simCap || zpeak > simCap {
		t.Errorf("cap %d exceeded: oracle peak %d, ZCARD peak %d", simCap, peak, zpeak)
	}
}

func TestMultiProcessRedisRestart(t *testing.T) {
	srv := redistest.Start(t)
	o := startOracle(t)
	sc := scenario{procs: 3, clients: 20, timing: fastTiming}
	ps := sc.start(t, srv, o)
	time.Sleep(2 * time.Second)
	srv.Restart() // persistence off: all state lost
	time.Sleep(4 * time.Second)
	granted, shares := finish(t, srv, ps, 4*time.Second)
	peak, _ := o.stats()
	grace := false
	for _, p := range ps {
		grace = grace || p.stats.GraceSeen
	}
	t.Logf("MULTIPROC restart: oracle_peak=%d cap=%d sum_fallback_shares=%d grace_seen=%t grants=%d",
		peak, simCap, shares, grace, granted)
	if peak > simCap+int(shares) {
		t.Errorf("oracle peak %d above cap %d + fallback shares %d", peak, simCap, shares)
	}
}

func TestMultiProcessRedisPaused(t *testing.T) {
	srv := redistest.Start(t)
	o := startOracle(t)
	sc := scenario{procs: 3, clients: 20, timing: fastTiming}
	pause := 5 * time.Second
	if soak() {
		pause = 20 * time.Second
	}
	// Holds long enough that sessions outlive the outage detection (about
	// 2 × CallTimeout), as SQL sessions do.
	ps := sc.start(t, srv, o, "-hold-min=100ms", "-hold-max=1s")
	time.Sleep(2 * time.Second)
	srv.Pause()
	time.Sleep(pause)
	srv.Resume()
	time.Sleep(3 * time.Second)
	granted, shares := finish(t, srv, ps, 4*time.Second)
	peak, _ := o.stats()
	var fbGrants int64
	fb := false
	for _, p := range ps {
		fbGrants += p.stats.FallbackGrants
		fb = fb || p.stats.FallbackSeen
	}
	t.Logf("MULTIPROC pause %v: oracle_peak=%d cap=%d sum_fallback_shares=%d fallback_grants=%d grants=%d",
		pause, peak, simCap, shares, fbGrants, granted)
	if !fb || fbGrants == 0 {
		t.Errorf("no fallback during the pause (fallback seen %t, grants %d)", fb, fbGrants)
	}
	if peak > simCap+int(shares) {
		t.Errorf("oracle peak %d above cap %d + fallback shares %d", peak, simCap, shares)
	}
}
