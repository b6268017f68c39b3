package standin

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tdspool/tdspool/internal/testcert"
)

// Encryption is the server's TLS policy. It decides the PRELOGIN
// ENCRYPTION answer (tds.NegotiateEncryption) and whether TDS 8 strict connections
// (TLS first, ALPN "tds/8.0") are accepted.
type Encryption uint8

const (
	// EncryptionOptional answers OFF to OFF clients (login-only TLS), ON to
	// ON clients (full TLS) and NOT_SUP to NOT_SUP clients (plaintext);
	// TDS 8 strict is accepted too. This is SQL Server's default and the
	// mode that lets one server serve every client setting.
	EncryptionOptional Encryption = iota
	// EncryptionOff answers NOT_SUP to everybody: no TLS at all; ON clients
	// abort, TDS 8 connections are closed.
	EncryptionOff
	// EncryptionRequired answers REQ: every TDS 7.x connection is fully
	// encrypted and NOT_SUP clients are refused ("Force Encryption").
	EncryptionRequired
	// EncryptionStrict accepts only TDS 8 connections (SQL Server's "Force
	// Strict Encryption"); a TDS 7.x PRELOGIN is answered and then closed.
	EncryptionStrict
)

func (e Encryption) String() string {
	switch e {
	case EncryptionOptional:
		return "optional"
	case EncryptionOff:
		return "off"
	case EncryptionRequired:
		return "required"
	case EncryptionStrict:
		return "strict"
	}
	return fmt.Sprintf("Encryption(%d)", uint8(e))
}

// ParseEncryption accepts the names String returns plus a few aliases
// ("login-only" = optional, "full" = required, "none"/"disable" = off).
func ParseEncryption(s string) (Encryption, error) {
	switch strings.ToLower(s) {
	case "optional", "login-only", "login", "":
		return EncryptionOptional, nil
	case "off", "none", "disable":
		return EncryptionOff, nil
	case "required", "full", "on":
		return EncryptionRequired, nil
	case "strict", "tds8":
		return EncryptionStrict, nil
	}
	return 0, fmt.Errorf("unknown encryption mode %q (optional, off, required, strict)", s)
}

// Config describes one server (one "bucket"). The zero value plus Addr and
// Users is usable: an in-memory-only server would lose data, so DataDir
// defaults to a fresh temporary directory that Close removes.
type Config struct {
	// Addr to listen on; "127.0.0.1:0" picks a free port.
	Addr string
	// ServerName is what @@SERVERNAME returns and what ERROR/INFO tokens
	// carry as ServerName (the demo uses the bucket name).
	ServerName string
	// Users maps login name (case-insensitive, like SQL Server's default
	// collation) to password (case-sensitive).
	Users map[string]string
	// Admins are the logins that may CREATE, ALTER (password, DISABLE,
	// ENABLE) and DROP other logins in T-SQL. The Go API (SetPassword,
	// DisableLogin, ...) needs no admin.
	Admins []string
	// LoginDelay is spent before each password check, to model the cost
	// of real authentication in benchmarks; SetLoginDelay changes it.
	LoginDelay time.Duration
	// Redirect, "host:port", answers every login with a routing
	// ENVCHANGE to that address (Azure SQL redirect, AG read-only
	// routing); SetRedirect changes it at run time.
	Redirect string
	// MARS accepts Multiple Active Result Sets: PRELOGIN answers MARS=1 to
	// a client asking for it (not under login-only TLS) and SMP sessions
	// are served (smp.go). Off: MARS=0, as before.
	MARS bool
	// AppRoles maps application role name to password for sp_setapprole.
	AppRoles map[string]string
	// Databases to serve besides master, which always exists. A login
	// without a database lands in DefaultDatabase.
	Databases []string
	// DefaultDatabase for logins that name none; "" means master.
	DefaultDatabase string
	// DataDir holds one SQLite file per database (<name>.sqlite), so data
	// survives restarts. Empty: a temporary directory removed by Close.
	DataDir string
	// MaxConnections caps logged-in sessions; the next login gets error
	// 17809. Zero means unlimited.
	MaxConnections int
	// Delay is added before every request is executed (latency injection).
	Delay time.Duration
	// Encryption policy; see the constants.
	Encryption Encryption
	// Certificate for TLS. Nil: a self-signed pair for localhost and
	// 127.0.0.1 is generated on Start (see CertPEM).
	Certificate *tls.Certificate
	// Logf receives connection-level diagnostics; nil discards them.
	// Passwords and query text are never logged.
	Logf func(format string, args ...any)
	// HandshakeTimeout bounds PRELOGIN+TLS+LOGIN7; zero means 15 s.
	HandshakeTimeout time.Duration
	// AuditLimit is how many audit records are kept (the newest); zero
	// means 10000, negative keeps none.
	AuditLimit int
	// IdleTimeout closes sessions with no request for this long; zero
	// means never (drivers keep pooled connections idle for long).
	IdleTimeout time.Duration
	// Lean serves without SQLite, for benchmarks: logins are checked as
	// always, then requests are answered from prebuilt bytes (SELECT 1,
	// STREAM <bytes>, transactions; see lean.go) by one goroutine per
	// session. DataDir is not used.
	Lean bool
}

