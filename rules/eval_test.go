package rules

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"tungate/conntrack"
	"tungate/packet"
)

// chainsConfig exercises jump, goto and return. The forward chain's policy
// is drop and its last rule accepts with mark 99, so the verdict and mark
// show which way evaluation went.
const chainsConfig = `
[filter.forward]
policy = "drop"
rules = [
  { dport = 1, action = "jump", chain = "acc" },
  { dport = 2, action = "jump", chain = "nomatch" },
  { dport = 3, action = "jump", chain = "ret" },
  { dport = 4, action = "goto", chain = "nomatch" },
  { dport = 5, action = "return" },
  { dport = 6, action = "jump", chain = "viagoto" },
  { dport = 7, action = "jump", chain = "deep1" },
  { dport = 8, action = "goto", chain = "acc" },
  { dport = 9, action = "jump", chain = "marker" },
  { action = "accept", set_mark = 99 },
]
[filter.chains.acc]
rules = [ { action = "accept", set_mark = 1 } ]
[filter.chains.nomatch]
rules = [ { dport = 1000, action = "drop" } ]
[filter.chains.ret]
rules = [
  { set_mark = 3 },
  { action = "return" },
  { action = "drop" },
]
[filter.chains.viagoto]
rules = [ { action = "goto", chain = "nomatch" }, { action = "drop" } ]
[filter.chains.deep1]
rules = [ { action = "jump", chain = "deep2" }, { set_mark = 71 } ]
[filter.chains.deep2]
rules = [ { action = "jump", chain = "ret" }, { mark = 3, set_mark = 72 } ]
[filter.chains.marker]
rules = [ { set_mark = 9 } ]
`

func TestChains(t *testing.T) {
	rs := mustCompile(t, chainsConfig)
	cases := []struct {
		dport uint16
		want  Verdict
		mark  uint32
		why   string
	}{
		{1, Accept, 1, "accept in a jumped chain is final"},
		{2, Accept, 99, "a jumped chain that runs out returns to the next rule"},
		{3, Accept, 99, "return goes back to the caller (after set_mark 3)"},
		{4, Drop, 0, "goto does not return: the base policy applies"},
		{5, Drop, 0, "return from the base chain applies its policy"},
		{6, Accept, 99, "goto inside a jumped chain returns to the jumper's caller"},
		{7, Accept, 99, "nested jumps unwind one level at a time"},
		{8, Accept, 1, "goto to an accepting chain"},
		{9, Accept, 99, "statements in a user chain persist after it returns"},
		{10, Accept, 99, "no jump: the last rule"},
	}
	for _, v := range []string{"10.0.0.1", "fd00::1"} {
		dst := "192.0.2.1"
		if strings.Contains(v, ":") {
			dst = "2001:db8::1"
		}
		for _, tc := range cases {
			pk := newCtx().packet(decode(t, udp(v, dst, 1, tc.dport)))
			d := rs.Eval(HookForward, pk)
			if d.Verdict != tc.want || pk.Mark != tc.mark {
				t.Errorf("%s dport %d: verdict %v mark %d, want %v mark %d (%s)", v, tc.dport, d.Verdict, pk.Mark, tc.want, tc.mark, tc.why)
			}
		}
	}
	// deep chains ran their trailing rules on the way back: deep2 saw
	// mark 3 from ret and set 72, deep1 then set 71, forward then 99.
	if c := rs.Counters("filter.chains.deep2"); c[1].Packets != 2 {
		t.Errorf("deep2 rule 1 ran %d times, want 2 (once per family)", c[1].Packets)
	}
	if c := rs.Counters("filter.chains.deep1"); c[1].Packets != 2 {
		t.Errorf("deep1 rule 1 ran %d times, want 2", c[1].Packets)
	}
	if c := rs.Counters("filter.chains.ret"); c[2].Packets != 0 {
		t.Errorf("rule after return ran %d times", c[2].Packets)
	}
}

