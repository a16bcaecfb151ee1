package gateway

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"testing"
	"time"

	"tungate/internal/packettest"
	"tungate/packet"
)

const twoLinks = `
[[interface]]
name = "lan"
tun = "lan0"
addresses = ["10.10.0.1/24", "fd10::1/64"]
mtu = %d

[[interface]]
name = "wan"
tun = "wan0"
addresses = ["198.18.0.1/24", "2001:db8:1::1/64"]
mtu = %d

[[route]]
to = "0.0.0.0/0"
interface = "wan"
[[route]]
to = "::/0"
interface = "wan"
`

// linksConf is twoLinks with the default MTUs: the two links most tests
// and benchmarks run on.
var linksConf = strings.Replace(twoLinks, "mtu = %d\n", "", 2)

func plainGateway(t *testing.T, lanMTU, wanMTU int, extra string) (client, server *host, g *Gateway) {
	client = newHost(t, lanMTU, "10.10.0.2", "fd10::2")
	server = newHost(t, wanMTU, "198.18.0.2", "2001:db8:1::2")
	g = testGateway(t, fmt.Sprintf(twoLinks, lanMTU, wanMTU)+extra, client, server)
	return client, server, g
}

// transfer sends n random bytes from client to server over TCP and checks
// the server got exactly them.
func transfer(t *testing.T, client, server *host, dst netip.AddrPort, n int) {
	t.Helper()
	ln, err := server.Net.ListenTCPAddrPort(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan [32]byte, 1)
	errc := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			errc <- err
			return
		}
		defer c.Close()
		h := sha256.New()
		if _, err := io.Copy(h, c); err != nil {
			errc <- err
			return
		}
		var s [32]byte
		copy(s[:], h.Sum(nil))
		got <- s
		c.Write([]byte("done"))
	}()
	data := make([]byte, n)
	rand.Read(data)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := client.Net.DialContextTCPAddrPort(ctx, dst)
	if err != nil {
		t.Fatalf("dial %v: %v", dst, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Write(data); err != nil {
		t.Fatalf("write: %v", err)
	}
	c.CloseWrite()
	select {
	case s := <-got:
		if s != sha256.Sum256(data) {
			t.Fatalf("server received different bytes")
		}
	case err := <-errc:
		t.Fatal(err)
	case <-time.After(30 * time.Second):
		t.Fatal("transfer timed out")
	}
	ack := make([]byte, 4)
	if _, err := io.ReadFull(c, ack); err != nil || string(ack) != "done" {
		t.Fatalf("reply: %q %v", ack, err)
	}
}

func TestForwardTCP1MiB(t *testing.T) {
	client, server, _ := plainGateway(t, 1500, 1500, "")
	t.Run("ipv4", func(t *testing.T) {
		transfer(t, client, server, netip.MustParseAddrPort("198.18.0.2:8080"), 1<<20)
	})
	t.Run("ipv6", func(t *testing.T) {
		transfer(t, client, server, netip.MustParseAddrPort("[2001:db8:1::2]:8080"), 1<<20)
	})
}

func TestForwardUDP(t *testing.T) {
	client, server, _ := plainGateway(t, 1500, 1500, "")
	for _, dst := range []string{"198.18.0.2:5353", "[2001:db8:1::2]:5353"} {
		t.Run(dst, func(t *testing.T) {
			ap := netip.MustParseAddrPort(dst)
			sc, err := server.Net.ListenUDPAddrPort(ap)
			if err != nil {
				t.Fatal(err)
			}
			defer sc.Close()
			go func() {
				buf := make([]byte, 2048)
				for {
					n, from, err := sc.ReadFrom(buf)
					if err != nil {
						return
					}
					sc.WriteTo(bytes.ToUpper(buf[:n]), from)
				}
			}()
			cc, err := client.Net.DialUDPAddrPort(netip.AddrPort{}, ap)
			if err != nil {
				t.Fatal(err)
			}
			defer cc.Close()
			for i := range 20 {
				msg := fmt.Sprintf("datagram %d", i)
				cc.Write([]byte(msg))
				cc.SetReadDeadline(time.Now().Add(5 * time.Second))
				buf := make([]byte, 100)
				n, err := cc.Read(buf)
				if err != nil {
					t.Fatalf("datagram %d: %v", i, err)
				}
				if string(buf[:n]) != string(bytes.ToUpper([]byte(msg))) {
					t.Fatalf("got %q", buf[:n])
				}
			}
		})
	}
}

// echoRequest builds an ICMP or ICMPv6 echo request with valid checksums.
func echoRequest(src, dst string, id uint16) []byte {
	typ := uint8(8)
	if strings.Contains(src, ":") {
		typ = 128
	}
	return packettest.Build(packettest.IP{V6: typ == 128, Src: src, Dst: dst},
		packettest.ICMP{Type: typ, Rest: uint32(id)<<16 | 1}, []byte("tungate!"))
}

var pingID uint16 = 0x4000

// ping sends an echo request as host h (from its address from) to to and
// waits for the reply the gateway delivers back to h, with its identifier
// and payload restored.
func ping(t *testing.T, h *host, from, to string) {
	t.Helper()
	pingID++
	id := pingID
	dst := netip.MustParseAddr(to)
	got := h.expect(func(b []byte) bool {
		var p packet.Parsed
		return p.Decode(b) == nil && p.IsEcho() && (p.ICMPType == 0 || p.ICMPType == 129) &&
			p.SrcIP() == dst && p.SrcPort == id && bytes.HasSuffix(b, []byte("tungate!")) && p.L4ChecksumValid()
	})
	req := echoRequest(from, to, id)
	for try := 0; try < 20; try++ {
		h.send(req)
		select {
		case <-got:
			return
		case <-time.After(500 * time.Millisecond):
		}
	}
	t.Fatalf("no echo reply from %s", to)
}

func TestPing(t *testing.T) {
	client, _, _ := plainGateway(t, 1500, 1500, "")
	ping(t, client, "10.10.0.2", "198.18.0.2")
	ping(t, client, "fd10::2", "2001:db8:1::2")
	ping(t, client, "10.10.0.2", "10.10.0.1")
	ping(t, client, "fd10::2", "fd10::1")
	ping(t, client, "10.10.0.2", "198.18.0.1")
}

// udpPacket builds an IPv4 or IPv6 UDP packet with valid checksums.
func udpPacket(src, dst string, sport, dport uint16, ttl uint8, df bool, payload []byte) []byte {
	return packettest.Build(packettest.IP{V6: strings.Contains(src, ":"), Src: src, Dst: dst, TTL: ttl, DF: df},
		packettest.UDP{SPort: sport, DPort: dport}, payload)
}

func icmpMatch(version, typ, code uint8) func([]byte) bool {
	return func(b []byte) bool {
		var p packet.Parsed
		return p.Decode(b) == nil && p.Version == version && p.IsICMP() && p.ICMPType == typ && p.ICMPCode == code
	}
}

func wait(t *testing.T, ch <-chan []byte, what string) []byte {
	t.Helper()
	select {
	case b := <-ch:
		return b
	case <-time.After(5 * time.Second):
		t.Fatalf("no %s", what)
		return nil
	}
}

func TestTimeExceeded(t *testing.T) {
	client, _, _ := plainGateway(t, 1500, 1500, "")
	for _, c := range []struct {
		src, dst, gw string
		v, typ       uint8
	}{{"10.10.0.2", "198.18.0.2", "10.10.0.1", 4, 11}, {"fd10::2", "2001:db8:1::2", "fd10::1", 6, 3}} {
		ch := client.expect(icmpMatch(c.v, c.typ, 0))
		client.send(udpPacket(c.src, c.dst, 4000, 33434, 1, false, []byte("trace")))
		b := wait(t, ch, "time exceeded")
		var p packet.Parsed
		p.Decode(b)
		if p.SrcIP().String() != c.gw || p.DstIP().String() != c.src || !p.L4ChecksumValid() {
			t.Fatalf("time exceeded %v -> %v, checksum ok %v", p.SrcIP(), p.DstIP(), p.L4ChecksumValid())
		}
		var q packet.Parsed
		if err := q.DecodeQuoted(p.ICMPQuote()); err != nil || q.DstIP().String() != c.dst || q.DstPort != 33434 {
			t.Fatalf("quote: %v %v %d", err, q.DstIP(), q.DstPort)
		}
	}
}

func TestFragmentationNeeded(t *testing.T) {
	client, server, _ := plainGateway(t, 1500, 1300, "")
	ch := client.expect(icmpMatch(4, 3, 4))
	client.send(udpPacket("10.10.0.2", "198.18.0.2", 4000, 9, 64, true, make([]byte, 1400)))
	b := wait(t, ch, "fragmentation needed")
	if mtu := binary.BigEndian.Uint16(b[20+6:]); mtu != 1300 {
		t.Fatalf("next-hop MTU %d, want 1300", mtu)
	}
	ch6 := client.expect(icmpMatch(6, 2, 0))
	client.send(udpPacket("fd10::2", "2001:db8:1::2", 4000, 9, 64, true, make([]byte, 1400)))
	b = wait(t, ch6, "packet too big")
	if mtu := binary.BigEndian.Uint32(b[40+4:]); mtu != 1300 {
		t.Fatalf("PTB MTU %d, want 1300", mtu)
	}
	// Without DF the packet is fragmented to fit.
	frag := server.expect(func(b []byte) bool {
		var p packet.Parsed
		return p.Decode(b) == nil && p.Fragment && p.FragOff == 0 && len(b) <= 1300
	})
	client.send(udpPacket("10.10.0.2", "198.18.0.2", 4000, 9, 64, false, make([]byte, 1400)))
	wait(t, frag, "first fragment at the server")
}

func TestNoRoute(t *testing.T) {
	client := newHost(t, 1500, "10.10.0.2", "fd10::2")
	server := newHost(t, 1500, "198.18.0.2")
	conf := `
[[interface]]
name = "lan"
tun = "lan0"
addresses = ["10.10.0.1/24", "fd10::1/64"]
[[interface]]
name = "wan"
tun = "wan0"
addresses = ["198.18.0.1/24"]
`
	testGateway(t, conf, client, server)
	ch := client.expect(icmpMatch(4, 3, 0))
	client.send(udpPacket("10.10.0.2", "203.0.113.9", 4000, 53, 64, false, []byte("x")))
	wait(t, ch, "net unreachable")
	ch6 := client.expect(icmpMatch(6, 1, 0))
	client.send(udpPacket("fd10::2", "2001:db8:9::9", 4000, 53, 64, false, []byte("x")))
	wait(t, ch6, "no route to destination")
}

func TestLocalPortUnreachable(t *testing.T) {
	client, _, g := plainGateway(t, 1500, 1500, "")
	ch := client.expect(icmpMatch(4, 3, 3))
	client.send(udpPacket("10.10.0.2", "10.10.0.1", 4000, 53, 64, false, []byte("x")))
	wait(t, ch, "port unreachable")
	ch6 := client.expect(icmpMatch(6, 1, 4))
	client.send(udpPacket("fd10::2", "fd10::1", 4000, 53, 64, false, []byte("x")))
	wait(t, ch6, "ICMPv6 port unreachable")
	if g.Counters.Local.Load() < 2 {
		t.Fatalf("local counter %d", g.Counters.Local.Load())
	}
}

func TestMalformedCounted(t *testing.T) {
	client, _, g := plainGateway(t, 1500, 1500, "")
	bad := udpPacket("10.10.0.2", "198.18.0.2", 1, 2, 64, false, []byte("abc"))
	bad[10] ^= 0xff // break the header checksum
	client.send(bad)
	client.send([]byte{0x45, 0, 0})
	client.send([]byte{0x60})
	eventually(t, 5*time.Second, "drops counted", func() bool {
		return g.Counters.Drops[DropIPChecksum].Load() == 1 && g.Counters.Drops[DropMalformed].Load() == 2
	})
}

// Fragmented datagrams are reassembled for tracking and reach the server
// in pieces no larger than they were sent in.
func TestFragmentsForwarded(t *testing.T) {
	client, server, _ := plainGateway(t, 1500, 1500, "")
	for _, c := range []struct{ src, dst string }{{"10.10.0.2", "198.18.0.2"}, {"fd10::2", "2001:db8:1::2"}} {
		ap := netip.AddrPortFrom(netip.MustParseAddr(c.dst), 6000)
		sc, err := server.Net.ListenUDPAddrPort(ap)
		if err != nil {
			t.Fatal(err)
		}
		payload := bytes.Repeat([]byte("fragment"), 300)
		whole := udpPacket(c.src, c.dst, 6001, 6000, 64, false, payload)
		var p packet.Parsed
		if err := p.Decode(whole); err != nil {
			t.Fatal(err)
		}
		out := make([][]byte, 4)
		for i := range out {
			out[i] = make([]byte, 1300)
		}
		var n int
		if p.Version == 4 {
			n, err = packet.Fragment4(&p, 1000, out)
		} else {
			n, err = packet.Fragment6(&p, 1000, 77, out)
		}
		if err != nil || n < 2 {
			t.Fatalf("fragmenting: %d %v", n, err)
		}
		big := server.expect(func(b []byte) bool { return len(b) > 1000 })
		for i := n - 1; i >= 0; i-- {
			client.send(out[i])
		}
		sc.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 4000)
		k, _, err := sc.ReadFrom(buf)
		if err != nil || !bytes.Equal(buf[:k], payload) {
			t.Fatalf("%s: server got %d bytes, %v", c.dst, k, err)
		}
		select {
		case b := <-big:
			t.Fatalf("a %d-byte packet reached the server; fragments were at most 1000", len(b))
		default:
		}
		sc.Close()
	}
}

