package rules

import (
	"strings"
	"testing"

	"tungate/conntrack"
	"tungate/packet"
)

func TestSynProxyRule(t *testing.T) {
	rs := mustCompile(t, `
[filter.forward]
rules = [
  { proto = "tcp", dport = 80, ct_state = ["new"], action = "synproxy" },
  { proto = "tcp", dport = 443, action = "synproxy", synproxy = { mss = 1400, wscale = 9, timestamp = false, sack_perm = false } },
]`)
	var b strings.Builder
	if err := rs.Dump(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"meta l4proto tcp tcp dport 80 ct state new counter packets 0 bytes 0 synproxy wscale 10 timestamp sack-perm",
		"meta l4proto tcp tcp dport 443 counter packets 0 bytes 0 synproxy mss 1400 wscale 9\n",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("dump lacks %q:\n%s", want, b.String())
		}
	}
	pk := newCtx().packet(decode(t, tcp4("10.0.0.1", "192.0.2.1", 1000, 443, packet.TCPSyn)))
	pk.Info = conntrack.New
	d := rs.Eval(HookForward, pk)
	if want := (SynProxyOptions{MSS: 1400, WScale: 9, NoTS: true, NoSACK: true}); d.Verdict != SynProxy || d.SynProxy != want {
		t.Fatalf("decision %+v, want synproxy %+v", d, want)
	}
	if d.Verdict.String() != "synproxy" {
		t.Errorf("verdict name %q", d.Verdict.String())
	}
}

func TestSynProxyRuleErrors(t *testing.T) {
	_, err := compileTOML(t, `
[filter.input]
rules = [ { proto = "tcp", action = "synproxy" } ]
[filter.forward]
rules = [
  { action = "synproxy" },
  { proto = ["tcp", "udp"], action = "synproxy" },
  { proto = "tcp", synproxy = { mss = 1400 }, action = "accept" },
  { proto = "tcp", action = "synproxy", synproxy = { mss = 100, wscale = 15, timestamp = 1, frobnicate = 1 } },
  { proto = "tcp", action = "synproxy", synproxy = 3 },
]
[raw.prerouting]
rules = [ { proto = "tcp", action = "synproxy" } ]
`, testEnv())
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{
		`filter.input.rules[0].action: synproxy only works in filter.forward`,
		`filter.forward.rules[0].action: synproxy needs proto = "tcp"`,
		`filter.forward.rules[1].action: synproxy needs proto = "tcp"`,
		`filter.forward.rules[2].synproxy: only with action = "synproxy"`,
		`filter.forward.rules[3].synproxy.mss: want a number 536-65535, got integer 100`,
		`filter.forward.rules[3].synproxy.wscale: want a number 0-14 (RFC 7323), got integer 15`,
		`filter.forward.rules[3].synproxy.timestamp: want true or false, got integer 1`,
		`filter.forward.rules[3].synproxy: unknown key "frobnicate"`,
		`filter.forward.rules[4].synproxy: want a table { mss, wscale, timestamp, sack_perm }, got integer 3`,
		`raw.prerouting.rules[0].action: synproxy is not available in raw.prerouting`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("errors lack %q:\n%v", want, err)
		}
	}
}
