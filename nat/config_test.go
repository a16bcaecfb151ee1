package nat

import (
	"strings"
	"testing"

	"github.com/BurntSushi/toml"

	"tungate/conntrack"
)

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct{ text, want string }{
		{`[[nat.dnat]]
dport = 8080
to = "10.10.0.2:99999"`, `nat.dnat[0].to: invalid address:port "10.10.0.2:99999"`},
		{`[[nat.masquerade]]
out = "wan"
[[nat.masquerade]]
out = "wna"`, `nat.masquerade[1].out: unknown interface "wna"`},
		{`[[nat.masquerade]]
src = "10.0.0.0/8"`, `nat.masquerade[0].out: required (masquerade uses the out interface's address)`},
		{`[[nat.masquerade]]
out = "wan"
to = "1.2.3.4"`, `nat.masquerade[0].to: "1.2.3.4" not allowed (masquerade uses the out interface's address; use nat.snat)`},
		{`[[nat.snat]]
out = "wan"`, `nat.snat[0].to: required`},
		{`[[nat.snat]]
to = "198.18.0.20-198.18.0.10"`, `nat.snat[0].to: invalid address or range "198.18.0.20-198.18.0.10"`},
		{`[[nat.snat]]
to = "198.18.0.10-fd00::1"`, `nat.snat[0].to: invalid address or range "198.18.0.10-fd00::1"`},
		{`[[nat.snat]]
to = "2001:db8::-2001:db9::"`, `nat.snat[0].to: invalid address or range "2001:db8::-2001:db9::"`},
		{`[[nat.snat]]
to = "198.18.0.10"
ports = "0-100"`, `nat.snat[0].ports: invalid port or range "0-100"`},
		{`[[nat.snat]]
to = "198.18.0.10"
ports = 70000`, `nat.snat[0].ports: invalid port or range "70000"`},
		{`[[nat.masquerade]]
out = "wan"
src = ["10.0.0.0/8", "10.0.0.0/33"]`, `nat.masquerade[0].src: invalid prefix "10.0.0.0/33"`},
		{`[[nat.masquerade]]
out = "wan"
dst = "example.com"`, `nat.masquerade[0].dst: invalid prefix "example.com"`},
		{`[[nat.masquerade]]
out = "wan"
proto = "tcpp"`, `nat.masquerade[0].proto: unknown protocol "tcpp"`},
		{`[[nat.masquerade]]
out = "wan"
proto = "icmp"
dport = 80`, `nat.masquerade[0].dport: ports need proto "tcp" or "udp", not "icmp"`},
		{`[[nat.masquerade]]
out = "wan"
sport = "9-8"`, `nat.masquerade[0].sport: invalid port or range "9-8"`},
		{`[[nat.masquerade]]
out = "wan"
mapping = "full-cone"`, `nat.masquerade[0].mapping: unknown mapping "full-cone" (want "endpoint-independent" or "address-port-dependent")`},
		{`[[nat.masquerade]]
out = "wan"
filtering = "open"`, `nat.masquerade[0].filtering: unknown filtering "open" (want "address-port-dependent" or "endpoint-independent")`},
		{`[[nat.masquerade]]
out = "wan"
mapping = "address-port-dependent"
filtering = "endpoint-independent"`, `nat.masquerade[0].filtering: "endpoint-independent" needs mapping "endpoint-independent"`},
		{`[[nat.dnat]]
in = "wlan"
to = "10.0.0.1"`, `nat.dnat[0].in: unknown interface "wlan"`},
		{`[[nat.dnat]]
dport = 80`, `nat.dnat[0].to: required`},
		{`[[nat.dnat]]
dport = 80
to = ["10.10.0.2:80", "fd10::2:80"]`, `nat.dnat[0].to: invalid address:port "fd10::2:80"`},
		{`[[nat.dnat]]
dport = 80
to = "[10.0.0.1]:80"`, `nat.dnat[0].to: invalid address:port "[10.0.0.1]:80"`},
		{`[[nat.dnat]]
dport = 80
to = "10.10.0.2:"`, `nat.dnat[0].to: invalid address:port "10.10.0.2:"`},
		{`[[nat.dnat]]
dport = "8000-8009"
to = "10.10.0.3:9000-9005"`, `nat.dnat[0].to: port range in "10.10.0.3:9000-9005" has 6 ports, dport "8000-8009" has 10`},
		{`[[nat.dnat]]
to = "10.10.0.3:9000-9005"`, `nat.dnat[0].to: port range in "10.10.0.3:9000-9005" needs a dport range of 6 ports`},
		{`[[nat.dnat]]
proto = "gre"
to = "10.10.0.3:80"`, `nat.dnat[0].to: "10.10.0.3:80" has a port but proto "gre" has none`},
		{`[[nat.dnat]]
dport = "80-x"
to = "10.10.0.3"`, `nat.dnat[0].dport: invalid port or range "80-x"`},
		{`[[nat.netmap]]
out = "wan"
from = "10.0.0.0/24"
to = "198.18.5.0/25"`, `nat.netmap[0].to: prefix length of "198.18.5.0/25" differs from from "10.0.0.0/24"`},
		{`[[nat.netmap]]
out = "wan"
from = "10.0.0.0/24"
to = "2001:db8::/24"`, `nat.netmap[0].to: "2001:db8::/24" is not of the family of from "10.0.0.0/24"`},
		{`[[nat.netmap]]
out = "wan"
from = "fd00::/96"
to = "2001:db8::/96"`, `nat.netmap[0].from: NPTv6 prefix "fd00::/96" longer than /64 (RFC 6296)`},
		{`[[nat.netmap]]
from = "fd00::/48"
to = "2001:db8::/48"`, `nat.netmap[0].out: required`},
		{`[[nat.netmap]]
out = "wan"
from = "fd00::"
to = "2001:db8::/48"`, `nat.netmap[0].from: invalid prefix "fd00::"`},
	} {
		// One error, starting with the key path and the value; the
		// parser's reason or a suggestion may follow.
		cfg := decodeConfig(t, tc.text)
		err := cfg.Validate(testIfaceNames())
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("config\n%s\ngot  %v\nwant %s", tc.text, err, tc.want)
		}
		tbl, _ := conntrack.NewTable(conntrack.Config{})
		if _, err := New(cfg, testIfaces, tbl, nil); err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("New: got %v, want %s", err, tc.want)
		}
	}
}

