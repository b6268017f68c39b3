// Package backend owns the connections tdspool itself opens to SQL Server (the module-owned
// backend leg): dialing with a connect timeout and TCP keepalive, the client side of PRELOGIN
// and TLS (tds.ClientHandshake), and moving bytes without ever blocking the caller.
//
// A Conn is driven by one owner — the session, on Envoy's worker thread — and reports back
// through a Handler from its own goroutine; the owner hops those events onto its thread.
// A Conn is not tied to one session: SetHandler hands it, logged in, to another owner, which is
// what a pool of backend sessions needs.
//
// Flow control both ways, with bounded memory:
//   - backend → owner: at most maxInFlight bytes are handed to the Handler and not yet
//     Consumed; PauseReads stops reading from the socket altogether (a slow client).
//   - owner → backend: Write tries the socket at once (non-blocking); what the kernel does not
//     take is queued and written by a goroutine. Write returns the queued amount, so the owner
//     can stop reading its client, and Drained tells it when the queue is empty again.
//
// An idle Conn holds no read buffer: its goroutine waits for readability in the runtime's
// poller and borrows a buffer only for the read itself.
package backend

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tdspool/tdspool/tds"
)

// Target says where and how to connect.
type Target struct {
	// Addresses are host:port pairs, resolved at every dial (so DNS changes are followed) and
	// tried in turn, starting one further along at each dial.
	Addresses      []string
	ConnectTimeout time.Duration // per address; 0 means 1 s
	KeepAlive      time.Duration // TCP keepalive period; 0 means 15 s, negative disables
	Encryption     tds.ClientEncryption
	TLS            *tls.Config // for every mode but ClientPlaintext
	Prelogin       tds.Prelogin
	PacketSize     int
}

// Handler receives a Conn's events, on the Conn's goroutines (never the owner's thread).
// Calls stop once the owner has called Close.
type Handler interface {
	// Ready: PRELOGIN (and TLS) is done; LOGIN7 may be written with WriteLogin.
	Ready(reply *tds.Prelogin, result tds.EncryptionResult)
	// Data: plaintext bytes from the backend, owned by the receiver. The owner calls
	// Consumed(len(b)) once it has passed them on.
	Data(b []byte)
	// Drained: the write queue is empty again after Write returned a non-zero backlog.
	Drained()
	// Closed: the connection failed (dial, handshake, I/O) or the backend closed it
	// (io.EOF). No other call follows.
	Closed(err error)
}

const (
	maxInFlight = 128 << 10 // backend bytes handed to the owner and not yet consumed
	readSize    = 32 << 10  // one socket read
)

var readBufs = sync.Pool{New: func() any { b := make([]byte, readSize); return &b }}

// Conn is one module-owned backend connection.
type Conn struct {
	target Target
	cancel context.CancelFunc

	alive atomic.Bool // handshake done, no failure, no unexpected bytes while unowned

	mu       sync.Mutex
	cond     *sync.Cond
	handler  Handler
	closed   bool // by the owner
	paused   bool
	inFlight int

	nc  net.Conn
	raw syscall.RawConn
	tls *tds.TLSAdapter // nil on a plaintext (or login-only, after LOGIN7) leg
	enc tds.EncryptionResult

	exited     bool     // the connection's goroutine has ended and the socket is closed
	afterClose []func() // run once exited

	wmu       sync.Mutex
	queue     []byte // bytes the kernel has not taken yet
	flushing  bool   // a goroutine is writing the queue
	wantDrain bool
	werr      error
	clearOut  bool // login-only: LOGIN7 went out encrypted, the rest is plaintext
}

// Dial starts connecting in the background and returns at once. The handler hears Ready or
// Closed.
func Dial(t Target, h Handler) *Conn {
	ctx, cancel := context.WithCancel(context.Background())
	c := &Conn{target: t, cancel: cancel, handler: h}
	c.cond = sync.NewCond(&c.mu)
	go c.run(ctx)
	return c
}

// SetHandler hands the connection to another owner (the next client), or to nobody (nil: idle
// in a pool, where any byte from the backend makes it unusable, see Alive).
func (c *Conn) SetHandler(h Handler) {
	c.mu.Lock()
	c.handler = h
	c.mu.Unlock()
}

func (c *Conn) currentHandler() Handler {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	return c.handler
}

var dialSeq struct {
	sync.Mutex
	n int
}

