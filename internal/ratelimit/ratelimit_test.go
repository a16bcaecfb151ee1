package ratelimit

import (
	"sync"
	"sync/atomic"
	"testing"
)

func TestBurstThenOnePerInterval(t *testing.T) {
	r := Every(100, 3)
	var tat atomic.Int64
	now := int64(1000)
	for i := range 3 {
		if !r.Allow(&tat, now) {
			t.Fatalf("packet %d of the burst refused", i)
		}
	}
	if r.Allow(&tat, now) {
		t.Fatal("fourth back-to-back packet allowed with burst 3")
	}
	if r.Allow(&tat, now+99) {
		t.Fatal("allowed 99ns later; a token takes 100ns")
	}
	if !r.Allow(&tat, now+100) {
		t.Fatal("refused after a full interval")
	}
	// A long quiet period saves up no more than the burst.
	now += 1_000_000
	n := 0
	for r.Allow(&tat, now) {
		n++
	}
	if n != 3 {
		t.Fatalf("after a quiet period %d passed back to back, want 3", n)
	}
}

func TestStartsFullAtTimeZero(t *testing.T) {
	var tat atomic.Int64
	if !PerSecond(1, 1).Allow(&tat, 0) {
		t.Fatal("a fresh bucket refused its first event at time zero")
	}
	if PerSecond(1, 1).Allow(&tat, 999_999_999) {
		t.Fatal("second event within the second allowed at 1/s burst 1")
	}
}

// TestConcurrentSpendsEachTokenOnce hammers one bucket from many goroutines
// at a frozen clock: exactly burst events may pass.
func TestConcurrentSpendsEachTokenOnce(t *testing.T) {
	r := Every(1_000_000, 50)
	var tat, passed atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 1000 {
				if r.Allow(&tat, 5) {
					passed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if passed.Load() != 50 {
		t.Fatalf("%d events passed, want the burst of 50", passed.Load())
	}
}

func BenchmarkAllow(b *testing.B) {
	r := PerSecond(1e6, 10)
	var tat atomic.Int64
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		r.Allow(&tat, int64(i)*1000)
	}
}
