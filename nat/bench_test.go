package nat

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"syscall"
	"testing"
	"time"

	"tungate/conntrack"
	"tungate/packet"
)

// batch is how many packets share one clock reading, as in the datapath.
const batch = 64

// cpuClock measures the process's CPU time (user and system, garbage
// collection included) over a benchmark, reported as cpu-ns/op next to the
// wall-clock ns/op: on a shared, loaded machine wall time mostly measures
// the other tenants.
type cpuClock struct {
	start time.Duration
	n     int
}

func cpuNow() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func startCPU() *cpuClock { return &cpuClock{start: cpuNow()} }

func (c *cpuClock) report(b *testing.B) {
	if c.n > 0 {
		b.ReportMetric(float64(cpuNow()-c.start)/float64(c.n), "cpu-ns/op")
	}
}

func benchEstablished(b *testing.B, client, server, ext string) {
	r := newRig(b, masqConf)
	r.tcpOpen(client, server, lan, wan)
	out := tcp(client, server, packet.TCPAck, 1001, 5001).bytes()
	in := tcp(server, ext, packet.TCPAck, 5001, 1001).bytes()
	bufs := [2][]byte{make([]byte, 128), make([]byte, 128)}
	var p packet.Parsed
	var res conntrack.Result
	now := r.tbl.Now()
	i := 0
	b.ReportAllocs()
	cpu := startCPU()
	for b.Loop() {
		if i%batch == 0 {
			now = r.tbl.Now()
		}
		src, from, to := out, lan, wan
		if i&1 == 1 {
			src, from, to = in, wan, lan
		}
		buf := bufs[i&1]
		i++
		n := copy(buf, src)
		if p.Decode(buf[:n]) != nil {
			b.Fatal("decode")
		}
		r.tbl.In(&p, now, &res)
		r.e.Prerouting(&p, &res, from)
		if !r.e.Postrouting(&p, &res, from, to) || res.Info == conntrack.Invalid {
			b.Fatal("dropped")
		}
	}
	cpu.n = i
	cpu.report(b)
}

// BenchmarkNATEstablished4 forwards an established masqueraded TCP flow,
// both directions alternately: decode, conntrack, both NAT hooks with the
// rewrite and checksum fix-up.
func BenchmarkNATEstablished4(b *testing.B) {
	benchEstablished(b, "10.10.0.2:40000", "203.0.113.5:80", "198.18.0.1:40000")
}

// BenchmarkNATEstablished6 is the same over NAT66.
func BenchmarkNATEstablished6(b *testing.B) {
	benchEstablished(b, "[fd10::2]:40000", "[2001:db8:2::5]:80", "[2001:db8:1::1]:40000")
}

// fill holds pct percent of 1024-65535 on addr's set for proto, scattered.
func fill(e *Engine, a packet.Addr, fam, proto uint8, pct int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	s := e.portSetLocked(setKey{a, fam, proto})
	rng := rand.New(rand.NewPCG(7, uint64(pct)))
	n := (65536 - 1024) * pct / 100
	for s.held < n {
		s.take(uint16(1024 + rng.IntN(65536-1024)))
	}
}

// BenchmarkNATNewConn makes a new masqueraded UDP connection per iteration
// (decode, conntrack, both hooks with the port allocation, confirm) and
// ends the oldest of the live ones it keeps (destroy hook releasing the
// mapping), with the external port range empty or 99% held besides. With
// 256 live connections the table stays in cache; with 50,000 (each holding
// its own external port) most of its reads miss, as in a busy gateway.
func BenchmarkNATNewConn(b *testing.B) {
	for _, bc := range []struct{ pct, live int }{{0, 256}, {99, 256}, {0, 50_000}} {
		b.Run(fmt.Sprintf("full=%d%%/live=%d", bc.pct, bc.live), func(b *testing.B) {
			pct := bc.pct
			r := newRigCT(b, masqConf, conntrack.Config{Max: 1 << 16})
			fill(r.e, addr("198.18.0.1"), 4, packet.ProtoUDP, pct)
			tmpl := udp("10.10.0.2:1024", "203.0.113.5:53", "query").bytes()
			buf := make([]byte, len(tmpl))
			ring := make([]*conntrack.Conn, bc.live)
			var p packet.Parsed
			var res conntrack.Result
			i := 0
			step := func() {
				n := copy(buf, tmpl)
				// A fresh endpoint each time: host 2..201, port 1024+.
				buf[15] = byte(2 + i%200)
				binary.BigEndian.PutUint16(buf[20:], uint16(1024+(i/200)%60000))
				binary.BigEndian.PutUint16(buf[10:], 0)
				binary.BigEndian.PutUint16(buf[10:], ^sum(buf[:20], 0))
				binary.BigEndian.PutUint16(buf[26:], 0) // no UDP checksum
				if p.Decode(buf[:n]) != nil {
					b.Fatal("decode")
				}
				now := r.tbl.Now()
				r.tbl.In(&p, now, &res)
				c := res.Conn
				if c == nil || c.Confirmed() {
					b.Fatalf("not new at %d", i)
				}
				r.e.Prerouting(&p, &res, lan)
				if !r.e.Postrouting(&p, &res, lan, wan) {
					b.Fatalf("dropped at %d: %+v", i, r.e.Stats())
				}
				if err := r.tbl.Confirm(c, now); err != nil {
					b.Fatal(err)
				}
				k := i % len(ring)
				if old := ring[k]; old != nil {
					r.tbl.Delete(old)
				}
				ring[k] = c
				i++
			}
			// Fill the table to its live size before the clock starts.
			for range bc.live {
				step()
			}
			start := i
			b.ReportAllocs()
			cpu := startCPU()
			for b.Loop() {
				step()
			}
			if r.tbl.Count() != bc.live {
				b.Fatalf("%d live connections, want %d", r.tbl.Count(), bc.live)
			}
			cpu.n = i - start
			cpu.report(b)
		})
	}
}

// BenchmarkPortAlloc finds, takes and gives back a port in 1024-65535 from a
// random start with the range 0, 50, 90 and 99% held: the cost stays flat.
func BenchmarkPortAlloc(b *testing.B) {
	for _, pct := range []int{0, 50, 90, 99} {
		b.Run(fmt.Sprintf("full=%d%%", pct), func(b *testing.B) {
			var s portSet
			rng := rand.New(rand.NewPCG(7, uint64(pct)))
			n := (65536 - 1024) * pct / 100
			for s.held < n {
				s.take(uint16(1024 + rng.IntN(65536-1024)))
			}
			var starts [1024]uint16
			for i := range starts {
				starts[i] = uint16(1024 + rng.IntN(65536-1024))
			}
			i := 0
			b.ReportAllocs()
			cpu := startCPU()
			for b.Loop() {
				p := s.findPreferring(starts[i&1023], 1024, 65535, parityOf(starts[i&1023]))
				if p < 0 {
					b.Fatal("full")
				}
				s.take(uint16(p))
				s.release(uint16(p))
				i++
			}
			cpu.n = i
			cpu.report(b)
		})
	}
}
