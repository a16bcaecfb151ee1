package packet

import (
	"encoding/binary"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"
)

// The Internet checksum arithmetic tungate needs, in one place: every
// rewrite of a field a checksum covers goes through ChecksumDelta and
// UpdateChecksum (RFC 1624 incremental update), every pseudo-header through
// PseudoSum. Whole-buffer sums are gVisor's checksum.Checksum; only the
// small fixed-size cases that run on every packet are written out here,
// where a plain word loop beats that routine's setup cost.

// fold reduces an accumulator of 16-bit words to their one's complement
// sum. Zero stays zero and any other value lands in 1..0xffff, so folding
// early or late gives the same bits.
func fold(acc uint32) uint16 {
	acc = acc&0xffff + acc>>16
	acc = acc&0xffff + acc>>16
	return uint16(acc)
}

// ChecksumDelta returns the one's complement sum of ~old + new over the
// 16-bit words of old and new (equal, even lengths): the "~m + m'" of
// RFC 1624 eqn. 3 for replacing old by new anywhere a checksum covers.
func ChecksumDelta(old, new []byte) uint16 {
	new = new[:len(old)]
	var acc uint32
	for i := 0; i+1 < len(old); i += 2 {
		acc += uint32(^binary.BigEndian.Uint16(old[i:])) + uint32(binary.BigEndian.Uint16(new[i:]))
	}
	return fold(acc)
}

// ChecksumDelta16 is ChecksumDelta for one aligned 16-bit word.
func ChecksumDelta16(old, new uint16) uint16 {
	return fold(uint32(^old) + uint32(new))
}

// UpdateChecksum applies delta (from ChecksumDelta) to the checksum field
// value hc, per RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m'). It never turns a
// nonzero sum into zero's other form by itself; UDP's "no checksum" zero is
// the caller's business (see Parsed.applyDelta).
func UpdateChecksum(hc, delta uint16) uint16 {
	return ^fold(uint32(^hc) + uint32(delta))
}

// PseudoSum is the one's complement sum of the TCP/UDP/ICMPv6 pseudo-header
// (RFC 9293 3.1, RFC 768, RFC 8200 8.1) for the given IP version: src and
// dst hold at least 4 (IPv4) or 16 (IPv6) bytes.
func PseudoSum(version uint8, src, dst []byte, proto uint8, l4len int) uint16 {
	n := 4
	if version == 6 {
		n = 16
	}
	s := checksum.Checksum(src[:n], 0)
	s = checksum.Checksum(dst[:n], s)
	return checksum.Combine(s, checksum.Combine(uint16(proto), uint16(l4len)))
}

// headerSum is the one's complement sum of an IPv4 header (a multiple of 4
// bytes, at most 60). It runs on every packet, where a word loop beats the
// general checksum routine's setup cost.
func headerSum(h []byte) uint16 {
	var acc uint64
	for ; len(h) >= 4; h = h[4:] {
		acc += uint64(binary.BigEndian.Uint32(h))
	}
	acc = acc&0xffffffff + acc>>32
	acc = acc&0xffffffff + acc>>32
	return fold(uint32(acc&0xffff) + uint32(acc>>16))
}

// IPv4HeaderValid reports whether the IPv4 header h (its IHL*4 bytes)
// carries a correct header checksum.
func IPv4HeaderValid(h []byte) bool { return headerSum(h) == 0xffff }

// SetIPv4Checksum computes the header checksum of the IPv4 header h (its
// IHL*4 bytes) afresh.
func SetIPv4Checksum(h []byte) {
	h[10], h[11] = 0, 0
	binary.BigEndian.PutUint16(h[10:], ^headerSum(h))
}
