package rules

import (
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"slices"

	"github.com/gaissmai/bart"

	"tungate/packet"
)

// Indexing long runs of rules.
//
// Generated rulesets are long runs of rules of one shape that differ only
// in addresses and ports. Trying them one by one costs a few nanoseconds
// each, so 10,000 of them cost tens of microseconds. Instead, a run of rules
// with the same indexable shape (which of src, dst, sport, dport they
// constrain) gets a decision tree: each inner node splits on one dimension
// (a bart table for addresses, sorted interval starts for ports), and each
// leaf lists, in rule order, the rules of the run that can match a packet
// reaching it.
//
// The index only ever skips rules that cannot match: a leaf is a superset of
// the matching rules, each listed rule is still tried in full, and they are
// tried in ascending rule order. So first-match semantics, counters, limits
// and statements are exactly those of linear evaluation; the differential
// test checks this against compile(..., index=false).
//
// The tree is HiCuts-like: at each node, pick the unused dimension whose
// largest region is smallest, and stop when no dimension helps or the
// region is small. A rule whose prefixes nest over others' is copied into
// each region under it; a budget on copied entries keeps pathological
// nesting from blowing up memory (past it, nodes become plain leaves, which
// is slower but still exact).

// Index dimensions.
const (
	dimLeaf uint8 = iota
	dimSrc
	dimDst
	dimSport
	dimDport
)

// minIndexRun is the shortest run worth an index: below it, a few rule
// checks beat a tree walk.
const minIndexRun = 16

// leafSize is the region size at which splitting stops.
const leafSize = 4

// inode is an index tree node.
type inode struct {
	dim uint8
	// miss is the child for packets outside every region: an address in
	// no prefix, or a packet without ports.
	miss int32
	// rules is a leaf's candidate list, ascending rule indexes.
	rules []int32
	// hosts maps host prefixes (/32, /128) to children: the longest
	// possible match, found with one hash probe instead of a trie walk
	// (generated rules are mostly hosts, and IPv6 hosts sharing a long
	// prefix would cost a dozen trie levels).
	hosts *hostTable
	// tbl maps an address's longest matching shorter prefix to a child;
	// nil when there are none.
	tbl *bart.Table[int32]
	// starts are the port intervals' first values (starts[0] == 0);
	// ivKid[k] is the child for [starts[k], starts[k+1]).
	starts []uint16
	ivKid  []int32
	kids   []*inode
}

// lookup walks the tree to the packet's candidate list.
func (n *inode) lookup(p *packet.Parsed) []int32 {
	for {
		switch n.dim {
		case dimLeaf:
			return n.rules
		case dimSrc, dimDst:
			a := &p.Src
			if n.dim == dimDst {
				a = &p.Dst
			}
			k, ok := n.hosts.lookup(a, p.Version)
			if !ok && n.tbl != nil {
				k, ok = n.tbl.Lookup(addrIP(a, p.Version))
			}
			if !ok {
				k = n.miss
			}
			n = n.kids[k]
		default:
			if !hasPorts(p) {
				n = n.kids[n.miss]
				continue
			}
			v := p.DstPort
			if n.dim == dimSport {
				v = p.SrcPort
			}
			lo, hi := 1, len(n.starts)
			for lo < hi {
				m := int(uint(lo+hi) >> 1)
				if n.starts[m] <= v {
					lo = m + 1
				} else {
					hi = m
				}
			}
			n = n.kids[n.ivKid[lo-1]]
		}
	}
}

// addrIP converts without going through a slice, so nothing escapes.
func addrIP(a *packet.Addr, version uint8) netip.Addr {
	if version == 4 {
		return netip.AddrFrom4([4]byte{a[0], a[1], a[2], a[3]})
	}
	return netip.AddrFrom16(*a)
}

// indexKeys are a run's rules' values in each dimension (nil: wildcard).
type indexKeys struct {
	src, dst     [][]netip.Prefix
	sport, dport []portRanges
}

// shapeOf returns which dimensions a rule constrains in a way the index can
// use, as a bit set of 1<<dim.
func shapeOf(r *rule, m *ruleMeta) uint8 {
	var s uint8
	if m.src != nil {
		s |= 1 << dimSrc
	}
	if m.dst != nil {
		s |= 1 << dimDst
	}
	if r.has&mSport != 0 {
		s |= 1 << dimSport
	}
	if r.has&mDport != 0 {
		s |= 1 << dimDport
	}
	return s
}

