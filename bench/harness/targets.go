// Package harness starts the benchmark's targets on loopback (the backend alone, HAProxy in
// TCP mode, Envoy with plain tcp_proxy, Envoy with tdspool in each TLS mode), runs the load
// workloads against each of them side by side, and writes the Markdown report and PNG charts.
package harness

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"text/template"
	"time"

	"github.com/tdspool/tdspool/bench/load"
	"github.com/tdspool/tdspool/deployments/envoyconfig"
	"github.com/tdspool/tdspool/internal/stack"
	"github.com/tdspool/tdspool/internal/testcert"
	"github.com/tdspool/tdspool/standin"
)

// Target is one way of reaching the backend.
type Target struct {
	Name      string // direct, haproxy, envoy-tcp, tdspool, ...
	Kind      string // direct | haproxy | envoy-tcp | tdspool
	TLS       string // client TLS mode (load.TLS*), "strict" for TDS 8
	Addr      string
	QueueAddr string // a path capped at Plan.QueueCap with a queue ("" = none)
	QueueDB   string // database to use on QueueAddr
	Pid       int    // the proxy process (0: none)
	Envoy     *stack.Envoy
	Backend   *benchBackend // the backend it reaches (nil: the main one)
	// LoginOnly: measured in the login workload only (the slow-login backend's rows).
	LoginOnly bool
}

// Group is the TLS family a target belongs to; ratios compare targets of one group.
func (t *Target) Group() string {
	if t.TLS == "" || t.TLS == load.TLSDisable {
		return "plaintext"
	}
	return "tls"
}

// env holds what the targets share: the backend, Redis, temp files.
type env struct {
	dir      string
	backend  string // host:port
	backendP *stack.Process
	inProc   *standin.Server
	redis    *stack.Redis
	certFile string
	keyFile  string
	logw     io.Writer

	inProcess bool
	main      *benchBackend // the backend every target reaches (backend, backendP, inProc are its)
	slow      *benchBackend // a second one whose logins cost Plan.LoginDelay (nil until needed)
	stops     []func()
	envoyEnv  []string // extra environment of every Envoy (Plan.EnvoyEnv)

	mu          sync.Mutex
	backendLogs []string // diagnostics of the in-process backend
}

// BackendConfig is the benchmark's backend: the stand-in in lean mode (no SQLite; SELECT 1
// and STREAM <bytes> answered from prebuilt bytes), with the load generator's login and the
// two databases the targets route on.
func BackendConfig(addr string, cert *tls.Certificate) standin.Config {
	return standin.Config{
		Addr: addr, ServerName: "bench", Lean: true, Certificate: cert,
		Users:     map[string]string{load.User: load.Password},
		Databases: []string{"bench", "queue"},
	}
}

func newEnv(inProcess bool, logw io.Writer) (*env, error) {
	dir, err := os.MkdirTemp("", "tdspool-bench-")
	if err != nil {
		return nil, err
	}
	e := &env{dir: dir, logw: logw, inProcess: inProcess}
	if e.certFile, e.keyFile, err = testcert.Write(dir); err != nil {
		return nil, err
	}
	b, err := e.startBackend(0)
	if err != nil {
		return nil, err
	}
	e.main = b
	e.backend, e.backendP, e.inProc = b.addr, b.proc, b.inProc
	return e, nil
}

// benchBackend is one backend: the stand-in in lean mode, in its own process or in this one.
type benchBackend struct {
	addr      string
	proc      *stack.Process
	inProc    *standin.Server
	statsFile string // where the process writes its counters on SIGUSR1
}

// startBackend starts a backend whose logins cost loginDelay (the stand-in's model of real
// authentication).
func (e *env) startBackend(loginDelay time.Duration) (*benchBackend, error) {
	if e.inProcess {
		cert, err := tls.LoadX509KeyPair(e.certFile, e.keyFile)
		if err != nil {
			return nil, err
		}
		cfg := BackendConfig("127.0.0.1:0", &cert)
		cfg.LoginDelay = loginDelay
		cfg.Logf = func(format string, args ...any) {
			e.mu.Lock()
			e.backendLogs = append(e.backendLogs, fmt.Sprintf(format, args...))
			e.mu.Unlock()
		}
		s, err := standin.New(cfg)
		if err != nil {
			return nil, err
		}
		if err := s.Start(); err != nil {
			return nil, err
		}
		return &benchBackend{addr: s.Addr(), inProc: s}, nil
	}
	// Its own process, so its file descriptors (one per session) do not count against
	// the load generator's limit and its CPU is not the load generator's.
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	port, err := stack.FreePort()
	if err != nil {
		return nil, err
	}
	b := &benchBackend{addr: fmt.Sprintf("127.0.0.1:%d", port), statsFile: filepath.Join(e.dir, fmt.Sprintf("backend-%d.json", port))}
	p, err := stack.Start("backend", nil, nil, self, "backend", "-addr", b.addr, "-cert", e.certFile, "-key", e.keyFile,
		"-login-delay", loginDelay.String(), "-stats", b.statsFile)
	if err != nil {
		return nil, err
	}
	b.proc = p
	if err := stack.WaitTCP(b.addr, 10*time.Second, p); err != nil {
		p.Stop(time.Second)
		return nil, err
	}
	return b, nil
}

