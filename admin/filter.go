package admin

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"tungate/conntrack"
)

// Filter selects connections the way conntrack(8)'s filter parameters do.
// Every field that is set must match. Addresses are an address or a CIDR
// prefix; ports apply to protocols with ports (TCP, UDP, UDP-Lite, SCTP,
// DCCP).
type Filter struct {
	// Family is "ipv4" or "ipv6" (-f).
	Family string `json:"family,omitempty"`
	// Proto is a protocol name or number (-p).
	Proto string `json:"proto,omitempty"`
	// Src and Dst are the original direction's addresses (-s, -d).
	Src string `json:"src,omitempty"`
	Dst string `json:"dst,omitempty"`
	// ReplySrc and ReplyDst are the reply direction's (-r, -q).
	ReplySrc string `json:"reply_src,omitempty"`
	ReplyDst string `json:"reply_dst,omitempty"`
	// Sport, Dport, ReplySport and ReplyDport are ports of either tuple.
	Sport      *uint16 `json:"sport,omitempty"`
	Dport      *uint16 `json:"dport,omitempty"`
	ReplySport *uint16 `json:"reply_sport,omitempty"`
	ReplyDport *uint16 `json:"reply_dport,omitempty"`
	// State is a protocol state (--state); any of the list matches.
	State []string `json:"state,omitempty"`
	// Status are status bits (-u) that must all be set: ASSURED,
	// SEEN_REPLY, UNREPLIED (not SEEN_REPLY), EXPECTED, CONFIRMED,
	// FIXED_TIMEOUT, SEQ_ADJUST, OFFLOAD, SNAT (SRC_NAT), DNAT (DST_NAT).
	Status []string `json:"status,omitempty"`
	// AnyNAT selects connections with source or destination NAT (-j).
	AnyNAT bool `json:"any_nat,omitempty"`
	// Mark is MARK or MARK/MASK (-m); the connection's mark ANDed with
	// MASK must equal MARK.
	Mark string `json:"mark,omitempty"`
	// Helper is the assigned helper's name (--helper).
	Helper string `json:"helper,omitempty"`
	// ID is a connection's or expectation's id (--id).
	ID *uint32 `json:"id,omitempty"`
}

// Empty reports whether the filter selects everything.
func (f *Filter) Empty() bool {
	return f == nil || (f.Family == "" && f.Proto == "" && f.Src == "" && f.Dst == "" && f.ReplySrc == "" &&
		f.ReplyDst == "" && f.Sport == nil && f.Dport == nil && f.ReplySport == nil && f.ReplyDport == nil &&
		len(f.State) == 0 && len(f.Status) == 0 && !f.AnyNAT && f.Mark == "" && f.Helper == "" && f.ID == nil)
}

// protoNumbers are the protocol names filters accept (numbers work too).
var protoNumbers = map[string]uint8{
	"icmp": 1, "tcp": 6, "udp": 17, "dccp": 33, "gre": 47, "esp": 50, "ah": 51,
	"icmpv6": 58, "ipv6-icmp": 58, "sctp": 132, "udplite": 136,
}

// ProtoNames are the protocol names filters accept, for completion.
func ProtoNames() []string {
	return []string{"tcp", "udp", "udplite", "icmp", "icmpv6", "sctp", "dccp", "gre", "esp", "ah"}
}

// statusBits maps status names to bits; UNREPLIED is handled apart.
var statusBits = map[string]conntrack.Status{
	"ASSURED": conntrack.StatusAssured, "SEEN_REPLY": conntrack.StatusSeenReply,
	"EXPECTED": conntrack.StatusExpected, "CONFIRMED": conntrack.StatusConfirmed,
	"FIXED_TIMEOUT": conntrack.StatusFixedTO, "SEQ_ADJUST": conntrack.StatusSeqAdjust,
	"OFFLOAD": conntrack.StatusOffload,
	"SNAT":    conntrack.StatusSrcNAT, "SRC_NAT": conntrack.StatusSrcNAT,
	"DNAT": conntrack.StatusDstNAT, "DST_NAT": conntrack.StatusDstNAT,
}

// StatusNames are the status names filters accept, for completion.
func StatusNames() []string {
	return []string{"ASSURED", "SEEN_REPLY", "UNREPLIED", "EXPECTED", "CONFIRMED", "FIXED_TIMEOUT", "SEQ_ADJUST", "OFFLOAD", "SNAT", "DNAT"}
}

