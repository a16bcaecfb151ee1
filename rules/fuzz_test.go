package rules

import (
	"io"
	"testing"

	"github.com/BurntSushi/toml"

	"tungate/conntrack"
	"tungate/packet"
)

// FuzzCompile feeds arbitrary TOML to Compile: it must return a Ruleset or
// an error, never panic, and a Ruleset must evaluate and dump any packet.
func FuzzCompile(f *testing.F) {
	for _, s := range []string{
		typical20, chainsConfig, dumpConfig,
		`[filter.forward]
rules = [ { dport = ["!53", "1-2"], src = ["@s", "!::/0"], limit = "1/second" } ]
[sets]
s = ["10.0.0.0/8"]`,
		`[raw.prerouting]
rules = [ { action = "notrack", length = 5 } ]`,
	} {
		f.Add(s)
	}
	pkts := []pkt{
		tcp4("10.0.0.1", "192.0.2.1", 1, 80, packet.TCPSyn),
		udp("fd00::1", "2001:db8::1", 53, 53),
		icmp("10.0.0.1", "192.0.2.1", 8, 0),
		icmp("fd00::1", "2001:db8::1", 128, 0),
		{src: "10.0.0.1", dst: "192.0.2.1", proto: packet.ProtoUDP, nonFirstFrag: true},
	}
	f.Fuzz(func(t *testing.T, src string) {
		var cfg testConfig
		if _, err := toml.Decode(src, &cfg); err != nil {
			return
		}
		rs, err := Compile(cfg.Filter, cfg.Raw, cfg.Sets, testEnv())
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		for _, p := range pkts {
			for h := HookPrerouting; h <= HookOutput; h++ {
				c := newCtx()
				c.info = conntrack.New
				rs.Eval(h, c.packet(decode(t, p)))
			}
		}
		if err := rs.Dump(io.Discard); err != nil {
			t.Fatal(err)
		}
	})
}
