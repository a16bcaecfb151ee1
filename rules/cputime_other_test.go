//go:build !linux

package rules

import "testing"

// cpuLoop runs body in a b.Loop; thread CPU time is only measured on Linux.
func cpuLoop(b *testing.B, body func()) {
	b.ReportAllocs()
	for b.Loop() {
		body()
	}
}
