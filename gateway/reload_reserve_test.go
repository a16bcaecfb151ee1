package gateway

import (
	"fmt"
	"net"
	"net/netip"
	"runtime/debug"
	"strings"
	"testing"

	"tungate/packet"
)

// A [[nat.dnat]] forward added by a reload reserves its port like one in
// the first config: masquerade never hands it out to a new flow; the
// flow holding it when the forward came keeps it, but its endpoint's next
// flow does not reuse it; a reload removing the forward gives it back.
func TestReloadForwardReservesPort(t *testing.T) {
	r := newReloadRig(t, reloadBase)
	out := func(src string, sport, dport uint16) uint16 {
		t.Helper()
		r.send("m-lan", udp4(src, "198.18.0.2", sport, dport))
		p := r.recv("m-wan", isUDP("198.18.0.2", dport))
		if p.SrcIP().String() != "198.18.0.1" {
			t.Fatalf("forwarded from %v, want masqueraded", p.SrcIP())
		}
		return p.SrcPort
	}
	if p := out("10.10.0.2", 7000, 4444); p != 7000 {
		t.Fatalf("port 7000 not preserved before the forward: %d", p)
	}
	withFwd := reloadBase + `
[[nat.dnat]]
in = "wan"
proto = "udp"
dport = "7000-7001"
to = "10.10.0.3:53"
`
	plan, err := r.reload(withFwd, ReloadOptions{})
	if err != nil || !planHas(plan, "nat.dnat") {
		t.Fatalf("reload: %v\n%s", err, planText(plan))
	}
	if !r.g.nat.Reserved(netip.MustParseAddr("198.18.0.1"), packet.ProtoUDP, 7001) {
		t.Fatal("port 7001 not reserved after the reload")
	}
	if p := out("10.10.0.3", 7001, 4444); p == 7001 || p == 7000 {
		t.Fatalf("a new flow got forwarded port %d", p)
	}
	// The existing flow keeps its mapping (Linux leaves conntrack
	// entries alone when a DNAT rule is added).
	if p := out("10.10.0.2", 7000, 4444); p != 7000 {
		t.Fatalf("existing flow moved to port %d", p)
	}
	if p := out("10.10.0.2", 7000, 4445); p == 7000 {
		t.Fatal("a new flow reused the mapping holding a forwarded port")
	}
	if _, err := r.reload(reloadBase, ReloadOptions{}); err != nil {
		t.Fatal(err)
	}
	if r.g.nat.Reserved(netip.MustParseAddr("198.18.0.1"), packet.ProtoUDP, 7001) {
		t.Fatal("port 7001 still reserved after the forward was removed")
	}
	if p := out("10.10.0.4", 7001, 4444); p != 7001 {
		t.Fatalf("port of the removed forward not given back: %d", p)
	}
}

