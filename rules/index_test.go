package rules

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"tungate/conntrack"
	"tungate/packet"
)

// genRules makes a random generated-style ruleset: runs of one shape
// (which of src/dst/sport/dport a rule constrains) with random addresses,
// nested prefixes, port ranges and lists, both families, and a sprinkle of
// other matches, statements, jumps, returns and unindexable rules. Addresses
// and ports come from small pools so that rules overlap and a packet often
// matches several of them: first-match order is what the test checks.
func genRules(rng *rand.Rand, n int) (FilterConfig, []genRule) {
	var rules []map[string]any
	var gens []genRule
	for len(rules) < n {
		shape := 1 + rng.IntN(15) // bits: src, dst, sport, dport
		run := 1 + rng.IntN(400)
		if rng.IntN(4) == 0 {
			run = 1 + rng.IntN(5)
		}
		for k := 0; k < run && len(rules) < n; k++ {
			m := map[string]any{}
			var g genRule
			v6 := rng.IntN(3) == 0
			if shape&1 != 0 {
				g.src = randPrefixes(rng, v6)
				m["src"] = prefixStrings(g.src)
			}
			if shape&2 != 0 {
				g.dst = randPrefixes(rng, v6)
				m["dst"] = prefixStrings(g.dst)
			}
			if shape&4 != 0 {
				m["sport"], g.sport = randPorts(rng)
			}
			if shape&8 != 0 {
				m["dport"], g.dport = randPorts(rng)
			}
			if shape&12 != 0 && rng.IntN(2) == 0 {
				m["proto"] = []string{"tcp", "udp"}[rng.IntN(2)]
			}
			switch rng.IntN(40) {
			case 0:
				m["ct_state"] = "new"
			case 1:
				m["in"] = "!wan"
			case 2:
				m["mark"] = int64(rng.IntN(3))
			case 3:
				// A negated entry is not indexable: it breaks the run.
				p := randPrefix(rng, v6)
				m["src"] = []any{p.String(), "!" + randAddrIn(rng, p).String()}
				g.src = []netip.Prefix{p}
			case 4:
				if v6 {
					m["family"] = "ip6"
				} else {
					m["family"] = []any{"ip", "!ip6"}
				}
			}
			// Mostly non-terminal rules, so a packet walks past many
			// matching rules and the counters compare a lot of them.
			switch a := rng.IntN(40); {
			case a < 3:
				m["action"] = "accept"
			case a < 6:
				m["action"] = "drop"
			case a < 8:
				m["action"] = "reject"
			case a < 10:
				m["action"], m["chain"] = "jump", "sub"
			case a < 11:
				m["action"], m["chain"] = "goto", "sub"
			case a < 12:
				m["action"] = "return"
			case a < 25:
				m["set_mark"] = int64(rng.IntN(3))
			default:
				// counter only
			}
			rules = append(rules, m)
			gens = append(gens, g)
		}
	}
	sub := []map[string]any{
		{"mark": int64(1), "action": "return"},
		{"dport": "1000-1999", "action": "drop"},
		{"set_mark": int64(2)},
	}
	// The sub chain is itself long enough to be indexed.
	for i := range 40 {
		m := map[string]any{"dport": fmt.Sprintf("%d-%d", i*1500, i*1500+1499)}
		switch i % 4 {
		case 0:
			m["action"] = "accept"
		case 1:
			m["action"] = "drop"
		case 2:
			m["set_mark"] = int64(i % 3)
		}
		sub = append(sub, m)
	}
	return FilterConfig{
		Forward: &Chain{Policy: "drop", Rules: rules},
		Chains:  map[string]*Chain{"sub": {Rules: sub}},
	}, gens
}

// genRule keeps a generated rule's values so packets can be aimed at it.
type genRule struct {
	src, dst     []netip.Prefix
	sport, dport []portRange
}

func randPrefixes(rng *rand.Rand, v6 bool) []netip.Prefix {
	n := 1
	if rng.IntN(6) == 0 {
		n = 2 + rng.IntN(3)
	}
	var ps []netip.Prefix
	for range n {
		ps = append(ps, randPrefix(rng, v6))
	}
	return ps
}

