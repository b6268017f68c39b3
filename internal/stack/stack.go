// Package stack starts the real processes tdspool runs with — redis-server and Envoy with the
// module — on loopback, waits until they serve, and stops them. The demo (make run), the
// integration tests and the benchmarks share it.
package stack

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Process is a started child process with its combined output kept for diagnostics.
type Process struct {
	Name string
	cmd  *exec.Cmd
	out  *lockedBuffer
	done chan struct{}
	err  error
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
	tee io.Writer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.tee != nil {
		_, _ = b.tee.Write(p)
	}
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Start runs the command; its output is captured (and copied to tee when not nil).
func Start(name string, tee io.Writer, env []string, bin string, args ...string) (*Process, error) {
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	out := &lockedBuffer{tee: tee}
	cmd.Stdout, cmd.Stderr = out, out
	// Own process group, so a stop reaches everything the child started.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Process{Name: name, cmd: cmd, out: out, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// Output is everything the process printed so far.
func (p *Process) Output() string { return p.out.String() }

// Exited reports whether the process has ended, and how.
func (p *Process) Exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// Pid is the child's process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Stop sends SIGTERM, then SIGKILL after grace, and waits for the exit.
func (p *Process) Stop(grace time.Duration) {
	if p == nil {
		return
	}
	select {
	case <-p.done:
		return
	default:
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

// Kill sends SIGKILL (a crash, as far as the peers can tell).
func (p *Process) Kill() {
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// WaitTCP waits until addr accepts connections or the process exits or d passes.
func WaitTCP(addr string, d time.Duration, p *Process) error {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if p != nil {
			if exited, err := p.Exited(); exited {
				return fmt.Errorf("%s exited (%v) before %s was ready:\n%s", p.Name, err, addr, tail(p.Output(), 40))
			}
		}
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s not ready after %s", addr, d)
}

func tail(s string, lines int) string {
	parts := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(parts) > lines {
		parts = parts[len(parts)-lines:]
	}
	return strings.Join(parts, "\n")
}

// Redis is a redis-server on a loopback port with no persistence. It is the one
// redis-server launcher of the repository: the demo, the integration tests, the benchmark
// and (through internal/redistest) the coordinator's tests use it.
type Redis struct {
	*Process
	Addr string
	bin  string
	port int
	dir  string
	tee  io.Writer
}

// RedisBinary is the redis-server to run: $REDIS_SERVER, else the one on PATH.
func RedisBinary() (string, error) {
	if b := os.Getenv("REDIS_SERVER"); b != "" {
		return b, nil
	}
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return "", fmt.Errorf("redis-server not installed (make setup installs it, or set REDIS_SERVER): %w", err)
	}
	return bin, nil
}

// StartRedis starts redis-server on port (0: a free port) and waits until it accepts
// connections.
func StartRedis(port int, tee io.Writer) (*Redis, error) {
	bin, err := RedisBinary()
	if err != nil {
		return nil, err
	}
	if port == 0 {
		if port, err = FreePort(); err != nil {
			return nil, err
		}
	}
	dir, err := os.MkdirTemp("", "tdspool-redis-")
	if err != nil {
		return nil, err
	}
	r := &Redis{Addr: fmt.Sprintf("127.0.0.1:%d", port), bin: bin, port: port, dir: dir, tee: tee}
	if err := r.start(); err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	return r, nil
}

func (r *Redis) start() error {
	p, err := Start("redis-server", r.tee, nil, r.bin, "--port", strconv.Itoa(r.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", r.dir)
	if err != nil {
		return err
	}
	r.Process = p
	if err := WaitTCP(r.Addr, 10*time.Second, p); err != nil {
		p.Kill()
		return err
	}
	return nil
}

// Restart kills the server (SIGKILL: a crash, as far as clients can tell) if it still runs
// and starts an empty one on the same port; with persistence off every key is gone.
func (r *Redis) Restart() error {
	if r.running() {
		r.Resume()
		r.Process.Kill()
	}
	if err := os.MkdirAll(r.dir, 0o700); err != nil { // Stop removed it
		return err
	}
	return r.start()
}

// Pause stops the process (SIGSTOP): connections stay open and nothing answers, like a
// server stuck in a long command or a network partition that drops no connections.
func (r *Redis) Pause() {
	if r.running() {
		_ = syscall.Kill(-r.Pid(), syscall.SIGSTOP)
	}
}

// Resume continues a paused server (SIGCONT).
func (r *Redis) Resume() {
	if r.running() {
		_ = syscall.Kill(-r.Pid(), syscall.SIGCONT)
	}
}

func (r *Redis) running() bool {
	exited, _ := r.Exited()
	return !exited
}

// Stop stops the server (a paused one too) and removes its directory; safe to call twice.
func (r *Redis) Stop() {
	if r == nil || r.Process == nil {
		return
	}
	r.Resume()
	r.Process.Stop(3 * time.Second)
	_ = os.RemoveAll(r.dir)
}

// Envoy is an Envoy process with the tdspool module.
type Envoy struct {
	*Process
	AdminAddr  string
	ConfigPath string
	dir        string
}

// EnvoyBinary is the pinned Envoy: $TDSPOOL_ENVOY, else .venv/bin/envoy above the working
// directory (make setup installs it there).
func EnvoyBinary() (string, error) {
	if p := os.Getenv("TDSPOOL_ENVOY"); p != "" {
		return p, nil
	}
	dir, _ := os.Getwd()
	for {
		cand := filepath.Join(dir, ".venv", "bin", "envoy")
		if _, err := os.Stat(cand); err == nil {
			return cand, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("envoy not found: run `make setup` or set TDSPOOL_ENVOY")
		}
		dir = parent
	}
}

// ModuleDir is the folder holding libtdspool.so: $TDSPOOL_MODULE_DIR, else bin/ above the
// working directory (make build writes it there).
func ModuleDir() (string, error) {
	if p := os.Getenv("TDSPOOL_MODULE_DIR"); p != "" {
		return p, nil
	}
	dir, _ := os.Getwd()
	for {
		cand := filepath.Join(dir, "bin", "libtdspool.so")
		if _, err := os.Stat(cand); err == nil {
			return filepath.Dir(cand), nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("libtdspool.so not found: run `make build` or set TDSPOOL_MODULE_DIR")
		}
		dir = parent
	}
}

// EnvoyOptions configure StartEnvoy.
type EnvoyOptions struct {
	Config    []byte // bootstrap YAML
	AdminPort int    // must match the config
	ModuleDir string // default ModuleDir()
	LogLevel  string // default "info"
	// ComponentLogLevel is Envoy's --component-log-level ("conn_handler:debug,…"), if set.
	ComponentLogLevel string
	Tee               io.Writer
	ReadyWait         time.Duration // default 20s
	Env               []string      // extra environment, e.g. GOGC=1 for the module's Go runtime
	// Args are extra command-line arguments. With --base-id among them the process may take
	// part in a hot restart (no --disable-hot-restart).
	Args []string
}

// StartEnvoy writes the config to a temp dir and starts Envoy on it, waiting for /ready.
func StartEnvoy(o EnvoyOptions) (*Envoy, error) {
	bin, err := EnvoyBinary()
	if err != nil {
		return nil, err
	}
	if o.ModuleDir == "" {
		if o.ModuleDir, err = ModuleDir(); err != nil {
			return nil, err
		}
	}
	if o.LogLevel == "" {
		o.LogLevel = os.Getenv("TDSPOOL_ENVOY_LOG") // e.g. debug, when chasing a test failure
	}
	if o.LogLevel == "" {
		o.LogLevel = "info"
	}
	if o.ReadyWait == 0 {
		o.ReadyWait = 20 * time.Second
	}
	dir, err := os.MkdirTemp("", "tdspool-envoy-")
	if err != nil {
		return nil, err
	}
	cfg := filepath.Join(dir, "envoy.yaml")
	if err := os.WriteFile(cfg, o.Config, 0o644); err != nil {
		return nil, err
	}
	env := append([]string{"ENVOY_DYNAMIC_MODULES_SEARCH_PATH=" + o.ModuleDir}, o.Env...)
	args := []string{"-c", cfg, "--concurrency", "2", "-l", o.LogLevel,
		"--log-format", "[%Y-%m-%d %T.%e][%l][%n] %v"}
	if !slices.Contains(o.Args, "--base-id") {
		args = append(args, "--disable-hot-restart")
	}
	if o.ComponentLogLevel != "" {
		args = append(args, "--component-log-level", o.ComponentLogLevel)
	}
	p, err := Start("envoy", o.Tee, env, bin, append(args, o.Args...)...)
	if err != nil {
		return nil, err
	}
	e := &Envoy{Process: p, AdminAddr: fmt.Sprintf("127.0.0.1:%d", o.AdminPort), ConfigPath: cfg, dir: dir}
	if err := e.waitReady(o.ReadyWait); err != nil {
		e.Stop()
		return nil, err
	}
	return e, nil
}

func (e *Envoy) waitReady(d time.Duration) error {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if exited, err := e.Exited(); exited {
			return fmt.Errorf("envoy exited (%v):\n%s", err, tail(e.Output(), 40))
		}
		if body, err := e.Admin("/ready"); err == nil && strings.TrimSpace(body) == "LIVE" {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("envoy not ready after %s:\n%s", d, tail(e.Output(), 40))
}

// Admin GETs a path from the admin interface.
func (e *Envoy) Admin(path string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+e.AdminAddr+path, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return string(b), fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return string(b), err
}

// Stats returns /stats as name → value for counters and gauges.
func (e *Envoy) Stats() (map[string]uint64, error) {
	body, err := e.Admin("/stats")
	if err != nil {
		return nil, err
	}
	m := map[string]uint64{}
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), ": ")
		if !ok {
			continue
		}
		if v, err := strconv.ParseUint(val, 10, 64); err == nil {
			m[name] = v
		}
	}
	return m, sc.Err()
}

// Stop stops Envoy and removes its temp dir.
func (e *Envoy) Stop() {
	if e == nil {
		return
	}
	e.Process.Stop(5 * time.Second)
	_ = os.RemoveAll(e.dir)
}

// Validate runs `envoy --mode validate` on a config and returns its output and exit error.
func Validate(config []byte, moduleDir string) (string, error) {
	bin, err := EnvoyBinary()
	if err != nil {
		return "", err
	}
	if moduleDir == "" {
		if moduleDir, err = ModuleDir(); err != nil {
			return "", err
		}
	}
	dir, err := os.MkdirTemp("", "tdspool-validate-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	cfg := filepath.Join(dir, "envoy.yaml")
	if err := os.WriteFile(cfg, config, 0o644); err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--mode", "validate", "-c", cfg, "--disable-hot-restart", "-l", "info")
	cmd.Env = append(os.Environ(), "ENVOY_DYNAMIC_MODULES_SEARCH_PATH="+moduleDir)
	out, err := cmd.CombinedOutput()
	return string(out), err
}
