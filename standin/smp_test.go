package standin

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"

	"github.com/tdspool/tdspool/tds"
)

// smpClient is a minimal MARS client: it speaks SMP by hand so the
// server's side of MC-SMP can be checked without a MARS-capable driver.
type smpClient struct {
	t    *testing.T
	conn net.Conn
	seq  map[uint16]uint32
	data map[uint16][]byte // TDS bytes received per session
	fin  map[uint16]bool
}

func (c *smpClient) send(flags uint8, sid uint16, data []byte) {
	seq := c.seq[sid]
	if flags == smpDATA {
		seq++
		c.seq[sid] = seq
	}
	pkt := appendSMP(nil, smpHeader{flags: flags, sid: sid, seq: seq, wndw: 1000}, data)
	if _, err := c.conn.Write(pkt); err != nil {
		c.t.Fatal(err)
	}
}

// readUntilDone reads SMP packets until session sid holds a complete reply
// (a TDS packet with EOM); it returns the reply's payload.
func (c *smpClient) readUntilDone(sid uint16) []byte {
	c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		if msg, ok := tdsMessage(c.data[sid]); ok {
			c.data[sid] = nil
			return msg
		}
		var hdr [smpHeaderLen]byte
		if _, err := io.ReadFull(c.conn, hdr[:]); err != nil {
			c.t.Fatal(err)
		}
		h, err := decodeSMPHeader(hdr[:])
		if err != nil {
			c.t.Fatal(err)
		}
		switch h.flags {
		case smpDATA:
			body := make([]byte, h.length-smpHeaderLen)
			if _, err := io.ReadFull(c.conn, body); err != nil {
				c.t.Fatal(err)
			}
			c.data[h.sid] = append(c.data[h.sid], body...)
		case smpFIN:
			c.fin[h.sid] = true
			if h.sid == sid {
				return nil
			}
		}
	}
}

// tdsMessage returns the payload of the first complete message in b.
func tdsMessage(b []byte) ([]byte, bool) {
	var payload []byte
	for len(b) >= tds.HeaderSize {
		h, err := tds.DecodeHeader(b[:tds.HeaderSize])
		if err != nil || int(h.Length) > len(b) {
			return nil, false
		}
		payload = append(payload, b[tds.HeaderSize:h.Length]...)
		if h.Status&tds.StatusEOM != 0 {
			return payload, true
		}
		b = b[h.Length:]
	}
	return nil, false
}

