package rules

import (
	"encoding/binary"
	"net/netip"

	"tungate/conntrack"
	"tungate/packet"
)

// Match bits in rule.has: which matches a rule carries. A rule tests only
// the bits it has, cheapest first; the order never matters for the result
// because matches have no side effects (limit, which has one, runs last).
const (
	mState uint32 = 1 << iota
	mFamily
	mProto
	mIn
	mOut
	mPorts // the packet must carry TCP/UDP ports (implied by sport/dport)
	mSport
	mDport
	mICMP // the packet must be ICMP of icmpProto (implied by icmp_type/code)
	mICMPType
	mICMPCode
	mTCPFlags
	mLength
	mMark
	mConn // the packet must have a connection (implied by ct_* but ct_state)
	mCtDir
	mCtStatus
	mCtMark
	mCtHelper
	mSrc
	mDst
	mLimit
	mPeer
)

// Families as bits of rule.family.
const (
	famV4 uint8 = 1 << 0
	famV6 uint8 = 1 << 1
)

func famBit(version uint8) uint8 {
	if version == 6 {
		return famV6
	}
	return famV4
}

// action is what a rule does after its matches and statements.
type action uint8

const (
	actNone action = iota // no verdict: the next rule runs
	actAccept
	actDrop
	actReject
	actSynProxy
	actJump
	actGoto
	actReturn
	actEnd // internal: the chain ran out of rules
)

// Statement bits in rule.do.
const (
	doSetMark uint8 = 1 << iota
	doSetCtMark
	doHelper
	doLog
	doNotrack
	doClampMSS
)

// rule is one compiled rule. It is read-only after Compile (counters live
// apart in chain.counters, so counting does not dirty the cache lines other
// cores read rules from).
type rule struct {
	has    uint32
	family uint8
	state  conntrack.State
	// ctReply is the ct_direction wanted.
	ctReply bool
	// icmpProto is packet.ProtoICMP or packet.ProtoICMPv6 for icmp matches.
	icmpProto uint8
	do        uint8
	verdict   action
	reject    RejectKind
	// target is the chain index of jump/goto.
	target int32

	statusAny, statusNone conntrack.Status
	setMark, setCtMark    uint32

	proto, icmpType, icmpCode byteSet

	flags                []flagTest
	in, out              ifaceSet
	sport, dport, length portRanges
	mark, ctMark         valueSet
	helper               helperSet
	src, dst             addrSet
	lim                  *limiter
	log                  *ruleLog
	helperName           string
	peer                 peerSet
	clampMSS             uint16
	synproxy             SynProxyOptions
}

// byteSet is a set of 8-bit values (protocols, ICMP types and codes).
type byteSet [4]uint64

func (s *byteSet) add(v uint8)       { s[v>>6] |= 1 << (v & 63) }
func (s *byteSet) has(v uint8) bool  { return s[v>>6]&(1<<(v&63)) != 0 }
func (s *byteSet) remove(v uint8)    { s[v>>6] &^= 1 << (v & 63) }
func (s *byteSet) fill()             { *s = byteSet{^uint64(0), ^uint64(0), ^uint64(0), ^uint64(0)} }
func (s *byteSet) only(v uint8) bool { t := byteSet{}; t.add(v); return *s == t }

// flagTest is one tcp_flags entry: the flags in mask must equal want.
type flagTest struct{ mask, want uint8 }

// ifaceSet is the set of interface indexes a rule's in/out allows, plus
// whether "no interface" (-1) is allowed, which only a negated list does
// (nft's iifname != "x" matches a packet without an input interface).
type ifaceSet struct {
	bits []uint64
	none bool
}

func (s *ifaceSet) match(i int) bool {
	if i < 0 || i>>6 >= len(s.bits) {
		return s.none
	}
	return s.bits[i>>6]&(1<<(i&63)) != 0
}

// portRange is an inclusive range of 16-bit values.
type portRange struct{ lo, hi uint16 }

// portRanges are sorted, disjoint, non-adjacent ranges: the allowed values
// after positive and negated entries were combined at compile time.
type portRanges []portRange

