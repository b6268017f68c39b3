package standin

import "container/heap"

// SPIDs: SQL Server reserves 1..50 for system sessions and hands a new
// connection the lowest free SPID from 51 up. The free SPIDs below the
// high-water mark (Server.nextSPID) are kept in a min-heap, so a connection
// gets its SPID in O(log n) even with thousands of sessions open (the
// benchmark holds 9,500).

// allocSPIDLocked hands out the lowest free SPID.
func (s *Server) allocSPIDLocked() uint16 {
	if s.freeSPIDs.Len() > 0 {
		return heap.Pop(&s.freeSPIDs).(uint16)
	}
	id := s.nextSPID
	s.nextSPID++
	return id
}

// releaseSPIDLocked makes a closed connection's SPID free again.
func (s *Server) releaseSPIDLocked(id uint16) {
	heap.Push(&s.freeSPIDs, id)
}

type spidHeap []uint16

func (h spidHeap) Len() int           { return len(h) }
func (h spidHeap) Less(i, j int) bool { return h[i] < h[j] }
func (h spidHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *spidHeap) Push(x any)        { *h = append(*h, x.(uint16)) }
func (h *spidHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
