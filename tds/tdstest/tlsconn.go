package tdstest

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"

	"github.com/tdspool/tdspool/tds"
)

// preloginTLSConn is the net.Conn handed to tls.Server for TDS 7.x
// encryption [MS-TDS §2.2.6.5]: while wrapping, TLS handshake records
// travel as payloads of PRELOGIN (0x12) packets; afterwards TLS records go
// straight onto TCP.
//
// Flush rule (the same one go-mssqldb's tlsHandshakeConn uses on the client
// side): writes are buffered and sent as one PRELOGIN message, with EOM on
// its last packet, when the TLS engine next waits for the peer (Read) and
// once more after Handshake returns.
//
// After the handshake, Read returns at most one TLS record per call, so
// crypto/tls never buffers bytes beyond the record it needs. That matters
// for login-only encryption, where the bytes after the encrypted LOGIN7
// packet are plaintext TDS that the server must read from the raw conn.
//
// It is used by one goroutine at a time (the connection's handshake code);
// it is not safe for concurrent use.
type preloginTLSConn struct {
	net.Conn
	wrapping bool
	spid     uint16
	rbuf     []byte // unread payload of the current PRELOGIN packet
	wbuf     []byte // handshake bytes not yet framed
	rec      []byte // unread part of the current TLS record (after wrapping)
}

func (c *preloginTLSConn) Read(p []byte) (int, error) {
	if c.wrapping {
		if err := c.Flush(); err != nil {
			return 0, err
		}
		for len(c.rbuf) == 0 {
			var hdr [tds.HeaderSize]byte
			if _, err := io.ReadFull(c.Conn, hdr[:]); err != nil {
				return 0, err
			}
			h, err := tds.DecodeHeader(hdr[:])
			if err != nil {
				return 0, err
			}
			if h.Type != tds.PacketPrelogin {
				return 0, fmt.Errorf("tdstest: %s packet during the TLS handshake", h.Type)
			}
			c.rbuf = make([]byte, int(h.Length)-tds.HeaderSize)
			if _, err := io.ReadFull(c.Conn, c.rbuf); err != nil {
				return 0, err
			}
		}
		n := copy(p, c.rbuf)
		c.rbuf = c.rbuf[n:]
		return n, nil
	}
	if len(c.rec) == 0 {
		var hdr [5]byte // TLS record header: type(1) version(2) length(2 BE)
		if _, err := io.ReadFull(c.Conn, hdr[:]); err != nil {
			return 0, err
		}
		n := int(binary.BigEndian.Uint16(hdr[3:]))
		c.rec = make([]byte, 5+n)
		copy(c.rec, hdr[:])
		if _, err := io.ReadFull(c.Conn, c.rec[5:]); err != nil {
			return 0, err
		}
	}
	n := copy(p, c.rec)
	c.rec = c.rec[n:]
	return n, nil
}

func (c *preloginTLSConn) Write(p []byte) (int, error) {
	if c.wrapping {
		c.wbuf = append(c.wbuf, p...)
		return len(p), nil
	}
	return c.Conn.Write(p)
}

// Flush sends the buffered handshake bytes as one PRELOGIN message.
func (c *preloginTLSConn) Flush() error {
	if len(c.wbuf) == 0 {
		return nil
	}
	out := tds.AppendPacketsSPID(nil, tds.PacketPrelogin, 0, c.spid, c.wbuf, tds.DefaultPacketSize)
	c.wbuf = c.wbuf[:0]
	_, err := c.Conn.Write(out)
	return err
}

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
			return 0, 0, nil, fmt.Errorf("tdstest: %s packet inside a %s message", h.Type, typ)
		}
		if len(payload)+len(body) > maxMsg {
			return 0, 0, nil, fmt.Errorf("tdstest: message larger than %d bytes", maxMsg)
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
		return h, nil, fmt.Errorf("tdstest: packet of %d bytes exceeds the packet size %d", h.Length, maxPkt)
	}
	body := make([]byte, int(h.Length)-tds.HeaderSize)
	if _, err := io.ReadFull(r, body); err != nil {
		return h, nil, err
	}
	return h, body, nil
}