// Server is a running TDS test backend. All methods are safe for
// concurrent use.
type Server struct {
	cfg     Config
	ln      net.Listener
	tlsCfg  *tls.Config
	certPEM []byte
	tmpDir  string // removed on Close when DataDir was empty
	store   *store

	wg     sync.WaitGroup
	closed atomic.Bool

	mu       sync.Mutex
	conns    map[*conn]struct{}
	sessions int // logged-in sessions (for MaxConnections)
	open     int // accepted TCP connections not yet closed
	peak     int
	nextSPID uint16
	// freeSPIDs are released SPIDs below nextSPID (see spid.go).
	freeSPIDs spidHeap
	// peakSessions is the highest number of logged-in sessions at once.
	peakSessions int

	locks      *appLocks // sp_getapplock's lock space
	accounts   *logins   // Config.Users, then as changed at run time
	loginDelay atomic.Int64
	redirect   atomic.Pointer[string]
	redirects  atomic.Int64

	auditMu  sync.Mutex
	auditLog []AuditRecord
	auditSeq int64

	refuse atomic.Bool
	delay  atomic.Int64
	// failResets: how many more RESETCONNECTIONs fail (FailResets).
	failResets atomic.Int64

	// Counters for tests.
	logins, failedLogins, resets, attentions atomic.Int64
	// Logins by transport security, to prove which mode a driver used.
	plain, loginOnly, fullTLS, strict atomic.Int64
}

// ErrClosed is returned by Start on a closed server.
var ErrClosed = errors.New("standin: server closed")

// New validates cfg and returns an unstarted server.
func New(cfg Config) (*Server, error) {
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	if cfg.ServerName == "" {
		cfg.ServerName = "standin"
	}
	if cfg.HandshakeTimeout == 0 {
		cfg.HandshakeTimeout = 15 * time.Second
	}
	var problems []string
	if len(cfg.Users) == 0 {
		problems = append(problems, "Users: at least one login is required")
	}
	seen := map[string]bool{"master": true}
	for i, d := range cfg.Databases {
		if !validDBName(d) {
			problems = append(problems, fmt.Sprintf("Databases[%d]: %q is not a plain identifier", i, d))
		}
		if seen[strings.ToLower(d)] && !strings.EqualFold(d, "master") {
			problems = append(problems, fmt.Sprintf("Databases[%d]: %q listed twice", i, d))
		}
		seen[strings.ToLower(d)] = true
	}
	if cfg.DefaultDatabase != "" && !seen[strings.ToLower(cfg.DefaultDatabase)] {
		problems = append(problems, fmt.Sprintf("DefaultDatabase: %q is not in Databases", cfg.DefaultDatabase))
	}
	if cfg.Redirect != "" {
		if _, p, err := net.SplitHostPort(cfg.Redirect); err != nil {
			problems = append(problems, fmt.Sprintf("Redirect: %q is not host:port", cfg.Redirect))
		} else if n, err := strconv.ParseUint(p, 10, 16); err != nil || n == 0 {
			problems = append(problems, fmt.Sprintf("Redirect: bad port in %q", cfg.Redirect))
		}
	}
	if cfg.MaxConnections < 0 {
		problems = append(problems, "MaxConnections: must be >= 0")
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("standin: invalid config:\n  %s", strings.Join(problems, "\n  "))
	}
	s := &Server{cfg: cfg, conns: map[*conn]struct{}{}, nextSPID: 51, locks: newAppLocks(), accounts: newLogins(cfg.Users)}
	s.loginDelay.Store(int64(cfg.LoginDelay))
	s.redirect.Store(&cfg.Redirect)
	s.delay.Store(int64(cfg.Delay))
	return s, nil
}