// buildSegments splits a chain into linear and indexed segments.
func buildSegments(ch *chain, meta []ruleMeta, index bool) {
	n := len(ch.rules)
	ch.segOf = make([]int32, n)
	addLinear := func(i, j int) {
		if k := len(ch.segs) - 1; k >= 0 && ch.segs[k].idx == nil && int(ch.segs[k].end) == i {
			ch.segs[k].end = int32(j)
			return
		}
		ch.segs = append(ch.segs, segment{start: int32(i), end: int32(j)})
	}
	for i := 0; i < n; {
		sh := shapeOf(&ch.rules[i], &meta[i])
		j := i + 1
		if index && sh != 0 {
			for j < n && shapeOf(&ch.rules[j], &meta[j]) == sh {
				j++
			}
			if j-i >= minIndexRun {
				if idx := buildIndex(ch, meta, i, j, sh); idx != nil {
					ch.segs = append(ch.segs, segment{start: int32(i), end: int32(j), idx: idx})
					i = j
					continue
				}
			}
		}
		addLinear(i, j)
		i = j
	}
	for si, s := range ch.segs {
		for i := s.start; i < s.end; i++ {
			ch.segOf[i] = int32(si)
		}
	}
}

// indexBuilder builds one run's tree.
type indexBuilder struct {
	ch     *chain
	keys   indexKeys
	base   int // rule index of the run's first rule
	shape  uint8
	budget int
	memo   map[string]*inode
}

func buildIndex(ch *chain, meta []ruleMeta, start, end int, shape uint8) *inode {
	n := end - start
	b := &indexBuilder{
		ch:     ch,
		base:   start,
		shape:  shape,
		budget: 16*n + 4096,
		memo:   map[string]*inode{},
		keys: indexKeys{
			src: make([][]netip.Prefix, n), dst: make([][]netip.Prefix, n),
			sport: make([]portRanges, n), dport: make([]portRanges, n),
		},
	}
	for i := start; i < end; i++ {
		r := &ch.rules[i]
		k := i - start
		b.keys.src[k] = meta[i].src
		b.keys.dst[k] = meta[i].dst
		if r.has&mSport != 0 {
			b.keys.sport[k] = r.sport
		}
		if r.has&mDport != 0 {
			b.keys.dport[k] = r.dport
		}
	}
	all := make([]int32, n)
	for i := range all {
		all[i] = int32(start + i)
	}
	root := b.build(all, 0)
	if root.dim == dimLeaf {
		return nil // nothing to gain over linear evaluation
	}
	return root
}

// partition is one dimension's split of a rule list.
type partition struct {
	dim uint8
	// regions are the distinct candidate lists; the mappings below index
	// into them.
	regions [][]int32
	miss    int32
	pfx     []netip.Prefix
	pfxReg  []int32
	starts  []uint16
	ivReg   []int32
}

// build returns the subtree for a rule list, having split on the
// dimensions in used already.
func (b *indexBuilder) build(rules []int32, used uint8) *inode {
	key := regionKey(rules, used)
	if n, ok := b.memo[key]; ok {
		return n
	}
	n := b.split(rules, used)
	b.memo[key] = n
	return n
}

func (b *indexBuilder) split(rules []int32, used uint8) *inode {
	leaf := &inode{dim: dimLeaf, rules: rules}
	if len(rules) <= leafSize {
		return leaf
	}
	bestDim, bestMax, bestTotal := dimLeaf, len(rules), 0
	for d := dimSrc; d <= dimDport; d++ {
		if b.shape&(1<<d) == 0 || used&(1<<d) != 0 {
			continue
		}
		mx, total := b.estimate(rules, d)
		if total > b.budget {
			continue
		}
		// Demand a real cut: a dimension that leaves three quarters of
		// the rules together costs a lookup for little.
		if mx*4 > len(rules)*3 {
			continue
		}
		if mx < bestMax || mx == bestMax && bestDim != dimLeaf && total < bestTotal {
			bestDim, bestMax, bestTotal = d, mx, total
		}
	}
	if bestDim == dimLeaf {
		return leaf
	}
	pt := b.partition(rules, bestDim)
	for _, r := range pt.regions {
		b.budget -= len(r)
	}
	n := &inode{dim: bestDim, miss: pt.miss}
	for _, r := range pt.regions {
		n.kids = append(n.kids, b.build(r, used|1<<bestDim))
	}
	switch bestDim {
	case dimSrc, dimDst:
		var hosts []netip.Prefix
		var hostKids []int32
		for i, p := range pt.pfx {
			if p.IsSingleIP() {
				hosts = append(hosts, p)
				hostKids = append(hostKids, pt.pfxReg[i])
				continue
			}
			if n.tbl == nil {
				n.tbl = new(bart.Table[int32])
			}
			n.tbl.Insert(p, pt.pfxReg[i])
		}
		n.hosts = newHostTable(hosts, hostKids)
	default:
		n.starts, n.ivKid = pt.starts, pt.ivReg
	}
	return n
}

