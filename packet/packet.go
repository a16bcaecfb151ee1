// Package packet is a zero-copy parsed view of one IPv4 or IPv6 packet.
//
// A Parsed is filled by Decode from a byte slice it keeps pointing into:
// offsets are computed once, accessors read the bytes, and setters rewrite
// them in place while fixing every checksum that covers the changed field
// (RFC 1624 incremental update), the way gVisor's header views do. Nothing
// here allocates; callers keep one Parsed per goroutine and reuse it.
//
// The packets the gateway originates are written into caller buffers by
// BuildICMPError, BuildTCPReset and MakeEchoReply; Fragment4 and
// Reassembler cut and join fragments; ReplacePayload makes the
// length-changing edits ALGs need.
package packet

import (
	"encoding/binary"
	"errors"
	"net/netip"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// Protocol numbers used throughout tungate.
const (
	ProtoICMP   = 1
	ProtoTCP    = 6
	ProtoUDP    = 17
	ProtoGRE    = 47
	ProtoESP    = 50
	ProtoAH     = 51
	ProtoICMPv6 = 58
	ProtoSCTP   = 132
)

// TCP flag bits as they appear in the 14th byte of the TCP header.
const (
	TCPFin = 1 << 0
	TCPSyn = 1 << 1
	TCPRst = 1 << 2
	TCPPsh = 1 << 3
	TCPAck = 1 << 4
	TCPUrg = 1 << 5
	TCPEce = 1 << 6
	TCPCwr = 1 << 7
)

// Errors returned by Decode. They are sentinel values so the datapath can
// count drops by reason without string work.
var (
	ErrTruncated  = errors.New("packet: truncated")
	ErrVersion    = errors.New("packet: not IPv4 or IPv6")
	ErrIPHeader   = errors.New("packet: malformed IP header")
	ErrIPChecksum = errors.New("packet: bad IPv4 header checksum")
	ErrExtHeader  = errors.New("packet: malformed IPv6 extension header")
	ErrL4Header   = errors.New("packet: malformed transport header")
)

// Addr is an IP address as raw bytes: IPv4 in the first four bytes and zeros
// after, IPv6 in all sixteen. It is comparable and cheap to copy, which is
// what flow keys want (see conntrack.Tuple).
type Addr [16]byte

// AddrFrom converts a netip.Addr (IPv4, IPv4-mapped or IPv6) to an Addr.
func AddrFrom(a netip.Addr) Addr {
	var r Addr
	if a.Is4() || a.Is4In6() {
		v := a.Unmap().As4()
		copy(r[:], v[:])
		return r
	}
	return Addr(a.As16())
}

// NetIP returns the address as a netip.Addr of the given IP version.
func (a Addr) NetIP(version uint8) netip.Addr {
	if version == 4 {
		return netip.AddrFrom4([4]byte(a[:4]))
	}
	return netip.AddrFrom16(a)
}

// Parsed is the decoded view of one packet. Fields are valid after a
// successful Decode until the buffer is reused.
type Parsed struct {
	b []byte // the IP packet, trimmed to the length its header gives

	// Version is 4 or 6.
	Version uint8
	// Proto is the transport protocol: the IPv4 protocol field, or the IPv6
	// next header after the extension headers are walked.
	Proto uint8
	// TCPFlags holds the TCP flags byte (TCP only).
	TCPFlags uint8
	// ICMPType and ICMPCode are set for ICMP and ICMPv6.
	ICMPType, ICMPCode uint8
	// HasL4 is true when the transport header is present: false for
	// non-first fragments and for protocols whose header is not parsed.
	HasL4 bool
	// Fragment is true for any fragment (first, middle or last).
	Fragment bool
	// MoreFragments is the MF flag (IPv4) or M flag (IPv6).
	MoreFragments bool

	// L4Off is the offset of the transport header in Bytes().
	L4Off int
	// FragOff is the fragment offset in bytes.
	FragOff int
	// FragID is the IPv4 identification or the IPv6 fragment identification.
	FragID uint32
	// fragHdrOff is the offset of the IPv6 fragment header (0: none).
	fragHdrOff int

	// Src and Dst are the IP addresses.
	Src, Dst Addr
	// SrcPort and DstPort are the TCP/UDP/SCTP ports. For ICMP echo both
	// hold the identifier. For ESP they hold the two halves of the SPI, for
	// GRE the key (zero when absent).
	SrcPort, DstPort uint16

	// ChecksumGood may be set by the caller after Decode when the transport
	// checksum is known to be right without looking: wireguard-go's TUN
	// computes it itself for every segment it splits from a GSO frame.
	// L4ChecksumValid then skips the sum.
	ChecksumGood bool
}

// Bytes returns the packet, trimmed to its IP length.
func (p *Parsed) Bytes() []byte { return p.b }

// Len returns the IP packet length.
func (p *Parsed) Len() int { return len(p.b) }

// L4 returns the transport header and payload (nil when there is none).
func (p *Parsed) L4() []byte {
	if p.L4Off == 0 {
		return nil
	}
	return p.b[p.L4Off:]
}

// SrcIP returns the source address as a netip.Addr.
func (p *Parsed) SrcIP() netip.Addr { return p.Src.NetIP(p.Version) }

// DstIP returns the destination address as a netip.Addr.
func (p *Parsed) DstIP() netip.Addr { return p.Dst.NetIP(p.Version) }

// IsICMP reports whether the packet is ICMP of its own family (ICMP for
// IPv4, ICMPv6 for IPv6).
func (p *Parsed) IsICMP() bool {
	return (p.Version == 4 && p.Proto == ProtoICMP) || (p.Version == 6 && p.Proto == ProtoICMPv6)
}

// Decode parses b as an IP packet. b may be longer than the packet (it is
// trimmed to the IP length); it must not be shorter. The IPv4 header
// checksum is verified, as Linux's ip_rcv does before any hook runs.
func (p *Parsed) Decode(b []byte) error {
	return p.decode(b, false)
}

// DecodeQuoted parses the packet quoted inside an ICMP error: it may be cut
// short (RFC 792 quotes only 8 bytes of transport header), its IPv4 header
// checksum is not verified (a router may quote it after decrementing TTL),
// and the transport header needs only its first 8 bytes.
func (p *Parsed) DecodeQuoted(b []byte) error {
	return p.decode(b, true)
}

func (p *Parsed) decode(b []byte, quoted bool) error {
	*p = Parsed{}
	if len(b) < 1 {
		return ErrTruncated
	}
	switch b[0] >> 4 {
	case 4:
		return p.decode4(b, quoted)
	case 6:
		return p.decode6(b, quoted)
	}
	return ErrVersion
}

func (p *Parsed) decode4(b []byte, quoted bool) error {
	if len(b) < header.IPv4MinimumSize {
		return ErrTruncated
	}
	ihl := int(b[0]&0xf) * 4
	if ihl < header.IPv4MinimumSize {
		return ErrIPHeader
	}
	if len(b) < ihl {
		return ErrTruncated
	}
	tot := int(binary.BigEndian.Uint16(b[2:]))
	if tot < ihl {
		return ErrIPHeader
	}
	if tot > len(b) {
		if !quoted {
			return ErrTruncated
		}
		tot = len(b)
	}
	if !quoted && !IPv4HeaderValid(b[:ihl]) {
		return ErrIPChecksum
	}
	b = b[:tot]
	p.b = b
	p.Version = 4
	p.Proto = b[9]
	copy(p.Src[:4], b[12:16])
	copy(p.Dst[:4], b[16:20])
	ff := binary.BigEndian.Uint16(b[6:])
	p.FragOff = int(ff&0x1fff) * 8
	p.MoreFragments = ff&0x2000 != 0
	p.FragID = uint32(binary.BigEndian.Uint16(b[4:]))
	p.Fragment = p.FragOff != 0 || p.MoreFragments
	if p.FragOff != 0 {
		return nil // no transport header in a non-first fragment
	}
	return p.decodeL4(ihl, quoted)
}

// maxExtHeaders bounds the IPv6 extension header walk so a hostile chain
// cannot make one packet cost more than a few header reads.
const maxExtHeaders = 8

func (p *Parsed) decode6(b []byte, quoted bool) error {
	if len(b) < header.IPv6MinimumSize {
		return ErrTruncated
	}
	tot := header.IPv6MinimumSize + int(binary.BigEndian.Uint16(b[4:]))
	if tot > len(b) {
		if !quoted {
			return ErrTruncated
		}
		tot = len(b)
	}
	b = b[:tot]
	p.b = b
	p.Version = 6
	copy(p.Src[:], b[8:24])
	copy(p.Dst[:], b[24:40])
	nh := b[6]
	off := header.IPv6MinimumSize
	for i := 0; ; i++ {
		if i > maxExtHeaders {
			return ErrExtHeader
		}
		switch nh {
		case 0, 43, 60, ProtoAH: // hop-by-hop, routing, destination options, AH
			if len(b) < off+8 {
				if quoted {
					p.Proto = nh
					return nil
				}
				return ErrExtHeader
			}
			var l int
			if nh == ProtoAH {
				l = (int(b[off+1]) + 2) * 4
			} else {
				l = (int(b[off+1]) + 1) * 8
			}
			if nh == 0 && off != header.IPv6MinimumSize {
				return ErrExtHeader // RFC 8200 4.3: hop-by-hop only first
			}
			if len(b) < off+l {
				if quoted {
					p.Proto = nh
					return nil
				}
				return ErrExtHeader
			}
			nh = b[off]
			off += l
		case 44: // fragment
			if len(b) < off+8 {
				if quoted {
					p.Proto = nh
					return nil
				}
				return ErrExtHeader
			}
			if p.fragHdrOff != 0 {
				return ErrExtHeader
			}
			p.fragHdrOff = off
			fo := binary.BigEndian.Uint16(b[off+2:])
			p.FragOff = int(fo &^ 7)
			p.MoreFragments = fo&1 != 0
			p.FragID = binary.BigEndian.Uint32(b[off+4:])
			p.Fragment = true
			nh = b[off]
			off += 8
			if p.FragOff != 0 {
				p.Proto = nh
				return nil
			}
		default:
			p.Proto = nh
			if p.Fragment && !p.MoreFragments && p.FragOff == 0 {
				// An atomic fragment (RFC 6946) is a whole packet.
				p.Fragment = false
			}
			return p.decodeL4(off, quoted)
		}
	}
}

func (p *Parsed) decodeL4(off int, quoted bool) error {
	err := p.decodeL4Header(off, quoted)
	if err != nil && p.Fragment && !quoted && p.Version == 4 {
		// An IPv4 first fragment may end inside its transport header (RFC
		// 1858's tiny fragments): Linux reassembles and judges the whole
		// datagram, so the header is read after reassembly, not refused
		// here. IPv6 forbids it (RFC 7112: the first fragment carries the
		// whole header chain), so there it stays an error.
		p.HasL4, p.L4Off = false, off
		p.SrcPort, p.DstPort, p.TCPFlags, p.ICMPType, p.ICMPCode = 0, 0, 0, 0, 0
		return nil
	}
	return err
}

func (p *Parsed) decodeL4Header(off int, quoted bool) error {
	b := p.b
	rest := len(b) - off
	switch p.Proto {
	case ProtoTCP:
		if quoted {
			if rest < 8 {
				return ErrTruncated
			}
		} else {
			if rest < header.TCPMinimumSize {
				return ErrL4Header
			}
			doff := int(b[off+12]>>4) * 4
			if doff < header.TCPMinimumSize || doff > rest {
				return ErrL4Header
			}
			p.TCPFlags = b[off+13]
		}
		p.SrcPort = binary.BigEndian.Uint16(b[off:])
		p.DstPort = binary.BigEndian.Uint16(b[off+2:])
	case ProtoUDP:
		if rest < header.UDPMinimumSize {
			if quoted && rest >= 4 {
				p.SrcPort = binary.BigEndian.Uint16(b[off:])
				p.DstPort = binary.BigEndian.Uint16(b[off+2:])
				break
			}
			return ErrL4Header
		}
		if !quoted && !p.Fragment {
			ul := int(binary.BigEndian.Uint16(b[off+4:]))
			if ul < header.UDPMinimumSize || ul > rest {
				return ErrL4Header
			}
		}
		p.SrcPort = binary.BigEndian.Uint16(b[off:])
		p.DstPort = binary.BigEndian.Uint16(b[off+2:])
	case ProtoICMP, ProtoICMPv6:
		if (p.Proto == ProtoICMP) != (p.Version == 4) {
			// ICMP in IPv6 or ICMPv6 in IPv4: tracked as a generic protocol.
			p.L4Off = off
			return nil
		}
		if rest < 8 {
			return ErrL4Header
		}
		p.ICMPType = b[off]
		p.ICMPCode = b[off+1]
		if isEchoType(p.Version, p.ICMPType) {
			id := binary.BigEndian.Uint16(b[off+4:])
			p.SrcPort, p.DstPort = id, id
		}
	case ProtoESP:
		if rest < 8 {
			return ErrL4Header
		}
		p.SrcPort = binary.BigEndian.Uint16(b[off:])
		p.DstPort = binary.BigEndian.Uint16(b[off+2:])
	case ProtoSCTP:
		// The ports and tag of a quote suffice (RFC 792's 8 bytes); a
		// packet short of its common header is left without one, so
		// conntrack calls it INVALID as Linux's sctp_error does.
		if rest < SCTPHeaderLen && (!quoted || rest < 8) {
			p.L4Off = off
			return nil
		}
		p.SrcPort = binary.BigEndian.Uint16(b[off:])
		p.DstPort = binary.BigEndian.Uint16(b[off+2:])
	case ProtoGRE:
		if rest < 4 {
			return ErrL4Header
		}
		// RFC 2890 key present: K bit. The key is at 4 (+4 with checksum).
		if b[off]&0x20 != 0 {
			koff := off + 4
			if b[off]&0x80 != 0 {
				koff += 4
			}
			if len(b) < koff+4 {
				return ErrL4Header
			}
			p.SrcPort = binary.BigEndian.Uint16(b[koff:])
			p.DstPort = binary.BigEndian.Uint16(b[koff+2:])
		}
	default:
		p.L4Off = off
		return nil
	}
	p.L4Off = off
	p.HasL4 = true
	return nil
}

// IsEcho reports whether the packet is an ICMP or ICMPv6 echo request or reply.
// A non-first fragment is never one: its ICMP type is unknown (zero), and
// zero would otherwise read as echo reply.
func (p *Parsed) IsEcho() bool {
	return p.HasL4 && p.IsICMP() && isEchoType(p.Version, p.ICMPType)
}

func isEchoType(version, typ uint8) bool {
	if version == 4 {
		return typ == ICMPEchoRequest || typ == ICMPEchoReply
	}
	return typ == ICMPv6EchoRequest || typ == ICMPv6EchoReply
}

// IsICMPError reports whether the packet is an ICMP/ICMPv6 error message,
// one that quotes the packet that caused it.
func (p *Parsed) IsICMPError() bool {
	if !p.HasL4 {
		return false
	}
	if p.Version == 4 {
		if p.Proto != ProtoICMP {
			return false
		}
		switch p.ICMPType {
		case 3, 4, 5, 11, 12:
			return true
		}
		return false
	}
	return p.Proto == ProtoICMPv6 && p.ICMPType < 128
}

// ICMPQuote returns the quoted packet of an ICMP error (after the 8-byte
// ICMP header).
func (p *Parsed) ICMPQuote() []byte {
	if !p.IsICMPError() || len(p.b) < p.L4Off+8 {
		return nil
	}
	return p.b[p.L4Off+8:]
}

// TTL returns the IPv4 TTL or the IPv6 hop limit.
func (p *Parsed) TTL() uint8 {
	if p.Version == 4 {
		return p.b[8]
	}
	return p.b[7]
}

// DecTTL decrements the TTL / hop limit, fixing the IPv4 header checksum.
// It reports false, changing nothing, when the packet may not be forwarded
// (TTL 1 or 0): the caller answers with time exceeded.
func (p *Parsed) DecTTL() bool {
	if p.Version == 4 {
		ttl := p.b[8]
		if ttl <= 1 {
			return false
		}
		old := binary.BigEndian.Uint16(p.b[8:])
		p.b[8] = ttl - 1
		p.fixIPCsum16(old, binary.BigEndian.Uint16(p.b[8:]))
		return true
	}
	if p.b[7] <= 1 {
		return false
	}
	p.b[7]--
	return true
}

// DF reports whether an IPv4 packet has Don't Fragment set. IPv6 packets are
// never fragmented by routers, so it reports true for them.
func (p *Parsed) DF() bool {
	if p.Version == 6 {
		return true
	}
	return p.b[6]&0x40 != 0
}

// IPHeaderLen returns the IPv4 header length, or 40 for IPv6.
func (p *Parsed) IPHeaderLen() int {
	if p.Version == 4 {
		return int(p.b[0]&0xf) * 4
	}
	return header.IPv6MinimumSize
}

// TCP accessors. Valid only when Proto is TCP and HasL4. A quoted packet
// (DecodeQuoted) may hold as little as 8 bytes of TCP header: fields beyond
// the quote read as zero rather than panicking.

// TCPSeq returns the sequence number.
func (p *Parsed) TCPSeq() uint32 { return p.l4u32(4) }

// TCPAck returns the acknowledgement number.
func (p *Parsed) TCPAck() uint32 { return p.l4u32(8) }

// TCPWindow returns the raw (unscaled) window.
func (p *Parsed) TCPWindow() uint16 {
	if p.L4Off == 0 || len(p.b) < p.L4Off+16 {
		return 0
	}
	return binary.BigEndian.Uint16(p.b[p.L4Off+14:])
}

func (p *Parsed) l4u32(at int) uint32 {
	if p.L4Off == 0 || len(p.b) < p.L4Off+at+4 {
		return 0
	}
	return binary.BigEndian.Uint32(p.b[p.L4Off+at:])
}

// TCPHeaderLen returns the TCP header length including options, or 0 when
// the quote ends before the data offset field.
func (p *Parsed) TCPHeaderLen() int {
	if p.L4Off == 0 || len(p.b) < p.L4Off+13 {
		return 0
	}
	return int(p.b[p.L4Off+12]>>4) * 4
}

// TCPOptions returns the TCP options bytes (nil when not all present).
func (p *Parsed) TCPOptions() []byte {
	hl := p.TCPHeaderLen()
	if hl < header.TCPMinimumSize || len(p.b) < p.L4Off+hl {
		return nil
	}
	return p.b[p.L4Off+header.TCPMinimumSize : p.L4Off+hl]
}

// Payload returns the transport payload (TCP data after options, UDP data,
// ICMP data after the 8-byte header). For other protocols, everything after
// the IP headers.
func (p *Parsed) Payload() []byte {
	if p.L4Off == 0 {
		return nil
	}
	hl := 0
	switch p.Proto {
	case ProtoTCP:
		if !p.HasL4 {
			return nil
		}
		hl = p.TCPHeaderLen()
		if hl < header.TCPMinimumSize {
			return nil
		}
	case ProtoUDP:
		hl = header.UDPMinimumSize
	case ProtoICMP, ProtoICMPv6:
		if p.HasL4 {
			hl = 8
		}
	}
	if len(p.b) < p.L4Off+hl {
		return nil // a quote cut inside the transport header
	}
	return p.b[p.L4Off+hl:]
}

// SetTCPSeq rewrites the sequence number with checksum fix-up.
func (p *Parsed) SetTCPSeq(v uint32) { p.setL4u32(4, v) }

// SetTCPAck rewrites the acknowledgement number with checksum fix-up.
func (p *Parsed) SetTCPAck(v uint32) { p.setL4u32(8, v) }

func (p *Parsed) setL4u32(at int, v uint32) {
	if p.Proto != ProtoTCP || !p.HasL4 || len(p.b) < p.L4Off+at+4 {
		return
	}
	o := p.L4Off + at
	old0 := binary.BigEndian.Uint16(p.b[o:])
	old1 := binary.BigEndian.Uint16(p.b[o+2:])
	binary.BigEndian.PutUint32(p.b[o:], v)
	p.fixL4Csum16(old0, uint16(v>>16))
	p.fixL4Csum16(old1, uint16(v))
}

// l4CsumOff returns the offset of the transport checksum, or -1 if the
// packet's transport checksum does not exist or must not be touched.
func (p *Parsed) l4CsumOff() int {
	if p.L4Off == 0 || p.FragOff != 0 {
		return -1
	}
	switch p.Proto {
	case ProtoTCP:
		if len(p.b) < p.L4Off+18 {
			return -1 // quoted packet cut short
		}
		return p.L4Off + 16
	case ProtoUDP:
		if len(p.b) < p.L4Off+8 {
			return -1
		}
		return p.L4Off + 6
	case ProtoICMP, ProtoICMPv6:
		if p.HasL4 {
			return p.L4Off + 2
		}
	}
	return -1
}

// pseudoHeader reports whether the transport checksum covers the addresses.
func (p *Parsed) pseudoHeader() bool {
	switch p.Proto {
	case ProtoTCP, ProtoUDP:
		return true
	case ProtoICMPv6:
		return p.Version == 6
	}
	return false
}

// SetSrc rewrites the source address (same family) and fixes checksums.
func (p *Parsed) SetSrc(a Addr) {
	p.setAddr(12, 8, &p.Src, a)
}

// SetDst rewrites the destination address and fixes checksums.
func (p *Parsed) SetDst(a Addr) {
	p.setAddr(16, 24, &p.Dst, a)
}

func (p *Parsed) setAddr(off4, off6 int, field *Addr, a Addr) {
	n, off := 4, off4
	if p.Version == 6 {
		n, off = 16, off6
	} else {
		// Keep the IPv4 Addr form canonical (zeros after four bytes) so
		// it still compares equal to the one Decode produces.
		clear(a[4:])
	}
	if *field == a {
		return
	}
	delta := ChecksumDelta(field[:n], a[:n])
	copy(p.b[off:off+n], a[:n])
	*field = a
	if p.Version == 4 {
		p.applyDelta(10, delta, false)
	}
	if p.pseudoHeader() {
		if c := p.l4CsumOff(); c >= 0 {
			p.applyDelta(c, delta, p.Proto == ProtoUDP)
		}
	}
}

// SetSrcPort rewrites the TCP/UDP/SCTP source port (or ICMP echo
// identifier, or nothing for other protocols) with checksum fix-up.
func (p *Parsed) SetSrcPort(v uint16) {
	if p.Proto == ProtoICMP || p.Proto == ProtoICMPv6 {
		p.SetICMPID(v)
		return
	}
	p.setPort(0, &p.SrcPort, v)
}

// SetDstPort rewrites the TCP/UDP/SCTP destination port (or ICMP echo
// identifier).
func (p *Parsed) SetDstPort(v uint16) {
	if p.Proto == ProtoICMP || p.Proto == ProtoICMPv6 {
		p.SetICMPID(v)
		return
	}
	p.setPort(2, &p.DstPort, v)
}

func (p *Parsed) setPort(at int, field *uint16, v uint16) {
	if p.Proto == ProtoSCTP {
		p.setSCTPPort(at, field, v)
		return
	}
	if (p.Proto != ProtoTCP && p.Proto != ProtoUDP) || p.L4Off == 0 || *field == v {
		return
	}
	o := p.L4Off + at
	old := binary.BigEndian.Uint16(p.b[o:])
	binary.BigEndian.PutUint16(p.b[o:], v)
	*field = v
	p.fixL4Csum16(old, v)
}

// SetICMPID rewrites the echo identifier with ICMP checksum fix-up.
func (p *Parsed) SetICMPID(v uint16) {
	if !p.IsEcho() || p.SrcPort == v {
		return
	}
	o := p.L4Off + 4
	old := binary.BigEndian.Uint16(p.b[o:])
	binary.BigEndian.PutUint16(p.b[o:], v)
	p.SrcPort, p.DstPort = v, v
	p.fixL4Csum16(old, v)
}

func (p *Parsed) fixIPCsum16(old, new uint16) {
	p.applyDelta(10, ChecksumDelta16(old, new), false)
}

func (p *Parsed) fixL4Csum16(old, new uint16) {
	if c := p.l4CsumOff(); c >= 0 {
		p.applyDelta(c, ChecksumDelta16(old, new), p.Proto == ProtoUDP)
	}
}

// applyDelta applies delta (from ChecksumDelta) to the checksum at off. A
// UDP checksum of zero means "none" (IPv4, and IPv6 tunnels under RFC 6935) and
// stays zero; a computed zero is sent as 0xffff (RFC 768, RFC 8200 8.1).
func (p *Parsed) applyDelta(off int, delta uint16, udp bool) {
	if len(p.b) < off+2 {
		return
	}
	hc := binary.BigEndian.Uint16(p.b[off:])
	if udp && hc == 0 {
		return
	}
	n := UpdateChecksum(hc, delta)
	if udp && n == 0 {
		n = 0xffff
	}
	binary.BigEndian.PutUint16(p.b[off:], n)
}

// PseudoHeaderSum returns the one's complement sum of the pseudo-header for
// this packet's transport protocol and the given transport length.
func (p *Parsed) PseudoHeaderSum(proto uint8, l4len int) uint16 {
	return PseudoSum(p.Version, p.Src[:], p.Dst[:], proto, l4len)
}

// L4ChecksumValid verifies the transport checksum of a whole (unfragmented)
// packet, as Linux conntrack's nf_checksum does before tracking (for SCTP,
// the CRC32c sctp_error checks). A UDP checksum of zero is valid (none).
// Protocols without a checksum known here are valid.
func (p *Parsed) L4ChecksumValid() bool {
	if p.Fragment || !p.HasL4 || p.ChecksumGood {
		return true
	}
	l4 := p.b[p.L4Off:]
	switch p.Proto {
	case ProtoTCP, ProtoUDP:
		if len(l4) < 8 {
			return false // a quote cut inside the transport header
		}
		if p.Proto == ProtoUDP && binary.BigEndian.Uint16(l4[6:]) == 0 {
			// No checksum. Linux conntrack's udp_error lets it pass in
			// both families (IPv6 tunnels may omit it, RFC 6935).
			return true
		}
		return checksum.Checksum(l4, p.PseudoHeaderSum(p.Proto, len(l4))) == 0xffff
	case ProtoICMP:
		return checksum.Checksum(l4, 0) == 0xffff
	case ProtoICMPv6:
		return checksum.Checksum(l4, p.PseudoHeaderSum(ProtoICMPv6, len(l4))) == 0xffff
	case ProtoSCTP:
		return p.sctpChecksumValid()
	}
	return true
}
