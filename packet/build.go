package packet

import (
	"encoding/binary"
	"errors"
	"sync/atomic"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"
)

// ICMP (IPv4) types and codes the gateway sends or recognises (RFC 792,
// RFC 1812).
const (
	ICMPEchoReply       = 0
	ICMPDestUnreachable = 3
	ICMPEchoRequest     = 8
	ICMPTimeExceeded    = 11
	ICMPParamProblem    = 12

	// Codes of ICMPDestUnreachable.
	ICMPNetUnreachable   = 0
	ICMPHostUnreachable  = 1
	ICMPProtoUnreachable = 2
	ICMPPortUnreachable  = 3
	ICMPFragNeeded       = 4 // param: next-hop MTU in the low 16 bits (RFC 1191)
	ICMPAdminProhibited  = 13

	// Codes of ICMPTimeExceeded.
	ICMPTTLExceeded        = 0
	ICMPReassemblyExceeded = 1
)

// ICMPv6 types and codes the gateway sends or recognises (RFC 4443).
const (
	ICMPv6DestUnreachable = 1
	ICMPv6PacketTooBig    = 2 // param: the MTU of the next hop
	ICMPv6TimeExceeded    = 3
	ICMPv6ParamProblem    = 4 // param: pointer to the offending octet
	ICMPv6EchoRequest     = 128
	ICMPv6EchoReply       = 129

	// Codes of ICMPv6DestUnreachable.
	ICMPv6NoRoute            = 0
	ICMPv6AdminProhibited    = 1
	ICMPv6AddressUnreachable = 3
	ICMPv6PortUnreachable    = 4

	// Codes of ICMPv6TimeExceeded.
	ICMPv6HopLimitExceeded   = 0
	ICMPv6ReassemblyExceeded = 1

	// ICMPv6UnrecognizedOption is the Parameter Problem code that may be
	// sent about a multicast packet (RFC 4443 2.4(e.3)).
	ICMPv6UnrecognizedOption = 2
)

// DefaultTTL is the TTL / hop limit of the packets tungate originates,
// Linux's default ip_default_ttl and hop_limit.
const DefaultTTL = 64

// Maximum size of an ICMP error: RFC 1812 4.3.2.3 keeps an IPv4 error within
// the 576 bytes every host reassembles; RFC 4443 2.4(c) keeps an ICMPv6 error
// within the IPv6 minimum MTU.
const (
	MaxICMPError4 = 576
	MaxICMPError6 = 1280
)

// Errors returned by the builders. ErrNoICMPError, ErrNoReset and
// ErrNoEchoReply mean the protocol forbids an answer: the caller drops the
// packet silently and counts it.
var (
	ErrNoICMPError  = errors.New("packet: ICMP error not allowed about this packet")
	ErrICMPType     = errors.New("packet: not an ICMP error type")
	ErrNoReset      = errors.New("packet: no TCP reset for this segment")
	ErrNoEchoReply  = errors.New("packet: not an echo request that may be answered")
	ErrL4Checksum   = errors.New("packet: bad transport checksum")
	ErrNoRoom       = errors.New("packet: buffer too small")
	ErrUnsupported  = errors.New("packet: operation not supported for this packet")
	ErrPayloadRange = errors.New("packet: payload range out of bounds")
)

// icmpErrorID numbers the IPv4 ICMP errors we originate. They are sent
// without DF (as Linux does) so they need an identification that differs
// from packet to packet (RFC 6864 4.1); a counter is enough for a router.
var icmpErrorID atomic.Uint32

// BuildICMPError writes into dst an ICMP (IPv4) or ICMPv6 (IPv6) error of
// the given type and code about orig, sent from src to orig's source, and
// returns its length. param is the 32-bit word after the checksum: the MTU
// for fragmentation needed (low 16 bits) or packet too big, the pointer for
// parameter problem (IPv4: in the top byte, param = ptr<<24; ICMPv6: the
// whole word), zero otherwise.
//
// The quote is orig.Bytes() as it is now in the buffer, cut so the error
// fits MaxICMPError4 / MaxICMPError6 and dst. It refuses with ErrNoICMPError
// where RFC 1812 4.3.2.7 and RFC 4443 2.4(e) forbid an error: about an ICMP
// error, about a non-first fragment (except an ICMPv6 packet too big, which
// path MTU discovery needs for every fragment), about a packet to a
// multicast or broadcast address (except ICMPv6 packet too big and
// parameter problem code 2), about a packet whose source is not one unicast
// host, or when src itself is not a unicast address.
func BuildICMPError(dst []byte, orig *Parsed, src Addr, typ, code uint8, param uint32) (int, error) {
	switch orig.Version {
	case 4:
		return buildICMPError4(dst, orig, src, typ, code, param)
	case 6:
		return buildICMPError6(dst, orig, src, typ, code, param)
	}
	return 0, ErrVersion
}