func (b *benchBackend) port() int {
	var p int
	fmt.Sscanf(b.addr[strings.LastIndexByte(b.addr, ':')+1:], "%d", &p)
	return p
}

// logins is the backend's count of successful logins so far (-1: unknown).
func (b *benchBackend) logins() int64 {
	if b.inProc != nil {
		return b.inProc.Stats().Logins
	}
	if b.proc == nil || b.statsFile == "" {
		return -1
	}
	before, _ := os.Stat(b.statsFile)
	if err := syscall.Kill(b.proc.Pid(), syscall.SIGUSR1); err != nil {
		return -1
	}
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		st, err := os.Stat(b.statsFile)
		if err != nil || before != nil && os.SameFile(before, st) {
			continue // not rewritten yet (each write renames a new file into place)
		}
		raw, err := os.ReadFile(b.statsFile)
		if err != nil {
			continue
		}
		var stats standin.Stats
		if json.Unmarshal(raw, &stats) == nil {
			return stats.Logins
		}
	}
	return -1
}

func (b *benchBackend) stop() {
	if b.inProc != nil {
		b.inProc.Close()
	}
	b.proc.Stop(3 * time.Second)
}

// backendErrors are the in-process backend's diagnostics other than clients going away
// (connections reset when a run's clients are closed).
func (e *env) backendErrors() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []string
	for _, l := range e.backendLogs {
		if !strings.Contains(l, "connection reset") {
			out = append(out, l)
		}
	}
	return out
}

func (e *env) close() {
	for i := len(e.stops) - 1; i >= 0; i-- {
		e.stops[i]()
	}
	if e.inProc != nil {
		e.inProc.Close()
	}
	e.backendP.Stop(3 * time.Second)
	if e.slow != nil {
		e.slow.stop()
	}
	e.redis.Stop()
	os.RemoveAll(e.dir)
}

func (e *env) backendPort() int { return e.main.port() }

func (e *env) direct(tls string) *Target {
	name := "direct"
	if tls != load.TLSDisable {
		name = "direct+" + tls
	}
	return &Target{Name: name, Kind: "direct", TLS: tls, Addr: e.backend, Backend: e.main}
}

var haproxyTmpl = template.Must(template.New("haproxy").Parse(`# tdspool bench: HAProxy in TCP mode, as the original design used.
global
  nbthread 2
  maxconn 9900
defaults
  mode tcp
  timeout connect 5s
  timeout client 1h
  timeout server 1h
  timeout queue 60s
frontend tds
  bind 127.0.0.1:{{.Port}}
  default_backend backend
backend backend
  server s1 {{.Backend}}
# The queue workload: a server capped at {{.Cap}} connections; HAProxy queues the rest.
frontend tds_capped
  bind 127.0.0.1:{{.QueuePort}}
  default_backend capped
backend capped
  server s1 {{.Backend}} maxconn {{.Cap}}
`))

func (e *env) haproxy(queueCap int) (*Target, error) {
	port, _ := stack.FreePort()
	qport, _ := stack.FreePort()
	cfg := filepath.Join(e.dir, "haproxy.cfg")
	f, err := os.Create(cfg)
	if err != nil {
		return nil, err
	}
	err = haproxyTmpl.Execute(f, map[string]any{"Port": port, "QueuePort": qport, "Backend": e.backend, "Cap": queueCap})
	f.Close()
	if err != nil {
		return nil, err
	}
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/haproxy"); serr == nil {
			bin = "/usr/sbin/haproxy"
		} else {
			return nil, fmt.Errorf("haproxy not installed (make setup-apt): %w", err)
		}
	}
	p, err := stack.Start("haproxy", nil, nil, bin, "-db", "-f", cfg)
	if err != nil {
		return nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	if err := stack.WaitTCP(addr, 10*time.Second, p); err != nil {
		p.Stop(time.Second)
		return nil, err
	}
	stop := func() { p.Stop(3 * time.Second) }
	e.stops = append(e.stops, stop)
	return &Target{Name: "haproxy", Kind: "haproxy", TLS: load.TLSDisable, Addr: addr,
		QueueAddr: fmt.Sprintf("127.0.0.1:%d", qport), Pid: p.Pid()}, nil
}

