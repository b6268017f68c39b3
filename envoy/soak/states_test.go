package soak

import (
	"crypto/tls"
	"database/sql"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tdspool/tdspool/deployments/envoyconfig"
	"github.com/tdspool/tdspool/internal/stack"
	"github.com/tdspool/tdspool/internal/testcert"
	"github.com/tdspool/tdspool/standin"
	"github.com/tdspool/tdspool/standin/standintest"
	"github.com/tdspool/tdspool/tds"
)

// seen is what one hostile client saw: the ERROR numbers of every message it got, whether a
// LOGINACK or a final DONE without error came, and how its connection ended.
type seen struct {
	errs     []int32
	loginAck bool
	doneOK   int  // final DONEs without the error bit
	attnAck  bool // a DONE with the ATTENTION bit
	closed   bool // the proxy closed the connection (EOF or reset)
	silent   bool // the read deadline passed with the connection open
	took     time.Duration
}

func (s seen) String() string {
	var parts []string
	for _, n := range s.errs {
		parts = append(parts, fmt.Sprintf("error %d", n))
	}
	if s.loginAck {
		parts = append(parts, "LOGINACK")
	}
	if s.doneOK > 0 {
		parts = append(parts, fmt.Sprintf("%d DONE", s.doneOK))
	}
	if s.attnAck {
		parts = append(parts, "DONE(ATTN)")
	}
	switch {
	case s.closed:
		parts = append(parts, "closed")
	case s.silent:
		parts = append(parts, "silent")
	}
	return strings.Join(parts, ", ") + fmt.Sprintf(" after %s", s.took.Round(10*time.Millisecond))
}

// watch reads what the proxy sends for up to d (or until it closes), decoding every reply
// message it can; a PRELOGIN answer is an option table, not tokens, and is skipped.
func watch(c net.Conn, asm *tds.Reassembler, d time.Duration) seen {
	start := time.Now()
	var s seen
	_ = c.SetReadDeadline(start.Add(d))
	buf := make([]byte, 32<<10)
	for {
		for {
			m, err := asm.Next()
			if err != nil {
				break
			}
			var sc tds.Scanner
			evs, _ := sc.Feed(m.Payload)
			for _, ev := range evs {
				switch {
				case ev.Token == tds.TokenError:
					s.errs = append(s.errs, ev.Message.Number)
				case ev.Token == tds.TokenLoginAck:
					s.loginAck = true
				case ev.Token == tds.TokenDone && ev.Done.Status&tds.DoneAttn != 0:
					s.attnAck = true
				case ev.Token == tds.TokenDone && ev.Done.Status&(tds.DoneMore|tds.DoneError) == 0:
					s.doneOK++
				}
			}
		}
		n, err := c.Read(buf)
		if n > 0 {
			asm.Feed(buf[:n])
			continue
		}
		var ne net.Error
		switch {
		case errors.As(err, &ne) && ne.Timeout():
			s.silent = true
		case err != nil:
			s.closed = true
		}
		s.took = time.Since(start)
		return s
	}
}

// hostileState is a client that drives a session to one state and then misbehaves there.
type hostileState struct {
	name string
	// run sends its bytes and returns what it saw.
	run func(c net.Conn, database string) seen
	// want checks what the client saw; "" is fine.
	want func(s seen) string
}

func send(c net.Conn, typ tds.PacketType, status tds.PacketStatus, payload []byte, pktSize int) {
	_, _ = c.Write(tds.AppendPackets(nil, typ, status, payload, pktSize))
}

// prelogged runs a valid PRELOGIN and returns the reassembler past its answer.
func prelogged(c net.Conn) *tds.Reassembler { return preloggedWith(c, preloginBytes()) }

// preloggedWith sends a PRELOGIN and returns the reassembler past its answer (or where the
// read failed).
func preloggedWith(c net.Conn, prelogin []byte) *tds.Reassembler {
	var asm tds.Reassembler
	send(c, tds.PacketPrelogin, 0, prelogin, 4096)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 4096)
	for {
		if _, err := asm.Next(); err == nil {
			return &asm
		}
		n, err := c.Read(buf)
		asm.Feed(buf[:n])
		if err != nil {
			return &asm
		}
	}
}