func randPrefix(rng *rand.Rand, v6 bool) netip.Prefix {
	if v6 {
		var a [16]byte
		a[0] = 0xfd
		a[6] = byte(rng.IntN(64))
		a[7] = byte(rng.IntN(16))
		a[15] = byte(rng.IntN(256))
		bits := []int{128, 128, 128, 128, 128, 120, 120, 64}[rng.IntN(8)]
		if rng.IntN(1000) == 0 {
			bits = []int{56, 8}[rng.IntN(2)]
		}
		return netip.PrefixFrom(netip.AddrFrom16(a), bits).Masked()
	}
	a := [4]byte{10, byte(rng.IntN(64)), byte(rng.IntN(16)), byte(rng.IntN(256))}
	bits := []int{32, 32, 32, 32, 32, 28, 24, 24}[rng.IntN(8)]
	if rng.IntN(1000) == 0 {
		bits = []int{16, 8}[rng.IntN(2)]
	}
	return netip.PrefixFrom(netip.AddrFrom4(a), bits).Masked()
}

func prefixStrings(ps []netip.Prefix) any {
	if len(ps) == 1 {
		return ps[0].String()
	}
	var s []any
	for _, p := range ps {
		s = append(s, p.String())
	}
	return s
}

// randPorts returns a port match value and the ranges it allows (the
// positive entries; negations are left to the evaluator).
func randPorts(rng *rand.Rand) (any, []portRange) {
	p := uint16(rng.IntN(2000) * 30)
	switch rng.IntN(16) {
	case 0:
		hi := p + uint16(rng.IntN(100))
		return fmt.Sprintf("%d-%d", p, hi), []portRange{{p, hi}}
	case 1:
		q := uint16(rng.IntN(2000) * 30)
		return []any{int64(p), fmt.Sprint(q)}, []portRange{{p, p}, {q, q}}
	case 2:
		return []any{fmt.Sprintf("%d-%d", p, p+20), fmt.Sprintf("!%d", p+10)}, []portRange{{p, p + 9}, {p + 11, p + 20}}
	}
	return int64(p), []portRange{{p, p}}
}

