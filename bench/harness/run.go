package harness

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/tdspool/tdspool/bench/load"
	"github.com/tdspool/tdspool/internal/stack"
)

// Plan is what one run measures.
type Plan struct {
	Name         string
	Only         []string // target names to run (empty: all)
	TLS          bool     // also the TLS targets (direct+full, envoy-tcp+full, tdspool+full, tdspool+strict)
	Rounds       int      // each cell is measured this many times, targets in rotating order
	Warmup       time.Duration
	PingConc     []int
	PingDur      time.Duration
	LoginConc    int
	LoginDur     time.Duration
	LoginDelay   time.Duration // a second backend whose logins cost this (pooled login rows); 0: none
	StreamConc   int
	StreamBytes  int64
	StreamCount  int  // results per session
	StreamTLS    bool // TLS targets in the stream workload too
	IdleSessions []int
	IdleConc     int // parallel logins while opening idle sessions
	IdleTLS      bool
	QueueCap     int
	QueueWorkers int
	QueueHold    time.Duration
	QueueDur     time.Duration
	Perf         bool          // perf record Envoy during extra runs (Profiles)
	PerfDur      time.Duration // length of each of those runs
	Profiles     []ProfileSpec // what to profile (default: DefaultProfiles)
	Workloads    []string      // workloads to measure (empty: all)
	EnvoyEnv     []string      // extra environment for every Envoy (e.g. GOMAXPROCS=4)
	PerfData     bool          // keep perf.data files in Out
	Out          string        // results directory
	InProcess    bool          // run the backend inside this process (tests)
	Progress     io.Writer     `json:"-"`
}

// ProfileSpec is one extra run with `perf record` attached to a target's Envoy process.
type ProfileSpec struct {
	Target   string
	Workload string // ping | login
	Conc     int
}

func (s ProfileSpec) String() string { return fmt.Sprintf("%s %s c=%d", s.Target, s.Workload, s.Conc) }

// DefaultProfiles are the profiles a run takes: the relay on both legs and with TLS in the
// filter, at the load points the gates are about, and the login path.
var DefaultProfiles = []ProfileSpec{
	{"envoy-tcp", "ping", 16}, {"tdspool", "ping", 16}, {"tdspool-module", "ping", 1}, {"tdspool-module", "ping", 16},
	{"envoy-tcp+full", "ping", 16}, {"tdspool+full", "ping", 16}, {"tdspool", "login", 8},
}

// ParseProfiles reads "target:workload:c,…".
func ParseProfiles(s string) ([]ProfileSpec, error) {
	var out []ProfileSpec
	for _, item := range strings.Split(s, ",") {
		f := strings.Split(strings.TrimSpace(item), ":")
		var c int
		if len(f) != 3 || (f[1] != "ping" && f[1] != "login") {
			return nil, fmt.Errorf("profile %q: want target:ping|login:concurrency", item)
		}
		if _, err := fmt.Sscanf(f[2], "%d", &c); err != nil || c <= 0 {
			return nil, fmt.Errorf("profile %q: bad concurrency", item)
		}
		out = append(out, ProfileSpec{f[0], f[1], c})
	}
	return out, nil
}

// QuickPlan is `make bench`: every workload, few points, a few minutes.
func QuickPlan() Plan {
	return Plan{Name: "quick", TLS: true, Rounds: 1, Warmup: 500 * time.Millisecond,
		PingConc: []int{1, 16, 64}, PingDur: 3 * time.Second,
		LoginConc: 8, LoginDur: 3 * time.Second, LoginDelay: 5 * time.Millisecond,
		StreamConc: 1, StreamBytes: 16 << 20, StreamCount: 6,
		IdleSessions: []int{1000}, IdleConc: 32,
		QueueCap: 8, QueueWorkers: 32, QueueHold: 10 * time.Millisecond, QueueDur: 5 * time.Second,
		Perf: true, PerfDur: 5 * time.Second}
}

// FullPlan is `make bench-full`: the complete matrix.
func FullPlan() Plan {
	return Plan{Name: "full", TLS: true, Rounds: 3, Warmup: time.Second,
		PingConc: []int{1, 4, 16, 64, 256}, PingDur: 5 * time.Second,
		LoginConc: 8, LoginDur: 5 * time.Second, LoginDelay: 5 * time.Millisecond,
		StreamConc: 2, StreamBytes: 32 << 20, StreamCount: 8, StreamTLS: true,
		IdleSessions: []int{1000, 5000, 9500}, IdleConc: 64, IdleTLS: true,
		QueueCap: 8, QueueWorkers: 64, QueueHold: 10 * time.Millisecond, QueueDur: 10 * time.Second,
		Perf: true, PerfDur: 10 * time.Second}
}