func TestHooks(t *testing.T) {
	rs := mustCompile(t, `
[filter.input]
policy = "drop"
[filter.output]
policy = "accept"
rules = [ { out = "wan", proto = "icmp", action = "drop" } ]
`)
	pk := newCtx().packet(decode(t, icmp("10.0.0.1", "192.0.2.1", 8, 0)))
	if d := rs.Eval(HookInput, pk); d.Verdict != Drop {
		t.Errorf("input policy drop: got %v", d.Verdict)
	}
	if d := rs.Eval(HookForward, pk); d.Verdict != Accept {
		t.Errorf("forward with no chain: got %v, want accept", d.Verdict)
	}
	if d := rs.Eval(HookPrerouting, pk); d.Verdict != Accept || d.Notrack {
		t.Errorf("raw with no chain: got %+v", d)
	}
	pk.In = -1
	if d := rs.Eval(HookOutput, pk); d.Verdict != Drop {
		t.Errorf("output to wan: got %v, want drop", d.Verdict)
	}
	if d := rs.Eval(Hook(200), pk); d.Verdict != Accept {
		t.Errorf("unknown hook: got %v, want accept", d.Verdict)
	}
	if d := rs.Eval(HookInput, &Packet{}); d.Verdict != Accept {
		t.Errorf("packet without P: got %v, want accept", d.Verdict)
	}
}

func TestNoAction(t *testing.T) {
	rs := mustCompile(t, `
[filter.forward]
policy = "drop"
rules = [
  { proto = "udp" },
  { proto = "udp", set_mark = 5 },
  { mark = 5, action = "accept" },
]
`)
	for _, src := range []string{"10.0.0.1", "fd00::1"} {
		dst := "192.0.2.1"
		if src == "fd00::1" {
			dst = "2001:db8::1"
		}
		pk := newCtx().packet(decode(t, udp(src, dst, 1, 2)))
		if d := rs.Eval(HookForward, pk); d.Verdict != Accept {
			t.Errorf("%s: %v, want accept via the mark set by a rule without action", src, d.Verdict)
		}
	}
	c := rs.Counters("filter.forward")
	for i, want := range []uint64{2, 2, 2} {
		if c[i].Packets != want {
			t.Errorf("rule %d counted %d, want %d", i, c[i].Packets, want)
		}
	}
}

func TestReject(t *testing.T) {
	rs := mustCompile(t, `
[filter.forward]
policy = "accept"
rules = [
  { dport = 1, action = "reject" },
  { dport = 2, action = "reject", reject_with = "tcp-reset" },
  { dport = 3, action = "reject", reject_with = "icmp-host-unreachable" },
  { dport = 3, action = "reject", reject_with = "icmpv6-addr-unreachable" },
  { dport = 4, action = "reject", reject_with = "icmp-admin-prohibited" },
  { dport = 5, action = "reject", reject_with = "icmpv6-admin-prohibited" },
  { dport = 6, action = "reject", reject_with = "icmp-port-unreachable" },
  { dport = 6, action = "reject", reject_with = "icmpv6-port-unreachable" },
  { dport = 7, action = "drop" },
]
`)
	cases := []struct {
		p    pkt
		want Decision
	}{
		{udp("10.0.0.1", "192.0.2.1", 9, 1), Decision{Verdict: Reject, Reject: RejectDefault}},
		{tcp4("fd00::1", "2001:db8::1", 9, 2, packet.TCPSyn), Decision{Verdict: Reject, Reject: RejectTCPReset}},
		// tcp-reset implies proto tcp: UDP to port 2 passes.
		{udp("fd00::1", "2001:db8::1", 9, 2), Decision{Verdict: Accept}},
		// icmp-* implies IPv4 and icmpv6-* IPv6, so each family gets its own.
		{udp("10.0.0.1", "192.0.2.1", 9, 3), Decision{Verdict: Reject, Reject: RejectICMPHostUnreachable}},
		{udp("fd00::1", "2001:db8::1", 9, 3), Decision{Verdict: Reject, Reject: RejectICMPv6AddrUnreachable}},
		{udp("10.0.0.1", "192.0.2.1", 9, 4), Decision{Verdict: Reject, Reject: RejectICMPAdminProhibited}},
		{udp("fd00::1", "2001:db8::1", 9, 4), Decision{Verdict: Accept}},
		{udp("fd00::1", "2001:db8::1", 9, 5), Decision{Verdict: Reject, Reject: RejectICMPv6AdminProhibited}},
		{udp("10.0.0.1", "192.0.2.1", 9, 6), Decision{Verdict: Reject, Reject: RejectICMPPortUnreachable}},
		{udp("fd00::1", "2001:db8::1", 9, 6), Decision{Verdict: Reject, Reject: RejectICMPv6PortUnreachable}},
		{udp("fd00::1", "2001:db8::1", 9, 7), Decision{Verdict: Drop}},
	}
	for _, tc := range cases {
		pk := newCtx().packet(decode(t, tc.p))
		if d := rs.Eval(HookForward, pk); d != tc.want {
			t.Errorf("%s dport %d: %+v, want %+v", tc.p.src, tc.p.dport, d, tc.want)
		}
	}
}

