package rules

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/gaissmai/bart"
)

// setInfo is a named set: as configured (for Dump) and as the datapath
// reads it.
type setInfo struct {
	name    string
	entries []string
	// file is the table of the config's elements; never changed after
	// compilation, so it tells which elements belong to the file.
	file *bart.Lite
	// live is what rules read: file, plus the runtime layer's elements
	// (RuntimeSets), swapped whole on every change.
	live *liveTable
}

// compiler holds the state of one Compile call; nothing outlives it but the
// Ruleset, which is what keeps Compile pure.
type compiler struct {
	env  Env
	errs errorList

	sets     map[string]*liveTable
	setNames []string
	// peerSets are [peer_sets] resolved to peer names; peerNames all
	// the peers' names, sorted, for suggestions.
	peerSets     map[string][]string
	peerSetNames []string
	peerNames    []string

	// chains are in Ruleset order; userIdx maps a user chain's name to its
	// index there.
	chains   []chain
	userIdx  map[string]int32
	userName []string
	meta     [][]ruleMeta
}

// ruleMeta is what compilation keeps about a rule beyond the rule itself:
// its index keys and the facts the hook checks need.
type ruleMeta struct {
	// src and dst are the rule's literal address prefixes when the index
	// may use them (nil: the rule is a wildcard in that dimension).
	src, dst []netip.Prefix
	// usesIn, usesOut, usesCt record hook-dependent features for the
	// check that needs the chain graph.
	usesIn, usesOut string // key names ("" when unused)
	// jumpPath is the key path of chain= for loop errors.
	jumpPath string
}

// Compile validates the configuration and compiles it into a Ruleset. All
// errors found are returned joined (each a *ConfigError naming its key
// path), in file order. Compile keeps no state between calls.
func Compile(filter FilterConfig, raw RawConfig, sets map[string][]string, env Env) (*Ruleset, error) {
	return compile(filter, raw, sets, env, true)
}

// compile is Compile with indexing optional, so tests can compare the
// indexed evaluator with plain linear evaluation of the same rules.
func compile(filter FilterConfig, raw RawConfig, sets map[string][]string, env Env, index bool) (*Ruleset, error) {
	c := &compiler{env: env, sets: map[string]*liveTable{}, userIdx: map[string]int32{}}
	rs := &Ruleset{now: env.Now, logger: env.Logger, ifaces: slices.Clone(env.Interfaces), peers: env.Peers}
	if rs.now == nil {
		rs.now = monotonic()
	}
	for i := range rs.hooks {
		rs.hooks[i] = -1
	}
	rs.sets = c.compileSets(sets)
	c.compilePeerSets()

	type src struct {
		cfg  *Chain
		path string
		name string
		base bool
		hook Hook
	}
	var srcs []src
	add := func(cfg *Chain, path, name string, base bool, h Hook) {
		if cfg != nil {
			srcs = append(srcs, src{cfg, path, name, base, h})
		}
	}
	add(filter.Input, "filter.input", "input", true, HookInput)
	add(filter.Forward, "filter.forward", "forward", true, HookForward)
	add(filter.Output, "filter.output", "output", true, HookOutput)
	users := make([]string, 0, len(filter.Chains))
	for name := range filter.Chains {
		users = append(users, name)
	}
	slices.Sort(users)
	for _, name := range users {
		path := "filter.chains." + name
		if filter.Chains[name] == nil {
			continue
		}
		if !validChainName(name) {
			c.errs.add(path, "bad chain name %q (letters, digits, '_' and '-')", name)
		}
		c.userIdx[name] = int32(len(srcs))
		c.userName = append(c.userName, name)
		add(filter.Chains[name], path, name, false, 0)
	}
	add(raw.Prerouting, "raw.prerouting", "prerouting", true, HookPrerouting)

	c.chains = make([]chain, len(srcs))
	c.meta = make([][]ruleMeta, len(srcs))
	for i, s := range srcs {
		ch := &c.chains[i]
		ch.path, ch.name, ch.base, ch.hook = s.path, s.name, s.base, s.hook
		ch.policy = c.policy(s.cfg.Policy, s.path, s.base)
		if s.base {
			rs.hooks[s.hook] = int32(i)
		}
		ch.rules = make([]rule, len(s.cfg.Rules))
		ch.text = make([]ruleText, len(s.cfg.Rules))
		c.meta[i] = make([]ruleMeta, len(s.cfg.Rules))
		for j, m := range s.cfg.Rules {
			rp := ruleParser{
				c:     c,
				chain: ch,
				path:  fmt.Sprintf("%s.rules[%d]", s.path, j),
				index: j,
				m:     m,
				r:     &ch.rules[j],
				meta:  &c.meta[i][j],
				raw:   s.base && s.hook == HookPrerouting,
			}
			ch.text[j] = rp.parse()
		}
	}
	c.checkGraph()
	if len(c.errs.errs) > 0 {
		return nil, errors.Join(c.errs.errs...)
	}
	for i := range c.chains {
		buildSegments(&c.chains[i], c.meta[i], index)
	}
	rs.chains = c.chains
	for i := range rs.chains {
		for j := range rs.chains[i].rules {
			if rs.chains[i].rules[j].verdict == actSynProxy {
				rs.synproxy = true
			}
		}
	}
	rs.allocCounters()
	return rs, nil
}

