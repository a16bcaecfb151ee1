package nat

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"tungate/conntrack"
	"tungate/internal/packettest"
)

// stateEntries is how many connections the state file benchmarks fill the
// table with: BENCHMARKS.md's figure is for a million (the goal:
// save and restore each within 2 s).
var stateEntries = flag.Int("statefile.entries", 1_000_000, "connections in the state file benchmarks' table")

// stateBench is the table the benchmarks save: masqueraded UDP flows,
// 1024 internal endpoints (64 hosts, 16 ports each) to stateEntries/1024
// destinations each, so every connection carries a NAT binding and the
// mappings are shared the endpoint-independent way. Built once per run.
var stateBench struct {
	once sync.Once
	r    *rig
	file string
}

func stateBenchTable(b *testing.B) *rig {
	stateBench.once.Do(func() {
		r := newRigCT(b, stateConfig, stateBenchCT())
		for i := range *stateEntries {
			ep, dst := i%1024, i/1024
			src := fmt.Sprintf("10.10.0.%d:%d", 2+ep/16, 40000+ep%16)
			dstAddr := fmt.Sprintf("203.%d.%d.%d:53", dst>>16&0xff, dst>>8&0xff, dst&0xff)
			pk := packettest.Build(packettest.IP{Src: ap(src).Addr().String(), Dst: ap(dstAddr).Addr().String(), TTL: 64},
				packettest.UDP{SPort: ap(src).Port(), DPort: 53}, []byte("q"))
			if s := r.pass(pk, lan, wan); !s.ok {
				b.Fatalf("flow %d (%s -> %s) not forwarded", i, src, dstAddr)
			}
		}
		stateBench.r = r
		stateBench.file = filepath.Join(os.TempDir(), fmt.Sprintf("tungate-statebench-%d", os.Getpid()))
	})
	if stateBench.r == nil {
		b.Fatal("table not built")
	}
	return stateBench.r
}

// cpuTime is the process's user and system time so far: on a machine
// shared with other work, the benchmarks report it beside the wall time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// stateBenchCT is the benchmarks' table config: room for the entries,
// and UDP flows that outlive a long run.
func stateBenchCT() conntrack.Config {
	return conntrack.Config{Max: *stateEntries + *stateEntries/4, Timeouts: conntrack.Timeouts{UDP: conntrack.Duration(time.Hour), UDPDNS: conntrack.Duration(time.Hour)}}
}

// saveTo writes r's table to path with the engine as codec, fsynced, as
// the gateway does (without the rename).
func saveTo(b *testing.B, r *rig, path string, workers int) conntrack.SaveReport {
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	rep, err := r.tbl.SaveState(f, conntrack.StateOptions{Host: "bench", Codecs: []conntrack.StateCodec{r.e}, Workers: workers})
	if err != nil {
		b.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		b.Fatal(err)
	}
	return rep
}

// BenchmarkStateFileSave: one op is saving the whole table, by one
// goroutine and by two (go test -run XXX -bench StateFile -benchtime 3x
// ./nat/).
func BenchmarkStateFileSave(b *testing.B) {
	r := stateBenchTable(b)
	for _, workers := range []int{1, 2} {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) {
			var rep conntrack.SaveReport
			cpu0 := cpuTime()
			for range b.N {
				rep = saveTo(b, r, stateBench.file, workers)
			}
			b.StopTimer()
			b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N)/1e6, "cpu-ms/op")
			if rep.Conns != *stateEntries {
				b.Fatalf("saved %d connections, want %d", rep.Conns, *stateEntries)
			}
			b.ReportMetric(float64(rep.Bytes)/1e6, "MB")
			b.ReportMetric(float64(rep.Bytes)/float64(rep.Conns), "B/conn")
		})
	}
}

// BenchmarkStateFileRestore: one op is restoring the whole file into a
// new table and engine (their allocation not timed), by one goroutine and
// by two, alternated.
func BenchmarkStateFileRestore(b *testing.B) {
	r := stateBenchTable(b)
	saveTo(b, r, stateBench.file, 0)
	b.Cleanup(func() { os.Remove(stateBench.file) })
	for _, workers := range []int{1, 2} {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) {
			var cpu time.Duration
			for range b.N {
				b.StopTimer()
				to := newRigCT(b, stateConfig, stateBenchCT())
				f, err := os.Open(stateBench.file)
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				cpu0 := cpuTime()
				rep, err := to.tbl.RestoreState(f, conntrack.StateOptions{Host: "bench", Codecs: []conntrack.StateCodec{to.e}, Workers: workers})
				cpu += cpuTime() - cpu0
				b.StopTimer()
				f.Close()
				if err != nil {
					b.Fatal(err)
				}
				if rep.Restored != *stateEntries || to.tbl.Count() != *stateEntries {
					b.Fatalf("restored %d (%+v), want %d", to.tbl.Count(), rep, *stateEntries)
				}
				if got, want := to.e.Stats().Mappings, r.e.Stats().Mappings; got != want {
					b.Fatalf("restored %d mappings, want %d", got, want)
				}
				b.StartTimer()
			}
			b.ReportMetric(float64(cpu)/float64(b.N)/1e6, "cpu-ms/op")
		})
	}
}
