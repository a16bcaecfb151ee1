package uplink

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/header"

	"tungate/link"
	"tungate/packet"
)

// udpServer is a loopback UDP server that echoes and reports each
// datagram's source.
func udpServer(t testing.TB, v6 bool) (netip.AddrPort, <-chan netip.AddrPort) {
	t.Helper()
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(loAddr(v6), 0)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	from := make(chan netip.AddrPort, 64)
	go func() {
		buf := make([]byte, 65536)
		for {
			n, a, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			select {
			case from <- a:
			default:
			}
			c.WriteToUDPAddrPort(buf[:n], a)
		}
	}()
	return c.LocalAddr().(*net.UDPAddr).AddrPort(), from
}

func isUDP(src, dst netip.AddrPort) func(p *packet.Parsed) bool {
	return func(p *packet.Parsed) bool {
		return p.Proto == packet.ProtoUDP && p.SrcIP() == src.Addr() && p.SrcPort == src.Port() &&
			p.DstIP() == dst.Addr() && p.DstPort == dst.Port()
	}
}

func TestUDPEcho(t *testing.T) {
	families(t, func(t *testing.T, v6 bool) {
		l := openLink(t, Config{AllowHostLoopback: true})
		r := readPackets(t, l)
		srv, _ := udpServer(t, v6)
		ctr := netip.AddrPortFrom(ctrAddr(v6), 40000)
		for _, size := range []int{0, 1, 1400, 9000, 60000} {
			payload := bytes.Repeat([]byte{byte(size)}, size)
			write(t, l, udpPkt(ctr, srv, payload))
			p := r.expect(t, 2*time.Second, "echo reply", isUDP(srv, ctr))
			if got := p.L4()[8:]; !bytes.Equal(got, payload) {
				t.Fatalf("size %d: reply payload differs (%d bytes)", size, len(got))
			}
		}
		if got := l.Stats()[UDPSockets]; got != 1 {
			t.Errorf("udp_sockets = %d, want 1 (one endpoint)", got)
		}
	})
}

// TestUDPMapping: one container endpoint talking to three destinations
// leaves from one host port (endpoint-independent mapping, RFC 4787 4.1).
func TestUDPMapping(t *testing.T) {
	families(t, func(t *testing.T, v6 bool) {
		l := openLink(t, Config{AllowHostLoopback: true})
		r := readPackets(t, l)
		ctr := netip.AddrPortFrom(ctrAddr(v6), 40001)
		var ports []uint16
		for i := range 3 {
			srv, from := udpServer(t, v6)
			write(t, l, udpPkt(ctr, srv, []byte{byte(i)}))
			select {
			case a := <-from:
				ports = append(ports, a.Port())
			case <-time.After(2 * time.Second):
				t.Fatal("server got nothing")
			}
			r.expect(t, 2*time.Second, "reply", isUDP(srv, ctr))
		}
		if ports[0] != ports[1] || ports[1] != ports[2] {
			t.Fatalf("host source ports %v: want one port for every destination", ports)
		}
		// A second container endpoint gets a port of its own.
		srv, from := udpServer(t, v6)
		write(t, l, udpPkt(netip.AddrPortFrom(ctrAddr(v6), 40002), srv, []byte("x")))
		select {
		case a := <-from:
			if a.Port() == ports[0] {
				t.Fatalf("two container endpoints share host port %d", a.Port())
			}
		case <-time.After(2 * time.Second):
			t.Fatal("server got nothing")
		}
	})
}

// TestUDPPortUnreachable: the host's ICMP error (through IP_RECVERR) comes
// back as an ICMP error quoting the container's datagram.
func TestUDPPortUnreachable(t *testing.T) {
	families(t, func(t *testing.T, v6 bool) {
		l := openLink(t, Config{AllowHostLoopback: true})
		r := readPackets(t, l)
		c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(loAddr(v6), 0)))
		if err != nil {
			t.Fatal(err)
		}
		closed := c.LocalAddr().(*net.UDPAddr).AddrPort()
		c.Close()
		ctr := netip.AddrPortFrom(ctrAddr(v6), 40003)
		write(t, l, udpPkt(ctr, closed, []byte("anyone?")))
		p := r.expect(t, 2*time.Second, "port unreachable", func(p *packet.Parsed) bool { return isUnreach(p, 3, 4) })
		if p.SrcIP() != loAddr(v6) || p.DstIP() != ctr.Addr() {
			t.Errorf("error %v → %v, want %v → %v", p.SrcIP(), p.DstIP(), loAddr(v6), ctr.Addr())
		}
		q := quoted(t, p)
		if q.Proto != packet.ProtoUDP || q.SrcIP() != ctr.Addr() || q.SrcPort != ctr.Port() ||
			q.DstIP() != closed.Addr() || q.DstPort != closed.Port() {
			t.Errorf("quote %v:%d → %v:%d is not the datagram sent", q.SrcIP(), q.SrcPort, q.DstIP(), q.DstPort)
		}
	})
}

