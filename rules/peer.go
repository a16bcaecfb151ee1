package rules

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// peerSet is a compiled peer match: per input interface, the bitset of the
// peer indexes allowed, and whether a packet from no peer matches (only a
// list of nothing but negated entries allows that, like ifaceSet).
type peerSet struct {
	bits [][]uint64
	none bool
}

// match reports whether a packet read from interface in, sent by peer
// (Packet.Peer: index+1, 0 for none), matches: two index checks and a bit
// test, no lookup.
func (s *peerSet) match(in int, peer int32) bool {
	if peer <= 0 || in < 0 || in >= len(s.bits) {
		return s.none
	}
	b := s.bits[in]
	i := int(peer - 1)
	if i>>6 >= len(b) {
		return s.none
	}
	return b[i>>6]&(1<<(i&63)) != 0
}

// compilePeerSets resolves [peer_sets] against the peers of every
// interface, reporting entries that name no peer.
func (c *compiler) compilePeerSets() {
	seen := map[string]bool{}
	for _, names := range c.env.Peers {
		for _, n := range names {
			if !seen[n] {
				seen[n] = true
				c.peerNames = append(c.peerNames, n)
			}
		}
	}
	slices.Sort(c.peerNames)
	c.peerSets = map[string][]string{}
	for name := range c.env.PeerSets {
		c.peerSetNames = append(c.peerSetNames, name)
	}
	slices.Sort(c.peerSetNames)
	for _, name := range c.peerSetNames {
		var ok []string
		for j, p := range c.env.PeerSets[name] {
			if !seen[p] {
				c.errs.add(fmt.Sprintf("peer_sets.%s[%d]", name, j), "unknown peer %q%s", p, c.peerHint(p))
				continue
			}
			ok = append(ok, p)
		}
		c.peerSets[name] = ok
	}
}

// peerHint suggests a peer name, or says there are none.
func (c *compiler) peerHint(name string) string {
	if len(c.peerNames) == 0 {
		return " (no wireguard interface has peers)"
	}
	return suggest(name, c.peerNames)
}

// peer compiles peer = [...]: peer names (of any wireguard interface) and
// @peer_sets, each optionally negated.
func (rp *ruleParser) peer(v any) {
	c := rp.c
	var pos, neg []string
	var posT, negT []string
	ok := true
	rp.strEntries("peer", v, "a peer name, @peer_set or list of them", func(s string, n bool) bool {
		var names []string
		if set, isSet := strings.CutPrefix(s, "@"); isSet {
			members, found := c.peerSets[set]
			if !found {
				rp.errf("peer", "unknown peer set %q%s", s, suggestQuoted(set, c.peerSetNames, "@"))
				ok = false
				return false
			}
			names = members
		} else {
			if !slices.Contains(c.peerNames, s) {
				rp.errf("peer", "unknown peer %q%s", s, c.peerHint(s))
				ok = false
				return false
			}
			names = []string{s}
		}
		if n {
			neg = append(neg, names...)
			negT = append(negT, strconv.Quote(s))
		} else {
			pos = append(pos, names...)
			posT = append(posT, strconv.Quote(s))
		}
		return true
	})
	if !ok {
		return
	}
	set := peerSet{bits: make([][]uint64, len(c.env.Peers)), none: len(posT) == 0}
	for in, names := range c.env.Peers {
		b := make([]uint64, (len(names)+63)/64)
		for i, name := range names {
			want := len(posT) == 0 || slices.Contains(pos, name)
			if want && !slices.Contains(neg, name) {
				b[i>>6] |= 1 << (i & 63)
			}
		}
		set.bits[in] = b
	}
	rp.r.peer = set
	rp.r.has |= mPeer
	// nft has no peer match; the text names it as a meta expression would.
	rp.parts = append(rp.parts, setText("meta wgpeer", posT, negT))
}

// Bounds of a numeric clamp_mss: IPv4's minimum MSS (RFC 9293's 536) up.
const (
	minClampMSS = 536
	maxClampMSS = 65535
)

// clampMSS compiles clamp_mss = "rt" | number: the MSS option of the TCP
// SYNs the rule matches is lowered to it when they are forwarded.
func (rp *ruleParser) clampMSS(v any) {
	if !rp.notRaw("clamp_mss") {
		return
	}
	switch x := v.(type) {
	case string:
		if x != "rt" {
			rp.errf("clamp_mss", "want \"rt\" (the route's MTU) or a number, got %q", x)
			return
		}
		rp.r.clampMSS = ClampRouteMTU
		rp.stmts = append(rp.stmts, "tcp option maxseg size set rt mtu")
	case int64:
		if x < minClampMSS || x > maxClampMSS {
			rp.errf("clamp_mss", "%d out of range (%d-%d)", x, minClampMSS, maxClampMSS)
			return
		}
		rp.r.clampMSS = uint16(x)
		rp.stmts = append(rp.stmts, fmt.Sprintf("tcp option maxseg size set %d", x))
	default:
		rp.errf("clamp_mss", "want \"rt\" or a number, got %s", describe(v))
		return
	}
	rp.r.do |= doClampMSS
}
