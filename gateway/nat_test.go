package gateway

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"tungate/conntrack"
	"tungate/internal/packettest"
	"tungate/packet"
)

const natRules = `
[[route]]
to = "10.10.0.0/24"
interface = "lan"

[[nat.dnat]]
proto = "tcp"
dport = 8080
to = "10.10.0.3:80"

[filter.forward]
policy = "drop"
rules = [
  { ct_state = ["established", "related"], action = "accept" },
  { ct_state = ["invalid"], action = "drop" },
  { in = "lan", ct_state = ["new"], action = "accept" },
  { in = "wan", ct_status = ["dnat"], action = "accept" },
]
`

// natGateway: a client host on lan (10.10.0.2 and 10.10.0.3, fd10::2), a
// server host on wan (198.18.0.2, 198.18.0.3, 2001:db8:1::2), masquerade
// out of wan with the given extra masquerade keys.
func natGateway(t *testing.T, masq string) (client, server *host, g *Gateway) {
	client = newHost(t, 1500, "10.10.0.2", "10.10.0.3", "fd10::2")
	server = newHost(t, 1500, "198.18.0.2", "198.18.0.3", "2001:db8:1::2")
	conf := linksConf + "[[nat.masquerade]]\nout = \"wan\"\n" + masq + natRules
	g = testGateway(t, conf, client, server)
	return client, server, g
}

// peerServer accepts TCP connections and writes the peer address it sees.
func peerServer(t *testing.T, h *host, at string) {
	t.Helper()
	ln, err := h.Net.ListenTCPAddrPort(netip.MustParseAddrPort(at))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			io.WriteString(c, c.RemoteAddr().String()+"\n")
			c.Close()
		}
	}()
}

func askPeer(t *testing.T, h *host, dst string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := h.Net.DialContextTCPAddrPort(ctx, netip.MustParseAddrPort(dst))
	if err != nil {
		t.Fatalf("dial %s: %v", dst, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read from %s: %v", dst, err)
	}
	return strings.TrimSpace(string(b))
}

func TestMasqueradeTCP(t *testing.T) {
	client, server, g := natGateway(t, "")
	peerServer(t, server, "198.18.0.2:80")
	peerServer(t, server, "[2001:db8:1::2]:80")
	if got := askPeer(t, client, "198.18.0.2:80"); !strings.HasPrefix(got, "198.18.0.1:") {
		t.Fatalf("server saw %s, want the gateway's address", got)
	}
	if got := askPeer(t, client, "[2001:db8:1::2]:80"); !strings.HasPrefix(got, "[2001:db8:1::1]:") {
		t.Fatalf("server saw %s over IPv6, want the gateway's address", got)
	}
	// The big transfer works through NAT too, and ct list shows it.
	transfer(t, client, server, netip.MustParseAddrPort("198.18.0.2:9000"), 1<<20)
	var lines []string
	eventually(t, 5*time.Second, "ct entries", func() bool {
		lines = ctLines(g)
		for _, l := range lines {
			if strings.Contains(l, "dport=9000") && strings.Contains(l, "dst=198.18.0.1") {
				return true
			}
		}
		return false
	})
}

func ctLines(g *Gateway) []string {
	var b []byte
	now := g.ct.Now()
	var out []string
	g.ct.Range(func(c *conntrack.Conn) bool {
		b = g.ct.AppendConn(b[:0], c, now)
		out = append(out, string(b))
		return true
	})
	return out
}

func TestMasqueradePingAndUDP(t *testing.T) {
	client, server, _ := natGateway(t, "")
	ping(t, client, "10.10.0.2", "198.18.0.2")
	ping(t, client, "fd10::2", "2001:db8:1::2")
	sc, err := server.Net.ListenUDPAddrPort(netip.MustParseAddrPort("198.18.0.2:5353"))
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	go func() {
		buf := make([]byte, 1500)
		for {
			_, from, err := sc.ReadFrom(buf)
			if err != nil {
				return
			}
			sc.WriteTo([]byte(from.String()), from)
		}
	}()
	cc, err := client.Net.DialUDPAddrPort(netip.AddrPort{}, netip.MustParseAddrPort("198.18.0.2:5353"))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	cc.Write([]byte("who am i"))
	cc.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 100)
	n, err := cc.Read(buf)
	if err != nil || !strings.HasPrefix(string(buf[:n]), "198.18.0.1:") {
		t.Fatalf("UDP reply %q %v", buf[:n], err)
	}
}

