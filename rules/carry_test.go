package rules

import "testing"

// A reload's ruleset continues the counters of the rules it keeps (same
// chain, same text; duplicates pair in order), starts new and changed
// ones at zero, and Settle adds what the old ruleset counted after the
// carry, so an unchanged rule's counter never goes back.
func TestInheritCounters(t *testing.T) {
	old := mustCompile(t, `
[filter.forward]
policy = "accept"
rules = [
  { proto = "udp", dport = 1, action = "accept" },
  { proto = "udp", dport = 2, action = "accept" },
  { proto = "udp", dport = 3, action = "accept" },
  { proto = "udp", dport = 3, action = "accept" },
]
[filter.input]
policy = "accept"
rules = [ { proto = "udp", dport = 1, action = "accept" } ]
`)
	hit := func(rs *Ruleset, h Hook, dport uint16, n int) {
		for range n {
			for _, src := range []string{"10.0.0.1", "fd00::1"} {
				dst := "192.0.2.1"
				if src == "fd00::1" {
					dst = "2001:db8::1"
				}
				rs.Eval(h, newCtx().packet(decode(t, udp(src, dst, 9, dport))))
			}
		}
	}
	hit(old, HookForward, 1, 5) // 10 packets
	hit(old, HookForward, 2, 3) // 6
	hit(old, HookForward, 3, 2) // 4, all on the first dport-3 rule
	hit(old, HookInput, 1, 1)   // 2
	nu := mustCompile(t, `
[filter.forward]
policy = "accept"
rules = [
  { proto = "tcp", action = "drop" },
  { proto = "udp", dport = 1, action = "accept" },
  { proto = "udp", dport = 2, action = "drop" },
  { proto = "udp", dport = 3, action = "accept" },
]
[filter.input]
policy = "accept"
rules = [ { proto = "udp", dport = 1, action = "accept" } ]
`)
	cc := nu.InheritCounters(old)
	if cc.Carried() != 3 {
		t.Fatalf("carried %d rules, want 3 (dport 1 in both chains, the first dport 3)", cc.Carried())
	}
	want := []uint64{0, 10, 0, 4}
	for i, c := range nu.Counters("filter.forward") {
		if c.Packets != want[i] {
			t.Errorf("forward rule %d: %d packets, want %d", i, c.Packets, want[i])
		}
	}
	if c := nu.Counters("filter.input"); c[0].Packets != 2 {
		t.Errorf("input rule 0: %d packets, want 2 (same text, other chain)", c[0].Packets)
	}
	// The old ruleset still counts while workers finish with it.
	hit(old, HookForward, 1, 1)
	hit(nu, HookForward, 1, 1)
	cc.Settle()
	cc.Settle() // idempotent
	if c := nu.Counters("filter.forward")[1]; c.Packets != 14 || c.Bytes == 0 {
		t.Errorf("after settle: %+v, want 14 packets", c)
	}
	if c := old.Counters("filter.forward")[0]; c.Packets != 12 {
		t.Errorf("the old ruleset's own count changed: %d", c.Packets)
	}
	if nu.InheritCounters(nu) != nil || nu.InheritCounters(nil) != nil {
		t.Error("InheritCounters from itself or nil carried something")
	}
}
