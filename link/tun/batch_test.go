package tun

import (
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"tungate/link"
	"tungate/packet"
)

// TestReadBatchesQueuedPackets: packets the kernel queued on the device
// come out of one Read together (the batched non-blocking reads), a UDP
// GSO frame met among them is split on the next Read into valid segments
// marked ChecksumsVerified, and nothing is lost, reordered within its
// socket or left with a wrong checksum, over IPv4 and IPv6.
func TestReadBatchesQueuedPackets(t *testing.T) {
	needRoot(t)
	ns, dev := newNetns(t), uniqueName()
	var l *Link
	inNetns(t, ns, false, func() (err error) {
		l, err = Open(Config{Name: dev, MTU: 1500}, zap.NewNop())
		return err
	})
	defer l.Close()
	mustRun(t, "ip", "-n", ns, "link", "set", dev, "up")
	mustRun(t, "ip", "-n", ns, "addr", "add", "10.77.0.1/24", "dev", dev)
	mustRun(t, "ip", "-n", ns, "addr", "add", "fd77::1/64", "dev", dev, "nodad")

	want := map[string]bool{}
	for _, fam := range []struct{ local, peer string }{{"10.77.0.1", "10.77.0.2"}, {"fd77::1", "fd77::2"}} {
		var conn *net.UDPConn
		inNetns(t, ns, false, func() (err error) {
			conn, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(fam.local), 0)))
			return err
		})
		defer conn.Close()
		to := net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(fam.peer), 9))
		send := func(b []byte) {
			t.Helper()
			if _, err := conn.WriteToUDP(b, to); err != nil {
				t.Fatalf("send to %v: %v", to, err)
			}
		}
		first := fmt.Sprintf("%s first", fam.local)
		send([]byte(first))
		want[first] = true
		// Three 1000-byte segments in one send: a GSO frame on a device
		// with UDP segmentation offload.
		rc, _ := conn.SyscallConn()
		var serr error
		rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_UDP, unix.UDP_SEGMENT, 1000) })
		if serr != nil {
			t.Fatalf("UDP_SEGMENT: %v", serr)
		}
		gso := make([]byte, 3000)
		for i := range 3 {
			copy(gso[i*1000:], fmt.Sprintf("%s segment %d", fam.local, i))
			want[fmt.Sprintf("%s segment %d", fam.local, i)] = true
		}
		send(gso)
		rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_UDP, unix.UDP_SEGMENT, 0) })
		for i := range 20 {
			p := fmt.Sprintf("%s plain %d", fam.local, i)
			send([]byte(p))
			want[p] = true
		}
	}

	bufs := make([][]byte, l.BatchSize())
	for i := range bufs {
		bufs[i] = make([]byte, link.Headroom+65535)
	}
	sizes := make([]int, len(bufs))
	reads := make(chan error, 1)
	plainBatch, splitReads := 0, 0
	deadline := time.Now().Add(waitFor)
	for len(want) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("never read: %v", want)
		}
		var n int
		var err error
		go func() { n, err = l.Read(bufs, sizes, link.Headroom); reads <- err }()
		select {
		case <-reads:
		case <-time.After(time.Until(deadline)):
			t.Fatalf("Read blocked; never read: %v", want)
		}
		if err != nil {
			t.Fatalf("Read: %v", err)
		}
		flags := l.ReadFlags()
		segs, plain := 0, 0
		for i := range n {
			b := bufs[i][link.Headroom : link.Headroom+sizes[i]]
			var p packet.Parsed
			if err := p.Decode(b); err != nil {
				t.Fatalf("packet %d of %d: %v", i, n, err)
			}
			if p.Proto != packet.ProtoUDP || p.DstPort != 9 {
				continue // the kernel's own chatter
			}
			if !p.L4ChecksumValid() || (p.Version == 4 && !packet.IPv4HeaderValid(b[:20])) {
				t.Errorf("packet %d of %d: bad checksum", i, n)
			}
			data := p.L4()[8:]
			key := string(data)
			if len(data) == 1000 {
				key = string(data[:len(fmt.Sprintf("%s segment 0", p.SrcIP()))])
				segs++
			} else {
				plain++
			}
			if !want[key] {
				t.Errorf("unexpected or repeated datagram %q", key)
			}
			delete(want, key)
		}
		if plain > 1 && flags == 0 {
			plainBatch++
		}
		if segs == 3 && plain == 0 && flags == link.ChecksumsVerified {
			splitReads++
		}
		if plain > 0 && flags != 0 {
			t.Errorf("a read of %d packets with plain ones is marked %b", n, flags)
		}
	}
	if plainBatch == 0 {
		t.Error("no Read returned more than one queued packet")
	}
	if splitReads != 2 {
		t.Errorf("%d reads returned a GSO frame's 3 segments alone and verified, want 2 (one per family)", splitReads)
	}
}

