package standin

import "testing"

func TestSPIDsAreTheLowestFree(t *testing.T) {
	s := &Server{nextSPID: 51}
	var got []uint16
	for range 5 {
		got = append(got, s.allocSPIDLocked())
	}
	if got[0] != 51 || got[4] != 55 {
		t.Fatalf("first five SPIDs %v, want 51..55", got)
	}
	s.releaseSPIDLocked(54)
	s.releaseSPIDLocked(52)
	for _, want := range []uint16{52, 54, 56} {
		if id := s.allocSPIDLocked(); id != want {
			t.Fatalf("got SPID %d, want %d (lowest free)", id, want)
		}
	}
}
