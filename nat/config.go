package nat

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"tungate/packet"
)

// Config is the [nat] section.
type Config struct {
	// Masquerade rules source-NAT to the out interface's own address.
	Masquerade []Rule `toml:"masquerade"`
	// SNAT rules source-NAT to a configured address or range. They are
	// tried before the masquerade rules; the first match decides.
	SNAT []Rule `toml:"snat"`
	// DNAT rules are port forwards.
	DNAT []DNATRule `toml:"dnat"`
	// Netmap rules map a prefix 1:1 onto another (NPTv6 for IPv6).
	Netmap []NetmapRule `toml:"netmap"`
}

// Rule is one [[nat.masquerade]] or [[nat.snat]] entry. Its match keys
// (out, src, dst, proto, sport, dport) select new connections leaving the
// gateway; to/ports/mapping/filtering/random say how they are translated.
type Rule struct {
	// Out is the interface the connection leaves by; required for
	// masquerade, whose address comes from it.
	Out string `toml:"out"`
	// Src and Dst are prefixes (or single addresses) to match; empty
	// matches all.
	Src StringList `toml:"src"`
	Dst StringList `toml:"dst"`
	// Proto is "tcp", "udp", "icmp", "icmpv6", another protocol name or
	// number; empty matches all.
	Proto string `toml:"proto"`
	// SPort and DPort match ports ("8080" or "8000-8009"); with no proto
	// they match TCP and UDP.
	SPort PortRange `toml:"sport"`
	DPort PortRange `toml:"dport"`
	// To is the SNAT address or range "198.18.0.10-198.18.0.20"; snat
	// only. With a range every flow of one internal address gets the same
	// external address (paired pooling, RFC 4787 REQ-2).
	To string `toml:"to"`
	// Ports is the range translated ports come from ("1024-65535"). By
	// default the original port is kept when free and otherwise one is
	// taken from the same class (1-1023 or 1024-65535, RFC 4787 REQ-3).
	Ports PortRange `toml:"ports"`
	// Mapping is "endpoint-independent" (default) or
	// "address-port-dependent" (RFC 4787 section 4.1).
	Mapping string `toml:"mapping"`
	// Filtering is "address-port-dependent" (default) or
	// "endpoint-independent" (RFC 4787 section 5).
	Filtering string `toml:"filtering"`
	// Random allocates ports at random instead of preserving them (the
	// mapping stays endpoint-independent).
	Random bool `toml:"random"`
}

// DNATRule is one [[nat.dnat]] entry, a port forward.
type DNATRule struct {
	// In is the interface the connection arrives on; empty matches all.
	In string `toml:"in"`
	// Src matches the client; Dst the address it connects to (default:
	// the gateway's own addresses, so a forward serves the WAN and, by
	// hairpinning, the LAN).
	Src StringList `toml:"src"`
	Dst StringList `toml:"dst"`
	// Proto as in Rule; with dport and no proto, TCP and UDP.
	Proto string `toml:"proto"`
	// DPort is the forwarded port or range.
	DPort PortRange `toml:"dport"`
	// To is one target or a list used round-robin: "10.10.0.2:80",
	// "[fd10::2]:80", "10.10.0.3:9000-9009" (a range maps offset-wise
	// from dport) or an address alone, "10.10.0.2" or "[fd10::2]" (port
	// kept). IPv6 is always bracketed so a port cannot be misread.
	To StringList `toml:"to"`
}

// NetmapRule is one [[nat.netmap]] entry: a 1:1 mapping between an internal
// and an external prefix of the same length, both ways: connections from
// From leaving by Out get the matching address of To, connections arriving
// by Out for To reach the matching address of From. IPv6 mappings are
// checksum-neutral (NPTv6, RFC 6296), IPv4 ones are Linux's NETMAP.
type NetmapRule struct {
	// Out is the external interface.
	Out string `toml:"out"`
	// From is the internal prefix, To the external one.
	From string `toml:"from"`
	To   string `toml:"to"`
}

// StringList is a list of strings that TOML may also give as a single
// string: `src = "10.0.0.0/8"` or `src = ["10.0.0.0/8", "fd00::/8"]`.
type StringList []string

// UnmarshalTOML accepts a string or an array of strings.
func (l *StringList) UnmarshalTOML(v any) error {
	switch v := v.(type) {
	case string:
		*l = StringList{v}
		return nil
	case []any:
		out := make(StringList, 0, len(v))
		for _, e := range v {
			s, ok := e.(string)
			if !ok {
				return fmt.Errorf("expected a string or a list of strings, got %v", v)
			}
			out = append(out, s)
		}
		*l = out
		return nil
	}
	return fmt.Errorf("expected a string or a list of strings, got %v", v)
}

