package conntrack

import (
	"sync"
	"testing"
	"time"

	"tungate/packet"
)

// TestRecentRing: the stripe's candidate ring keeps the last recentLen
// confirmed and hands them out oldest first; a forgotten one is passed
// over.
func TestRecentRing(t *testing.T) {
	var l paddedMutex
	cs := make([]*Conn, recentLen+3)
	for i := range cs {
		cs[i] = &Conn{}
	}
	if l.oldest() != nil {
		t.Fatal("empty ring gave a candidate")
	}
	for _, c := range cs {
		l.remember(c)
	}
	for i := len(cs) - recentLen; i < len(cs); i++ {
		if c := l.oldest(); c != cs[i] {
			t.Fatalf("oldest %d: wrong candidate", i)
		}
	}
	if l.oldest() != nil {
		t.Fatal("drained ring gave a candidate")
	}
	l.remember(cs[0])
	if l.oldest() != cs[0] {
		t.Fatal("ring wrong after draining")
	}
	// A dead connection leaves the ring; oldest passes over its slot.
	for _, c := range cs[:3] {
		l.remember(c)
	}
	l.forget(cs[0])
	l.forget(cs[1])
	l.forget(&Conn{}) // not listed: nothing changes
	if c := l.oldest(); c != cs[2] {
		t.Fatal("oldest did not pass over the forgotten connections")
	}
	if l.oldest() != nil || l.pos>>8 != 0 {
		t.Fatal("ring not empty after taking its one live candidate")
	}
}

// TestEarlyDropConcurrent floods a full table from two goroutines with new
// connections (every one an early drop, entries reused): a candidate on a
// stripe's list must never be an entry being reused (a data race here,
// shown under -race, before a dying connection left the list). The table
// must stay consistent and at its max.
func TestEarlyDropConcurrent(t *testing.T) {
	const max = 256
	iters := 3000
	if testing.Short() {
		iters = 500
	}
	tab, err := NewTable(Config{Max: max, Buckets: 1024})
	if err != nil {
		t.Fatal(err)
	}
	now := int64(time.Hour)
	var pkts [][]byte
	for _, f := range ctFamilies {
		for i := range 4 * max {
			pkts = append(pkts, build.UDP(f.cli, uint16(1024+i), f.srv, 53, 0))
		}
	}
	in := func(res *Result, b []byte) {
		var p packet.Parsed
		if err := p.Decode(b); err != nil {
			t.Error(err)
			return
		}
		tab.In(&p, now, res)
		if c := res.Conn; c != nil && !c.Confirmed() {
			if err := tab.Confirm(c, now); err != nil {
				tab.Delete(c)
			}
		}
	}
	var fill Result
	for _, b := range pkts[:max] {
		in(&fill, b)
	}
	fill.Release()
	var wg sync.WaitGroup
	for g := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var res Result
			for i := range iters {
				in(&res, pkts[(i*7+g*131)%len(pkts)])
				if i%16 == 15 {
					res.Release()
				}
			}
			res.Release()
		}()
	}
	wg.Wait()
	// Two flooders may both pass the full check before either confirms:
	// the max holds within their number.
	if n := tab.Count(); n < max-2 || n > max+2 {
		t.Fatalf("count %d after the flood, want the max %d", n, max)
	}
	linked := 0
	tab.Range(func(c *Conn) bool { linked++; return true })
	if linked != tab.Count() {
		t.Fatalf("%d connections linked, count %d", linked, tab.Count())
	}
}
