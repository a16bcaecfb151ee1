package gateway

import (
	"fmt"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
)

// gatherOps gathers the gateway's metrics through a real registry and
// returns each family by name.
func gatherOps(t *testing.T, g *Gateway) map[string]*dto.MetricFamily {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(newCollector(g), newOpsCollector(g))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	m := map[string]*dto.MetricFamily{}
	for _, mf := range mfs {
		m[mf.GetName()] = mf
	}
	return m
}

// opsValue returns the value of name's series with exactly labels
// (name=value pairs) and its type; ok false when there is none.
func opsValue(mfs map[string]*dto.MetricFamily, name string, labels ...string) (float64, dto.MetricType, bool) {
	mf := mfs[name]
	if mf == nil {
		return 0, 0, false
	}
next:
	for _, m := range mf.GetMetric() {
		if len(m.GetLabel())*2 != len(labels) {
			continue
		}
		for _, l := range m.GetLabel() {
			found := false
			for i := 0; i < len(labels); i += 2 {
				if labels[i] == l.GetName() && labels[i+1] == l.GetValue() {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch mf.GetType() {
		case dto.MetricType_COUNTER:
			return m.GetCounter().GetValue(), mf.GetType(), true
		case dto.MetricType_GAUGE:
			return m.GetGauge().GetValue(), mf.GetType(), true
		}
	}
	return 0, 0, false
}

// Rule hits, NAT port use per rule, helper counters and reload counts,
// gathered through a registry after known traffic and reloads: a reload
// that keeps a rule continues its series, one that changes it starts it
// again at 0, and the counters of reloads grow by result.
func TestOpsMetrics(t *testing.T) {
	base := strings.Replace(reloadBase, `{ in = "lan", action = "accept" },`, `{ in = "lan", action = "accept", comment = "lan out" },`, 1)
	r := newReloadRig(t, base)
	for i := range 3 {
		r.forwards(uint16(6000 + i))
	}
	r.g.pl.Load().alg.Stats.Expected.Add(2)
	type want struct {
		name   string
		labels []string
		typ    dto.MetricType
		v      float64
	}
	check := func(step string, ws ...want) {
		t.Helper()
		mfs := gatherOps(t, r.g)
		for _, w := range ws {
			v, typ, ok := opsValue(mfs, w.name, w.labels...)
			if !ok {
				t.Errorf("%s: no %s%v", step, w.name, w.labels)
				continue
			}
			if v != w.v || typ != w.typ {
				t.Errorf("%s: %s%v = %v (%v), want %v (%v)", step, w.name, w.labels, v, typ, w.v, w.typ)
			}
		}
	}
	counter, gauge := dto.MetricType_COUNTER, dto.MetricType_GAUGE
	lanRule := []string{"chain", "filter.forward", "index", "1", "comment", "lan out"}
	masqUDP := []string{"rule", "nat.masquerade[0]", "out", "wan", "family", "ipv4", "protocol", "udp"}
	check("after 3 flows",
		want{"tungate_rule_hits_total", lanRule, counter, 3},
		want{"tungate_rule_hits_total", []string{"chain", "filter.forward", "index", "0", "comment", ""}, counter, 0},
		want{"tungate_nat_ports_used", masqUDP, gauge, 3},
		want{"tungate_nat_ports_capacity", masqUDP, gauge, 65535},
		want{"tungate_helper_expectations_created_total", nil, counter, 2},
		want{"tungate_reloads_total", []string{"result", "success"}, counter, 0},
		want{"tungate_reloads_total", []string{"result", "failure"}, counter, 0},
	)
	if v, _, ok := opsValue(gatherOps(t, r.g), "tungate_rule_bytes_total", lanRule...); !ok || v < 3*28 {
		t.Errorf("rule bytes %v, want at least 3 UDP packets' worth", v)
	}
	if _, _, ok := opsValue(gatherOps(t, r.g), "tungate_nat_ports_used", "rule", "nat.masquerade[0]", "out", "wan", "family", "ipv6", "protocol", "udp"); ok {
		t.Error("an IPv4-only masquerade rule has an IPv6 series")
	}

	// A reload that appends a rule keeps rule 1: its series goes on.
	kept := strings.Replace(base, `comment = "lan out" },`, `comment = "lan out" },
  { in = "wan", proto = "tcp", dport = 22, action = "accept" },`, 1)
	if _, err := r.reload(kept, ReloadOptions{}); err != nil {
		t.Fatal(err)
	}
	r.forwards(6100)
	check("after a reload keeping the rule",
		want{"tungate_rule_hits_total", lanRule, counter, 4},
		want{"tungate_rule_hits_total", []string{"chain", "filter.forward", "index", "2", "comment", ""}, counter, 0},
		want{"tungate_nat_ports_used", masqUDP, gauge, 4},
		want{"tungate_helper_expectations_created_total", nil, counter, 2},
		want{"tungate_reloads_total", []string{"result", "success"}, counter, 1},
	)
	// A reload that changes it (its comment too): a new series, at 0.
	changed := strings.Replace(kept, `{ in = "lan", action = "accept", comment = "lan out" }`, `{ in = "lan", proto = "udp", action = "accept", comment = "lan udp" }`, 1)
	if _, err := r.reload(changed, ReloadOptions{}); err != nil {
		t.Fatal(err)
	}
	check("after a reload changing the rule",
		want{"tungate_rule_hits_total", []string{"chain", "filter.forward", "index", "1", "comment", "lan udp"}, counter, 0},
	)
	if _, _, ok := opsValue(gatherOps(t, r.g), "tungate_rule_hits_total", lanRule...); ok {
		t.Error("the changed rule's old series is still exported")
	}
	// A refused reload counts as a failure.
	if _, err := r.reload(strings.Replace(changed, `tun = "m-wan"`, `tun = "m-other"`, 1), ReloadOptions{}); err == nil {
		t.Fatal("a reload renaming a running TUN applied")
	}
	check("after a refused reload",
		want{"tungate_reloads_total", []string{"result", "success"}, counter, 2},
		want{"tungate_reloads_total", []string{"result", "failure"}, counter, 1},
	)
	problems, err := testutil.CollectAndLint(newOpsCollector(r.g))
	if err != nil || len(problems) > 0 {
		t.Fatalf("metrics lint: %v %+v", err, problems)
	}
}

// A ruleset of more rules than MaxRuleSeries exports that many rule
// series and the rest summed per chain.
func TestRuleSeriesBounded(t *testing.T) {
	var b strings.Builder
	b.WriteString(strings.Replace(reloadBase, `  { in = "lan", action = "accept" },
]`, `]`, 1))
	b.WriteString("\n[filter.input]\npolicy = \"accept\"\nrules = [\n")
	for i := range MaxRuleSeries + 200 {
		fmt.Fprintf(&b, "  { proto = \"tcp\", dport = %d, action = \"accept\" },\n", 1+i%60000)
	}
	b.WriteString("]\n")
	r := newReloadRig(t, b.String())
	mfs := gatherOps(t, r.g)
	if n := len(mfs["tungate_rule_hits_total"].GetMetric()); n != MaxRuleSeries {
		t.Errorf("%d rule hit series, want %d", n, MaxRuleSeries)
	}
	if _, _, ok := opsValue(mfs, "tungate_rule_unlisted_hits_total", "chain", "filter.input"); !ok {
		t.Error("no unlisted series for filter.input")
	}
	if _, _, ok := opsValue(mfs, "tungate_rule_hits_total", "chain", "filter.forward", "index", "0", "comment", ""); !ok {
		t.Error("filter.forward's rule 0 is not among the exported")
	}
}

// BenchmarkCollectRules10k is one scrape of opsCollector over 10,000
// forward rules: the cost is bounded by MaxRuleSeries series (two metrics
// each, which the prometheus library allocates), plus a read of every
// rule's counter shards for the per-chain rest.
func BenchmarkCollectRules10k(b *testing.B) {
	g := nullGateway(b, "\n[filter.input]\nrules = [\n"+rulesText(10000)+"]\n")
	defer g.Close()
	c := newOpsCollector(g)
	ch := make(chan prometheus.Metric, 4096)
	done := make(chan int)
	go func() {
		n := 0
		for range ch {
			n++
		}
		done <- n
	}()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		c.Collect(ch)
	}
	b.StopTimer()
	close(ch)
	b.ReportMetric(float64(<-done)/float64(b.N), "metrics/scrape")
}

func rulesText(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "  { proto = \"tcp\", dport = %d, action = \"accept\" },\n", 1+i%60000)
	}
	return b.String()
}

// Scrapes while flows are forwarded and the config reloaded: the
// collector reads rule counters, port sets and the plane concurrently
// with the datapath and reload (run with -race).
func TestOpsMetricsConcurrent(t *testing.T) {
	r := newReloadRig(t, reloadBase)
	reg := prometheus.NewRegistry()
	reg.MustRegister(newOpsCollector(r.g))
	stop := make(chan struct{})
	done := make(chan error)
	go func() {
		var err error
		n := 0
		for {
			select {
			case <-stop:
				if n == 0 {
					err = fmt.Errorf("no scrape ran")
				}
				done <- err
				return
			default:
			}
			if _, e := reg.Gather(); e != nil && err == nil {
				err = e
			}
			n++
		}
	}()
	for i := range 20 {
		r.forwards(uint16(7000 + i))
		if i == 10 {
			if _, err := r.reload(strings.Replace(reloadBase, `{ in = "lan", action = "accept" },`, `{ in = "lan", action = "accept", comment = "x" },`, 1), ReloadOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	close(stop)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