func loginWithSize(database string, pktSize uint32) []byte {
	l := tds.Login7{TDSVersion: tds.TDSVersion74, PacketSize: pktSize, UserName: demoUser, Password: tds.NewPassword(demoPassword),
		Database: database, ServerName: "bucket-001", AppName: "soak", HostName: "h", CltIntName: "raw"}
	return l.AppendLogin7(nil)
}

// loggedIn logs in with a packet size; the caller goes on from the reassembler.
func loggedIn(c net.Conn, database string, pktSize uint32) (*tds.Reassembler, seen) {
	asm := prelogged(c)
	send(c, tds.PacketLogin7, 0, loginWithSize(database, pktSize), 4096)
	return asm, watchUntil(c, asm, 8*time.Second, func(s seen) bool { return s.loginAck || len(s.errs) > 0 })
}

// afterLogin makes a case that logs in with a packet size and, once the login is
// acknowledged, goes on with fn; a refused login is the case's result.
func afterLogin(pktSize uint32, fn func(c net.Conn, database string, asm *tds.Reassembler) seen) func(c net.Conn, database string) seen {
	return func(c net.Conn, database string) seen {
		asm, s := loggedIn(c, database, pktSize)
		if !s.loginAck {
			return s
		}
		return fn(c, database, asm)
	}
}

// watchUntil is watch that returns as soon as done says so (after each read).
func watchUntil(c net.Conn, asm *tds.Reassembler, d time.Duration, done func(seen) bool) seen {
	start := time.Now()
	var total seen
	for time.Since(start) < d {
		s := watch(c, asm, min(200*time.Millisecond, d-time.Since(start)))
		total.errs = append(total.errs, s.errs...)
		total.loginAck = total.loginAck || s.loginAck
		total.attnAck = total.attnAck || s.attnAck
		total.doneOK += s.doneOK
		if s.closed || done(total) {
			total.closed = s.closed
			total.took = time.Since(start)
			return total
		}
	}
	total.silent = true
	total.took = time.Since(start)
	return total
}

// query sends a batch (at pktSize) and waits for its final DONE, an error or the close.
func query(c net.Conn, asm *tds.Reassembler, sql string, pktSize int) seen {
	send(c, tds.PacketSQLBatch, 0, batch(sql), pktSize)
	return watchUntil(c, asm, 8*time.Second, func(s seen) bool { return s.doneOK > 0 || len(s.errs) > 0 })
}

func wantError(numbers ...int32) func(seen) string {
	return func(s seen) string {
		for _, got := range s.errs {
			for _, n := range numbers {
				if got == n {
					return ""
				}
			}
		}
		return fmt.Sprintf("want ERROR %v", numbers)
	}
}

// wantClosedWithin: the connection is closed (with or without an ERROR) within d.
func wantClosedWithin(d time.Duration) func(seen) string {
	return func(s seen) string {
		if !s.closed || s.took > d {
			return fmt.Sprintf("want the connection closed within %s", d)
		}
		return ""
	}
}

// wantErrorOrClose: a TDS ERROR (the session may stay) or a close, at once.
func wantErrorOrClose(s seen) string {
	if len(s.errs) == 0 && (!s.closed || s.took > atOnce) {
		return "want an ERROR or the connection closed at once"
	}
	return ""
}

func wantServed(s seen) string {
	if len(s.errs) > 0 || s.doneOK == 0 || s.closed {
		return "want the query answered and the session kept"
	}
	return ""
}

// preloggedTLS runs a PRELOGIN asking for full encryption and reads its answer.
func preloggedTLS(c net.Conn) *tds.Reassembler {
	pre := tds.Prelogin{HasVersion: true, Version: 0x0C000000, HasEncryption: true, Encryption: tds.EncryptOn}
	return preloggedWith(c, pre.AppendPrelogin(nil))
}

// tds8ClientHello is the first flight of a TDS 8 client (a TLS ClientHello, ALPN tds/8.0).
func tds8ClientHello() []byte {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	go func() {
		_ = tls.Client(a, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"tds/8.0"}, ServerName: "localhost"}).Handshake()
	}()
	buf := make([]byte, 16<<10)
	_ = b.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, _ := b.Read(buf)
	return buf[:n]
}

