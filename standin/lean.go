package standin

import (
	"bufio"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tdspool/tdspool/tds"
)

// Lean mode (Config.Lean) is the benchmark's backend: the same connection
// handling as the full server (PRELOGIN, every encryption mode including TDS
// 8, LOGIN7 checks and errors, the login response, counters and faults), but
// no SQLite behind it and one goroutine per session that answers each
// request from prebuilt bytes:
//
//	SELECT 1          one INT row (the ping workload)
//	STREAM <bytes>    a result of about <bytes> bytes of mixed column types
//	TM requests       BEGIN/COMMIT/ROLLBACK with their ENVCHANGEs
//	ATTENTION         DONE(ATTN)
//	anything else     error 50000 naming what lean mode runs
//
// The cost per request is small and constant, so a benchmark through a proxy
// measures the proxy; and a session holds no file descriptor besides its
// socket, so ten thousand idle sessions fit a default descriptor limit.

// leanOnlyError is the reply to a statement lean mode does not run.
const leanOnlyError = "standin lean mode runs only SELECT 1 and STREAM <bytes>"

// namesOnlyStore knows the configured database names (so logins to unknown
// databases fail as they do on the full server) without opening SQLite.
func namesOnlyStore(names []string) *store {
	st := &store{dbs: map[string]*sql.DB{}, canon: map[string]string{}}
	for _, n := range names {
		st.canon[strings.ToLower(n)] = n
	}
	return st
}

// leanLoop serves a logged-in session in lean mode until the client leaves.
func (c *conn) leanLoop() {
	s := c.srv
	in := bufio.NewReaderSize(c.rw, 8<<10) // one read per small request, not two per packet
	w := &leanWriter{c: c}
	var txn uint64
	for {
		if d := s.cfg.IdleTimeout; d > 0 {
			c.raw.SetReadDeadline(time.Now().Add(d))
		}
		typ, status, payload, err := readMessage(in, c.pktSize, maxRequestBytes)
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				s.logf("standin %s spid %d: read: %v", s.cfg.ServerName, c.spid, err)
			}
			return
		}
		if status&(tds.StatusResetConnection|tds.StatusResetConnectionSkipTran) != 0 {
			s.resets.Add(1)
			// SQL Server acknowledges the reset with ENVCHANGE 18 at the head of the reply
			// (a pooler consumes it); lean mode has no session state to reset.
			w.resetAck = true
		}
		if typ == tds.PacketAttention {
			// Requests are answered before the next is read, so the one it
			// targeted is done: acknowledge it on its own.
			s.attentions.Add(1)
			w.resetAck = false
			err = w.send(attnAck)
		} else if status&tds.StatusIgnore != 0 {
			continue // the client abandoned this message [MS-TDS §2.2.3.1.2]
		} else {
			if d := time.Duration(s.delay.Load()); d > 0 {
				time.Sleep(d)
			}
			err = c.leanAnswer(w, typ, payload, &txn)
		}
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				s.logf("standin %s spid %d: %v", s.cfg.ServerName, c.spid, err)
			}
			return
		}
	}
}

func (c *conn) leanAnswer(w *leanWriter, typ tds.PacketType, payload []byte, txn *uint64) error {
	switch typ {
	case tds.PacketSQLBatch:
		q, err := tds.DecodeSQLBatch(payload)
		if err != nil {
			return err
		}
		text := strings.TrimSpace(strings.TrimRight(strings.TrimSpace(q.Text), ";"))
		if rest, ok := cutPrefixFold(text, "STREAM "); ok {
			want, err := strconv.ParseInt(strings.TrimSpace(rest), 10, 64)
			if err != nil || want <= 0 {
				return w.send(c.leanError("STREAM wants a positive byte count"))
			}
			return w.stream(want)
		}
		if strings.EqualFold(text, "SELECT 1") {
			return w.send(leanPingReply)
		}
		return w.send(c.leanError(leanOnlyError))
	case tds.PacketRPC:
		return w.send(c.leanError(leanOnlyError))
	case tds.PacketTransMgr:
		tm, err := tds.DecodeTransMgr(payload)
		if err != nil {
			return err
		}
		var out []byte
		switch tm.Type {
		case tds.TMBeginXact:
			*txn = descCounter.Add(1)
			out = tds.EnvChangeBeginTran(*txn).AppendEnvChange(out)
		case tds.TMCommitXact:
			out = tds.EnvChangeCommitTran(*txn).AppendEnvChange(out)
		case tds.TMRollbackXact:
			out = tds.EnvChangeRollbackTran(*txn).AppendEnvChange(out)
		}
		return w.send(tds.Done{Token: tds.TokenDone}.AppendDone(out))
	}
	return fmt.Errorf("unexpected %s message", typ)
}

func (c *conn) leanError(text string) []byte {
	return tds.ErrorMessage(50000, 1, 16, text, c.srv.cfg.ServerName, "", 1)
}

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix) {
		return s[len(prefix):], true
	}
	return s, false
}

// leanWriter frames replies into a buffer it keeps between requests.
type leanWriter struct {
	c        *conn
	out      []byte
	resetAck bool // the request asked for a reset: its reply starts with ENVCHANGE 18
}