func TestRawNotrack(t *testing.T) {
	rs := mustCompile(t, `
[raw.prerouting]
rules = [
  { proto = "udp", dport = 53, action = "notrack" },
  { dport = 53, src = ["192.0.2.66", "2001:db8::66"], action = "drop" },
  { in = "wan", dport = 9, action = "drop" },
]
`)
	for _, fam := range [][2]string{{"10.0.0.1", "192.0.2.1"}, {"fd00::1", "2001:db8::1"}} {
		pk := &Packet{P: decode(t, udp(fam[0], fam[1], 5, 53)), In: 0, Out: -1, Info: conntrack.Untracked}
		if d := rs.Eval(HookPrerouting, pk); d != (Decision{Verdict: Accept, Notrack: true}) {
			t.Errorf("%s dns: %+v, want accept+notrack (notrack does not end evaluation)", fam[0], d)
		}
		pk = &Packet{P: decode(t, udp(fam[0], fam[1], 5, 80)), In: 0, Out: -1}
		if d := rs.Eval(HookPrerouting, pk); d != (Decision{Verdict: Accept}) {
			t.Errorf("%s http: %+v, want plain accept", fam[0], d)
		}
		pk = &Packet{P: decode(t, udp(fam[0], fam[1], 5, 9)), In: 1, Out: -1}
		if d := rs.Eval(HookPrerouting, pk); d != (Decision{Verdict: Drop}) {
			t.Errorf("%s discard from wan: %+v, want drop", fam[0], d)
		}
	}
	for _, src := range []string{"192.0.2.66", "2001:db8::66"} {
		dst := "10.0.0.1"
		if strings.Contains(src, ":") {
			dst = "fd00::1"
		}
		pk := &Packet{P: decode(t, udp(src, dst, 5, 53)), In: 1, Out: -1}
		if d := rs.Eval(HookPrerouting, pk); d != (Decision{Verdict: Drop, Notrack: true}) {
			t.Errorf("%s: %+v, want drop after notrack", src, d)
		}
	}
}

func TestStatements(t *testing.T) {
	rs := mustCompile(t, `
[filter.forward]
rules = [
  { proto = "tcp", dport = 21, ct_state = "new", helper = "ftp" },
  { ct_mark = 0, set_ct_mark = 42 },
  { ct_mark = 42, set_mark = "0x10" },
]
`)
	for _, fam := range [][2]string{{"10.0.0.1", "192.0.2.1"}, {"fd00::1", "2001:db8::1"}} {
		c := newCtx()
		c.info = conntrack.New
		pk := c.packet(decode(t, tcp4(fam[0], fam[1], 1000, 21, packet.TCPSyn)))
		rs.Eval(HookForward, pk)
		if pk.Helper != "ftp" {
			t.Errorf("%s: helper %q, want ftp on a NEW packet", fam[0], pk.Helper)
		}
		if pk.Conn.Mark() != 42 || pk.Mark != 16 {
			t.Errorf("%s: ct mark %d mark %d, want 42 and 16 (later rules see earlier statements)", fam[0], pk.Conn.Mark(), pk.Mark)
		}
		// An established packet does not get a helper (nft's ct helper
		// set only works on unconfirmed connections).
		c.info = conntrack.Established
		pk = c.packet(decode(t, tcp4(fam[0], fam[1], 1000, 21, packet.TCPAck)))
		rs.Eval(HookForward, pk)
		if pk.Helper != "" {
			t.Errorf("%s: established packet got helper %q", fam[0], pk.Helper)
		}
		// set_ct_mark on a packet without connection is a no-op, not a crash.
		c.info = conntrack.Invalid
		pk = c.packet(decode(t, tcp4(fam[0], fam[1], 1000, 21, packet.TCPAck)))
		rs.Eval(HookForward, pk)
	}
}

