package gateway

import (
	"strconv"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"tungate/alg"
	"tungate/nat"
	"tungate/packet"
	"tungate/rules"
)

// MaxRuleSeries bounds the rule hit series: at most MaxRuleSeries rules get
// a series each, the chains sharing them evenly (each its first rules by
// index; see rules.Ruleset.VisitCounters), and the rest are summed per
// chain into tungate_rule_unlisted_*. A ruleset of 10,000 rules would
// otherwise be 20,000 series, more than an operator graphs and a scrape
// should carry; `tungate rules` shows every counter.
const MaxRuleSeries = 1000

// ruleIndexLabels are the index label values, made once so a scrape does
// not format an index per rule.
var ruleIndexLabels = func() []string {
	s := make([]string, MaxRuleSeries)
	for i := range s {
		s[i] = strconv.Itoa(i)
	}
	return s
}()

// HelperStats are the helpers' (ALGs') counters, for `tungate status` and
// metrics. The registry is rebuilt by a reload that changes [helpers], and
// carries them over (alg.InheritStats), so they only grow.
type HelperStats struct {
	ExpectationsCreated uint64 `json:"expectations_created"`
	Mangled             uint64 `json:"mangled"`
	Replayed            uint64 `json:"replayed"`
	Ignored             uint64 `json:"ignored"`
	LongLines           uint64 `json:"long_lines"`
	Held                uint64 `json:"held"`
	Dropped             uint64 `json:"dropped"`
	Unrewritable        uint64 `json:"unrewritable"`
}

// HelperStats returns the helpers' counters.
func (g *Gateway) HelperStats() HelperStats {
	s := &g.pl.Load().alg.Stats
	return HelperStats{
		ExpectationsCreated: s.Expected.Load(), Mangled: s.Mangled.Load(), Replayed: s.Replayed.Load(),
		Ignored: s.Ignored.Load(), LongLines: s.LongLines.Load(), Held: s.Held.Load(),
		Dropped: s.Dropped.Load(), Unrewritable: s.Unrewritable.Load(),
	}
}

// NATPortUse returns every snat and masquerade rule's port use per family
// and protocol (nat.Engine.PortUse).
func (g *Gateway) NATPortUse() []nat.PortUse { return g.nat.PortUse(nil) }

// FamilyName is "ipv4" or "ipv6", as metric labels and JSON say it.
func FamilyName(fam uint8) string {
	if fam == 6 {
		return "ipv6"
	}
	return "ipv4"
}

// ProtoName is a NAT port set's protocol by name.
func ProtoName(p uint8) string {
	switch p {
	case packet.ProtoTCP:
		return "tcp"
	case packet.ProtoUDP:
		return "udp"
	case packet.ProtoICMP:
		return "icmp"
	case packet.ProtoICMPv6:
		return "icmpv6"
	}
	return strconv.Itoa(int(p))
}

// opsCollector exports what an operator graphs beyond the datapath
// counters: rule hits, NAT port use per rule, the helpers' counters and
// reload counts. It reads them at scrape time, off the datapath: rule
// counters are summed from their shards, NAT port use takes the NAT lock
// for a lookup per rule and protocol.
type opsCollector struct {
	g *Gateway
	// ruleHits and ruleBytes are per rule (chain, index, comment); the
	// unlisted ones per chain, for the rules past MaxRuleSeries.
	ruleHits, ruleBytes         *prometheus.Desc
	unlistedHits, unlistedBytes *prometheus.Desc
	natUsed, natCapacity        *prometheus.Desc
	helper                      []helperDesc
	reloads                     *prometheus.Desc

	// mu guards buf, the port use read at each scrape (scrapes may run
	// at once).
	mu  sync.Mutex
	buf []nat.PortUse
}

type helperDesc struct {
	d *prometheus.Desc
	v func(s *alg.Stats) uint64
}

