package gateway

import (
	"bytes"
	"encoding/binary"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"
)

// vmRSS reads this process's resident set size from /proc/self/status.
func vmRSS(tb testing.TB) int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		tb.Fatal(err)
	}
	for _, l := range bytes.Split(b, []byte("\n")) {
		if f := bytes.Fields(l); len(f) == 3 && string(f[0]) == "VmRSS:" {
			kb, err := strconv.ParseInt(string(f[1]), 10, 64)
			if err != nil {
				tb.Fatal(err)
			}
			return kb << 10
		}
	}
	tb.Fatal("no VmRSS")
	return 0
}

// BenchmarkRSSPerNATFlow pushes a million distinct UDP flows through
// masquerade (table max 1,048,576) on a null-device gateway and reports
// the growth of the process's resident memory per flow (rss-B/flow), right
// after the flows (garbage not yet returned included) and after a forced
// collection that returns free memory to the OS (rss-gc-B/flow), and of
// the live heap (heap-B/flow). The flows come from 62,500 internal
// endpoints to 16 destinations each, so every endpoint holds one external
// port (endpoint-independent mapping) shared by its 16 connections. Run
// with -benchtime 1x; GOMEMLIMIT applies as set in the environment.
func BenchmarkRSSPerNATFlow(b *testing.B) {
	const (
		flows     = 1_000_000
		perSource = 16
	)
	for range b.N {
		g := nullGateway(b, "[conntrack]\nmax = 1048576\n[[nat.masquerade]]\nout = \"wan\"\n")
		lan := newWorker(g, g.Links()[0])
		lan.rs = g.Rules()
		tmpl := udpPacket("10.10.0.2", "203.0.113.1", 1024, 53, 64, false, make([]byte, 16))
		pkt := make([]byte, len(tmpl))
		var ms runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&ms)
		heap0, rss0 := ms.HeapAlloc, vmRSS(b)
		before := g.Counters.Forwarded.Load()
		for i := range flows {
			if i%64 == 0 {
				lan.now = g.ct.Now()
			}
			src, dst := i/perSource, i%perSource
			copy(pkt, tmpl)
			pkt[14], pkt[15] = 0, byte(2+src%250) // 10.10.0.2-251
			binary.BigEndian.PutUint16(pkt[20:], uint16(1024+src/250))
			pkt[18], pkt[19] = byte(dst>>8), byte(dst) // 203.0.x.y
			binary.BigEndian.PutUint16(pkt[26:], 0)    // no UDP checksum
			binary.BigEndian.PutUint16(pkt[10:], 0)
			binary.BigEndian.PutUint16(pkt[10:], ^checksum.Checksum(pkt[:20], 0))
			runPacket(lan, pkt)
		}
		if got := g.Counters.Forwarded.Load() - before; got != flows || g.ct.Count() != flows {
			b.Fatalf("forwarded %d, %d connections; drops %v", got, g.ct.Count(), g.Counters.Snapshot())
		}
		rss1 := vmRSS(b)
		runtime.GC()
		runtime.ReadMemStats(&ms)
		heap1 := ms.HeapAlloc
		debug.FreeOSMemory()
		rss2 := vmRSS(b)
		b.ReportMetric(float64(rss1-rss0)/flows, "rss-B/flow")
		b.ReportMetric(float64(rss2-rss0)/flows, "rss-gc-B/flow")
		b.ReportMetric(float64(heap1-heap0)/flows, "heap-B/flow")
		b.ReportMetric(float64(g.nat.Stats().Mappings), "mappings")
		runtime.KeepAlive(g)
		g.Close()
	}
}
