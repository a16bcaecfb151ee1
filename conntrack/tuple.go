package conntrack

import (
	"encoding/binary"
	"math/bits"
	"net/netip"
	"strconv"

	"tungate/packet"
)

// Tuple identifies one direction of a connection. It is a small comparable
// value: usable as a map key, hashed without allocation, never a string.
//
// The meaning of SrcPort/DstPort is the tracker's (Linux's
// nf_conntrack_man_proto union): TCP/UDP ports; for ICMP echo SrcPort is the
// identifier and DstPort holds type<<8|code; for ESP both ports hold the
// halves of the SPI of packets in this direction; for GRE the key.
type Tuple struct {
	Src, Dst packet.Addr
	SrcPort  uint16
	DstPort  uint16
	Proto    uint8
	// Family is 4 or 6.
	Family uint8
}

// SrcAddr returns the source address as a netip.Addr.
func (t *Tuple) SrcAddr() netip.Addr { return t.Src.NetIP(t.Family) }

// DstAddr returns the destination address as a netip.Addr.
func (t *Tuple) DstAddr() netip.Addr { return t.Dst.NetIP(t.Family) }

// hash mixes the tuple into 64 bits with a per-table seed. It reads the
// fields as words instead of hashing a byte view so padding never matters.
func (t *Tuple) hash(seed uint64) uint64 {
	a := binary.LittleEndian.Uint64(t.Src[:8])
	b := binary.LittleEndian.Uint64(t.Src[8:])
	c := binary.LittleEndian.Uint64(t.Dst[:8])
	d := binary.LittleEndian.Uint64(t.Dst[8:])
	e := uint64(t.SrcPort) | uint64(t.DstPort)<<16 | uint64(t.Proto)<<32 | uint64(t.Family)<<40
	h := mix(a^seed, b^0x9e3779b97f4a7c15)
	h = mix(h^c, d^0xbf58476d1ce4e5b9)
	h = mix(h^e, seed^0x94d049bb133111eb)
	// Finish with splitmix64's avalanche: the bucket index is the low bits,
	// and without it tuples that differ only in a sequential port left runs
	// of buckets empty (early drop, which looks at eight neighbouring
	// buckets, then found nothing to drop).
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	return h ^ h>>31
}

func mix(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	return hi ^ lo
}

// Equal reports whether two tuples match ignoring nothing. It compares
// field by field, cheapest and most telling first, which the compiler
// inlines; == on the whole struct is a memequal call, the largest cost of
// a chain walk.
func (t *Tuple) Equal(o *Tuple) bool {
	return t.SrcPort == o.SrcPort && t.DstPort == o.DstPort && t.Proto == o.Proto &&
		t.Family == o.Family && t.Src == o.Src && t.Dst == o.Dst
}

// appendAddrs appends the Linux "src=… dst=… " part of a tuple; the
// protocol part that follows is the tracker's (AppendPorts).
func (t *Tuple) appendAddrs(b []byte) []byte {
	b = append(b, "src="...)
	b = t.SrcAddr().AppendTo(b)
	b = append(b, " dst="...)
	b = t.DstAddr().AppendTo(b)
	return append(b, ' ')
}

// appendPorts appends "sport=… dport=… ", the port form of TCP and UDP.
func appendPorts(b []byte, t *Tuple) []byte {
	b = append(b, "sport="...)
	b = strconv.AppendUint(b, uint64(t.SrcPort), 10)
	b = append(b, " dport="...)
	b = strconv.AppendUint(b, uint64(t.DstPort), 10)
	return append(b, ' ')
}

// tupleAddrs fills t's addresses, protocol and family from p and zeroes
// the ports; the tracker fills the protocol part.
func tupleAddrs(p *packet.Parsed, t *Tuple) {
	t.Src, t.Dst = p.Src, p.Dst
	t.Proto = p.Proto
	t.Family = p.Version
	t.SrcPort, t.DstPort = 0, 0
}

// invertAddrs fills inv with orig's addresses swapped; the tracker fills the
// protocol part.
func invertAddrs(orig, inv *Tuple) {
	inv.Src, inv.Dst = orig.Dst, orig.Src
	inv.Proto, inv.Family = orig.Proto, orig.Family
}

// Mask selects which fields of a tuple an expectation compares.
type Mask struct {
	Src, Dst         packet.Addr
	SrcPort, DstPort uint16
}

// FullMask compares every field.
var FullMask = Mask{
	Src:     packet.Addr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
	Dst:     packet.Addr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
	SrcPort: 0xffff, DstPort: 0xffff,
}

// matches reports whether t equals want under m (proto and family always
// compared).
func (m *Mask) matches(want, t *Tuple) bool {
	if want.Proto != t.Proto || want.Family != t.Family {
		return false
	}
	if want.SrcPort&m.SrcPort != t.SrcPort&m.SrcPort || want.DstPort&m.DstPort != t.DstPort&m.DstPort {
		return false
	}
	for i := range 16 {
		if want.Src[i]&m.Src[i] != t.Src[i]&m.Src[i] || want.Dst[i]&m.Dst[i] != t.Dst[i]&m.Dst[i] {
			return false
		}
	}
	return true
}
