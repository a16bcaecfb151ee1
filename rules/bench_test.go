package rules

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"sync/atomic"
	"testing"

	"tungate/conntrack"
	"tungate/packet"
)

// typical20 is a typical hand-written forward chain of 20 rules: state
// first, then blocklists, services, ICMP, logging and a catch-all.
const typical20 = `
[sets]
blocked = ["203.0.113.0/24", "198.51.100.0/24", "2001:db8:bad::/48"]
[filter.forward]
policy = "drop"
rules = [
  { ct_state = ["established", "related"], action = "accept" },
  { ct_state = "invalid", action = "drop" },
  { src = "@blocked", action = "drop" },
  { dst = "@blocked", action = "reject" },
  { in = "wan", src = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"], action = "drop" },
  { in = "lan", out = "wan", ct_state = "new", proto = "tcp", dport = [80, 443], action = "accept" },
  { in = "lan", out = "wan", ct_state = "new", proto = "udp", dport = [53, 123, 443], action = "accept" },
  { in = "lan", out = "wan", ct_state = "new", proto = "tcp", dport = [22, 25, 587, 993], action = "accept" },
  { in = "lan", out = "dmz", proto = "tcp", dport = "8000-8999", action = "accept" },
  { in = "wan", out = "dmz", dst = "192.0.2.10", proto = "tcp", dport = 443, action = "accept" },
  { in = "wan", out = "dmz", dst = "2001:db8::10", proto = "tcp", dport = 443, action = "accept" },
  { proto = "icmp", icmp_type = ["echo-request", "destination-unreachable", "time-exceeded"], action = "accept" },
  { proto = "icmpv6", icmp_type = ["echo-request", "packet-too-big", "destination-unreachable"], action = "accept" },
  { proto = "tcp", tcp_flags = "syn,!ack", limit = "100/second", burst = 50, log = "syn-flood " },
  { mark = 7, action = "accept" },
  { ct_mark = 9, action = "accept" },
  { in = "dmz", out = "wan", proto = "tcp", dport = 25, action = "accept" },
  { in = "dmz", out = "lan", action = "reject" },
  { length = "1400-65535", proto = "udp", action = "drop" },
  { action = "drop", log = "fwd-drop " },
]
`

func BenchmarkEval20Established(b *testing.B) {
	rs := mustCompile(b, typical20)
	for _, fam := range []struct{ name, src, dst string }{
		{"v4", "10.0.0.5", "93.184.216.34"},
		{"v6", "fd00::5", "2606:2800:220:1::1"},
	} {
		b.Run(fam.name, func(b *testing.B) {
			pk := newCtx().packet(decode(b, tcp4(fam.src, fam.dst, 40000, 443, packet.TCPAck)))
			cpuLoop(b, func() {
				if rs.Eval(HookForward, pk).Verdict != Accept {
					b.Fatal("not accepted")
				}
			})
		})
	}
}

// BenchmarkEval20New is a NEW packet that walks most of the chain (it is
// accepted by rule 16 after failing 15 rules).
func BenchmarkEval20New(b *testing.B) {
	rs := mustCompile(b, typical20)
	for _, fam := range []struct{ name, src, dst string }{
		{"v4", "192.0.2.10", "93.184.216.34"},
		{"v6", "2001:db8::10", "2606:2800:220:1::1"},
	} {
		b.Run(fam.name, func(b *testing.B) {
			c := newCtx()
			c.info, c.in, c.out = conntrack.New, 2, 1
			pk := c.packet(decode(b, tcp4(fam.src, fam.dst, 40000, 25, packet.TCPAck)))
			cpuLoop(b, func() {
				if rs.Eval(HookForward, pk).Verdict != Accept {
					b.Fatal("not accepted")
				}
			})
		})
	}
}