func validChainName(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !(r == '_' || r == '-' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			return false
		}
	}
	return true
}

func (c *compiler) policy(p, path string, base bool) Verdict {
	if !base {
		if p != "" {
			c.errs.add(path+".policy", "user chains have no policy (got %q)", p)
		}
		return Accept
	}
	switch p {
	case "", "accept":
		return Accept
	case "drop":
		return Drop
	}
	c.errs.add(path+".policy", "unknown policy %q%s", p, orWant(suggest(p, []string{"accept", "drop"}), "accept or drop"))
	return Accept
}

// orWant returns the suggestion, or a list of what is valid when there is
// no close candidate.
func orWant(sugg, want string) string {
	if sugg != "" {
		return sugg
	}
	return " (want " + want + ")"
}

// compileSets parses [sets] into bart tables, in name order.
func (c *compiler) compileSets(sets map[string][]string) []setInfo {
	names := make([]string, 0, len(sets))
	for n := range sets {
		names = append(names, n)
	}
	slices.Sort(names)
	var info []setInfo
	for _, n := range names {
		path := "sets." + n
		if !validChainName(n) {
			c.errs.add(path, "bad set name %q (letters, digits, '_' and '-')", n)
			continue
		}
		t := new(bart.Lite)
		for i, e := range sets[n] {
			p, msg := parseCIDR(e)
			if msg != "" {
				c.errs.add(fmt.Sprintf("%s[%d]", path, i), "%s", msg)
				continue
			}
			t.Insert(p)
		}
		live := newLiveTable(t)
		c.sets[n] = live
		c.setNames = append(c.setNames, n)
		info = append(info, setInfo{name: n, entries: sets[n], file: t, live: live})
	}
	return info
}

// parseCIDR parses a prefix or a bare address (a host prefix). It refuses
// host bits beyond the prefix length: 10.0.0.1/8 is more likely a typo for
// a host or for 10.0.0.0/8 than something to silently widen.
func parseCIDR(s string) (netip.Prefix, string) {
	s = strings.TrimSpace(s)
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil || p.Addr().Zone() != "" {
			return netip.Prefix{}, fmt.Sprintf("bad CIDR %q", s)
		}
		if p.Addr().Is4In6() {
			return netip.Prefix{}, fmt.Sprintf("bad CIDR %q: IPv4-mapped IPv6; write the IPv4 prefix", s)
		}
		if m := p.Masked(); m != p {
			return netip.Prefix{}, fmt.Sprintf("bad CIDR %q: host bits set (did you mean %q?)", s, m.String())
		}
		return p, ""
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, fmt.Sprintf("bad CIDR %q", s)
	}
	if a.Is4In6() {
		return netip.Prefix{}, fmt.Sprintf("bad CIDR %q: IPv4-mapped IPv6; write the IPv4 address", s)
	}
	return netip.PrefixFrom(a, a.BitLen()), ""
}

