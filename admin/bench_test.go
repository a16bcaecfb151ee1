package admin

import (
	"context"
	"encoding/binary"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"tungate/admin/admintest"
	"tungate/conntrack"
	"tungate/packet"
)

// fill confirms n UDP connections (10.0.0.0/8 sources, ports varying) in
// the table.
func fill(tb testing.TB, tab *conntrack.Table, n int) {
	now := tab.Now()
	for i := 0; i < n; i++ {
		var src, dst packet.Addr
		copy(src[:], []byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff})
		dst = src
		binary.BigEndian.PutUint32(src[12:], 10<<24|uint32(i>>8))
		binary.BigEndian.PutUint32(dst[12:], 198<<24|18<<16|1)
		tu := conntrack.Tuple{Src: src, Dst: dst, SrcPort: uint16(1024 + i&0xff), DstPort: 53, Proto: 17, Family: 4}
		c := tab.NewUnconfirmed(tu, now, time.Hour)
		if err := tab.Confirm(c, now); err != nil {
			tb.Fatalf("entry %d: %v", i, err)
		}
	}
}

// countingWriter counts what passes, holding nothing.
type countingWriter struct{ n, lines int }

func (w *countingWriter) Write(p []byte) (int, error) {
	w.n += len(p)
	for _, c := range p {
		if c == '\n' {
			w.lines++
		}
	}
	return len(p), nil
}

// BenchmarkList1M lists a table of a million connections through the
// socket, client and server in this process, text and JSON (go test -run
// '^$' -bench List1M ./admin/). The reported
// B/op is both sides' garbage together; peak-heap-MB is the live heap's
// growth while listing (the table itself excluded): flat, not a million
// entries' worth.
func BenchmarkList1M(b *testing.B) {
	n := 1_000_000
	if s := os.Getenv("TUNGATE_BENCH_ENTRIES"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	g := admintest.NullGateway(b, n+n/4)
	fill(b, g.Table(), n)
	_, sock := serve(&testing.T{}, g)
	for _, out := range []string{"", "json"} {
		name := "text"
		if out != "" {
			name = out
		}
		b.Run(name, func(b *testing.B) {
			runtime.GC()
			var before runtime.MemStats
			runtime.ReadMemStats(&before)
			peak := uint64(0)
			stop := make(chan struct{})
			go func() {
				var m runtime.MemStats
				for {
					select {
					case <-stop:
						return
					case <-time.After(50 * time.Millisecond):
					}
					runtime.ReadMemStats(&m)
					peak = max(peak, m.HeapInuse)
				}
			}()
			var ru0, ru1 unix.Rusage
			unix.Getrusage(unix.RUSAGE_SELF, &ru0)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				w := &countingWriter{}
				if _, err := Do(context.Background(), sock, &Request{Cmd: "ct list", Output: out}, w); err != nil {
					b.Fatal(err)
				}
				if w.lines < n {
					b.Fatalf("%d lines for %d entries", w.lines, n)
				}
				b.SetBytes(int64(w.n))
			}
			b.StopTimer()
			unix.Getrusage(unix.RUSAGE_SELF, &ru1)
			cpu := time.Duration(ru1.Utime.Nano() + ru1.Stime.Nano() - ru0.Utime.Nano() - ru0.Stime.Nano())
			// CPU time of both sides: on a loaded machine, wall time
			// says more about the neighbours than about the listing.
			b.ReportMetric(cpu.Seconds()/float64(b.N), "cpu-s/op")
			close(stop)
			b.ReportMetric(float64(int64(peak)-int64(before.HeapInuse))/(1<<20), "peak-heap-MB")
		})
	}
}
