package nat

import (
	"math"
	"net/netip"

	"tungate/packet"
)

// PortUse is how full one source-NAT rule's port space is, for one family
// and protocol: what `tungate status` and the tungate_nat_ports_* metrics
// show.
type PortUse struct {
	// Rule is the rule's config path ("nat.masquerade[0]").
	Rule string
	// Masquerade is true for a masquerade rule, false for snat.
	Masquerade bool
	// Out is the rule's out interface, "" when it has none.
	Out    string
	Family uint8
	Proto  uint8
	// Used are the ports held on the rule's external addresses: by the
	// mappings of this rule and of any other rule translating to the same
	// address, and by port forwards' reservations (none of them can be
	// given out). It is the port sets' own count, kept as ports are taken
	// and freed, so reading it scans no bitmap.
	Used uint64
	// Capacity are the ports the rule gives out on all of its addresses:
	// its range (ports = "lo-hi"; without one the source port's class,
	// 1-65535 in all; ICMP identifiers 0-65535) times the addresses.
	Capacity uint64
}

// PortUse appends to buf the port use of every snat and masquerade rule in
// force: for TCP and UDP (those the rule matches) of each family it has an
// address of, and for ICMP once an echo was translated. It holds the
// engine's lock for a map lookup per rule and protocol (a walk of the port
// sets for an snat pool of several addresses), never per port.
func (e *Engine) PortUse(buf []PortUse) []PortUse {
	v := e.v.Load()
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, r := range v.rules.snat {
		out := ""
		if r.m.out >= 0 && r.m.out < len(v.ifaces) {
			out = v.ifaces[r.m.out].name
		}
		for _, fam := range [2]uint8{4, 6} {
			var addr packet.Addr
			var naddr uint64
			switch {
			case r.masq:
				if out == "" {
					continue // compile refuses masquerade without out; never here
				}
				fi := &v.ifaces[r.m.out]
				if fam == 4 && fi.has4 {
					addr, naddr = fi.addr4, 1
				} else if fam == 6 && fi.has6 {
					addr, naddr = fi.addr6, 1
				}
			case r.pool.fam == fam:
				addr, naddr = r.pool.at(0), r.pool.size
			}
			if naddr == 0 || !familyMatch(r.m.src, fam) || !familyMatch(r.m.dst, fam) {
				continue
			}
			icmp := uint8(packet.ProtoICMP)
			if fam == 6 {
				icmp = packet.ProtoICMPv6
			}
			for _, proto := range [3]uint8{packet.ProtoTCP, packet.ProtoUDP, icmp} {
				if !r.m.protoMatch(proto) {
					continue
				}
				used, ok := e.heldLocked(r, setKey{addr, fam, proto}, naddr)
				if !ok && proto == icmp {
					continue
				}
				size := uint64(65535)
				switch {
				case proto == icmp:
					size = 65536
				case r.ports.set:
					size = uint64(r.ports.hi) - uint64(r.ports.lo) + 1
				}
				capacity := uint64(math.MaxUint64)
				if naddr <= math.MaxUint64/size {
					capacity = size * naddr
				}
				buf = append(buf, PortUse{Rule: r.name, Masquerade: r.masq, Out: out, Family: fam, Proto: proto, Used: used, Capacity: capacity})
			}
		}
	}
	return buf
}

// heldLocked sums the held ports of k's set, or with naddr > 1 (an snat
// pool) of every set of the pool; false when there is none. e.mu is held.
func (e *Engine) heldLocked(r *snatRule, k setKey, naddr uint64) (uint64, bool) {
	if naddr == 1 {
		s := e.sets[k]
		if s == nil {
			return 0, false
		}
		return uint64(s.held), true
	}
	var n uint64
	ok := false
	for sk, s := range e.sets {
		if sk.fam == k.fam && sk.proto == k.proto && r.pool.contains(sk.addr.NetIP(sk.fam)) {
			n += uint64(s.held)
			ok = true
		}
	}
	return n, ok
}

// familyMatch reports whether prefixes l (none: any) admit family fam.
func familyMatch(l []netip.Prefix, fam uint8) bool {
	if len(l) == 0 {
		return true
	}
	for _, p := range l {
		if p.Addr().Is4() == (fam == 4) {
			return true
		}
	}
	return false
}
