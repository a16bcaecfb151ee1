package tun

import (
	"bytes"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"tungate/link"
)

// synPacket builds a TCP SYN src→dst whose checksum field is garbage: the
// one a stack with transmit checksum offload hands its NIC.
func synPacket(src, dst netip.AddrPort) []byte {
	return tcpPacket(src, dst, 1000, 0, header.TCPFlagSyn, nil)
}

// tcpPacket builds a TCP segment src→dst carrying payload, its checksum
// field garbage like synPacket's.
func tcpPacket(src, dst netip.AddrPort, seq, ack uint32, flags header.TCPFlags, payload []byte) []byte {
	hl := header.IPv4MinimumSize
	if src.Addr().Is6() {
		hl = header.IPv6MinimumSize
	}
	b := make([]byte, hl+header.TCPMinimumSize+len(payload))
	copy(b[hl+header.TCPMinimumSize:], payload)
	if src.Addr().Is4() {
		ip := header.IPv4(b)
		ip.Encode(&header.IPv4Fields{TotalLength: uint16(len(b)), TTL: 64, Protocol: uint8(header.TCPProtocolNumber),
			SrcAddr: tcpip.AddrFrom4(src.Addr().As4()), DstAddr: tcpip.AddrFrom4(dst.Addr().As4())})
		ip.SetChecksum(^ip.CalculateChecksum())
	} else {
		header.IPv6(b).Encode(&header.IPv6Fields{PayloadLength: uint16(len(b) - hl), TransportProtocol: header.TCPProtocolNumber,
			HopLimit: 64, SrcAddr: tcpip.AddrFrom16(src.Addr().As16()), DstAddr: tcpip.AddrFrom16(dst.Addr().As16())})
	}
	header.TCP(b[hl:]).Encode(&header.TCPFields{SrcPort: src.Port(), DstPort: dst.Port(), SeqNum: seq, AckNum: ack,
		DataOffset: header.TCPMinimumSize, Flags: flags, WindowSize: 65535, Checksum: 0x1234})
	return b
}

// tcpInCsumErrors reads the kernel's count of TCP segments dropped for a
// bad checksum in namespace ns (IPv4 and IPv6 share it).
func tcpInCsumErrors(t *testing.T, ns string) int {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", ns, "cat", "/proc/net/snmp").Output()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "Tcp:" {
			continue
		}
		if names == nil {
			names = f
			continue
		}
		for i, n := range names {
			if n == "InCsumErrors" && i < len(f) {
				v, _ := strconv.Atoi(f[i])
				return v
			}
		}
	}
	t.Fatal("no Tcp InCsumErrors in /proc/net/snmp")
	return 0
}

// WritePartial hands the kernel a segment whose checksum it must not
// verify (VIRTIO_NET_HDR_F_NEEDS_CSUM): a SYN with a garbage checksum so
// written is answered, the same SYN through Write is dropped as corrupt.
func TestWritePartialOffloadsChecksum(t *testing.T) {
	ns, l := offloadTUN(t)
	synAcks := readSynAcks(l)

	for _, fam := range offloadFamilies {
		_, dst := listenIn(t, ns, fam.local)

		write := func(sport uint16, partial bool) {
			pkt := synPacket(netip.AddrPortFrom(fam.peer, sport), dst)
			buf := make([]byte, link.Headroom+len(pkt))
			copy(buf[link.Headroom:], pkt)
			var err error
			if partial {
				_, err = l.WritePartial([][]byte{buf}, link.Headroom, []bool{true})
			} else {
				_, err = l.Write([][]byte{buf}, link.Headroom)
			}
			if err != nil {
				t.Fatalf("%s: write: %v", fam.name, err)
			}
		}

		// The plain write of a corrupt segment: counted and dropped.
		before := tcpInCsumErrors(t, ns)
		write(40001, false)
		for deadline := time.Now().Add(waitFor); tcpInCsumErrors(t, ns) == before; {
			if time.Now().After(deadline) {
				t.Fatalf("%s: a SYN with a bad checksum written plainly was not counted as InCsumErrors", fam.name)
			}
			time.Sleep(10 * time.Millisecond)
		}

		// The offloaded one: answered.
		awaitSynAck(t, synAcks, netip.AddrPortFrom(fam.peer, 40002), func() { write(40002, true) })
		if n := tcpInCsumErrors(t, ns); n != before+1 {
			t.Errorf("%s: InCsumErrors went from %d to %d, want one (the plain write's) only", fam.name, before, n)
		}
	}
	// Writes mixing both kinds keep their order and write every packet.
	pkt := synPacket(netip.MustParseAddrPort("10.77.0.2:40003"), netip.MustParseAddrPort("10.77.0.1:9"))
	bufs := make([][]byte, 3)
	for i := range bufs {
		bufs[i] = make([]byte, link.Headroom+len(pkt))
		copy(bufs[i][link.Headroom:], pkt)
	}
	if n, err := l.WritePartial(bufs, link.Headroom, []bool{false, true, false}); n != 3 || err != nil {
		t.Errorf("WritePartial of three: %d, %v; want 3, nil", n, err)
	}
}