// SmokePlan is the harness test: seconds.
func SmokePlan() Plan {
	return Plan{Name: "smoke", Rounds: 1, Warmup: 100 * time.Millisecond,
		PingConc: []int{2}, PingDur: 500 * time.Millisecond,
		LoginConc: 2, LoginDur: 500 * time.Millisecond, LoginDelay: 5 * time.Millisecond,
		StreamConc: 1, StreamBytes: 1 << 20, StreamCount: 3,
		IdleSessions: []int{20}, IdleConc: 4,
		QueueCap: 2, QueueWorkers: 6, QueueHold: 5 * time.Millisecond, QueueDur: time.Second}
}

// Cell is one measurement: a workload against a target at one load point.
type Cell struct {
	Workload string
	Target   string
	Group    string // plaintext | tls
	Param    int    // concurrency (ping, login, stream, queue) or sessions (idle)
	Round    int
	Res      load.Result
	// Proxy process CPU time per operation (µs), from /proc; 0 for direct.
	ProxyCPUus float64
	// Context switches of the proxy's threads per operation, from /proc.
	ProxyCtxSw float64
	// CPU time per operation (µs, same window as ProxyCPUus) of the backend process and of
	// this process (the load generator); 0 when unknown (an in-process backend). They show
	// where a shared machine's CPU goes: a proxy's cost is partly paid back by work the
	// backend no longer does (a pooled login).
	BackendCPUus, LoadCPUus float64
	// login: logins the backend saw during the cell, warm-up included (-1: unknown).
	BackendLogins int64
	// Pooled targets: the p99 of Envoy's borrow-wait histogram after the last ping cell
	// (pool_borrow_wait_us; tx_borrow_wait_us in transaction mode; "" if the build has none).
	BorrowWait string
	// idle: resident memory growth of the proxy process per session (KB), and of Envoy's
	// own heap (tcmalloc "allocated", from /memory) per session.
	RSSPerSessionKB  float64
	HeapPerSessionKB float64
	RSSBeforeKB      uint64
	RSSHeldKB        uint64
}

// Report is everything a run produced.
type Report struct {
	Plan     Plan
	Started  time.Time
	Duration time.Duration
	Machine  map[string]string
	Targets  []string
	Cells    []Cell
	Notes    []string
	Profiles map[string]string // target → perf report excerpt
}

// Main is `tdsbench run`.
func Main(args []string) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	mode := fs.String("plan", "quick", "quick | full")
	out := fs.String("out", "bench/results/latest", "results directory")
	only := fs.String("targets", "", "comma-separated target names (default all): direct,haproxy,envoy-tcp,tdspool,tdspool-module,direct+full,envoy-tcp+full,tdspool+full,tdspool+strict,tdspool-module+full,tdspool-module+strict,tdspool-tcp8+strict,tdspool-module-via-envoy")
	noPerf := fs.Bool("no-perf", false, "skip the perf profile")
	rounds := fs.Int("rounds", 0, "override the plan's rounds")
	render := fs.String("render", "", "only re-render results.md and the charts from DIR/results.json")
	workloads := fs.String("workloads", "", "comma-separated workloads to measure (default all): ping,login,stream,queue,idle")
	pingConc := fs.String("ping-conc", "", "comma-separated ping concurrencies (default: the plan's)")
	loginConc := fs.Int("login-conc", 0, "login workers (default: the plan's, 8)")
	envoyEnv := fs.String("envoy-env", "", "comma-separated VAR=value for every Envoy (and its Go module)")
	perfData := fs.Bool("perf-data", false, "keep the perf.data files in the results directory")
	profiles := fs.String("profile", "", "perf profiles to take, target:ping|login:c,… (default: "+profileList(DefaultProfiles)+")")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *render != "" {
		b, err := os.ReadFile(filepath.Join(*render, "results.json"))
		if err != nil {
			return err
		}
		var rep Report
		if err := json.Unmarshal(b, &rep); err != nil {
			return err
		}
		return Write(&rep, *render)
	}
	var p Plan
	switch *mode {
	case "quick":
		p = QuickPlan()
	case "full":
		p = FullPlan()
	case "smoke":
		p = SmokePlan()
	default:
		return fmt.Errorf("unknown plan %q", *mode)
	}
	if *only != "" {
		p.Only = strings.Split(*only, ",")
	}
	if *noPerf {
		p.Perf = false
	}
	if *envoyEnv != "" {
		p.EnvoyEnv = strings.Split(*envoyEnv, ",")
	}
	p.PerfData = *perfData
	if *workloads != "" {
		p.Workloads = strings.Split(*workloads, ",")
	}
	if *loginConc > 0 {
		p.LoginConc = *loginConc
	}
	if *pingConc != "" {
		p.PingConc = nil
		for _, f := range strings.Split(*pingConc, ",") {
			var c int
			if _, err := fmt.Sscanf(f, "%d", &c); err != nil || c <= 0 {
				return fmt.Errorf("-ping-conc %q: bad concurrency", f)
			}
			p.PingConc = append(p.PingConc, c)
		}
	}
	if *profiles != "" {
		ps, err := ParseProfiles(*profiles)
		if err != nil {
			return err
		}
		p.Profiles, p.Perf = ps, true
	}
	if *rounds > 0 {
		p.Rounds = *rounds
	}
	p.Out = *out
	p.Progress = os.Stderr
	rep, err := Run(p)
	if rep != nil {
		if werr := Write(rep, p.Out); werr != nil && err == nil {
			err = werr
		}
		fmt.Fprintf(os.Stderr, "results: %s/results.md\n", p.Out)
	}
	return err
}