func TestConfigForms(t *testing.T) {
	cfg := decodeConfig(t, `
[[nat.masquerade]]
out = "wan"
src = "10.10.0.0/24"
sport = 1024
dport = "1-1023"

[[nat.snat]]
out = "wan"
to = "198.18.0.10-198.18.0.20"
ports = "1024-65535"
random = true
mapping = "endpoint-independent"
filtering = "endpoint-independent"

[[nat.snat]]
to = "2001:db8:1::100-2001:db8:1::1ff"

[[nat.dnat]]
in = "wan"
src = ["203.0.113.0/24", "2001:db8:2::/48"]
dst = "198.18.0.1"
proto = "tcp"
dport = 8080
to = ["10.10.0.3:80", "10.10.0.4:80", "[fd10::3]:80", "[fd10::4]"]

[[nat.netmap]]
out = "wan"
from = "fd10::/48"
to = "2001:db8:5::/48"
`)
	if err := cfg.Validate(testIfaceNames()); err != nil {
		t.Fatal(err)
	}
	if len(cfg.Masquerade[0].Src) != 1 || cfg.Masquerade[0].SPort != "1024" || cfg.DNAT[0].To[3] != "[fd10::4]" {
		t.Fatalf("decoded %+v", cfg)
	}
	c, err := compile(&cfg, testIfaceNames(), testIfaces)
	if err != nil {
		t.Fatal(err)
	}
	if p := c.snat[1].pool; p.size != 256 || p.at(255).NetIP(6).String() != "2001:db8:1::1ff" {
		t.Fatalf("v6 pool %+v", p)
	}
	if c.snat[0].ownerIface != wan || c.snat[1].ownerIface != wan {
		t.Fatal("pool owner interface")
	}
	if len(c.dnat[0].targets[0]) != 2 || len(c.dnat[0].targets[1]) != 2 || c.dnat[0].targets[1][1].hasPort {
		t.Fatalf("targets %+v", c.dnat[0].targets)
	}
	// Wrong TOML types are decode errors.
	var doc struct {
		NAT Config `toml:"nat"`
	}
	if _, err := toml.Decode("[[nat.dnat]]\nto = 5\n", &doc); err == nil {
		t.Fatal("to = 5 decoded")
	}
	if _, err := toml.Decode("[[nat.dnat]]\ndport = true\n", &doc); err == nil {
		t.Fatal("dport = true decoded")
	}
}

func TestPoolAddresses(t *testing.T) {
	p, err := parsePool("10.0.0.250-10.0.1.5")
	if err != nil || p.size != 12 || p.at(11).NetIP(4).String() != "10.0.1.5" || p.at(6).NetIP(4).String() != "10.0.1.0" {
		t.Fatalf("%+v", p)
	}
	p, err = parsePool("2001:db8::ffff:ffff:ffff:fffe-2001:db8:0:1::1")
	if err != nil || p.size != 4 || p.at(2).NetIP(6).String() != "2001:db8:0:1::" {
		t.Fatalf("carry: %+v %v", p, p.at(2).NetIP(6))
	}
	if !p.contains(p.at(3).NetIP(6)) || p.contains(p.at(4).NetIP(6)) {
		t.Fatal("contains")
	}
}

// Every error of the section is reported, in rule order, each with its
// key path; a rule with an error is not compiled but the others are
// checked.
func TestConfigReportsEveryError(t *testing.T) {
	cfg := decodeConfig(t, `[[nat.snat]]
to = "198.18.0.300"
ports = "5-1"
[[nat.masquerade]]
out = "wna"
src = ["10.0.0.0/8", "10.0.0.0/33"]
[[nat.dnat]]
dport = 80
to = ["10.10.0.2:80", "[fd10::2]:x"]
[[nat.netmap]]
out = "wan"
from = "fd00::/48"
to = "2001:db8:::/48"
`)
	err := cfg.Validate(testIfaceNames())
	if err == nil {
		t.Fatal("no error")
	}
	want := []string{
		`nat.snat[0].to: invalid address or range "198.18.0.300": IPv4 field has value >255`,
		`nat.snat[0].ports: invalid port or range "5-1"`,
		`nat.masquerade[0].src: invalid prefix "10.0.0.0/33": prefix length out of range`,
		`nat.masquerade[0].out: unknown interface "wna" (did you mean "wan"?)`,
		`nat.dnat[0].to: invalid address:port "[fd10::2]:x": bad port or range "x"`,
		`nat.netmap[0].to: invalid prefix "2001:db8:::/48": ParseAddr("2001:db8:::")`,
	}
	got := strings.Split(err.Error(), "\n")
	if len(got) != len(want) {
		t.Fatalf("%d errors, want %d:\n%v", len(got), len(want), err)
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("error %d: %s\nwant %s…", i, got[i], want[i])
		}
	}
}
