package gateway

import (
	"errors"
	"io"
	"net/http"
	"os"
	"runtime"
	"syscall"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/header"

	"tungate/link"
)

// BenchmarkForwardMetrics is BenchmarkForwardBatch (batches of 64
// segments of an established TCP flow through the worker's loop) with the
// metrics endpoint off and on; "on" serves /metrics and scrapes it once a
// second while the batches run (ten times Prometheus' usual 10–15 s
// interval). The datapath's counters are the same atomics either way.
// thread-cpu-ns/pkt is the forwarding thread's own CPU time (what the
// datapath pays); cpu-ns/pkt is the whole process's, which here includes
// serving the scrapes and the scraping client itself (a Prometheus server
// is another process). Compare the two with scripts/bench-metrics.sh,
// which alternates them; give it -benchtime of a few seconds so scrapes
// happen.
func BenchmarkForwardMetrics(b *testing.B) {
	for _, on := range []bool{false, true} {
		name := "off"
		if on {
			name = "on"
		}
		b.Run(name, func(b *testing.B) {
			const perRead = 64
			g := nullGateway(b, "")
			defer g.Close()
			lan := newWorker(g, g.Links()[0])
			wan := newWorker(g, g.Links()[1])
			lan.rs, wan.rs = g.Rules(), g.Rules()
			lan.now, wan.now = g.ct.Now(), g.ct.Now()
			runPacket(lan, tcpPacket("10.10.0.2", "198.18.0.2", 40000, 80, 1000, 0, header.TCPFlagSyn, 0))
			runPacket(wan, tcpPacket("198.18.0.2", "10.10.0.2", 80, 40000, 5000, 1001, header.TCPFlagSyn|header.TCPFlagAck, 0))
			dev := &replayDev{pkt: tcpPacket("10.10.0.2", "198.18.0.2", 40000, 80, 1001, 5001, header.TCPFlagAck, 64), perRead: perRead}
			g.Links()[0].Dev = link.FromTUN(dev)
			w := newWorker(g, g.Links()[0])
			stop := make(chan struct{})
			scraped := make(chan int, 1)
			if on {
				addr, err := g.ServeMetrics("127.0.0.1:0")
				if err != nil {
					b.Fatal(err)
				}
				client := &http.Client{Timeout: 5 * time.Second}
				go func() {
					n := 0
					defer func() { client.CloseIdleConnections(); scraped <- n }()
					tick := time.NewTicker(time.Second)
					defer tick.Stop()
					for {
						resp, err := client.Get("http://" + addr.String() + "/metrics")
						if err == nil {
							io.Copy(io.Discard, resp.Body)
							resp.Body.Close()
							n++
						}
						select {
						case <-stop:
							return
						case <-tick.C:
						}
					}
				}()
			}
			before := g.Counters.Forwarded.Load()
			b.ReportAllocs()
			b.ResetTimer()
			dev.reads = b.N
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			cpu0, th0 := cpuTime(b), threadCPUTime(b)
			// The replay device ends with os.ErrClosed, which run reports
			// as a device that went away: here it is the end of the input.
			if err := w.run(); err != nil && !errors.Is(err, os.ErrClosed) {
				b.Fatal(err)
			}
			th1 := threadCPUTime(b)
			b.StopTimer()
			pkts := float64(b.N * perRead)
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/pkts, "ns/pkt")
			b.ReportMetric(float64((cpuTime(b)-cpu0).Nanoseconds())/pkts, "cpu-ns/pkt")
			b.ReportMetric(float64((th1-th0).Nanoseconds())/pkts, "thread-cpu-ns/pkt")
			close(stop)
			if on {
				b.ReportMetric(float64(<-scraped), "scrapes")
			}
			if got := g.Counters.Forwarded.Load() - before; got != uint64(b.N*perRead) {
				b.Fatalf("forwarded %d of %d packets", got, b.N*perRead)
			}
		})
	}
}

// threadCPUTime is the calling thread's CPU time (RUSAGE_THREAD); the
// caller has locked its goroutine to the thread.
func threadCPUTime(b *testing.B) time.Duration {
	const rusageThread = 1
	var ru syscall.Rusage
	if err := syscall.Getrusage(rusageThread, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