func (p *Plan) logf(format string, args ...any) {
	if p.Progress != nil {
		fmt.Fprintf(p.Progress, format+"\n", args...)
	}
}

func (p *Plan) wants(name string) bool {
	return len(p.Only) == 0 || slices.Contains(p.Only, name)
}

func (p *Plan) measures(workload string) bool {
	return len(p.Workloads) == 0 || slices.Contains(p.Workloads, workload)
}

func profileList(ps []ProfileSpec) string {
	var s []string
	for _, p := range ps {
		s = append(s, fmt.Sprintf("%s:%s:%d", p.Target, p.Workload, p.Conc))
	}
	return strings.Join(s, ",")
}

// Run starts the targets, measures the plan and stops everything.
func Run(p Plan) (*Report, error) {
	if p.Rounds <= 0 {
		p.Rounds = 1
	}
	rep := &Report{Plan: p, Started: time.Now(), Machine: machine(), Profiles: map[string]string{}}
	rep.Machine["load average at start"] = loadavg()
	defer func() {
		rep.Duration = time.Since(rep.Started)
		rep.Machine["load average at end"] = loadavg()
	}()
	p.logf("== tdspool bench (%s plan)", p.Name)
	e, err := newEnv(p.InProcess, p.Progress)
	if err != nil {
		return nil, err
	}
	e.envoyEnv = p.EnvoyEnv
	if len(p.EnvoyEnv) > 0 {
		rep.Machine["envoy environment"] = strings.Join(p.EnvoyEnv, " ")
	}
	defer e.close()
	p.logf("backend %s", e.backend)

	var targets []*Target
	add := func(t *Target) {
		if p.wants(t.Name) {
			targets = append(targets, t)
		}
	}
	add(e.direct(load.TLSDisable))
	var hap *Target
	if p.wants("haproxy") {
		if hap, err = e.haproxy(p.QueueCap); err != nil {
			rep.Notes = append(rep.Notes, "haproxy skipped: "+err.Error())
			p.logf("haproxy skipped: %v", err)
		} else {
			add(hap)
		}
	}
	tcp, err := e.envoyTCP()
	if err != nil {
		return rep, fmt.Errorf("envoy tcp_proxy: %w", err)
	}
	add(tcp)
	tp, err := e.tdspool(p.QueueCap, "OFF_ALLOWED")
	if err != nil {
		return rep, fmt.Errorf("envoy tdspool: %w", err)
	}
	add(tp)
	if p.TLS {
		add(e.direct(load.TLSFull))
		v := *tcp
		v.Name, v.TLS = "envoy-tcp+full", load.TLSFull
		add(&v)
		f := *tp
		f.Name, f.TLS = "tdspool+full", load.TLSFull
		add(&f)
		s := *tp
		s.Name, s.TLS = "tdspool+strict", load.TLSStrict
		add(&s)
	}
	// The module-owned backend leg, and TLS on both legs (client and backend).
	for _, m := range []struct {
		name string
		tls  string
		leg  backendLeg
	}{
		{"tdspool-module", load.TLSDisable, backendLeg{module: true}},
		{"tdspool-module+full", load.TLSFull, backendLeg{module: true, enc: "TDS7_FULL"}},
		{"tdspool-module+strict", load.TLSStrict, backendLeg{module: true, enc: "TDS8"}},
		{"tdspool-tcp8+strict", load.TLSStrict, backendLeg{enc: "TDS8"}},
		{"tdspool-module-via-envoy", load.TLSDisable, backendLeg{module: true, via: tcp.Addr}},
		{"tdspool-pool", load.TLSDisable, backendLeg{module: true, pool: "SESSION"}},
	} {
		if m.tls != load.TLSDisable && !p.TLS || !p.wants(m.name) {
			continue
		}
		t, err := e.tdspoolLeg(p.QueueCap, "OFF_ALLOWED", m.leg)
		if err != nil {
			return rep, fmt.Errorf("%s: %w", m.name, err)
		}
		t.Name, t.TLS = m.name, m.tls
		add(t)
	}
	// Transaction pooling (issue 14): a backend is held only from a request to the end of its
	// transaction. Builds that refuse pool.mode TRANSACTION skip the row with a note.
	if p.wants("tdspool-txpool") {
		t, err := e.tdspoolLeg(p.QueueCap, "OFF_ALLOWED", backendLeg{module: true, pool: "TRANSACTION"})
		if err != nil {
			rep.Notes = append(rep.Notes, "tdspool-txpool skipped: this build refused pool.mode TRANSACTION ("+firstLine(err.Error())+")")
			p.logf("tdspool-txpool skipped: %v", firstLine(err.Error()))
		} else {
			t.Name = "tdspool-txpool"
			add(t)
		}
	}
	// Pooled logins against a backend whose logins cost p.LoginDelay: direct and through a
	// session pool, login workload only.
	if p.LoginDelay > 0 && (p.wants("direct-slowlogin") || p.wants("tdspool-pool-slowlogin")) && p.measures("login") {
		if e.slow, err = e.startBackend(p.LoginDelay); err != nil {
			return rep, fmt.Errorf("slow-login backend: %w", err)
		}
		add(&Target{Name: "direct-slowlogin", Kind: "direct", TLS: load.TLSDisable, Addr: e.slow.addr, Backend: e.slow, LoginOnly: true})
		if p.wants("tdspool-pool-slowlogin") {
			t, err := e.tdspoolLeg(p.QueueCap, "OFF_ALLOWED", backendLeg{module: true, pool: "SESSION", backend: e.slow})
			if err != nil {
				return rep, fmt.Errorf("tdspool-pool-slowlogin: %w", err)
			}
			t.Name, t.LoginOnly = "tdspool-pool-slowlogin", true
			add(t)
		}
		rep.Notes = append(rep.Notes, fmt.Sprintf("*-slowlogin: a second backend whose every login costs %s (the stand-in's login delay), "+
			"measured in the login workload only; tdspool-pool-slowlogin pools sessions to it", p.LoginDelay))
	}
	rep.Notes = append(rep.Notes, "tdspool-pool: the module leg with session pooling (pool.mode SESSION) on the bucket the load uses; "+
		"backend logins per 1,000 client logins are counted by the backend (warm-up logins included)")
	rep.Notes = append(rep.Notes, "tdspool-module: tdspool's own backend connection (backend_leg MODULE), plaintext; "+
		"tdspool-module+full: TDS 7 full TLS on the client and the backend leg; tdspool-module+strict: TDS 8 on both "+
		"(tdspool's TLS to the backend); tdspool-tcp8+strict: TDS 8 on both, the backend's through the tcp_proxy "+
		"cluster's upstream TLS; tdspool-module-via-envoy: the module leg dialing an Envoy tcp_proxy listener "+
		"(envoy-tcp) instead of the backend")
	for _, t := range targets {
		rep.Targets = append(rep.Targets, t.Name)
		if t.Kind == "tdspool" {
			p.logf("warming %s (slot grace of new buckets)", t.Name)
			if err := warmTdspool(t, t.TLS, e.certFile); err != nil {
				return rep, err
			}
		}
	}
	p.logf("targets: %s", strings.Join(rep.Targets, ", "))

	measure := func(workload string, param int, ts []*Target, run func(t *Target, label string) (load.Result, error)) {
		if !p.measures(workload) {
			return
		}
		if workload != "login" {
			var keep []*Target
			for _, t := range ts {
				if !t.LoginOnly {
					keep = append(keep, t)
				}
			}
			ts = keep
		}
		for round := 0; round < p.Rounds; round++ {
			for i := range ts {
				t := ts[(i+round)%len(ts)] // rotate so no target always runs first
				label := fmt.Sprintf("%s %s c=%d", workload, t.Name, param)
				if p.Rounds > 1 {
					label += fmt.Sprintf(" r%d", round+1)
				}
				be := t.Backend
				if be == nil {
					be = e.main
				}
				loginsBefore := int64(-1)
				if workload == "login" {
					loginsBefore = be.logins()
				}
				bePid := 0
				if be.proc != nil {
					bePid = be.proc.Pid()
				}
				before, _ := readProc(t.Pid)
				beBefore, _ := readProc(bePid)
				selfBefore, _ := readProc(os.Getpid())
				res, err := run(t, label)
				after, _ := readProc(t.Pid)
				beAfter, _ := readProc(bePid)
				selfAfter, _ := readProc(os.Getpid())
				backendLogins := int64(-1)
				if loginsBefore >= 0 {
					if n := be.logins(); n >= 0 {
						backendLogins = n - loginsBefore
					}
				}
				if err != nil {
					p.logf("  %s: %v", label, err)
					res.Errors++
					res.FirstError = err.Error()
				}
				c := Cell{Workload: workload, Target: t.Name, Group: t.Group(), Param: param, Round: round, Res: res, BackendLogins: backendLogins}
				if t.Kind == "tdspool" && strings.Contains(t.Name, "pool") && workload == "ping" && param == p.PingConc[len(p.PingConc)-1] {
					// Envoy computes histogram quantiles at its stats flush (every 5 s).
					time.Sleep(5500 * time.Millisecond)
					hist := "pool_borrow_wait"
					if t.Name == "tdspool-txpool" {
						hist = "tx_borrow_wait"
					}
					c.BorrowWait = envoyHistogramP99(t, hist)
				}
				if res.Ops > 0 {
					// The CPU window includes warm-up; scale by the measured share of the time.
					total := res.Elapsed + p.Warmup
					if workload == "stream" {
						total = res.Elapsed + res.Elapsed/time.Duration(max(1, res.Ops)) // one warm-up result
					}
					share := res.Elapsed.Seconds() / total.Seconds()
					perOp := func(a, b procStat) float64 {
						return float64(b.cpuTicks-a.cpuTicks) / clkTck * 1e6 * share / float64(res.Ops)
					}
					if t.Pid != 0 {
						c.ProxyCPUus = perOp(before, after)
						c.ProxyCtxSw = float64(after.ctxSw-before.ctxSw) * share / float64(res.Ops)
					}
					if bePid != 0 {
						c.BackendCPUus = perOp(beBefore, beAfter)
					}
					if e.inProc == nil {
						c.LoadCPUus = perOp(selfBefore, selfAfter)
					}
				}
				if backendLogins >= 0 {
					p.logf("  %s: %s backend logins=%d", label, oneLine(res), backendLogins)
				} else {
					p.logf("  %s: %s", label, oneLine(res))
				}
				rep.Cells = append(rep.Cells, c)
			}
		}
	}
	cfg := func(t *Target, label string) load.Config {
		return load.Config{Addr: t.Addr, TLS: t.TLS, CAFile: e.certFile, Warmup: p.Warmup, Label: label, Progress: p.Progress}
	}
	plain := func(ts []*Target) []*Target {
		var out []*Target
		for _, t := range ts {
			if t.Group() == "plaintext" {
				out = append(out, t)
			}
		}
		return out
	}

	for _, c := range p.PingConc {
		p.logf("-- ping c=%d", c)
		measure("ping", c, targets, func(t *Target, label string) (load.Result, error) {
			lc := cfg(t, label)
			lc.Concurrency, lc.Duration = c, p.PingDur
			return load.Ping(lc)
		})
	}
	p.logf("-- login c=%d", p.LoginConc)
	measure("login", p.LoginConc, targets, func(t *Target, label string) (load.Result, error) {
		lc := cfg(t, label)
		lc.Concurrency, lc.Duration = p.LoginConc, p.LoginDur
		return load.Login(lc)
	})
	streamTargets := plain(targets)
	if p.StreamTLS {
		streamTargets = targets
	}
	p.logf("-- stream c=%d, %d MB per result", p.StreamConc, p.StreamBytes>>20)
	measure("stream", p.StreamConc, streamTargets, func(t *Target, label string) (load.Result, error) {
		lc := cfg(t, label)
		lc.Concurrency, lc.Count, lc.StreamBytes = p.StreamConc, p.StreamCount, p.StreamBytes
		return load.Stream(lc)
	})

	var queueTargets []*Target
	for _, t := range targets {
		if t.QueueAddr != "" && t.Group() == "plaintext" {
			queueTargets = append(queueTargets, t)
		}
	}
	p.logf("-- queue: %d workers, cap %d, hold %s", p.QueueWorkers, p.QueueCap, p.QueueHold)
	measure("queue", p.QueueWorkers, queueTargets, func(t *Target, label string) (load.Result, error) {
		lc := cfg(t, label)
		lc.Addr, lc.Database = t.QueueAddr, t.QueueDB
		lc.Concurrency, lc.Duration, lc.Hold = p.QueueWorkers, p.QueueDur, p.QueueHold
		return load.Queue(lc)
	})

	if !p.measures("idle") {
	} else if err := idle(&p, e, rep); err != nil {
		p.logf("idle: %v", err)
		rep.Notes = append(rep.Notes, "idle: "+err.Error())
	}

	if p.Perf {
		specs := p.Profiles
		if len(specs) == 0 {
			specs = DefaultProfiles
		}
		for _, spec := range specs {
			var t *Target
			for _, c := range targets {
				if c.Name == spec.Target {
					t = c
				}
			}
			if t == nil {
				continue
			}
			prof, err := perfProfile(&p, t, e, spec)
			if err != nil {
				rep.Notes = append(rep.Notes, fmt.Sprintf("perf %s: %v", spec, err))
				p.logf("perf %s: %v", spec, err)
				continue
			}
			rep.Profiles[spec.String()] = prof
		}
	}
	if errs := e.backendErrors(); len(errs) > 0 {
		rep.Notes = append(rep.Notes, fmt.Sprintf("backend: %d errors, last: %s", len(errs), errs[len(errs)-1]))
	}
	return rep, nil
}