func TestUDPIdleTimeout(t *testing.T) {
	l := openLink(t, Config{AllowHostLoopback: true, UDPTimeout: Duration(time.Second)})
	r := readPackets(t, l)
	srv, _ := udpServer(t, false)
	ctr := netip.AddrPortFrom(ctr4, 40004)
	write(t, l, udpPkt(ctr, srv, []byte("x")))
	r.expect(t, 2*time.Second, "reply", isUDP(srv, ctr))
	if l.Stats()[UDPSockets] != 1 || l.Flows() != 1 {
		t.Fatalf("after one datagram: %d sockets, %d flows", l.Stats()[UDPSockets], l.Flows())
	}
	waitFor(t, 5*time.Second, "the idle socket to close", func() bool { return l.Stats()[UDPSockets] == 0 })
	if l.Flows() != 0 {
		t.Errorf("flows = %d after the socket closed", l.Flows())
	}
	// A new datagram opens a new socket and still gets its reply.
	write(t, l, udpPkt(ctr, srv, []byte("y")))
	r.expect(t, 2*time.Second, "reply", isUDP(srv, ctr))
}

// TestLoopbackRefused: without allow_host_loopback, the host's loopback
// answers "administratively prohibited" (TCP: RST) and nothing is sent.
func TestLoopbackRefused(t *testing.T) {
	families(t, func(t *testing.T, v6 bool) {
		l := openLink(t, Config{})
		r := readPackets(t, l)
		srv, from := udpServer(t, v6)
		ctr := netip.AddrPortFrom(ctrAddr(v6), 40005)
		write(t, l, udpPkt(ctr, srv, []byte("x")))
		p := r.expect(t, 2*time.Second, "admin prohibited", func(p *packet.Parsed) bool { return isUnreach(p, 13, 1) })
		if q := quoted(t, p); q.DstPort != srv.Port() {
			t.Errorf("quote to port %d, want %d", q.DstPort, srv.Port())
		}
		write(t, l, echoPkt(ctr.Addr(), loAddr(v6), 7, 1, []byte("ping")))
		r.expect(t, 2*time.Second, "admin prohibited for ping", func(p *packet.Parsed) bool { return isUnreach(p, 13, 1) })

		ln, err := net.ListenTCP("tcp", net.TCPAddrFromAddrPort(netip.AddrPortFrom(loAddr(v6), 0)))
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		dst := ln.Addr().(*net.TCPAddr).AddrPort()
		write(t, l, tcpPkt(ctr, dst, 1000, 0, synFlag, nil))
		p = r.expect(t, 2*time.Second, "RST", isTCPFrom(dst, ctr))
		if p.TCPFlags&packet.TCPRst == 0 {
			t.Fatalf("first answer to a SYN to loopback has flags %#x, want RST", p.TCPFlags)
		}
		select {
		case a := <-from:
			t.Fatalf("the loopback server got a datagram from %v", a)
		default:
		}
		if got := l.Stats()[DropLoopback]; got != 3 {
			t.Errorf("drop_loopback = %d, want 3", got)
		}
		if l.Flows() != 0 {
			t.Errorf("flows = %d, want 0", l.Flows())
		}
	})
}

// TestBudget: max_flows caps host sockets; the next endpoint is dropped
// and counted, a SYN is reset.
func TestBudget(t *testing.T) {
	l := openLink(t, Config{AllowHostLoopback: true, MaxFlows: 2})
	r := readPackets(t, l)
	srv, _ := udpServer(t, false)
	for i := range 3 {
		write(t, l, udpPkt(netip.AddrPortFrom(ctr4, uint16(41000+i)), srv, []byte("x")))
	}
	for i := range 2 {
		r.expect(t, 2*time.Second, "reply", isUDP(srv, netip.AddrPortFrom(ctr4, uint16(41000+i))))
	}
	if s := l.Stats(); s[DropBudget] != 1 || s[UDPSockets] != 2 {
		t.Fatalf("drop_budget %d, udp_sockets %d; want 1, 2", s[DropBudget], s[UDPSockets])
	}
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	dst := ln.Addr().(*net.TCPAddr).AddrPort()
	ctr := netip.AddrPortFrom(ctr4, 41010)
	write(t, l, tcpPkt(ctr, dst, 5, 0, synFlag, nil))
	p := r.expect(t, 2*time.Second, "RST", isTCPFrom(dst, ctr))
	if p.TCPFlags&packet.TCPRst == 0 {
		t.Fatalf("SYN over budget answered with flags %#x, want RST", p.TCPFlags)
	}
}

