package conntrack

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"tungate/internal/packettest"
	"tungate/packet"
)

// pktBuilder builds well-formed IPv4/IPv6 test packets with every checksum
// right, so the table's checksum verification stays on in tests. The one
// value `build` is all tests use; its methods read like the protocol.
type pktBuilder struct{}

var build pktBuilder

// ctFamily is one address family's test addresses: a LAN client, a server
// beyond the gateway, the gateway's own outside address (the masquerade
// source), and an unrelated host.
type ctFamily struct {
	name                   string
	cli, cli2, srv, nat, x netip.Addr
}

// ctFamilies are the two families every table-driven test runs over. The
// addresses are those of the kernel reference namespaces the expected
// conntrack -L lines were taken from.
var ctFamilies = []ctFamily{
	{"ipv4", netip.MustParseAddr("10.10.0.2"), netip.MustParseAddr("10.10.0.3"), netip.MustParseAddr("198.18.0.2"), netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("203.0.113.9")},
	{"ipv6", netip.MustParseAddr("fd10::2"), netip.MustParseAddr("fd10::3"), netip.MustParseAddr("fd18::2"), netip.MustParseAddr("fd18::1"), netip.MustParseAddr("2001:db8::9")},
}

// ip is the IP layer every packet here has (IPv4 with DF set).
func ip(src, dst netip.Addr) packettest.IP {
	return packettest.IP{V6: src.Is6(), Src: src.String(), Dst: dst.String(), ID: 0x1234, DF: true}
}

// IP wraps an L4 payload in an IPv4 or IPv6 header and fills the transport
// checksum of TCP, UDP, ICMP and ICMPv6 (the checksum field must be zero).
func (pktBuilder) IP(src, dst netip.Addr, proto uint8, l4 []byte) []byte {
	off := -1
	switch {
	case proto == packet.ProtoUDP && len(l4) >= 8:
		off = 6
	case proto == packet.ProtoTCP && len(l4) >= 20:
		off = 16
	case (proto == packet.ProtoICMP || proto == packet.ProtoICMPv6) && len(l4) >= 4:
		off = 2
	}
	return packettest.Build(ip(src, dst), packettest.Bytes{Proto: proto, B: l4, CsumOff: off}, nil)
}

// UDP builds a UDP datagram with n payload bytes.
func (pktBuilder) UDP(src netip.Addr, sport uint16, dst netip.Addr, dport uint16, n int) []byte {
	payload := make([]byte, n)
	for i := range n {
		payload[i] = byte('a' + i%26)
	}
	return packettest.Build(ip(src, dst), packettest.UDP{SPort: sport, DPort: dport}, payload)
}

// TCP builds a TCP segment with the given flags and no payload.
func (pktBuilder) TCP(src netip.Addr, sport uint16, dst netip.Addr, dport uint16, flags uint8) []byte {
	return packettest.Build(ip(src, dst), packettest.TCP{SPort: sport, DPort: dport, Seq: 1000, Flags: flags, Win: 65535}, nil)
}

// ICMP builds an ICMP (IPv4) or ICMPv6 message of the source's family
// with the given type, identifier and n data bytes.
func (pktBuilder) ICMP(src, dst netip.Addr, typ, code uint8, id uint16, n int) []byte {
	return packettest.Build(ip(src, dst), packettest.ICMP{Type: typ, Code: code, Rest: uint32(id)<<16 | 1}, make([]byte, n))
}

// Echo builds an echo request (or reply) with n data bytes in the
// source's family.
func (pb pktBuilder) Echo(src, dst netip.Addr, reply bool, id uint16, n int) []byte {
	typ := map[[2]bool]uint8{{false, false}: 8, {false, true}: 0, {true, false}: 128, {true, true}: 129}[[2]bool{src.Is6(), reply}]
	return pb.ICMP(src, dst, typ, 0, id, n)
}

// Unreachable builds a destination-unreachable error from src to dst that
// quotes the first n bytes of quoted (all of it when n < 0): port
// unreachable in ICMP, port unreachable in ICMPv6.
func (pktBuilder) Unreachable(src, dst netip.Addr, quoted []byte, n int) []byte {
	if n >= 0 && n < len(quoted) {
		quoted = quoted[:n]
	}
	h := packettest.ICMP{Type: 3, Code: 3}
	if src.Is6() {
		h = packettest.ICMP{Type: 1, Code: 4}
	}
	return packettest.Build(ip(src, dst), h, quoted)
}

