package rules

// Counters across a reload. A reload compiles a new Ruleset; its counters
// would start at zero, and every rule's hit count with them, although most
// rules did not change. nft keeps the counter of a rule it keeps (the rule
// object and its handle survive a transaction that does not touch it); pf
// resets all of them on a reload. tungate does what nft does: a rule of the
// new Ruleset identical to one of the old — same chain (config path), same
// text as `tungate rules` prints it — continues its count; a new or changed
// rule starts at zero. So a rule's counter, and the metric read from it,
// only goes down when the rule changed.

// ruleRef names one rule of a Ruleset: chain index and rule index.
type ruleRef struct{ c, i int }

// carried is one rule whose count the new Ruleset continues.
type carried struct {
	from, to ruleRef
	seen     RuleCounter // what the old rule had counted when last carried
}

// CounterCarry is the state of InheritCounters between the swap and
// Settle.
type CounterCarry struct {
	old, rs *Ruleset
	rules   []carried
}

// InheritCounters starts the counter of each of rs's rules that is
// identical to one of old's (same chain path and text; the k-th of several
// identical rules of a chain pairs with the k-th) at old's count. rs must not
// be in service yet. Packets old still counts until it is out of service
// are added by Settle, which the caller calls after the swap; nil when
// nothing carries over.
func (rs *Ruleset) InheritCounters(old *Ruleset) *CounterCarry {
	if old == nil || rs == old {
		return nil
	}
	type key struct{ path, pre, post string } // no concatenation: no allocation per rule
	byText := make(map[key][]ruleRef, len(old.chains)*8)
	for ci := range old.chains {
		c := &old.chains[ci]
		for i := range c.rules {
			k := key{c.path, c.text[i].pre, c.text[i].post}
			byText[k] = append(byText[k], ruleRef{ci, i})
		}
	}
	cc := &CounterCarry{old: old, rs: rs}
	for ci := range rs.chains {
		c := &rs.chains[ci]
		for i := range c.rules {
			k := key{c.path, c.text[i].pre, c.text[i].post}
			refs := byText[k]
			if len(refs) == 0 {
				continue
			}
			byText[k] = refs[1:]
			cc.rules = append(cc.rules, carried{from: refs[0], to: ruleRef{ci, i}})
		}
	}
	if len(cc.rules) == 0 {
		return nil
	}
	cc.Settle()
	return cc
}

// Settle adds to the new rules what their old counterparts counted since
// the last call (InheritCounters' own, or Settle's): call it after the new
// Ruleset is in service, and again once no worker can still be evaluating
// the old one, so no hit is lost. Safe on a nil CounterCarry; not for
// concurrent use with itself.
func (cc *CounterCarry) Settle() {
	if cc == nil {
		return
	}
	for k := range cc.rules {
		r := &cc.rules[k]
		now := cc.old.chains[r.from.c].count(r.from.i)
		dp, db := now.Packets-r.seen.Packets, now.Bytes-r.seen.Bytes
		if dp == 0 && db == 0 {
			continue
		}
		r.seen = now
		// Shard 0: readers sum the shards.
		ctr := &cc.rs.chains[r.to.c].counters[r.to.i]
		ctr.packets.Add(dp)
		ctr.bytes.Add(db)
	}
}

// Carried reports how many rules continue an old rule's count.
func (cc *CounterCarry) Carried() int {
	if cc == nil {
		return 0
	}
	return len(cc.rules)
}
