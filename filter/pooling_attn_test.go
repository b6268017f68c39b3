package filter

import (
	"bytes"
	"testing"
	"time"

	"github.com/tdspool/tdspool/envoy/host"
	"github.com/tdspool/tdspool/tds"
)

// attnReply is a backend's acknowledgement of an ATTENTION.
func attnReply() []byte {
	return tds.AppendPacketsSPID(nil, tds.PacketReply, 0, 57, tds.Done{Token: tds.TokenDone, Status: tds.DoneAttn}.AppendDone(nil), 8192)
}

// reusedSession logs a first client in and out, so the pool holds its backend, and a second
// client in on it; it returns the second client with the backend pointed at its leg.
func reusedSession(t *testing.T) (*harness, *client, *fakeBackend) {
	t.Helper()
	h, dialed := pooledHarness(t)
	a := h.connect()
	fb, _ := a.pooledLogin(t, dialed, "app", "pw")
	a.s.OnRead(0, true)
	a.s.OnEvent(host.RemoteClose)
	b := h.connect()
	if _, reused := b.pooledLogin(t, dialed, "app", "pw"); !reused {
		t.Fatal("second login not served from the pool")
	}
	fb.h = b.s.(*session).leg.(*moduleLeg)
	return h, b, fb
}

// An ATTENTION is a reused backend's first message (the client cancels with nothing running):
// it reaches the backend unmarked, the client gets the acknowledgement, and the first real
// request still carries RESETCONNECTION. Before, the session was closed without a word.
func TestPooledAttentionBeforeAnyRequest(t *testing.T) {
	_, b, fb := reusedSession(t)
	fb.written = nil
	b.fromClient(tds.AppendPackets(nil, tds.PacketAttention, 0, nil, 8192))
	if b.s.(*session).finished || len(fb.written) != tds.HeaderSize || tds.PacketType(fb.written[0]) != tds.PacketAttention ||
		tds.PacketStatus(fb.written[1])&tds.StatusResetConnection != 0 {
		t.Fatalf("finished=%v, backend got % x: want the ATTENTION unmarked", b.s.(*session).finished, fb.written)
	}
	b.conn.ToClient = nil
	fb.h.Data(attnReply())
	b.waitPosted(time.Second)
	if !bytes.Equal(b.conn.ToClient, attnReply()) {
		t.Fatalf("client got % x, want the ATTENTION's acknowledgement", b.conn.ToClient)
	}
	sent, got := b.roundTrip(t, fb, doneReply(tds.EnvChangeResetAck().AppendEnvChange(nil)))
	if tds.PacketStatus(sent[1])&tds.StatusResetConnection == 0 || !bytes.Equal(got, doneReply()) {
		t.Fatalf("first request % x, client got % x: want it reset and the ack consumed", sent[:8], got)
	}
}

// The client cancels its reset-marked first request before the server answered: the reply is
// just DONE(ATTN), without the reset's acknowledgement. The client gets it, the session goes
// on, and its next request is reset again. Before, the reset counted as failed, the request
// and its ATTENTION were resent elsewhere and the client was closed.
func TestPooledAttentionCancelsTheResetRequest(t *testing.T) {
	_, b, fb := reusedSession(t)
	fb.written = nil
	b.fromClient(tds.AppendPackets(nil, tds.PacketSQLBatch, 0, (&tds.SQLBatch{Text: "select 1"}).AppendSQLBatch(nil), 8192))
	b.fromClient(tds.AppendPackets(nil, tds.PacketAttention, 0, nil, 8192))
	b.conn.ToClient = nil
	fb.h.Data(attnReply())
	b.waitPosted(time.Second)
	if b.s.(*session).finished || fb.closed || !bytes.Equal(b.conn.ToClient, attnReply()) {
		t.Fatalf("finished=%v backend closed=%v, client got % x: want the ATTENTION's acknowledgement", b.s.(*session).finished, fb.closed, b.conn.ToClient)
	}
	sent, got := b.roundTrip(t, fb, doneReply(tds.EnvChangeResetAck().AppendEnvChange(nil)))
	if tds.PacketStatus(sent[1])&tds.StatusResetConnection == 0 || !bytes.Equal(got, doneReply()) {
		t.Fatalf("next request % x, client got % x: want it reset again and the ack consumed", sent[:8], got)
	}
}

// A client that leaves having sent part of a packet header (too short for the proxy to see a
// request start) leaves its backend waiting for the rest: the backend is closed, not pooled,
// or the next client's first bytes would complete the stranger's header. Before, it went back
// to the pool and the next client's ATTENTION was never answered (the pooled hostile soak).
func TestPooledBackendNotReturnedMidHeader(t *testing.T) {
	h, dialed := pooledHarness(t)
	a := h.connect()
	fb, _ := a.pooledLogin(t, dialed, "app", "pw")
	a.roundTrip(t, fb, doneReply())
	a.fromClient(tds.AppendPackets(nil, tds.PacketSQLBatch, 0, (&tds.SQLBatch{Text: "select 1"}).AppendSQLBatch(nil), 8192)[:5])
	a.s.OnRead(0, true)
	a.s.OnEvent(host.RemoteClose)
	if !fb.closed || h.held() != 0 {
		t.Fatalf("backend closed=%v, slots held %d: want it closed with its slot released", fb.closed, h.held())
	}
}
