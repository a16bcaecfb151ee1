package main

import (
	"os"
	"runtime/debug"

	"tungate/conntrack"
)

// The soft memory limit tungate derives from [conntrack] max when
// GOMEMLIMIT is not set. An entry of a full table costs at most about
// 320 bytes of live heap with NAT (a 224-byte Conn, a 48-byte NAT binding,
// 32 bytes of hash buckets, a share of a mapping; BenchmarkRSSPerNATFlow
// measures it), and the garbage collector, left to GOGC alone, lets the
// heap grow to twice the live set between collections: a full table of a
// million entries could then show 640 MB. With the limit the collector
// runs earlier as the process nears it, so the resident size stays near
// memoryBase + max × memoryPerEntry. It is soft: a live set above it (huge
// rule sets, an uplink's socket buffers) makes the collector work harder,
// its CPU share capped by the runtime, and never fails an allocation.
const (
	// memoryPerEntry is the live bytes of a NATed entry with the slack
	// a collection cycle needs on top (about 1.6×).
	memoryPerEntry = 512
	// memoryBase covers everything that is not the table: rules, sets,
	// packet buffers, the uplink's stack, the runtime itself.
	memoryBase = 256 << 20
)

// memoryLimit is the limit for a table of max entries (0: the default).
func memoryLimit(max int) int64 {
	if max <= 0 {
		max = conntrack.DefaultMax
	}
	return memoryBase + int64(max)*memoryPerEntry
}

// setMemoryLimit applies memoryLimit(max) unless GOMEMLIMIT is set (the
// runtime already applied it). It returns the limit in force and whether
// it was derived from max.
func setMemoryLimit(max int) (int64, bool) {
	if os.Getenv("GOMEMLIMIT") != "" {
		return debug.SetMemoryLimit(-1), false
	}
	l := memoryLimit(max)
	debug.SetMemoryLimit(l)
	return l, true
}