// matcher is a compiled Filter.
type matcher struct {
	family     uint8
	proto      int // -1: any
	addr       [4]netip.Prefix
	port       [4]int32 // -1: any; sport, dport, reply sport, reply dport
	anyPort    bool
	states     []string
	status     conntrack.Status
	unreplied  bool
	anyNAT     bool
	mark, mask uint32
	hasMark    bool
	helper     string
	id         uint32
	hasID      bool
	scratch    []byte
}

// parsePrefix reads an address or a CIDR prefix; an address is a prefix of
// its whole length.
func parsePrefix(what, s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return p, fmt.Errorf("%s: %q is not an address or prefix", what, s)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("%s: %q is not an address or prefix", what, s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// parseProto reads a protocol name or number.
func parseProto(s string) (uint8, error) {
	if n, ok := protoNumbers[strings.ToLower(s)]; ok {
		return n, nil
	}
	n, err := strconv.ParseUint(s, 10, 8)
	if err != nil {
		return 0, fmt.Errorf("proto: unknown protocol %q (a name like tcp, udp, icmp or a number 0-255)", s)
	}
	return uint8(n), nil
}

// ParseMark reads MARK or MARK/MASK (decimal or 0x hex).
func ParseMark(s string) (mark, mask uint32, err error) {
	m, k, hasMask := strings.Cut(s, "/")
	v, err := strconv.ParseUint(m, 0, 32)
	if err != nil {
		return 0, 0, fmt.Errorf("mark: %q is not MARK[/MASK] with 32-bit numbers", s)
	}
	mask = ^uint32(0)
	if hasMask {
		w, err := strconv.ParseUint(k, 0, 32)
		if err != nil {
			return 0, 0, fmt.Errorf("mark: %q is not MARK[/MASK] with 32-bit numbers", s)
		}
		mask = uint32(w)
	}
	return uint32(v), mask, nil
}

// hasPorts reports whether a protocol's tuple ports are ports.
func hasPorts(proto uint8) bool {
	switch proto {
	case 6, 17, 33, 132, 136:
		return true
	}
	return false
}

// compile checks the filter and builds its matcher; the error names the
// offending field and value.
func (f *Filter) compile() (*matcher, error) {
	m := &matcher{proto: -1, port: [4]int32{-1, -1, -1, -1}}
	if f == nil {
		return m, nil
	}
	switch strings.ToLower(f.Family) {
	case "":
	case "ipv4", "inet", "4":
		m.family = 4
	case "ipv6", "inet6", "6":
		m.family = 6
	default:
		return nil, fmt.Errorf("family: %q is not ipv4 or ipv6", f.Family)
	}
	if f.Proto != "" {
		p, err := parseProto(f.Proto)
		if err != nil {
			return nil, err
		}
		m.proto = int(p)
	}
	for i, a := range [4]struct{ name, v string }{{"src", f.Src}, {"dst", f.Dst}, {"reply-src", f.ReplySrc}, {"reply-dst", f.ReplyDst}} {
		if a.v == "" {
			continue
		}
		p, err := parsePrefix(a.name, a.v)
		if err != nil {
			return nil, err
		}
		fam := uint8(6)
		if p.Addr().Is4() {
			fam = 4
		}
		if m.family != 0 && m.family != fam {
			return nil, fmt.Errorf("%s: %s is not of family %s", a.name, a.v, f.Family)
		}
		m.addr[i] = p
	}
	for i, p := range [4]*uint16{f.Sport, f.Dport, f.ReplySport, f.ReplyDport} {
		if p != nil {
			m.port[i] = int32(*p)
			m.anyPort = true
		}
	}
	if m.anyPort && m.proto >= 0 && !hasPorts(uint8(m.proto)) {
		return nil, fmt.Errorf("ports: protocol %s has no ports", f.Proto)
	}
	known := conntrack.StateNames()
	for _, s := range f.State {
		u := strings.ToUpper(s)
		if !slices.Contains(known, u) {
			return nil, fmt.Errorf("state: unknown state %q (one of %s)", s, strings.Join(known, ", "))
		}
		m.states = append(m.states, u)
	}
	for _, s := range f.Status {
		u := strings.ToUpper(s)
		if u == "UNREPLIED" {
			m.unreplied = true
			continue
		}
		b, ok := statusBits[u]
		if !ok {
			return nil, fmt.Errorf("status: unknown status %q (one of %s)", s, strings.Join(StatusNames(), ", "))
		}
		m.status |= b
	}
	if m.unreplied && m.status&conntrack.StatusSeenReply != 0 {
		return nil, fmt.Errorf("status: UNREPLIED and SEEN_REPLY exclude each other")
	}
	m.anyNAT = f.AnyNAT
	if f.Mark != "" {
		v, k, err := ParseMark(f.Mark)
		if err != nil {
			return nil, err
		}
		m.mark, m.mask, m.hasMark = v&k, k, true
	}
	m.helper = f.Helper
	if f.ID != nil {
		m.id, m.hasID = *f.ID, true
	}
	return m, nil
}

// match reports whether connection c passes the filter. The cheap tests
// come first; the state, which takes the connection's lock, last.
func (m *matcher) match(t *conntrack.Table, c *conntrack.Conn) bool {
	o := c.Tuple(conntrack.DirOriginal)
	if m.family != 0 && o.Family != m.family {
		return false
	}
	if m.proto >= 0 && int(o.Proto) != m.proto {
		return false
	}
	if m.hasID && conntrack.ConnID(c) != m.id {
		return false
	}
	r := c.ShownReply()
	tuples := [2]*conntrack.Tuple{o, r}
	for i := range m.addr {
		if !m.addr[i].IsValid() {
			continue
		}
		tu := tuples[i/2]
		a := tu.SrcAddr()
		if i%2 == 1 {
			a = tu.DstAddr()
		}
		if !m.addr[i].Contains(a) {
			return false
		}
	}
	if m.anyPort {
		if !hasPorts(o.Proto) {
			return false
		}
		for i, want := range m.port {
			if want < 0 {
				continue
			}
			tu := tuples[i/2]
			p := tu.SrcPort
			if i%2 == 1 {
				p = tu.DstPort
			}
			if int32(p) != want {
				return false
			}
		}
	}
	st := c.Status()
	if st&m.status != m.status || (m.unreplied && st&conntrack.StatusSeenReply != 0) {
		return false
	}
	if m.anyNAT && st&conntrack.StatusNATMask == 0 {
		return false
	}
	if m.hasMark && c.Mark()&m.mask != m.mark {
		return false
	}
	if m.helper != "" && c.Helper() != m.helper {
		return false
	}
	if len(m.states) > 0 {
		m.scratch = t.AppendState(m.scratch[:0], c)
		found := false
		for _, s := range m.states {
			if string(m.scratch) == s { // compared without a copy
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// matchExpectation reports whether expectation e passes the filter; its
// addresses and ports are the expected tuple's (conntrack's --tuple-src,
// --tuple-dst), the helper is the expectation's.
func (m *matcher) matchExpectation(e *conntrack.Expectation) bool {
	tu := &e.Tuple
	if m.family != 0 && tu.Family != m.family {
		return false
	}
	if m.proto >= 0 && int(tu.Proto) != m.proto {
		return false
	}
	if m.hasID && conntrack.ExpectationID(e) != m.id {
		return false
	}
	if m.addr[0].IsValid() && !m.addr[0].Contains(tu.SrcAddr()) {
		return false
	}
	if m.addr[1].IsValid() && !m.addr[1].Contains(tu.DstAddr()) {
		return false
	}
	if m.port[0] >= 0 && int32(tu.SrcPort) != m.port[0] {
		return false
	}
	if m.port[1] >= 0 && int32(tu.DstPort) != m.port[1] {
		return false
	}
	return m.helper == "" || e.Helper == m.helper
}

// checkExpectation rejects the fields expectations have no use for.
func (f *Filter) checkExpectation() error {
	if f == nil {
		return nil
	}
	switch {
	case f.ReplySrc != "" || f.ReplyDst != "" || f.ReplySport != nil || f.ReplyDport != nil:
		return fmt.Errorf("expectations have one tuple: reply filters do not apply")
	case len(f.State) > 0 || len(f.Status) > 0 || f.AnyNAT || f.Mark != "":
		return fmt.Errorf("expectations have no state, status or mark to filter on")
	}
	return nil
}

// Validate checks the filter as the server will, so the CLI reports a bad
// filter before it connects.
func (f *Filter) Validate() error {
	_, err := f.compile()
	return err
}
