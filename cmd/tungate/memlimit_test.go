package main

import (
	"runtime/debug"
	"testing"

	"tungate/conntrack"
)

// TestMemoryLimit: the limit follows max, the default max when unset, and
// GOMEMLIMIT from the environment wins over it.
func TestMemoryLimit(t *testing.T) {
	if got, want := memoryLimit(0), memoryLimit(conntrack.DefaultMax); got != want {
		t.Fatalf("default max: %d, want %d", got, want)
	}
	if got := memoryLimit(1_000_000); got != 256<<20+512_000_000 {
		t.Fatalf("max 1,000,000: %d", got)
	}
	old := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(old) })

	t.Setenv("GOMEMLIMIT", "")
	if l, derived := setMemoryLimit(4096); !derived || l != memoryLimit(4096) || debug.SetMemoryLimit(-1) != l {
		t.Fatalf("derived limit %d (%v), runtime has %d", l, derived, debug.SetMemoryLimit(-1))
	}
	debug.SetMemoryLimit(1 << 40)
	t.Setenv("GOMEMLIMIT", "1TiB")
	if l, derived := setMemoryLimit(4096); derived || l != 1<<40 {
		t.Fatalf("with GOMEMLIMIT set: %d (%v), want the runtime's own", l, derived)
	}
}
