package uplink

import (
	"bytes"
	"encoding/binary"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"tungate/link"
)

// forwardSink starts a server in the container on port 7 that reads
// what it is told (an 8-byte length, then that many bytes) and answers
// with the sum of their values mod 2^64, forwards a loopback host port to
// it and returns the host client's connection.
func forwardSink(t testing.TB, v6 bool) (*Link, *container, net.Conn) {
	t.Helper()
	return forwardSinkWith(t, v6, Config{})
}

// forwardSinkWith is forwardSink on an uplink with cfg.
func forwardSinkWith(t testing.TB, v6 bool, cfg Config) (*Link, *container, net.Conn) {
	t.Helper()
	cfg.HostLoopback = []string{"10.0.2.2", "fd00::2"}
	l := openLink(t, cfg)
	c := newContainer(t, l)
	proto := ipv4.ProtocolNumber
	if v6 {
		proto = ipv6.ProtocolNumber
	}
	inside := netip.AddrPortFrom(ctrAddr(v6), 7)
	sln, err := gonet.ListenTCP(c.s, tcpip.FullAddress{NIC: 1, Addr: tcpipAddr(inside.Addr()), Port: 7}, proto)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sln.Close() })
	go func() {
		for {
			sc, err := sln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer sc.Close()
				var hdr [8]byte
				for {
					if _, err := io.ReadFull(sc, hdr[:]); err != nil {
						return
					}
					n := binary.BigEndian.Uint64(hdr[:])
					var sum uint64
					buf := make([]byte, 64<<10)
					for n > 0 {
						k, err := sc.Read(buf[:min(uint64(len(buf)), n)])
						for _, b := range buf[:k] {
							sum += uint64(b)
						}
						n -= uint64(k)
						if err != nil {
							return
						}
					}
					binary.BigEndian.PutUint64(hdr[:], sum)
					if _, err := sc.Write(hdr[:]); err != nil {
						return
					}
				}
			}()
		}
	}()
	ln := listenLoopback(t, v6)
	l.ForwardTCP(ln, func(netip.AddrPort) netip.AddrPort { return inside })
	hc, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hc.Close() })
	return l, c, hc
}

// TestForwardTCPStream: what a host client sends through a port forward
// arrives whole, including the part shorter than a segment that waits for
// the host socket to run dry: the client keeps its end open and waits for
// the container's answer, so nothing but that flush can deliver the tail.
// The container receives full segments, not a short one after each host
// read (the stack makes one segment of each write and does not merge a
// short one with a following write it cannot take whole), which its
// segment count shows.
func TestForwardTCPStream(t *testing.T) {
	families(t, func(t *testing.T, v6 bool) {
		l, c, hc := forwardSink(t, v6)
		hc.SetDeadline(time.Now().Add(20 * time.Second))
		ask := func(data []byte) {
			t.Helper()
			var want uint64
			for _, b := range data {
				want += uint64(b)
			}
			var hdr [8]byte
			binary.BigEndian.PutUint64(hdr[:], uint64(len(data)))
			if _, err := hc.Write(append(hdr[:], data...)); err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(hc, hdr[:]); err != nil {
				t.Fatalf("no answer for %d bytes: %v", len(data), err)
			}
			if got := binary.BigEndian.Uint64(hdr[:]); got != want {
				t.Fatalf("the container summed %d bytes to %d, want %d", len(data), got, want)
			}
		}
		// A lone short write is flushed at once.
		ask([]byte{42})
		segsBefore := c.s.Stats().TCP.ValidSegmentsReceived.Value()
		const size = 8<<20 + 12345 // not a multiple of any segment or read size
		data := make([]byte, size)
		rng := rand.New(rand.NewPCG(1, 2))
		for i := range data {
			data[i] = byte(rng.Uint32())
		}
		lazyBefore := lazyPackets.Load()
		ask(data)
		if lazyPackets.Load() == lazyBefore {
			t.Error("no segment of the stream was read lazily (in pieces)")
		}
		// Full segments would be size/seg (and an ACK or two); a short
		// segment after every 64 KiB host read made them twice that
		// (257 for 128). Some are cut short by the container's window.
		seg := l.cfg.MTU - ipHeaderLen(v6) - header.TCPMinimumSize
		full := size / seg
		segs := c.s.Stats().TCP.ValidSegmentsReceived.Value() - segsBefore
		t.Logf("%d segments received for %d full-sized segments' worth", segs, full)
		if limit := uint64(full + full/2); segs > limit {
			t.Errorf("the container received %d segments for %d bytes (%d full segments); want at most %d",
				segs, size, full, limit)
		}
	})
}

