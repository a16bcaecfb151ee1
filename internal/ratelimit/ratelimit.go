// Package ratelimit is tungate's one rate limiter: a token bucket in its
// GCRA form (the generic cell rate algorithm of ATM, ITU-T I.371), which is
// what every limit in the gateway uses — rules' limit= and log=, the ICMP
// errors it sends per destination, and NAT's warnings.
//
// A bucket is one atomic "theoretical arrival time" (tat) in nanoseconds
// instead of a token count and a refill time, so any number of cores share
// it with one compare-and-swap, no lock and no allocation, and a keyed
// limiter is just an array of int64s. A packet at time now conforms when
// tat - now <= tau; it then moves tat to max(tat, now) + interval. With
// tau = (burst-1)*interval, burst packets pass back to back after a quiet
// period and then one per interval: exactly the integer-nanosecond token
// bucket of Linux's nft_limit (tokens_max = burst*cost, starting full, a
// non-conforming packet spends nothing).
//
// golang.org/x/time/rate does not fit: its tokens are float64 (it cannot
// match nft's arithmetic to the nanosecond), each Limiter is a mutex and
// two time.Times (80 bytes a bucket, 320 KiB for the ICMP limiter's 4096
// destinations against 32 KiB here), and it wants time.Time where the
// datapath already holds a monotonic int64.
package ratelimit

import "sync/atomic"

// Rate is the shape of a bucket: how often a token comes and how many may
// be saved up. One Rate serves any number of buckets (Allow's tat).
type Rate struct {
	interval int64 // nanoseconds per token
	tau      int64 // (burst-1)*interval
}

// Every returns the rate of one token per interval nanoseconds, with at
// most burst (at least 1) saved up.
func Every(interval, burst int64) Rate {
	return Rate{interval: interval, tau: (max(burst, 1) - 1) * interval}
}

// PerSecond returns the rate of perSecond tokens a second (more than zero),
// with at most burst saved up.
func PerSecond(perSecond float64, burst int64) Rate {
	return Every(int64(1e9/perSecond), burst)
}

// Allow reports whether an event at now (monotonic nanoseconds, not
// before zero) conforms to r in the bucket whose state is tat, spending a
// token if so. A bucket starts (tat zero) full.
func (r Rate) Allow(tat *atomic.Int64, now int64) bool {
	for {
		old := tat.Load()
		t := max(old, now)
		if t-now > r.tau {
			return false
		}
		if tat.CompareAndSwap(old, t+r.interval) {
			return true
		}
	}
}
