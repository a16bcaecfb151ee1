package conntrack

import (
	"encoding/binary"
	"sync"
	"testing"
	"time"

	"tungate/packet"
)

// TestRawTuple: the warming pass's quick tuple is the one In looks up, for
// the packets it takes, and it takes nothing else.
func TestRawTuple(t *testing.T) {
	tab, err := NewTable(Config{})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range ctFamilies {
		for _, b := range [][]byte{
			build.UDP(f.cli, 40000, f.srv, 53, 10),
			build.TCP(f.cli, 40001, f.srv, 80, packet.TCPSyn),
		} {
			var got Tuple
			if !rawTuple(b, &got) {
				t.Fatalf("%s: rawTuple refused % x", f.name, b)
			}
			want := tupleOf(t, tab, b)
			if got != want || got.hash(tab.seed) != want.hash(tab.seed) {
				t.Fatalf("%s: rawTuple %+v, In's tuple %+v", f.name, got, want)
			}
		}
		var tu Tuple
		if rawTuple(build.Echo(f.cli, f.srv, false, 1, 1), &tu) {
			t.Fatalf("%s: an ICMP echo taken", f.name)
		}
		whole := build.UDP(f.cli, 1, f.srv, 2, 0)
		for n := range len(whole) {
			// Every truncation is refused or read within bounds; one
			// whose ports are there may be taken.
			rawTuple(whole[:n], &tu)
		}
	}
	frag := build.UDP(ctFamilies[0].cli, 1, ctFamilies[0].srv, 2, 0)
	binary.BigEndian.PutUint16(frag[6:], 0x2000) // more fragments
	var tu Tuple
	if rawTuple(frag, &tu) {
		t.Fatal("a first fragment taken")
	}
	if rawTuple(nil, &tu) || rawTuple([]byte{0x50}, &tu) {
		t.Fatal("garbage taken")
	}
}

// TestWarmerChangesNothing: in a full table the warming pass finds the
// candidate early drop then takes for the packet, and leaves the table as
// it was (the same count, the candidate still live until In runs).
func TestWarmerChangesNothing(t *testing.T) {
	const max = 4096
	for _, f := range ctFamilies {
		h := newCTHarness(t, Config{Max: max})
		var w Warmer
		var res Result
		if w.Begin(h.tab, &res) {
			t.Fatalf("%s: empty table warmed as full", f.name)
		}
		h.fill(f, max, false)
		if !w.Begin(h.tab, &res) {
			t.Fatalf("%s: full table (%d) not seen full", f.name, h.tab.Count())
		}
		pkt := build.UDP(f.cli2, 7, f.srv, 9, 0)
		w.Packet(h.tab, pkt)
		vs := w.Victims(h.tab)
		if len(vs) != 1 || connDying(vs[0]) || h.tab.Count() != max || h.tab.Stats.EarlyDrop.Load() != 0 {
			t.Fatalf("%s: victims %d, count %d, early drops %d", f.name, len(vs), h.tab.Count(), h.tab.Stats.EarlyDrop.Load())
		}
		v := vs[0]
		res.Release()
		r := h.pass(pkt)
		if r.Drop || !connDying(v) || h.tab.Stats.EarlyDrop.Load() != 1 || h.tab.Count() != max {
			t.Fatalf("%s: drop %v, warmed victim dying %v, early drops %d, count %d", f.name, r.Drop, connDying(v), h.tab.Stats.EarlyDrop.Load(), h.tab.Count())
		}
		// One flow's packets name its stripe's candidate once.
		w.Begin(h.tab, &res)
		for range 8 {
			w.Packet(h.tab, pkt)
		}
		if vs := w.Victims(h.tab); len(vs) != 1 {
			t.Fatalf("%s: %d victims for eight packets of one flow", f.name, len(vs))
		}
		res.Release()
		// A packet it does not take adds no victim.
		w.Begin(h.tab, &res)
		w.Packet(h.tab, build.Echo(f.cli, f.srv, false, 1, 1))
		if vs := w.Victims(h.tab); len(vs) != 0 {
			t.Fatalf("%s: %d victims for an ICMP echo", f.name, len(vs))
		}
		res.Release()
	}
}

// TestRecentRing: the stripe's candidate ring keeps the last recentLen
// confirmed, hands them out oldest first, and peek names what oldest
// takes next.
func TestRecentRing(t *testing.T) {
	var l paddedMutex
	cs := make([]*Conn, recentLen+3)
	for i := range cs {
		cs[i] = &Conn{}
	}
	if l.peek() != nil || l.oldest() != nil {
		t.Fatal("empty ring gave a candidate")
	}
	for _, c := range cs {
		l.remember(c)
	}
	for i := len(cs) - recentLen; i < len(cs); i++ {
		if p := l.peek(); p != cs[i] {
			t.Fatalf("peek %d: wrong candidate", i)
		}
		if c := l.oldest(); c != cs[i] {
			t.Fatalf("oldest %d: wrong candidate", i)
		}
	}
	if l.peek() != nil || l.oldest() != nil {
		t.Fatal("drained ring gave a candidate")
	}
	l.remember(cs[0])
	if l.peek() != cs[0] || l.oldest() != cs[0] {
		t.Fatal("ring wrong after draining")
	}
	// A dead connection leaves the ring; oldest passes over its slot.
	for _, c := range cs[:3] {
		l.remember(c)
	}
	l.forget(cs[0])
	l.forget(cs[1])
	l.forget(&Conn{}) // not listed: nothing changes
	if l.peek() != nil {
		t.Fatal("peek named a forgotten connection")
	}
	if c := l.oldest(); c != cs[2] {
		t.Fatal("oldest did not pass over the forgotten connections")
	}
	if l.oldest() != nil || l.pos.Load() != uint32(l.pos.Load()&0xff) {
		t.Fatal("ring not empty after taking its one live candidate")
	}
}

// TestWarmerConcurrent runs warming passes of a full table while other
// goroutines flood it with new connections (every one an early drop,
// entries reused) and delete: the pass peeks at candidates without the
// stripe lock and reads the tuples of those still live. Run with -race;
// the table must stay consistent and at its max.
func TestWarmerConcurrent(t *testing.T) {
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
	wg.Add(1)
	go func() {
		defer wg.Done()
		var w Warmer
		var res Result
		var sink uint64
		for i := 0; i < iters/8; i++ {
			if w.Begin(tab, &res) {
				for j := range 16 {
					w.Packet(tab, pkts[(i*16+j)%len(pkts)])
				}
				for _, c := range w.Victims(tab) {
					sink += uint64(c.Tuple(DirOriginal).SrcPort)
				}
				sink += w.Sink()
			}
			res.Release()
		}
		_ = sink
	}()
	wg.Wait()
	// Two flooders may both pass the full check before either confirms
	// (as before the warming pass): the max holds within their number.
	if n := tab.Count(); n < max-2 || n > max+2 {
		t.Fatalf("count %d after the flood, want the max %d", n, max)
	}
	linked := 0
	tab.Range(func(c *Conn) bool { linked++; return true })
	if linked != tab.Count() {
		t.Fatalf("%d connections linked, count %d", linked, tab.Count())
	}
}