// TestLimit drives limit= with an injected clock: burst packets pass at
// once, then one per interval; packets the other matches reject spend
// nothing; "over" matches the excess.
func TestLimit(t *testing.T) {
	clk := &fakeClock{t: 1e9}
	env := testEnv()
	env.Now = clk.now
	rs, err := compileTOML(t, `
[filter.forward]
policy = "drop"
rules = [
  { proto = "udp", dport = 53, limit = "10/second", burst = 3, action = "accept" },
  { proto = "udp", dport = 54, limit = "over 2/minute", burst = 1, action = "drop" },
  { proto = "udp", dport = 54, action = "accept" },
  { proto = "udp", dport = 55, limit = "1/second", action = "accept" },
]
`, env)
	if err != nil {
		t.Fatal(err)
	}
	send := func(src, dst string, dport uint16) Verdict {
		return rs.Eval(HookForward, newCtx().packet(decode(t, udp(src, dst, 1, dport)))).Verdict
	}
	// Burst 3: three back to back pass (two families share the bucket).
	got := []Verdict{
		send("10.0.0.1", "192.0.2.1", 53),
		send("fd00::1", "2001:db8::1", 53),
		send("10.0.0.1", "192.0.2.1", 53),
		send("fd00::1", "2001:db8::1", 53),
	}
	if want := []Verdict{Accept, Accept, Accept, Drop}; !equal(got, want) {
		t.Fatalf("burst: %v, want %v", got, want)
	}
	// Packets that fail the other matches (port 80) spend no tokens.
	for range 100 {
		send("10.0.0.1", "192.0.2.1", 80)
	}
	clk.t += int64(100 * time.Millisecond) // one token
	if v := send("fd00::1", "2001:db8::1", 53); v != Accept {
		t.Fatalf("after 100ms: %v, want accept", v)
	}
	if v := send("fd00::1", "2001:db8::1", 53); v != Drop {
		t.Fatalf("second after 100ms: %v, want drop", v)
	}
	clk.t += int64(time.Second) // refills to the burst, not beyond
	got = got[:0]
	for range 4 {
		got = append(got, send("10.0.0.1", "192.0.2.1", 53))
	}
	if want := []Verdict{Accept, Accept, Accept, Drop}; !equal(got, want) {
		t.Fatalf("after 1s: %v, want %v", got, want)
	}
	// over 2/minute burst 1: the first conforms (rule does not match,
	// next rule accepts), the second within 30s is over (dropped).
	if v := send("10.0.0.1", "192.0.2.1", 54); v != Accept {
		t.Fatalf("over: first %v, want accept", v)
	}
	if v := send("10.0.0.1", "192.0.2.1", 54); v != Drop {
		t.Fatalf("over: second %v, want drop", v)
	}
	clk.t += int64(30 * time.Second)
	if v := send("fd00::1", "2001:db8::1", 54); v != Accept {
		t.Fatalf("over: after 30s %v, want accept", v)
	}
	// Default burst is 5.
	n := 0
	for range 10 {
		if send("10.0.0.1", "192.0.2.1", 55) == Accept {
			n++
		}
	}
	if n != defaultBurst {
		t.Fatalf("default burst passed %d, want %d", n, defaultBurst)
	}
}

func equal[T comparable](a, b []T) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestLog(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	clk := &fakeClock{t: 5e9}
	env := testEnv()
	env.Logger = zap.New(core)
	env.Now = clk.now
	rs, err := compileTOML(t, `
[filter.forward]
policy = "drop"
rules = [
  { ct_state = "invalid", log = "ct-invalid ", action = "drop" },
  { dport = 80, log = "web ", set_mark = 3 },
  { action = "accept" },
]
`, env)
	if err != nil {
		t.Fatal(err)
	}
	pk := newCtx().packet(decode(t, tcp4("fd00::1", "2001:db8::1", 1234, 80, packet.TCPAck)))
	pk.Conn.SetMark(7)
	if d := rs.Eval(HookForward, pk); d.Verdict != Accept {
		t.Fatalf("log is not a verdict: got %v", d.Verdict)
	}
	entries := logs.TakeAll()
	if len(entries) != 1 {
		t.Fatalf("%d log entries, want 1", len(entries))
	}
	f := entries[0].ContextMap()
	want := map[string]any{
		"prefix": "web ", "hook": "forward", "chain": "filter.forward", "in": "lan", "out": "wan",
		"src": "fd00::1", "dst": "2001:db8::1", "proto": 6, "sport": 1234, "dport": 80,
		"ct_state": "established", "ct_direction": "original", "mark": 0, "ct_mark": 7,
	}
	for k, v := range want {
		if fmt.Sprint(f[k]) != fmt.Sprint(v) {
			t.Errorf("field %s = %#v, want %#v", k, f[k], v)
		}
	}
	// Rate limit: 10/s with burst 5 — a flood logs 5 lines (the first
	// took one), then one per 100ms; the swallowed count is reported.
	pk4 := &Packet{P: decode(t, udp("10.0.0.1", "192.0.2.1", 1, 2)), In: 0, Out: 1, Info: conntrack.Invalid}
	for range 100 {
		rs.Eval(HookForward, pk4)
	}
	if n := logs.Len(); n != logBurst {
		t.Fatalf("flood logged %d lines, want %d", n, logBurst)
	}
	if e := logs.TakeAll()[0]; e.ContextMap()["ct_state"] != "invalid" || e.ContextMap()["ct_direction"] != nil {
		t.Errorf("invalid packet fields: %v", e.ContextMap())
	}
	clk.t += int64(100 * time.Millisecond)
	rs.Eval(HookForward, pk4)
	e := logs.TakeAll()
	if len(e) != 1 || e[0].ContextMap()["suppressed"] != uint64(95) {
		t.Fatalf("after 100ms: %d lines, fields %v; want one with suppressed=95", len(e), e)
	}
	// A nil logger: log rules cost nothing and do not crash.
	env.Logger = nil
	rs2, _ := compileTOML(t, `
[filter.forward]
rules = [ { log = "x " } ]
`, env)
	rs2.Eval(HookForward, pk4)
}

