//go:build !linux

package wireguard

import "testing"

// cpuTimer reports nothing where there is no per-thread CPU clock.
type cpuTimer struct{}

func startCPU(b *testing.B) *cpuTimer {
	b.ResetTimer()
	return &cpuTimer{}
}

func (c *cpuTimer) stop() {}