func buildICMPError4(dst []byte, orig *Parsed, src Addr, typ, code uint8, param uint32) (int, error) {
	switch typ {
	case ICMPDestUnreachable, ICMPTimeExceeded, ICMPParamProblem, 4, 5:
	default:
		return 0, ErrICMPType
	}
	if orig.IsICMPError() || orig.FragOff != 0 ||
		!unicastSource4(orig.Src) || !unicastSource4(src) || !unicastDest4(orig.Dst) {
		return 0, ErrNoICMPError
	}
	const hl = 28 // IPv4 header without options + ICMP header
	quote := orig.b
	room := min(len(dst), MaxICMPError4) - hl
	// RFC 792: the quote holds at least the IP header and 8 data bytes.
	if need := min(len(quote), orig.IPHeaderLen()+8); room < need {
		return 0, ErrNoRoom
	}
	quote = quote[:min(len(quote), room)]
	n := hl + len(quote)
	b := dst[:n]
	copy(b[hl:], quote)

	b[0] = 0x45
	// Linux icmp_send: the original TOS with the precedence of internetwork
	// control, so errors are not queued behind the traffic they report on.
	b[1] = orig.b[1]&0x1e | 0xc0
	binary.BigEndian.PutUint16(b[2:], uint16(n))
	binary.BigEndian.PutUint16(b[4:], uint16(icmpErrorID.Add(1)))
	b[6], b[7] = 0, 0
	b[8] = DefaultTTL
	b[9] = ProtoICMP
	copy(b[12:16], src[:4])
	copy(b[16:20], orig.Src[:4])
	SetIPv4Checksum(b[:20])

	b[20], b[21] = typ, code
	b[22], b[23] = 0, 0
	binary.BigEndian.PutUint32(b[24:], param)
	binary.BigEndian.PutUint16(b[22:], ^checksum.Checksum(b[20:], 0))
	return n, nil
}

func buildICMPError6(dst []byte, orig *Parsed, src Addr, typ, code uint8, param uint32) (int, error) {
	if typ >= 128 {
		return 0, ErrICMPType
	}
	if orig.IsICMPError() || (orig.FragOff != 0 && typ != ICMPv6PacketTooBig) ||
		!unicastSource6(orig.Src) || !unicastSource6(src) {
		return 0, ErrNoICMPError
	}
	if isMulticast6(orig.Dst) &&
		typ != ICMPv6PacketTooBig && (typ != ICMPv6ParamProblem || code != ICMPv6UnrecognizedOption) {
		return 0, ErrNoICMPError
	}
	const hl = 48 // IPv6 header + ICMPv6 header
	quote := orig.b
	room := min(len(dst), MaxICMPError6) - hl
	if need := min(len(quote), 48); room < need {
		return 0, ErrNoRoom
	}
	quote = quote[:min(len(quote), room)]
	n := hl + len(quote)
	b := dst[:n]
	copy(b[hl:], quote)

	writeIPv6Header(b, n-40, ProtoICMPv6, &src, &orig.Src)
	b[40], b[41] = typ, code
	b[42], b[43] = 0, 0
	binary.BigEndian.PutUint32(b[44:], param)
	sum := PseudoSum(6, src[:], orig.Src[:], ProtoICMPv6, n-40)
	binary.BigEndian.PutUint16(b[42:], ^checksum.Checksum(b[40:], sum))
	return n, nil
}

// BuildTCPReset writes into dst the RST answering the TCP segment orig, as
// RFC 793 3.4 (and Linux nf_send_reset) builds it: from orig's destination
// to its source, ports swapped; if orig has ACK the reset takes its sequence
// number from orig's acknowledgement, otherwise it has sequence zero and
// acknowledges everything orig occupied (SYN and FIN count one). It returns
// the length written.
//
// It refuses with ErrNoReset a segment that is not TCP, is a RST itself, is
// a fragment (the sequence space it occupies is unknown), or involves a
// multicast, broadcast or unspecified address; with ErrL4Checksum a segment
// whose checksum is bad, which may not even be TCP to the host it names.
func BuildTCPReset(dst []byte, orig *Parsed) (int, error) {
	if orig.Proto != ProtoTCP || !orig.HasL4 || orig.Fragment || orig.TCPFlags&TCPRst != 0 {
		return 0, ErrNoReset
	}
	switch orig.Version {
	case 4:
		if !unicastSource4(orig.Src) || !unicastDest4(orig.Dst) || isUnspecified(orig.Dst[:4]) {
			return 0, ErrNoReset
		}
	case 6:
		if !unicastSource6(orig.Src) || isMulticast6(orig.Dst) || isUnspecified(orig.Dst[:]) {
			return 0, ErrNoReset
		}
	default:
		return 0, ErrVersion
	}
	if !orig.L4ChecksumValid() {
		return 0, ErrL4Checksum
	}
	r := TCPSegment{Version: orig.Version, Src: orig.Dst, Dst: orig.Src, SrcPort: orig.DstPort, DstPort: orig.SrcPort}
	if orig.TCPFlags&TCPAck != 0 {
		r.Seq, r.Flags = orig.TCPAck(), TCPRst
	} else {
		seg := uint32(len(orig.Payload()))
		if orig.TCPFlags&TCPSyn != 0 {
			seg++
		}
		if orig.TCPFlags&TCPFin != 0 {
			seg++
		}
		r.Ack, r.Flags = orig.TCPSeq()+seg, TCPRst|TCPAck
	}
	// Like Linux nf_reject_iphdr_put: ID zero with DF, an atomic datagram
	// (RFC 6864), no options, window zero.
	return BuildTCPSegment(dst, &r)
}

