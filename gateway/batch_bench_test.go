package gateway

import "testing"

// BenchmarkForwardBatch runs whole batches of 32 packets of an established
// IPv6 UDP flow through a worker, read to write: what BenchmarkForward
// measures plus the per-batch work (shared counters, per-link counters,
// one Write per output link). ns/op is per batch.
func BenchmarkForwardBatch(b *testing.B) {
	const n = 32
	g := nullGateway(b, "")
	out := udpPacket("fd10::2", "2001:db8:1::2", 40000, 5000, 64, false, make([]byte, 64))
	back := udpPacket("2001:db8:1::2", "fd10::2", 5000, 40000, 64, false, make([]byte, 64))
	lan := newWorker(g, g.links[0])
	wan := newWorker(g, g.links[1])
	lan.rs, wan.rs = g.rules.Load(), g.rules.Load()
	lan.now, wan.now = g.ct.Now(), g.ct.Now()
	runPacket(lan, out)
	runPacket(wan, back)
	fill := func() {
		for i := 0; i < n; i++ {
			lan.sizes[i] = copy(lan.bufs[i][headroom:], out)
		}
	}
	before := g.Counters.Forwarded.Load()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		fill()
		lan.batch(n)
	}
	b.StopTimer()
	if got := g.Counters.Forwarded.Load() - before; got != uint64(n*b.N) {
		b.Fatalf("forwarded %d of %d packets; drops %v", got, n*b.N, g.Counters.Snapshot())
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n*b.N), "ns/pkt")
}
