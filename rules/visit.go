package rules

// VisitCounters calls rule for at most max rules with their chain's config
// path, index, comment and counter, and rest, once for each chain with
// rules left out, with their sum. The chains share max evenly — each gets
// its first rules by index, a chain with fewer rules than its share leaves
// the remainder to the others — so a huge user chain cannot crowd the
// base chains out. It allocates nothing: metrics read it at every scrape,
// and a ruleset of 10,000 rules must not cost 10,000 series.
func (rs *Ruleset) VisitCounters(max int, rule func(chain string, index int, comment string, c RuleCounter), rest func(chain string, c RuleCounter)) {
	quota, extra := rs.shares(max)
	for ci := range rs.chains {
		c := &rs.chains[ci]
		q := min(len(c.rules), quota)
		if len(c.rules) > quota && extra > 0 {
			q++
			extra--
		}
		var sum RuleCounter
		for i := range c.rules {
			rc := c.count(i)
			if i < q {
				rule(c.path, i, c.text[i].comment, rc)
				continue
			}
			sum.Packets += rc.Packets
			sum.Bytes += rc.Bytes
		}
		if q < len(c.rules) {
			rest(c.path, sum)
		}
	}
}

// shares returns the largest per-chain quota such that the chains' rules
// up to it fit in limit, and how many more rules the first chains longer
// than the quota may add (one each).
func (rs *Ruleset) shares(limit int) (quota, extra int) {
	used := func(q int) int {
		n := 0
		for i := range rs.chains {
			n += min(len(rs.chains[i].rules), q)
		}
		return n
	}
	longest := 0
	for i := range rs.chains {
		longest = max(longest, len(rs.chains[i].rules))
	}
	if used(longest) <= limit {
		return longest, 0
	}
	lo, hi := 0, longest // used(lo) <= limit < used(hi)
	for hi-lo > 1 {
		mid := (lo + hi) / 2
		if used(mid) <= limit {
			lo = mid
		} else {
			hi = mid
		}
	}
	return lo, limit - used(lo)
}