// MakeEchoReply turns the ICMP echo request (or ICMPv6 echo request) in p
// into its reply in place: addresses swapped, type echo reply, TTL / hop
// limit DefaultTTL, checksums recomputed, and p decoded again. IPv4 options
// and IPv6 extension headers are dropped rather than reversed (a routing
// header must not be replayed backwards), so the packet may get shorter:
// use p.Bytes() afterwards.
//
// It refuses with ErrNoEchoReply anything but an unfragmented echo request
// between unicast addresses (RFC 1122 3.2.2.6 lets a host ignore requests
// to broadcast and multicast addresses, and the reply needs a unicast
// source), and with ErrL4Checksum a request with a bad checksum, as Linux
// drops it before icmp_echo runs.
func MakeEchoReply(p *Parsed) error {
	if !p.IsEcho() || p.Fragment {
		return ErrNoEchoReply
	}
	switch p.Version {
	case 4:
		if p.ICMPType != ICMPEchoRequest || !unicastSource4(p.Src) || !unicastSource4(p.Dst) {
			return ErrNoEchoReply
		}
	case 6:
		if p.ICMPType != ICMPv6EchoRequest || !unicastSource6(p.Src) || !unicastSource6(p.Dst) {
			return ErrNoEchoReply
		}
	}
	if !p.L4ChecksumValid() {
		return ErrL4Checksum
	}
	b := p.b
	ipLen := 20
	if p.Version == 6 {
		ipLen = 40
	}
	if p.L4Off > ipLen {
		n := copy(b[ipLen:], b[p.L4Off:])
		b = b[:ipLen+n]
	}
	l4 := b[ipLen:]
	if p.Version == 4 {
		b[0] = 0x45
		binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
		b[8] = DefaultTTL
		copy(b[12:16], p.Dst[:4])
		copy(b[16:20], p.Src[:4])
		SetIPv4Checksum(b[:20])
		l4[0] = ICMPEchoReply
		l4[2], l4[3] = 0, 0
		binary.BigEndian.PutUint16(l4[2:], ^checksum.Checksum(l4, 0))
	} else {
		tc := b[0]<<4 | b[1]>>4
		src, dst := p.Dst, p.Src
		writeIPv6Header(b, len(l4), ProtoICMPv6, &src, &dst)
		b[0] |= tc >> 4
		b[1] = tc << 4
		l4[0] = ICMPv6EchoReply
		l4[2], l4[3] = 0, 0
		sum := PseudoSum(6, src[:], dst[:], ProtoICMPv6, len(l4))
		binary.BigEndian.PutUint16(l4[2:], ^checksum.Checksum(l4, sum))
	}
	return p.decode(b, false)
}

// writeIPv6Header writes a fixed IPv6 header (traffic class and flow label
// zero, hop limit DefaultTTL) at the start of b.
func writeIPv6Header(b []byte, payloadLen int, nh uint8, src, dst *Addr) {
	b[0], b[1], b[2], b[3] = 0x60, 0, 0, 0
	binary.BigEndian.PutUint16(b[4:], uint16(payloadLen))
	b[6] = nh
	b[7] = DefaultTTL
	copy(b[8:24], src[:])
	copy(b[24:40], dst[:])
}

func isUnspecified(a []byte) bool {
	for _, v := range a {
		if v != 0 {
			return false
		}
	}
	return true
}

// unicastSource4 reports whether a may be the source of a packet we answer
// or send: RFC 1812 4.3.2.7 excludes 0.0.0.0/8 ("this network"), loopback,
// multicast, and Class E including the limited broadcast.
func unicastSource4(a Addr) bool {
	return a[0] != 0 && a[0] != 127 && a[0] < 224
}

// unicastDest4 reports whether a packet to a may be answered with an error:
// not multicast (224.0.0.0/4) and not the limited broadcast. Directed
// broadcasts are known only to the routing table.
func unicastDest4(a Addr) bool {
	return a[0]&0xf0 != 0xe0 && !(a[0] == 255 && a[1] == 255 && a[2] == 255 && a[3] == 255)
}

func isMulticast6(a Addr) bool { return a[0] == 0xff }

// unicastSource6 reports whether a identifies one node (RFC 4443 2.4(e.6)):
// not unspecified, not loopback, not multicast.
func unicastSource6(a Addr) bool {
	if isMulticast6(a) || isUnspecified(a[:15]) && (a[15] == 0 || a[15] == 1) {
		return false
	}
	return true
}