func (c *Conn) run(ctx context.Context) {
	defer c.exit()
	defer func() {
		if v := recover(); v != nil {
			c.fail(fmt.Errorf("backend connection panic: %v", v))
		}
	}()
	nc, err := c.dial(ctx)
	if err != nil {
		c.fail(err)
		return
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		nc.Close()
		return
	}
	c.nc = nc
	c.mu.Unlock()
	if sc, ok := nc.(syscall.Conn); ok {
		if c.raw, err = sc.SyscallConn(); err != nil {
			c.fail(err)
			return
		}
	} else {
		c.fail(errors.New("backend connection has no file descriptor"))
		return
	}
	reply, leftover, err := c.handshake(nc)
	if err != nil {
		c.fail(err)
		return
	}
	c.mu.Lock()
	if !c.closed { // a Close during the handshake has the last word
		c.alive.Store(true)
	}
	c.mu.Unlock()
	if h := c.currentHandler(); h != nil {
		h.Ready(reply, c.enc)
	}
	if len(leftover) > 0 {
		c.deliver(leftover)
	}
	c.readLoop()
}

// dial tries every address once, starting one further along at each dial.
func (c *Conn) dial(ctx context.Context) (net.Conn, error) {
	addrs := c.target.Addresses
	if len(addrs) == 0 {
		return nil, errors.New("no backend address configured")
	}
	timeout := c.target.ConnectTimeout
	if timeout <= 0 {
		timeout = time.Second
	}
	keepAlive := c.target.KeepAlive
	if keepAlive == 0 {
		keepAlive = 15 * time.Second
	}
	d := net.Dialer{Timeout: timeout, KeepAlive: keepAlive}
	dialSeq.Lock()
	start := dialSeq.n
	dialSeq.n++
	dialSeq.Unlock()
	var errs []error
	for i := range addrs {
		addr := addrs[(start+i)%len(addrs)]
		nc, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			return nc, nil
		}
		errs = append(errs, err)
	}
	return nil, fmt.Errorf("connect: %w", errors.Join(errs...))
}

// handshake runs PRELOGIN and TLS with blocking I/O on the Conn's goroutine. The owner
// bounds it with its own timer (Close unblocks the reads).
func (c *Conn) handshake(nc net.Conn) (*tds.Prelogin, []byte, error) {
	h := tds.NewClientHandshake(c.target.Encryption, c.target.TLS, c.target.Prelogin, c.target.PacketSize)
	if _, err := nc.Write(h.TakeWire()); err != nil {
		h.Close()
		return nil, nil, fmt.Errorf("sending PRELOGIN: %w", err)
	}
	buf := make([]byte, 16<<10)
	for {
		n, rerr := nc.Read(buf)
		if n > 0 {
			ready, err := h.Feed(buf[:n])
			if out := h.TakeWire(); len(out) > 0 {
				if _, werr := nc.Write(out); werr != nil && err == nil {
					err = fmt.Errorf("handshake write: %w", werr)
				}
			}
			if err != nil {
				h.Close()
				return nil, nil, err
			}
			if ready {
				c.mu.Lock()
				c.tls, c.enc = h.TLS(), h.Result()
				c.mu.Unlock()
				return h.Reply(), h.Leftover(), nil
			}
		}
		if rerr != nil {
			h.Close()
			if errors.Is(rerr, io.EOF) {
				return nil, nil, errors.New("the backend closed the connection during the handshake")
			}
			return nil, nil, fmt.Errorf("handshake read: %w", rerr)
		}
	}
}

// readLoop reads until the socket fails or the owner closes, honouring pauses and the
// in-flight bound.
func (c *Conn) readLoop() {
	for {
		if !c.waitForCredit() {
			c.drainUntilEOF()
			return
		}
		var bp *[]byte
		var n int
		var rerr error
		err := c.raw.Read(func(fd uintptr) bool {
			bp = readBufs.Get().(*[]byte)
			n, rerr = syscall.Read(int(fd), *bp)
			if rerr == syscall.EAGAIN {
				readBufs.Put(bp)
				bp = nil
				return false // wait in the poller, holding no buffer
			}
			return true
		})
		if err == nil && rerr != nil {
			err = rerr
		}
		if err == nil && n <= 0 {
			err = io.EOF
		}
		var data []byte
		if err == nil {
			data, err = c.decode((*bp)[:n])
		}
		if bp != nil {
			readBufs.Put(bp)
		}
		if err != nil {
			c.fail(err)
			return
		}
		if len(data) > 0 {
			c.deliver(data)
		}
	}
}

