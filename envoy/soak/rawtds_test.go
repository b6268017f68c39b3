package soak

import (
	"fmt"
	"net"
	"time"

	"github.com/tdspool/tdspool/internal/rawtds"
	"github.com/tdspool/tdspool/tds"
)

// rawConn speaks just enough TDS, by hand, to log in and run a batch; the hostile clients
// use it to reach states a driver never produces (a valid session followed by garbage).
type rawConn struct {
	c net.Conn
	r tds.Reassembler
}

func (rc *rawConn) send(typ tds.PacketType, payload []byte) error {
	return rawtds.Send(rc.c, typ, 0, payload, tds.DefaultPacketSize)
}

// preloginReply reads the PRELOGIN answer, which is an option table, not a token stream.
func (rc *rawConn) preloginReply() error {
	msg, err := rawtds.Recv(rc.c, &rc.r)
	if err == nil && msg.Type != tds.PacketReply {
		err = fmt.Errorf("PRELOGIN answered with packet type %v", msg.Type)
	}
	return err
}

func (rc *rawConn) reply() ([]tds.Event, error) {
	msg, err := rawtds.Recv(rc.c, &rc.r)
	if err != nil {
		return nil, err
	}
	var sc tds.Scanner
	evs, err := sc.Feed(msg.Payload)
	return append([]tds.Event(nil), evs...), err
}

func preloginBytes() []byte {
	pre := tds.Prelogin{HasVersion: true, Version: 0x0C000000, HasEncryption: true, Encryption: tds.EncryptNotSup}
	return pre.AppendPrelogin(nil)
}

func login7Bytes(user, password, database string) []byte {
	l := tds.Login7{TDSVersion: tds.TDSVersion74, PacketSize: 4096, UserName: user, Password: tds.NewPassword(password),
		Database: database, ServerName: "bucket-001", AppName: "soak", HostName: "h", CltIntName: "raw"}
	return l.AppendLogin7(nil)
}

// rawLogin dials addr and logs in; the caller owns the connection.
func rawLogin(addr, user, password, database string) (*rawConn, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	rc := &rawConn{c: c}
	if err := rc.send(tds.PacketPrelogin, preloginBytes()); err != nil {
		c.Close()
		return nil, err
	}
	if err := rc.preloginReply(); err != nil {
		c.Close()
		return nil, fmt.Errorf("PRELOGIN reply: %w", err)
	}
	if err := rc.send(tds.PacketLogin7, login7Bytes(user, password, database)); err != nil {
		c.Close()
		return nil, err
	}
	evs, err := rc.reply()
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("login reply: %w", err)
	}
	for _, ev := range evs {
		if ev.Token == tds.TokenLoginAck {
			return rc, nil
		}
	}
	c.Close()
	return nil, fmt.Errorf("login refused: %v", evs)
}
