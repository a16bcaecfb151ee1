package main

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"sync"
	"time"
)

// startHeapProfiles writes a heap profile into dir every interval and once
// more when the returned stop is called, named heap-SECONDS.pb.gz by the
// seconds since the start. A soak's question is where memory went between
// two moments of a long run, which only two profiles of the same process
// answer (go tool pprof -base FIRST LAST); a profile at exit alone would
// not. Each profile follows a GC so that it shows what is live, not what
// the last cycle left.
func startHeapProfiles(dir string, interval time.Duration) (stop func(), err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	start := time.Now()
	write := func() {
		runtime.GC()
		name := filepath.Join(dir, fmt.Sprintf("heap-%05d.pb.gz", int(time.Since(start).Seconds())))
		f, err := os.Create(name)
		if err != nil {
			return
		}
		pprof.WriteHeapProfile(f)
		f.Close()
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				write()
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			close(done)
			wg.Wait()
			write()
		})
	}, nil
}