func TestMARSSessions(t *testing.T) {
	srv, err := New(Config{Users: map[string]string{"demo": "pw"}, Databases: []string{"tenant_a"}, MARS: true, DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	nc, err := net.Dial("tcp", srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	pre := &tds.Prelogin{HasVersion: true, HasEncryption: true, Encryption: tds.EncryptNotSup, HasMARS: true, MARS: true}
	nc.Write(tds.AppendPackets(nil, tds.PacketPrelogin, 0, pre.AppendPrelogin(nil), 4096))
	_, _, reply, err := readMessage(nc, 4096, 1<<16)
	if err != nil {
		t.Fatal(err)
	}
	if p, err := tds.DecodePrelogin(reply); err != nil || !p.MARS {
		t.Fatalf("PRELOGIN reply %+v %v: MARS not offered", p, err)
	}
	c := &smpClient{t: t, conn: nc, seq: map[uint16]uint32{}, data: map[uint16][]byte{}, fin: map[uint16]bool{}}
	c.send(smpSYN, 0, nil)
	l := &tds.Login7{TDSVersion: tds.TDSVersion74, PacketSize: 4096, OptionFlags2: tds.Login7ODBC,
		UserName: "demo", Password: tds.NewPassword("pw"), Database: "tenant_a", AppName: "mars-test"}
	c.send(smpDATA, 0, tds.AppendPackets(nil, tds.PacketLogin7, 0, l.AppendLogin7(nil), 4096))
	if msg := c.readUntilDone(0); !bytes.Contains(msg, []byte{byte(tds.TokenLoginAck)}) {
		t.Fatalf("no LOGINACK on SMP session 0: % x", msg)
	}
	batch := func(sid uint16, text string) []byte {
		c.send(smpDATA, sid, tds.AppendPackets(nil, tds.PacketSQLBatch, 0, (&tds.SQLBatch{Text: text}).AppendSQLBatch(nil), 4096))
		return c.readUntilDone(sid)
	}
	c.send(smpSYN, 1, nil)
	// State is shared between the sessions: a temp table made on 0 is seen on 1.
	batch(0, "CREATE TABLE #shared (x INT); INSERT INTO #shared VALUES (41)")
	got := batch(1, "SELECT x + 1 FROM #shared")
	if !bytes.Contains(got, binary.LittleEndian.AppendUint32(nil, 42)) {
		t.Fatalf("session 1 reply lacks 42: % x", got)
	}
	// Two requests in flight on two sessions; each reply comes on its own.
	c.send(smpDATA, 0, tds.AppendPackets(nil, tds.PacketSQLBatch, 0, (&tds.SQLBatch{Text: "SELECT 7"}).AppendSQLBatch(nil), 4096))
	c.send(smpDATA, 1, tds.AppendPackets(nil, tds.PacketSQLBatch, 0, (&tds.SQLBatch{Text: "SELECT 8"}).AppendSQLBatch(nil), 4096))
	r1 := c.readUntilDone(1)
	r0 := c.readUntilDone(0)
	if !bytes.Contains(r0, binary.LittleEndian.AppendUint32(nil, 7)) || !bytes.Contains(r1, binary.LittleEndian.AppendUint32(nil, 8)) {
		t.Fatalf("crossed replies: 0=% x 1=% x", r0, r1)
	}
	c.send(smpFIN, 1, nil)
	if c.readUntilDone(1); !c.fin[1] {
		t.Fatal("no FIN for session 1")
	}
	if got := batch(0, "SELECT 1"); got == nil {
		t.Fatal("session 0 died with session 1")
	}
}

// FuzzSMPHeader: the SMP header decoder never panics and accepts only
// what it can re-encode.
func FuzzSMPHeader(f *testing.F) {
	f.Add(appendSMP(nil, smpHeader{flags: smpSYN, sid: 1, wndw: 4}, nil))
	f.Add(appendSMP(nil, smpHeader{flags: smpDATA, sid: 2, seq: 1, wndw: 4}, []byte{1, 2, 3}))
	f.Fuzz(func(t *testing.T, p []byte) {
		h, err := decodeSMPHeader(p)
		if err != nil {
			return
		}
		if h.flags != smpDATA && h.length != smpHeaderLen {
			t.Fatalf("accepted %+v", h)
		}
		if got := appendSMP(nil, h, make([]byte, h.length-smpHeaderLen)); !bytes.Equal(got[:smpHeaderLen], p[:smpHeaderLen]) {
			t.Fatalf("re-encoded % x, was % x", got[:smpHeaderLen], p[:smpHeaderLen])
		}
	})
}

// rawSession logs in over plain TCP without a driver, for status bits
// drivers do not send (RESETCONNECTIONSKIPTRAN).
func rawSession(t *testing.T, srv *Server) net.Conn {
	t.Helper()
	nc, err := net.Dial("tcp", srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	pre := &tds.Prelogin{HasVersion: true, HasEncryption: true, Encryption: tds.EncryptNotSup}
	nc.Write(tds.AppendPackets(nil, tds.PacketPrelogin, 0, pre.AppendPrelogin(nil), 4096))
	if _, _, _, err := readMessage(nc, 4096, 1<<16); err != nil {
		t.Fatal(err)
	}
	l := &tds.Login7{TDSVersion: tds.TDSVersion74, PacketSize: 4096, OptionFlags2: tds.Login7ODBC,
		UserName: "demo", Password: tds.NewPassword("pw"), Database: "tenant_a"}
	nc.Write(tds.AppendPackets(nil, tds.PacketLogin7, 0, l.AppendLogin7(nil), 4096))
	if _, _, _, err := readMessage(nc, 4096, 1<<16); err != nil {
		t.Fatal(err)
	}
	return nc
}

func rawBatch(t *testing.T, nc net.Conn, status tds.PacketStatus, text string) []byte {
	t.Helper()
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	nc.Write(tds.AppendPackets(nil, tds.PacketSQLBatch, status, (&tds.SQLBatch{Text: text}).AppendSQLBatch(nil), 4096))
	_, _, reply, err := readMessage(nc, 4096, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	return reply
}

// RESETCONNECTIONSKIPTRAN resets the session but keeps its transaction;
// RESETCONNECTION rolls it back (ENVCHANGE 10 before the reset ack).
func TestResetSkipTranKeepsTransaction(t *testing.T) {
	srv, err := New(Config{Users: map[string]string{"demo": "pw"}, Databases: []string{"tenant_a"}, DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	nc := rawSession(t, srv)
	rawBatch(t, nc, 0, "CREATE TABLE kept (x INT); BEGIN TRAN; INSERT INTO kept VALUES (1); CREATE TABLE #gone (x INT); SET XACT_ABORT ON")
	resetAck := tds.EnvChangeResetAck().AppendEnvChange(nil)
	reply := rawBatch(t, nc, tds.StatusResetConnectionSkipTran, "SELECT @@TRANCOUNT * 10 + (@@OPTIONS & 16384) / 16384 + ISNULL(OBJECT_ID('tempdb..#gone'), 0) * 100")
	if !bytes.Contains(reply, resetAck) {
		t.Fatalf("no reset ack: % x", reply)
	}
	if !bytes.Contains(reply, binary.LittleEndian.AppendUint32(nil, 10)) {
		t.Fatalf("after RESETCONNECTIONSKIPTRAN want @@TRANCOUNT 1, XACT_ABORT off, #gone gone (10): % x", reply)
	}
	reply = rawBatch(t, nc, tds.StatusResetConnection, "SELECT COUNT(*) * 10 + @@TRANCOUNT FROM kept")
	rollback := bytes.Index(reply, []byte{byte(tds.TokenEnvChange), 0x0B, 0x00, byte(tds.EnvRollbackTran)})
	if rollback < 0 || rollback > bytes.Index(reply, resetAck) {
		t.Fatalf("RESETCONNECTION in a transaction: want ENVCHANGE rollback then the reset ack: % x", reply)
	}
	if !bytes.Contains(reply, binary.LittleEndian.AppendUint32(nil, 0)) {
		t.Fatalf("the insert survived the reset: % x", reply)
	}
}
