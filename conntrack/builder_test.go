package conntrack

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"

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

// IP wraps an L4 payload in an IPv4 or IPv6 header and fills the transport
// checksum of TCP, UDP, ICMP and ICMPv6 (the checksum field must be zero).
func (pktBuilder) IP(src, dst netip.Addr, proto uint8, l4 []byte) []byte {
	var b []byte
	if src.Is4() {
		b = make([]byte, 20+len(l4))
		b[0] = 0x45
		binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
		binary.BigEndian.PutUint16(b[4:], 0x1234)
		b[6] = 0x40 // DF
		b[8] = 64
		b[9] = proto
		s, d := src.As4(), dst.As4()
		copy(b[12:], s[:])
		copy(b[16:], d[:])
		binary.BigEndian.PutUint16(b[10:], ^checksum.Checksum(b[:20], 0))
		copy(b[20:], l4)
	} else {
		b = make([]byte, 40+len(l4))
		b[0] = 0x60
		binary.BigEndian.PutUint16(b[4:], uint16(len(l4)))
		b[6] = proto
		b[7] = 64
		s, d := src.As16(), dst.As16()
		copy(b[8:], s[:])
		copy(b[24:], d[:])
		copy(b[40:], l4)
	}
	off := len(b) - len(l4)
	l := b[off:]
	pseudo := func() uint16 {
		s := checksum.Checksum(src.AsSlice(), 0)
		s = checksum.Checksum(dst.AsSlice(), s)
		return checksum.Combine(s, checksum.Combine(uint16(proto), uint16(len(l))))
	}
	switch {
	case proto == packet.ProtoUDP && len(l) >= 8:
		c := ^checksum.Checksum(l, pseudo())
		if c == 0 {
			c = 0xffff
		}
		binary.BigEndian.PutUint16(l[6:], c)
	case proto == packet.ProtoTCP && len(l) >= 20:
		binary.BigEndian.PutUint16(l[16:], ^checksum.Checksum(l, pseudo()))
	case proto == packet.ProtoICMP && len(l) >= 4:
		binary.BigEndian.PutUint16(l[2:], ^checksum.Checksum(l, 0))
	case proto == packet.ProtoICMPv6 && len(l) >= 4:
		binary.BigEndian.PutUint16(l[2:], ^checksum.Checksum(l, pseudo()))
	}
	return b
}

// UDP builds a UDP datagram with n payload bytes.
func (pb pktBuilder) UDP(src netip.Addr, sport uint16, dst netip.Addr, dport uint16, n int) []byte {
	l4 := make([]byte, 8+n)
	binary.BigEndian.PutUint16(l4[0:], sport)
	binary.BigEndian.PutUint16(l4[2:], dport)
	binary.BigEndian.PutUint16(l4[4:], uint16(len(l4)))
	for i := range n {
		l4[8+i] = byte('a' + i%26)
	}
	return pb.IP(src, dst, packet.ProtoUDP, l4)
}

// TCP builds a TCP segment with the given flags and no payload.
func (pb pktBuilder) TCP(src netip.Addr, sport uint16, dst netip.Addr, dport uint16, flags uint8) []byte {
	l4 := make([]byte, 20)
	binary.BigEndian.PutUint16(l4[0:], sport)
	binary.BigEndian.PutUint16(l4[2:], dport)
	binary.BigEndian.PutUint32(l4[4:], 1000)
	l4[12] = 5 << 4
	l4[13] = flags
	binary.BigEndian.PutUint16(l4[14:], 65535)
	return pb.IP(src, dst, packet.ProtoTCP, l4)
}

// ICMP builds an ICMP (IPv4) or ICMPv6 message of the source's family
// with the given type, identifier and n data bytes.
func (pb pktBuilder) ICMP(src, dst netip.Addr, typ, code uint8, id uint16, n int) []byte {
	l4 := make([]byte, 8+n)
	l4[0], l4[1] = typ, code
	binary.BigEndian.PutUint16(l4[4:], id)
	binary.BigEndian.PutUint16(l4[6:], 1)
	proto := uint8(packet.ProtoICMP)
	if src.Is6() {
		proto = packet.ProtoICMPv6
	}
	return pb.IP(src, dst, proto, l4)
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
func (pb pktBuilder) Unreachable(src, dst netip.Addr, quoted []byte, n int) []byte {
	if n >= 0 && n < len(quoted) {
		quoted = quoted[:n]
	}
	l4 := make([]byte, 8+len(quoted))
	proto := uint8(packet.ProtoICMP)
	l4[0], l4[1] = 3, 3
	if src.Is6() {
		proto = packet.ProtoICMPv6
		l4[0], l4[1] = 1, 4
	}
	copy(l4[8:], quoted)
	return pb.IP(src, dst, proto, l4)
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