// checkGraph checks jump targets as a graph: no loops, no path deeper than
// the jump stack, and hook-dependent matches only where every hook that
// reaches a chain provides them (the kernel validates the same per hook).
func (c *compiler) checkGraph() {
	const (
		white = iota
		grey
		black
	)
	n := len(c.chains)
	color := make([]int, n)
	depth := make([]int, n) // jumps needed below a chain, deepest path
	var stack []int32
	var visit func(ci int32) bool
	visit = func(ci int32) bool {
		color[ci] = grey
		stack = append(stack, ci)
		ch := &c.chains[ci]
		for j := range ch.rules {
			r := &ch.rules[j]
			if r.verdict != actJump && r.verdict != actGoto {
				continue
			}
			t := r.target
			if t < 0 {
				continue
			}
			switch color[t] {
			case grey:
				at := slices.Index(stack, t)
				names := make([]string, 0, len(stack)-at+1)
				for _, s := range stack[at:] {
					names = append(names, c.chains[s].name)
				}
				names = append(names, c.chains[t].name)
				c.errs.add(c.meta[ci][j].jumpPath, "jump loop %s", strings.Join(names, " -> "))
				return false
			case white:
				if !visit(t) {
					return false
				}
			}
			d := depth[t]
			if r.verdict == actJump {
				d++
			}
			depth[ci] = max(depth[ci], d)
		}
		stack = stack[:len(stack)-1]
		color[ci] = black
		return true
	}
	for i := range c.chains {
		if color[i] == white && !visit(int32(i)) {
			return
		}
	}
	for i := range c.chains {
		if c.chains[i].base && depth[i] > maxJumpDepth {
			c.errs.add(c.chains[i].path, "jumps nest %d deep (at most %d)", depth[i], maxJumpDepth)
		}
	}

	// Which base hooks reach each chain.
	reach := make([]uint8, n)
	var mark func(ci int32, h Hook)
	mark = func(ci int32, h Hook) {
		if reach[ci]&(1<<h) != 0 {
			return
		}
		reach[ci] |= 1 << h
		for _, r := range c.chains[ci].rules {
			if (r.verdict == actJump || r.verdict == actGoto) && r.target >= 0 {
				mark(r.target, h)
			}
		}
	}
	for i := range c.chains {
		if c.chains[i].base {
			mark(int32(i), c.chains[i].hook)
		}
	}
	for i := range c.chains {
		for j := range c.chains[i].rules {
			m := &c.meta[i][j]
			path := fmt.Sprintf("%s.rules[%d]", c.chains[i].path, j)
			for h := HookPrerouting; h < numHooks; h++ {
				if reach[i]&(1<<h) == 0 {
					continue
				}
				// nft_meta_get_validate: iif only where a packet has
				// come in, oif only where its route is known.
				if m.usesIn != "" && h == HookOutput {
					c.errs.add(path+"."+m.usesIn, "no input interface in the %s hook%s", h, c.via(i, h))
				}
				if m.usesOut != "" && (h == HookInput || h == HookPrerouting) {
					c.errs.add(path+"."+m.usesOut, "no output interface in the %s hook%s", h, c.via(i, h))
				}
			}
		}
	}
}

// via says which base chain reaches a user chain, for hook errors.
func (c *compiler) via(ci int, h Hook) string {
	if c.chains[ci].base {
		return ""
	}
	for i := range c.chains {
		if c.chains[i].base && c.chains[i].hook == h {
			return " (reached from " + c.chains[i].path + ")"
		}
	}
	return ""
}