// udpFlood opens a UDP socket in ns and sends 64-byte datagrams through
// dev (up, 10.77.0.1/24) until the test ends.
func udpFlood(tb testing.TB, ns string) {
	var conn *net.UDPConn
	inNetns(tb, ns, false, func() (err error) {
		conn, err = net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(10, 77, 0, 1)})
		return err
	})
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		to := &net.UDPAddr{IP: net.IPv4(10, 77, 0, 2), Port: 9}
		b := make([]byte, 64)
		for {
			select {
			case <-stop:
				return
			default:
			}
			conn.WriteToUDP(b, to)
		}
	}()
	tb.Cleanup(func() { close(stop); <-done; conn.Close() })
}

// floodLink opens a TUN in a new namespace with a UDP flood queued on it.
func floodLink(tb testing.TB) (*Link, [][]byte, []int) {
	needRoot(tb)
	ns, dev := newNetns(tb), uniqueName()
	var l *Link
	inNetns(tb, ns, false, func() (err error) {
		l, err = Open(Config{Name: dev, MTU: 1500}, zap.NewNop())
		return err
	})
	tb.Cleanup(func() { l.Close() })
	mustRun(tb, "ip", "-n", ns, "link", "set", dev, "up")
	mustRun(tb, "ip", "-n", ns, "addr", "add", "10.77.0.1/24", "dev", dev)
	udpFlood(tb, ns)
	bufs := make([][]byte, l.BatchSize())
	for i := range bufs {
		bufs[i] = make([]byte, link.Headroom+65535)
	}
	return l, bufs, make([]int, len(bufs))
}

// TestReadBatchAllocs: a batched read allocates nothing.
func TestReadBatchAllocs(t *testing.T) {
	l, bufs, sizes := floodLink(t)
	total := 0
	allocs := testing.AllocsPerRun(200, func() {
		n, err := l.Read(bufs, sizes, link.Headroom)
		if err != nil {
			t.Fatal(err)
		}
		total += n
	})
	if allocs != 0 {
		t.Errorf("%.1f allocations per Read", allocs)
	}
	if total <= 201 {
		t.Errorf("%d packets in 201 reads of a flooded device: no batch", total)
	}
}

// BenchmarkReadFlood reads a TUN a UDP flood fills: packets per Read and
// allocations (none).
func BenchmarkReadFlood(b *testing.B) {
	l, bufs, sizes := floodLink(b)
	b.ReportAllocs()
	total := 0
	for b.Loop() {
		n, err := l.Read(bufs, sizes, link.Headroom)
		if err != nil {
			b.Fatal(err)
		}
		total += n
	}
	b.ReportMetric(float64(total)/float64(b.N), "pkts/op")
}

// TestReadBatchStopsAt64KB: big packets (a jumbo MTU's) are not batched
// beyond 64 KB: four queued 30,000-byte datagrams take two Reads.
func TestReadBatchStopsAt64KB(t *testing.T) {
	needRoot(t)
	ns, dev := newNetns(t), uniqueName()
	var l *Link
	inNetns(t, ns, false, func() (err error) {
		l, err = Open(Config{Name: dev, MTU: 65520}, zap.NewNop())
		return err
	})
	defer l.Close()
	mustRun(t, "ip", "-n", ns, "link", "set", dev, "up")
	mustRun(t, "ip", "-n", ns, "addr", "add", "10.77.0.1/24", "dev", dev)
	var conn *net.UDPConn
	inNetns(t, ns, false, func() (err error) {
		conn, err = net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(10, 77, 0, 1)})
		return err
	})
	defer conn.Close()
	for range 4 {
		if _, err := conn.WriteToUDP(make([]byte, 30000), &net.UDPAddr{IP: net.IPv4(10, 77, 0, 2), Port: 9}); err != nil {
			t.Fatal(err)
		}
	}
	bufs := make([][]byte, l.BatchSize())
	for i := range bufs {
		bufs[i] = make([]byte, link.Headroom+65535)
	}
	sizes := make([]int, len(bufs))
	var perRead []int
	for got := 0; got < 4; {
		n, err := l.Read(bufs, sizes, link.Headroom)
		if err != nil {
			t.Fatal(err)
		}
		k := 0
		for i := range n {
			var p packet.Parsed
			if p.Decode(bufs[i][link.Headroom:link.Headroom+sizes[i]]) == nil && p.Proto == packet.ProtoUDP && p.DstPort == 9 {
				k++
			}
		}
		if k > 0 {
			perRead = append(perRead, k)
		}
		got += k
	}
	if len(perRead) != 2 || perRead[0] != 3 {
		t.Errorf("datagrams per Read %v, want [3 1]: the batch stops once it holds 64 KB", perRead)
	}
}
