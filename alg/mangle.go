package alg

import (
	"encoding/binary"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"

	"tungate/packet"
)

// replacePayload replaces payload bytes [off, off+oldLen) (offsets from
// Payload()) with repl, growing or shrinking the packet within
// cap(p.Bytes()), and fixes the IP length, the UDP length and every
// checksum; p is decoded again over the new bytes. It is the unexported
// stand-in for packet.(*Parsed).ReplacePayload, which was not in package
// packet yet; rewrites are rare, so the full checksum is recomputed.
func replacePayload(p *packet.Parsed, off, oldLen int, repl []byte) error {
	if p.Fragment {
		return ErrFragment
	}
	b := p.Bytes()
	pl := p.Payload()
	if off < 0 || oldLen < 0 || off+oldLen > len(pl) {
		return ErrMangleRange
	}
	base := len(b) - len(pl)
	newLen := len(b) - oldLen + len(repl)
	if newLen > cap(b) {
		return ErrNoRoom
	}
	if (p.Version == 4 && newLen > 0xffff) || (p.Version == 6 && newLen-40 > 0xffff) {
		return ErrTooBig
	}
	full := b[:max(len(b), newLen)]
	at := base + off
	copy(full[at+len(repl):], full[at+oldLen:len(b)])
	copy(full[at:], repl)
	nb := full[:newLen]
	if p.Version == 4 {
		ihl := p.IPHeaderLen()
		binary.BigEndian.PutUint16(nb[2:], uint16(newLen))
		binary.BigEndian.PutUint16(nb[10:], 0)
		binary.BigEndian.PutUint16(nb[10:], ^checksum.Checksum(nb[:ihl], 0))
	} else {
		binary.BigEndian.PutUint16(nb[4:], uint16(newLen-40))
	}
	l4 := nb[p.L4Off:]
	var csumOff int
	switch p.Proto {
	case packet.ProtoTCP:
		csumOff = 16
	case packet.ProtoUDP:
		binary.BigEndian.PutUint16(l4[4:], uint16(len(l4)))
		csumOff = 6
		if p.Version == 4 && binary.BigEndian.Uint16(l4[6:]) == 0 {
			csumOff = -1 // no checksum (RFC 768): keep none
		}
	default:
		csumOff = -1
	}
	if csumOff >= 0 {
		binary.BigEndian.PutUint16(l4[csumOff:], 0)
		c := ^checksum.Checksum(l4, p.PseudoHeaderSum(p.Proto, len(l4)))
		if c == 0 && p.Proto == packet.ProtoUDP {
			c = 0xffff
		}
		binary.BigEndian.PutUint16(l4[csumOff:], c)
	}
	return p.Decode(nb)
}

// setL4u32 writes v at offset at of the TCP header (SACK edges, which
// need not be 16-bit aligned) with an incremental checksum update over
// the aligned words it touches (RFC 1624).
func setL4u32(p *packet.Parsed, at int, v uint32) {
	l4 := p.L4()
	lo, hi := at&^1, (at+5)&^1
	var acc uint32
	for i := lo; i < hi; i += 2 {
		acc += uint32(^binary.BigEndian.Uint16(l4[i:]))
	}
	binary.BigEndian.PutUint32(l4[at:], v)
	for i := lo; i < hi; i += 2 {
		acc += uint32(binary.BigEndian.Uint16(l4[i:]))
	}
	hc := binary.BigEndian.Uint16(l4[16:])
	sum := uint32(^hc) + acc
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(l4[16:], ^uint16(sum))
}
