package gateway

import (
	"errors"
	"net/netip"
	"os"
	"testing"

	"tungate/link"
)

// newFlowsConf is the new-flows benchmarks' gateway: masquerade and the
// stateful rule set, a table of 32,768.
const newFlowsConf = `
[conntrack]
max = 32768
[[route]]
to = "10.10.0.0/16"
interface = "lan"
[[route]]
to = "fd10::/64"
interface = "lan"
[[nat.masquerade]]
out = "wan"
[filter.forward]
policy = "drop"
rules = [
  { ct_state = ["established", "related"], action = "accept" },
  { ct_state = ["invalid"], action = "drop" },
  { in = "lan", ct_state = ["new"], action = "accept" },
]
`

// newFlowPackets makes n one-packet UDP flows from the LAN (a new source
// address and port each, to one of 1,000 server ports).
func newFlowPackets(n int, v6 bool) [][]byte {
	pkts := make([][]byte, n)
	for i := range pkts {
		src := netip.AddrFrom4([4]byte{10, 10, byte(i >> 10), byte(1 + i%250)})
		dst := "198.18.0.2"
		if v6 {
			src = netip.AddrFrom16([16]byte{0: 0xfd, 1: 0x10, 13: byte(i >> 16), 14: byte(i >> 8), 15: byte(i)})
			dst = "2001:db8:1::2"
		}
		pkts[i] = udpPacket(src.String(), dst, uint16(1024+i%60000), uint16(10000+i%1000), 64, false, make([]byte, 18))
	}
	return pkts
}

// BenchmarkForwardNewFlows is what scripts/bench-newflows.sh measures end
// to end, without the TUNs: one-packet UDP flows (a new source address and
// port each, IPv4 and IPv6) through masquerade and the stateful rule set
// into a full table ([conntrack] max 32768, so every new flow costs an
// early drop and a NAT port released and taken). One op is one packet.
func BenchmarkForwardNewFlows(b *testing.B) {
	for _, v6 := range []bool{false, true} {
		name := "ipv4"
		if v6 {
			name = "ipv6"
		}
		b.Run(name, func(b *testing.B) {
			g := nullGateway(b, newFlowsConf)
			lan := newWorker(g, g.Links()[0])
			lan.rs = g.Rules()
			// Distinct flows, eight times the table. The table is filled
			// with the first max of them; the rest are sent round and
			// round. Early drop evicts the newest unassured entries
			// first (a flood's own), so the filling flows stay and each
			// packet of the rest is a new flow evicting the previous one.
			const max, flows = 32768, 1 << 18
			pkts := newFlowPackets(flows, v6)
			lan.now = g.ct.Now()
			for i := range max {
				runPacket(lan, pkts[i])
			}
			rest := pkts[max:]
			before := g.Counters.Forwarded.Load()
			ed := g.ct.Stats.EarlyDrop.Load()
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := cpuTime(b)
			for i := 0; i < b.N; i++ {
				if i&63 == 0 {
					lan.now = g.ct.Now()
				}
				runPacket(lan, rest[i%len(rest)])
			}
			b.StopTimer()
			// CPU time per flow: on a loaded machine the wall time is
			// mostly waiting for the CPU.
			b.ReportMetric(float64((cpuTime(b)-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
			if got := g.Counters.Forwarded.Load() - before; got != uint64(b.N) {
				b.Fatalf("forwarded %d of %d; %v", got, b.N, g.Stats())
			}
			if g.ct.Stats.EarlyDrop.Load()-ed < uint64(b.N)*9/10 {
				b.Fatalf("early drops %d for %d packets: the flows were not new", g.ct.Stats.EarlyDrop.Load()-ed, b.N)
			}
		})
	}
}

// flowsDev returns perRead packets of pkts on every Read, going round
// pkts, reads times, then reports itself closed.
type flowsDev struct {
	replayDev
	pkts [][]byte
	next int
}

func (d *flowsDev) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	if d.reads == 0 {
		return 0, os.ErrClosed
	}
	d.reads--
	for i := 0; i < d.perRead; i++ {
		sizes[i] = copy(bufs[i][offset:], d.pkts[d.next])
		if d.next++; d.next == len(d.pkts) {
			d.next = 0
		}
	}
	return d.perRead, nil
}

// BenchmarkForwardNewFlowsBatch is BenchmarkForwardNewFlows through the
// worker's whole loop in batches of 64, as the batched TUN reads deliver a
// flood: the table is full, so every packet is an early drop, a NAT port
// released and taken, and a new entry. One op is one packet.
func BenchmarkForwardNewFlowsBatch(b *testing.B) {
	const perRead = 64
	for _, v6 := range []bool{false, true} {
		name := "ipv4"
		if v6 {
			name = "ipv6"
		}
		b.Run(name, func(b *testing.B) {
			g := nullGateway(b, newFlowsConf)
			const max, flows = 32768, 1 << 18
			pkts := newFlowPackets(flows, v6)
			lan := newWorker(g, g.Links()[0])
			lan.rs = g.Rules()
			lan.now = g.ct.Now()
			for i := range max {
				runPacket(lan, pkts[i])
			}
			// The filling worker holds no entry: reuse may go on.
			lan.res.Release()
			dev := &flowsDev{replayDev: replayDev{perRead: perRead}, pkts: pkts[max:]}
			g.Links()[0].Dev = link.FromTUN(dev)
			w := newWorker(g, g.Links()[0])
			reads := (b.N + perRead - 1) / perRead
			before := g.Counters.Forwarded.Load()
			ed := g.ct.Stats.EarlyDrop.Load()
			b.ReportAllocs()
			b.ResetTimer()
			dev.reads = reads
			cpu0 := cpuTime(b)
			if err := w.run(); err != nil && !errors.Is(err, os.ErrClosed) {
				b.Fatal(err)
			}
			b.StopTimer()
			n := float64(reads * perRead)
			b.ReportMetric(float64((cpuTime(b)-cpu0).Nanoseconds())/n, "cpu-ns/op")
			if got := g.Counters.Forwarded.Load() - before; got != uint64(reads*perRead) {
				b.Fatalf("forwarded %d of %d; %v", got, reads*perRead, g.Stats())
			}
			if g.ct.Stats.EarlyDrop.Load()-ed < uint64(reads*perRead)*9/10 {
				b.Fatalf("early drops %d for %d packets: the flows were not new", g.ct.Stats.EarlyDrop.Load()-ed, reads*perRead)
			}
		})
	}
}
