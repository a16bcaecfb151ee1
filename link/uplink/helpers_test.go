package uplink

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"

	"tungate/link"
	"tungate/packet"
)

// The container's addresses in every test.
var (
	ctr4 = netip.MustParseAddr("10.0.2.100")
	ctr6 = netip.MustParseAddr("fd00::100")
	lo4  = netip.MustParseAddr("127.0.0.1")
	lo6  = netip.IPv6Loopback()
)

func ctrAddr(v6 bool) netip.Addr {
	if v6 {
		return ctr6
	}
	return ctr4
}

func loAddr(v6 bool) netip.Addr {
	if v6 {
		return lo6
	}
	return lo4
}

func families(t *testing.T, f func(t *testing.T, v6 bool)) {
	t.Run("ipv4", func(t *testing.T) { f(t, false) })
	t.Run("ipv6", func(t *testing.T) { f(t, true) })
}

// openLink opens an uplink closed at cleanup.
func openLink(t testing.TB, cfg Config) *Link {
	t.Helper()
	l, err := New(cfg, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// lazyPackets and gsoPackets count the packets newContainer's pump got in
// pieces and to be cut (Config.GSO).
var lazyPackets, gsoPackets atomic.Int64

// reader pumps a link's Read into a channel of packet copies.
type reader struct {
	c chan []byte
}

func readPackets(t testing.TB, l *Link) *reader {
	r := &reader{c: make(chan []byte, 4096)}
	go func() {
		bufs := make([][]byte, batchSize)
		for i := range bufs {
			bufs[i] = make([]byte, link.Headroom+1<<16)
		}
		sizes := make([]int, batchSize)
		for {
			n, err := l.Read(bufs, sizes, link.Headroom)
			if err != nil {
				return
			}
			finishPartial(l, bufs[:n], sizes)
			for i := range n {
				r.c <- append([]byte(nil), bufs[i][link.Headroom:link.Headroom+sizes[i]]...)
			}
		}
	}()
	return r
}

// finishPartial does for a batch Read returned what the datapath does
// before a write to a link without checksum offload: a batch of the TCP
// stack's segments (link.ChecksumPartial) has its checksums filled in.
// Such a batch must hold TCP segments only.
func finishPartial(l *Link, bufs [][]byte, sizes []int) {
	if l.ReadFlags()&link.ChecksumPartial == 0 {
		return
	}
	for i, b := range bufs {
		if !packet.FinishTCPChecksum(b[link.Headroom : link.Headroom+sizes[i]]) {
			panic(fmt.Sprintf("a ChecksumPartial batch holds a packet that is not TCP: % x", b[link.Headroom:link.Headroom+min(sizes[i], 40)]))
		}
	}
}

// expect returns the first packet match accepts, failing after timeout.
// Every packet read is checked for valid checksums on the way.
func (r *reader) expect(t testing.TB, timeout time.Duration, what string, match func(p *packet.Parsed) bool) *packet.Parsed {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case b := <-r.c:
			p := new(packet.Parsed)
			if err := p.Decode(b); err != nil {
				t.Fatalf("uplink read an undecodable packet: %v (% x)", err, b)
			}
			checkSums(t, p)
			if match(p) {
				return p
			}
		case <-deadline:
			t.Fatalf("no %s within %v", what, timeout)
			return nil
		}
	}
}

// none fails if match accepts a packet within d.
func (r *reader) none(t testing.TB, d time.Duration, what string, match func(p *packet.Parsed) bool) {
	t.Helper()
	deadline := time.After(d)
	for {
		select {
		case b := <-r.c:
			p := new(packet.Parsed)
			if p.Decode(b) == nil && match(p) {
				t.Fatalf("unexpected %s", what)
			}
		case <-deadline:
			return
		}
	}
}

// checkSums verifies the transport checksum of a packet the uplink built.
func checkSums(t testing.TB, p *packet.Parsed) {
	t.Helper()
	b := p.Bytes()
	if p.Version == 4 && !header.IPv4(b).IsChecksumValid() {
		t.Fatalf("bad IPv4 header checksum: % x", b)
	}
	l4 := p.L4()
	var x uint16
	if p.Proto != packet.ProtoICMP {
		x = header.PseudoHeaderChecksum(tcpip.TransportProtocolNumber(p.Proto), tcpipAddr(p.SrcIP()), tcpipAddr(p.DstIP()), uint16(len(l4)))
	}
	if s := checksum.Checksum(l4, x); s != 0xffff {
		t.Fatalf("bad %d checksum (sum %#x): % x", p.Proto, s, b)
	}
}

