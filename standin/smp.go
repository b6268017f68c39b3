package standin

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/tdspool/tdspool/tds"
)

// MARS: when Config.MARS is set and the client asks for it in PRELOGIN,
// everything after PRELOGIN (and TLS) travels in SMP packets [MC-SMP]:
// a 16-byte header (SMID 0x53, FLAGS SYN/ACK/FIN/DATA, SID, LENGTH,
// SEQNUM, WNDW) in front of each piece of a logical TDS stream. Each SMP
// session is one such stream; LOGIN7 comes on the first, later SYNs open
// more. All streams share the one SQL session (as MARS batches share a
// connection's state) and their requests run one at a time in arrival
// order. Flow control: the server grants the client a window of
// smpWindow packets beyond the last DATA it received (an ACK after each),
// and sends DATA only up to the window the client grants.

const (
	smpID        = 0x53
	smpHeaderLen = 16
	smpSYN       = 0x01
	smpACK       = 0x02
	smpFIN       = 0x04
	smpDATA      = 0x08
	smpWindow    = 4
	smpMaxData   = 1 << 20
)

type smpHeader struct {
	flags  uint8
	sid    uint16
	length uint32
	seq    uint32
	wndw   uint32
}

func appendSMP(b []byte, h smpHeader, data []byte) []byte {
	b = append(b, smpID, h.flags)
	b = binary.LittleEndian.AppendUint16(b, h.sid)
	b = binary.LittleEndian.AppendUint32(b, uint32(smpHeaderLen+len(data)))
	b = binary.LittleEndian.AppendUint32(b, h.seq)
	b = binary.LittleEndian.AppendUint32(b, h.wndw)
	return append(b, data...)
}

func decodeSMPHeader(p []byte) (smpHeader, error) {
	if len(p) < smpHeaderLen {
		return smpHeader{}, fmt.Errorf("standin: SMP header of %d bytes", len(p))
	}
	if p[0] != smpID {
		return smpHeader{}, fmt.Errorf("standin: not an SMP packet (first byte 0x%02X)", p[0])
	}
	h := smpHeader{flags: p[1], sid: binary.LittleEndian.Uint16(p[2:]), length: binary.LittleEndian.Uint32(p[4:]),
		seq: binary.LittleEndian.Uint32(p[8:]), wndw: binary.LittleEndian.Uint32(p[12:])}
	switch h.flags {
	case smpSYN, smpACK, smpFIN:
		if h.length != smpHeaderLen {
			return h, fmt.Errorf("standin: SMP flags 0x%02X with length %d", h.flags, h.length)
		}
	case smpDATA:
		if h.length < smpHeaderLen || h.length > smpHeaderLen+smpMaxData {
			return h, fmt.Errorf("standin: SMP DATA length %d", h.length)
		}
	default:
		return h, fmt.Errorf("standin: SMP flags 0x%02X", h.flags)
	}
	return h, nil
}

// smpMux demultiplexes one transport into SMP streams.
type smpMux struct {
	raw    io.ReadWriter
	wmu    sync.Mutex // one SMP packet at a time on raw
	mu     sync.Mutex
	byID   map[uint16]*smpStream
	accept chan *smpStream
	done   chan struct{}
	err    error
}

func newSMPMux(raw io.ReadWriter) *smpMux {
	m := &smpMux{raw: raw, byID: map[uint16]*smpStream{}, accept: make(chan *smpStream, 16), done: make(chan struct{})}
	go m.readLoop()
	return m
}

func (m *smpMux) write(h smpHeader, data []byte) error {
	m.wmu.Lock()
	defer m.wmu.Unlock()
	_, err := m.raw.Write(appendSMP(nil, h, data))
	return err
}

func (m *smpMux) readLoop() {
	defer func() {
		if r := recover(); r != nil {
			m.fail(fmt.Errorf("standin: SMP reader panic: %v", r))
		}
	}()
	var hdr [smpHeaderLen]byte
	for {
		if _, err := io.ReadFull(m.raw, hdr[:]); err != nil {
			m.fail(err)
			return
		}
		h, err := decodeSMPHeader(hdr[:])
		if err != nil {
			m.fail(err)
			return
		}
		var data []byte
		if h.flags == smpDATA {
			data = make([]byte, h.length-smpHeaderLen)
			if _, err := io.ReadFull(m.raw, data); err != nil {
				m.fail(err)
				return
			}
		}
		m.mu.Lock()
		st := m.byID[h.sid]
		if h.flags == smpSYN {
			if st != nil {
				m.mu.Unlock()
				m.fail(fmt.Errorf("standin: SMP SYN for open session %d", h.sid))
				return
			}
			st = newSMPStream(m, h.sid, h.wndw)
			m.byID[h.sid] = st
		}
		m.mu.Unlock()
		if st == nil {
			m.fail(fmt.Errorf("standin: SMP %02X for unknown session %d", h.flags, h.sid))
			return
		}
		switch h.flags {
		case smpSYN:
			select {
			case m.accept <- st:
			default:
				m.fail(errors.New("standin: too many SMP sessions opening at once"))
				return
			}
		case smpACK:
			st.grant(h.wndw)
		case smpFIN:
			st.finish()
			m.write(smpHeader{flags: smpFIN, sid: h.sid, seq: st.sentSeq(), wndw: st.recvWindow()}, nil)
			m.mu.Lock()
			delete(m.byID, h.sid)
			m.mu.Unlock()
		case smpDATA:
			st.grant(h.wndw)
			st.deliver(h.seq, data)
		}
	}
}

