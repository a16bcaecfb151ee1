package nat

import "math/bits"

// portSet is the set of held ports (or ICMP identifiers) of one external
// address and protocol. A bit per port, plus a summary bit per 64-port word
// that says the word is full, so finding the next free port skips full
// stretches 4096 ports at a time: the cost of an allocation stays flat as the
// range fills, where probing port by port (Linux's nf_nat_l4proto_unique_tuple
// tries up to 128 random ports) degrades and then fails while ports remain.
//
// A portSet is guarded by Engine.mu.
type portSet struct {
	words [1024]uint64 // bit p&63 of words[p>>6]: port p is held
	full  [16]uint64   // bit w&63 of full[w>>6]: words[w] is all ones
	held  int          // number of held ports
}

// has reports whether port p is held.
func (s *portSet) has(p uint16) bool { return s.words[p>>6]&(1<<(p&63)) != 0 }

// take marks p held; it reports false when it already was.
func (s *portSet) take(p uint16) bool {
	w := p >> 6
	bit := uint64(1) << (p & 63)
	if s.words[w]&bit != 0 {
		return false
	}
	s.words[w] |= bit
	s.held++
	if s.words[w] == ^uint64(0) {
		s.full[w>>6] |= 1 << (w & 63)
	}
	return true
}

// release marks p free.
func (s *portSet) release(p uint16) {
	w := p >> 6
	bit := uint64(1) << (p & 63)
	if s.words[w]&bit == 0 {
		return
	}
	s.words[w] &^= bit
	s.held--
	s.full[w>>6] &^= 1 << (w & 63)
}

// takeRange marks lo..hi held (port forwards reserve their ports this way).
func (s *portSet) takeRange(lo, hi uint16) {
	for p := uint32(lo); p <= uint32(hi); p++ {
		s.take(uint16(p))
	}
}

// nextFree returns the first free port in [from, hi], or -1.
func (s *portSet) nextFree(from, hi uint16) int {
	if from > hi {
		return -1
	}
	w := int(from >> 6)
	last := int(hi >> 6)
	m := ^s.words[w] & (^uint64(0) << (from & 63))
	for {
		if m != 0 {
			p := w<<6 | bits.TrailingZeros64(m)
			if p > int(hi) {
				return -1
			}
			return p
		}
		// Find the next word that is not full through the summary.
		w++
		if w > last {
			return -1
		}
		for {
			sw := w >> 6
			f := ^s.full[sw] & (^uint64(0) << (w & 63))
			if f != 0 {
				w = sw<<6 | bits.TrailingZeros64(f)
				break
			}
			w = (sw + 1) << 6
			if w > last {
				return -1
			}
		}
		if w > last {
			return -1
		}
		m = ^s.words[w]
	}
}

// find returns a free port in [lo, hi], the first one at or after start and
// wrapping around to lo, or -1 when the range is full.
func (s *portSet) find(start, lo, hi uint16) int {
	if start < lo || start > hi {
		start = lo
	}
	if p := s.nextFree(start, hi); p >= 0 {
		return p
	}
	if start > lo {
		return s.nextFree(lo, start-1)
	}
	return -1
}
