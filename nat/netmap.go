package nat

import (
	"encoding/binary"
	"net/netip"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"

	"tungate/packet"
)

// mapPrefix replaces the leading bits of a that from covers by to's (both
// the same length). For IPv6 the result is made checksum-neutral as NPTv6
// does (RFC 6296 section 3): a 16-bit word outside the prefix absorbs the
// difference, so the one's complement sum of the address — and with it
// every transport checksum — is unchanged. That word is bits 48-63 for
// prefixes up to /48, else the first word of the interface identifier that
// is not 0xFFFF. ok is false when RFC 6296 says not to translate (the word
// is 0xFFFF, section 3.5 / 3.7).
func mapPrefix(a packet.Addr, fam uint8, from, to netip.Prefix) (packet.Addr, bool) {
	n := to.Bits()
	tb := to.Addr().As16()
	if fam == 4 {
		t4 := to.Addr().As4()
		copy(tb[:], t4[:])
	}
	out := a
	for i := 0; n > 0; i++ {
		mask := byte(0xff)
		if n < 8 {
			mask = ^byte(0xff >> n)
		}
		out[i] = tb[i]&mask | a[i]&^mask
		n -= 8
	}
	if fam == 4 {
		return out, true
	}
	w := -1
	if to.Bits() <= 48 {
		w = 3
	} else {
		for i := 4; i < 8; i++ {
			if binary.BigEndian.Uint16(out[2*i:]) != 0xffff {
				w = i
				break
			}
		}
	}
	if w < 0 {
		return a, false
	}
	word := binary.BigEndian.Uint16(out[2*w:])
	if word == 0xffff {
		return a, false
	}
	// word' = word + sum(a) - sum(out), one's complement: the inverse of
	// the delta that rewriting a to out adds to any covering checksum.
	nw := checksum.Combine(word, packet.ChecksumDelta(out[:], a[:]))
	if nw == 0xffff {
		nw = 0
	}
	binary.BigEndian.PutUint16(out[2*w:], nw)
	return out, true
}