// WriteOffload gathers a packet from its headers and the pieces of its
// payload: a data segment so written, its checksum left to the kernel,
// reaches the socket whole and in order (between a whole packet before
// it and one after it in the same batch); and a packet larger than the
// MTU marked with a segment size (GSO) is cut by the kernel and received.
func TestWriteOffloadGathers(t *testing.T) {
	ns, l := offloadTUN(t)
	synAcks := readSynAcks(l)
	for _, fam := range offloadFamilies {
		ln, dst := listenIn(t, ns, fam.local)
		src := netip.AddrPortFrom(fam.peer, 40010)
		one := func(pkt []byte) []byte {
			b := make([]byte, link.Headroom+len(pkt), link.Headroom+65535)
			copy(b[link.Headroom:], pkt)
			return b
		}
		var isn uint32
		got := awaitSynAck(t, synAcks, src, func() {
			if _, err := l.WritePartial([][]byte{one(tcpPacket(src, dst, 1000, 0, header.TCPFlagSyn, nil))}, link.Headroom, []bool{true}); err != nil {
				t.Fatal(err)
			}
		})
		isn = got.seq

		data := make([]byte, 3000)
		for i := range data {
			data[i] = byte(i * 7)
		}
		// The handshake's ACK whole, the first 2,000 bytes in three
		// pieces (the buffer behind their headers full of junk that must
		// not be sent), the last 1,000 bytes whole.
		first := one(tcpPacket(src, dst, 1001, isn+1, header.TCPFlagAck|header.TCPFlagPsh, data[:2000]))
		hdr := len(first) - link.Headroom - 2000
		head := first[:link.Headroom+hdr]
		for i := link.Headroom + hdr; i < len(first); i++ {
			first[i] = 0xa5
		}
		pieces := [][]byte{data[:1], data[1:1500], data[1500:2000]}
		last := one(tcpPacket(src, dst, 1001+2000, isn+1, header.TCPFlagAck|header.TCPFlagPsh, data[2000:]))
		ack := one(tcpPacket(src, dst, 1001, isn+1, header.TCPFlagAck, nil))
		if n, err := l.WriteOffload([][]byte{ack, head, last}, link.Headroom,
			[]link.Offload{{Partial: true}, {Partial: true, Pieces: pieces}, {Partial: true}}); n != 3 || err != nil {
			t.Fatalf("%s: WriteOffload: %d, %v", fam.name, n, err)
		}
		if tl, ok := ln.(*net.TCPListener); ok {
			tl.SetDeadline(time.Now().Add(waitFor))
		}
		c, err := ln.Accept()
		if err != nil {
			t.Fatalf("%s: accept: %v", fam.name, err)
		}
		c.SetDeadline(time.Now().Add(waitFor))
		buf := make([]byte, len(data))
		if _, err := io.ReadFull(c, buf); err != nil {
			t.Fatalf("%s: read: %v", fam.name, err)
		}
		if !bytes.Equal(buf, data) {
			t.Fatalf("%s: the socket read other bytes than were written", fam.name)
		}
		// 6,000 bytes more as one packet over the MTU (1,400) for the
		// kernel to cut into 1,000-byte segments, in pieces too.
		more := make([]byte, 6000)
		for i := range more {
			more[i] = byte(i * 11)
		}
		big := one(tcpPacket(src, dst, 1001+3000, isn+1, header.TCPFlagAck|header.TCPFlagPsh, more))
		bhdr := len(big) - link.Headroom - len(more)
		if n, err := l.WriteOffload([][]byte{big[:link.Headroom+bhdr]}, link.Headroom,
			[]link.Offload{{Partial: true, Pieces: [][]byte{more[:2500], more[2500:]}, GSOSize: 1000}}); n != 1 || err != nil {
			t.Fatalf("%s: WriteOffload of a GSO packet: %d, %v", fam.name, n, err)
		}
		buf = make([]byte, len(more))
		if _, err := io.ReadFull(c, buf); err != nil {
			t.Fatalf("%s: read after the GSO packet: %v", fam.name, err)
		}
		c.Close()
		if !bytes.Equal(buf, more) {
			t.Fatalf("%s: the socket read other bytes than the GSO packet carried", fam.name)
		}
	}
}

