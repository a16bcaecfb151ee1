package rules

import (
	"bytes"
	"strings"
	"testing"
)

// A rule's comment is checked, shown after the verdict by Dump, part of
// the text a reload compares (a changed comment is a changed rule), and
// passed with the counters; rules past VisitCounters' bound are summed per
// chain.
func TestCommentAndVisitCounters(t *testing.T) {
	rs := mustCompile(t, `
[filter.forward]
policy = "accept"
rules = [
  { proto = "udp", dport = 1, action = "accept", comment = "dns-ish" },
  { proto = "udp", dport = 2, action = "accept" },
  { proto = "udp", dport = 3, action = "accept" },
]
[filter.input]
policy = "accept"
rules = [ { proto = "udp", dport = 1, action = "accept" }, { proto = "udp", dport = 2, action = "accept" } ]
`)
	var b bytes.Buffer
	if err := rs.Dump(&b); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), `accept comment "dns-ish"`) {
		t.Errorf("dump lacks the comment:\n%s", b.String())
	}
	for dport, n := range map[uint16]int{1: 3, 2: 2, 3: 1} {
		for range n {
			rs.Eval(HookForward, newCtx().packet(decode(t, udp("10.0.0.1", "192.0.2.1", 9, dport))))
			rs.Eval(HookInput, newCtx().packet(decode(t, udp("fd00::1", "2001:db8::1", 9, dport))))
		}
	}
	type seen struct {
		chain   string
		index   int
		comment string
		packets uint64
	}
	var got []seen
	var rest []seen
	rs.VisitCounters(3, func(chain string, i int, comment string, c RuleCounter) {
		got = append(got, seen{chain, i, comment, c.Packets})
	}, func(chain string, c RuleCounter) {
		rest = append(rest, seen{chain: chain, packets: c.Packets})
	})
	// Chains in their compiled order; find where forward is.
	var fw []seen
	for _, s := range got {
		if s.chain == "filter.forward" {
			fw = append(fw, s)
		}
	}
	if len(fw) != 1 {
		t.Errorf("forward got %d of the 3 series, want its share, 1", len(fw))
	}
	if len(got) != 3 {
		t.Fatalf("visited %d rules, want the bound 3: %+v", len(got), got)
	}
	total := uint64(0)
	for _, s := range append(got, rest...) {
		total += s.packets
	}
	if total != 6+5 {
		t.Errorf("visited and rest sum to %d packets, want 11 (nothing lost past the bound): %+v %+v", total, got, rest)
	}
	// 3 shared by two chains: one each, and the one left over to the
	// first (input): forward's rules 1 and 2 are summed.
	if len(rest) != 1 || rest[0].chain != "filter.forward" || rest[0].packets != 3 {
		t.Errorf("rest %+v, want filter.forward's with 3 packets", rest)
	}
	for _, s := range fw {
		if s.index == 0 && (s.comment != "dns-ish" || s.packets != 3) {
			t.Errorf("forward rule 0: %+v, want comment dns-ish and 3 packets", s)
		}
		if s.index != 0 && s.comment != "" {
			t.Errorf("forward rule %d has comment %q", s.index, s.comment)
		}
	}
	if a := testing.AllocsPerRun(10, func() {
		rs.VisitCounters(1000, func(string, int, string, RuleCounter) {}, func(string, RuleCounter) {})
	}); a != 0 {
		t.Errorf("VisitCounters allocates %.0f times", a)
	}

	// A changed comment is a changed rule: its counter does not carry.
	nu := mustCompile(t, `
[filter.forward]
policy = "accept"
rules = [
  { proto = "udp", dport = 1, action = "accept", comment = "renamed" },
  { proto = "udp", dport = 2, action = "accept" },
  { proto = "udp", dport = 3, action = "accept" },
]
`)
	nu.InheritCounters(rs)
	if c := nu.Counters("filter.forward"); c[0].Packets != 0 || c[1].Packets != 2 {
		t.Errorf("after a comment change: %+v, want rule 0 at 0 and rule 1 carried at 2", c)
	}
}

// A comment that is not a short printable string is a config error naming
// the key.
func TestCommentErrors(t *testing.T) {
	for _, c := range []string{`5`, `"` + strings.Repeat("x", 129) + `"`, `"a\tb"`} {
		_, err := compileTOML(t, "[filter.forward]\nrules = [ { action = \"accept\", comment = "+c+" } ]\n", testEnv())
		if err == nil || !strings.Contains(err.Error(), "filter.forward.rules[0].comment") {
			t.Errorf("comment = %s: %v, want an error at filter.forward.rules[0].comment", c, err)
		}
	}
}
