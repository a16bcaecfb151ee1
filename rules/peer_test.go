package rules

import (
	"strings"
	"testing"
)

// peerEnv has two wireguard interfaces, wg0 (index 1) and wg1 (index 2),
// where alice is a peer of both.
func peerEnv() Env {
	return Env{
		Interfaces: []string{"wan", "wg0", "wg1"},
		Peers:      [][]string{nil, {"alice", "bob", "carol"}, {"dave", "alice"}},
		PeerSets:   map[string][]string{"laptops": {"bob", "dave"}},
	}
}

func TestPeerMatch(t *testing.T) {
	rs, err := compileTOML(t, `
[filter.forward]
policy = "drop"
rules = [
  { peer = "!@laptops", proto = "udp", action = "accept" },
  { peer = ["alice", "@laptops"], action = "accept" },
]`, peerEnv())
	if err != nil {
		t.Fatal(err)
	}
	tcp := decode(t, tcp4("10.0.0.1", "192.0.2.1", 1000, 80, 0))
	udpP := decode(t, udp("10.0.0.1", "192.0.2.1", 1000, 53))
	for _, tc := range []struct {
		name string
		in   int
		peer int32
		udp  bool
		want Verdict
	}{
		{"alice on wg0", 1, 1, false, Accept},
		{"alice on wg1", 2, 2, false, Accept},
		{"bob (laptops)", 1, 2, false, Accept},
		{"carol", 1, 3, false, Drop},
		{"dave (laptops)", 2, 1, false, Accept},
		{"no peer", 0, 0, false, Drop},
		{"peer index past the list", 1, 9, false, Drop},
		{"carol udp: not a laptop", 1, 3, true, Accept},
		{"no peer udp: negated list matches", 0, 0, true, Accept},
		{"bob udp: a laptop, second rule", 1, 2, true, Accept},
	} {
		p := tcp
		if tc.udp {
			p = udpP
		}
		pk := &Packet{P: p, In: tc.in, Out: 0, Peer: tc.peer}
		if got := rs.Eval(HookForward, pk).Verdict; got != tc.want {
			t.Errorf("%s: verdict %v, want %v", tc.name, got, tc.want)
		}
	}
	if d := dumpText(t, rs); !strings.Contains(d, `meta wgpeer { "alice", "@laptops" }`) || !strings.Contains(d, `meta wgpeer != "@laptops"`) {
		t.Errorf("dump lacks the peer matches:\n%s", d)
	}
}

func TestPeerErrors(t *testing.T) {
	env := peerEnv()
	env.PeerSets["typo"] = []string{"alcie"}
	_, err := compileTOML(t, `
[filter.forward]
rules = [
  { peer = "alise", action = "accept" },
  { peer = "@laptop", action = "accept" },
  { peer = 3, action = "accept" },
  { clamp_mss = "route", action = "accept" },
  { clamp_mss = 100, action = "accept" },
]
[raw.prerouting]
rules = [ { clamp_mss = "rt" } ]`, env)
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{
		`peer_sets.typo[0]: unknown peer "alcie" (did you mean "alice"?)`,
		`filter.forward.rules[0].peer: unknown peer "alise" (did you mean "alice"?)`,
		`filter.forward.rules[1].peer: unknown peer set "@laptop" (did you mean "@laptops"?)`,
		`filter.forward.rules[2].peer: want a peer name, @peer_set or list of them, got`,
		`filter.forward.rules[3].clamp_mss: want "rt" (the route's MTU) or a number, got "route"`,
		`filter.forward.rules[4].clamp_mss: 100 out of range (536-65535)`,
		`raw.prerouting.rules[0].clamp_mss: not available in raw.prerouting`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing error %q in\n%v", want, err)
		}
	}
	_, err = compileTOML(t, `
[filter.forward]
rules = [ { peer = "alice", action = "accept" } ]`, testEnv())
	if err == nil || !strings.Contains(err.Error(), `unknown peer "alice" (no wireguard interface has peers)`) {
		t.Errorf("without peers: %v", err)
	}
}

func TestClampMSSStatement(t *testing.T) {
	rs := mustCompile(t, `
[filter.forward]
rules = [
  { out = "wan", clamp_mss = "rt" },
  { out = "dmz", clamp_mss = 1200 },
  { out = "dmz", proto = "udp", clamp_mss = 1300 },
]`)
	syn := decode(t, tcp4("10.0.0.1", "192.0.2.1", 1000, 80, 2))
	u := decode(t, udp("10.0.0.1", "192.0.2.1", 1000, 53))
	for _, tc := range []struct {
		out  int
		p    *Packet
		want uint16
	}{
		{1, &Packet{P: syn, In: 0, Out: 1}, ClampRouteMTU},
		{2, &Packet{P: syn, In: 0, Out: 2}, 1200},
		{2, &Packet{P: u, In: 0, Out: 2}, 1300}, // the last matching rule decides
		{0, &Packet{P: syn, In: 1, Out: 0}, 0},
	} {
		rs.Eval(HookForward, tc.p)
		if tc.p.ClampMSS != tc.want {
			t.Errorf("out %d: ClampMSS %d, want %d", tc.out, tc.p.ClampMSS, tc.want)
		}
	}
	if d := dumpText(t, rs); !strings.Contains(d, "tcp option maxseg size set rt mtu") || !strings.Contains(d, "tcp option maxseg size set 1200") {
		t.Errorf("dump:\n%s", d)
	}
}

func BenchmarkEvalPeer(b *testing.B) {
	for _, m := range []string{`peer = ["alice", "@laptops"]`, `in = "wg1"`} {
		b.Run(strings.Fields(m)[0], func(b *testing.B) {
			rs, err := compileTOML(b, `
[filter.forward]
policy = "drop"
rules = [
  { ct_state = ["established", "related"], action = "accept" },
  { `+m+`, action = "accept" },
]`, peerEnv())
			if err != nil {
				b.Fatal(err)
			}
			pk := &Packet{P: decode(b, tcp4("10.0.0.1", "192.0.2.1", 1000, 80, 2)), In: 2, Out: 0, Peer: 1}
			b.ReportAllocs()
			for b.Loop() {
				if rs.Eval(HookForward, pk).Verdict != Accept {
					b.Fatal("dropped")
				}
			}
		})
	}
}

func dumpText(t testing.TB, rs *Ruleset) string {
	t.Helper()
	var b strings.Builder
	if err := rs.Dump(&b); err != nil {
		t.Fatal(err)
	}
	return b.String()
}
