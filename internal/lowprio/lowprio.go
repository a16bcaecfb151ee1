// Package lowprio runs control-plane work (compiling a reload, walking the
// connection table for `ct list`) at the lowest CPU priority, so that on a
// small machine the datapath's threads get the cores first.
package lowprio

import (
	"runtime"
	"sync"

	"golang.org/x/sys/unix"
)

var (
	mu sync.Mutex // guards base and running, and every GOMAXPROCS change
	// base is GOMAXPROCS without the slots added here; valid while
	// running > 0.
	base    int
	running int
)

// Do runs fn on an OS thread of its own at nice 19, and waits for it.
//
// Nicing the thread alone would not do: the goroutine on it holds one of
// the scheduler's GOMAXPROCS slots even while the kernel starves the
// thread, so the datapath's goroutines would lose that slot. So fn gets a
// slot of its own, added for the time it runs, and the kernel, which then
// sees more runnable threads than cores, gives the cores to the datapath's
// threads first. Calls may overlap: each adds a slot and takes it back.
// The thread is discarded afterwards (its goroutine exits locked to it):
// raising a thread's priority again needs a privilege.
func Do(fn func()) {
	mu.Lock()
	if running == 0 {
		base = runtime.GOMAXPROCS(0)
	}
	running++
	runtime.GOMAXPROCS(base + running)
	mu.Unlock()
	defer func() {
		mu.Lock()
		running--
		runtime.GOMAXPROCS(base + running)
		mu.Unlock()
	}()
	done := make(chan struct{})
	var p any
	go func() {
		defer close(done)
		defer func() { p = recover() }()
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		unix.Setpriority(unix.PRIO_PROCESS, unix.Gettid(), 19)
		fn()
	}()
	<-done
	if p != nil {
		panic(p) // on the caller's goroutine, as if fn had run there
	}
}
