package conntrack

import (
	"encoding/binary"
	"net/netip"
	"runtime"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"tungate/packet"
)

// benchFlows returns n distinct UDP flows of family f: parsed original
// packets and their replies. Flows get client ports 1024 to 33791 and,
// for every 32768, another client address.
func benchFlows(tb testing.TB, f ctFamily, n int) (out, back []packet.Parsed) {
	out = make([]packet.Parsed, n)
	back = make([]packet.Parsed, n)
	for i := range n {
		cli := f.cli.AsSlice()
		cli[len(cli)-2] = byte(i >> 15)
		a, _ := netip.AddrFromSlice(cli)
		port := uint16(1024 + i&0x7fff)
		if err := out[i].Decode(build.UDP(a, port, f.srv, 443, 64)); err != nil {
			tb.Fatal(err)
		}
		if err := back[i].Decode(build.UDP(f.srv, 443, a, port, 64)); err != nil {
			tb.Fatal(err)
		}
	}
	return out, back
}

// cpuClock measures the CPU time the process uses (every thread, the
// garbage collector's too) over a benchmark loop. On a shared machine the
// wall clock also counts time other processes had the CPU; reported as
// cpu-ns/op, this does not.
type cpuClock struct{ start time.Duration }

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func startCPU() cpuClock { return cpuClock{cpuTime()} }

// report adds the cpu-ns/op metric for n operations.
func (c cpuClock) report(b *testing.B, n int) {
	b.ReportMetric(float64(cpuTime()-c.start)/float64(n), "cpu-ns/op")
}

// establish confirms every flow and answers it, so all are ESTABLISHED.
func establish(tb testing.TB, tab *Table, now int64, out, back []packet.Parsed) {
	var res Result
	for i := range out {
		tab.In(&out[i], now, &res)
		if res.Conn == nil {
			tb.Fatalf("flow %d: %+v", i, res)
		}
		if err := tab.Confirm(res.Conn, now); err != nil {
			tb.Fatal(err)
		}
		tab.In(&back[i], now, &res)
		if res.Info != EstablishedReply {
			tb.Fatalf("flow %d reply: %v", i, res.Info)
		}
	}
}

// BenchmarkEstablishedUDP is the common case: a packet of a known flow,
// looked up and its state, timeout and counters updated, in a table of
// 100k flows. The packet is decoded once; In is what is measured.
func BenchmarkEstablishedUDP(b *testing.B) {
	for _, f := range ctFamilies {
		b.Run(f.name, func(b *testing.B) {
			tab, err := NewTable(Config{Max: 1 << 17})
			if err != nil {
				b.Fatal(err)
			}
			now := int64(time.Hour)
			out, back := benchFlows(b, f, 100_000)
			establish(b, tab, now, out, back)
			p := &out[4242]
			var res Result
			b.ReportAllocs()
			b.ResetTimer()
			cpu := startCPU()
			for range b.N {
				tab.In(p, now, &res)
			}
			b.StopTimer()
			cpu.report(b, b.N)
			if res.Info != Established {
				b.Fatalf("info %v", res.Info)
			}
		})
	}
}

func TestEstablishedNoAlloc(t *testing.T) {
	for _, f := range ctFamilies {
		tab, _ := NewTable(Config{})
		out, back := benchFlows(t, f, 2)
		establish(t, tab, int64(time.Hour), out, back)
		var res Result
		if n := testing.AllocsPerRun(1000, func() {
			tab.In(&out[1], int64(time.Hour), &res)
			tab.In(&back[1], int64(time.Hour), &res)
		}); n != 0 {
			t.Fatalf("%s: %v allocations per established packet pair", f.name, n)
		}
		// ICMP errors about a flow decode their quote on the stack.
		var p packet.Parsed
		if err := p.Decode(build.Unreachable(f.srv, f.cli, out[1].Bytes(), -1)); err != nil {
			t.Fatal(err)
		}
		if n := testing.AllocsPerRun(1000, func() { tab.In(&p, int64(time.Hour), &res) }); n != 0 || res.Info != RelatedReply {
			t.Fatalf("%s: ICMP error: %v allocations, info %v", f.name, n, res.Info)
		}
	}
}