// setPrefixes returns n distinct random prefixes, 3/4 IPv4 (/16-/32) and
// 1/4 IPv6 (/32-/128), plus a host address known to be inside one.
func setPrefixes(n int) ([]string, netip.Addr, netip.Addr) {
	rng := rand.New(rand.NewPCG(7, 7))
	seen := map[netip.Prefix]bool{}
	var out []string
	var in4, in6 netip.Addr
	for len(out) < n {
		var p netip.Prefix
		if rng.IntN(4) != 0 {
			a := netip.AddrFrom4([4]byte{byte(1 + rng.IntN(223)), byte(rng.IntN(256)), byte(rng.IntN(256)), byte(rng.IntN(256))})
			p = netip.PrefixFrom(a, 16+rng.IntN(17)).Masked()
			if !in4.IsValid() {
				in4 = p.Addr()
			}
		} else {
			var a [16]byte
			a[0], a[1] = 0x20, 0x01
			for i := 2; i < 16; i++ {
				a[i] = byte(rng.IntN(256))
			}
			p = netip.PrefixFrom(netip.AddrFrom16(a), 32+rng.IntN(97)).Masked()
			if !in6.IsValid() {
				in6 = p.Addr()
			}
		}
		if !seen[p] {
			seen[p] = true
			out = append(out, p.String())
		}
	}
	return out, in4, in6
}

func benchSet(b *testing.B, n int) {
	entries, in4, in6 := setPrefixes(n)
	rs, err := Compile(FilterConfig{Forward: &Chain{Policy: "drop", Rules: []map[string]any{
		{"src": "@s", "action": "accept"},
	}}}, RawConfig{}, map[string][]string{"s": entries}, testEnv())
	if err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct {
		name, src, dst string
		want           Verdict
	}{
		{"v4hit", in4.String(), "192.0.2.1", Accept},
		{"v4miss", "0.0.0.1", "192.0.2.1", Drop},
		{"v6hit", in6.String(), "2001:db8::1", Accept},
		{"v6miss", "fd00::1", "2001:db8::1", Drop},
	} {
		b.Run(tc.name, func(b *testing.B) {
			pk := newCtx().packet(decode(b, udp(tc.src, tc.dst, 1, 53)))
			cpuLoop(b, func() {
				if rs.Eval(HookForward, pk).Verdict != tc.want {
					b.Fatal("wrong verdict")
				}
			})
		})
	}
}

func BenchmarkSet10(b *testing.B)   { benchSet(b, 10) }
func BenchmarkSet100k(b *testing.B) { benchSet(b, 100000) }

// BenchmarkEval10kRules: a NEW packet that matches the last of 10,000
// generated rules, and one that matches none (policy).
func BenchmarkEval10kRules(b *testing.B) {
	rs, err := Compile(gen10k(10000), RawConfig{}, nil, testEnv())
	if err != nil {
		b.Fatal(err)
	}
	c := newCtx()
	c.info = conntrack.New
	last := 9999
	for _, tc := range []struct {
		name string
		p    pkt
		want Verdict
	}{
		{"last", tcp4("fd00::1", fmt.Sprintf("fd00::%x", last), 5, uint16(1000+last%5000), packet.TCPSyn), Accept},
		{"last4", tcp4("10.1.1.1", "10.0.39.14", 5, uint16(1000+9998%5000), packet.TCPSyn), Accept},
		{"none", tcp4("10.1.1.1", "10.200.0.1", 5, 80, packet.TCPSyn), Drop},
		{"none6", tcp4("fd00::1", "fd00::1:0:0", 5, 80, packet.TCPSyn), Drop},
	} {
		b.Run(tc.name, func(b *testing.B) {
			pk := c.packet(decode(b, tc.p))
			cpuLoop(b, func() {
				if rs.Eval(HookForward, pk).Verdict != tc.want {
					b.Fatal("wrong verdict")
				}
			})
		})
	}
}

