package nat

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"tungate/confdiag"
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

// Bounds returns the range's ends; ok is false for an empty or malformed
// range.
func (r PortRange) Bounds() (lo, hi uint16, ok bool) { return r.parse() }

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
// reports every error (joined), each a *confdiag.Error naming the key path
// and the offending value.
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
	name string // "nat.snat[0]", for logs
	// id names the rule in mapping keys, stable across a reload that
	// keeps the rule (Prepared.Apply); -1 for the hairpin fallback.
	id int32
	// sig is the rule's source and out interface: what a reload compares.
	sig    string
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

// parsePrefix parses a prefix or a single address (a host prefix).
func parsePrefix(s string) (netip.Prefix, error) {
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, errors.New(confdiag.Reason(err, s))
		}
		if a.Zone() != "" {
			return netip.Prefix{}, errors.New("an address with a zone is not a prefix")
		}
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, errors.New(confdiag.Reason(err, s))
	}
	if p.Addr().Is4In6() {
		return netip.Prefix{}, errors.New("IPv4-mapped IPv6 prefix; write the IPv4 prefix")
	}
	return p.Masked(), nil
}

// parseTarget parses "addr", "addr:port", "addr:lo-hi", "[v6]:port".
func parseTarget(s string) (target, netip.Addr, error) {
	var t target
	host, ports := s, ""
	switch {
	case strings.HasPrefix(s, "["):
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return t, netip.Addr{}, errors.New("missing ']'")
		}
		host = s[1:end]
		rest := s[end+1:]
		if rest != "" {
			if !strings.HasPrefix(rest, ":") {
				return t, netip.Addr{}, fmt.Errorf("unexpected %q after ']'", rest)
			}
			ports = rest[1:]
			if ports == "" {
				return t, netip.Addr{}, errors.New("empty port after ':'")
			}
		}
	case strings.Count(s, ":") == 1:
		host, ports, _ = strings.Cut(s, ":")
		if ports == "" {
			return t, netip.Addr{}, errors.New("empty port after ':'")
		}
	case strings.Contains(s, ":"):
		// A bare IPv6 address: "fd10::2:80" could mean port 80, so IPv6
		// targets are written in brackets, "[fd10::2]:80" or "[fd10::2]".
		return t, netip.Addr{}, errors.New("IPv6 targets are written in brackets, \"[fd10::2]:80\" or \"[fd10::2]\"")
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return t, netip.Addr{}, errors.New(confdiag.Reason(err, host))
	}
	if a.Zone() != "" || a.Is4In6() {
		return t, netip.Addr{}, errors.New("an address with a zone or an IPv4-mapped one is not a target")
	}
	if strings.HasPrefix(s, "[") && !a.Is6() {
		return t, netip.Addr{}, errors.New("brackets are for IPv6 addresses")
	}
	t.addr = packet.AddrFrom(a)
	if ports != "" {
		lo, hi, ok := PortRange(ports).parse()
		if !ok || strings.Contains(ports, " ") {
			return t, netip.Addr{}, fmt.Errorf("bad port or range %q (want 1-65535 or \"low-high\")", ports)
		}
		t.lo, t.hi, t.hasPort = lo, hi, true
	}
	return t, a, nil
}

