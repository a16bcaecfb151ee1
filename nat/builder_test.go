package nat

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"

	"tungate/internal/packettest"
	"tungate/packet"
)

// pkt describes a packet to build. The builder is independent of the
// packet package's setters so a bug there cannot hide in both.
type pkt struct {
	proto    uint8
	src, dst netip.AddrPort // ports for TCP/UDP
	flags    uint8          // TCP
	seq, ack uint32         // TCP
	typ      uint8          // ICMP type
	code     uint8          // ICMP code
	id       uint16         // ICMP echo identifier
	payload  []byte
	noUDPSum bool // UDP/IPv4 without checksum
	quote    []byte
	ttl      uint8
}

func ap(s string) netip.AddrPort {
	if a, err := netip.ParseAddrPort(s); err == nil {
		return a
	}
	return netip.AddrPortFrom(netip.MustParseAddr(s), 0)
}

func tcp(src, dst string, flags uint8, seq, ack uint32) pkt {
	return pkt{proto: packet.ProtoTCP, src: ap(src), dst: ap(dst), flags: flags, seq: seq, ack: ack}
}

func udp(src, dst string, payload string) pkt {
	return pkt{proto: packet.ProtoUDP, src: ap(src), dst: ap(dst), payload: []byte(payload)}
}

// echo builds an echo request (reply=false) or reply of the right family.
func echo(src, dst string, id uint16, reply bool) pkt {
	p := pkt{src: ap(src), dst: ap(dst), id: id, payload: []byte("pingpong")}
	if p.src.Addr().Is4() {
		p.proto, p.typ = packet.ProtoICMP, 8
		if reply {
			p.typ = 0
		}
	} else {
		p.proto, p.typ = packet.ProtoICMPv6, 128
		if reply {
			p.typ = 129
		}
	}
	return p
}

// icmpErr builds an ICMP error from src to dst quoting q (destination
// unreachable, port unreachable / ICMPv6 port unreachable).
func icmpErr(src, dst string, q []byte) pkt {
	p := pkt{src: ap(src), dst: ap(dst), quote: q}
	if p.src.Addr().Is4() {
		p.proto, p.typ, p.code = packet.ProtoICMP, 3, 3
	} else {
		p.proto, p.typ, p.code = packet.ProtoICMPv6, 1, 4
	}
	return p
}

func sum(b []byte, init uint16) uint16 { return checksum.Checksum(b, init) }

func pseudo(src, dst netip.Addr, proto uint8, n int) uint16 {
	s := sum(src.AsSlice(), 0)
	s = sum(dst.AsSlice(), s)
	var x [4]byte
	x[1] = proto
	binary.BigEndian.PutUint16(x[2:], uint16(n))
	return sum(x[:], s)
}

// bytes builds p through the shared test builder (internal/packettest).
func (p pkt) bytes() []byte {
	src, dst := p.src.Addr(), p.dst.Addr()
	ip := packettest.IP{V6: src.Is6(), Src: src.String(), Dst: dst.String(), ID: 0x1234, DF: true, TTL: p.ttl, Proto: p.proto}
	var l4 packettest.L4
	body := p.payload
	switch p.proto {
	case packet.ProtoTCP:
		l4 = packettest.TCP{SPort: p.src.Port(), DPort: p.dst.Port(), Seq: p.seq, Ack: p.ack, Flags: p.flags, Win: 65535}
	case packet.ProtoUDP:
		l4 = packettest.UDP{SPort: p.src.Port(), DPort: p.dst.Port(), NoCsum: p.noUDPSum}
	case packet.ProtoICMP, packet.ProtoICMPv6:
		h := packettest.ICMP{Type: p.typ, Code: p.code, Rest: uint32(p.id)<<16 | 1}
		if p.quote != nil {
			h.Rest, body = 0, p.quote
		}
		l4 = h
	default:
		l4 = packettest.Raw{Proto: p.proto}
	}
	return packettest.Build(ip, l4, body)
}

// view is what a checker reads back from a packet.
type view struct {
	fam      uint8
	proto    uint8
	src, dst netip.AddrPort // port: TCP/UDP port or echo id
	typ      uint8
	l4sum    uint16
}

// verify recomputes every checksum of b from scratch (IPv4 header,
// transport, and for ICMP errors the quoted packet's IPv4 header and, when
// quoted whole, its transport checksum) and returns its addresses.
func verify(t testing.TB, b []byte) view {
	t.Helper()
	v, err := verifyErr(b, false)
	if err != nil {
		t.Fatalf("%v\n% x", err, b)
	}
	return v
}

