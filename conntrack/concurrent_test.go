package conntrack

import (
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"tungate/packet"
)

// TestConcurrentTable runs the datapath (In/Confirm on both directions of
// many flows, ICMP errors, ESP learning, expectations) against deleters, the
// garbage collector, Range with AppendConn, Flush and an event subscriber,
// all at once. Run with -race; afterwards the table must be consistent.
func TestConcurrentTable(t *testing.T) {
	iters := 4000
	if testing.Short() {
		iters = 500
	}
	tab, err := NewTable(Config{Max: 300, Buckets: 1024, Timeouts: Timeouts{UDP: ctSec(2), UDPStream: ctSec(3), ESP: ctSec(2)}})
	if err != nil {
		t.Fatal(err)
	}
	var clock atomic.Int64
	clock.Store(int64(time.Hour))

	type flow struct{ out, back, errBack []byte }
	var flows []flow
	for _, f := range ctFamilies {
		for i := range 200 {
			src := f.cli
			if i%2 == 1 {
				src = f.cli2
			}
			out := build.UDP(src, uint16(2000+i), f.srv, 53, 4)
			flows = append(flows, flow{out, build.UDP(f.srv, 53, src, uint16(2000+i), 4), build.Unreachable(f.srv, src, out, -1)})
		}
		for i := range 20 {
			flows = append(flows, flow{build.ESP(f.cli, f.srv, uint32(0x100+i), 1), build.ESP(f.srv, f.cli, uint32(0x200+i), 1), nil})
			flows = append(flows, flow{build.Echo(f.cli, f.srv, false, uint16(i), 8), build.Echo(f.srv, f.cli, true, uint16(i), 8), nil})
		}
	}

	var wg sync.WaitGroup
	stop := make(chan struct{})
	run := func(fn func(r *rand.Rand, i int)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(rand.Uint64(), 1))
			for i := 0; i < iters; i++ {
				select {
				case <-stop:
					return
				default:
				}
				fn(r, i)
			}
		}()
	}
	datapath := func(r *rand.Rand, _ int) {
		var p packet.Parsed
		var res Result
		fl := flows[r.IntN(len(flows))]
		b := fl.out
		switch k := r.IntN(8); {
		case k < 3:
			b = fl.back
		case k == 3 && fl.errBack != nil:
			b = fl.errBack
		}
		if p.Decode(b) != nil {
			t.Error("decode")
			return
		}
		now := clock.Load()
		tab.In(&p, now, &res)
		if res.Conn != nil && !res.Conn.Confirmed() {
			if err := tab.Confirm(res.Conn, now); err != nil && err != ErrClash && err != ErrDead {
				t.Error(err)
			}
		}
		if res.Conn != nil && r.IntN(16) == 0 {
			res.Conn.Lock()
			res.Conn.EnsureExt().HelperData = r.Int()
			res.Conn.Unlock()
		}
	}
	run(datapath)
	run(datapath)
	run(datapath)
	run(func(r *rand.Rand, _ int) { // deleter
		var p packet.Parsed
		if p.Decode(flows[r.IntN(len(flows))].out) != nil {
			return
		}
		var tu Tuple
		tupleAddrs(&p, &tu)
		tab.Tracker(p.Proto).Tuple(&p, &tu)
		if c, _ := tab.lookup(&tu, clock.Load()); c != nil {
			tab.Delete(c)
		}
	})
	run(func(r *rand.Rand, i int) { // clock and garbage collector
		clock.Add(int64(time.Millisecond) * int64(r.IntN(3)))
		tab.GC(clock.Load(), 32)
		if i%1000 == 999 {
			tab.Flush()
		}
	})
	run(func(r *rand.Rand, _ int) { // admin: ct list
		var b []byte
		n := 0
		tab.Range(func(c *Conn) bool {
			b = tab.AppendConn(b[:0], c, clock.Load())
			n++
			return n < 50
		})
	})
	run(func(r *rand.Rand, i int) { // a helper: expectations on live masters
		fl := flows[r.IntN(400)]
		var p packet.Parsed
		if p.Decode(fl.out) != nil {
			return
		}
		// The helper's packet on the control connection comes first; it
		// may meet a full table or a clash, like anyone's.
		var res Result
		tab.In(&p, clock.Load(), &res)
		m := res.Conn
		if m == nil || (!m.Confirmed() && tab.Confirm(m, clock.Load()) != nil) {
			return
		}
		tu := *m.Tuple(DirOriginal)
		e := &Expectation{
			Tuple:   Tuple{Src: tu.Dst, Dst: tu.Src, DstPort: uint16(6000 + i%64), Proto: packet.ProtoUDP, Family: tu.Family},
			Mask:    Mask{Src: FullMask.Src, Dst: FullMask.Dst, DstPort: 0xffff},
			Master:  m,
			Expires: clock.Load() + int64(time.Second),
		}
		if err := tab.Expect(e, 2); err != nil && err != ErrExpectClash && err != ErrDead && err != ErrExpectLimit {
			t.Error(err)
		}
		data := build.UDP(p.DstIP(), 20, p.SrcIP(), e.Tuple.DstPort, 0)
		if p.Decode(data) == nil {
			tab.In(&p, clock.Load(), &res)
			if res.Conn != nil && !res.Conn.Confirmed() {
				tab.Confirm(res.Conn, clock.Load())
			}
		}
	})
	events, cancel := tab.Subscribe(128)
	var drained sync.WaitGroup
	drained.Add(1)
	go func() {
		defer drained.Done()
		for {
			select {
			case e := <-events:
				_ = e.Conn.Status()
			case <-stop:
				return
			}
		}
	}()
	wg.Wait()
	close(stop)
	drained.Wait()
	cancel()

	// The workload did what it is meant to stress.
	st := &tab.Stats
	if st.Insert.Load() < 100 || st.Delete.Load() < 100 || st.ExpectNew.Load() == 0 {
		t.Fatalf("insert %d delete %d expect_new %d insert_failed %d", st.Insert.Load(), st.Delete.Load(), st.ExpectNew.Load(), st.InsertFailed.Load())
	}
	t.Logf("insert %d delete %d early_drop %d drop %d expect_new %d invalid %d", st.Insert.Load(), st.Delete.Load(), st.EarlyDrop.Load(), st.Drop.Load(), st.ExpectNew.Load(), st.Invalid.Load())

	// Quiet now: every linked node belongs to a live, confirmed
	// connection whose tuple it carries, and the count agrees.
	seen := map[*Conn]int{}
	for i := range tab.buckets {
		tab.buckets[i].each(func(n *hashNode) bool {
			c, dir := n.conn()
			if st := c.Status(); st&StatusDying != 0 || st&StatusConfirmed == 0 {
				t.Fatalf("linked connection with status %#x", st)
			}
			if n.kind != nodeAlias && n.tuple != *c.Tuple(dir) {
				t.Fatal("node tuple differs from its connection's")
			}
			if int(n.tuple.hash(tab.seed)&tab.mask) != i {
				t.Fatal("node in the wrong bucket")
			}
			if n.kind != nodeAlias {
				seen[c]++
			}
			return true
		})
		// A slot's tag is its node's.
		b := &tab.buckets[i]
		for j := range b.slot {
			if n := b.slot[j].Load(); n != nil && (b.tags.Load()>>(j*tagBits))&tagMask != tagOf(n.tuple.hash(tab.seed)) {
				t.Fatal("slot tag differs from its node's")
			}
		}
	}
	for c, n := range seen {
		if n != 2 {
			t.Fatalf("connection linked %d times", n)
		}
		if got, _ := tab.lookup(c.Tuple(DirReply), clock.Load()); got != c && !tab.expired(c, clock.Load()) {
			t.Fatal("reply tuple does not find its connection")
		}
	}
	if len(seen) != tab.Count() {
		t.Fatalf("count %d, linked %d", tab.Count(), len(seen))
	}
	x := &tab.exp
	x.mu.RLock()
	if int(x.count.Load()) != len(x.expiry) {
		t.Fatalf("expectation count %d, heap %d", x.count.Load(), len(x.expiry))
	}
	x.mu.RUnlock()
	// A sweep far in the future empties everything.
	tab.GC(clock.Load()+int64(time.Hour), len(tab.buckets))
	if tab.Count() != 0 || tab.ExpectationCount() != 0 {
		t.Fatalf("after a final sweep: %d connections, %d expectations", tab.Count(), tab.ExpectationCount())
	}
}