// parsePool parses "addr" or "lo-hi" of one family.
func parsePool(s string) (addrPool, error) {
	a, b, isRange := strings.Cut(s, "-")
	a, b = strings.TrimSpace(a), strings.TrimSpace(b)
	lo, err := netip.ParseAddr(a)
	if err != nil {
		return addrPool{}, errors.New(confdiag.Reason(err, a))
	}
	if lo.Zone() != "" || lo.Is4In6() {
		return addrPool{}, errors.New("an address with a zone or an IPv4-mapped one is not a pool")
	}
	hi := lo
	if isRange {
		hi, err = netip.ParseAddr(b)
		switch {
		case err != nil:
			return addrPool{}, errors.New(confdiag.Reason(err, b))
		case hi.Zone() != "":
			return addrPool{}, errors.New("an address with a zone is not a pool")
		case hi.BitLen() != lo.BitLen():
			return addrPool{}, errors.New("the two ends are of different families")
		case hi.Less(lo):
			return addrPool{}, errors.New("the range ends before it starts")
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
	tooBig := errors.New("more than 2^32 addresses")
	if hh != lh && !(hh == lh+1 && hl < ll) {
		return addrPool{}, tooBig
	}
	d := hl - ll
	if d >= 1<<32 {
		return addrPool{}, tooBig
	}
	p.size = d + 1
	return p, nil
}

// compile checks c and builds the compiled form. ifaces names interfaces
// by index; own, when not nil, gives each interface's addresses. Every
// error of the section is reported, each naming its key path and value.
func compile(c *Config, ifaces []string, own []Iface) (*compiled, error) {
	cc := &ruleCompiler{ifaces: ifaces, own: own, out: &compiled{}}
	for i := range c.SNAT {
		cc.snat(fmt.Sprintf("nat.snat[%d]", i), &c.SNAT[i], false)
	}
	for i := range c.Masquerade {
		cc.snat(fmt.Sprintf("nat.masquerade[%d]", i), &c.Masquerade[i], true)
	}
	for i := range c.DNAT {
		cc.dnat(fmt.Sprintf("nat.dnat[%d]", i), &c.DNAT[i])
	}
	for i := range c.Netmap {
		cc.netmap(fmt.Sprintf("nat.netmap[%d]", i), &c.Netmap[i])
	}
	if err := cc.errs.Err(); err != nil {
		return nil, err
	}
	return cc.out, nil
}

// ruleCompiler compiles the rules of a section one kind at a time,
// collecting every error.
type ruleCompiler struct {
	ifaces []string
	own    []Iface
	out    *compiled
	errs   confdiag.List
}

// iface resolves an interface name to its index; "" is -1 (any).
func (cc *ruleCompiler) iface(path, key, name string) int {
	if name == "" {
		return -1
	}
	for i, n := range cc.ifaces {
		if n == name {
			return i
		}
	}
	cc.errs.Addf(path+"."+key, "unknown interface %q%s", name, confdiag.Suggest(name, cc.ifaces))
	return -1
}

func (cc *ruleCompiler) prefixes(path, key string, l StringList) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range l {
		p, err := parsePrefix(strings.TrimSpace(s))
		if err != nil {
			cc.errs.Addf(path+"."+key, "invalid prefix %q: %v", s, err)
			continue
		}
		out = append(out, p)
	}
	return out
}

func (cc *ruleCompiler) ports(path, key string, r PortRange) portRange {
	if r == "" {
		return portRange{}
	}
	lo, hi, ok := r.parse()
	if !ok {
		cc.errs.Addf(path+"."+key, "invalid port or range %q (want 1-65535 or \"low-high\")", string(r))
		return portRange{}
	}
	return portRange{lo: lo, hi: hi, set: true}
}

// match compiles the match keys common to every kind.
func (cc *ruleCompiler) match(path, protoS string, src, dst StringList, sport, dport PortRange) matcher {
	m := matcher{in: -1, out: -1, proto: protoAny}
	p, ok := parseProto(protoS)
	if ok {
		m.proto = p
	} else {
		cc.errs.Addf(path+".proto", "unknown protocol %q", protoS)
	}
	m.src = cc.prefixes(path, "src", src)
	m.dst = cc.prefixes(path, "dst", dst)
	m.sport = cc.ports(path, "sport", sport)
	m.dport = cc.ports(path, "dport", dport)
	if (m.sport.set || m.dport.set) && ok {
		key := "dport"
		if !m.dport.set {
			key = "sport"
		}
		switch m.proto {
		case protoAny:
			m.proto = protoTCPUDP
		case packet.ProtoTCP, packet.ProtoUDP:
		default:
			cc.errs.Addf(path+"."+key, "ports need proto \"tcp\" or \"udp\", not %q", protoS)
		}
	}
	return m
}

// snat compiles one [[nat.snat]] or [[nat.masquerade]] rule.
func (cc *ruleCompiler) snat(path string, r *Rule, masq bool) {
	n := cc.errs.Len()
	m := cc.match(path, r.Proto, r.Src, r.Dst, r.SPort, r.DPort)
	m.out = cc.iface(path, "out", r.Out)
	sr := &snatRule{name: path, m: m, masq: masq, eim: true, ownerIface: m.out,
		sig: fmt.Sprintf("%t %d %+v", masq, m.out, *r)}
	if masq {
		if r.Out == "" {
			cc.errs.Addf(path+".out", "required (masquerade uses the out interface's address)")
		}
		if r.To != "" {
			cc.errs.Addf(path+".to", "%q not allowed (masquerade uses the out interface's address; use nat.snat)", r.To)
		}
	} else {
		if r.To == "" {
			cc.errs.Addf(path+".to", "required")
		} else if pool, err := parsePool(strings.TrimSpace(r.To)); err != nil {
			cc.errs.Addf(path+".to", "invalid address or range %q: %v", r.To, err)
		} else {
			sr.pool = pool
			if sr.ownerIface < 0 {
				sr.ownerIface = ifaceOwning(cc.own, pool)
			}
		}
	}
	sr.ports = cc.ports(path, "ports", r.Ports)
	switch r.Mapping {
	case "", "endpoint-independent":
	case "address-port-dependent":
		sr.eim = false
	default:
		cc.errs.Addf(path+".mapping", "unknown mapping %q (want \"endpoint-independent\" or \"address-port-dependent\")", r.Mapping)
	}
	switch r.Filtering {
	case "", "address-port-dependent":
	case "endpoint-independent":
		sr.eif = true
	default:
		cc.errs.Addf(path+".filtering", "unknown filtering %q (want \"address-port-dependent\" or \"endpoint-independent\")", r.Filtering)
	}
	if sr.eif && !sr.eim {
		cc.errs.Addf(path+".filtering", "%q needs mapping \"endpoint-independent\"", r.Filtering)
	}
	sr.random = r.Random
	if cc.errs.Len() == n {
		cc.out.snat = append(cc.out.snat, sr)
	}
}

// dnat compiles one [[nat.dnat]] port forward.
func (cc *ruleCompiler) dnat(path string, r *DNATRule) {
	n := cc.errs.Len()
	m := cc.match(path, r.Proto, r.Src, r.Dst, "", r.DPort)
	m.in = cc.iface(path, "in", r.In)
	dr := &dnatRule{name: path, ownDst: len(m.dst) == 0}
	if len(r.To) == 0 {
		cc.errs.Addf(path+".to", "required")
	}
	for _, s := range r.To {
		t, a, err := parseTarget(strings.TrimSpace(s))
		if err != nil {
			cc.errs.Addf(path+".to", "invalid address:port %q: %v", s, err)
			continue
		}
		if t.hasPort {
			cc.targetPorts(path, s, r, &m, t)
		}
		f := 0
		if a.Is6() {
			f = 1
		}
		dr.targets[f] = append(dr.targets[f], t)
	}
	dr.m = m
	if cc.errs.Len() == n {
		cc.out.dnat = append(cc.out.dnat, dr)
	}
}

// targetPorts checks a DNAT target's port against the rule's protocol and
// dport; a port with no proto makes the rule TCP and UDP.
func (cc *ruleCompiler) targetPorts(path, s string, r *DNATRule, m *matcher, t target) {
	switch m.proto {
	case protoTCPUDP, packet.ProtoTCP, packet.ProtoUDP:
	case protoAny:
		m.proto = protoTCPUDP
	default:
		cc.errs.Addf(path+".to", "%q has a port but proto %q has none", s, r.Proto)
		return
	}
	if t.hi == t.lo {
		return
	}
	n := int(t.hi) - int(t.lo) + 1
	if !m.dport.set {
		cc.errs.Addf(path+".to", "port range in %q needs a dport range of %d ports", s, n)
	} else if dn := int(m.dport.hi) - int(m.dport.lo) + 1; dn != n {
		cc.errs.Addf(path+".to", "port range in %q has %d ports, dport %q has %d", s, n, string(r.DPort), dn)
	}
}

// netmap compiles one [[nat.netmap]] 1:1 mapping.
func (cc *ruleCompiler) netmap(path string, r *NetmapRule) {
	nr := &netmapRule{name: path, out: cc.iface(path, "out", r.Out)}
	n := cc.errs.Len()
	if r.Out == "" {
		cc.errs.Addf(path+".out", "required")
	}
	from, err1 := netmapPrefix(r.From)
	if err1 != nil {
		cc.errs.Addf(path+".from", "invalid prefix %q: %v", r.From, err1)
	}
	to, err2 := netmapPrefix(r.To)
	if err2 != nil {
		cc.errs.Addf(path+".to", "invalid prefix %q: %v", r.To, err2)
	}
	if err1 == nil && err2 == nil {
		switch {
		case from.Addr().BitLen() != to.Addr().BitLen():
			cc.errs.Addf(path+".to", "%q is not of the family of from %q", r.To, r.From)
		case from.Bits() != to.Bits():
			cc.errs.Addf(path+".to", "prefix length of %q differs from from %q", r.To, r.From)
		case from.Addr().Is6() && from.Bits() > 64:
			cc.errs.Addf(path+".from", "NPTv6 prefix %q longer than /64 (RFC 6296)", r.From)
		}
	}
	if cc.errs.Len() > n {
		return
	}
	nr.from, nr.to = from.Masked(), to.Masked()
	nr.fam = 4
	if from.Addr().Is6() {
		nr.fam = 6
	}
	cc.out.netmap = append(cc.out.netmap, nr)
}

func netmapPrefix(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(strings.TrimSpace(s))
	if err != nil {
		return p, errors.New(confdiag.Reason(err, strings.TrimSpace(s)))
	}
	if p.Addr().Is4In6() {
		return p, errors.New("IPv4-mapped IPv6 prefix; write the IPv4 prefix")
	}
	return p, nil
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
