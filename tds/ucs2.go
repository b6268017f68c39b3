package tds

import (
	"encoding/binary"
	"unicode/utf16"
	"unicode/utf8"
)

// ucs2String decodes UTF-16LE bytes (TDS "UCS-2", which in practice is
// UTF-16 with surrogate pairs). An odd trailing byte is ignored by the caller
// beforehand; invalid surrogates become U+FFFD.
func ucs2String(b []byte) string {
	// Fast path for ASCII, which is the overwhelming majority of identifiers.
	ascii := true
	for i := 0; i+1 < len(b); i += 2 {
		if b[i+1] != 0 || b[i] >= 0x80 {
			ascii = false
			break
		}
	}
	if ascii {
		out := make([]byte, len(b)/2)
		for i := range out {
			out[i] = b[2*i]
		}
		return string(out)
	}
	u := make([]uint16, len(b)/2)
	for i := range u {
		u[i] = binary.LittleEndian.Uint16(b[2*i:])
	}
	return string(utf16.Decode(u))
}

// appendUCS2 appends s as UTF-16LE.
func appendUCS2(dst []byte, s string) []byte {
	for _, r := range s {
		if r >= 0x10000 {
			r1, r2 := utf16.EncodeRune(r)
			dst = append(dst, byte(r1), byte(r1>>8), byte(r2), byte(r2>>8))
			continue
		}
		if r == utf8.RuneError {
			r = 0xFFFD
		}
		dst = append(dst, byte(r), byte(r>>8))
	}
	return dst
}

// ucs2Len is the number of UTF-16 code units s encodes to: the unit TDS
// character counts (cch, B_VARCHAR, US_VARCHAR) are expressed in.
func ucs2Len(s string) int {
	n := 0
	for _, r := range s {
		if r >= 0x10000 {
			n += 2
		} else {
			n++
		}
	}
	return n
}

// appendBVarchar appends a B_VARCHAR: 1-byte character count + UTF-16LE.
// Strings longer than 255 code units are truncated at a rune boundary,
// because the length byte cannot express more [MS-TDS §2.2.5.1.3].
func appendBVarchar(dst []byte, s string) []byte {
	s = truncateUCS2(s, 255)
	dst = append(dst, byte(ucs2Len(s)))
	return appendUCS2(dst, s)
}

// appendUSVarchar appends a US_VARCHAR: 2-byte character count + UTF-16LE.
func appendUSVarchar(dst []byte, s string) []byte {
	s = truncateUCS2(s, 65535)
	n := ucs2Len(s)
	dst = append(dst, byte(n), byte(n>>8))
	return appendUCS2(dst, s)
}

func truncateUCS2(s string, max int) string {
	if len(s) <= max {
		return s // byte length bounds code units from above
	}
	n := 0
	for i, r := range s {
		w := 1
		if r >= 0x10000 {
			w = 2
		}
		if n+w > max {
			return s[:i]
		}
		n += w
	}
	return s
}

// readBVarchar decodes a B_VARCHAR at b[0:], returning the string and bytes used.
func readBVarchar(b []byte) (string, int, error) {
	if len(b) < 1 {
		return "", 0, ErrShortBuffer
	}
	n := 1 + 2*int(b[0])
	if len(b) < n {
		return "", 0, ErrShortBuffer
	}
	return ucs2String(b[1:n]), n, nil
}

// readUSVarchar decodes a US_VARCHAR at b[0:].
func readUSVarchar(b []byte) (string, int, error) {
	if len(b) < 2 {
		return "", 0, ErrShortBuffer
	}
	n := 2 + 2*int(binary.LittleEndian.Uint16(b))
	if len(b) < n {
		return "", 0, ErrShortBuffer
	}
	return ucs2String(b[2:n]), n, nil
}

// readBVarbyte decodes a B_VARBYTE (1-byte length + bytes); the result aliases b.
func readBVarbyte(b []byte) ([]byte, int, error) {
	if len(b) < 1 {
		return nil, 0, ErrShortBuffer
	}
	n := 1 + int(b[0])
	if len(b) < n {
		return nil, 0, ErrShortBuffer
	}
	return b[1:n], n, nil
}

// ucs2HasWordAt reports whether the UTF-16LE text b holds the ASCII word w (lower case)
// at byte offset i, ignoring ASCII case.
func ucs2HasWordAt(b []byte, i int, w string) bool {
	if i+2*len(w) > len(b) {
		return false
	}
	for k := 0; k < len(w); k++ {
		if b[i+2*k+1] != 0 || b[i+2*k]|0x20 != w[k] {
			return false
		}
	}
	return true
}
