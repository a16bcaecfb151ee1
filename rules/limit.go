package rules

import (
	"sync/atomic"
	"time"

	"tungate/internal/ratelimit"
)

// limiter is the limit= match: a ratelimit bucket (GCRA, the
// integer-nanosecond token bucket nft's limit keeps, so a rule behaves as
// its nft rendering does to the nanosecond; see package ratelimit for why
// not golang.org/x/time/rate) plus nft's "over".
type limiter struct {
	rate ratelimit.Rate
	tat  atomic.Int64
	// over inverts the result: nft's "limit rate over", which matches
	// the packets beyond the rate.
	over bool
}

func newLimiter(interval int64, burst int64, over bool) *limiter {
	return &limiter{rate: ratelimit.Every(interval, burst), over: over}
}

// allow reports whether a packet at now conforms, spending a token if so.
// A non-conforming packet spends nothing, like nft_limit.
func (l *limiter) allow(now int64) bool { return l.rate.Allow(&l.tat, now) }

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
