package nat

import (
	"math/rand/v2"
	"testing"
)

func TestPortSetParity(t *testing.T) {
	var s portSet
	s.take(5000)
	if p := s.findPreferring(5000, 1024, 65535, parityOf(5000)); p != 5002 {
		t.Fatalf("even port 5000 taken: got %d, want 5002", p)
	}
	s.take(5001)
	if p := s.findPreferring(5001, 1024, 65535, parityOf(5001)); p != 5003 {
		t.Fatalf("odd port 5001 taken: got %d, want 5003", p)
	}
	// Only odd ports left in a small range: an even request takes one.
	s.takeRange(10, 10)
	s.takeRange(12, 12)
	if p := s.findPreferring(10, 10, 13, evenParity); p != 11 {
		t.Fatalf("fallback to the other parity: %d", p)
	}
	// A word with all even ports held is skipped by even searches only.
	var w portSet
	for p := 1024; p < 1088; p += 2 {
		w.take(uint16(p))
	}
	if p := w.find(1024, 1024, 65535, evenParity); p != 1088 {
		t.Fatalf("even search: %d", p)
	}
	if p := w.find(1024, 1024, 65535, oddParity); p != 1025 {
		t.Fatalf("odd search: %d", p)
	}
}

func TestPortSetFind(t *testing.T) {
	var s portSet
	if p := s.find(5000, 1024, 65535, anyParity); p != 5000 {
		t.Fatalf("free port not preserved: %d", p)
	}
	s.take(5000)
	if p := s.find(5000, 1024, 65535, anyParity); p != 5001 {
		t.Fatalf("next free: %d", p)
	}
	// Wrap-around: everything from 60000 up is held.
	s.takeRange(60000, 65535)
	if p := s.find(61000, 1024, 65535, anyParity); p != 1024 {
		t.Fatalf("wrap: %d", p)
	}
	// Start outside the range starts at lo.
	if p := s.find(80, 1024, 2000, anyParity); p != 1024 {
		t.Fatalf("clamp: %d", p)
	}
	// A full small range.
	s.takeRange(10, 12)
	if p := s.find(10, 10, 12, anyParity); p != -1 {
		t.Fatalf("full range gave %d", p)
	}
	s.release(11)
	if p := s.find(12, 10, 12, anyParity); p != 11 {
		t.Fatalf("released port not found: %d", p)
	}
	// Port 65535 and 0 at the edges.
	var e portSet
	e.takeRange(0, 65534)
	if p := e.find(0, 0, 65535, anyParity); p != 65535 {
		t.Fatalf("last port: %d", p)
	}
	e.take(65535)
	if p := e.find(0, 0, 65535, anyParity); p != -1 || e.held != 65536 {
		t.Fatalf("full set: %d held %d", p, e.held)
	}
	e.release(0)
	if p := e.find(30000, 0, 65535, anyParity); p != 0 {
		t.Fatalf("port 0 after wrap: %d", p)
	}
}

// TestPortSetAgainstModel compares the set with a plain array under random
// operations and ranges.
func TestPortSetAgainstModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var s portSet
	var model [65536]bool
	held := 0
	for i := range 200000 {
		p := uint16(rng.IntN(65536))
		if i%3 == 0 {
			// Bursts keep whole words full so the summary matters.
			p = uint16(rng.IntN(4096))
		}
		if rng.IntN(3) > 0 {
			if s.take(p) == model[p] {
				t.Fatalf("take(%d) disagrees", p)
			}
			if !model[p] {
				held++
			}
			model[p] = true
		} else {
			if model[p] {
				held--
			}
			s.release(p)
			model[p] = false
		}
		lo := uint16(rng.IntN(65536))
		hi := lo + uint16(rng.IntN(int(65535-lo)+1))
		start := uint16(rng.IntN(65536))
		par := parity(rng.IntN(3))
		free := func(q int) bool {
			return !model[q] && (par == anyParity || (q&1 == 0) == (par == evenParity))
		}
		want := -1
		st := int(start)
		if st < int(lo) || st > int(hi) {
			st = int(lo)
		}
		for q := st; q <= int(hi); q++ {
			if free(q) {
				want = q
				break
			}
		}
		if want < 0 {
			for q := int(lo); q < st; q++ {
				if free(q) {
					want = q
					break
				}
			}
		}
		if got := s.find(start, lo, hi, par); got != want {
			t.Fatalf("op %d: find(%d, %d, %d, parity %d) = %d, want %d", i, start, lo, hi, par, got, want)
		}
	}
	if s.held != held {
		t.Fatalf("held %d, want %d", s.held, held)
	}
}

// TestPortSetNearlyFull finds the scattered free ports of a 99% full range
// from any start (BenchmarkPortAlloc shows the cost stays flat).
func TestPortSetNearlyFull(t *testing.T) {
	var s portSet
	rng := rand.New(rand.NewPCG(3, 4))
	// 99% full, the free ports scattered.
	for p := 1024; p <= 65535; p++ {
		s.take(uint16(p))
	}
	for range 645 {
		s.release(uint16(1024 + rng.IntN(64512)))
	}
	n := 0
	for p := 1024; p <= 65535; p++ {
		if !s.has(uint16(p)) {
			n++
		}
	}
	for range 1000 {
		start := uint16(1024 + rng.IntN(64512))
		got := s.find(start, 1024, 65535, anyParity)
		if got < 0 || s.has(uint16(got)) {
			t.Fatalf("find(%d) = %d", start, got)
		}
	}
	if n == 0 {
		t.Fatal("no free ports")
	}
}