// fail ends every stream: the transport is gone or broke the protocol.
func (m *smpMux) fail(err error) {
	m.mu.Lock()
	if m.err == nil {
		m.err = err
		close(m.done)
	}
	for _, st := range m.byID {
		st.finish()
	}
	m.mu.Unlock()
}

// smpStream is one SMP session: an io.ReadWriter of TDS bytes.
type smpStream struct {
	m   *smpMux
	sid uint16

	mu      sync.Mutex
	cond    *sync.Cond
	in      [][]byte // DATA payloads not yet read
	cur     []byte
	closed  bool
	recvSeq uint32 // last DATA SEQNUM received
	sendSeq uint32 // last DATA SEQNUM sent
	peerWnd uint32 // highest SEQNUM the client lets us send
	out     [][]byte
	writing bool
}

func newSMPStream(m *smpMux, sid uint16, wndw uint32) *smpStream {
	st := &smpStream{m: m, sid: sid, peerWnd: wndw}
	st.cond = sync.NewCond(&st.mu)
	return st
}

func (st *smpStream) deliver(seq uint32, data []byte) {
	st.mu.Lock()
	st.recvSeq = seq
	st.in = append(st.in, data)
	st.cond.Broadcast()
	st.mu.Unlock()
}

func (st *smpStream) grant(wndw uint32) {
	st.mu.Lock()
	if int32(wndw-st.peerWnd) > 0 {
		st.peerWnd = wndw
	}
	st.mu.Unlock()
	st.pump()
}

func (st *smpStream) finish() {
	st.mu.Lock()
	st.closed = true
	st.cond.Broadcast()
	st.mu.Unlock()
}

func (st *smpStream) sentSeq() uint32 {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.sendSeq
}

func (st *smpStream) recvWindow() uint32 {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.recvSeq + smpWindow
}

// Read returns TDS bytes of this stream; after each DATA packet consumed
// the client's window is moved on with an ACK.
func (st *smpStream) Read(p []byte) (int, error) {
	st.mu.Lock()
	for len(st.cur) == 0 {
		if len(st.in) > 0 {
			st.cur, st.in = st.in[0], st.in[1:]
			wnd := st.recvSeq + smpWindow
			st.mu.Unlock()
			if err := st.m.write(smpHeader{flags: smpACK, sid: st.sid, seq: st.sentSeq(), wndw: wnd}, nil); err != nil {
				return 0, err
			}
			st.mu.Lock()
			continue
		}
		if st.closed {
			st.mu.Unlock()
			return 0, io.EOF
		}
		st.cond.Wait()
	}
	n := copy(p, st.cur)
	st.cur = st.cur[n:]
	st.mu.Unlock()
	return n, nil
}

// Write queues p as DATA packets, one per TDS packet in it, and returns at
// once; they go out as the client's window allows, so a reply never waits
// for the client to read another session's results.
func (st *smpStream) Write(p []byte) (int, error) {
	select {
	case <-st.m.done:
		return 0, st.m.err
	default:
	}
	rest := p
	st.mu.Lock()
	for len(rest) > 0 {
		n := len(rest)
		if len(rest) >= tds.HeaderSize {
			if h, err := tds.DecodeHeader(rest[:tds.HeaderSize]); err == nil && int(h.Length) <= len(rest) && h.Length >= tds.HeaderSize {
				n = int(h.Length)
			}
		}
		st.out = append(st.out, append([]byte(nil), rest[:n]...))
		rest = rest[n:]
	}
	st.mu.Unlock()
	st.pump()
	return len(p), nil
}

// pump sends queued DATA within the client's window.
func (st *smpStream) pump() {
	for {
		st.mu.Lock()
		if st.writing || len(st.out) == 0 || int32(st.peerWnd-st.sendSeq) <= 0 {
			st.mu.Unlock()
			return
		}
		st.writing = true
		data := st.out[0]
		st.out = st.out[1:]
		st.sendSeq++
		h := smpHeader{flags: smpDATA, sid: st.sid, seq: st.sendSeq, wndw: st.recvSeq + smpWindow}
		st.mu.Unlock()
		err := st.m.write(h, data)
		st.mu.Lock()
		st.writing = false
		st.mu.Unlock()
		if err != nil {
			st.m.fail(err)
			return
		}
	}
}