func newOpsCollector(g *Gateway) *opsCollector {
	rl := []string{"chain", "index", "comment"}
	nl := []string{"rule", "out", "family", "protocol"}
	h := func(name, help string, v func(s *alg.Stats) uint64) helperDesc {
		return helperDesc{prometheus.NewDesc("tungate_helper_"+name+"_total", help, nil, nil), v}
	}
	return &opsCollector{
		g:             g,
		ruleHits:      prometheus.NewDesc("tungate_rule_hits_total", "Packets that matched the rule (its counter in `tungate rules`). At most 1000 rules, shared by the chains, have a series (the others are in tungate_rule_unlisted_hits_total); a reload keeps the count of a rule it leaves unchanged and starts a changed one at 0.", rl, nil),
		ruleBytes:     prometheus.NewDesc("tungate_rule_bytes_total", "Bytes (IP packet lengths) of the packets that matched the rule.", rl, nil),
		unlistedHits:  prometheus.NewDesc("tungate_rule_unlisted_hits_total", "Packets that matched the chain's rules that have no series of their own (past the chain's share of 1000).", []string{"chain"}, nil),
		unlistedBytes: prometheus.NewDesc("tungate_rule_unlisted_bytes_total", "Bytes of the packets that matched the chain's rules that have no series of their own.", []string{"chain"}, nil),
		natUsed:       prometheus.NewDesc("tungate_nat_ports_used", "Ports (ICMP identifiers) held on the snat/masquerade rule's external addresses: by mappings of this and other rules on the same address and by port forwards.", nl, nil),
		natCapacity:   prometheus.NewDesc("tungate_nat_ports_capacity", "Ports (ICMP identifiers) the snat/masquerade rule gives out: its range times its addresses.", nl, nil),
		helper: []helperDesc{
			h("expectations_created", "Expectations the helpers (ftp, tftp) created.", func(s *alg.Stats) uint64 { return s.Expected.Load() }),
			h("mangled_packets", "Payload rewrites by the helpers.", func(s *alg.Stats) uint64 { return s.Mangled.Load() }),
			h("replayed_packets", "Payload rewrites repeated on retransmissions.", func(s *alg.Stats) uint64 { return s.Replayed.Load() }),
			h("ignored_announcements", "Address announcements refused (another address than the sender's, a foreign family, malformed numbers).", func(s *alg.Stats) uint64 { return s.Ignored.Load() }),
			h("long_lines", "Control lines too long to parse.", func(s *alg.Stats) uint64 { return s.LongLines.Load() }),
			h("held_packets", "Segments dropped because they ended inside a command to rewrite whole (the sender resends).", func(s *alg.Stats) uint64 { return s.Held.Load() }),
			h("dropped_packets", "Packets a helper or the sequence adjustment dropped (held ones included).", func(s *alg.Stats) uint64 { return s.Dropped.Load() }),
			h("unrewritable_commands", "Commands that needed a rewrite after part of their text had left.", func(s *alg.Stats) uint64 { return s.Unrewritable.Load() }),
		},
		reloads: prometheus.NewDesc("tungate_reloads_total", "Reload attempts by result (success: applied; failure: refused or failed, the old config kept).", []string{"result"}, nil),
	}
}

func (c *opsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.ruleHits, c.ruleBytes, c.unlistedHits, c.unlistedBytes, c.natUsed, c.natCapacity, c.reloads} {
		ch <- d
	}
	for _, h := range c.helper {
		ch <- h.d
	}
}

func (c *opsCollector) Collect(ch chan<- prometheus.Metric) {
	g := c.g
	pl := g.pl.Load()
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	pl.rules.VisitCounters(MaxRuleSeries, func(chain string, i int, comment string, rc rules.RuleCounter) {
		// i < MaxRuleSeries: no more rules than that are visited, and each
		// chain's indexes start at 0.
		idx := ruleIndexLabels[i]
		counter(c.ruleHits, rc.Packets, chain, idx, comment)
		counter(c.ruleBytes, rc.Bytes, chain, idx, comment)
	}, func(chain string, rc rules.RuleCounter) {
		counter(c.unlistedHits, rc.Packets, chain)
		counter(c.unlistedBytes, rc.Bytes, chain)
	})
	c.mu.Lock()
	c.buf = g.nat.PortUse(c.buf[:0])
	for _, u := range c.buf {
		fam, proto := FamilyName(u.Family), ProtoName(u.Proto)
		ch <- prometheus.MustNewConstMetric(c.natUsed, prometheus.GaugeValue, float64(u.Used), u.Rule, u.Out, fam, proto)
		ch <- prometheus.MustNewConstMetric(c.natCapacity, prometheus.GaugeValue, float64(u.Capacity), u.Rule, u.Out, fam, proto)
	}
	c.mu.Unlock()
	for _, h := range c.helper {
		counter(h.d, h.v(&pl.alg.Stats))
	}
	ok, failed := g.ReloadCounts()
	counter(c.reloads, ok, "success")
	counter(c.reloads, failed, "failure")
}