// BenchmarkNewConn is a connection's whole life in the table: the lookup
// misses, the connection is created, confirmed and (to keep the table's
// size steady) deleted again. With 1k connections in the table its chains
// stay in cache; with 50k (a table sized for 64k, half full) most chain
// and bucket reads miss the cache, as they will in a busy gateway.
func BenchmarkNewConn(b *testing.B) {
	for _, f := range ctFamilies {
		for _, live := range []int{1000, 50_000} {
			b.Run(f.name+"/live="+strconv.Itoa(live), func(b *testing.B) {
				tab, err := NewTable(Config{Max: 1 << 16})
				if err != nil {
					b.Fatal(err)
				}
				now := int64(time.Hour)
				out, back := benchFlows(b, f, live+50_000)
				establish(b, tab, now, out[:live], back[:live])
				fresh := out[live:]
				// establish's Result is dead: let the collector say so
				// before the clock starts, or it holds back reuse.
				runtime.GC()
				var res Result
				b.ReportAllocs()
				b.ResetTimer()
				cpu := startCPU()
				for i := range b.N {
					tab.In(&fresh[i%len(fresh)], now, &res)
					if res.Info != New {
						b.Fatalf("info %v", res.Info)
					}
					if err := tab.Confirm(res.Conn, now); err != nil {
						b.Fatal(err)
					}
					tab.Delete(res.Conn)
				}
				b.StopTimer()
				cpu.report(b, b.N)
			})
		}
	}
}