// ackPrefix is the reset acknowledgement owed to the current reply, if any (once).
func (w *leanWriter) ackPrefix() []byte {
	if !w.resetAck {
		return nil
	}
	w.resetAck = false
	return tds.EnvChangeResetAck().AppendEnvChange(nil)
}

func (w *leanWriter) send(payload []byte) error {
	if ack := w.ackPrefix(); ack != nil {
		payload = append(ack, payload...)
	}
	w.out = tds.AppendPacketsSPID(w.out[:0], tds.PacketReply, 0, w.c.spid, payload, w.c.pktSize)
	_, err := w.c.rw.Write(w.out)
	return err
}

// stream sends COLMETADATA, blocks of rows until about want bytes are out,
// then DONE: one reply message, framed packet by packet as it goes so memory
// stays flat whatever the size.
func (w *leanWriter) stream(want int64) error {
	block, n := leanStreamBlock()
	pending := tds.ColMetadata{Columns: LeanStreamColumns}.AppendColMetadata(w.ackPrefix())
	body := w.c.pktSize - tds.HeaderSize
	var rows uint64
	var sent int64
	var packetID uint8
	flush := func(final bool) error {
		w.out = w.out[:0]
		for len(pending) > body || (final && len(pending) > 0) {
			k := min(body, len(pending))
			st := tds.PacketStatus(0)
			if final && k == len(pending) {
				st = tds.StatusEOM
			}
			packetID++
			w.out = tds.Header{Type: tds.PacketReply, Status: st, Length: uint16(k + tds.HeaderSize), SPID: w.c.spid, PacketID: packetID}.AppendHeader(w.out)
			w.out = append(w.out, pending[:k]...)
			pending = pending[k:]
		}
		pending = append([]byte(nil), pending...)
		if len(w.out) == 0 {
			return nil
		}
		sent += int64(len(w.out))
		_, err := w.c.rw.Write(w.out)
		return err
	}
	for sent+int64(len(pending)) < want {
		pending = append(pending, block...)
		rows += uint64(n)
		if err := flush(false); err != nil {
			return err
		}
	}
	pending = tds.Done{Status: tds.DoneCount, CurCmd: 0xC1, RowCount: rows}.AppendDone(pending)
	return flush(true)
}

var (
	leanPingColumns = []tds.Column{{Flags: tds.ColNullable, Type: tds.IntNType(4)}}
	leanPingReply   = func() []byte {
		out := tds.ColMetadata{Columns: leanPingColumns}.AppendColMetadata(nil)
		out, _ = tds.AppendRow(out, leanPingColumns, []any{int32(1)})
		return tds.Done{Status: tds.DoneCount, CurCmd: 0xC1, RowCount: 1}.AppendDone(out)
	}()
)

// LeanStreamColumns are the columns of a lean-mode STREAM result: the
// fixed-length, decimal, date/time, GUID, Unicode, binary and PLP (MAX)
// encodings a proxy has to walk through.
var LeanStreamColumns = []tds.Column{
	{Flags: tds.ColNullable, Type: tds.IntNType(4), Name: "id"},
	{Flags: tds.ColNullable, Type: tds.IntNType(8), Name: "big"},
	{Flags: tds.ColNullable, Type: tds.FltNType(8), Name: "f"},
	{Flags: tds.ColNullable, Type: tds.DecimalNType(18, 2), Name: "amount"},
	{Flags: tds.ColNullable, Type: tds.BitNType(), Name: "flag"},
	{Flags: tds.ColNullable, Type: tds.DateTime2NType(7), Name: "ts"},
	{Flags: tds.ColNullable, Type: tds.GUIDType(), Name: "g"},
	{Flags: tds.ColNullable, Type: tds.NVarCharType(100), Name: "name"},
	{Flags: tds.ColNullable, Type: tds.VarBinaryType(400), Name: "blob"},
	{Flags: tds.ColNullable, Type: tds.NVarCharType(0), Name: "note"}, // NVARCHAR(MAX), PLP
}

// leanStreamBlock is 256 KB of rows (every tenth row all NULL after id),
// built once and repeated.
var leanStreamBlock = sync.OnceValues(func() ([]byte, int) {
	ts := time.Date(2024, 2, 29, 13, 14, 15, 123456700, time.UTC)
	blob := make([]byte, 400)
	for i := range blob {
		blob[i] = byte(i * 7)
	}
	var block []byte
	rows := 0
	for i := 0; len(block) < 256<<10; i++ {
		vals := []any{int32(i), nil, nil, nil, nil, nil, nil, nil, nil, nil}
		if i%10 != 9 {
			vals = []any{int32(i), int64(i) * 1_000_003, float64(i) / 3, strconv.Itoa(i*37) + ".25", i%2 == 0,
				ts.Add(time.Duration(i) * time.Second), "6F9619FF-8B86-D011-B42D-00C04FC964FF",
				"customer name " + strconv.Itoa(i) + " é😀", blob[:100+i%300], strings.Repeat("note ", 10+i%40)}
		}
		var err error
		if block, err = tds.AppendRow(block, LeanStreamColumns, vals); err != nil {
			panic(err) // the values above are fixed; this is a programming error
		}
		rows++
	}
	return block, rows
})
