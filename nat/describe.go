package nat

import (
	"bufio"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
)

// Describe writes what the section does, one line per rule in the order
// rules are tried (snat, masquerade, dnat, netmap), with addresses and
// port ranges resolved: the view `tungate check` prints. ifaces are the
// gateway's interfaces with their own addresses.
func (c *Config) Describe(w io.Writer, ifaces []Iface) error {
	names := make([]string, len(ifaces))
	for i, f := range ifaces {
		names[i] = f.Name
	}
	comp, err := compile(c, names, ifaces)
	if err != nil {
		return err
	}
	bw := bufio.NewWriter(w)
	ifname := func(i int) string {
		if i < 0 || i >= len(names) {
			return "?"
		}
		return names[i]
	}
	for _, r := range comp.snat {
		fmt.Fprintf(bw, "%s: %s", r.name, describeMatch(&r.m, ifname))
		if r.masq {
			fmt.Fprintf(bw, " -> masquerade %s", strings.Join(masqAddrs(ifaces[r.m.out]), ", "))
		} else {
			fmt.Fprintf(bw, " -> snat %s", poolText(&r.pool))
		}
		switch {
		case r.ports.set:
			fmt.Fprintf(bw, " ports %s", rangeText(r.ports))
		case r.random:
			bw.WriteString(" ports random")
		default:
			bw.WriteString(" ports preserved")
		}
		if r.random && r.ports.set {
			bw.WriteString(" random")
		}
		mapping, filtering := "endpoint-independent", "address-port-dependent"
		if !r.eim {
			mapping = "address-port-dependent"
		}
		if r.eif {
			filtering = "endpoint-independent"
		}
		fmt.Fprintf(bw, " mapping %s filtering %s\n", mapping, filtering)
	}
	for _, r := range comp.dnat {
		fmt.Fprintf(bw, "%s: %s", r.name, describeMatch(&r.m, ifname))
		if r.ownDst {
			fmt.Fprintf(bw, " dst own addresses (%s)", strings.Join(ownAddrs(ifaces), ", "))
		}
		var ts []string
		for f, fam := range [2]uint8{4, 6} {
			for _, t := range r.targets[f] {
				ts = append(ts, targetText(t, fam))
			}
		}
		how := ""
		if len(r.targets[0]) > 1 || len(r.targets[1]) > 1 {
			how = " (round-robin)"
		}
		fmt.Fprintf(bw, " -> dnat %s%s\n", strings.Join(ts, ", "), how)
	}
	for _, r := range comp.netmap {
		kind := "netmap"
		if r.fam == 6 {
			kind = "nptv6"
		}
		fmt.Fprintf(bw, "%s: out %s %s %s <-> %s\n", r.name, ifname(r.out), kind, r.from, r.to)
	}
	return bw.Flush()
}

// masqAddrs are the addresses masquerade translates to on an interface:
// the first IPv4 one and the first global IPv6 one (a link-local one only
// when there is nothing else), as New picks them.
func masqAddrs(f Iface) []string {
	var a4, a6 netip.Addr
	for _, p := range f.Addrs {
		a := p.Addr().Unmap()
		switch {
		case a.Is4():
			if !a4.IsValid() {
				a4 = a
			}
		case !a6.IsValid() || (!a.IsLinkLocalUnicast() && a6.IsLinkLocalUnicast()):
			a6 = a
		}
	}
	var out []string
	for _, a := range []netip.Addr{a4, a6} {
		if a.IsValid() {
			out = append(out, a.String())
		}
	}
	if len(out) == 0 {
		return []string{"(no address on " + f.Name + ")"}
	}
	return out
}

// ownAddrs lists every interface's own addresses: what a DNAT rule with no
// dst matches.
func ownAddrs(ifaces []Iface) []string {
	var out []string
	for _, f := range ifaces {
		for _, p := range f.Addrs {
			out = append(out, p.Addr().Unmap().String())
		}
	}
	if len(out) == 0 {
		return []string{"none"}
	}
	return out
}

func describeMatch(m *matcher, ifname func(int) string) string {
	var parts []string
	if m.in >= 0 {
		parts = append(parts, "in "+ifname(m.in))
	}
	if m.out >= 0 {
		parts = append(parts, "out "+ifname(m.out))
	}
	if len(m.src) > 0 {
		parts = append(parts, "src "+prefixesText(m.src))
	}
	if len(m.dst) > 0 {
		parts = append(parts, "dst "+prefixesText(m.dst))
	}
	switch m.proto {
	case protoAny:
	case protoTCPUDP:
		parts = append(parts, "proto tcp,udp")
	default:
		parts = append(parts, "proto "+protoText(m.proto))
	}
	if m.sport.set {
		parts = append(parts, "sport "+rangeText(m.sport))
	}
	if m.dport.set {
		parts = append(parts, "dport "+rangeText(m.dport))
	}
	if len(parts) == 0 {
		return "all"
	}
	return strings.Join(parts, " ")
}

func prefixesText(ps []netip.Prefix) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}

func protoText(p int) string {
	for name, n := range protoNames {
		if n == p && name != "ipv6-icmp" {
			return name
		}
	}
	return strconv.Itoa(p)
}

func rangeText(r portRange) string {
	if r.lo == r.hi {
		return strconv.Itoa(int(r.lo))
	}
	return fmt.Sprintf("%d-%d", r.lo, r.hi)
}

func poolText(p *addrPool) string {
	if p.size <= 1 {
		return p.lo.String()
	}
	return fmt.Sprintf("%s-%s (%d addresses)", p.lo, p.at(p.size-1).NetIP(p.fam), p.size)
}

func targetText(t target, fam uint8) string {
	a := t.addr.NetIP(fam).String()
	if fam == 6 {
		a = "[" + a + "]"
	}
	if !t.hasPort {
		return a + " (port kept)"
	}
	return a + ":" + rangeText(portRange{lo: t.lo, hi: t.hi, set: true})
}