var envoyTCPTmpl = template.Must(template.New("envoy-tcp").Parse(`# tdspool bench: Envoy with plain tcp_proxy (the baseline tdspool is compared with).
admin:
  address: {socket_address: {address: 127.0.0.1, port_value: {{.AdminPort}}}}
static_resources:
  listeners:
  - name: tcp
    address: {socket_address: {address: 127.0.0.1, port_value: {{.Port}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: tcp
          cluster: backend
  clusters:
  - name: backend
    type: STATIC
    connect_timeout: 1s
    circuit_breakers:
      thresholds:
      - max_connections: 100000
    load_assignment:
      cluster_name: backend
      endpoints:
      - lb_endpoints:
        - endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: {{.BackendPort}}}}}
`))

func (e *env) startEnvoy(yaml []byte, adminPort int) (*stack.Envoy, error) {
	moduleDir, err := stack.ModuleDir()
	if err != nil {
		return nil, err
	}
	// warning: per-connection info logs would be part of what is measured otherwise.
	return stack.StartEnvoy(stack.EnvoyOptions{Config: yaml, AdminPort: adminPort, ModuleDir: moduleDir, LogLevel: "warning", Env: e.envoyEnv})
}

func (e *env) envoyTCP() (*Target, error) {
	port, _ := stack.FreePort()
	admin, _ := stack.FreePort()
	var b strings.Builder
	if err := envoyTCPTmpl.Execute(&b, map[string]any{"Port": port, "AdminPort": admin, "BackendPort": e.backendPort()}); err != nil {
		return nil, err
	}
	en, err := e.startEnvoy([]byte(b.String()), admin)
	if err != nil {
		return nil, err
	}
	e.stops = append(e.stops, en.Stop)
	return &Target{Name: "envoy-tcp", Kind: "envoy-tcp", TLS: load.TLSDisable, Addr: fmt.Sprintf("127.0.0.1:%d", port),
		Pid: en.Pid(), Envoy: en}, nil
}

// tdspool starts Envoy with the filter: bucket-001 (uncapped in practice) is the default; the
// database "queue" routes to bucket-queue, capped at queueCap. listenerTLS is the filter's
// listener encryption policy; the TDS 8 chain is always configured.
func (e *env) tdspool(queueCap int, listenerTLS string) (*Target, error) {
	return e.tdspoolLeg(queueCap, listenerTLS, backendLeg{})
}

// backendLeg is how a bench tdspool reaches the backend: tcp_proxy (module false) or the
// module-owned leg, with the bucket's backend_encryption (TDS8 on tcp_proxy: the cluster's
// upstream TLS). TLS legs verify the backend's certificate (the bench's own) for localhost.
type backendLeg struct {
	module  bool
	enc     string        // "" = PLAINTEXT
	via     string        // module: dial this address (an Envoy tcp_proxy listener) instead of the backend
	pool    string        // pool.mode of bucket-001 ("" = none): SESSION | TRANSACTION
	backend *benchBackend // nil: the main backend
}

