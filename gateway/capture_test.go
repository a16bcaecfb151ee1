package gateway

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/header"

	"tungate/link"
	"tungate/packet"
)

// captureGateway is a null gateway whose lan link replays an established
// TCP segment, and a worker on it.
func captureGateway(tb testing.TB, extra string, perRead int) (*Gateway, *worker, *replayDev) {
	g := nullGateway(tb, extra)
	lan := newWorker(g, g.Links()[0])
	wan := newWorker(g, g.Links()[1])
	lan.rs, wan.rs = g.Rules(), g.Rules()
	lan.now, wan.now = g.ct.Now(), g.ct.Now()
	runPacket(lan, tcpPacket("10.10.0.2", "198.18.0.2", 40000, 80, 1000, 0, header.TCPFlagSyn, 0))
	runPacket(wan, tcpPacket("198.18.0.2", "10.10.0.2", 80, 40000, 5000, 1001, header.TCPFlagSyn|header.TCPFlagAck, 0))
	dev := &replayDev{pkt: tcpPacket("10.10.0.2", "198.18.0.2", 40000, 80, 1001, 5001, header.TCPFlagAck, 64), perRead: perRead}
	g.Links()[0].Dev = link.FromTUN(dev)
	return g, newWorker(g, g.Links()[0]), dev
}

// readBatch reads one batch from the worker's link and runs it, as run's
// loop does.
func readBatch(w *worker) int {
	n, err := w.link.Dev.Read(w.bufs, w.sizes, headroom)
	if err != nil {
		return 0
	}
	w.batch(n)
	return n
}

