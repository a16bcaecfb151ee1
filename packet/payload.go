package packet

import (
	"encoding/binary"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"
)

// ReplacePayload replaces bytes [off, off+oldLen) of the transport payload
// (offsets relative to Payload()) with repl, for ALGs that rewrite an
// address in a control message. The packet grows or shrinks in place within
// cap(p.Bytes()) (ErrNoRoom beyond it, or beyond the 65535 bytes an IP
// length can say). The IPv4 total length and header checksum or the IPv6
// payload length, the UDP length, and the transport checksum are set (the
// checksum computed afresh: a length change is no small delta), and p is
// decoded again. A UDP/IPv4 datagram sent without checksum stays without.
//
// Only whole TCP and UDP packets are supported (ErrUnsupported): a
// fragment's checksum covers bytes that are not here. repl must not alias
// the packet. TCP sequence numbers are the caller's to adjust.
func (p *Parsed) ReplacePayload(off, oldLen int, repl []byte) error {
	if !p.HasL4 || p.Fragment || (p.Proto != ProtoTCP && p.Proto != ProtoUDP) {
		return ErrUnsupported
	}
	pl := p.Payload()
	if off < 0 || oldLen < 0 || off > len(pl) || oldLen > len(pl)-off {
		return ErrPayloadRange
	}
	old := p.b
	start := len(old) - len(pl) + off
	newLen := len(old) - oldLen + len(repl)
	limit := 0xffff
	if p.Version == 6 {
		limit += 40
	}
	if newLen > cap(old) || newLen > limit {
		return ErrNoRoom
	}
	b := old[:newLen]
	copy(b[start+len(repl):], old[start+oldLen:])
	copy(b[start:], repl)

	if p.Version == 4 {
		binary.BigEndian.PutUint16(b[2:], uint16(newLen))
		SetIPv4Checksum(b[:p.IPHeaderLen()])
	} else {
		binary.BigEndian.PutUint16(b[4:], uint16(newLen-40))
	}
	l4 := b[p.L4Off:]
	if p.Proto == ProtoUDP {
		binary.BigEndian.PutUint16(l4[4:], uint16(len(l4)))
		if p.Version == 4 && binary.BigEndian.Uint16(l4[6:]) == 0 {
			return p.decode(b, false)
		}
	}
	p.b = b
	p.SetL4Checksum()
	return p.decode(b, false)
}

// SetL4Checksum computes the transport checksum of a whole packet afresh,
// for edits too wide for an incremental update (a changed payload, or the
// quote inside an ICMP error). Packets whose checksum must not be touched
// (non-first fragments, no transport header) are left alone.
func (p *Parsed) SetL4Checksum() {
	c := p.l4CsumOff()
	if c < 0 {
		return
	}
	l4 := p.b[p.L4Off:]
	var sum uint16
	if p.pseudoHeader() {
		sum = p.PseudoHeaderSum(p.Proto, len(l4))
	}
	p.b[c], p.b[c+1] = 0, 0
	v := ^checksum.Checksum(l4, sum)
	if v == 0 && p.Proto == ProtoUDP {
		v = 0xffff
	}
	binary.BigEndian.PutUint16(p.b[c:], v)
}
