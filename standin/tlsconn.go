package standin

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"sync"

	"github.com/tdspool/tdspool/tds"
)

// tlsTDSConn runs TLS inside TDS 7.x [MS-TDS §2.2.6.5] with blocking I/O:
// it drives tds.TLSAdapter (sans-I/O: handshake flights wrapped in
// PRELOGIN packets, raw TLS records afterwards, and in login-only mode the
// switch back to plaintext after LOGIN7, sniffed per record) from the
// connection's goroutines. Read is called by one goroutine at a time
// (handshake, then the request reader) and Write by one (handshake, then
// the executor); they may run concurrently. wmu keeps the adapter's output
// in order on the socket: without it, bytes taken by the reader (handshake
// or alert output) and by the writer could be written out of order.
type tlsTDSConn struct {
	raw   io.ReadWriter
	a     *tds.TLSAdapter
	wmu   sync.Mutex
	plain []byte // decrypted bytes not yet returned by Read
	rbuf  []byte
}

// newTLSTDSConn runs the server side of the handshake on raw.
func newTLSTDSConn(raw io.ReadWriter, cfg *tls.Config, mode tds.TLSMode) (*tlsTDSConn, error) {
	c := &tlsTDSConn{raw: raw, a: tds.NewTLSServer(cfg, mode, tds.DefaultPacketSize), rbuf: make([]byte, 32<<10)}
	for !c.a.HandshakeDone() {
		if err := c.fill(); err != nil {
			c.a.Close()
			return nil, err
		}
	}
	return c, nil
}

// fill reads once from raw and feeds the adapter; whatever it has to say
// to the peer (handshake flights) goes out at once.
func (c *tlsTDSConn) fill() error {
	n, err := c.raw.Read(c.rbuf)
	if n > 0 {
		ferr := c.a.Feed(c.rbuf[:n])
		if werr := c.flush(); ferr == nil {
			ferr = werr
		}
		if ferr != nil {
			return ferr
		}
	}
	return err
}

func (c *tlsTDSConn) flush() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if out := c.a.TakeWire(); len(out) > 0 {
		_, err := c.raw.Write(out)
		return err
	}
	return nil
}

func (c *tlsTDSConn) Read(p []byte) (int, error) {
	for len(c.plain) == 0 {
		if c.plain = c.a.TakePlain(); len(c.plain) > 0 {
			break
		}
		if err := c.fill(); err != nil {
			if c.plain = c.a.TakePlain(); len(c.plain) > 0 {
				break // return what arrived; the error comes on the next Read
			}
			return 0, err
		}
	}
	n := copy(p, c.plain)
	c.plain = c.plain[n:]
	return n, nil
}

// Write encrypts (or, after a login-only LOGIN7, passes through) p.
func (c *tlsTDSConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.a.Write(p); err != nil {
		return 0, err
	}
	if _, err := c.raw.Write(c.a.TakeWire()); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Close stops the adapter's engine goroutine (not the socket).
func (c *tlsTDSConn) Close() { c.a.Close() }

// prefixConn replays bytes already read (the sniffed first byte) before
// reading from the connection.
type prefixConn struct {
	net.Conn
	prefix []byte
}

func (c *prefixConn) Read(p []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(p, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// readMessage reads one whole TDS message (all packets up to EOM) from r.
// maxPkt bounds each packet's length and maxMsg the payload, so a hostile
// client cannot make the server allocate without limit.
func readMessage(r io.Reader, maxPkt, maxMsg int) (tds.PacketType, tds.PacketStatus, []byte, error) {
	var payload []byte
	var typ tds.PacketType
	var status tds.PacketStatus
	for first := true; ; first = false {
		h, body, err := readPacket(r, maxPkt)
		if err != nil {
			return 0, 0, nil, err
		}
		if first {
			typ, status = h.Type, h.Status&^tds.StatusEOM
		} else if h.Type != typ {
			return 0, 0, nil, fmt.Errorf("standin: %s packet inside a %s message", h.Type, typ)
		}
		if len(payload)+len(body) > maxMsg {
			return 0, 0, nil, fmt.Errorf("standin: message larger than %d bytes", maxMsg)
		}
		payload = append(payload, body...)
		if h.Status&tds.StatusEOM != 0 {
			status |= h.Status & tds.StatusIgnore
			return typ, status, payload, nil
		}
	}
}

func readPacket(r io.Reader, maxPkt int) (tds.Header, []byte, error) {
	var hdr [tds.HeaderSize]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return tds.Header{}, nil, err
	}
	h, err := tds.DecodeHeader(hdr[:])
	if err != nil {
		return h, nil, err
	}
	if int(h.Length) > maxPkt {
		return h, nil, fmt.Errorf("standin: packet of %d bytes exceeds the packet size %d", h.Length, maxPkt)
	}
	body := make([]byte, int(h.Length)-tds.HeaderSize)
	if _, err := io.ReadFull(r, body); err != nil {
		return h, nil, err
	}
	return h, body, nil
}