func TestDNS(t *testing.T) {
	if !inNetns(t) {
		return
	}
	// A fake resolver on a loopback address, as systemd-resolved's
	// 127.0.0.53, and one on ::1.
	resolver := netip.MustParseAddrPort("127.0.0.53:53")
	fakeResolver(t, resolver)
	fakeResolver(t, netip.MustParseAddrPort("[::1]:53"))
	rc := t.TempDir() + "/resolv.conf"
	if err := writeFile(rc, "# test\nsearch example\nnameserver 127.0.0.53\nnameserver ::1\n"); err != nil {
		t.Fatal(err)
	}
	// Host loopback stays refused: the resolver is reached anyway.
	l := openLink(t, Config{DNS: []string{"10.0.2.3", "fd00::3"}, ResolvConf: rc})
	r := readPackets(t, l)
	vdns := netip.MustParseAddrPort("10.0.2.3:53")
	ctr := netip.AddrPortFrom(ctr4, 40006)
	write(t, l, udpPkt(ctr, vdns, []byte("query")))
	p := r.expect(t, 2*time.Second, "DNS answer from the virtual resolver", isUDP(vdns, ctr))
	if got := string(p.L4()[8:]); got != "answer:query" {
		t.Fatalf("answer %q", got)
	}
	vdns6 := netip.MustParseAddrPort("[fd00::3]:53")
	ctr6p := netip.AddrPortFrom(ctr6, 40006)
	write(t, l, udpPkt(ctr6p, vdns6, []byte("query6")))
	p = r.expect(t, 2*time.Second, "DNS answer from the virtual IPv6 resolver", isUDP(vdns6, ctr6p))
	if got := string(p.L4()[8:]); got != "answer:query6" {
		t.Fatalf("answer %q", got)
	}
	// Another port of the virtual address is refused.
	write(t, l, udpPkt(ctr, netip.MustParseAddrPort("10.0.2.3:54"), []byte("x")))
	r.expect(t, 2*time.Second, "admin prohibited", func(p *packet.Parsed) bool { return isUnreach(p, 13, 1) })
	if got := l.Stats()[DropVirtualPort]; got != 1 {
		t.Errorf("drop_virtual_port = %d, want 1", got)
	}
	// The host's loopback itself is not reachable.
	write(t, l, udpPkt(ctr, resolver, []byte("query")))
	r.expect(t, 2*time.Second, "admin prohibited", func(p *packet.Parsed) bool { return isUnreach(p, 13, 1) })

	// TCP to the virtual resolver, through the stack.
	ctrT := netip.AddrPortFrom(ctr4, 40007)
	write(t, l, tcpPkt(ctrT, vdns, 100, 0, synFlag, nil))
	sa := r.expect(t, 2*time.Second, "SYN-ACK", isTCPFrom(vdns, ctrT))
	if sa.TCPFlags != packet.TCPSyn|packet.TCPAck {
		t.Fatalf("flags %#x, want SYN-ACK", sa.TCPFlags)
	}
	iss := tcpSeq(sa)
	write(t, l, tcpPkt(ctrT, vdns, 101, iss+1, ackFlag|pshFlag, []byte("q")))
	data := r.expect(t, 2*time.Second, "TCP answer", func(p *packet.Parsed) bool {
		return isTCPFrom(vdns, ctrT)(p) && len(tcpPayload(p)) > 0
	})
	if got := string(tcpPayload(data)); got != "tcp answer:q" {
		t.Fatalf("TCP answer %q", got)
	}
}