// idle opens N sessions through a fresh proxy process each time (so earlier runs do not
// leave memory behind that the next one reuses) and records the proxy's memory growth.
func idle(p *Plan, e *env, rep *Report) error {
	type mk struct {
		name  string
		tls   string
		start func() (*Target, error)
	}
	kinds := []mk{
		{"haproxy", load.TLSDisable, func() (*Target, error) { return e.haproxy(p.QueueCap) }},
		{"envoy-tcp", load.TLSDisable, e.envoyTCP},
		{"tdspool", load.TLSDisable, func() (*Target, error) { return e.tdspool(p.QueueCap, "OFF_ALLOWED") }},
		{"tdspool-module", load.TLSDisable, func() (*Target, error) {
			return e.tdspoolLeg(p.QueueCap, "OFF_ALLOWED", backendLeg{module: true})
		}},
	}
	if p.IdleTLS {
		kinds = append(kinds, mk{"tdspool+full", load.TLSFull, func() (*Target, error) { return e.tdspool(p.QueueCap, "OFF_ALLOWED") }})
	}
	for _, n := range p.IdleSessions {
		p.logf("-- idle %d sessions", n)
		for _, k := range kinds {
			if !p.wants(k.name) {
				continue
			}
			t, err := k.start()
			if err != nil {
				return fmt.Errorf("%s: %w", k.name, err)
			}
			t.Name, t.TLS = k.name, k.tls
			if t.Kind == "tdspool" {
				if err := warmTdspool(t, t.TLS, e.certFile); err != nil {
					stopTarget(e, t)
					return err
				}
			}
			time.Sleep(500 * time.Millisecond)
			before, _ := readProc(t.Pid)
			heapBefore := envoyHeap(t)
			var held procStat
			var heapHeld uint64
			label := fmt.Sprintf("idle %s n=%d", t.Name, n)
			res, err := load.Idle(load.Config{Addr: t.Addr, TLS: t.TLS, CAFile: e.certFile, Sessions: n, Concurrency: p.IdleConc,
				Label: label, Progress: p.Progress, WhileHeld: func() {
					time.Sleep(time.Second)
					held, _ = readProc(t.Pid)
					heapHeld = envoyHeap(t)
				}})
			if err != nil {
				res.FirstError = err.Error()
			}
			c := Cell{Workload: "idle", Target: t.Name, Group: t.Group(), Param: n, Res: res,
				RSSBeforeKB: before.rssKB, RSSHeldKB: held.rssKB}
			if res.Sessions > 0 && held.rssKB > before.rssKB {
				c.RSSPerSessionKB = float64(held.rssKB-before.rssKB) / float64(res.Sessions)
			}
			if res.Sessions > 0 && heapHeld > heapBefore {
				c.HeapPerSessionKB = float64(heapHeld-heapBefore) / 1024 / float64(res.Sessions)
			}
			p.logf("  %s: %d sessions in %s, RSS %d → %d KB (%.1f KB/session, Envoy heap %.1f KB/session)%s", label,
				res.Sessions, res.OpenTime.Round(time.Millisecond), before.rssKB, held.rssKB, c.RSSPerSessionKB,
				c.HeapPerSessionKB, errSuffix(res))
			rep.Cells = append(rep.Cells, c)
			stopTarget(e, t)
			time.Sleep(time.Second) // sockets drain before the next proxy
		}
	}
	return nil
}

