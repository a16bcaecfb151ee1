package gateway

import (
	"hash/maphash"
	"sync"

	"tungate/packet"
)

// icmpLimiter rate-limits the ICMP errors the gateway sends, per
// destination, with token buckets in a fixed hashed array: no allocation,
// bounded memory whatever the number of destinations (addresses that share
// a slot share a budget, which errs on the side of sending fewer errors).
type icmpLimiter struct {
	rate  float64 // tokens per nanosecond
	burst float64
	seed  maphash.Seed
	slots [4096]limitSlot
}

type limitSlot struct {
	mu     sync.Mutex // guards tokens and last
	tokens float64
	last   int64
}

func newICMPLimiter(perSecond float64, burst int) *icmpLimiter {
	l := &icmpLimiter{rate: perSecond / 1e9, burst: float64(burst), seed: maphash.MakeSeed()}
	for i := range l.slots {
		l.slots[i].tokens = l.burst
	}
	return l
}

// allow spends a token for dst at time now (ns) if one is there.
func (l *icmpLimiter) allow(dst packet.Addr, now int64) bool {
	s := &l.slots[maphash.Comparable(l.seed, dst)%uint64(len(l.slots))]
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.last != 0 {
		s.tokens += float64(now-s.last) * l.rate
		if s.tokens > l.burst {
			s.tokens = l.burst
		}
	}
	s.last = now
	if s.tokens < 1 {
		return false
	}
	s.tokens--
	return true
}