// Packet builders for the container's side. Each returns a buffer with
// link.Headroom in front, as the datapath passes them.

func udpPkt(src, dst netip.AddrPort, payload []byte) []byte {
	hl := ipHeaderLen(src.Addr().Is6())
	b := make([]byte, link.Headroom+hl+8+len(payload))
	copy(b[link.Headroom+hl+8:], payload)
	buildUDP(b[link.Headroom:], src, dst, len(payload))
	return b
}

func echoPkt(src, dst netip.Addr, id, seq uint16, data []byte) []byte {
	hl := ipHeaderLen(src.Is6())
	b := make([]byte, link.Headroom+hl+8+len(data))
	p := b[link.Headroom:]
	proto := header.ICMPv4ProtocolNumber
	m := p[hl:]
	m[0] = 8
	if src.Is6() {
		proto = header.ICMPv6ProtocolNumber
		m[0] = 128
	}
	binary.BigEndian.PutUint16(m[4:], id)
	binary.BigEndian.PutUint16(m[6:], seq)
	copy(m[8:], data)
	writeIPHeader(p, src, dst, proto, 8+len(data))
	finishICMP(p, hl, src, dst)
	return b
}

func tcpPkt(src, dst netip.AddrPort, seq, ack uint32, flags header.TCPFlags, payload []byte) []byte {
	hl := ipHeaderLen(src.Addr().Is6())
	b := make([]byte, link.Headroom+hl+20+len(payload))
	p := b[link.Headroom:]
	copy(p[hl+20:], payload)
	writeIPHeader(p, src.Addr(), dst.Addr(), header.TCPProtocolNumber, 20+len(payload))
	th := header.TCP(p[hl:])
	th.Encode(&header.TCPFields{SrcPort: src.Port(), DstPort: dst.Port(), SeqNum: seq, AckNum: ack,
		DataOffset: 20, Flags: flags, WindowSize: 65535})
	x := header.PseudoHeaderChecksum(header.TCPProtocolNumber, tcpipAddr(src.Addr()), tcpipAddr(dst.Addr()), uint16(20+len(payload)))
	x = checksum.Checksum(payload, x)
	th.SetChecksum(^th.CalculateChecksum(x))
	return b
}

func write(t testing.TB, l *Link, pkts ...[]byte) {
	t.Helper()
	if n, err := l.Write(pkts, link.Headroom); err != nil || n != len(pkts) {
		t.Fatalf("Write = %d, %v", n, err)
	}
}

// quoted decodes the packet an ICMP error quotes.
func quoted(t testing.TB, p *packet.Parsed) *packet.Parsed {
	t.Helper()
	q := new(packet.Parsed)
	if err := q.DecodeQuoted(p.L4()[8:]); err != nil {
		t.Fatalf("ICMP error quotes garbage: %v", err)
	}
	return q
}