// firstLine is the line of an error that names the refusal (Envoy's output mentions the
// field), or its first line.
func firstLine(s string) string {
	lines := strings.Split(s, "\n")
	s = lines[0]
	for _, l := range lines {
		if strings.Contains(strings.ToLower(l), "transaction") {
			s = strings.TrimSpace(l)
			break
		}
	}
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

func errSuffix(r load.Result) string {
	if r.Errors == 0 && r.FirstError == "" {
		return ""
	}
	return fmt.Sprintf(" errors=%d first: %s", r.Errors, r.FirstError)
}

// stopTarget stops a target started for one measurement (and forgets its stop in env).
func stopTarget(e *env, t *Target) {
	if len(e.stops) > 0 {
		e.stops[len(e.stops)-1]()
		e.stops = e.stops[:len(e.stops)-1]
	}
}

// envoyHistogramP99 is the cumulative p99 (since Envoy started, warm-up included) of the
// first Envoy histogram whose name contains filter, with its name ("" if there is none).
func envoyHistogramP99(t *Target, filter string) string {
	if t.Envoy == nil {
		return ""
	}
	body, err := t.Envoy.Admin("/stats?format=json&filter=" + filter)
	if err != nil {
		return ""
	}
	var doc struct {
		Stats []struct {
			Histograms *struct {
				Supported []float64 `json:"supported_quantiles"`
				Computed  []struct {
					Name   string `json:"name"`
					Values []struct {
						Cumulative *float64 `json:"cumulative"`
					} `json:"values"`
				} `json:"computed_quantiles"`
			} `json:"histograms"`
		} `json:"stats"`
	}
	if json.Unmarshal([]byte(body), &doc) != nil {
		return ""
	}
	for _, st := range doc.Stats {
		h := st.Histograms
		if h == nil {
			continue
		}
		i := slices.Index(h.Supported, 99)
		for _, q := range h.Computed {
			if i >= 0 && i < len(q.Values) && q.Values[i].Cumulative != nil {
				return fmt.Sprintf("%.4g (%s, cumulative)", *q.Values[i].Cumulative, q.Name)
			}
		}
	}
	return ""
}

// envoyHeap is tcmalloc's allocated bytes from Envoy's /memory (0 for non-Envoy targets).
func envoyHeap(t *Target) uint64 {
	if t.Envoy == nil {
		return 0
	}
	body, err := t.Envoy.Admin("/memory")
	if err != nil {
		return 0
	}
	var m struct {
		Allocated string `json:"allocated"`
	}
	if json.Unmarshal([]byte(body), &m) != nil {
		return 0
	}
	var v uint64
	fmt.Sscanf(m.Allocated, "%d", &v)
	return v
}

// perfProfile runs the spec's workload against t with `perf record -g` attached to the Envoy
// process and returns the top of `perf report`: by thread, by DSO, by symbol, and inside
// libtdspool.so with callers folded in.
func perfProfile(p *Plan, t *Target, e *env, spec ProfileSpec) (string, error) {
	perf, err := exec.LookPath("perf")
	if err != nil {
		return "", errors.New("perf not installed (apt-get install linux-perf)")
	}
	if err := os.MkdirAll(p.Out, 0o755); err != nil {
		return "", err
	}
	workload, conc := spec.Workload, spec.Conc
	base := fmt.Sprintf("%s-%s-c%d", t.Name, workload, conc)
	data := filepath.Join(e.dir, "perf-"+base+".data")
	p.logf("-- perf record %s (%s c=%d, %s)", t.Name, workload, conc, p.PerfDur)
	rec := exec.Command(perf, "record", "-g", "-F", "999", "-p", fmt.Sprint(t.Pid), "-o", data, "--", "sleep", fmt.Sprint(p.PerfDur.Seconds()))
	recOut, _ := os.CreateTemp(e.dir, "perf-record-*.log")
	rec.Stdout, rec.Stderr = recOut, recOut
	if err := rec.Start(); err != nil {
		return "", err
	}
	time.Sleep(200 * time.Millisecond)
	before, _ := readProc(t.Pid)
	lc := load.Config{Addr: t.Addr, TLS: t.TLS, CAFile: e.certFile, Concurrency: conc, Duration: p.PerfDur - 300*time.Millisecond,
		Label: "perf " + t.Name + " " + workload, Progress: p.Progress}
	var res load.Result
	if workload == "login" {
		res, _ = load.Login(lc)
	} else {
		res, _ = load.Ping(lc)
	}
	after, _ := readProc(t.Pid)
	if err := rec.Wait(); err != nil {
		b, _ := os.ReadFile(recOut.Name())
		return "", fmt.Errorf("perf record: %v: %s", err, b)
	}
	cpu := 0.0
	if res.Ops > 0 {
		cpu = float64(after.cpuTicks-before.cpuTicks) / clkTck * 1e6 / float64(res.Ops)
	}
	sw := 0.0
	if res.Ops > 0 {
		sw = float64(after.ctxSw-before.ctxSw) / float64(res.Ops)
	}
	sections := []string{fmt.Sprintf("run under perf: %s (Envoy CPU %.1f µs/op, perf overhead included; %.2f context switches/op)", oneLine(res), cpu, sw)}
	for _, sort := range []string{"comm", "dso", "dso,symbol"} {
		args := []string{"report", "-i", data, "--stdio", "--no-children", "--sort", sort, "--percent-limit", "0.7", "-g", "none"}
		out, err := exec.Command(perf, args...).Output()
		if err != nil {
			return "", fmt.Errorf("perf report: %v", err)
		}
		var keep []string
		for _, l := range strings.Split(string(out), "\n") {
			if strings.TrimSpace(l) == "" || strings.HasPrefix(l, "#") && !strings.HasPrefix(l, "# Samples") && !strings.HasPrefix(l, "# Event count") {
				continue
			}
			keep = append(keep, trimPerf(l))
		}
		sections = append(sections, fmt.Sprintf("perf report --sort %s (Envoy pid, %s c=%d, %s):\n%s", sort, workload, conc, p.PerfDur,
			strings.Join(keep, "\n")))
	}
	// The Go part, with callers folded in, to see what inside the module costs.
	out, err := exec.Command(perf, "report", "-i", data, "--stdio", "--children", "--sort", "symbol", "--dsos", "libtdspool.so",
		"--percent-limit", "1", "-g", "none").Output()
	if err == nil {
		var keep []string
		for _, l := range strings.Split(string(out), "\n") {
			if strings.TrimSpace(l) != "" && !strings.HasPrefix(l, "#") {
				keep = append(keep, trimPerf(l))
			}
		}
		if len(keep) > 0 {
			sections = append(sections, "inside libtdspool.so, children included (share of all Envoy samples):\n"+strings.Join(keep, "\n"))
		}
	}
	text := strings.Join(sections, "\n\n")
	if p.PerfData {
		_ = os.Rename(data, filepath.Join(p.Out, "perf-"+base+".data"))
	}
	_ = os.WriteFile(filepath.Join(p.Out, "profile-"+base+".txt"), []byte(text+"\n"), 0o644)
	return text, nil
}

// trimPerf drops perf's empty trailing columns and padding.
func trimPerf(l string) string {
	l = strings.TrimRight(l, " -")
	return strings.Join(strings.Fields(l), " ")
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	return strings.Join(f[:3], " ")
}

func oneLine(r load.Result) string {
	s := fmt.Sprintf("ops=%d %.0f/s", r.Ops, r.QPS)
	if r.Lat.N > 0 {
		s += fmt.Sprintf(" p50=%s p99=%s", d(r.Lat.P50), d(r.Lat.P99))
	}
	if r.MBps > 0 {
		s += fmt.Sprintf(" %.1f MB/s", r.MBps)
	}
	if r.Workload == "queue" || r.Workload == "login" {
		s += fmt.Sprintf(" login p50=%s p99=%s", d(r.LoginLat.P50), d(r.LoginLat.P99))
	}
	if r.Workload == "queue" {
		s += fmt.Sprintf(" fairness=%.3f", r.Fairness)
	}
	return s + errSuffix(r)
}

func machine() map[string]string {
	m := map[string]string{
		"go":   runtime.Version(),
		"cpus": fmt.Sprint(runtime.NumCPU()),
		"os":   runtime.GOOS + "/" + runtime.GOARCH,
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "model name"); ok {
				m["cpu"] = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m["kernel"] = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		m["memory"] = strings.TrimSpace(strings.TrimPrefix(strings.Split(string(b), "\n")[0], "MemTotal:"))
	}
	if bin, err := stack.EnvoyBinary(); err == nil {
		if out, err := exec.Command(bin, "--version").Output(); err == nil {
			s := strings.TrimSpace(string(out))
			if i := strings.Index(s, "version: "); i >= 0 {
				s = s[i+len("version: "):]
			}
			m["envoy"] = s
		}
	}
	if out, err := exec.Command("haproxy", "-v").Output(); err == nil {
		m["haproxy"] = strings.TrimSpace(strings.Split(string(out), "\n")[0])
	} else if out, err := exec.Command("/usr/sbin/haproxy", "-v").Output(); err == nil {
		m["haproxy"] = strings.TrimSpace(strings.Split(string(out), "\n")[0])
	}
	if out, err := exec.Command("redis-server", "--version").Output(); err == nil {
		m["redis"] = strings.TrimSpace(string(out))
	}
	if out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output(); err == nil {
		m["commit"] = strings.TrimSpace(string(out))
	}
	var lim [2]uint64
	if b, err := os.ReadFile("/proc/self/limits"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "Max open files") {
				f := strings.Fields(l)
				fmt.Sscanf(f[3], "%d", &lim[0])
				fmt.Sscanf(f[4], "%d", &lim[1])
				m["nofile"] = fmt.Sprintf("%d (hard %d)", lim[0], lim[1])
			}
		}
	}
	return m
}
