package nat

import "math/bits"

// portSet is the set of held ports (or ICMP identifiers) of one external
// address and protocol. A bit per port, plus summary bits per 64-port word
// saying that all of its even, or all of its odd, ports are held, so finding
// the next free port — of either parity or of a given one — skips full
// stretches 4096 ports at a time: the cost of an allocation stays flat as the
// range fills, where probing port by port (Linux's nf_nat_l4proto_unique_tuple
// tries up to 128 random ports) degrades and then fails while ports remain.
//
// A portSet is guarded by Engine.mu.
type portSet struct {
	words [1024]uint64 // bit p&63 of words[p>>6]: port p is held
	fullE [16]uint64   // bit w&63 of fullE[w>>6]: every even port of words[w] is held
	fullO [16]uint64   // the same for odd ports
	held  int          // number of held ports
	// res are the ports port forwards reserve (held in words too); nil
	// until one does. shared are reserved ports a mapping already held
	// when a reload reserved them: the port stays held when the mapping
	// lets go, and when the forward does while the mapping still holds it.
	res    *[1024]uint64
	shared map[uint16]struct{}
}

// parity restricts a search to even or odd ports (RFC 4787 REQ-4: an RTP
// port and its RTCP neighbour keep their parity through the NAT).
type parity uint8

const (
	anyParity parity = iota
	evenParity
	oddParity
)

// Bit masks of a word's even and odd ports: a word starts at a multiple of
// 64, so bit parity is port parity.
const (
	evenBits = 0x5555555555555555
	oddBits  = 0xaaaaaaaaaaaaaaaa
)

func parityOf(p uint16) parity {
	if p&1 == 0 {
		return evenParity
	}
	return oddParity
}

func (par parity) mask() uint64 {
	switch par {
	case evenParity:
		return evenBits
	case oddParity:
		return oddBits
	}
	return ^uint64(0)
}

// fullWords returns the summary word sw for a search of parity par: bit set
// where the word has no free port of that parity.
func (s *portSet) fullWords(sw int, par parity) uint64 {
	switch par {
	case evenParity:
		return s.fullE[sw]
	case oddParity:
		return s.fullO[sw]
	}
	return s.fullE[sw] & s.fullO[sw]
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
	sb := uint64(1) << (w & 63)
	if p&1 == 0 {
		if s.words[w]&evenBits == evenBits {
			s.fullE[w>>6] |= sb
		}
	} else if s.words[w]&oddBits == oddBits {
		s.fullO[w>>6] |= sb
	}
	return true
}

// release gives back p, a mapping's port: it stays held when a port
// forward reserves it.
func (s *portSet) release(p uint16) {
	if s.reserved(p) {
		delete(s.shared, p)
		return
	}
	s.free(p)
}

// reserved reports whether a port forward reserves p.
func (s *portSet) reserved(p uint16) bool {
	return s.res != nil && s.res[p>>6]&(1<<(p&63)) != 0
}

// free marks p free.
func (s *portSet) free(p uint16) {
	w := p >> 6
	bit := uint64(1) << (p & 63)
	if s.words[w]&bit == 0 {
		return
	}
	s.words[w] &^= bit
	s.held--
	sb := uint64(1) << (w & 63)
	if p&1 == 0 {
		s.fullE[w>>6] &^= sb
	} else {
		s.fullO[w>>6] &^= sb
	}
}

// takeRange marks lo..hi held.
func (s *portSet) takeRange(lo, hi uint16) {
	for p := uint32(lo); p <= uint32(hi); p++ {
		s.take(uint16(p))
	}
}

// setReserved makes want the set's reserved ports (a reload's forwards):
// a newly reserved port is held from now on, so no new mapping takes it;
// one a mapping holds already stays that mapping's until it lets go (as
// a Linux DNAT rule added later leaves existing conntrack entries alone)
// and is returned in taken. A port no longer reserved is freed unless a
// mapping holds it.
func (s *portSet) setReserved(want *[1024]uint64, taken []uint16) []uint16 {
	if s.res == nil {
		if want == nil {
			return taken
		}
		s.res = new([1024]uint64)
	}
	for w := range s.res {
		var nw uint64
		if want != nil {
			nw = want[w]
		}
		old := s.res[w]
		if old == nw {
			continue
		}
		s.res[w] = nw
		for add := nw &^ old; add != 0; add &= add - 1 {
			p := uint16(w<<6 | bits.TrailingZeros64(add))
			if !s.take(p) {
				if s.shared == nil {
					s.shared = map[uint16]struct{}{}
				}
				s.shared[p] = struct{}{}
				taken = append(taken, p)
			}
		}
		for del := old &^ nw; del != 0; del &= del - 1 {
			p := uint16(w<<6 | bits.TrailingZeros64(del))
			if _, ok := s.shared[p]; ok {
				delete(s.shared, p)
				continue
			}
			s.free(p)
		}
	}
	return taken
}

// nextFree returns the first free port of parity par in [from, hi], or -1.
func (s *portSet) nextFree(from, hi uint16, par parity) int {
	if from > hi {
		return -1
	}
	pm := par.mask()
	w := int(from >> 6)
	last := int(hi >> 6)
	m := ^s.words[w] & pm & (^uint64(0) << (from & 63))
	for {
		if m != 0 {
			p := w<<6 | bits.TrailingZeros64(m)
			if p > int(hi) {
				return -1
			}
			return p
		}
		// Find the next word with a free port of the parity through the
		// summary.
		w++
		if w > last {
			return -1
		}
		for {
			sw := w >> 6
			f := ^s.fullWords(sw, par) & (^uint64(0) << (w & 63))
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
		m = ^s.words[w] & pm
	}
}

// find returns a free port of parity par in [lo, hi], the first one at or
// after start and wrapping around to lo, or -1 when there is none.
func (s *portSet) find(start, lo, hi uint16, par parity) int {
	if start < lo || start > hi {
		start = lo
	}
	if p := s.nextFree(start, hi, par); p >= 0 {
		return p
	}
	if start > lo {
		return s.nextFree(lo, start-1, par)
	}
	return -1
}

// findPreferring is find for parity par, falling back to any parity.
func (s *portSet) findPreferring(start, lo, hi uint16, par parity) int {
	if p := s.find(start, lo, hi, par); p >= 0 || par == anyParity {
		return p
	}
	return s.find(start, lo, hi, anyParity)
}
