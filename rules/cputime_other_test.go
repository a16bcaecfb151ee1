//go:build !linux

package rules

import (
	"testing"
	"time"
)

// cpuLoop runs body in a b.Loop; thread CPU time is only measured on Linux.
func cpuLoop(b *testing.B, body func()) {
	b.ReportAllocs()
	for b.Loop() {
		body()
	}
}

var processStart = time.Now()

// processCPU falls back to the wall clock where thread CPU time is not
// measured.
func processCPU() time.Duration { return time.Since(processStart) }
