package wireguard

import (
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// threadCPU is the CPU time the calling thread has used. The machine is
// shared and often oversubscribed, so wall-clock ns/op mostly measures
// the wait for a core; the benchmarks also report CPU time per operation.
func threadCPU() time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_THREAD, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// cpuTimer reports CPU ns/op for the loop between its start and stop.
type cpuTimer struct {
	b     *testing.B
	start time.Duration
}

func startCPU(b *testing.B) *cpuTimer {
	runtime.LockOSThread()
	b.ResetTimer()
	return &cpuTimer{b: b, start: threadCPU()}
}

func (c *cpuTimer) stop() {
	used := threadCPU() - c.start
	c.b.StopTimer()
	runtime.UnlockOSThread()
	c.b.ReportMetric(float64(used.Nanoseconds())/float64(c.b.N), "cpu-ns/op")
}
