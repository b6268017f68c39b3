package tds

import (
	"fmt"
	"io"
)

// Password holds a secret from LOGIN7 (Password or ChangePassword). Every
// formatting path prints a redaction, so a Login7 can be logged or traced
// without leaking credentials; only Reveal returns the text.
type Password struct {
	s string
}

const redacted = "[REDACTED]"

// NewPassword wraps a clear-text password.
func NewPassword(s string) Password { return Password{s: s} }

// Reveal returns the clear text. Call it only where the secret is needed
// (authenticating, re-encoding a LOGIN7), never for logging.
func (p Password) Reveal() string { return p.s }

// IsZero reports whether the password is empty.
func (p Password) IsZero() bool { return p.s == "" }

// Equal compares two passwords without revealing them.
func (p Password) Equal(q Password) bool { return p.s == q.s }

func (p Password) String() string   { return redacted }
func (p Password) GoString() string { return "tds.Password{" + redacted + "}" }

// Format makes every verb (%v %+v %#v %s %q %x %X %d ...) print the redaction.
func (p Password) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		io.WriteString(f, p.GoString())
		return
	}
	io.WriteString(f, redacted)
}

// MarshalText and MarshalJSON keep encoders (JSON traces, structured
// loggers) from reaching the secret by reflection.
func (p Password) MarshalText() ([]byte, error) { return []byte(redacted), nil }
func (p Password) MarshalJSON() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }

// obfuscatePassword appends the LOGIN7 wire form of a password
// [MS-TDS §2.2.6.4]: UCS-2LE, then each byte's nibbles swapped and XORed
// with 0xA5. It is obfuscation, not encryption.
func obfuscatePassword(dst []byte, s string) []byte {
	start := len(dst)
	dst = appendUCS2(dst, s)
	for i := start; i < len(dst); i++ {
		b := dst[i]
		dst[i] = (b<<4 | b>>4) ^ 0xA5
	}
	return dst
}

// deobfuscatePassword reverses obfuscatePassword: XOR first, then swap.
func deobfuscatePassword(b []byte) string {
	clear := make([]byte, len(b))
	for i, x := range b {
		x ^= 0xA5
		clear[i] = x<<4 | x>>4
	}
	s := ucs2String(clear)
	for i := range clear {
		clear[i] = 0
	}
	return s
}