// decode returns the plaintext in wire (a copy: wire is a pooled buffer).
func (c *Conn) decode(wire []byte) ([]byte, error) {
	if c.tls == nil || !c.tls.Encrypting() {
		return append([]byte(nil), wire...), nil
	}
	if err := c.tls.Feed(wire); err != nil {
		return nil, fmt.Errorf("backend TLS: %w", err)
	}
	// A post-handshake message may need an answer (TLS 1.3 key update).
	c.wmu.Lock()
	if out := c.tls.TakeWire(); len(out) > 0 {
		c.writeLocked(out)
	}
	c.wmu.Unlock()
	return c.tls.TakePlain(), nil
}

func (c *Conn) deliver(b []byte) {
	c.mu.Lock()
	c.inFlight += len(b)
	h := c.handler
	closed := c.closed
	c.mu.Unlock()
	switch {
	case closed:
	case h == nil:
		// Bytes while nobody owns the connection (idle in a pool): the session's state is
		// no longer what its last owner left; it must not be lent again.
		c.alive.Store(false)
		c.Consumed(len(b))
	default:
		h.Data(b)
	}
}

// Alive reports whether the connection is usable: logged in or ready, no failure, and no
// bytes arrived while it had no handler. An atomic load; never blocks.
func (c *Conn) Alive() bool { return c.alive.Load() }

// waitForCredit blocks while reads are paused or too much is in flight; false once closed.
func (c *Conn) waitForCredit() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for !c.closed && (c.paused || c.inFlight >= maxInFlight) {
		c.cond.Wait()
	}
	return !c.closed
}

// Consumed returns n bytes of read credit (the owner passed them on).
func (c *Conn) Consumed(n int) {
	c.mu.Lock()
	c.inFlight = max(0, c.inFlight-n)
	c.cond.Broadcast()
	c.mu.Unlock()
}

// PauseReads stops (true) or resumes (false) reading from the backend.
func (c *Conn) PauseReads(pause bool) {
	c.mu.Lock()
	c.paused = pause
	c.cond.Broadcast()
	c.mu.Unlock()
}

// WriteLogin sends the LOGIN7 message: encrypted when the leg uses TLS; in login-only mode
// everything after it is plaintext.
func (c *Conn) WriteLogin(b []byte) (backlog int, err error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.tls != nil {
		if err := c.tls.Write(b); err != nil {
			return 0, fmt.Errorf("backend TLS: %w", err)
		}
		b = c.tls.TakeWire()
		if c.enc == tds.EncryptionLoginOnly {
			c.tls.SwitchToClear()
			c.clearOut = true
		}
	}
	return c.writeLocked(b)
}

// Write sends b (encrypted on a TLS leg) without blocking. backlog is how many bytes wait in
// the queue; when it is not zero, Drained follows once they are written.
func (c *Conn) Write(b []byte) (backlog int, err error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.tls != nil && !c.clearOut {
		if err := c.tls.Write(b); err != nil {
			return 0, fmt.Errorf("backend TLS: %w", err)
		}
		b = c.tls.TakeWire()
	}
	return c.writeLocked(b)
}

// writeLocked (wmu held) writes what the kernel takes now and queues the rest.
func (c *Conn) writeLocked(b []byte) (int, error) {
	if c.werr != nil {
		return len(c.queue), c.werr
	}
	if len(b) == 0 {
		return len(c.queue), nil
	}
	if !c.flushing {
		var n int
		var werr error
		err := c.raw.Write(func(fd uintptr) bool {
			n, werr = syscall.Write(int(fd), b)
			if werr == syscall.EAGAIN {
				n, werr = 0, nil
			}
			return true // never wait here: this is the owner's thread
		})
		if err == nil {
			err = werr
		}
		if err != nil {
			c.werr = fmt.Errorf("backend write: %w", err)
			return 0, c.werr
		}
		b = b[max(n, 0):]
		if len(b) == 0 {
			return 0, nil
		}
	}
	c.queue = append(c.queue, b...)
	c.wantDrain = true
	if !c.flushing {
		c.flushing = true
		go c.flush()
	}
	return len(c.queue), nil
}