func isUnreach(p *packet.Parsed, code4, code6 uint8) bool {
	if p.Version == 4 {
		return p.Proto == packet.ProtoICMP && p.ICMPType == 3 && p.ICMPCode == code4
	}
	return p.Proto == packet.ProtoICMPv6 && p.ICMPType == 1 && p.ICMPCode == code6
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// container is a gVisor stack standing for the container's kernel, wired
// to the uplink the way the datapath would: its packets go to Write,
// Read's packets come to it.
type container struct {
	s *stack.Stack
}

func newContainer(t testing.TB, l *Link) *container {
	// A Linux container drops packets from 127.0.0.0/8 arriving on its
	// interface (martian source); this one accepts them so the tests can
	// reach the host's loopback directly.
	s := stack.New(stack.Options{
		NetworkProtocols: []stack.NetworkProtocolFactory{
			ipv4.NewProtocolWithOptions(ipv4.Options{AllowExternalLoopbackTraffic: true}),
			ipv6.NewProtocolWithOptions(ipv6.Options{AllowExternalLoopbackTraffic: true}),
		},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol},
	})
	ch := channel.New(1024, uint32(l.cfg.MTU), "")
	if err := s.CreateNIC(1, ch); err != nil {
		t.Fatal(err)
	}
	for _, a := range []netip.Addr{ctr4, ctr6} {
		proto := ipv4.ProtocolNumber
		if a.Is6() {
			proto = ipv6.ProtocolNumber
		}
		pa := tcpip.ProtocolAddress{Protocol: proto, AddressWithPrefix: tcpipAddr(a).WithPrefix()}
		if err := s.AddProtocolAddress(1, pa, stack.AddressProperties{}); err != nil {
			t.Fatal(err)
		}
	}
	s.SetRouteTable([]tcpip.Route{
		{Destination: header.IPv4EmptySubnet, NIC: 1},
		{Destination: header.IPv6EmptySubnet, NIC: 1},
	})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { // container → uplink
		defer wg.Done()
		for {
			pkt := ch.ReadContext(ctx)
			if pkt == nil {
				return
			}
			v := pkt.ToView()
			pkt.DecRef()
			b := make([]byte, link.Headroom+v.Size())
			copy(b[link.Headroom:], v.AsSlice())
			v.Release()
			l.Write([][]byte{b}, link.Headroom)
		}
	}()
	// Read lazily, as the datapath does: the container's stack gets
	// each packet made whole from its pieces (see link.LazyReader).
	l.ReadLazily()
	go func() { // uplink → container
		defer wg.Done()
		bufs := make([][]byte, batchSize)
		for i := range bufs {
			bufs[i] = make([]byte, link.Headroom+1<<16)
		}
		sizes := make([]int, batchSize)
		segBufs := make([][]byte, 64)
		for i := range segBufs {
			segBufs[i] = make([]byte, l.cfg.MTU)
		}
		segSizes := make([]int, len(segBufs))
		for {
			n, err := l.Read(bufs, sizes, link.Headroom)
			if err != nil {
				return
			}
			for i := range n {
				if hdr, pieces := l.Lazy(i); pieces != nil {
					if got := len(link.Fill(bufs[i][:link.Headroom+hdr], pieces)) - link.Headroom; got != sizes[i] {
						panic(fmt.Sprintf("lazy read: headers and pieces make %d bytes of a %d-byte packet", got, sizes[i]))
					}
					lazyPackets.Add(1)
				}
			}
			finishPartial(l, bufs[:n], sizes)
			for i := range n {
				b := bufs[i][link.Headroom : link.Headroom+sizes[i]]
				segs := [][]byte{b}
				if g := l.GSO(i); g > 0 {
					// Cut as the datapath cuts for a device that cannot.
					gsoPackets.Add(1)
					k, err := link.SplitTCP(b, g, segBufs, segSizes, 0)
					if err != nil {
						panic(fmt.Sprintf("GSO packet of %d bytes, segment size %d: %v", len(b), g, err))
					}
					segs = segs[:0]
					for j := range k {
						segs = append(segs, segBufs[j][:segSizes[j]])
					}
				}
				for _, b := range segs {
					proto := ipv4.ProtocolNumber
					if b[0]>>4 == 6 {
						proto = ipv6.ProtocolNumber
					}
					pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(b)})
					ch.InjectInbound(proto, pkt)
					pkt.DecRef()
				}
			}
		}
	}()
	t.Cleanup(func() {
		l.Close()
		cancel()
		wg.Wait()
		s.Close()
	})
	return &container{s: s}
}

// inNetns reports whether the test runs inside the private network
// namespace it asked for. The first call re-runs the test binary for this
// test alone under `unshare -n` (as root) and returns false once that
// child passed; in the child it returns true and the test does its work
// with lo up.
func inNetns(t *testing.T) bool {
	t.Helper()
	if os.Getenv("UPLINK_NETNS") == t.Name() {
		if os.Getenv("UPLINK_PREPARED") == "" {
			run(t, "ip", "link", "set", "lo", "up")
		}
		return true
	}
	cmd := exec.Command("unshare", "-n", "-m", "--", os.Args[0], "-test.run=^"+t.Name()+"$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), "UPLINK_NETNS="+t.Name())
	out, err := cmd.CombinedOutput()
	t.Logf("in a network namespace of its own:\n%s", out)
	if err != nil {
		t.Fatalf("child test failed: %v", err)
	}
	if !strings.Contains(string(out), "--- PASS: "+t.Name()) {
		t.Fatal("child test did not pass")
	}
	return false
}

func run(t testing.TB, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

func writeFile(name, s string) error { return os.WriteFile(name, []byte(s), 0o644) }