// TestHostLoopbackAddress: the virtual address stands for the host's
// loopback (slirp4netns's 10.0.2.2); replies come from it, not from
// 127.0.0.1, which a Linux container would drop as a martian.
func TestHostLoopbackAddress(t *testing.T) {
	virt := map[bool]netip.Addr{false: netip.MustParseAddr("10.0.2.2"), true: netip.MustParseAddr("fd00::2")}
	families(t, func(t *testing.T, v6 bool) {
		cfg := Config{AllowHostLoopback: true, HostLoopback: []string{"10.0.2.2", "fd00::2"}}
		l := openLink(t, cfg)
		r := readPackets(t, l)
		srv, _ := udpServer(t, v6)
		vsrv := netip.AddrPortFrom(virt[v6], srv.Port())
		ctr := netip.AddrPortFrom(ctrAddr(v6), 40010)
		write(t, l, udpPkt(ctr, vsrv, []byte("via gateway")))
		p := r.expect(t, 2*time.Second, "reply from the virtual address", isUDP(vsrv, ctr))
		if string(p.L4()[8:]) != "via gateway" {
			t.Fatalf("payload %q", p.L4()[8:])
		}
		ln := listenLoopback(t, v6)
		vdst := netip.AddrPortFrom(virt[v6], ln.Addr().(*net.TCPAddr).AddrPort().Port())
		ctrT := netip.AddrPortFrom(ctrAddr(v6), 40011)
		write(t, l, tcpPkt(ctrT, vdst, 9, 0, synFlag, nil))
		sa := r.expect(t, 2*time.Second, "SYN-ACK from the virtual address", isTCPFrom(vdst, ctrT))
		if sa.TCPFlags != packet.TCPSyn|packet.TCPAck {
			t.Fatalf("flags %#x", sa.TCPFlags)
		}

		// Without allow_host_loopback the virtual address is refused too.
		cfg.AllowHostLoopback = false
		l2 := openLink(t, cfg)
		r2 := readPackets(t, l2)
		write(t, l2, udpPkt(ctr, vsrv, []byte("x")))
		r2.expect(t, 2*time.Second, "admin prohibited", func(p *packet.Parsed) bool { return isUnreach(p, 13, 1) })
	})
}

func TestClose(t *testing.T) {
	l, err := New(Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	res := make(chan error, 1)
	go func() {
		bufs := [][]byte{make([]byte, 2048)}
		_, err := l.Read(bufs, []int{0}, link.Headroom)
		res <- err
	}()
	l.Close()
	select {
	case err := <-res:
		if !errors.Is(err, os.ErrClosed) {
			t.Fatalf("Read after Close: %v", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Read still blocked after Close")
	}
	if _, err := l.Write([][]byte{udpPkt(netip.AddrPortFrom(ctr4, 1), netip.MustParseAddrPort("192.0.2.1:9"), nil)}, link.Headroom); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("Write after Close: %v", err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	// A packet Read held back for its next batch, or one still queued,
	// is not handed out after Close: Read says closed and drops them.
	l.next = getPkt(64)
	l.out <- getPkt(64)
	if _, err := l.Read([][]byte{make([]byte, 2048)}, []int{0}, link.Headroom); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("Read with a held packet after Close: %v", err)
	}
	if l.next != nil || len(l.out) != 0 {
		t.Fatalf("after Close, Read kept a held packet (%v) or left %d queued", l.next != nil, len(l.out))
	}
}

// TestICMPErrorsFromContainer: an error about a TCP connection goes to the
// stack; errors about anything else have no socket to go to.
func TestICMPErrorsFromContainer(t *testing.T) {
	l := openLink(t, Config{})
	ctr := netip.AddrPortFrom(ctr4, 46000)
	remote := netip.MustParseAddrPort("192.0.2.1:9")
	for _, orig := range [][]byte{
		udpPkt(remote, ctr, []byte("x"))[link.Headroom:],
		tcpPkt(remote, ctr, 1, 1, ackFlag, nil)[link.Headroom:],
	} {
		var q packet.Parsed
		if err := q.Decode(orig); err != nil {
			t.Fatal(err)
		}
		b := make([]byte, link.Headroom+maxICMPError4)
		n := buildICMPError(b[link.Headroom:], orig, ctr4, remote.Addr(), 3, 3, 0)
		write(t, l, b[:link.Headroom+n])
	}
	if s := l.Stats(); s[DropProto] != 1 || s[DropMalformed] != 0 {
		t.Fatalf("drop_proto %d (the UDP one), drop_malformed %d", s[DropProto], s[DropMalformed])
	}
}

// fakeResolver answers UDP and TCP on a: "answer:" or "tcp answer:" and
// the query.
func fakeResolver(t *testing.T, a netip.AddrPort) {
	uc, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(a))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { uc.Close() })
	go func() {
		buf := make([]byte, 512)
		for {
			n, from, err := uc.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			uc.WriteToUDPAddrPort(append([]byte("answer:"), buf[:n]...), from)
		}
	}()
	tl, err := net.ListenTCP("tcp", net.TCPAddrFromAddrPort(a))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tl.Close() })
	go func() {
		for {
			c, err := tl.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 512)
				n, _ := c.Read(buf)
				c.Write(append([]byte("tcp answer:"), buf[:n]...))
			}()
		}
	}()
}