func (b *indexBuilder) prefixes(d uint8, ri int32) []netip.Prefix {
	if d == dimSrc {
		return b.keys.src[int(ri)-b.base]
	}
	return b.keys.dst[int(ri)-b.base]
}

func (b *indexBuilder) ranges(d uint8, ri int32) portRanges {
	if d == dimSport {
		return b.keys.sport[int(ri)-b.base]
	}
	return b.keys.dport[int(ri)-b.base]
}

// addrGroups groups a rule list by prefix in one address dimension.
type addrGroups struct {
	order  []netip.Prefix
	groups map[netip.Prefix][]int32
	wild   []int32
	tbl    *bart.Table[int32] // prefix → position in order
}

func (b *indexBuilder) groupAddrs(rules []int32, d uint8) *addrGroups {
	g := &addrGroups{groups: map[netip.Prefix][]int32{}, tbl: new(bart.Table[int32])}
	for _, ri := range rules {
		ps := b.prefixes(d, ri)
		if ps == nil {
			g.wild = append(g.wild, ri)
			continue
		}
		for _, p := range ps {
			l, ok := g.groups[p]
			if !ok {
				g.tbl.Insert(p, int32(len(g.order)))
				g.order = append(g.order, p)
			}
			if len(l) == 0 || l[len(l)-1] != ri {
				g.groups[p] = append(l, ri)
			}
		}
	}
	return g
}

// estimate returns the largest region and the total of all regions a
// split on d would make, without building them (an upper bound where a
// rule lists nested prefixes of its own).
func (b *indexBuilder) estimate(rules []int32, d uint8) (mx, total int) {
	switch d {
	case dimSrc, dimDst:
		g := b.groupAddrs(rules, d)
		mx, total = len(g.wild), len(g.wild)
		for _, p := range g.order {
			s := len(g.wild)
			for q := range g.tbl.Supernets(p) {
				s += len(g.groups[q])
			}
			mx = max(mx, s)
			total += s
		}
		return mx, total
	}
	starts, wild, cnt := b.portIntervals(rules, d)
	mx, total = len(wild), len(wild)
	run := 0
	for k := range starts {
		run += cnt[k]
		s := run + len(wild)
		mx = max(mx, s)
		total += s
	}
	return mx, total
}

// portIntervals cuts 0-65535 at every range boundary of the rules and
// counts, as a difference array, how many rules start or stop covering
// each interval.
func (b *indexBuilder) portIntervals(rules []int32, d uint8) (starts []uint16, wild []int32, diff []int) {
	pts := []uint32{0}
	for _, ri := range rules {
		rs := b.ranges(d, ri)
		if rs == nil {
			wild = append(wild, ri)
			continue
		}
		for _, x := range rs {
			pts = append(pts, uint32(x.lo))
			if x.hi < 65535 {
				pts = append(pts, uint32(x.hi)+1)
			}
		}
	}
	slices.Sort(pts)
	pts = slices.Compact(pts)
	starts = make([]uint16, len(pts))
	for i, p := range pts {
		starts[i] = uint16(p)
	}
	diff = make([]int, len(starts)+1)
	for _, ri := range rules {
		for _, x := range b.ranges(d, ri) {
			lo, _ := slices.BinarySearch(starts, x.lo)
			hi := len(starts)
			if x.hi < 65535 {
				hi, _ = slices.BinarySearch(starts, x.hi+1)
			}
			diff[lo]++
			diff[hi]--
		}
	}
	return starts, wild, diff
}