func (e *env) tdspoolLeg(queueCap int, listenerTLS string, leg backendLeg) (*Target, error) {
	if e.redis == nil {
		r, err := stack.StartRedis(0, nil)
		if err != nil {
			return nil, err
		}
		e.redis = r
	}
	port, _ := stack.FreePort()
	admin, _ := stack.FreePort()
	cfg := map[string]any{
		"listener": map[string]any{"encryption": listenerTLS, "tls_cert_file": e.certFile, "tls_key_file": e.keyFile},
		"buckets": []map[string]any{
			{"name": "bucket-001", "cluster": "bucket_001", "max_connections": 20000, "max_queue": 20000, "queue_timeout": "30s"},
			{"name": "bucket-queue", "cluster": "bucket_queue", "max_connections": queueCap, "max_queue": 4096, "queue_timeout": "60s"},
		},
		"routes":         []map[string]any{{"database": "queue", "bucket": "bucket-queue"}},
		"default_bucket": "bucket-001",
		"redis":          map[string]any{"addresses": []string{e.redis.Addr}},
		"timeouts":       map[string]any{"login_timeout": "60s"},
	}
	be := e.main
	if leg.backend != nil {
		be = leg.backend
	}
	ebs := []envoyconfig.Bucket{
		{Cluster: "bucket_001", Port: be.port(), MaxConnections: 100000},
		{Cluster: "bucket_queue", Port: be.port(), MaxConnections: 100000},
	}
	for i, b := range cfg["buckets"].([]map[string]any) {
		if leg.enc != "" {
			b["backend_encryption"] = leg.enc
		}
		switch {
		case leg.module:
			b["backend_leg"] = "MODULE"
			b["backend_addresses"] = []string{be.addr}
			if leg.via != "" {
				b["backend_addresses"] = []string{leg.via}
			}
			if leg.enc != "" && leg.enc != "PLAINTEXT" {
				b["backend_tls"] = map[string]any{"ca_file": e.certFile, "server_name": "localhost"}
			}
		case leg.enc == "TDS8":
			ebs[i].UpstreamTDS8CAFile, ebs[i].UpstreamTDS8ServerName = e.certFile, "localhost"
		}
		if leg.pool != "" && i == 0 {
			b["pool"] = map[string]any{"mode": "POOL_MODE_" + leg.pool}
		}
	}
	js, _ := json.Marshal(cfg)
	yaml, err := envoyconfig.Render(envoyconfig.Params{
		ListenerPort: port, AdminPort: admin, FilterConfigJSON: string(js),
		TDS8CertFile: e.certFile, TDS8KeyFile: e.keyFile,
		Buckets: ebs,
	})
	if err != nil {
		return nil, err
	}
	en, err := e.startEnvoy(yaml, admin)
	if err != nil {
		return nil, err
	}
	e.stops = append(e.stops, en.Stop)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	return &Target{Name: "tdspool", Kind: "tdspool", TLS: load.TLSDisable, Addr: addr, QueueAddr: addr, QueueDB: "queue",
		Pid: en.Pid(), Envoy: en, Backend: be}, nil
}

// warmTdspool logs in until both buckets grant (a bucket new to Redis pauses its first
// grants for the coordinator's grace period).
func warmTdspool(t *Target, tlsMode, caFile string) error {
	deadline := time.Now().Add(30 * time.Second)
	for _, db := range []string{"bench", t.QueueDB} {
		for {
			_, err := load.Login(load.Config{Addr: t.Addr, TLS: tlsMode, CAFile: caFile, Database: db, Concurrency: 1, Duration: 200 * time.Millisecond})
			if err == nil {
				r, _ := load.Ping(load.Config{Addr: t.Addr, TLS: tlsMode, CAFile: caFile, Database: db, Concurrency: 1, Duration: 100 * time.Millisecond})
				if r.Ops > 0 && r.Errors == 0 {
					break
				}
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("tdspool at %s did not grant a slot for %s within 30s: %v", t.Addr, db, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	return nil
}

// procStat is a process's CPU time (user+system, clock ticks), resident memory and context
// switches (voluntary and not, summed over its threads).
type procStat struct {
	cpuTicks uint64
	rssKB    uint64
	ctxSw    uint64
}

func readProc(pid int) (procStat, error) {
	var ps procStat
	if pid == 0 {
		return ps, nil
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ps, err
	}
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	// fields[0] is state (field 3); utime is field 14, stime 15.
	var ut, st uint64
	fmt.Sscanf(fields[11], "%d", &ut)
	fmt.Sscanf(fields[12], "%d", &st)
	ps.cpuTicks = ut + st
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return ps, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			fmt.Sscanf(strings.TrimSpace(v), "%d", &ps.rssKB)
		}
	}
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", pid))
	for _, task := range tasks {
		b, err := os.ReadFile(task)
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(b), "\n") {
			if _, v, ok := strings.Cut(l, "ctxt_switches:"); ok {
				var n uint64
				fmt.Sscanf(strings.TrimSpace(v), "%d", &n)
				ps.ctxSw += n
			}
		}
	}
	return ps, nil
}

// clkTck is USER_HZ; 100 on every Linux this runs on.
const clkTck = 100