func verifyErr(b []byte, quoted bool) (view, error) {
	var v view
	var l4 []byte
	var src, dst netip.Addr
	switch b[0] >> 4 {
	case 4:
		ihl := int(b[0]&0xf) * 4
		if s := sum(b[:ihl], 0); s != 0xffff {
			return v, fmt.Errorf("IPv4 header checksum wrong (sum %#x)", s)
		}
		tot := int(binary.BigEndian.Uint16(b[2:]))
		if tot > len(b) {
			if !quoted {
				return v, fmt.Errorf("truncated")
			}
			tot = len(b)
		}
		v.fam, v.proto = 4, b[9]
		src, dst = netip.AddrFrom4([4]byte(b[12:16])), netip.AddrFrom4([4]byte(b[16:20]))
		l4 = b[ihl:tot]
		if quoted && int(binary.BigEndian.Uint16(b[2:])) > len(b) {
			// A cut quote: only ports can be read.
			return v.ports(l4, src, dst, false), nil
		}
	case 6:
		v.fam, v.proto = 6, b[6]
		src, dst = netip.AddrFrom16([16]byte(b[8:24])), netip.AddrFrom16([16]byte(b[24:40]))
		n := 40 + int(binary.BigEndian.Uint16(b[4:]))
		if n > len(b) {
			if !quoted {
				return v, fmt.Errorf("truncated")
			}
			return v.ports(b[40:], src, dst, false), nil
		}
		l4 = b[40:n]
	default:
		return v, fmt.Errorf("bad version")
	}
	switch v.proto {
	case packet.ProtoTCP:
		if s := sum(l4, pseudo(src, dst, v.proto, len(l4))); s != 0xffff {
			return v, fmt.Errorf("TCP checksum wrong (sum %#x)", s)
		}
	case packet.ProtoUDP:
		if !(v.fam == 4 && binary.BigEndian.Uint16(l4[6:]) == 0) {
			if s := sum(l4, pseudo(src, dst, v.proto, len(l4))); s != 0xffff {
				return v, fmt.Errorf("UDP checksum wrong (sum %#x)", s)
			}
		}
	case packet.ProtoICMP:
		if s := sum(l4, 0); s != 0xffff {
			return v, fmt.Errorf("ICMP checksum wrong (sum %#x)", s)
		}
	case packet.ProtoICMPv6:
		if s := sum(l4, pseudo(src, dst, v.proto, len(l4))); s != 0xffff {
			return v, fmt.Errorf("ICMPv6 checksum wrong (sum %#x)", s)
		}
	}
	v = v.ports(l4, src, dst, true)
	if (v.proto == packet.ProtoICMP && v.typ != 0 && v.typ != 8) || (v.proto == packet.ProtoICMPv6 && v.typ < 128) {
		if _, err := verifyErr(l4[8:], true); err != nil {
			return v, fmt.Errorf("quoted packet: %w", err)
		}
	}
	return v, nil
}

func (v view) ports(l4 []byte, src, dst netip.Addr, whole bool) view {
	var sp, dp uint16
	switch v.proto {
	case packet.ProtoTCP, packet.ProtoUDP:
		sp, dp = binary.BigEndian.Uint16(l4), binary.BigEndian.Uint16(l4[2:])
		if v.proto == packet.ProtoUDP && len(l4) >= 8 {
			v.l4sum = binary.BigEndian.Uint16(l4[6:])
		}
		if v.proto == packet.ProtoTCP && len(l4) >= 18 {
			v.l4sum = binary.BigEndian.Uint16(l4[16:])
		}
	case packet.ProtoICMP, packet.ProtoICMPv6:
		v.typ = l4[0]
		if len(l4) >= 8 && (v.typ == 0 || v.typ == 8 || v.typ == 128 || v.typ == 129) {
			sp = binary.BigEndian.Uint16(l4[4:])
			dp = sp
		}
		v.l4sum = binary.BigEndian.Uint16(l4[2:])
	}
	v.src, v.dst = netip.AddrPortFrom(src, sp), netip.AddrPortFrom(dst, dp)
	return v
}

// quoteOf returns the packet an ICMP error quotes.
func quoteOf(t testing.TB, b []byte) []byte {
	t.Helper()
	var p packet.Parsed
	if err := p.Decode(b); err != nil {
		t.Fatal(err)
	}
	return p.ICMPQuote()
}

// expect checks a view's addresses.
func expectAddrs(t testing.TB, what string, v view, src, dst string) {
	t.Helper()
	if v.src != ap(src) || v.dst != ap(dst) {
		t.Fatalf("%s: got %v -> %v, want %s -> %s", what, v.src, v.dst, src, dst)
	}
}

func TestBuilderChecksums(t *testing.T) {
	for _, p := range []pkt{
		tcp("10.0.0.1:1", "10.0.0.2:2", packet.TCPSyn, 1, 0),
		udp("[fd00::1]:1", "[fd00::2]:2", "x"),
		echo("10.0.0.1", "10.0.0.2", 7, false),
		echo("fd00::1", "fd00::2", 7, true),
		icmpErr("10.0.0.9", "10.0.0.1", udp("10.0.0.1:5", "10.0.0.2:6", "hello").bytes()),
	} {
		b := p.bytes()
		var d packet.Parsed
		if err := d.Decode(b); err != nil {
			t.Fatal(err)
		}
		if !d.L4ChecksumValid() {
			t.Fatalf("builder made a bad checksum: % x", b)
		}
		verify(t, b)
	}
}
