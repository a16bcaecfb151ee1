package rules

import (
	"runtime"
	"syscall"
	"testing"
	"time"
)

// threadCPUNanos is the calling thread's CPU time (RUSAGE_THREAD).
func threadCPUNanos() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(1, &ru); err != nil { // 1: RUSAGE_THREAD
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// cpuLoop runs body in a b.Loop on a locked thread and reports the thread
// CPU time per op as cpu-ns/op next to the wall-clock ns/op. On a shared,
// oversubscribed machine the wall clock includes time spent descheduled;
// CPU time does not, so the two together say how much of ns/op is ours.
func cpuLoop(b *testing.B, body func()) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	b.ReportAllocs()
	start := threadCPUNanos()
	n := 0
	for b.Loop() {
		body()
		n++
	}
	if n > 0 {
		b.ReportMetric(float64(threadCPUNanos()-start)/float64(n), "cpu-ns/op")
	}
}

// processCPU is the process's CPU time (RUSAGE_SELF: all threads, so GC
// work counts), which unlike the wall clock does not grow when the machine
// is shared.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