// TestConcurrentEval runs two goroutines through the same Ruleset (run with
// -race): counters and limiters are shared state and must add up.
func TestConcurrentEval(t *testing.T) {
	rs := mustCompile(t, `
[filter.forward]
rules = [
  { ct_state = ["established", "related"], action = "accept" },
  { action = "drop" },
]
`)
	const n = 5000
	var wg sync.WaitGroup
	for g := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			src := "10.0.0.1"
			dst := "192.0.2.1"
			if g == 1 {
				src, dst = "fd00::1", "2001:db8::1"
			}
			pk := newCtx().packet(decode(t, udp(src, dst, 1, 2)))
			for range n {
				rs.Eval(HookForward, pk)
			}
		}()
	}
	wg.Wait()
	c := rs.Counters("filter.forward")
	if c[0].Packets != 2*n || c[0].Bytes != n*(28+48) {
		t.Fatalf("counters %+v, want %d packets %d bytes", c[0], 2*n, n*(28+48))
	}
	if rs.Counters("nonexistent") != nil {
		t.Fatal("counters of an unknown chain")
	}
}

// TestCompilePure compiles the same configuration concurrently (run with
// -race): Rulesets share no state, so one's counters and limiters do not
// move the other's, which is what a hot reload relies on.
func TestCompilePure(t *testing.T) {
	cfg := parseTOML(t, typical20)
	var rss [4]*Ruleset
	var wg sync.WaitGroup
	errs := make(chan error, len(rss))
	for i := range rss {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rs, err := Compile(cfg.Filter, cfg.Raw, cfg.Sets, testEnv())
			if err != nil {
				errs <- err
				return
			}
			rss[i] = rs
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	pk := newCtx().packet(decode(t, udp("10.0.0.1", "192.0.2.1", 1, 2)))
	rss[0].Eval(HookForward, pk)
	if rss[0].Counters("filter.forward")[0].Packets != 1 || rss[1].Counters("filter.forward")[0].Packets != 0 {
		t.Fatal("rulesets share counters")
	}
	var a, b strings.Builder
	rss[2].Dump(&a)
	rss[3].Dump(&b)
	if a.String() != b.String() {
		t.Fatal("same config, different dumps")
	}
}

// TestCounterShards: packets counted through different Packet structs land
// in different shards, and every reader sees the sum.
func TestCounterShards(t *testing.T) {
	rs := mustCompile(t, `
[filter.forward]
rules = [ { action = "accept" } ]
`)
	p := decode(t, udp("fd00::1", "2001:db8::1", 1, 2))
	for range 64 {
		pk := newCtx().packet(p)
		rs.Eval(HookForward, pk)
	}
	c := &rs.chains[rs.hooks[HookForward]]
	used := 0
	for s := 0; s < len(c.counters); s += c.stride {
		if c.counters[s].packets.Load() > 0 {
			used++
		}
	}
	if used < 2 {
		t.Errorf("64 Packets used %d counter shards", used)
	}
	if got := rs.Counters("filter.forward")[0]; got != (RuleCounter{64, 64 * 48}) {
		t.Errorf("counters %+v, want 64 packets, %d bytes", got, 64*48)
	}
	if uintptr(unsafe.Pointer(&c.counters[0]))%64 != 0 || c.stride%4 != 0 {
		t.Errorf("shards not cache-line aligned")
	}
}
