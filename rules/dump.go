package rules

import (
	"bufio"
	"fmt"
	"io"
	"strings"
)

// Dump writes every set and chain with its rules in an nft-like one-line
// form, each rule with its index and counters, for `tungate rules`. The
// counters are read live, so a dump taken under traffic is a consistent
// view of each counter but not of the whole ruleset.
func (rs *Ruleset) Dump(w io.Writer) error { return rs.dump(w, true) }

// DumpConfig is Dump without the counters: what a config compiles to, for
// `tungate check`.
func (rs *Ruleset) DumpConfig(w io.Writer) error { return rs.dump(w, false) }

func (rs *Ruleset) dump(w io.Writer, counters bool) error {
	bw := bufio.NewWriter(w)
	for _, s := range rs.sets {
		if len(s.entries) <= 16 {
			fmt.Fprintf(bw, "set %s { %s }", s.name, strings.Join(s.entries, ", "))
		} else {
			fmt.Fprintf(bw, "set %s { %s, ... } # %d elements", s.name, strings.Join(s.entries[:16], ", "), len(s.entries))
		}
		// The running rules also say what the runtime layer added
		// (live is the file's elements and those).
		if n := s.live.p.Load().Size() - s.file.Size(); counters && n > 0 {
			fmt.Fprintf(bw, " # +%d added at runtime (tungate set list %s)", n, s.name)
		}
		bw.WriteString("\n")
	}
	// The raw chain first: it runs first.
	order := make([]int, 0, len(rs.chains))
	if ci := rs.hooks[HookPrerouting]; ci >= 0 {
		order = append(order, int(ci))
	}
	for i := range rs.chains {
		if int32(i) != rs.hooks[HookPrerouting] {
			order = append(order, i)
		}
	}
	for _, i := range order {
		c := &rs.chains[i]
		table := "filter"
		if c.hook == HookPrerouting && c.base {
			table = "raw"
		}
		if c.base {
			fmt.Fprintf(bw, "chain %s %s { type filter hook %s; policy %s; }\n", table, c.name, c.hook, c.policy)
		} else {
			fmt.Fprintf(bw, "chain %s %s {}\n", table, c.name)
		}
		for j := range c.rules {
			t := &c.text[j]
			if !counters {
				fmt.Fprintf(bw, "  [%d] %s\n", j, strings.TrimSpace(t.pre+t.post))
				continue
			}
			n := c.count(j)
			fmt.Fprintf(bw, "  [%d] %scounter packets %d bytes %d", j, t.pre, n.Packets, n.Bytes)
			if t.post != "" {
				bw.WriteString(" " + t.post)
			}
			bw.WriteByte('\n')
		}
	}
	return bw.Flush()
}
