// Package rawtds drives TDS by hand for tests that must see the wire or reach states no
// driver produces (a login followed by garbage, a request with chosen status bits): it
// writes packets and reads whole messages with the protocol library, nothing more. Tests
// keep their own connection types and call these two functions for the framing.
package rawtds

import (
	"errors"
	"io"

	"github.com/tdspool/tdspool/tds"
)

// Send writes payload as one message of type typ, split into packets of packetSize, with
// status on its first packet (the end-of-message bit is added by tds.AppendPackets).
func Send(w io.Writer, typ tds.PacketType, status tds.PacketStatus, payload []byte, packetSize int) error {
	_, err := w.Write(tds.AppendPackets(nil, typ, status, payload, packetSize))
	return err
}

// Recv returns the next whole message, reading from r into asm as needed. The payload is a
// copy the caller may keep; asm keeps any bytes of the message after it.
func Recv(r io.Reader, asm *tds.Reassembler) (tds.Message, error) {
	buf := make([]byte, 32<<10)
	for {
		msg, err := asm.Next()
		if !errors.Is(err, tds.ErrShortBuffer) {
			if err == nil {
				msg.Payload = append([]byte(nil), msg.Payload...)
			}
			return msg, err
		}
		n, err := r.Read(buf)
		if err != nil {
			return tds.Message{}, err
		}
		asm.Feed(buf[:n])
	}
}