// BenchmarkEval10kRulesLinear is the same without the index, for scale.
func BenchmarkEval10kRulesLinear(b *testing.B) {
	rs, err := compile(gen10k(10000), RawConfig{}, nil, testEnv(), false)
	if err != nil {
		b.Fatal(err)
	}
	c := newCtx()
	c.info = conntrack.New
	pk := c.packet(decode(b, tcp4("fd00::1", fmt.Sprintf("fd00::%x", 9999), 5, uint16(1000+9999%5000), packet.TCPSyn)))
	cpuLoop(b, func() {
		rs.Eval(HookForward, pk)
	})
}

func BenchmarkCompile10k(b *testing.B) {
	cfg := gen10k(10000)
	cpuLoop(b, func() {
		if _, err := Compile(cfg, RawConfig{}, nil, testEnv()); err != nil {
			b.Fatal(err)
		}
	})
}

// TestEvalAllocs: evaluation allocates nothing, whatever path it takes.
func TestEvalAllocs(t *testing.T) {
	rs20 := mustCompile(t, typical20)
	rs10k, err := Compile(gen10k(10000), RawConfig{}, nil, testEnv())
	if err != nil {
		t.Fatal(err)
	}
	rsChains := mustCompile(t, chainsConfig)
	newC := newCtx()
	newC.info, newC.in, newC.out = conntrack.New, 2, 1
	cases := []struct {
		name string
		rs   *Ruleset
		p    pkt
		c    ctx
	}{
		{"20 established v4", rs20, tcp4("10.0.0.5", "93.184.216.34", 1, 443, packet.TCPAck), newCtx()},
		{"20 new v6 deep", rs20, tcp4("2001:db8::10", "2606:2800:220:1::1", 1, 25, 0), newC},
		{"20 limit and policy", rs20, tcp4("2001:db8::10", "2606:2800:220:1::1", 1, 26, packet.TCPSyn), newC},
		{"20 set", rs20, udp("203.0.113.9", "10.0.0.1", 1, 2), newC},
		{"10k last", rs10k, tcp4("fd00::1", "fd00::270f", 5, uint16(1000+9999%5000), packet.TCPSyn), newC},
		{"10k none", rs10k, tcp4("10.1.1.1", "10.200.0.1", 5, 80, packet.TCPSyn), newC},
		{"jumps", rsChains, udp("fd00::1", "2001:db8::1", 1, 7), newCtx()},
	}
	for _, tc := range cases {
		pk := tc.c.packet(decode(t, tc.p))
		if n := testing.AllocsPerRun(200, func() { tc.rs.Eval(HookForward, pk) }); n != 0 {
			t.Errorf("%s: %v allocs per Eval", tc.name, n)
		}
	}
}

// BenchmarkEvalParallel runs two goroutines on one Ruleset: "same" has
// both count on rule 0's counter, "adjacent" has one on rule 0 and one on
// rule 1, whose counters share a cache line unless padded.
func BenchmarkEvalParallel(b *testing.B) {
	rs := mustCompile(b, `
[filter.forward]
rules = [
  { ct_state = "established", action = "accept" },
  { ct_state = "new", action = "accept" },
]
`)
	for _, tc := range []struct {
		name string
		new  bool
	}{{"same", false}, {"adjacent", true}} {
		b.Run(tc.name, func(b *testing.B) {
			var flip atomic.Uint32
			b.ReportAllocs()
			b.SetParallelism(1)
			start := processCPU()
			defer func() {
				b.ReportMetric(float64(processCPU()-start)/float64(b.N), "cpu-ns/op")
			}()
			b.RunParallel(func(pb *testing.PB) {
				c := newCtx()
				if tc.new && flip.Add(1)%2 == 0 {
					c.info = conntrack.New
				}
				pk := c.packet(decode(b, udp("10.0.0.1", "192.0.2.1", 1, 2)))
				for pb.Next() {
					rs.Eval(HookForward, pk)
				}
			})
		})
	}
}
