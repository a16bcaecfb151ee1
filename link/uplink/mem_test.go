package uplink

import (
	"bytes"
	"net"
	"net/netip"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"testing"
	"time"

	"tungate/packet"
)

// rss is the process's resident set in bytes.
func rss(t testing.TB) int64 {
	t.Helper()
	runtime.GC()
	debug.FreeOSMemory()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(b, []byte("VmRSS:"))
	if i < 0 {
		t.Fatal("no VmRSS in /proc/self/status")
	}
	f := bytes.Fields(b[i+6:])
	kb, err := strconv.ParseInt(string(f[0]), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return kb << 10
}

// TestIdleConnMemory holds 1,000 idle spliced TCP connections (handshakes
// built by hand, so no container stack is measured with them) and reports
// what each costs. UPLINK_IDLE_CONNS changes the count.
func TestIdleConnMemory(t *testing.T) {
	n := 1000
	if s := os.Getenv("UPLINK_IDLE_CONNS"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	l := openLink(t, Config{AllowHostLoopback: true, MaxPendingDials: n, MaxPendingDialsPerHost: n})
	r := readPackets(t, l)
	ln := listenLoopback(t, false)
	accepted := make(chan net.Conn, n)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	t.Cleanup(func() {
		for len(accepted) > 0 {
			(<-accepted).Close()
		}
	})
	dst := ln.Addr().(*net.TCPAddr).AddrPort()
	// Warm up: one connection's worth of lazy setup is not per connection.
	handshakeN(t, l, r, dst, 30000, 1)
	before := rss(t)
	var ms0 runtime.MemStats
	runtime.ReadMemStats(&ms0)

	handshakeN(t, l, r, dst, 31000, n)
	waitFor(t, 90*time.Second, "every connection spliced", func() bool { return l.Stats()[TCPConns] == uint64(n+1) })
	after := rss(t)
	var ms1 runtime.MemStats
	runtime.ReadMemStats(&ms1)
	per := (after - before) / int64(n)
	heap := (int64(ms1.HeapInuse+ms1.StackInuse) - int64(ms0.HeapInuse+ms0.StackInuse)) / int64(n)
	t.Logf("%d idle connections: RSS +%d KiB, %d bytes per connection (Go heap+stacks %d bytes), so %d MB for 10,000",
		n, (after-before)>>10, per, heap, per*10000>>20)
	// The goal is 300 MB for 10,000 flows; the test process also holds
	// the listener's side of each connection.
	if per > 30000 && !raceEnabled {
		t.Errorf("%d bytes per idle connection, goal 30000", per)
	}
}

// handshakeN opens n connections from ports base.. by hand: SYN, wait
// for SYN-ACK, ACK.
func handshakeN(t *testing.T, l *Link, r *reader, dst netip.AddrPort, base uint16, n int) {
	t.Helper()
	for start := 0; start < n; start += batchSize {
		end := min(start+batchSize, n)
		var pkts [][]byte
		for i := start; i < end; i++ {
			pkts = append(pkts, tcpPkt(netip.AddrPortFrom(ctr4, base+uint16(i)), dst, 1, 0, synFlag, nil))
		}
		write(t, l, pkts...)
		pkts = pkts[:0]
		for range end - start {
			p := r.expect(t, 5*time.Second, "SYN-ACK", func(p *packet.Parsed) bool {
				return p.Proto == packet.ProtoTCP && p.TCPFlags == packet.TCPSyn|packet.TCPAck
			})
			ctr := netip.AddrPortFrom(p.DstIP(), p.DstPort)
			pkts = append(pkts, tcpPkt(ctr, dst, 2, tcpSeq(p)+1, ackFlag, nil))
		}
		write(t, l, pkts...)
	}
}
