package rules

import (
	"strconv"
	"strings"
	"testing"

	"tungate/packet"
)

const dumpConfig = `
[sets]
blocked = ["203.0.113.0/24", "2001:db8:bad::/48"]
[raw.prerouting]
rules = [ { proto = "udp", dport = 53, action = "notrack" } ]
[filter.input]
policy = "drop"
rules = [
  { ct_state = ["established", "related"], action = "accept" },
  { ct_state = "invalid", action = "drop", log = "ct-invalid " },
  { in = "lan", proto = "icmp", icmp_type = ["echo-request", "!echo-reply"], icmp_code = 0, action = "accept" },
  { proto = "icmpv6", icmp_type = "nd-neighbor-solicit", action = "accept" },
  { in = ["!wan", "!dmz"], proto = "tcp", dport = [22, "8000-8080"], tcp_flags = "syn,!ack", limit = "10/minute", burst = 3, action = "accept" },
  { action = "reject", reject_with = "icmpv6-admin-prohibited" },
]
[filter.forward]
rules = [
  { src = "@blocked", action = "drop" },
  { src = ["10.0.0.0/8", "!10.1.0.0/16"], dst = "192.168.0.0/16", sport = "!53", length = "0-1400", mark = "!0x10", action = "jump", chain = "lan-out" },
  { family = "ip", ct_status = ["assured", "!dnat"], ct_direction = "reply", ct_helper = "ftp", ct_mark = 7, set_mark = 1, set_ct_mark = "0x2" },
  { out = "wan", proto = "tcp", dport = 21, ct_state = "new", helper = "ftp" },
  { action = "reject", reject_with = "tcp-reset" },
]
[filter.chains.lan-out]
rules = [ { action = "goto", chain = "last" } ]
[filter.chains.last]
rules = [ { action = "return" } ]
`

func TestDump(t *testing.T) {
	rs := mustCompile(t, dumpConfig)
	pk := newCtx().packet(decode(t, tcp4("fd00::1", "2001:db8::1", 1, 22, packet.TCPAck)))
	rs.Eval(HookInput, pk)
	pk = newCtx().packet(decode(t, udp("10.0.0.1", "192.0.2.1", 1, 22)))
	rs.Eval(HookInput, pk)
	var b strings.Builder
	if err := rs.Dump(&b); err != nil {
		t.Fatal(err)
	}
	want := `set blocked { 203.0.113.0/24, 2001:db8:bad::/48 }
chain raw prerouting { type filter hook prerouting; policy accept; }
  [0] meta l4proto udp udp dport 53 counter packets 0 bytes 0 notrack
chain filter input { type filter hook input; policy drop; }
  [0] ct state { established, related } counter packets 2 bytes 88 accept
  [1] ct state invalid counter packets 0 bytes 0 log prefix "ct-invalid " drop
  [2] iifname "lan" meta l4proto icmp icmp type echo-request icmp type != echo-reply icmp code 0 counter packets 0 bytes 0 accept
  [3] meta l4proto icmpv6 icmpv6 type nd-neighbor-solicit counter packets 0 bytes 0 accept
  [4] iifname != { "wan", "dmz" } meta l4proto tcp tcp dport { 22, 8000-8080 } tcp flags syn,!ack limit rate 10/minute burst 3 packets counter packets 0 bytes 0 accept
  [5] meta nfproto ipv6 counter packets 0 bytes 0 reject with icmpv6 type admin-prohibited
chain filter forward { type filter hook forward; policy accept; }
  [0] saddr @blocked counter packets 0 bytes 0 drop
  [1] ip saddr 10.0.0.0/8 ip saddr != 10.1.0.0/16 ip daddr 192.168.0.0/16 th sport != 53 meta length 0-1400 meta mark != 0x00000010 counter packets 0 bytes 0 jump lan-out
  [2] meta nfproto ipv4 ct status assured ct status != dnat ct direction reply ct helper "ftp" ct mark 0x00000007 counter packets 0 bytes 0 meta mark set 0x00000001 ct mark set 0x00000002
  [3] oifname "wan" meta l4proto tcp tcp dport 21 ct state new counter packets 0 bytes 0 ct helper set "ftp"
  [4] meta l4proto tcp counter packets 0 bytes 0 reject with tcp reset
chain filter lan-out {}
  [0] counter packets 0 bytes 0 goto last
chain filter last {}
  [0] counter packets 0 bytes 0 return
`
	if got := b.String(); got != want {
		t.Fatalf("dump:\n%s\nwant:\n%s", got, want)
	}
}

// TestDumpBigSet: a large set prints its first entries and its size.
func TestDumpBigSet(t *testing.T) {
	var entries []string
	for i := range 20 {
		entries = append(entries, "10.0.0."+strconv.Itoa(i))
	}
	rs, err := Compile(FilterConfig{}, RawConfig{}, map[string][]string{"big": entries}, testEnv())
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	if err := rs.Dump(&b); err != nil {
		t.Fatal(err)
	}
	want := "set big { " + strings.Join(entries[:16], ", ") + ", ... } # 20 elements\n"
	if b.String() != want {
		t.Fatalf("got %q, want %q", b.String(), want)
	}
}