// BenchmarkEarlyDrop is a flood of new connections against a full table
// (max 65,536): nine tenths established and assured, the rest the flood's
// own unassured connections. Each new connection must evict one first;
// drops/op counts those that found nothing to evict and were dropped.
func BenchmarkEarlyDrop(b *testing.B) {
	for _, f := range ctFamilies {
		b.Run(f.name, func(b *testing.B) {
			const max = 1 << 16
			tab, err := NewTable(Config{Max: max})
			if err != nil {
				b.Fatal(err)
			}
			now := int64(time.Hour)
			out, back := benchFlows(b, f, max+100_000)
			assured := max * 9 / 10
			establish(b, tab, now, out[:assured], back[:assured])
			tab.Range(func(c *Conn) bool { c.SetStatus(StatusAssured); return true })
			var res Result
			for i := assured; i < max; i++ {
				tab.In(&out[i], now, &res)
				if res.Conn == nil || tab.Confirm(res.Conn, now) != nil {
					b.Fatalf("fill %d: %+v", i, res)
				}
			}
			fresh := out[max:]
			runtime.GC()
			drops := tab.Stats.Drop.Load()
			b.ReportAllocs()
			b.ResetTimer()
			cpu := startCPU()
			for i := range b.N {
				tab.In(&fresh[i%len(fresh)], now, &res)
				if res.Info == New {
					if err := tab.Confirm(res.Conn, now); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.StopTimer()
			cpu.report(b, b.N)
			b.ReportMetric(float64(tab.Stats.Drop.Load()-drops)/float64(b.N), "drops/op")
			if tab.Count() > max {
				b.Fatalf("count %d above max", tab.Count())
			}
		})
	}
}

// BenchmarkEstablishedParallel spreads established packets of 64k flows
// over all goroutines; compare -cpu 1,2 for how lookups scale.
func BenchmarkEstablishedParallel(b *testing.B) {
	tab, err := NewTable(Config{Max: 1 << 17})
	if err != nil {
		b.Fatal(err)
	}
	now := int64(time.Hour)
	out, back := benchFlows(b, ctFamilies[0], 1<<16)
	establish(b, tab, now, out, back)
	var next atomic.Uint64
	b.ReportAllocs()
	b.ResetTimer()
	cpu := startCPU()
	b.RunParallel(func(pb *testing.PB) {
		// Each goroutine works through its own stretch of flows, in both
		// directions, the way per-link readers do.
		i := int(next.Add(1)*7919) % len(out)
		var res Result
		for pb.Next() {
			tab.In(&out[i], now, &res)
			tab.In(&back[i], now, &res)
			if i++; i == len(out) {
				i = 0
			}
		}
	})
	b.StopTimer()
	// Two packets per iteration: per packet, in wall time across all
	// goroutines (throughput) and in CPU time (cost; it stays flat when
	// lookups scale, rises when cores fight over cache lines or locks).
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(2*b.N), "ns/pkt")
	cpu.report(b, 2*b.N)
}

// BenchmarkMemoryPerEntry fills a table sized for a million connections
// with a million established UDP flows and reports the heap it took per
// entry, bucket array included (B/entry), and the size of a Conn.
func BenchmarkMemoryPerEntry(b *testing.B) {
	const n = 1_000_000
	for range b.N {
		perEntry := memoryPerEntry(b, n)
		b.ReportMetric(perEntry, "B/entry")
	}
	b.ReportMetric(float64(unsafe.Sizeof(Conn{})), "B/Conn")
}

// memoryPerEntry returns the heap growth per entry of a table of n
// established connections created by In and Confirm.
func memoryPerEntry(tb testing.TB, n int) float64 {
	f := ctFamilies[0]
	var ms runtime.MemStats
	var p packet.Parsed
	if err := p.Decode(build.UDP(f.cli, 1, f.srv, 443, 64)); err != nil {
		tb.Fatal(err)
	}
	runtime.GC()
	runtime.ReadMemStats(&ms)
	before := ms.HeapAlloc
	tab, err := NewTable(Config{Max: n})
	if err != nil {
		tb.Fatal(err)
	}
	now := int64(time.Hour)
	var res Result
	for i := range n {
		// A new client address and port per flow, rewritten in place.
		var a packet.Addr
		binary.BigEndian.PutUint32(a[:], 0x0a000000|uint32(i>>4))
		p.SetSrc(a)
		p.SetSrcPort(uint16(1024 + i&15))
		tab.In(&p, now, &res)
		if res.Conn == nil || tab.Confirm(res.Conn, now) != nil {
			tb.Fatalf("flow %d not created: %+v", i, res)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&ms)
	if tab.Count() != n {
		tb.Fatalf("count %d", tab.Count())
	}
	per := float64(ms.HeapAlloc-before) / float64(n)
	runtime.KeepAlive(tab)
	return per
}

// TestMemoryPerEntry holds the table to its budget of 272 bytes an entry,
// measured on 200k connections (in a table whose hash size rounds up to
// 262,144): a Conn (224 bytes, an allocator size class of its own) and 32
// bytes of hash lines per hash entry (the 64-byte buckets that let a
// lookup miss in one cache miss; they were 8-byte chain heads), 42 bytes
// an entry at 200k. The budget was 288 with a 240-byte Conn.
func TestMemoryPerEntry(t *testing.T) {
	if per := memoryPerEntry(t, 200_000); per > 272 {
		t.Fatalf("%.1f bytes per entry (Conn is %d bytes), budget 272", per, unsafe.Sizeof(Conn{}))
	} else {
		t.Logf("%.1f bytes per entry, Conn %d bytes", per, unsafe.Sizeof(Conn{}))
	}
}

// BenchmarkGCStep is one RunGC step (1/64 of the buckets) over a table of
// a million connections: the longest the collector works at a time. With
// "expired", every entry in those buckets is deleted.
func BenchmarkGCStep(b *testing.B) {
	for _, expire := range []bool{false, true} {
		b.Run("expired="+strconv.FormatBool(expire), func(b *testing.B) {
			const n = 1 << 20
			tab, err := NewTable(Config{Max: n})
			if err != nil {
				b.Fatal(err)
			}
			now := int64(time.Hour)
			for i := range n {
				var tu Tuple
				binary.BigEndian.PutUint32(tu.Src[:], 0x0a000000|uint32(i))
				binary.BigEndian.PutUint32(tu.Dst[:], 0xc6120002)
				tu.SrcPort, tu.DstPort, tu.Proto, tu.Family = 1024, 443, packet.ProtoUDP, 4
				if err := tab.Confirm(tab.NewUnconfirmed(tu, now, time.Minute), now); err != nil {
					b.Fatal(err)
				}
			}
			step := len(tab.buckets) / gcStepsPerSweep
			at := now
			if expire {
				at += int64(time.Hour)
			}
			b.ReportAllocs()
			b.ResetTimer()
			cpu := startCPU()
			removed := 0
			for range b.N {
				removed += tab.GC(at, step)
			}
			b.StopTimer()
			cpu.report(b, b.N)
			if expire && removed == 0 || !expire && removed != 0 {
				b.Fatalf("removed %d", removed)
			}
		})
	}
}

// BenchmarkExpectLookup is a new connection's lookup in the expectation
// table with few and with thousands of expectations waiting (for other
// destinations): it should not grow with their number.
func BenchmarkExpectLookup(b *testing.B) {
	for _, n := range []int{1, 4000} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			s := newFTPSetup(b, ctFamilies[0], Config{ExpectMax: n})
			for p := range n {
				if err := s.h.tab.Expect(s.expectation(s.master, uint16(10000+p), time.Hour), 0); err != nil {
					b.Fatal(err)
				}
			}
			tu := tupleOf(b, s.h.tab, s.data(1, 9999))
			x := &s.h.tab.exp
			b.ReportAllocs()
			b.ResetTimer()
			cpu := startCPU()
			for range b.N {
				if x.match(&tu, s.h.now, &s.h.tab.Stats) != nil {
					b.Fatal("matched")
				}
			}
			cpu.report(b, b.N)
		})
	}
}