// randAddrIn returns a random address inside p.
func randAddrIn(rng *rand.Rand, p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		if rng.IntN(2) == 0 {
			b[i/8] |= 0x80 >> (i % 8)
		}
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// genPacket aims a packet at a random rule (or nowhere): an address in one
// of its prefixes, a port in one of its ranges; the other fields random.
func genPacket(rng *rand.Rand, gens []genRule) (pkt, ctx) {
	g := gens[rng.IntN(len(gens))]
	v6 := rng.IntN(3) == 0
	for _, ps := range [][]netip.Prefix{g.src, g.dst} {
		if len(ps) > 0 {
			v6 = ps[0].Addr().Is6()
		}
	}
	pick := func(ps []netip.Prefix) netip.Addr {
		if len(ps) > 0 && rng.IntN(8) != 0 {
			return randAddrIn(rng, ps[rng.IntN(len(ps))])
		}
		return randAddrIn(rng, randPrefix(rng, v6))
	}
	port := func(rs []portRange) uint16 {
		if len(rs) > 0 && rng.IntN(8) != 0 {
			r := rs[rng.IntN(len(rs))]
			return r.lo + uint16(rng.IntN(int(r.hi-r.lo)+1))
		}
		return uint16(rng.IntN(2000) * 30)
	}
	p := pkt{src: pick(g.src).String(), dst: pick(g.dst).String(), sport: port(g.sport), dport: port(g.dport)}
	switch rng.IntN(10) {
	case 0:
		p.proto = packet.ProtoICMP
		if v6 {
			p.proto = packet.ProtoICMPv6
		}
		p.itype = 8
	case 1:
		p.proto = packet.ProtoUDP
		p.nonFirstFrag = true
	case 2, 3, 4, 5:
		p.proto = packet.ProtoTCP
		p.flags = packet.TCPSyn
	default:
		p.proto = packet.ProtoUDP
	}
	c := newCtx()
	c.in = rng.IntN(3)
	c.mark = uint32(rng.IntN(3))
	if rng.IntN(4) == 0 {
		c.info = conntrack.New
	}
	return p, c
}

// TestIndexDifferential checks the indexed evaluator against plain linear
// evaluation of the same compiled rules: same decision, same mark, and at
// the end the same counter on every rule (so the same rules matched).
func TestIndexDifferential(t *testing.T) {
	for seed := uint64(1); seed <= 4; seed++ {
		rng := rand.New(rand.NewPCG(seed, 99))
		n := 10000
		if seed > 1 {
			n = 2000 + rng.IntN(3000)
		}
		filter, gens := genRules(rng, n)
		env := testEnv()
		indexed, err := compile(filter, RawConfig{}, nil, env, true)
		if err != nil {
			t.Fatal(err)
		}
		linear, err := compile(filter, RawConfig{}, nil, env, false)
		if err != nil {
			t.Fatal(err)
		}
		if segs := indexedSegments(indexed, "filter.forward"); segs < 3 {
			t.Fatalf("seed %d: only %d indexed segments; the test would not test the index", seed, segs)
		}
		if indexedSegments(linear, "filter.forward") != 0 {
			t.Fatal("linear ruleset has an index")
		}
		decided := map[Verdict]int{}
		packets := 200000 / (n / 100)
		if raceEnabled {
			packets /= 8
		}
		for i := range packets {
			ps, c := genPacket(rng, gens)
			b := ps.bytes()
			var p1, p2 packet.Parsed
			if err := p1.Decode(b); err != nil {
				t.Fatal(err)
			}
			if err := p2.Decode(b); err != nil {
				t.Fatal(err)
			}
			pk1, pk2 := c.packet(&p1), c.packet(&p2)
			d1 := indexed.Eval(HookForward, pk1)
			d2 := linear.Eval(HookForward, pk2)
			if d1 != d2 || pk1.Mark != pk2.Mark {
				t.Fatalf("seed %d packet %d %+v %+v: indexed %+v mark %d, linear %+v mark %d", seed, i, ps, c, d1, pk1.Mark, d2, pk2.Mark)
			}
			decided[d1.Verdict]++
		}
		for _, path := range []string{"filter.forward", "filter.chains.sub"} {
			a, b := indexed.Counters(path), linear.Counters(path)
			hit := 0
			for i := range a {
				if a[i] != b[i] {
					t.Fatalf("seed %d %s rule %d: indexed counted %+v, linear %+v", seed, path, i, a[i], b[i])
				}
				if a[i].Packets > 0 {
					hit++
				}
			}
			t.Logf("seed %d %s: %d rules, %d matched something; verdicts %v", seed, path, len(a), hit, decided)
		}
		if decided[Accept] == 0 || decided[Drop] == 0 || decided[Reject] == 0 {
			t.Fatalf("verdicts %v: packets do not reach enough rules", decided)
		}
	}
}

func indexedSegments(rs *Ruleset, path string) int {
	n := 0
	for i := range rs.chains {
		if rs.chains[i].path != path {
			continue
		}
		for _, s := range rs.chains[i].segs {
			if s.idx != nil {
				n++
			}
		}
	}
	return n
}

// gen10k is the shape of a generated ruleset: established first, then
// 10,000 rules that differ by address and port.
func gen10k(n int) FilterConfig {
	rules := []map[string]any{
		{"ct_state": []any{"established", "related"}, "action": "accept"},
		{"ct_state": "invalid", "action": "drop"},
	}
	for i := range n {
		var dst string
		if i%2 == 0 {
			dst = fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255)
		} else {
			dst = fmt.Sprintf("fd00::%x", i)
		}
		rules = append(rules, map[string]any{
			"dst": dst, "proto": "tcp", "dport": int64(1000 + i%5000), "action": "accept",
		})
	}
	return FilterConfig{Forward: &Chain{Policy: "drop", Rules: rules}}
}

// TestCompile10kTime bounds compile time (the benchmark reports it) in
// CPU time, so a busy machine does not fail it.
func TestCompile10kTime(t *testing.T) {
	cfg := gen10k(10000)
	limit := time.Second
	if raceEnabled {
		limit *= 10
	}
	start := processCPU()
	rs, err := Compile(cfg, RawConfig{}, nil, testEnv())
	if err != nil {
		t.Fatal(err)
	}
	if d := processCPU() - start; d > limit {
		t.Fatalf("compiling 10,000 rules took %v of CPU", d)
	}
	if indexedSegments(rs, "filter.forward") != 1 {
		t.Fatal("10k rules not indexed")
	}
	// The last rule is found through the index.
	c := newCtx()
	c.info = conntrack.New
	i := 9999
	pk := c.packet(decode(t, tcp4("fd00::1", fmt.Sprintf("fd00::%x", i), 5, uint16(1000+i%5000), packet.TCPSyn)))
	if d := rs.Eval(HookForward, pk); d.Verdict != Accept {
		t.Fatalf("last rule: %v", d.Verdict)
	}
	if got := rs.Counters("filter.forward")[2+i].Packets; got != 1 {
		t.Fatalf("last rule counter %d", got)
	}
}