func TestMartiansNotForwarded(t *testing.T) {
	client, server, g := plainGateway(t, 1500, 1500, "")
	leak := server.expect(func(b []byte) bool {
		var p packet.Parsed
		return p.Decode(b) == nil && p.Proto == 17 && p.DstPort == 9
	})
	for _, c := range [][2]string{
		{"127.0.0.1", "198.18.0.2"}, {"0.0.0.0", "198.18.0.2"}, {"224.0.0.5", "198.18.0.2"},
		{"255.255.255.255", "198.18.0.2"}, {"10.10.0.2", "127.0.0.1"}, {"10.10.0.2", "239.1.2.3"},
		{"10.10.0.2", "255.255.255.255"}, {"10.10.0.2", "198.18.0.255"},
		{"::1", "2001:db8:1::2"}, {"::", "2001:db8:1::2"}, {"ff02::1", "2001:db8:1::2"},
		{"fe80::2", "2001:db8:1::2"}, {"fd10::2", "ff0e::1:3"}, {"fd10::2", "fe80::9"}, {"fd10::2", "::1"},
	} {
		client.send(udpPacket(c[0], c[1], 1234, 9, 64, false, []byte("martian")))
	}
	eventually(t, 5*time.Second, "15 martian drops", func() bool { return g.Counters.Drops[DropMartian].Load() == 15 })
	select {
	case b := <-leak:
		t.Fatalf("a martian was forwarded: %x", b)
	default:
	}
}
