package rules

// VisitCounters calls rule for each of the first max rules, in chain
// order (chains as `tungate rules` lists them after the raw one, rules by
// index), with its chain's config path, index, comment and counter; the
// rules past max are summed per chain and passed to rest, once for each
// chain that has some. It allocates nothing: metrics read it at every
// scrape, and a ruleset of 10,000 rules must not cost 10,000 series.
func (rs *Ruleset) VisitCounters(max int, rule func(chain string, index int, comment string, c RuleCounter), rest func(chain string, c RuleCounter)) {
	n := 0
	for ci := range rs.chains {
		c := &rs.chains[ci]
		var sum RuleCounter
		more := false
		for i := range c.rules {
			rc := c.count(i)
			if n < max {
				n++
				rule(c.path, i, c.text[i].comment, rc)
				continue
			}
			more = true
			sum.Packets += rc.Packets
			sum.Bytes += rc.Bytes
		}
		if more {
			rest(c.path, sum)
		}
	}
}