// TestForwardTCPStreamGSO: with GSO (Config.GSO, as the datapath opens
// the uplink) at MTU 1,500 the stack sends up to 64 KiB at once, marked
// with its segment size; cut into segments as the datapath would, a
// stream through a port forward arrives whole.
func TestForwardTCPStreamGSO(t *testing.T) {
	families(t, func(t *testing.T, v6 bool) {
		_, _, hc := forwardSinkWith(t, v6, Config{MTU: 1500, GSO: true})
		hc.SetDeadline(time.Now().Add(20 * time.Second))
		data := make([]byte, 4<<20+777)
		rng := rand.New(rand.NewPCG(3, 4))
		var want uint64
		for i := range data {
			data[i] = byte(rng.Uint32())
			want += uint64(data[i])
		}
		before := gsoPackets.Load()
		var hdr [8]byte
		binary.BigEndian.PutUint64(hdr[:], uint64(len(data)))
		if _, err := hc.Write(append(hdr[:], data...)); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(hc, hdr[:]); err != nil {
			t.Fatalf("no answer: %v", err)
		}
		if got := binary.BigEndian.Uint64(hdr[:]); got != want {
			t.Fatalf("the container summed the stream to %d, want %d", got, want)
		}
		if gsoPackets.Load() == before {
			t.Error("the stack sent no packet to be cut")
		}
	})
}

// TestCopyOutbound: a packet the stack sends, in as many views as it
// has, is copied whole for Read; what is not TCP stays behind.
func TestCopyOutbound(t *testing.T) {
	pkt := outboundPkt(t, header.TCPProtocolNumber, 3000)
	defer pkt.DecRef()
	if !outboundTCP(pkt) {
		t.Fatal("a TCP packet may not leave")
	}
	b := make([]byte, pkt.Size()+10)
	n := copyPacket(b, pkt)
	want := pkt.ToView()
	defer want.Release()
	if !bytes.Equal(b[:n], want.AsSlice()) {
		t.Fatalf("copied %d bytes, not the packet's %d", n, want.Size())
	}
	udp := outboundPkt(t, header.UDPProtocolNumber, 100)
	defer udp.DecRef()
	if outboundTCP(udp) {
		t.Fatal("a UDP packet from the stack may leave")
	}
}

// TestLazyOutbound: a lazy read of a packet the stack sends copies its
// headers and names the rest of it in pieces, in order, holding the
// packet until the next Read; a small one is left to the copy.
func TestLazyOutbound(t *testing.T) {
	l := &Link{}
	pkt := outboundPkt(t, header.TCPProtocolNumber, 3000)
	// The payload in three views of its own, as the stack's send queue
	// holds it.
	pl := pkt.Data().AsRange().ToView()
	pkt.Data().TrimFront(pkt.Data().Size())
	for _, r := range [][2]int{{0, 1}, {1, 1500}, {1500, 3000}} {
		pkt.Data().AppendView(buffer.NewViewWithData(pl.AsSlice()[r[0]:r[1]]))
	}
	pl.Release()
	want := pkt.ToView()
	defer want.Release()
	o := getPkt(0)
	o.pkt = pkt
	b := make([]byte, pkt.Size())
	if !l.readLazily(b, 2, o) {
		t.Fatal("a 3,000-byte payload was not read lazily")
	}
	hdr, pieces := l.Lazy(2)
	if hdr != header.IPv4MinimumSize+header.TCPMinimumSize || len(pieces) != 3 {
		t.Fatalf("lazy read: %d bytes of headers, %d pieces; want 40 and 3", hdr, len(pieces))
	}
	if got := link.Fill(b[:hdr], pieces); !bytes.Equal(got, want.AsSlice()) {
		t.Fatalf("headers and pieces make %d bytes, not the packet's %d", len(got), want.Size())
	}
	if hdr, p := l.Lazy(0); hdr != 0 || p != nil {
		t.Fatal("a packet not read lazily has pieces")
	}
	if len(l.held) != 1 {
		t.Fatalf("%d packets held, want 1", len(l.held))
	}
	l.noPieces(2)
	if _, p := l.Lazy(2); p != nil {
		t.Fatal("a slot copied whole since still names pieces")
	}
	l.releaseHeld()
	if len(l.held) != 0 {
		t.Fatal("releaseHeld kept packets")
	}
	small := getPkt(0)
	small.pkt = outboundPkt(t, header.TCPProtocolNumber, lazyMin-1)
	defer putPkt(small)
	if l.readLazily(b, 0, small) {
		t.Fatal("a payload under lazyMin was read lazily")
	}
}