// RFC 4787 REQ-1: one internal endpoint keeps its external port for every
// destination.
func TestEndpointIndependentMapping(t *testing.T) {
	client, server, _ := natGateway(t, "")
	seen := make(chan string, 2)
	for _, a := range []string{"198.18.0.2:3478", "198.18.0.3:3478"} {
		sc, err := server.Net.ListenUDPAddrPort(netip.MustParseAddrPort(a))
		if err != nil {
			t.Fatal(err)
		}
		defer sc.Close()
		go func() {
			buf := make([]byte, 100)
			_, from, err := sc.ReadFrom(buf)
			if err == nil {
				seen <- from.String()
			}
		}()
	}
	cc, err := client.Net.ListenUDPAddrPort(netip.MustParseAddrPort("10.10.0.2:7000"))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	for _, a := range []string{"198.18.0.2:3478", "198.18.0.3:3478"} {
		if _, err := cc.WriteTo([]byte("stun"), net.UDPAddrFromAddrPort(netip.MustParseAddrPort(a))); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	for range 2 {
		select {
		case s := <-seen:
			got = append(got, s)
		case <-time.After(5 * time.Second):
			t.Fatalf("server saw only %v", got)
		}
	}
	if got[0] != got[1] || got[0] != "198.18.0.1:7000" {
		t.Fatalf("mappings %v, want the same preserved port 198.18.0.1:7000 for both", got)
	}
}

// fullCone reports whether a third party's datagram to the client's
// mapping reaches the client.
func fullCone(t *testing.T, masq string) bool {
	client, server, _ := natGateway(t, masq)
	cc, err := client.Net.ListenUDPAddrPort(netip.MustParseAddrPort("10.10.0.2:7001"))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	sc, err := server.Net.ListenUDPAddrPort(netip.MustParseAddrPort("198.18.0.2:3478"))
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	cc.WriteTo([]byte("hello"), net.UDPAddrFromAddrPort(netip.MustParseAddrPort("198.18.0.2:3478")))
	buf := make([]byte, 100)
	sc.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, from, err := sc.ReadFrom(buf)
	if err != nil {
		t.Fatalf("server: %v", err)
	}
	third, err := server.Net.ListenUDPAddrPort(netip.MustParseAddrPort("198.18.0.3:5000"))
	if err != nil {
		t.Fatal(err)
	}
	defer third.Close()
	third.WriteTo([]byte("stranger"), from)
	// The verdict for this datagram is known once a later, certainly
	// admitted datagram (a reply from the contacted server) has arrived:
	// the gateway handles one link's packets in order.
	sc.WriteTo([]byte("reply"), from)
	got := map[string]bool{}
	cc.SetReadDeadline(time.Now().Add(5 * time.Second))
	for !got["reply"] {
		n, _, err := cc.ReadFrom(buf)
		if err != nil {
			t.Fatalf("client: %v (got %v)", err, got)
		}
		got[string(buf[:n])] = true
	}
	return got["stranger"]
}

func TestFilteringBehaviour(t *testing.T) {
	if fullCone(t, "") {
		t.Fatal("address-port-dependent filtering (default) admitted a third party")
	}
	if !fullCone(t, "filtering = \"endpoint-independent\"\n") {
		t.Fatal("endpoint-independent filtering did not admit a third party")
	}
}

func TestPortForwardAndHairpin(t *testing.T) {
	client, server, _ := natGateway(t, "")
	peerServer(t, client, "10.10.0.3:80")
	// From the WAN: the LAN server sees the real client address.
	if got := askPeer(t, server, "198.18.0.1:8080"); !strings.HasPrefix(got, "198.18.0.2:") {
		t.Fatalf("LAN server saw %s, want the real client 198.18.0.2", got)
	}
	// Hairpin from the LAN: the source is the client's external mapping.
	if got := askPeer(t, client, "198.18.0.1:8080"); !strings.HasPrefix(got, "198.18.0.1:") {
		t.Fatalf("hairpinned LAN server saw %s, want the gateway's external address", got)
	}
}

// A UDP datagram to a closed port on the server comes back as a translated
// port unreachable that the client's socket reports as refused.
func TestTranslatedPortUnreachable(t *testing.T) {
	client, _, _ := natGateway(t, "")
	cc, err := client.Net.DialUDPAddrPort(netip.AddrPort{}, netip.MustParseAddrPort("198.18.0.2:9999"))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	buf := make([]byte, 100)
	refused := func(err error) bool {
		return errors.Is(err, syscall.ECONNREFUSED) || (err != nil && strings.Contains(err.Error(), "refused"))
	}
	// gVisor, like Linux, reports the pending error on the next send or
	// receive, whichever comes first; the receive is not woken by it.
	for try := 0; try < 5; try++ {
		if _, err = cc.Write([]byte("anyone?")); refused(err) {
			return
		}
		cc.SetReadDeadline(time.Now().Add(time.Second))
		if _, err = cc.Read(buf); refused(err) {
			return
		}
	}
	t.Fatalf("want connection refused, got %v", err)
}

// sctpInit builds an SCTP INIT (IPv4) with a valid CRC32c.
func sctpInit(src, dst string, sport, dport uint16, tag uint32) []byte {
	chunk := make([]byte, 20)
	chunk[0] = packet.SCTPChunkInit
	binary.BigEndian.PutUint16(chunk[2:], 20)
	binary.BigEndian.PutUint32(chunk[4:], tag)     // initiate tag
	binary.BigEndian.PutUint32(chunk[8:], 65536)   // a_rwnd
	binary.BigEndian.PutUint16(chunk[12:], 1)      // outbound streams
	binary.BigEndian.PutUint16(chunk[14:], 1)      // inbound streams
	binary.BigEndian.PutUint32(chunk[16:], tag+99) // initial TSN
	l4 := make([]byte, 12, 12+len(chunk))
	binary.BigEndian.PutUint16(l4[0:], sport)
	binary.BigEndian.PutUint16(l4[2:], dport)
	l4 = append(l4, chunk...)
	binary.LittleEndian.PutUint32(l4[8:], packet.SCTPChecksum(l4))
	return packettest.Build(packettest.IP{Src: src, Dst: dst}, packettest.Raw{Proto: packet.ProtoSCTP, B: l4}, nil)
}

// Two LAN hosts using the same SCTP port towards one server get distinct
// external ports, with valid CRC32c, as Linux's SCTP NAT does.
func TestMasqueradeSCTPPorts(t *testing.T) {
	client, server, _ := natGateway(t, "")
	seen := make(chan []byte, 2)
	n := 0
	server.expect(func(b []byte) bool {
		if len(b) > 20 && b[9] == packet.ProtoSCTP {
			seen <- append([]byte(nil), b...)
			n++
		}
		return n == 2
	})
	client.send(sctpInit("10.10.0.2", "198.18.0.2", 5000, 7000, 11))
	client.send(sctpInit("10.10.0.3", "198.18.0.2", 5000, 7000, 22))
	var ports []uint16
	for range 2 {
		b := wait(t, seen, "SCTP INIT at the server")
		var p packet.Parsed
		if err := p.Decode(b); err != nil || !p.L4ChecksumValid() || p.SrcIP().String() != "198.18.0.1" {
			t.Fatalf("forwarded INIT: %v crc ok %v src %v", err, p.L4ChecksumValid(), p.SrcIP())
		}
		ports = append(ports, p.SrcPort)
	}
	if ports[0] == ports[1] {
		t.Fatalf("both associations got external port %d", ports[0])
	}
}