// setTTL rewrites the TTL (hop limit) of a packet built with headroom.
func setTTL(b []byte, ttl uint8) []byte {
	p := b[link.Headroom:]
	if p[0]>>4 == 6 {
		p[7] = ttl
		return b
	}
	p[8] = ttl
	ip := header.IPv4(p)
	ip.SetChecksum(0)
	ip.SetChecksum(^ip.CalculateChecksum())
	return b
}

// TestTimeExceeded: a datagram leaves with the container's TTL, so the
// first router's time exceeded comes back to the container, quoting it
// (traceroute through the uplink). The router is a namespace of its own.
func TestTimeExceeded(t *testing.T) {
	if !inNetns(t) {
		return
	}
	rt := fmt.Sprintf("uplinkrt%d", os.Getpid())
	run(t, "ip", "netns", "add", rt)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", rt).Run() })
	for _, c := range [][]string{
		{"link", "add", "v0", "type", "veth", "peer", "name", "v1", "netns", rt},
		{"addr", "add", "10.9.0.1/24", "dev", "v0"},
		{"-6", "addr", "add", "fd09::1/64", "dev", "v0", "nodad"},
		{"link", "set", "v0", "up"},
		{"route", "add", "10.10.0.0/24", "via", "10.9.0.2"},
		{"-6", "route", "add", "fd10::/64", "via", "fd09::2"},
		{"-n", rt, "addr", "add", "10.9.0.2/24", "dev", "v1"},
		{"-n", rt, "-6", "addr", "add", "fd09::2/64", "dev", "v1", "nodad"},
		{"-n", rt, "link", "set", "v1", "up"},
		{"-n", rt, "route", "add", "10.10.0.0/24", "via", "10.9.0.1"},
		{"-n", rt, "-6", "route", "add", "fd10::/64", "via", "fd09::1"},
	} {
		run(t, "ip", c...)
	}
	run(t, "ip", "netns", "exec", rt, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1")
	families(t, func(t *testing.T, v6 bool) {
		l := openLink(t, Config{})
		r := readPackets(t, l)
		dst, router := netip.MustParseAddrPort("10.10.0.5:33434"), netip.MustParseAddr("10.9.0.2")
		if v6 {
			dst, router = netip.MustParseAddrPort("[fd10::5]:33434"), netip.MustParseAddr("fd09::2")
		}
		ctr := netip.AddrPortFrom(ctrAddr(v6), 40020)
		isTimeExceeded := func(p *packet.Parsed) bool {
			return p.IsICMPError() && (p.Version == 4 && p.ICMPType == 11 || p.Version == 6 && p.ICMPType == 3)
		}
		// The router may still be resolving our neighbour address for
		// the first probe; traceroute sends several too.
		var p *packet.Parsed
		deadline := time.Now().Add(5 * time.Second)
		for p == nil && time.Now().Before(deadline) {
			write(t, l, setTTL(udpPkt(ctr, dst, []byte("probe")), 1))
			select {
			case b := <-r.c:
				q := new(packet.Parsed)
				if q.Decode(b) == nil && isTimeExceeded(q) {
					checkSums(t, q)
					p = q
				}
			case <-time.After(300 * time.Millisecond):
			}
		}
		if p == nil {
			t.Fatal("no time exceeded from the router")
		}
		if p.SrcIP() != router || p.DstIP() != ctr.Addr() {
			t.Errorf("time exceeded %v → %v, want %v → %v", p.SrcIP(), p.DstIP(), router, ctr.Addr())
		}
		if q := quoted(t, p); q.Proto != packet.ProtoUDP || q.SrcPort != ctr.Port() || q.DstIP() != dst.Addr() || q.DstPort != dst.Port() {
			t.Errorf("quote %v:%d → %v:%d is not the probe", q.SrcIP(), q.SrcPort, q.DstIP(), q.DstPort)
		}
	})
}
