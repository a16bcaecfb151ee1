package gateway

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"go.uber.org/zap"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"tungate/internal/packettest"
	"tungate/link"
)

// nullDev is a device that never delivers and discards writes: the
// benchmarks drive the worker directly.
type nullDev struct{ done chan struct{} }

func (d *nullDev) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	<-d.done
	return 0, os.ErrClosed
}
func (d *nullDev) Write(bufs [][]byte, offset int) (int, error) { return len(bufs), nil }
func (d *nullDev) MTU() (int, error)                            { return 1500, nil }
func (d *nullDev) Close() error                                 { return nil }
func (d *nullDev) BatchSize() int                               { return 128 }

func nopLogger() *zap.Logger { return zap.NewNop() }

func nullOpen(*InterfaceConfig, *zap.Logger) (link.Link, error) {
	return &nullDev{done: make(chan struct{})}, nil
}

// nullGateway builds a gateway on the two standard links, with devices that
// never deliver, for benchmarks and fuzzing that drive workers directly.
func nullGateway(tb testing.TB, extra string) *Gateway {
	cfg, err := ParseConfig([]byte(linksConf + extra))
	if err != nil {
		tb.Fatal(err)
	}
	g, err := New(cfg, Options{Logger: nopLogger(), Open: nullOpen})
	if err != nil {
		tb.Fatal(err)
	}
	return g
}

// tcpPacket builds a TCP segment with valid checksums (DF set on IPv4)
// and payload zero bytes.
func tcpPacket(src, dst string, sport, dport uint16, seq, ack uint32, flags header.TCPFlags, payload int) []byte {
	return packettest.Build(packettest.IP{V6: strings.Contains(src, ":"), Src: src, Dst: dst, DF: true},
		packettest.TCP{SPort: sport, DPort: dport, Seq: seq, Ack: ack, Flags: uint8(flags), Win: 65535}, make([]byte, payload))
}

// runPacket copies pkt into the worker's first buffer and runs it through
// the pipeline, then forgets the queued output.
func runPacket(w *worker, pkt []byte) {
	n := copy(w.bufs[0][headroom:], pkt)
	w.packet(w.bufs[0], n)
	w.g.Counters.Forwarded.Add(w.forwarded)
	w.forwarded = 0
	for i := range w.out {
		w.out[i], w.outPart[i], w.nPart[i], w.offs[i] = w.out[i][:0], w.outPart[i][:0], 0, w.offs[i][:0]
	}
	w.nscratch = 0
}

func benchForward(b *testing.B, g *Gateway, fwd, rev []byte) {
	lan := newWorker(g, g.Links()[0])
	wan := newWorker(g, g.Links()[1])
	lan.now, wan.now = g.ct.Now(), g.ct.Now()
	lan.rs, wan.rs = g.Rules(), g.Rules()
	runPacket(lan, fwd)
	if rev != nil {
		runPacket(wan, rev)
	}
	before := g.Counters.Forwarded.Load()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		runPacket(lan, fwd)
	}
	b.StopTimer()
	if got := g.Counters.Forwarded.Load() - before; got != uint64(b.N) {
		b.Fatalf("forwarded %d of %d packets; drops %v", got, b.N, g.Counters.Snapshot())
	}
}

