package gateway

import (
	"errors"
	"os"
	"syscall"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/tun"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"tungate/link"
)

// replayDev returns the same packet perRead times on every Read, reads
// times, then reports itself closed: it drives a worker's whole loop (read,
// batch, flush, write) through the link interface.
type replayDev struct {
	pkt     []byte
	perRead int
	reads   int
}

func (d *replayDev) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	if d.reads == 0 {
		return 0, os.ErrClosed
	}
	d.reads--
	for i := 0; i < d.perRead; i++ {
		sizes[i] = copy(bufs[i][offset:], d.pkt)
	}
	return d.perRead, nil
}

func (d *replayDev) Write(bufs [][]byte, offset int) (int, error) { return len(bufs), nil }
func (d *replayDev) MTU() (int, error)                            { return 1500, nil }
func (d *replayDev) Name() (string, error)                        { return "replay", nil }
func (d *replayDev) File() *os.File                               { return nil }
func (d *replayDev) Events() <-chan tun.Event                     { return nil }
func (d *replayDev) Close() error                                 { return nil }
func (d *replayDev) BatchSize() int                               { return d.perRead }

// BenchmarkForwardBatch runs batches of 64 segments of an established TCP
// flow through the worker's loop: the link's Read, the pipeline, the
// output link's Write. One op is one batch. cpu-ns/pkt is the process's
// CPU time per packet, steadier than wall time on a loaded machine.
func BenchmarkForwardBatch(b *testing.B) {
	const perRead = 64
	g := nullGateway(b, "")
	lan := newWorker(g, g.Links()[0])
	wan := newWorker(g, g.Links()[1])
	lan.rs, wan.rs = g.Rules(), g.Rules()
	lan.now, wan.now = g.ct.Now(), g.ct.Now()
	runPacket(lan, tcpPacket("10.10.0.2", "198.18.0.2", 40000, 80, 1000, 0, header.TCPFlagSyn, 0))
	runPacket(wan, tcpPacket("198.18.0.2", "10.10.0.2", 80, 40000, 5000, 1001, header.TCPFlagSyn|header.TCPFlagAck, 0))
	dev := &replayDev{pkt: tcpPacket("10.10.0.2", "198.18.0.2", 40000, 80, 1001, 5001, header.TCPFlagAck, 64), perRead: perRead}
	g.Links()[0].Dev = link.FromTUN(dev)
	w := newWorker(g, g.Links()[0])
	before := g.Counters.Forwarded.Load()
	b.ReportAllocs()
	b.ResetTimer()
	dev.reads = b.N
	cpu0 := cpuTime(b)
	// The replay ends as a device that went away would: run says so.
	if err := w.run(); err != nil && !errors.Is(err, os.ErrClosed) {
		b.Fatal(err)
	}
	b.StopTimer()
	pkts := float64(b.N * perRead)
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/pkts, "ns/pkt")
	b.ReportMetric(float64((cpuTime(b)-cpu0).Nanoseconds())/pkts, "cpu-ns/pkt")
	if got := g.Counters.Forwarded.Load() - before; got != uint64(b.N*perRead) {
		b.Fatalf("forwarded %d of %d packets; drops %v", got, b.N*perRead, g.Counters.Snapshot())
	}
}

// cpuTime is the CPU time the process has used.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
