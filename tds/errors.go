package tds

import (
	"errors"
	"fmt"
)

// ErrShortBuffer is returned by every decoder in this package when the input
// ends before the structure does. It is not a protocol error: the caller
// should feed more bytes and try again. Decoders never block waiting for them.
var ErrShortBuffer = errors.New("tds: need more bytes")

// ProtocolError reports malformed peer input: bytes that can never become a
// valid structure no matter how many more arrive. Callers act on it by
// closing (or pinning) the session; the fields exist for logs and traces.
type ProtocolError struct {
	Msg    string // message or token being decoded, e.g. "LOGIN7", "COLMETADATA"
	Offset int    // byte offset within that message where decoding failed, -1 if unknown
	Detail string // what was wrong, never containing credentials
}

func (e *ProtocolError) Error() string {
	if e.Offset >= 0 {
		return fmt.Sprintf("tds: malformed %s at offset %d: %s", e.Msg, e.Offset, e.Detail)
	}
	return fmt.Sprintf("tds: malformed %s: %s", e.Msg, e.Detail)
}

func protoErr(msg string, off int, format string, args ...any) error {
	return &ProtocolError{Msg: msg, Offset: off, Detail: fmt.Sprintf(format, args...)}
}

// LimitError reports that the peer sent something larger than a configured
// or protocol-defined bound (packet length, message size, LOGIN7 length).
// It is separate from ProtocolError because callers often answer it with a
// specific TDS ERROR rather than just closing.
type LimitError struct {
	What  string // "packet", "message", "LOGIN7", ...
	Size  int    // size announced or reached
	Limit int    // the bound that was exceeded
}

func (e *LimitError) Error() string {
	return fmt.Sprintf("tds: %s size %d exceeds limit %d", e.What, e.Size, e.Limit)
}

// UnsupportedError is returned by the token scanner when it meets a token or
// data type it does not know how to skip. The scanner never guesses: the
// caller is expected to stop inspecting this response and pin the session.
type UnsupportedError struct {
	What   string // "token", "type", "COLMETADATA", ...
	Code   int    // token byte or type byte when relevant
	Detail string
}

func (e *UnsupportedError) Error() string {
	return fmt.Sprintf("tds: unsupported %s 0x%02X: %s", e.What, e.Code, e.Detail)
}