// A runtime forward (the ports API) reserves its port on the gateway's
// addresses while it exists, across a reload, and not after removal.
func TestRuntimeForwardReservesPort(t *testing.T) {
	g, _ := uplinkGateway(t, "127.0.0.53", 9)
	free, err := net.ListenPacket("udp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	port := free.LocalAddr().(*net.UDPAddr).Port
	free.Close()
	dst := g.forwardDst(netip.MustParseAddrPort(fmt.Sprintf("127.0.0.1:%d", port))).Addr()
	if !dst.IsValid() {
		t.Fatal("the gateway has no IPv4 address")
	}
	reserved := func(proto uint8) bool { return g.nat.Reserved(dst, proto, uint16(port)) }
	if reserved(packet.ProtoUDP) {
		t.Fatalf("port %d reserved before any forward", port)
	}
	f, err := g.AddForward(RuntimeForward{Proto: "udp4", ParentPort: port, ChildIP: "10.0.2.100", ChildPort: 53})
	if err != nil {
		t.Fatal(err)
	}
	if !reserved(packet.ProtoUDP) || reserved(packet.ProtoTCP) {
		t.Fatalf("after AddForward: udp reserved %v (want true), tcp %v (want false)", reserved(packet.ProtoUDP), reserved(packet.ProtoTCP))
	}
	if _, err := g.ApplyConfig(g.Config(), ReloadOptions{}); err != nil && !strings.Contains(err.Error(), "no change") {
		t.Fatalf("reload: %v", err)
	}
	if !reserved(packet.ProtoUDP) {
		t.Fatal("the runtime forward's reservation did not survive a reload")
	}
	if err := g.RemoveForward(f.ID); err != nil {
		t.Fatal(err)
	}
	if reserved(packet.ProtoUDP) {
		t.Fatal("port still reserved after RemoveForward")
	}
}

// Rule counters of rules a reload keeps continue across it; a changed or
// new rule starts at zero. Helper counters survive a reload that changes
// [helpers] (the helpers are rebuilt, not removed).
func TestReloadKeepsCounters(t *testing.T) {
	r := newReloadRig(t, reloadBase)
	for i := range 3 {
		r.forwards(uint16(6000 + i))
	}
	before := r.g.Rules().Counters("filter.forward")
	if before[1].Packets != 3 {
		t.Fatalf("rule 1 (in lan) counted %d, want 3", before[1].Packets)
	}
	oldAlg := r.g.pl.Load().alg
	oldAlg.Stats.Ignored.Add(7)
	conf := strings.Replace(reloadBase, `  { in = "lan", action = "accept" },`, `  { in = "wan", proto = "tcp", action = "drop" },
  { in = "lan", action = "accept" },`, 1) + "[helpers.ftp]\nports = [2121]\n"
	if _, err := r.reload(conf, ReloadOptions{}); err != nil {
		t.Fatal(err)
	}
	if r.g.pl.Load().alg == oldAlg {
		t.Fatal("the helper registry was not rebuilt; the test proves nothing")
	}
	after := r.g.Rules().Counters("filter.forward")
	if after[0].Packets != before[0].Packets || after[1].Packets != 0 || after[2].Packets != 3 {
		t.Fatalf("after reload %+v, want established %d, new rule 0, in-lan 3", after, before[0].Packets)
	}
	if n := r.g.pl.Load().alg.Stats.Ignored.Load(); n != 7 {
		t.Fatalf("helper counter after reload: %d, want 7", n)
	}
	r.forwards(6100)
	if n := r.g.Rules().Counters("filter.forward")[2].Packets; n != 4 {
		t.Fatalf("in-lan rule after one more flow: %d, want 4", n)
	}
	// Changed: the rule's text differs, so it starts again.
	conf2 := strings.Replace(conf, `{ in = "lan", action = "accept" }`, `{ in = "lan", proto = "udp", action = "accept" }`, 1)
	if _, err := r.reload(conf2, ReloadOptions{}); err != nil {
		t.Fatal(err)
	}
	if n := r.g.Rules().Counters("filter.forward")[2].Packets; n != 0 {
		t.Fatalf("changed rule kept count %d, want 0", n)
	}
}

// A reload's decode and compile run with the GC target raised, restored
// when the last overlapping one returns; a higher setting is kept.
func TestSparseGC(t *testing.T) {
	orig := debug.SetGCPercent(100)
	defer debug.SetGCPercent(orig)
	read := func() int { p := debug.SetGCPercent(-1); debug.SetGCPercent(p); return p }
	var inner, outer int
	niceDo(func() {
		outer = read()
		niceDo(func() { inner = read() })
	})
	if outer != reloadGCPercent || inner != reloadGCPercent {
		t.Fatalf("GC percent during a reload: %d (nested %d), want %d", outer, inner, reloadGCPercent)
	}
	if p := read(); p != 100 {
		t.Fatalf("GC percent after: %d, want 100 again", p)
	}
	debug.SetGCPercent(800)
	niceDo(func() { outer = read() })
	if outer != 800 || read() != 800 {
		t.Fatalf("a higher GC percent was lowered: %d during, %d after", outer, read())
	}
}
