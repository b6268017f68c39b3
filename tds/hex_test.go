package tds

import (
	"encoding/hex"
	"strings"
	"testing"
)

// unhex decodes a whitespace-separated hex dump (as copied from specs and
// driver test fixtures).
func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}