// outboundPkt builds an IPv4 packet the way the stack hands one to its
// NIC: the headers pushed in front of a payload of its own.
func outboundPkt(t testing.TB, proto tcpip.TransportProtocolNumber, payload int) *stack.PacketBuffer {
	t.Helper()
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{
		ReserveHeaderBytes: header.IPv4MinimumSize + header.TCPMinimumSize + 16,
		Payload:            buffer.MakeWithData(bytes.Repeat([]byte{7}, payload)),
	})
	l4 := pkt.TransportHeader().Push(header.TCPMinimumSize)
	header.TCP(l4).Encode(&header.TCPFields{SrcPort: 1, DstPort: 2, DataOffset: header.TCPMinimumSize})
	ip := pkt.NetworkHeader().Push(header.IPv4MinimumSize)
	writeIPHeader(ip, ctr4, lo4, proto, header.TCPMinimumSize+payload)
	return pkt
}

// BenchmarkCopyOutbound: each segment the stack sends toward the
// container is queued and copied into Read's buffer without allocating.
func BenchmarkCopyOutbound(b *testing.B) {
	pkt := outboundPkt(b, header.TCPProtocolNumber, 65000)
	defer pkt.DecRef()
	buf := make([]byte, 1<<16)
	b.SetBytes(int64(pkt.Size()))
	b.ReportAllocs()
	for range b.N {
		if !outboundTCP(pkt) {
			b.Fatal("not TCP")
		}
		o := getPkt(0)
		pkt.IncRef()
		o.pkt = pkt
		copyPacket(buf, o.pkt)
		putPkt(o)
	}
}

// BenchmarkTCPForward streams from a host client through a port forward
// into the container's stack: the
// direction in which the uplink's stack is the sender. The container's
// answer ends it, so every byte has arrived.
func BenchmarkTCPForward(b *testing.B) {
	_, _, hc := forwardSink(b, false)
	chunk := make([]byte, 128<<10)
	var hdr [8]byte
	binary.BigEndian.PutUint64(hdr[:], uint64(b.N*len(chunk)))
	if _, err := hc.Write(hdr[:]); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(chunk)))
	b.ResetTimer()
	for range b.N {
		if _, err := hc.Write(chunk); err != nil {
			b.Fatal(err)
		}
	}
	hc.SetReadDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.ReadFull(hc, hdr[:]); err != nil {
		b.Fatal(err)
	}
}

// TestQueueTCPBounded: the stack's sender waits for Read, but not forever
// (it may hold a lock the reader needs): with the queue full and nobody
// reading, a packet is dropped and counted after tcpQueueWait, and once
// the link is closed the sender is told at once.
func TestQueueTCPBounded(t *testing.T) {
	l := openLink(t, Config{})
	for range outQueueLen - len(l.out) {
		if !l.queueTCP(getPkt(20)) {
			t.Fatal("queueTCP refused a packet with room in the queue")
		}
	}
	start := time.Now()
	if !l.queueTCP(getPkt(20)) {
		t.Fatal("queueTCP reported the link closed")
	}
	if d := time.Since(start); d < tcpQueueWait {
		t.Errorf("gave up after %v, before tcpQueueWait (%v)", d, tcpQueueWait)
	}
	if n := l.Stats()[DropQueueFull]; n != 1 {
		t.Errorf("drop_queue_full = %d, want 1", n)
	}
	l.Close()
	start = time.Now()
	if l.queueTCP(getPkt(20)) {
		t.Error("queueTCP took a packet on a closed link with a full queue")
	}
	if d := time.Since(start); d >= tcpQueueWait {
		t.Errorf("a closed link kept the sender waiting %v", d)
	}
}