// flush writes the queue on its own goroutine, which may wait for the socket.
func (c *Conn) flush() {
	for {
		c.wmu.Lock()
		if len(c.queue) == 0 || c.werr != nil {
			c.flushing = false
			notify := c.wantDrain && c.werr == nil
			c.wantDrain = false
			c.queue = nil
			c.wmu.Unlock()
			if notify {
				if h := c.currentHandler(); h != nil {
					h.Drained()
				}
			}
			return
		}
		b := c.queue
		c.queue = nil
		c.wmu.Unlock()
		if _, err := c.nc.Write(b); err != nil {
			c.wmu.Lock()
			c.werr = fmt.Errorf("backend write: %w", err)
			c.wmu.Unlock()
			// The reader sees the broken socket and reports Closed.
			c.nc.Close()
		}
	}
}

// Backlog is the number of bytes written but not yet taken by the kernel.
func (c *Conn) Backlog() int {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return len(c.queue)
}

// Encryption says how the leg is protected (after Ready).
func (c *Conn) Encryption() tds.EncryptionResult { return c.enc }

// fail reports a connection failure once, unless the owner closed the connection first.
func (c *Conn) fail(err error) {
	c.mu.Lock()
	c.alive.Store(false)
	h := c.handler
	already := c.closed
	c.closed = true
	c.handler = nil
	c.cond.Broadcast()
	nc := c.nc
	c.mu.Unlock()
	c.cancel()
	if nc != nil {
		shutdown(nc)
		nc.Close()
	}
	c.closeTLS()
	if !already && h != nil {
		h.Closed(err)
	}
}

// closeWait bounds how long a closed connection waits for the server to end the session.
const closeWait = time.Second

// Close ends the connection without blocking; no Handler call follows. Safe to call more than
// once. Like tcp_proxy passing a client's FIN on, it half-closes: the server sees the end of
// the stream and ends its session, and the connection's goroutine reads until the server has
// closed (at most closeWait) before it releases the socket and runs the AfterClose functions.
func (c *Conn) Close() {
	c.mu.Lock()
	c.alive.Store(false) // under mu: the handshake's end checks closed and sets alive under it
	c.closed = true
	c.handler = nil
	c.cond.Broadcast()
	nc := c.nc
	exited := c.exited
	c.mu.Unlock()
	c.cancel()
	if nc != nil && !exited {
		if sc, ok := nc.(syscall.Conn); ok {
			if rc, err := sc.SyscallConn(); err == nil {
				_ = rc.Control(func(fd uintptr) { _ = syscall.Shutdown(int(fd), syscall.SHUT_WR) })
			}
		}
		_ = nc.SetReadDeadline(time.Now().Add(closeWait))
	}
}

// AfterClose runs fn once the connection is gone: its goroutine has ended and the socket is
// closed (at once if that already happened). A slot that counts this connection is released
// this way, so the server never holds more sessions than the cap.
func (c *Conn) AfterClose(fn func()) {
	c.mu.Lock()
	if !c.exited {
		c.afterClose = append(c.afterClose, fn)
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	fn()
}

// exit runs when the connection's goroutine ends: the socket is closed and AfterClose
// functions run.
func (c *Conn) exit() {
	c.mu.Lock()
	c.exited, c.closed = true, true
	fns := c.afterClose
	c.afterClose = nil
	nc := c.nc
	c.cond.Broadcast()
	c.mu.Unlock()
	if nc != nil {
		nc.Close()
	}
	c.closeTLS()
	for _, fn := range fns {
		fn()
	}
}

// drainUntilEOF discards what the server still sends after Close, until it closes its side
// or the close deadline passes.
func (c *Conn) drainUntilEOF() {
	if c.raw == nil {
		return
	}
	for {
		var n int
		var rerr error
		err := c.raw.Read(func(fd uintptr) bool {
			bp := readBufs.Get().(*[]byte)
			n, rerr = syscall.Read(int(fd), *bp)
			readBufs.Put(bp)
			return rerr != syscall.EAGAIN
		})
		if err != nil || rerr != nil || n <= 0 {
			return
		}
	}
}

// shutdown ends the TCP connection at once. Close alone releases the descriptor only when
// the reader goroutine (parked in the poller) has run, so under load the server would see the
// session alive after its slot went back — and the next session's login would exceed the cap.
func shutdown(nc net.Conn) {
	if sc, ok := nc.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			_ = rc.Control(func(fd uintptr) { _ = syscall.Shutdown(int(fd), syscall.SHUT_RDWR) })
		}
	}
}

func (c *Conn) closeTLS() {
	c.mu.Lock()
	a := c.tls
	c.mu.Unlock()
	if a != nil {
		a.Close()
	}
}
