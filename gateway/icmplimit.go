package gateway

import (
	"hash/maphash"
	"sync/atomic"

	"tungate/internal/ratelimit"
	"tungate/packet"
)

// icmpLimiter rate-limits the ICMP errors the gateway sends, per
// destination, with ratelimit buckets in a fixed hashed array: no
// allocation, no lock, bounded memory whatever the number of destinations
// (addresses that share a slot share a budget, which errs on the side of
// sending fewer errors).
type icmpLimiter struct {
	rate  ratelimit.Rate
	seed  maphash.Seed
	slots [4096]atomic.Int64 // each slot's bucket state (ratelimit.Rate.Allow)
}

func newICMPLimiter(perSecond float64, burst int) *icmpLimiter {
	return &icmpLimiter{rate: ratelimit.PerSecond(perSecond, int64(burst)), seed: maphash.MakeSeed()}
}

// allow spends a token for dst at time now (ns) if one is there.
func (l *icmpLimiter) allow(dst packet.Addr, now int64) bool {
	return l.rate.Allow(l.slot(dst), now)
}

// slot is dst's bucket.
func (l *icmpLimiter) slot(dst packet.Addr) *atomic.Int64 {
	return &l.slots[maphash.Comparable(l.seed, dst)%uint64(len(l.slots))]
}