// drip writes p a byte a second (the last byte never) while it watches for the proxy's answer
// or close, which it returns with the time from the first byte.
func drip(c net.Conn, asm *tds.Reassembler, p []byte) seen {
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for i := 0; i < len(p)-1; i++ {
			if _, err := c.Write(p[i : i+1]); err != nil {
				return
			}
			select {
			case <-stop:
				return
			case <-time.After(time.Second):
			}
		}
	}()
	return watch(c, asm, 3*stateLoginTimeout)
}

// stateLoginTimeout is the proxy's login_timeout in TestHostileInputAtEveryState: it bounds
// every client that stalls before its login completes.
const stateLoginTimeout = 5 * time.Second

// atOnce bounds an answer that needs no timeout to pass, on a busy machine.
const atOnce = 2 * time.Second

var hostileStates = []hostileState{
	{name: "PRELOGIN option offset past the payload", run: func(c net.Conn, _ string) seen {
		body := preloginBytes()
		binary.BigEndian.PutUint16(body[1:3], 0xfff0)
		send(c, tds.PacketPrelogin, 0, body, 4096)
		return watch(c, &tds.Reassembler{}, 6*time.Second)
	}, want: wantClosedWithin(atOnce)},
	{name: "PRELOGIN option length past the payload", run: func(c net.Conn, _ string) seen {
		body := preloginBytes()
		binary.BigEndian.PutUint16(body[3:5], 0x7fff)
		send(c, tds.PacketPrelogin, 0, body, 4096)
		return watch(c, &tds.Reassembler{}, 6*time.Second)
	}, want: wantClosedWithin(atOnce)},
	{name: "PRELOGIN with no terminator", run: func(c net.Conn, _ string) seen {
		body := preloginBytes()
		body[len(body)-1] = 0 // make the table's last byte a bogus option
		send(c, tds.PacketPrelogin, 0, body[:5], 4096)
		return watch(c, &tds.Reassembler{}, 6*time.Second)
	}, want: wantClosedWithin(atOnce)},
	{name: "packet length below the header", run: func(c net.Conn, _ string) seen {
		p := tds.AppendPackets(nil, tds.PacketPrelogin, 0, preloginBytes(), 4096)
		binary.BigEndian.PutUint16(p[2:4], 4)
		_, _ = c.Write(p)
		return watch(c, &tds.Reassembler{}, 6*time.Second)
	}, want: wantClosedWithin(atOnce)},
	{name: "PRELOGIN packet longer than it is, then nothing", run: func(c net.Conn, _ string) seen {
		p := tds.AppendPackets(nil, tds.PacketPrelogin, 0, preloginBytes(), 4096)
		binary.BigEndian.PutUint16(p[2:4], 4000)
		_, _ = c.Write(p)
		return watch(c, &tds.Reassembler{}, 10*time.Second)
	}, want: wantClosedWithin(stateLoginTimeout + 1500*time.Millisecond)},
	{name: "PRELOGIN without EOM, then nothing", run: func(c net.Conn, _ string) seen {
		p := tds.AppendPackets(nil, tds.PacketPrelogin, 0, preloginBytes(), 4096)
		p[1] = 0
		_, _ = c.Write(p)
		return watch(c, &tds.Reassembler{}, 10*time.Second)
	}, want: wantClosedWithin(stateLoginTimeout + 1500*time.Millisecond)},
	{name: "a batch instead of PRELOGIN", run: func(c net.Conn, _ string) seen {
		send(c, tds.PacketSQLBatch, 0, batch("SELECT 1"), 4096)
		return watch(c, &tds.Reassembler{}, 6*time.Second)
	}, want: wantClosedWithin(atOnce)},
	{name: "slow loris PRELOGIN, a byte a second", run: func(c net.Conn, _ string) seen {
		asm := &tds.Reassembler{}
		p := tds.AppendPackets(nil, tds.PacketPrelogin, 0, preloginBytes(), 4096)
		return drip(c, asm, p)
	}, want: wantClosedWithin(stateLoginTimeout + 2*time.Second)},
	{name: "slow loris LOGIN7, a byte a second", run: func(c net.Conn, database string) seen {
		asm := prelogged(c)
		p := tds.AppendPackets(nil, tds.PacketLogin7, 0, loginWithSize(database, 4096), 4096)
		return drip(c, asm, p)
	}, want: wantClosedWithin(stateLoginTimeout + 2*time.Second)},
	{name: "TDS 7 TLS handshake cut short, then silence", run: func(c net.Conn, _ string) seen {
		asm := preloggedTLS(c)
		cli := tds.NewTLSClient(&tls.Config{InsecureSkipVerify: true}, tds.TLSModeFull, 4096)
		defer cli.Close()
		hello := cli.TakeWire()
		_, _ = c.Write(hello[:len(hello)/2])
		return watch(c, asm, 3*stateLoginTimeout)
	}, want: wantClosedWithin(stateLoginTimeout + 2*time.Second)},
	{name: "TDS 7 TLS handshake done, then silence", run: func(c net.Conn, _ string) seen {
		asm := preloggedTLS(c)
		cli := tds.NewTLSClient(&tls.Config{InsecureSkipVerify: true}, tds.TLSModeFull, 4096)
		defer cli.Close()
		buf := make([]byte, 16<<10)
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		for !cli.HandshakeDone() {
			if w := cli.TakeWire(); len(w) > 0 {
				_, _ = c.Write(w)
			}
			n, err := c.Read(buf)
			if err != nil {
				return seen{closed: true}
			}
			if cli.Feed(buf[:n]) != nil {
				return seen{closed: true}
			}
		}
		if w := cli.TakeWire(); len(w) > 0 {
			_, _ = c.Write(w)
		}
		return watch(c, asm, 3*stateLoginTimeout)
	}, want: wantClosedWithin(stateLoginTimeout + 2*time.Second)},
	{name: "TDS 8 ClientHello cut short, then silence", run: func(c net.Conn, _ string) seen {
		hello := tds8ClientHello()
		_, _ = c.Write(hello[:len(hello)/2])
		return watch(c, &tds.Reassembler{}, 3*stateLoginTimeout)
	}, want: wantClosedWithin(stateLoginTimeout + 2*time.Second)},
	{name: "TDS 8 handshake done, then silence", run: func(c net.Conn, _ string) seen {
		tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"tds/8.0"}, ServerName: "localhost"})
		_ = tc.SetDeadline(time.Now().Add(5 * time.Second))
		if err := tc.Handshake(); err != nil {
			return seen{closed: true}
		}
		return watch(tc, &tds.Reassembler{}, 3*stateLoginTimeout)
	}, want: wantClosedWithin(stateLoginTimeout + 2*time.Second)},
	{name: "TDS 8 PRELOGIN with a lying length inside TLS", run: func(c net.Conn, _ string) seen {
		tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"tds/8.0"}, ServerName: "localhost"})
		_ = tc.SetDeadline(time.Now().Add(5 * time.Second))
		if err := tc.Handshake(); err != nil {
			return seen{closed: true}
		}
		p := tds.AppendPackets(nil, tds.PacketPrelogin, 0, preloginBytes(), 4096)
		binary.BigEndian.PutUint16(p[2:4], 3)
		_, _ = tc.Write(p)
		return watch(tc, &tds.Reassembler{}, 3*stateLoginTimeout)
	}, want: wantClosedWithin(atOnce)},
	{name: "LOGIN7 offsets out of range", run: func(c net.Conn, database string) seen {
		asm := prelogged(c)
		l := loginWithSize(database, 4096)
		binary.LittleEndian.PutUint16(l[40:42], 0xfff0) // UserName's offset
		send(c, tds.PacketLogin7, 0, l, 4096)
		return watch(c, asm, 6*time.Second)
	}, want: wantClosedWithin(atOnce)},
	{name: "LOGIN7 Length far beyond the message", run: func(c net.Conn, database string) seen {
		asm := prelogged(c)
		l := loginWithSize(database, 4096)
		binary.LittleEndian.PutUint32(l[0:4], 0x7fffffff)
		send(c, tds.PacketLogin7, 0, l, 4096)
		return watch(c, asm, 6*time.Second)
	}, want: wantClosedWithin(atOnce)},
	{name: "LOGIN7 then a second LOGIN7", run: afterLogin(4096, func(c net.Conn, database string, asm *tds.Reassembler) seen {
		send(c, tds.PacketLogin7, 0, loginWithSize(database, 4096), 4096)
		return watch(c, asm, 6*time.Second)
	}), want: wantErrorOrClose},
	{name: "packet size 512: a big result in 512-byte packets", run: afterLogin(512, func(c net.Conn, database string, asm *tds.Reassembler) seen {
		return query(c, asm, "SELECT id, pad FROM big", 512)
	}), want: wantServed},
	{name: "packet size 32767: a big result in one packet", run: afterLogin(32767, func(c net.Conn, database string, asm *tds.Reassembler) seen {
		return query(c, asm, "SELECT id, pad FROM big", 32767)
	}), want: wantServed},
	{name: "request packets with a wrong SPID and packet ids", run: func(c net.Conn, database string) seen {
		asm, s := loggedIn(c, database, 4096)
		if !s.loginAck {
			return s
		}
		p := tds.AppendPackets(nil, tds.PacketSQLBatch, 0, batch("SELECT 1"), 4096)
		binary.BigEndian.PutUint16(p[4:6], 0xbeef) // SPID: the server ignores the client's
		p[6], p[7] = 0x7f, 0x3                     // packet id and window
		_, _ = c.Write(p)
		return watchUntil(c, asm, 8*time.Second, func(s seen) bool { return s.doneOK > 0 || len(s.errs) > 0 })
	}, want: wantServed},
	{name: "a batch sent right after an ATTENTION", run: afterLogin(4096, func(c net.Conn, database string, asm *tds.Reassembler) seen {
		send(c, tds.PacketSQLBatch, 0, batch("SELECT 1"), 4096)
		send(c, tds.PacketAttention, 0, nil, 4096)
		send(c, tds.PacketSQLBatch, 0, batch("SELECT 2"), 4096)
		return watchUntil(c, asm, 8*time.Second, func(s seen) bool { return s.attnAck && s.doneOK > 0 })
	}), want: func(s seen) string {
		if !s.attnAck || s.closed {
			return "want the ATTENTION acknowledged and the session kept"
		}
		return ""
	}},
	{name: "an ATTENTION storm", run: func(c net.Conn, database string) seen {
		asm, s := loggedIn(c, database, 4096)
		if !s.loginAck {
			return s
		}
		for i := 0; i < 50; i++ {
			send(c, tds.PacketSQLBatch, 0, batch("SELECT 1"), 4096)
			send(c, tds.PacketAttention, 0, nil, 4096)
		}
		s = watchUntil(c, asm, 8*time.Second, func(s seen) bool { return s.attnAck })
		if s.closed {
			return s
		}
		time.Sleep(300 * time.Millisecond)
		watch(c, asm, 300*time.Millisecond) // the rest of the acknowledgements
		return query(c, asm, "SELECT 1", 4096)
	}, want: wantServed},
	{name: "a MARS SMP header on a session without MARS", run: afterLogin(4096, func(c net.Conn, database string, asm *tds.Reassembler) seen {
		smp := []byte{0x53, 0x01, 0, 0, 0x10, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0} // SMP SYN
		_, _ = c.Write(smp)
		return watch(c, asm, 6*time.Second)
	}), want: wantClosedWithin(3 * time.Second)},
	{name: "SQLBatch with ALL_HEADERS longer than the batch", run: afterLogin(4096, func(c net.Conn, database string, asm *tds.Reassembler) seen {
		b := batch("SELECT 1")
		binary.LittleEndian.PutUint32(b[0:4], 0xffff)
		send(c, tds.PacketSQLBatch, 0, b, 4096)
		return watchUntil(c, asm, 6*time.Second, func(s seen) bool { return len(s.errs) > 0 })
	}), want: wantErrorOrClose},
	{name: "SQLBatch with a header whose length lies", run: afterLogin(4096, func(c net.Conn, database string, asm *tds.Reassembler) seen {
		b := batch("SELECT 1")
		binary.LittleEndian.PutUint32(b[4:8], 3)
		send(c, tds.PacketSQLBatch, 0, b, 4096)
		return watchUntil(c, asm, 6*time.Second, func(s seen) bool { return len(s.errs) > 0 })
	}), want: wantErrorOrClose},
	{name: "RPC with a parameter cut short", run: afterLogin(4096, func(c net.Conn, database string, asm *tds.Reassembler) seen {
		stmt, _ := tds.NewRPCParam("", 0, tds.NVarCharType(4000), "SELECT 1")
		r := tds.RPCRequest{Headers: tds.AllHeaders{HasTransaction: true, OutstandingRequests: 1},
			Calls: []tds.RPCCall{{ProcID: tds.ProcExecuteSQL, Params: []tds.RPCParam{stmt}}}}
		p := r.AppendRPC(nil)
		send(c, tds.PacketRPC, 0, p[:len(p)-5], 4096)
		return watchUntil(c, asm, 6*time.Second, func(s seen) bool { return len(s.errs) > 0 })
	}), want: wantErrorOrClose},
	{name: "RPC with an unknown type", run: afterLogin(4096, func(c net.Conn, database string, asm *tds.Reassembler) seen {
		h := tds.AllHeaders{HasTransaction: true, OutstandingRequests: 1}
		p := h.AppendAllHeaders(nil)
		p = append(p, 0xff, 0xff, 10, 0, 0, 0) // ProcIDSwitch sp_executesql, flags
		p = append(p, 0, 0, 0x01, 0xfe)        // param: no name, flags, type 0x01 (no such type)
		send(c, tds.PacketRPC, 0, p, 4096)
		return watchUntil(c, asm, 6*time.Second, func(s seen) bool { return len(s.errs) > 0 })
	}), want: wantErrorOrClose},
	{name: "pipelined small requests", run: func(c net.Conn, database string) seen {
		// Another client of the key first, so this one's requests wait for a backend in
		// transaction mode.
		if warm, err := net.Dial("tcp", c.RemoteAddr().String()); err == nil {
			loggedIn(warm, database, 4096)
			warm.Close()
		}
		asm, s := loggedIn(c, database, 4096)
		if !s.loginAck {
			return s
		}
		for i := 0; i < 3; i++ {
			send(c, tds.PacketSQLBatch, 0, batch("SELECT 1"), 4096)
		}
		return watchUntil(c, asm, 10*time.Second, func(s seen) bool { return s.doneOK >= 3 })
	}, want: func(s seen) string {
		if s.doneOK < 3 || len(s.errs) > 0 {
			return "want all 3 answers"
		}
		return ""
	}},
	{name: "never reads a big result", run: afterLogin(4096, func(c net.Conn, database string, asm *tds.Reassembler) seen {
		for i := 0; i < 20; i++ {
			send(c, tds.PacketSQLBatch, 0, batch("SELECT id, pad FROM big"), 4096)
		}
		time.Sleep(3 * time.Second)
		return watchUntil(c, asm, 10*time.Second, func(s seen) bool { return s.doneOK >= 20 })
	}), want: func(s seen) string {
		if s.doneOK < 20 || len(s.errs) > 0 {
			return "want all 20 answers once the client reads"
		}
		return ""
	}},
}

