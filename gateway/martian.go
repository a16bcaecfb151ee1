package gateway

import (
	"net/netip"

	"tungate/packet"
)

// martian reports whether a packet must never be forwarded, as Linux's
// ip_route_input_slow / ip6_route_input refuse them: impossible sources
// (unspecified, loopback, multicast, class E and limited broadcast), and
// destinations that are not unicast on a link we route (loopback,
// unspecified, multicast, broadcast, an own subnet's broadcast address,
// IPv6 link-local either way).
func (pl *plane) martian(p *packet.Parsed) bool {
	if p.Version == 4 {
		s, d := p.Src[0], p.Dst[0]
		switch {
		case s == 0 || s == 127 || s >= 224: // 0/8, 127/8, 224/4, 240/4
			return true
		case d == 0 || d == 127 || d >= 224:
			return true
		}
		for _, b := range pl.bcast {
			if [4]byte(p.Dst[:4]) == b {
				return true
			}
		}
		return false
	}
	s, d := p.Src, p.Dst
	switch {
	case s[0] == 0xff || d[0] == 0xff: // multicast
		return true
	case s[0] == 0xfe && s[1]&0xc0 == 0x80, d[0] == 0xfe && d[1]&0xc0 == 0x80: // fe80::/10
		return true
	case s == (packet.Addr{}) || d == (packet.Addr{}):
		return true
	case s == loopback6 || d == loopback6:
		return true
	}
	return false
}

var loopback6 = packet.Addr{15: 1}

// subnetBroadcasts lists the directed broadcast addresses of the gateway's
// IPv4 subnets (prefixes shorter than /31).
func subnetBroadcasts(prefixes []netip.Prefix) [][4]byte {
	var out [][4]byte
	for _, p := range prefixes {
		if !p.Addr().Is4() || p.Bits() >= 31 {
			continue
		}
		a := p.Masked().Addr().As4()
		v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
		v |= 1<<(32-p.Bits()) - 1
		out = append(out, [4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
	}
	return out
}