// PortRange is a port or an inclusive range, given in TOML as a number
// (8080) or a string ("8000-8009"). Empty means none.
type PortRange string

// UnmarshalTOML accepts an integer or a string.
func (r *PortRange) UnmarshalTOML(v any) error {
	switch v := v.(type) {
	case int64:
		*r = PortRange(strconv.FormatInt(v, 10))
		return nil
	case string:
		*r = PortRange(v)
		return nil
	}
	return fmt.Errorf("expected a port number or a \"low-high\" string, got %v", v)
}

// parse returns the range; ok false on a malformed one. Port 0 is not a
// port.
func (r PortRange) parse() (lo, hi uint16, ok bool) {
	s := strings.TrimSpace(string(r))
	a, b, isRange := strings.Cut(s, "-")
	l, err := strconv.ParseUint(strings.TrimSpace(a), 10, 16)
	if err != nil || l == 0 {
		return 0, 0, false
	}
	h := l
	if isRange {
		h, err = strconv.ParseUint(strings.TrimSpace(b), 10, 16)
		if err != nil || h < l {
			return 0, 0, false
		}
	}
	return uint16(l), uint16(h), true
}

// Validate checks the section against the gateway's interface names and
// reports the first error, naming the key path and the offending value.
func (c *Config) Validate(ifaces []string) error {
	_, err := compile(c, ifaces, nil)
	return err
}

// portRange is an inclusive compiled range; set false means "any".
type portRange struct {
	lo, hi uint16
	set    bool
}

func (r portRange) contains(p uint16) bool { return !r.set || (p >= r.lo && p <= r.hi) }

// Protocol matching values besides a protocol number.
const (
	protoAny    = -1
	protoTCPUDP = -2 // ports given without a protocol
)

// matcher is the compiled match part of a rule.
type matcher struct {
	in, out      int // interface index, -1 any
	src, dst     []netip.Prefix
	proto        int
	sport, dport portRange
}

func (m *matcher) protoMatch(p uint8) bool {
	switch m.proto {
	case protoAny:
		return true
	case protoTCPUDP:
		return p == packet.ProtoTCP || p == packet.ProtoUDP
	}
	return int(p) == m.proto
}