// TestHostileInputAtEveryState: hostile clients each drive a session to a state and misbehave
// there, all at once, on the tcp_proxy leg, a session-pooled and a transaction-pooled bucket.
// What each client saw is checked against what it should (a bounded close, a TDS ERROR, the
// session kept: SQL Server closes a connection whose PRELOGIN, LOGIN7 or packet framing is
// malformed, and answers a malformed request with an error), a well-behaved client then logs
// in and queries on the same bucket, and at rest every slot is back, no backend connection
// is left, no panic was counted, and Envoy's file descriptors are where they were.
// TDSPOOL_STATES (a regexp of bucket/case) runs some of the cases.
func TestHostileInputAtEveryState(t *testing.T) {
	backend := standintest.Start(t, standin.Config{ServerName: bucket, Users: map[string]string{demoUser: demoPassword},
		Databases: []string{"db_plain", "db_pooled", "db_tx"}, DataDir: t.TempDir(), Encryption: standin.EncryptionOptional})
	port := backend.Port()
	seedBig(t, port, "db_plain", "db_pooled", "db_tx")
	module := func(name, mode string) map[string]any {
		return map[string]any{"name": name, "cluster": "c_" + name, "max_connections": 40, "queue_timeout": "2s",
			"backend_leg": "MODULE", "backend_addresses": []string{fmt.Sprintf("127.0.0.1:%d", port)},
			"pool": map[string]any{"mode": mode, "max_idle_time": "1s"}}
	}
	buckets := []map[string]any{
		{"name": "plain", "cluster": "c_plain", "max_connections": 40, "queue_timeout": "2s"},
		module("pooled", "POOL_MODE_SESSION"),
		module("tx", "POOL_MODE_TRANSACTION"),
	}
	var clusters []envoyconfig.Bucket
	for _, b := range buckets {
		clusters = append(clusters, envoyconfig.Bucket{Cluster: b["cluster"].(string), Port: port})
	}
	cert, key, err := testcert.Write(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	js, _ := json.Marshal(map[string]any{
		"listener": map[string]any{"encryption": "OFF_ALLOWED", "tls_cert_file": cert, "tls_key_file": key}, "buckets": buckets,
		"routes":         []map[string]any{{"database": "db_pooled", "bucket": "pooled"}, {"database": "db_tx", "bucket": "tx"}},
		"default_bucket": "plain",
		"timeouts":       map[string]any{"first_byte_timeout": "2s", "login_timeout": fmt.Sprintf("%gs", stateLoginTimeout.Seconds())},
	})
	listen, _ := stack.FreePort()
	admin, _ := stack.FreePort()
	yaml, err := envoyconfig.Render(envoyconfig.Params{ListenerPort: listen, AdminPort: admin, FilterConfigJSON: string(js),
		TDS8CertFile: cert, TDS8KeyFile: key, Buckets: clusters})
	if err != nil {
		t.Fatal(err)
	}
	e, err := stack.StartEnvoy(stack.EnvoyOptions{Config: yaml, AdminPort: admin, ComponentLogLevel: envoyLogLevels})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		e.Stop()
		if t.Failed() {
			dir, _, _ := saveLogs(map[string]string{"envoy": e.Output()}, nil)
			t.Logf("envoy output (tail; the whole log kept in %s):\n%s", dir, tail(e.Output(), 60))
		}
	})
	addr := fmt.Sprintf("127.0.0.1:%d", listen)
	fdsBefore := countFDs(t, e.Pid())
	databases := map[string]string{"plain": "db_plain", "pooled": "db_pooled", "tx": "db_tx"}
	// Every case on every bucket at once: most of them wait on the proxy's timeouts.
	var wg sync.WaitGroup
	var mu sync.Mutex
	var report []string
	for _, bucketName := range []string{"plain", "pooled", "tx"} {
		for _, h := range hostileStates {
			if only := os.Getenv("TDSPOOL_STATES"); only != "" && !regexp.MustCompile(only).MatchString(bucketName+"/"+h.name) {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				name := bucketName + "/" + h.name
				fail := func(format string, args ...any) {
					t.Errorf("%s: %s", name, fmt.Sprintf(format, args...))
				}
				c, err := net.DialTimeout("tcp", addr, 5*time.Second)
				if err != nil {
					fail("%v", err)
					return
				}
				defer c.Close()
				got := h.run(c, databases[bucketName])
				mu.Lock()
				report = append(report, fmt.Sprintf("%-70s %s", name, got))
				mu.Unlock()
				if h.want != nil {
					if msg := h.want(got); msg != "" {
						fail("%s; saw %s", msg, got)
					}
				}
				// Nothing is lost for the next client.
				c2, err := net.DialTimeout("tcp", addr, 5*time.Second)
				if err != nil {
					fail("%v", err)
					return
				}
				defer c2.Close()
				asm, s := loggedIn(c2, databases[bucketName], 4096)
				if !s.loginAck {
					fail("a clean client could not log in after it: %s", s)
					return
				}
				if s := query(c2, asm, "SELECT 1", 4096); wantServed(s) != "" {
					fail("a clean client's query after it: %s", s)
				}
			}()
		}
	}
	wg.Wait()
	sort.Strings(report)
	t.Logf("what each hostile client saw:\n%s", strings.Join(report, "\n"))

	// At rest (max_idle_time 1 s): no backend connection, every slot back, no client
	// connection counted, no panic, and Envoy's descriptors back where they were.
	var stats map[string]uint64
	rest := func() bool {
		// Measurements made off a connection's worker (a pooled backend's slot given back
		// when it closes) reach Envoy's stats through the next connection of the same filter
		// chain: one TDS 7 connection and one TDS 8. (The TDS 7 one sends its PRELOGIN:
		// tls_inspector holds a silent connection back from every filter chain.)
		if c, err := net.Dial("tcp", addr); err == nil {
			prelogged(c)
			c.Close()
		}
		if c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"tds/8.0"}}); err == nil {
			c.Close()
		}
		if stats, err = e.Stats(); err != nil {
			return false
		}
		for _, b := range buckets {
			name := b["name"].(string)
			if stats["tdspool.bucket."+name+".slot_granted_total"] != stats["tdspool.bucket."+name+".slot_released_total"] {
				return false
			}
		}
		return backend.OpenConnections() == 0 && statSum(stats, "connections_active") == 0
	}
	for deadline := time.Now().Add(15 * time.Second); !rest() && time.Now().Before(deadline); {
		time.Sleep(200 * time.Millisecond)
	}
	for _, b := range buckets {
		name := b["name"].(string)
		g, r := stats["tdspool.bucket."+name+".slot_granted_total"], stats["tdspool.bucket."+name+".slot_released_total"]
		t.Logf("FIGURES %s: slots granted %d released %d", name, g, r)
		if g != r {
			var all []string
			for k, v := range stats {
				if strings.HasPrefix(k, "tdspool.") && v != 0 {
					all = append(all, fmt.Sprintf("%s=%d", k, v))
				}
			}
			sort.Strings(all)
			t.Errorf("%s at rest: slots granted %d released %d; stats: %s", name, g, r, strings.Join(all, " "))
		}
	}
	if n := backend.OpenConnections(); n != 0 {
		t.Errorf("%d backend connections at rest", n)
	}
	if v := statSum(stats, "connections_active"); v != 0 {
		t.Errorf("connections_active = %d at rest", v)
	}
	for name, v := range stats {
		if strings.HasSuffix(name, "panics_total") && v != 0 {
			t.Errorf("%s = %d", name, v)
		}
	}
	t.Logf("FIGURES backend connections at rest: %d (sessions %d)", backend.OpenConnections(), backend.Sessions())
	if after := countFDs(t, e.Pid()); after > fdsBefore {
		t.Errorf("Envoy's open descriptors grew from %d to %d", fdsBefore, after)
	} else {
		t.Logf("FIGURES Envoy descriptors %d before, %d at rest", fdsBefore, after)
	}
}

func countFDs(t *testing.T, pid int) int {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Logf("fd count: %v", err)
		return 0
	}
	return len(ents)
}

// seedBig creates, straight on the backend, a table of 300 rows of 400 bytes in each database.
func seedBig(t *testing.T, port int, databases ...string) {
	pad := strings.Repeat("x", 400)
	var vals []string
	for i := 0; i < 300; i++ {
		vals = append(vals, fmt.Sprintf("(%d, '%s')", i, pad))
	}
	for _, database := range databases {
		db, err := sql.Open("sqlserver", fmt.Sprintf("sqlserver://%s:%s@127.0.0.1:%d?database=%s&encrypt=disable",
			demoUser, demoPassword, port, database))
		if err != nil {
			t.Fatal(err)
		}
		for _, stmt := range []string{"CREATE TABLE big (id int, pad varchar(400))", "INSERT INTO big VALUES " + strings.Join(vals, ",")} {
			if _, err := db.Exec(stmt); err != nil {
				t.Fatalf("seed %s: %v", database, err)
			}
		}
		db.Close()
	}
}
