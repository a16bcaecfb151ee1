package rules

import (
	"sync/atomic"
	"time"
)

// limiter is a token bucket in its GCRA form (the generic cell rate
// algorithm, RFC 2697's cousin used by ATM and nft's limit): one atomic
// "theoretical arrival time" instead of a token count and a refill time, so
// two cores can share it with one compare-and-swap and no lock.
//
// A packet at time now conforms when tat - now <= tau; it then moves tat to
// max(tat, now) + interval. tau = (burst-1)*interval lets burst packets
// through back to back after a quiet period.
type limiter struct {
	tat      atomic.Int64
	interval int64 // nanoseconds per token
	tau      int64
	// over inverts the result: nft's "limit rate over", which matches
	// the packets beyond the rate.
	over bool
}

func newLimiter(interval int64, burst int64, over bool) *limiter {
	return &limiter{interval: interval, tau: (burst - 1) * interval, over: over}
}

// allow reports whether a packet at now conforms, spending a token if so.
// A non-conforming packet spends nothing, like nft_limit.
func (l *limiter) allow(now int64) bool {
	for {
		tat := l.tat.Load()
		t := max(tat, now)
		if t-now > l.tau {
			return false
		}
		if l.tat.CompareAndSwap(tat, t+l.interval) {
			return true
		}
	}
}

// match is the limit= match: conforming packets match, or, for "over",
// the non-conforming ones.
func (l *limiter) match(now int64) bool {
	return l.allow(now) != l.over
}

// monotonic returns a clock reading monotonic nanoseconds from the moment it
// was made; time.Since uses the monotonic reading of time.Now.
func monotonic() func() int64 {
	epoch := time.Now()
	return func() int64 { return int64(time.Since(epoch)) }
}
