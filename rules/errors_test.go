package rules

import (
	"errors"
	"strconv"
	"strings"
	"testing"
)

// TestErrors asserts configuration errors verbatim: each names its key
// path (chain, 0-based rule index, field) and quotes the value.
func TestErrors(t *testing.T) {
	cases := []struct {
		name, cfg, want string
	}{
		{"unknown state with suggestion", `
[filter.forward]
rules = [
  { action = "accept" },
  { action = "accept" },
  { action = "accept" },
  { ct_state = ["established", "establised"], action = "accept" },
]`, `filter.forward.rules[3].ct_state: unknown state "establised" (did you mean "established"?)`},
		{"unknown state without suggestion", `
[filter.input]
rules = [ { ct_state = "bogus" } ]`, `filter.input.rules[0].ct_state: unknown state "bogus" (want invalid, established, related, new, untracked)`},
		{"unknown key with suggestion", `
[filter.forward]
rules = [ { ct_stat = "new", action = "accept" } ]`, `filter.forward.rules[0]: unknown key "ct_stat" (did you mean "ct_state"?)`},
		{"unknown key without suggestion", `
[filter.forward]
rules = [ { frobnicate = 1 } ]`, `filter.forward.rules[0]: unknown key "frobnicate"`},
		{"bad CIDR", `
[filter.forward]
rules = [ { src = "10.0.0.0/33", action = "drop" } ]`, `filter.forward.rules[0].src: bad CIDR "10.0.0.0/33"`},
		{"bad CIDR host bits", `
[filter.forward]
rules = [ { dst = ["10.0.0.0/8", "fd00::1/64"], action = "drop" } ]`, `filter.forward.rules[0].dst: bad CIDR "fd00::1/64": host bits set (did you mean "fd00::/64"?)`},
		{"bad address", `
[filter.output]
rules = [ { src = "10.0.0.256" } ]`, `filter.output.rules[0].src: bad CIDR "10.0.0.256"`},
		{"cidr family mismatch", `
[filter.forward]
rules = [ { family = "ip6", src = "10.0.0.0/8" } ]`, `filter.forward.rules[0].src: 10.0.0.0/8 does not fit the rule's family`},
		{"src and dst families disjoint", `
[filter.forward]
rules = [ { src = ["10.0.0.0/8", "192.0.2.1"], dst = "2001:db8::/32" } ]`, `filter.forward.rules[0].dst: no address family in common with src (the rule could never match)`},
		{"reject family vs addresses", `
[filter.forward]
rules = [ { src = "2001:db8::/32", action = "reject", reject_with = "icmp-port-unreachable" } ]`, `filter.forward.rules[0].reject_with: icmp-port-unreachable does not fit the rule's family`},
		{"unknown set", `
[sets]
blocked = ["192.0.2.0/24"]
[filter.forward]
rules = [ { src = "@blokced", action = "drop" } ]`, `filter.forward.rules[0].src: unknown set "@blokced" (did you mean "@blocked"?)`},
		{"bad set entry", `
[sets]
blocked = ["192.0.2.0/24", "2001:db8::/129"]`, `sets.blocked[1]: bad CIDR "2001:db8::/129"`},
		{"unknown chain", `
[filter.forward]
rules = [ { action = "jump", chain = "lan_in" } ]
[filter.chains.lan-in]
rules = []`, `filter.forward.rules[0].chain: unknown chain "lan_in" (did you mean "lan-in"?)`},
		{"jump to base chain", `
[filter.forward]
rules = [ { action = "goto", chain = "input" } ]`, `filter.forward.rules[0].chain: cannot goto to base chain "input" (only to [filter.chains.NAME])`},
		{"jump loop", `
[filter.forward]
rules = [ { action = "jump", chain = "a" } ]
[filter.chains.a]
rules = [ { dport = 1, action = "jump", chain = "b" } ]
[filter.chains.b]
rules = [ { action = "accept" }, { action = "goto", chain = "c" } ]
[filter.chains.c]
rules = [ { action = "jump", chain = "a" } ]`, `filter.chains.c.rules[0].chain: jump loop a -> b -> c -> a`},
		{"self loop", `
[filter.chains.x]
rules = [ { action = "goto", chain = "x" } ]`, `filter.chains.x.rules[0].chain: jump loop x -> x`},
		{"jump without chain", `
[filter.forward]
rules = [ { action = "jump" } ]`, `filter.forward.rules[0].action: jump needs chain = "NAME"`},
		{"chain without jump", `
[filter.forward]
rules = [ { action = "accept", chain = "x" } ]`, `filter.forward.rules[0].chain: only with action = "jump" or "goto"`},
		{"port out of range", `
[filter.forward]
rules = [ { dport = 70000, action = "accept" } ]`, `filter.forward.rules[0].dport: port 70000 out of range (0-65535)`},
		{"port range out of range", `
[filter.forward]
rules = [ { sport = "1024-65536", action = "accept" } ]`, `filter.forward.rules[0].sport: port 65536 out of range (0-65535)`},
		{"port range reversed", `
[filter.forward]
rules = [ { dport = ["80", "!2000-1000"] } ]`, `filter.forward.rules[0].dport: bad port range "2000-1000" (start after end)`},
		{"port name", `
[filter.forward]
rules = [ { dport = "http" } ]`, `filter.forward.rules[0].dport: bad port "http" (want a number 0-65535 or a range like "1024-65535")`},
		{"port bool", `
[filter.forward]
rules = [ { dport = true } ]`, `filter.forward.rules[0].dport: want a port, range like "1024-65535" or list of them, got bool true`},
		{"port float", `
[filter.forward]
rules = [ { dport = 80.5 } ]`, `filter.forward.rules[0].dport: want a port, range like "1024-65535" or list of them, got float 80.5`},
		{"ports need tcp or udp", `
[filter.forward]
rules = [ { proto = "icmp", dport = 80 } ]`, `filter.forward.rules[0].dport: ports need proto tcp or udp`},
		{"unknown interface", `
[filter.forward]
rules = [ { in = "lna", action = "accept" } ]`, `filter.forward.rules[0].in: unknown interface "lna" (did you mean "lan"?)`},
		{"out in input", `
[filter.input]
rules = [ { out = "wan", action = "accept" } ]`, `filter.input.rules[0].out: no output interface in the input hook`},
		{"in in output via user chain", `
[filter.output]
rules = [ { action = "jump", chain = "common" } ]
[filter.chains.common]
rules = [ { in = "!lan", action = "accept" } ]`, `filter.chains.common.rules[0].in: no input interface in the output hook (reached from filter.output)`},
		{"bad proto", `
[filter.forward]
rules = [ { proto = "tpc", action = "accept" } ]`, `filter.forward.rules[0].proto: unknown protocol "tpc" (did you mean "tcp"?)`},
		{"proto out of range", `
[filter.forward]
rules = [ { proto = 256 } ]`, `filter.forward.rules[0].proto: 256 out of range (0-255)`},
		{"icmp type unknown for proto", `
[filter.input]
rules = [ { proto = "icmpv6", icmp_type = "timestamp-request", action = "accept" } ]`, `filter.input.rules[0].icmp_type: unknown icmpv6 type "timestamp-request"`},
		{"icmp type suggestion", `
[filter.input]
rules = [ { proto = "icmp", icmp_type = "echo-requst", action = "accept" } ]`, `filter.input.rules[0].icmp_type: unknown icmp type "echo-requst" (did you mean "echo-request"?)`},
		{"icmp type without proto", `
[filter.input]
rules = [ { icmp_type = "echo-request", action = "accept" } ]`, `filter.input.rules[0].icmp_type: needs proto = "icmp" or "icmpv6" (types are read under the rule's proto)`},
		{"icmp code not a number", `
[filter.input]
rules = [ { proto = "icmp", icmp_code = "port-unreachable" } ]`, `filter.input.rules[0].icmp_code: bad icmp code "port-unreachable" (want a number 0-255)`},
		{"tcp_flags unknown flag", `
[filter.forward]
rules = [ { tcp_flags = "sny,!ack", action = "drop" } ]`, `filter.forward.rules[0].tcp_flags: unknown flag "sny" (did you mean "syn"?)`},
		{"tcp_flags with udp", `
[filter.forward]
rules = [ { proto = "udp", tcp_flags = "syn" } ]`, `filter.forward.rules[0].tcp_flags: needs proto tcp`},
		{"unknown status", `
[filter.forward]
rules = [ { ct_status = "asured" } ]`, `filter.forward.rules[0].ct_status: unknown status "asured" (did you mean "assured"?)`},
		{"unknown direction", `
[filter.forward]
rules = [ { ct_direction = "replay" } ]`, `filter.forward.rules[0].ct_direction: unknown direction "replay" (did you mean "reply"?)`},
		{"unknown helper", `
[filter.forward]
rules = [ { helper = "ftpp" } ]`, `filter.forward.rules[0].helper: unknown helper "ftpp" (did you mean "ftp"?)`},
		{"unknown ct_helper", `
[filter.forward]
rules = [ { ct_helper = "sip" } ]`, `filter.forward.rules[0].ct_helper: unknown helper "sip"`},
		{"mark negative", `
[filter.forward]
rules = [ { mark = -1 } ]`, `filter.forward.rules[0].mark: -1 out of range (0-4294967295)`},
		{"set_mark string", `
[filter.forward]
rules = [ { set_mark = "lots" } ]`, `filter.forward.rules[0].set_mark: bad value "lots" (want a 32-bit number)`},
		{"bad limit", `
[filter.forward]
rules = [ { limit = "50/sec", action = "accept" } ]`, `filter.forward.rules[0].limit: bad rate "50/sec" (want N/second, N/minute, N/hour, N/day or N/week, optionally "over N/unit")`},
		{"burst without limit", `
[filter.forward]
rules = [ { burst = 5 } ]`, `filter.forward.rules[0].burst: only with limit`},
		{"bad burst", `
[filter.forward]
rules = [ { limit = "5/second", burst = 0 } ]`, `filter.forward.rules[0].burst: want a packet count 1-1048576, got integer 0`},
		{"length out of range", `
[filter.forward]
rules = [ { length = "100-70000" } ]`, `filter.forward.rules[0].length: length 70000 out of range (0-65535)`},
		{"unknown action", `
[filter.forward]
rules = [ { action = "acept" } ]`, `filter.forward.rules[0].action: unknown action "acept" (did you mean "accept"?)`},
		{"notrack outside raw", `
[filter.forward]
rules = [ { action = "notrack" } ]`, `filter.forward.rules[0].action: notrack is only valid in raw.prerouting`},
		{"ct in raw", `
[raw.prerouting]
rules = [ { ct_state = "new", action = "notrack" } ]`, `raw.prerouting.rules[0].ct_state: not available in raw.prerouting (it runs before connection tracking)`},
		{"reject_with without reject", `
[filter.forward]
rules = [ { action = "drop", reject_with = "tcp-reset" } ]`, `filter.forward.rules[0].reject_with: only with action = "reject"`},
		{"unknown reject type", `
[filter.forward]
rules = [ { action = "reject", reject_with = "icmp-port-unreachabel" } ]`, `filter.forward.rules[0].reject_with: unknown reject type "icmp-port-unreachabel" (did you mean "icmp-port-unreachable"?)`},
		{"reject family mismatch", `
[filter.forward]
rules = [ { family = "ip6", action = "reject", reject_with = "icmp-admin-prohibited" } ]`, `filter.forward.rules[0].reject_with: icmp-admin-prohibited does not fit the rule's family`},
		{"tcp-reset on udp", `
[filter.forward]
rules = [ { proto = "udp", action = "reject", reject_with = "tcp-reset" } ]`, `filter.forward.rules[0].reject_with: tcp-reset needs proto tcp`},
		{"bad policy", `
[filter.forward]
policy = "dorp"`, `filter.forward.policy: unknown policy "dorp" (did you mean "drop"?)`},
		{"user chain policy", `
[filter.chains.x]
policy = "drop"`, `filter.chains.x.policy: user chains have no policy (got "drop")`},
		{"empty list", `
[filter.forward]
rules = [ { src = [] } ]`, `filter.forward.rules[0].src: want a CIDR, @set or list of them, got a list`},
		{"nested list", `
[filter.forward]
rules = [ { in = [["lan"]] } ]`, `filter.forward.rules[0].in: want an interface name or list of them, got a list`},
		{"wrong entry type", `
[filter.forward]
rules = [ { ct_state = ["new", 1] } ]`, `filter.forward.rules[0].ct_state: want a state name or list of them, got integer 1`},
		{"bad family", `
[filter.forward]
rules = [ { family = "ipv4" } ]`, `filter.forward.rules[0].family: unknown family "ipv4" (want "ip" or "ip6")`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := compileTOML(t, tc.cfg, testEnv())
			if err == nil {
				t.Fatalf("no error, want %s", tc.want)
			}
			if err.Error() != tc.want {
				t.Fatalf("error:\n got %s\nwant %s", err, tc.want)
			}
			var ce *ConfigError
			if !errors.As(err, &ce) || !strings.HasPrefix(tc.want, ce.Path+": ") {
				t.Fatalf("not a *ConfigError with the path: %#v", err)
			}
		})
	}
}