func prefixesMatch(l []netip.Prefix, a netip.Addr) bool {
	if len(l) == 0 {
		return true
	}
	for _, p := range l {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// snatRule is a compiled snat or masquerade rule.
type snatRule struct {
	name   string // "nat.snat[0]", for logs
	m      matcher
	masq   bool
	pool   addrPool // snat only
	ports  portRange
	eim    bool // endpoint-independent mapping
	eif    bool // endpoint-independent filtering
	random bool
	// ownerIface is the interface whose addresses the rule translates to
	// (masquerade: out), -1 when unknown; used to pick the rule for a
	// hairpinned client.
	ownerIface int
	// sets caches the port sets of a rule with one external address per
	// family (masquerade, a one-address snat) by family and protocol (TCP,
	// UDP, ICMP), sparing the NEW path a map lookup. Guarded by Engine.mu.
	sets [2][3]*portSet
}

// addrPool is an SNAT address range of one family, lo..lo+size-1.
type addrPool struct {
	fam  uint8
	lo   netip.Addr
	size uint64
}

// at returns the i-th address of the pool.
func (p *addrPool) at(i uint64) packet.Addr {
	b := p.lo.As16()
	if p.fam == 4 {
		v := p.lo.As4()
		n := uint32(v[0])<<24 | uint32(v[1])<<16 | uint32(v[2])<<8 | uint32(v[3])
		n += uint32(i)
		var a packet.Addr
		a[0], a[1], a[2], a[3] = byte(n>>24), byte(n>>16), byte(n>>8), byte(n)
		return a
	}
	var hi, lo uint64
	for k := 0; k < 8; k++ {
		hi = hi<<8 | uint64(b[k])
		lo = lo<<8 | uint64(b[8+k])
	}
	nlo := lo + i
	if nlo < lo {
		hi++
	}
	var a packet.Addr
	for k := 7; k >= 0; k-- {
		a[k] = byte(hi)
		a[8+k] = byte(nlo)
		hi >>= 8
		nlo >>= 8
	}
	return a
}

func (p *addrPool) contains(a netip.Addr) bool {
	if p.size == 0 || a.BitLen() != p.lo.BitLen() || a.Less(p.lo) {
		return false
	}
	last := p.at(p.size - 1)
	return !last.NetIP(p.fam).Less(a)
}

// target is one DNAT destination.
type target struct {
	addr    packet.Addr
	lo, hi  uint16
	hasPort bool
}

// dnatRule is a compiled port forward.
type dnatRule struct {
	name    string
	m       matcher
	ownDst  bool // dst defaulted to the gateway's own addresses
	targets [2][]target
	rr      [2]rrCounter
}

// netmapRule is a compiled 1:1 prefix mapping.
type netmapRule struct {
	name     string
	out      int
	from, to netip.Prefix
	fam      uint8
}

// compiled is the checked, indexed form of a Config.
type compiled struct {
	snat   []*snatRule // snat rules, then masquerade rules: the try order
	dnat   []*dnatRule
	netmap []*netmapRule
}

var protoNames = map[string]int{
	"tcp": packet.ProtoTCP, "udp": packet.ProtoUDP, "icmp": packet.ProtoICMP,
	"icmpv6": packet.ProtoICMPv6, "ipv6-icmp": packet.ProtoICMPv6,
	"gre": packet.ProtoGRE, "esp": packet.ProtoESP, "ah": packet.ProtoAH,
	"sctp": packet.ProtoSCTP,
}

func parseProto(s string) (int, bool) {
	if s == "" {
		return protoAny, true
	}
	if n, ok := protoNames[strings.ToLower(s)]; ok {
		return n, true
	}
	n, err := strconv.ParseUint(s, 10, 8)
	if err != nil {
		return 0, false
	}
	return int(n), true
}

func parsePrefix(s string) (netip.Prefix, bool) {
	if p, err := netip.ParsePrefix(s); err == nil {
		if p.Addr().Is4In6() {
			return netip.Prefix{}, false
		}
		return p.Masked(), true
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, false
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), true
}

// parseTarget parses "addr", "addr:port", "addr:lo-hi", "[v6]:port".
func parseTarget(s string) (target, netip.Addr, bool) {
	var t target
	host, ports := s, ""
	switch {
	case strings.HasPrefix(s, "["):
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return t, netip.Addr{}, false
		}
		host = s[1:end]
		rest := s[end+1:]
		if rest != "" {
			if !strings.HasPrefix(rest, ":") {
				return t, netip.Addr{}, false
			}
			ports = rest[1:]
			if ports == "" {
				return t, netip.Addr{}, false
			}
		}
	case strings.Count(s, ":") == 1:
		host, ports, _ = strings.Cut(s, ":")
		if ports == "" {
			return t, netip.Addr{}, false
		}
	case strings.Contains(s, ":"):
		// A bare IPv6 address: "fd10::2:80" could mean port 80, so IPv6
		// targets are written in brackets, "[fd10::2]:80" or "[fd10::2]".
		return t, netip.Addr{}, false
	}
	a, err := netip.ParseAddr(host)
	if err != nil || a.Zone() != "" || a.Is4In6() {
		return t, netip.Addr{}, false
	}
	if strings.HasPrefix(s, "[") && !a.Is6() {
		return t, netip.Addr{}, false
	}
	t.addr = packet.AddrFrom(a)
	if ports != "" {
		lo, hi, ok := PortRange(ports).parse()
		if !ok || strings.Contains(ports, " ") {
			return t, netip.Addr{}, false
		}
		t.lo, t.hi, t.hasPort = lo, hi, true
	}
	return t, a, true
}

// parsePool parses "addr" or "lo-hi" of one family.
func parsePool(s string) (addrPool, bool) {
	a, b, isRange := strings.Cut(s, "-")
	lo, err := netip.ParseAddr(strings.TrimSpace(a))
	if err != nil || lo.Zone() != "" || lo.Is4In6() {
		return addrPool{}, false
	}
	hi := lo
	if isRange {
		hi, err = netip.ParseAddr(strings.TrimSpace(b))
		if err != nil || hi.Zone() != "" || hi.BitLen() != lo.BitLen() || hi.Less(lo) {
			return addrPool{}, false
		}
	}
	p := addrPool{fam: 4, lo: lo}
	if lo.Is6() {
		p.fam = 6
	}
	l16, h16 := lo.As16(), hi.As16()
	var lh, ll, hh, hl uint64
	for k := 0; k < 8; k++ {
		lh, ll = lh<<8|uint64(l16[k]), ll<<8|uint64(l16[8+k])
		hh, hl = hh<<8|uint64(h16[k]), hl<<8|uint64(h16[8+k])
	}
	// Sizes up to 2^32 addresses: more is a configuration mistake.
	if hh != lh && !(hh == lh+1 && hl < ll) {
		return addrPool{}, false
	}
	d := hl - ll
	if d >= 1<<32 {
		return addrPool{}, false
	}
	p.size = d + 1
	return p, true
}

// compile checks c and builds the compiled form. ifaces names interfaces
// by index; own, when not nil, gives each interface's addresses.
func compile(c *Config, ifaces []string, own []Iface) (*compiled, error) {
	idx := func(path, key, name string) (int, error) {
		if name == "" {
			return -1, nil
		}
		for i, n := range ifaces {
			if n == name {
				return i, nil
			}
		}
		return 0, fmt.Errorf("%s.%s: unknown interface %q", path, key, name)
	}
	prefixes := func(path, key string, l StringList) ([]netip.Prefix, error) {
		var out []netip.Prefix
		for _, s := range l {
			p, ok := parsePrefix(strings.TrimSpace(s))
			if !ok {
				return nil, fmt.Errorf("%s.%s: invalid prefix %q", path, key, s)
			}
			out = append(out, p)
		}
		return out, nil
	}
	ports := func(path, key string, r PortRange) (portRange, error) {
		if r == "" {
			return portRange{}, nil
		}
		lo, hi, ok := r.parse()
		if !ok {
			return portRange{}, fmt.Errorf("%s.%s: invalid port or range %q", path, key, string(r))
		}
		return portRange{lo: lo, hi: hi, set: true}, nil
	}
	match := func(path, protoS string, src, dst StringList, sport, dport PortRange) (matcher, error) {
		m := matcher{in: -1, out: -1}
		var err error
		p, ok := parseProto(protoS)
		if !ok {
			return m, fmt.Errorf("%s.proto: unknown protocol %q", path, protoS)
		}
		m.proto = p
		if m.src, err = prefixes(path, "src", src); err != nil {
			return m, err
		}
		if m.dst, err = prefixes(path, "dst", dst); err != nil {
			return m, err
		}
		if m.sport, err = ports(path, "sport", sport); err != nil {
			return m, err
		}
		if m.dport, err = ports(path, "dport", dport); err != nil {
			return m, err
		}
		if m.sport.set || m.dport.set {
			key := "dport"
			if !m.dport.set {
				key = "sport"
			}
			switch m.proto {
			case protoAny:
				m.proto = protoTCPUDP
			case packet.ProtoTCP, packet.ProtoUDP:
			default:
				return m, fmt.Errorf("%s.%s: ports need proto \"tcp\" or \"udp\", not %q", path, key, protoS)
			}
		}
		return m, nil
	}

	out := &compiled{}
	snat := func(section string, rules []Rule, masq bool) error {
		for i := range rules {
			r := &rules[i]
			path := fmt.Sprintf("nat.%s[%d]", section, i)
			m, err := match(path, r.Proto, r.Src, r.Dst, r.SPort, r.DPort)
			if err != nil {
				return err
			}
			if m.out, err = idx(path, "out", r.Out); err != nil {
				return err
			}
			sr := &snatRule{name: path, m: m, masq: masq, eim: true, ownerIface: m.out}
			if masq {
				if r.Out == "" {
					return fmt.Errorf("%s.out: required (masquerade uses the out interface's address)", path)
				}
				if r.To != "" {
					return fmt.Errorf("%s.to: %q not allowed (masquerade uses the out interface's address; use nat.snat)", path, r.To)
				}
			} else {
				if r.To == "" {
					return fmt.Errorf("%s.to: required", path)
				}
				pool, ok := parsePool(strings.TrimSpace(r.To))
				if !ok {
					return fmt.Errorf("%s.to: invalid address or range %q", path, r.To)
				}
				sr.pool = pool
				if sr.ownerIface < 0 {
					sr.ownerIface = ifaceOwning(own, pool)
				}
			}
			if sr.ports, err = ports(path, "ports", r.Ports); err != nil {
				return err
			}
			switch r.Mapping {
			case "", "endpoint-independent":
			case "address-port-dependent":
				sr.eim = false
			default:
				return fmt.Errorf("%s.mapping: unknown mapping %q (want \"endpoint-independent\" or \"address-port-dependent\")", path, r.Mapping)
			}
			switch r.Filtering {
			case "", "address-port-dependent":
			case "endpoint-independent":
				sr.eif = true
			default:
				return fmt.Errorf("%s.filtering: unknown filtering %q (want \"address-port-dependent\" or \"endpoint-independent\")", path, r.Filtering)
			}
			if sr.eif && !sr.eim {
				return fmt.Errorf("%s.filtering: %q needs mapping \"endpoint-independent\"", path, r.Filtering)
			}
			sr.random = r.Random
			out.snat = append(out.snat, sr)
		}
		return nil
	}
	if err := snat("snat", c.SNAT, false); err != nil {
		return nil, err
	}
	if err := snat("masquerade", c.Masquerade, true); err != nil {
		return nil, err
	}

	for i := range c.DNAT {
		r := &c.DNAT[i]
		path := fmt.Sprintf("nat.dnat[%d]", i)
		m, err := match(path, r.Proto, r.Src, r.Dst, "", r.DPort)
		if err != nil {
			return nil, err
		}
		if m.in, err = idx(path, "in", r.In); err != nil {
			return nil, err
		}
		dr := &dnatRule{name: path, m: m, ownDst: len(m.dst) == 0}
		if len(r.To) == 0 {
			return nil, fmt.Errorf("%s.to: required", path)
		}
		for _, s := range r.To {
			t, a, ok := parseTarget(strings.TrimSpace(s))
			if !ok {
				return nil, fmt.Errorf("%s.to: invalid address:port %q", path, s)
			}
			if t.hasPort {
				if m.proto != protoTCPUDP && m.proto != packet.ProtoTCP && m.proto != packet.ProtoUDP {
					if m.proto == protoAny {
						m.proto = protoTCPUDP
						dr.m.proto = protoTCPUDP
					} else {
						return nil, fmt.Errorf("%s.to: %q has a port but proto %q has none", path, s, r.Proto)
					}
				}
				if t.hi != t.lo {
					n := int(t.hi) - int(t.lo) + 1
					if !m.dport.set {
						return nil, fmt.Errorf("%s.to: port range in %q needs a dport range of %d ports", path, s, n)
					}
					if dn := int(m.dport.hi) - int(m.dport.lo) + 1; dn != n {
						return nil, fmt.Errorf("%s.to: port range in %q has %d ports, dport %q has %d", path, s, n, string(r.DPort), dn)
					}
				}
			}
			f := 0
			if a.Is6() {
				f = 1
			}
			dr.targets[f] = append(dr.targets[f], t)
		}
		out.dnat = append(out.dnat, dr)
	}

	for i := range c.Netmap {
		r := &c.Netmap[i]
		path := fmt.Sprintf("nat.netmap[%d]", i)
		nr := &netmapRule{name: path}
		var err error
		if nr.out, err = idx(path, "out", r.Out); err != nil {
			return nil, err
		}
		if r.Out == "" {
			return nil, fmt.Errorf("%s.out: required", path)
		}
		from, err1 := netip.ParsePrefix(strings.TrimSpace(r.From))
		if err1 != nil || from.Addr().Is4In6() {
			return nil, fmt.Errorf("%s.from: invalid prefix %q", path, r.From)
		}
		to, err2 := netip.ParsePrefix(strings.TrimSpace(r.To))
		if err2 != nil || to.Addr().Is4In6() {
			return nil, fmt.Errorf("%s.to: invalid prefix %q", path, r.To)
		}
		if from.Addr().BitLen() != to.Addr().BitLen() {
			return nil, fmt.Errorf("%s.to: %q is not of the family of from %q", path, r.To, r.From)
		}
		if from.Bits() != to.Bits() {
			return nil, fmt.Errorf("%s.to: prefix length of %q differs from from %q", path, r.To, r.From)
		}
		if from.Addr().Is6() && from.Bits() > 64 {
			return nil, fmt.Errorf("%s.from: NPTv6 prefix %q longer than /64 (RFC 6296)", path, r.From)
		}
		nr.from, nr.to = from.Masked(), to.Masked()
		nr.fam = 4
		if from.Addr().Is6() {
			nr.fam = 6
		}
		out.netmap = append(out.netmap, nr)
	}
	return out, nil
}

// ifaceOwning returns the interface whose addresses include one of the
// pool's, -1 when none does.
func ifaceOwning(own []Iface, pool addrPool) int {
	for i, ifc := range own {
		for _, p := range ifc.Addrs {
			if pool.contains(p.Addr().Unmap()) {
				return i
			}
			if p.Contains(pool.lo) {
				return i
			}
		}
	}
	return -1
}