// Start creates the data files, prepares TLS and starts accepting.
func (s *Server) Start() error {
	if s.closed.Load() {
		return ErrClosed
	}
	names := append([]string{"master"}, s.cfg.Databases...)
	if s.cfg.Lean {
		s.store = namesOnlyStore(names)
	} else if err := s.openData(names); err != nil {
		return err
	}
	st := s.store
	cert := s.cfg.Certificate
	if cert == nil {
		pair, err := testcert.New("localhost", "127.0.0.1", "::1")
		if err != nil {
			st.close()
			return err
		}
		cert, s.certPEM = &pair.TLS, pair.CertPEM
	}
	s.tlsCfg = &tls.Config{Certificates: []tls.Certificate{*cert}}
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		st.close()
		return err
	}
	s.ln = ln
	s.wg.Add(1)
	go s.acceptLoop()
	return nil
}

// openData opens one SQLite file per database under DataDir (a temporary
// directory when empty).
func (s *Server) openData(names []string) error {
	dir := s.cfg.DataDir
	if dir == "" {
		d, err := os.MkdirTemp("", "standin-")
		if err != nil {
			return err
		}
		dir, s.tmpDir = d, d
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	st, err := openStore(dir, names)
	if err != nil {
		return err
	}
	s.store = st
	return nil
}

// Addr is the listening address (host:port).
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Port is the listening TCP port.
func (s *Server) Port() int { return s.ln.Addr().(*net.TCPAddr).Port }

// CertPEM is the PEM of the generated self-signed certificate (nil when
// Config.Certificate was given). Clients verify against it.
func (s *Server) CertPEM() []byte { return s.certPEM }

// WriteCertPEM writes CertPEM to dir/name and returns the path, for
// drivers that take a CA file.
func (s *Server) WriteCertPEM(dir string) (string, error) {
	p := filepath.Join(dir, "standin-ca.pem")
	return p, os.WriteFile(p, s.certPEM, 0o644)
}

// Close stops accepting, closes every connection and the databases, and
// waits for all goroutines. It is idempotent.
func (s *Server) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	var err error
	if s.ln != nil {
		err = s.ln.Close()
	}
	s.DropAll()
	s.wg.Wait()
	if s.store != nil {
		s.store.close()
	}
	if s.tmpDir != "" {
		os.RemoveAll(s.tmpDir)
	}
	return err
}

// OpenConnections is the number of accepted TCP connections that are still
// open (logged in or not). It is the oracle for connection-cap tests.
func (s *Server) OpenConnections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.open
}

// PeakConnections is the highest OpenConnections seen since Start or the
// last ResetPeak.
func (s *Server) PeakConnections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peak
}

// ResetPeak sets the peak to the current number of open connections.
func (s *Server) ResetPeak() {
	s.mu.Lock()
	s.peak = s.open
	s.mu.Unlock()
}

// Sessions is the number of logged-in sessions.
func (s *Server) Sessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sessions
}

// SessionPeers lists the remote addresses (ip:port) of the logged-in
// sessions' connections. A test can look each one up in the kernel's socket
// table to count only sessions whose peer has not closed yet: the stand-in
// notices a close only when its goroutine next runs.
func (s *Server) SessionPeers() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for c := range s.conns {
		if c.admitted {
			out = append(out, c.raw.RemoteAddr().String())
		}
	}
	return out
}

// Stats are cumulative counters.
type Stats struct {
	Logins, FailedLogins, Resets, Attentions int64
	// Redirects counts logins answered with a routing ENVCHANGE.
	Redirects int64
	// PeakSessions is the highest number of logged-in sessions at once
	// since Start.
	PeakSessions int64
	// Successful logins by transport: no TLS, TLS for LOGIN7 only, TLS
	// throughout (TDS 7.x wrapped handshake), TDS 8 strict.
	Plain, LoginOnly, FullTLS, Strict int64
}

// Stats returns the cumulative counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	peak := int64(s.peakSessions)
	s.mu.Unlock()
	return Stats{PeakSessions: peak, Redirects: s.redirects.Load(), Logins: s.logins.Load(), FailedLogins: s.failedLogins.Load(),
		Resets: s.resets.Load(), Attentions: s.attentions.Load(),
		Plain: s.plain.Load(), LoginOnly: s.loginOnly.Load(), FullTLS: s.fullTLS.Load(), Strict: s.strict.Load()}
}