// TestErrorsAll checks that all errors are reported, in file order.
func TestErrorsAll(t *testing.T) {
	_, err := compileTOML(t, `
[filter.input]
rules = [ { dport = 99999 }, { proto = "tcp", action = "nope" } ]
[filter.forward]
rules = [ { in = "lan", foo = 1 } ]
`, testEnv())
	want := `filter.input.rules[0].dport: port 99999 out of range (0-65535)
filter.input.rules[1].action: unknown action "nope" (want accept, drop, reject, synproxy, jump, goto, return, notrack)
filter.forward.rules[0]: unknown key "foo"`
	if err == nil || err.Error() != want {
		t.Fatalf("got\n%v\nwant\n%s", err, want)
	}
}

// TestJumpDepth rejects a chain of jumps deeper than the evaluation stack,
// and accepts one exactly as deep.
func TestJumpDepth(t *testing.T) {
	build := func(n int) string {
		var b strings.Builder
		b.WriteString("[filter.forward]\nrules = [ { action = \"jump\", chain = \"c1\" } ]\n")
		for i := 1; i < n; i++ {
			b.WriteString("[filter.chains.c" + strconv.Itoa(i) + "]\nrules = [ { action = \"jump\", chain = \"c" + strconv.Itoa(i+1) + "\" } ]\n")
		}
		b.WriteString("[filter.chains.c" + strconv.Itoa(n) + "]\nrules = [ { action = \"drop\" } ]\n")
		return b.String()
	}
	rs := mustCompile(t, build(maxJumpDepth))
	pk := newCtx().packet(decode(t, udp("10.0.0.1", "192.0.2.1", 1, 2)))
	if d := rs.Eval(HookForward, pk); d.Verdict != Drop {
		t.Fatalf("deepest chain's drop: got %v", d.Verdict)
	}
	_, err := compileTOML(t, build(maxJumpDepth+1), testEnv())
	if err == nil || err.Error() != "filter.forward: jumps nest 17 deep (at most 16)" {
		t.Fatalf("got %v", err)
	}
}
