package standin

import (
	"bytes"
	"testing"
	"time"

	"github.com/tdspool/tdspool/tds"
)

// An ATTENTION that interrupts a running request is answered as SQL Server answers it: the
// request's response ends (DONE with the error bit, end of message), and the acknowledgement
// DONE(ATTN) follows as a message of its own. mssql-jdbc depends on the split: at the end of
// the interrupted response it reads one more message for the acknowledgement, so a lone
// DONE(ATTN) left its query timeout and Statement.cancel waiting forever.
func TestAttentionAcknowledgedInAMessageOfItsOwn(t *testing.T) {
	srv, err := New(Config{Users: map[string]string{"demo": "pw"}, Databases: []string{"tenant_a"}, DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	nc := rawSession(t, srv)
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	nc.Write(tds.AppendPackets(nil, tds.PacketSQLBatch, 0, (&tds.SQLBatch{Text: "WAITFOR DELAY '00:00:05'"}).AppendSQLBatch(nil), 4096))
	time.Sleep(200 * time.Millisecond)
	nc.Write(tds.AppendPackets(nil, tds.PacketAttention, 0, nil, 4096))

	_, _, first, err := readMessage(nc, 4096, 1<<16)
	if err != nil {
		t.Fatal(err)
	}
	done, _, err := tds.DecodeDone(first)
	if err != nil || len(first) != 13 || done.Status&tds.DoneError == 0 || done.Status&tds.DoneAttn != 0 {
		t.Fatalf("interrupted request's response: want a lone DONE(ERROR), got % x (%v)", first, err)
	}
	_, _, second, err := readMessage(nc, 4096, 1<<16)
	if err != nil {
		t.Fatal(err)
	}
	if ack := (tds.Done{Token: tds.TokenDone, Status: tds.DoneAttn}).AppendDone(nil); !bytes.Equal(second, ack) {
		t.Fatalf("acknowledgement: want a message of DONE(ATTN) alone, got % x", second)
	}
	// The session goes on.
	if reply := rawBatch(t, nc, 0, "SELECT 1"); !bytes.Contains(reply, []byte{byte(tds.TokenRow)}) {
		t.Fatalf("after the ATTENTION: % x", reply)
	}
}