// TestCaptureVerdicts: a captured link's packets come in with their
// verdict and go out as sent, each side's copy as it crossed the link.
func TestCaptureVerdicts(t *testing.T) {
	g, w, dev := captureGateway(t, `
[filter.forward]
rules = [ { dst = ["198.18.0.99"], action = "drop" } ]
`, 1)
	lanCap, err := g.StartCapture("lan", CaptureOptions{Queue: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer lanCap.Stop()
	wanCap, err := g.StartCapture("wan", CaptureOptions{Queue: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer wanCap.Stop()
	if _, err := g.StartCapture("lan", CaptureOptions{}); err == nil || !strings.Contains(err.Error(), "already") {
		t.Fatalf("second capture of lan: %v", err)
	}
	if _, err := g.StartCapture("nope", CaptureOptions{}); err == nil || !strings.Contains(err.Error(), `no interface "nope"`) {
		t.Fatalf("capture of an unknown interface: %v", err)
	}
	dev.reads = 1
	readBatch(w)
	dropped := tcpPacket("10.10.0.2", "198.18.0.99", 40001, 80, 1000, 0, header.TCPFlagSyn, 0)
	dev.pkt, dev.reads = dropped, 1
	readBatch(w)

	get := func(c *Capture) *CapturedPacket {
		t.Helper()
		select {
		case p := <-c.Packets():
			return p
		case <-time.After(5 * time.Second):
			t.Fatal("no captured packet")
			return nil
		}
	}
	in := get(lanCap)
	if in.Dir != CaptureIn || in.Verdict != "accept: forwarded to wan" || len(in.Data) != 20+20+64 {
		t.Fatalf("lan in: dir %d verdict %q len %d", in.Dir, in.Verdict, len(in.Data))
	}
	// The inbound copy is the packet as read: TTL 64, before the
	// forwarding decrement.
	if in.Data[8] != 64 {
		t.Fatalf("inbound copy has TTL %d", in.Data[8])
	}
	out := get(wanCap)
	if out.Dir != CaptureOut || out.Verdict != "sent" || out.Data[8] != 63 {
		t.Fatalf("wan out: dir %d verdict %q ttl %d", out.Dir, out.Verdict, out.Data[8])
	}
	lanCap.Release(in)
	wanCap.Release(out)
	if p := get(lanCap); p.Verdict != "drop: filter" || p.Dir != CaptureIn {
		t.Fatalf("dropped packet: %q", p.Verdict)
	}
	select {
	case p := <-wanCap.Packets():
		t.Fatalf("a dropped packet went out: %+v", p)
	default:
	}
	lanCap.Stop()
	if g.capturing.Load() != 1 || g.Links()[0].st.capture.Load() != nil {
		t.Fatal("stop left the capture on")
	}
}

// TestCaptureSlowReader: a reader that takes nothing costs the datapath
// nothing but the packets it misses, which are counted.
func TestCaptureSlowReader(t *testing.T) {
	g, w, dev := captureGateway(t, "", 64)
	c, err := g.StartCapture("lan", CaptureOptions{Queue: 16})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	before := g.Counters.Forwarded.Load()
	dev.reads = 100
	for readBatch(w) > 0 {
	}
	if got := g.Counters.Forwarded.Load() - before; got != 6400 {
		t.Fatalf("forwarded %d of 6400 with a stuck capture", got)
	}
	if c.Captured() != 16 || c.Dropped() != 6400-16 {
		t.Fatalf("captured %d, dropped %d", c.Captured(), c.Dropped())
	}
}

// TestCaptureOffAllocs: with no capture, a batch allocates nothing.
func TestCaptureOffAllocs(t *testing.T) {
	_, w, dev := captureGateway(t, "", 64)
	dev.reads = 1 << 30
	if n := testing.AllocsPerRun(100, func() { readBatch(w) }); n != 0 {
		t.Fatalf("%v allocations per batch without capture", n)
	}
}

// BenchmarkCapture runs 64-segment batches (as BenchmarkForwardBatch) with
// no capture, and with the input link captured by a reader that keeps up.
func BenchmarkCapture(b *testing.B) {
	for _, on := range []bool{false, true} {
		name := "off"
		if on {
			name = "on"
		}
		b.Run(name, func(b *testing.B) {
			g, w, dev := captureGateway(b, "", 64)
			if on {
				c, err := g.StartCapture("lan", CaptureOptions{Queue: 4096})
				if err != nil {
					b.Fatal(err)
				}
				done := make(chan struct{})
				go func() {
					for {
						select {
						case p := <-c.Packets():
							c.Release(p)
						case <-done:
							return
						}
					}
				}()
				defer close(done)
				defer c.Stop()
			}
			dev.reads = 1 << 30
			b.ReportAllocs()
			cpu0 := cpuTime(b)
			for b.Loop() {
				readBatch(w)
			}
			b.ReportMetric(float64((cpuTime(b)-cpu0).Nanoseconds())/float64(b.N*64), "cpu-ns/pkt")
		})
	}
}

// TestCaptureFilter: only the packets the filter selects are recorded,
// in and out; the others are neither recorded nor counted as lost.
func TestCaptureFilter(t *testing.T) {
	g, w, dev := captureGateway(t, "", 1)
	for _, c := range []struct {
		f    CaptureFilter
		want bool
	}{
		{CaptureFilter{}, true},
		{CaptureFilter{Host: netip.MustParsePrefix("198.18.0.0/24")}, true},
		{CaptureFilter{Host: netip.MustParsePrefix("10.10.0.2/32"), Proto: packet.ProtoTCP, HasProto: true, Port: 80}, true},
		{CaptureFilter{Host: netip.MustParsePrefix("192.0.2.0/24")}, false},
		{CaptureFilter{Proto: packet.ProtoUDP, HasProto: true}, false},
		{CaptureFilter{Port: 443}, false},
	} {
		lan, err := g.StartCapture("lan", CaptureOptions{Queue: 4, Filter: c.f})
		if err != nil {
			t.Fatal(err)
		}
		wan, err := g.StartCapture("wan", CaptureOptions{Queue: 4, Filter: c.f})
		if err != nil {
			t.Fatal(err)
		}
		dev.reads = 1
		readBatch(w)
		lan.Stop()
		wan.Stop()
		if got := lan.Captured() == 1 && wan.Captured() == 1; got != c.want || lan.Dropped()+wan.Dropped() != 0 {
			t.Errorf("filter %+v: captured in %d out %d, dropped %d, want %v", c.f, lan.Captured(), wan.Captured(), lan.Dropped()+wan.Dropped(), c.want)
		}
		if !c.want && lan.Captured()+wan.Captured() != 0 {
			t.Errorf("filter %+v recorded a packet it does not match", c.f)
		}
	}
}