// listenIn listens on a free TCP port of addr in namespace ns, until the
// test ends.
func listenIn(t *testing.T, ns string, addr netip.Addr) (net.Listener, netip.AddrPort) {
	t.Helper()
	var ln net.Listener
	inNetns(t, ns, false, func() (err error) {
		ln, err = net.Listen("tcp", netip.AddrPortFrom(addr, 0).String())
		return err
	})
	t.Cleanup(func() { ln.Close() })
	return ln, ln.Addr().(*net.TCPAddr).AddrPort()
}

// offloadFamilies are the addresses offloadTUN's namespace has, per family.
var offloadFamilies = []struct {
	name        string
	local, peer netip.Addr
}{
	{"ipv4", netip.MustParseAddr("10.77.0.1"), netip.MustParseAddr("10.77.0.2")},
	{"ipv6", netip.MustParseAddr("fd77::1"), netip.MustParseAddr("fd77::2")},
}

// synAck is a SYN-ACK the namespace sent: to whom, its ISN.
type synAck struct {
	dst netip.AddrPort
	seq uint32
}

// awaitSynAck calls send (again every half second: a new address may
// still be settling) until a SYN-ACK to want arrives.
func awaitSynAck(t *testing.T, synAcks <-chan synAck, want netip.AddrPort, send func()) synAck {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for {
		send()
		select {
		case got := <-synAcks:
			if got.dst == want {
				return got
			}
		case <-time.After(500 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("no SYN-ACK to %v", want)
		}
	}
}

// offloadTUN makes a TUN with the virtio header in a new namespace, up,
// with offloadFamilies' local addresses.
func offloadTUN(t *testing.T) (string, *Link) {
	needRoot(t)
	ns, dev := newNetns(t), uniqueName()
	var l *Link
	inNetns(t, ns, false, func() (err error) {
		l, err = Open(Config{Name: dev, MTU: 1400}, zap.NewNop())
		return err
	})
	t.Cleanup(func() { l.Close() })
	if !l.CanWritePartial() {
		t.Fatal("a TUN this process created has no virtio header: CanWritePartial is false")
	}
	mustRun(t, "ip", "-n", ns, "link", "set", dev, "up")
	mustRun(t, "ip", "-n", ns, "addr", "add", "10.77.0.1/24", "dev", dev)
	mustRun(t, "ip", "-n", ns, "addr", "add", "fd77::1/64", "dev", dev, "nodad")
	return ns, l
}

// readSynAcks reads l until it is closed, passing on the SYN-ACKs.
func readSynAcks(l *Link) <-chan synAck {
	synAcks := make(chan synAck, 16)
	go func() {
		bufs := make([][]byte, l.BatchSize())
		for i := range bufs {
			bufs[i] = make([]byte, link.Headroom+65535)
		}
		sizes := make([]int, len(bufs))
		for {
			n, err := l.Read(bufs, sizes, link.Headroom)
			if err != nil {
				return
			}
			for i := range n {
				b := bufs[i][link.Headroom : link.Headroom+sizes[i]]
				hl, proto := header.IPv4MinimumSize, uint8(0)
				switch {
				case len(b) >= header.IPv4MinimumSize && b[0]>>4 == 4:
					hl, proto = int(b[0]&0xf)*4, b[9]
				case len(b) >= header.IPv6MinimumSize && b[0]>>4 == 6:
					hl, proto = header.IPv6MinimumSize, b[6]
				}
				if proto != uint8(header.TCPProtocolNumber) || len(b) < hl+header.TCPMinimumSize {
					continue
				}
				tcp := header.TCP(b[hl:])
				if tcp.Flags() == header.TCPFlagSyn|header.TCPFlagAck {
					var dst netip.Addr
					if b[0]>>4 == 4 {
						dst = netip.AddrFrom4([4]byte(b[16:20]))
					} else {
						dst = netip.AddrFrom16([16]byte(b[24:40]))
					}
					select {
					case synAcks <- synAck{netip.AddrPortFrom(dst, tcp.DestinationPort()), tcp.SequenceNumber()}:
					default:
					}
				}
			}
		}
	}()
	return synAcks
}

// BenchmarkWritePartial writes 64 KiB TCP segments with their checksums
// offloaded; it allocates nothing per packet.
func BenchmarkWritePartial(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root: creates a TUN device and a network namespace")
	}
	ns := uniqueName()
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		b.Fatalf("ip netns add: %v\n%s", err, out)
	}
	defer exec.Command("ip", "netns", "del", ns).Run()
	dev := uniqueName()
	var l *Link
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		fd, err := unix.Open("/var/run/netns/"+ns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err == nil {
			err = unix.Setns(fd, unix.CLONE_NEWNET)
			unix.Close(fd)
		}
		if err == nil {
			l, err = Open(Config{Name: dev, MTU: 65520}, zap.NewNop())
		}
		done <- err
	}()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	for _, argv := range [][]string{{"link", "set", dev, "up"}, {"addr", "add", "10.77.0.1/24", "dev", dev}} {
		if out, err := exec.Command("ip", append([]string{"-n", ns}, argv...)...).CombinedOutput(); err != nil {
			b.Fatalf("ip %v: %v\n%s", argv, err, out)
		}
	}
	// A segment of an unknown connection: the kernel answers with a RST
	// nobody reads, as cheap a receiver as there is.
	pkt := synPacket(netip.MustParseAddrPort("10.77.0.2:40000"), netip.MustParseAddrPort("10.77.0.1:9"))
	seg := make([]byte, 65000)
	copy(seg, pkt)
	header.IPv4(seg).SetTotalLength(uint16(len(seg)))
	header.IPv4(seg).SetChecksum(0)
	header.IPv4(seg).SetChecksum(^header.IPv4(seg).CalculateChecksum())
	seg[header.IPv4MinimumSize+13] = byte(header.TCPFlagAck)
	buf := make([]byte, link.Headroom+len(seg))
	copy(buf[link.Headroom:], seg)
	bufs, partial := [][]byte{buf}, []bool{true}
	b.SetBytes(int64(len(seg)))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := l.WritePartial(bufs, link.Headroom, partial); err != nil {
			b.Fatal(err)
		}
	}
}
