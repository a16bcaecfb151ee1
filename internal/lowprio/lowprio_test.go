package lowprio

import (
	"runtime"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// TestDo: fn runs at nice 19 on a slot of its own, overlapping calls each
// add one, and GOMAXPROCS is back where it was afterwards.
func TestDo(t *testing.T) {
	procs := runtime.GOMAXPROCS(0)
	const n = 3
	var started, release sync.WaitGroup
	started.Add(n)
	release.Add(1)
	nices := make([]int, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			Do(func() {
				// Getpriority returns 20 - nice for a thread.
				p, err := unix.Getpriority(unix.PRIO_PROCESS, unix.Gettid())
				if err != nil {
					t.Error(err)
				}
				nices[i] = 20 - p
				started.Done()
				release.Wait()
			})
		}()
	}
	started.Wait()
	if got := runtime.GOMAXPROCS(0); got != procs+n {
		t.Errorf("GOMAXPROCS during %d overlapping calls = %d, want %d", n, got, procs+n)
	}
	release.Done()
	wg.Wait()
	if got := runtime.GOMAXPROCS(0); got != procs {
		t.Errorf("GOMAXPROCS after = %d, want %d", got, procs)
	}
	for i, v := range nices {
		if v != 19 {
			t.Errorf("call %d ran at nice %d, want 19", i, v)
		}
	}
}

// TestDoPanics: a panic in fn reaches the caller, and the slot is given
// back.
func TestDoPanics(t *testing.T) {
	procs := runtime.GOMAXPROCS(0)
	defer func() {
		if r := recover(); r != "boom" {
			t.Errorf("recovered %v, want boom", r)
		}
		if got := runtime.GOMAXPROCS(0); got != procs {
			t.Errorf("GOMAXPROCS after a panic = %d, want %d", got, procs)
		}
	}()
	Do(func() { panic("boom") })
}