// SPIDs lists the SPIDs of the logged-in sessions, ascending.
func (s *Server) SPIDs() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []int
	for c := range s.conns {
		if c.loggedIn.Load() {
			out = append(out, int(c.spid))
		}
	}
	sort.Ints(out)
	return out
}

// DropAll closes every open connection at once (a FIN, like a server
// process going away). Sessions' open transactions are rolled back.
func (s *Server) DropAll() { s.closeAll(false) }

// ResetAll aborts every open connection with a TCP RST (SO_LINGER 0),
// like a network device killing flows.
func (s *Server) ResetAll() { s.closeAll(true) }

func (s *Server) closeAll(rst bool) {
	s.mu.Lock()
	cs := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		cs = append(cs, c)
	}
	s.mu.Unlock()
	for _, c := range cs {
		c.kill(rst)
	}
}

// Kill closes the connection of one session by SPID and reports whether it
// existed (like KILL <spid>).
func (s *Server) Kill(spid int) bool {
	s.mu.Lock()
	var victim *conn
	for c := range s.conns {
		if int(c.spid) == spid {
			victim = c
		}
	}
	s.mu.Unlock()
	if victim == nil {
		return false
	}
	victim.kill(false)
	return true
}

// RefuseNew makes the server close new connections right after accept
// (on=true) or accept them again (on=false). Existing sessions are kept.
func (s *Server) RefuseNew(on bool) { s.refuse.Store(on) }

// FailResets makes the next n RESETCONNECTION requests fail the way SQL Server fails a reset
// it cannot do (error 18059, class 20, and the connection dropped after the reply), whatever
// the session's state: a test's way to a backend whose reset fails.
func (s *Server) FailResets(n int) { s.failResets.Store(int64(n)) }

// SetDelay changes the per-request delay at run time.
func (s *Server) SetDelay(d time.Duration) { s.delay.Store(int64(d)) }

func (s *Server) logf(format string, args ...any) {
	if s.cfg.Logf != nil {
		s.cfg.Logf(format, args...)
	}
}

func (s *Server) acceptLoop() {
	defer s.wg.Done()
	var backoff time.Duration
	for {
		nc, err := s.ln.Accept()
		if err != nil {
			if s.closed.Load() {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporary(err) {
				// Out of file descriptors and the like: back off and keep going.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				time.Sleep(backoff)
				continue
			}
			s.logf("standin %s: accept: %v", s.cfg.ServerName, err)
			return
		}
		backoff = 0
		if s.refuse.Load() {
			nc.Close()
			continue
		}
		c := &conn{srv: s, raw: nc, dead: make(chan struct{})}
		s.mu.Lock()
		if s.closed.Load() {
			s.mu.Unlock()
			nc.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.open++
		s.peak = max(s.peak, s.open)
		c.spid = s.allocSPIDLocked()
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			c.serve()
		}()
	}
}

func isTemporary(err error) bool {
	t, ok := err.(interface{ Temporary() bool })
	return ok && t.Temporary()
}

// admit counts c's login against MaxConnections.
func (s *Server) admit(c *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cfg.MaxConnections > 0 && s.sessions >= s.cfg.MaxConnections {
		return false
	}
	c.admitted = true
	s.sessions++
	s.peakSessions = max(s.peakSessions, s.sessions)
	return true
}

// forget stops counting c (idempotent).
func (s *Server) forget(c *conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.conns[c]; !ok {
		return
	}
	delete(s.conns, c)
	s.releaseSPIDLocked(c.spid)
	s.open--
	if c.admitted {
		s.sessions--
	}
}

// SetRedirect sets (or with "" clears) the address every login is routed to.
func (s *Server) SetRedirect(hostPort string) { s.redirect.Store(&hostPort) }

func (s *Server) redirectTarget() (string, uint16, bool) {
	hp := *s.redirect.Load()
	if hp == "" {
		return "", 0, false
	}
	host, p, err := net.SplitHostPort(hp)
	if err != nil {
		return "", 0, false
	}
	port, err := strconv.ParseUint(p, 10, 16)
	if err != nil {
		return "", 0, false
	}
	return host, uint16(port), true
}

// appRolePassword returns the configured password of an application role
// (names case-insensitive).
func (s *Server) appRolePassword(role string) (string, bool) {
	for r, p := range s.cfg.AppRoles {
		if strings.EqualFold(r, role) {
			return p, true
		}
	}
	return "", false
}