// partition builds the regions of a split on d.
func (b *indexBuilder) partition(rules []int32, d uint8) *partition {
	pt := &partition{dim: d}
	seen := map[string]int32{}
	region := func(l []int32) int32 {
		k := regionKey(l, 0)
		if i, ok := seen[k]; ok {
			return i
		}
		i := int32(len(pt.regions))
		seen[k] = i
		pt.regions = append(pt.regions, l)
		return i
	}
	switch d {
	case dimSrc, dimDst:
		g := b.groupAddrs(rules, d)
		pt.miss = region(g.wild)
		for _, p := range g.order {
			l := slices.Clone(g.wild)
			for q := range g.tbl.Supernets(p) {
				l = append(l, g.groups[q]...)
			}
			slices.Sort(l)
			l = slices.Compact(l)
			pt.pfx = append(pt.pfx, p)
			pt.pfxReg = append(pt.pfxReg, region(l))
		}
	default:
		starts, wild, _ := b.portIntervals(rules, d)
		lists := make([][]int32, len(starts))
		for _, ri := range rules {
			for _, x := range b.ranges(d, ri) {
				lo, _ := slices.BinarySearch(starts, x.lo)
				hi := len(starts)
				if x.hi < 65535 {
					hi, _ = slices.BinarySearch(starts, x.hi+1)
				}
				for k := lo; k < hi; k++ {
					lists[k] = append(lists[k], ri)
				}
			}
		}
		pt.miss = region(wild)
		for k, l := range lists {
			if len(wild) > 0 {
				l = append(slices.Clone(wild), l...)
				slices.Sort(l)
			}
			ri := region(l)
			if n := len(pt.ivReg); n > 0 && pt.ivReg[n-1] == ri {
				continue // same region as the interval before: merge
			}
			pt.starts = append(pt.starts, starts[k])
			pt.ivReg = append(pt.ivReg, ri)
		}
	}
	return pt
}

// regionKey is a map key for a rule list (and the dimensions used to reach
// it, which decide what can still be split).
func regionKey(l []int32, used uint8) string {
	buf := make([]byte, 1+4*len(l))
	buf[0] = used
	for i, v := range l {
		binary.LittleEndian.PutUint32(buf[1+4*i:], uint32(v))
	}
	return string(buf)
}

// hostTable is an open-addressing hash table from host addresses to
// children. Linear probing at load factor <= 1/2 keeps probes short; the
// per-table random seed keeps an attacker choosing packet addresses from
// aiming at the longest probe sequence.
type hostTable struct {
	slots []hostSlot
	mask  uint64
	seed  uint64
}

type hostSlot struct {
	hi, lo uint64
	// fam is 4 or 6 (0: empty). An IPv4 address and an IPv6 address can
	// have the same bytes in a packet.Addr; the family tells them apart.
	fam uint8
	kid int32
}

func newHostTable(hosts []netip.Prefix, kids []int32) *hostTable {
	size := 8
	for size < 2*len(hosts) {
		size *= 2
	}
	t := &hostTable{slots: make([]hostSlot, size), mask: uint64(size - 1), seed: rand.Uint64() | 1}
	for i, p := range hosts {
		a := packet.AddrFrom(p.Addr())
		fam := uint8(4)
		if p.Addr().Is6() {
			fam = 6
		}
		hi, lo := binary.BigEndian.Uint64(a[:8]), binary.BigEndian.Uint64(a[8:])
		for j := t.hash(hi, lo, fam); ; j = (j + 1) & t.mask {
			s := &t.slots[j]
			if s.fam == 0 {
				*s = hostSlot{hi: hi, lo: lo, fam: fam, kid: kids[i]}
				break
			}
		}
	}
	return t
}

func (t *hostTable) hash(hi, lo uint64, fam uint8) uint64 {
	h := (hi ^ t.seed) * 0x9e3779b97f4a7c15
	h ^= (lo + uint64(fam)) * 0xc2b2ae3d27d4eb4f
	h ^= h >> 32
	return h & t.mask
}

func (t *hostTable) lookup(a *packet.Addr, version uint8) (int32, bool) {
	hi, lo := binary.BigEndian.Uint64(a[:8]), binary.BigEndian.Uint64(a[8:])
	for j := t.hash(hi, lo, version); ; j = (j + 1) & t.mask {
		s := &t.slots[j]
		if s.fam == 0 {
			return 0, false
		}
		if s.hi == hi && s.lo == lo && s.fam == version {
			return s.kid, true
		}
	}
}