func (r portRanges) match(v uint16) bool {
	if len(r) <= 8 {
		for _, x := range r {
			if v < x.lo {
				return false
			}
			if v <= x.hi {
				return true
			}
		}
		return false
	}
	lo, hi := 0, len(r)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if r[m].hi < v {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo < len(r) && r[lo].lo <= v
}

// valueSet matches a 32-bit mark: one of pos (when there are any) and none
// of neg.
type valueSet struct{ pos, neg []uint32 }

func (s *valueSet) match(v uint32) bool {
	if len(s.pos) > 0 {
		ok := false
		for _, x := range s.pos {
			if x == v {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	for _, x := range s.neg {
		if x == v {
			return false
		}
	}
	return true
}

// helperSet matches the connection's helper name. Names are compared as
// strings: both sides are short, interned by the config, and this is the
// only string comparison on the hot path (ct_helper rules only).
type helperSet struct{ pos, neg []string }

func (s *helperSet) match(h string) bool {
	if len(s.pos) > 0 {
		ok := false
		for _, x := range s.pos {
			if x == h {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	for _, x := range s.neg {
		if x == h {
			return false
		}
	}
	return true
}

// prefix is a CIDR as two masked 64-bit halves of a packet.Addr, compared
// with two ANDs; v6 keeps an IPv4 prefix from matching IPv6 addresses that
// happen to share the leading bytes.
type prefix struct {
	hi, lo, mhi, mlo uint64
	v6               bool
}

func makePrefix(p netip.Prefix) prefix {
	a := packet.AddrFrom(p.Addr())
	bitsN := p.Bits() // an IPv4 prefix's bits sit in the first 32 bits of Addr
	var mhi, mlo uint64
	switch {
	case bitsN >= 128:
		mhi, mlo = ^uint64(0), ^uint64(0)
	case bitsN >= 64:
		mhi, mlo = ^uint64(0), ^uint64(0)<<(128-bitsN)
	case bitsN > 0:
		mhi = ^uint64(0) << (64 - bitsN)
	}
	return prefix{
		hi:  binary.BigEndian.Uint64(a[:8]) & mhi,
		lo:  binary.BigEndian.Uint64(a[8:]) & mlo,
		mhi: mhi, mlo: mlo,
		v6: !p.Addr().Is4(),
	}
}

// addrSet is a src/dst match: any of the positive entries (when there are
// any) and none of the negated ones. Literal prefixes are compared inline;
// @sets are bart tables, whose lookup cost does not grow with their size,
// read through a liveTable so elements added at runtime take effect.
type addrSet struct {
	pos, neg         []prefix
	posSets, negSets []*liveTable
}

func (s *addrSet) match(a *packet.Addr, version uint8) bool {
	hi := binary.BigEndian.Uint64(a[:8])
	lo := binary.BigEndian.Uint64(a[8:])
	v6 := version == 6
	if len(s.pos)+len(s.posSets) > 0 {
		if !matchPrefixes(s.pos, hi, lo, v6) && !matchSets(s.posSets, a, version) {
			return false
		}
	}
	if len(s.neg)+len(s.negSets) > 0 {
		if matchPrefixes(s.neg, hi, lo, v6) || matchSets(s.negSets, a, version) {
			return false
		}
	}
	return true
}

func matchPrefixes(ps []prefix, hi, lo uint64, v6 bool) bool {
	for i := range ps {
		p := &ps[i]
		if hi&p.mhi == p.hi && lo&p.mlo == p.lo && p.v6 == v6 {
			return true
		}
	}
	return false
}

func matchSets(ts []*liveTable, a *packet.Addr, version uint8) bool {
	if len(ts) == 0 {
		return false
	}
	ip := a.NetIP(version)
	for _, t := range ts {
		if t.p.Load().Contains(ip) {
			return true
		}
	}
	return false
}

// hasPorts reports whether the packet carries the ports sport/dport read:
// nft's th sport/dport need a transport header, so non-first fragments and
// port-less protocols never match a port rule, negated or not.
func hasPorts(p *packet.Parsed) bool {
	return p.HasL4 && (p.Proto == packet.ProtoTCP || p.Proto == packet.ProtoUDP)
}

// match runs the rule's matches except limit. Each test is guarded by its
// has bit, so a one-match rule costs one branch per absent match.
func (r *rule) match(pk *Packet, p *packet.Parsed) bool {
	h := r.has
	if h&mState != 0 && pk.Info.State()&r.state == 0 {
		return false
	}
	if h&mFamily != 0 && famBit(p.Version)&r.family == 0 {
		return false
	}
	if h&mProto != 0 && !r.proto.has(p.Proto) {
		return false
	}
	if h&(mIn|mOut|mPeer|mPorts|mSport|mDport) != 0 {
		if h&mIn != 0 && !r.in.match(pk.In) {
			return false
		}
		if h&mOut != 0 && !r.out.match(pk.Out) {
			return false
		}
		if h&mPeer != 0 && !r.peer.match(pk.In, pk.Peer) {
			return false
		}
		if h&mPorts != 0 && !hasPorts(p) {
			return false
		}
		if h&mSport != 0 && !r.sport.match(p.SrcPort) {
			return false
		}
		if h&mDport != 0 && !r.dport.match(p.DstPort) {
			return false
		}
	}
	if h&(mICMP|mICMPType|mICMPCode|mTCPFlags|mLength|mMark) != 0 {
		if h&mICMP != 0 && (!p.HasL4 || p.Proto != r.icmpProto || !p.IsICMP()) {
			return false
		}
		if h&mICMPType != 0 && !r.icmpType.has(p.ICMPType) {
			return false
		}
		if h&mICMPCode != 0 && !r.icmpCode.has(p.ICMPCode) {
			return false
		}
		if h&mTCPFlags != 0 && !r.matchFlags(p) {
			return false
		}
		if h&mLength != 0 && !r.length.match(uint16(min(p.Len(), 0xffff))) {
			return false
		}
		if h&mMark != 0 && !r.mark.match(pk.Mark) {
			return false
		}
	}
	if h&(mConn|mCtDir|mCtStatus|mCtMark|mCtHelper) != 0 {
		c := pk.Conn
		if c == nil {
			return false
		}
		if h&mCtDir != 0 && pk.Info.IsReply() != r.ctReply {
			return false
		}
		if h&mCtStatus != 0 {
			st := c.Status()
			if r.statusAny != 0 && st&r.statusAny == 0 {
				return false
			}
			if st&r.statusNone != 0 {
				return false
			}
		}
		if h&mCtMark != 0 && !r.ctMark.match(c.Mark()) {
			return false
		}
		if h&mCtHelper != 0 && !r.helper.match(c.Helper()) {
			return false
		}
	}
	if h&mSrc != 0 && !r.src.match(&p.Src, p.Version) {
		return false
	}
	if h&mDst != 0 && !r.dst.match(&p.Dst, p.Version) {
		return false
	}
	return true
}

func (r *rule) matchFlags(p *packet.Parsed) bool {
	if p.Proto != packet.ProtoTCP || !p.HasL4 {
		return false
	}
	for _, f := range r.flags {
		if p.TCPFlags&f.mask == f.want {
			return true
		}
	}
	return false
}
