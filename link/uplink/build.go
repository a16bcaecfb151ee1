package uplink

import (
	"encoding/binary"
	"net/netip"
	"sync"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// outPkt is one packet for Read: built in b, or one of the TCP stack's
// packets (pkt, a reference the packet holds until Read has copied it).
// Two pools by size keep a flood of small datagrams from pinning 64 KiB
// buffers each.
type outPkt struct {
	b   []byte
	pkt *stack.PacketBuffer
}

const smallPkt = 2048

var (
	smallPool = sync.Pool{New: func() any { return &outPkt{b: make([]byte, 0, smallPkt)} }}
	bigPool   = sync.Pool{New: func() any { return &outPkt{b: make([]byte, 0, 1<<16)} }}
)

func getPkt(n int) *outPkt {
	var p *outPkt
	if n <= smallPkt {
		p = smallPool.Get().(*outPkt)
	} else {
		p = bigPool.Get().(*outPkt)
	}
	p.b = p.b[:n]
	return p
}

func putPkt(p *outPkt) {
	if p.pkt != nil {
		p.pkt.DecRef()
		p.pkt = nil
	}
	if cap(p.b) <= smallPkt {
		smallPool.Put(p)
	} else {
		bigPool.Put(p)
	}
}

func tcpipAddr(a netip.Addr) tcpip.Address {
	if a.Is4() {
		return tcpip.AddrFrom4(a.As4())
	}
	return tcpip.AddrFrom16(a.As16())
}

// ipHeaderLen is the header the uplink writes for a family: no options,
// no extension headers.
func ipHeaderLen(v6 bool) int {
	if v6 {
		return header.IPv6MinimumSize
	}
	return header.IPv4MinimumSize
}

// writeIPHeader writes an IP header for a transport payload of plen bytes
// into b and returns its length.
func writeIPHeader(b []byte, src, dst netip.Addr, proto tcpip.TransportProtocolNumber, plen int) int {
	if src.Is4() {
		ip := header.IPv4(b)
		ip.Encode(&header.IPv4Fields{
			TotalLength: uint16(header.IPv4MinimumSize + plen),
			TTL:         64,
			Protocol:    uint8(proto),
			SrcAddr:     tcpip.AddrFrom4(src.As4()),
			DstAddr:     tcpip.AddrFrom4(dst.As4()),
		})
		ip.SetChecksum(^ip.CalculateChecksum())
		return header.IPv4MinimumSize
	}
	header.IPv6(b).Encode(&header.IPv6Fields{
		PayloadLength:     uint16(plen),
		TransportProtocol: proto,
		HopLimit:          64,
		SrcAddr:           tcpip.AddrFrom16(src.As16()),
		DstAddr:           tcpip.AddrFrom16(dst.As16()),
	})
	return header.IPv6MinimumSize
}

// buildUDP writes the IP/UDP packet src→dst carrying the payload already at
// b[hl+8:hl+8+n] (hl from ipHeaderLen) and returns its length.
func buildUDP(b []byte, src, dst netip.AddrPort, n int) int {
	hl := writeIPHeader(b, src.Addr(), dst.Addr(), header.UDPProtocolNumber, header.UDPMinimumSize+n)
	u := header.UDP(b[hl:])
	u.Encode(&header.UDPFields{SrcPort: src.Port(), DstPort: dst.Port(), Length: uint16(header.UDPMinimumSize + n)})
	x := header.PseudoHeaderChecksum(header.UDPProtocolNumber, tcpipAddr(src.Addr()), tcpipAddr(dst.Addr()), uint16(header.UDPMinimumSize+n))
	x = checksum.Checksum(b[hl+header.UDPMinimumSize:hl+header.UDPMinimumSize+n], x)
	sum := ^u.CalculateChecksum(x)
	if sum == 0 {
		sum = 0xffff // RFC 768: zero means "no checksum"
	}
	u.SetChecksum(sum)
	return hl + header.UDPMinimumSize + n
}

// finishICMP fills the checksum of the ICMP message b[hl:] of an IPv4 or
// IPv6 packet b whose header is written.
func finishICMP(b []byte, hl int, src, dst netip.Addr) {
	m := b[hl:]
	m[2], m[3] = 0, 0
	var x uint16
	if src.Is6() {
		x = header.PseudoHeaderChecksum(header.ICMPv6ProtocolNumber, tcpipAddr(src), tcpipAddr(dst), uint16(len(m)))
	}
	binary.BigEndian.PutUint16(m[2:], ^checksum.Checksum(m, x))
}

// Largest ICMP errors: RFC 1812 4.3.2.3 (576) and RFC 4443 2.4(c) (1280).
const (
	maxICMPError4 = 576
	maxICMPError6 = 1280
)

// buildICMPError writes into b an ICMP error from src about orig, an IP
// packet the container sent from origSrc, and returns its length (0 when b
// has no room). It differs from packet.BuildICMPError in one point: the
// source may be the host's loopback, which is where a refused loopback
// datagram's error comes from. Callers pass only packets that may be
// answered (not ICMP errors, not fragments, from the container's unicast
// address).
func buildICMPError(b []byte, orig []byte, src, origSrc netip.Addr, typ, code uint8, param uint32) int {
	hl := ipHeaderLen(src.Is6())
	limit := maxICMPError4
	if src.Is6() {
		limit = maxICMPError6
	}
	room := min(len(b), limit) - hl - header.ICMPv4MinimumSize
	if room < 28 {
		return 0
	}
	q := min(len(orig), room)
	copy(b[hl+8:], orig[:q])
	proto := header.ICMPv4ProtocolNumber
	if src.Is6() {
		proto = header.ICMPv6ProtocolNumber
	}
	writeIPHeader(b, src, origSrc, proto, 8+q)
	m := b[hl:]
	m[0], m[1] = typ, code
	binary.BigEndian.PutUint32(m[4:], param)
	finishICMP(b[:hl+8+q], hl, src, origSrc)
	return hl + 8 + q
}