// BenchmarkForward measures parse, conntrack, route, TTL and queueing of an
// established flow with the default (accept) policy.
func BenchmarkForward(b *testing.B) {
	b.Run("ipv4-tcp", func(b *testing.B) {
		g := nullGateway(b, "")
		syn := tcpPacket("10.10.0.2", "198.18.0.2", 40000, 80, 1000, 0, header.TCPFlagSyn, 0)
		synack := tcpPacket("198.18.0.2", "10.10.0.2", 80, 40000, 5000, 1001, header.TCPFlagSyn|header.TCPFlagAck, 0)
		lan := newWorker(g, g.Links()[0])
		wan := newWorker(g, g.Links()[1])
		lan.rs, wan.rs = g.Rules(), g.Rules()
		lan.now, wan.now = g.ct.Now(), g.ct.Now()
		runPacket(lan, syn)
		runPacket(wan, synack)
		ack := tcpPacket("10.10.0.2", "198.18.0.2", 40000, 80, 1001, 5001, header.TCPFlagAck, 64)
		benchForward(b, g, ack, nil)
	})
	b.Run("ipv6-udp", func(b *testing.B) {
		g := nullGateway(b, "")
		out := udpPacket("fd10::2", "2001:db8:1::2", 40000, 5000, 64, false, make([]byte, 64))
		back := udpPacket("2001:db8:1::2", "fd10::2", 5000, 40000, 64, false, make([]byte, 64))
		benchForward(b, g, out, back)
	})
}

// BenchmarkForwardNAT is the conformance configuration: masquerade, a
// stateful forward policy, an established TCP flow.
func BenchmarkForwardNAT(b *testing.B) {
	const conf = `
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
	g := nullGateway(b, conf)
	lan := newWorker(g, g.Links()[0])
	wan := newWorker(g, g.Links()[1])
	lan.rs, wan.rs = g.Rules(), g.Rules()
	lan.now, wan.now = g.ct.Now(), g.ct.Now()
	syn := tcpPacket("10.10.0.2", "198.18.0.2", 40000, 80, 1000, 0, header.TCPFlagSyn, 0)
	runPacket(lan, syn)
	// The SYN/ACK goes to the masqueraded address and port.
	var natPort uint16 = 40000
	synack := tcpPacket("198.18.0.2", "198.18.0.1", 80, natPort, 5000, 1001, header.TCPFlagSyn|header.TCPFlagAck, 0)
	runPacket(wan, synack)
	ack := tcpPacket("10.10.0.2", "198.18.0.2", 40000, 80, 1001, 5001, header.TCPFlagAck, 64)
	benchForward(b, g, ack, nil)
}

// BenchmarkReload10kRules times a full reload (read, decode, validate,
// compile, swap) of a config with 10,000 generated forward rules. The
// datapath keeps using the old rules until the atomic swap.
func BenchmarkReload10kRules(b *testing.B) {
	var sb strings.Builder
	sb.WriteString(`
[[interface]]
name = "lan"
tun = "lan0"
addresses = ["10.10.0.1/24"]
[[interface]]
name = "wan"
tun = "wan0"
addresses = ["198.18.0.1/24"]
[filter.forward]
policy = "drop"
rules = [
  { ct_state = ["established", "related"], action = "accept" },
`)
	for i := range 10000 {
		fmt.Fprintf(&sb, "  { src = [\"10.%d.%d.0/24\"], proto = \"tcp\", dport = %d, action = \"accept\" },\n", i/256, i%256, 1000+i%5000)
	}
	sb.WriteString("]\n")
	path := filepath.Join(b.TempDir(), "big.toml")
	if err := os.WriteFile(path, []byte(sb.String()), 0o600); err != nil {
		b.Fatal(err)
	}
	cfg, err := LoadConfig(path)
	if err != nil {
		b.Fatal(err)
	}
	g, err := New(cfg, Options{Logger: nopLogger(), Open: nullOpen})
	if err != nil {
		b.Fatal(err)
	}
	// GC cycles per reload, with the reload's GC target (sparseGC) and
	// with the default one: each cycle's mark phase takes a P from the
	// links' readers.
	for _, pct := range []int{reloadGCPercent, 100} {
		b.Run(fmt.Sprintf("gogc=%d", pct), func(b *testing.B) {
			saved := reloadGCPercent
			reloadGCPercent = pct
			defer func() { reloadGCPercent = saved }()
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			gc0 := ms.NumGC
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := g.Reload(); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			runtime.ReadMemStats(&ms)
			b.ReportMetric(float64(ms.NumGC-gc0)/float64(b.N), "gc/op")
		})
	}
}