// GRE builds a GRE packet (protocol 0x0800) with n payload bytes; with
// hasKey the RFC 2890 key is present. Version 1 is PPTP's enhanced GRE,
// whose key holds payload length and call ID.
func (pb pktBuilder) GRE(src, dst netip.Addr, version uint8, hasKey bool, key uint32, n int) []byte {
	hl := 4
	if hasKey {
		hl = 8
	}
	l4 := make([]byte, hl+n)
	if hasKey {
		l4[0] = 0x20
	}
	l4[1] = version & 7
	binary.BigEndian.PutUint16(l4[2:], 0x0800)
	if version == 1 {
		binary.BigEndian.PutUint16(l4[2:], 0x880b)
	}
	if hasKey {
		binary.BigEndian.PutUint32(l4[4:], key)
	}
	return pb.IP(src, dst, packet.ProtoGRE, l4)
}

// ESP builds an ESP packet with the given SPI and sequence number.
func (pb pktBuilder) ESP(src, dst netip.Addr, spi, seq uint32) []byte {
	l4 := make([]byte, 24)
	binary.BigEndian.PutUint32(l4[0:], spi)
	binary.BigEndian.PutUint32(l4[4:], seq)
	return pb.IP(src, dst, packet.ProtoESP, l4)
}

// Raw builds a packet of a protocol nothing tracks specially, with n bytes.
func (pb pktBuilder) Raw(src, dst netip.Addr, proto uint8, n int) []byte {
	return pb.IP(src, dst, proto, make([]byte, n))
}

// ctHarness is a table with the helpers tests use to drive it.
type ctHarness struct {
	t     testing.TB
	tab   *Table
	p     packet.Parsed
	now   int64
	start int64
}

// newCTHarness creates a table from cfg; its clock starts at one hour so
// that times before "now" are valid too.
func newCTHarness(t testing.TB, cfg Config) *ctHarness {
	t.Helper()
	tab, err := NewTable(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &ctHarness{t: t, tab: tab, now: int64(time.Hour), start: int64(time.Hour)}
}

// advance moves the harness clock forward.
func (h *ctHarness) advance(d time.Duration) { h.now += int64(d) }

// in decodes b and tracks it at the harness clock.
func (h *ctHarness) in(b []byte) Result {
	h.t.Helper()
	if err := h.p.Decode(b); err != nil {
		h.t.Fatalf("decode: %v", err)
	}
	var r Result
	h.tab.In(&h.p, h.now, &r)
	return r
}

// pass tracks b and confirms a new connection, as the datapath does for an
// accepted packet.
func (h *ctHarness) pass(b []byte) Result {
	h.t.Helper()
	r := h.in(b)
	if r.Conn != nil && !r.Conn.Confirmed() {
		if err := h.tab.Confirm(r.Conn, h.now); err != nil {
			h.t.Fatalf("confirm: %v", err)
		}
	}
	return r
}

// masquerade sets a new connection's reply tuple as SNAT to addr would.
func (h *ctHarness) masquerade(r Result, addr netip.Addr) {
	h.t.Helper()
	if r.Conn == nil || r.Info != New {
		h.t.Fatalf("masquerade: not a NEW connection: %+v", r)
	}
	rt := *r.Conn.Tuple(DirReply)
	rt.Dst = packet.AddrFrom(addr)
	r.Conn.SetReplyTuple(rt)
}

// passNAT tracks b as the first packet of a connection masqueraded to the
// family's outside address and confirms it.
func (h *ctHarness) passNAT(b []byte, nat netip.Addr) Result {
	h.t.Helper()
	r := h.in(b)
	h.masquerade(r, nat)
	if err := h.tab.Confirm(r.Conn, h.now); err != nil {
		h.t.Fatalf("confirm: %v", err)
	}
	return r
}

// line returns the connection's conntrack -L line at the harness clock.
func (h *ctHarness) line(c *Conn) string { return string(h.tab.AppendConn(nil, c, h.now)) }

// tupleOf returns the original tuple of a packet as the table sees it.
func tupleOf(t testing.TB, tab *Table, b []byte) Tuple {
	t.Helper()
	var p packet.Parsed
	if err := p.Decode(b); err != nil {
		t.Fatal(err)
	}
	var tu Tuple
	tupleAddrs(&p, &tu)
	if !tab.Tracker(p.Proto).Tuple(&p, &tu) {
		t.Fatal("no tuple")
	}
	return tu
}

// wantInfo fails unless r has the given ctinfo.
func wantInfo(t testing.TB, what string, r Result, want Info) {
	t.Helper()
	if r.Info != want {
		t.Fatalf("%s: info %v, want %v", what, r.Info, want)
	}
}
