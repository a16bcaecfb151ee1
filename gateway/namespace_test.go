package gateway

import (
	"net/netip"
	"strings"
	"testing"
)

// TestNamespaceConfig: [namespace] names an interface that then needs no
// tun; its addresses are parsed, the next hops default to the interface's
// own first address per family, and the MTU to slirp4netns's 65520.
func TestNamespaceConfig(t *testing.T) {
	cfg, err := ParseConfig([]byte(`
[[interface]]
name = "wan"
tun = "tgwan0"
[[interface]]
name = "ctr"
addresses = ["10.0.2.2/24", "10.0.3.2/24", "fd00::2/64"]
[namespace]
interface = "ctr"
addresses = ["10.0.2.100/24", "fd00::100/64"]
dns = ["10.0.2.3"]
`))
	if err != nil {
		t.Fatal(err)
	}
	n := &cfg.Namespace
	if !n.Enabled() || n.Index() != 1 {
		t.Fatalf("namespace interface index %d, enabled %v", n.Index(), n.Enabled())
	}
	if got := cfg.Interface[1].MTU; got != 65520 {
		t.Errorf("namespace interface MTU %d, want 65520", got)
	}
	want := []netip.Addr{netip.MustParseAddr("10.0.2.2"), netip.MustParseAddr("fd00::2")}
	if got := n.GatewayAddrs(); len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("gateways %v, want %v", got, want)
	}
	if got := n.Prefixes(); len(got) != 2 || got[1] != netip.MustParsePrefix("fd00::100/64") {
		t.Errorf("addresses %v", got)
	}
	if got := n.DNSAddrs(); len(got) != 1 || got[0] != netip.MustParseAddr("10.0.2.3") {
		t.Errorf("dns %v", got)
	}
}

// TestNamespaceConfigErrors: each mistake names its key.
func TestNamespaceConfigErrors(t *testing.T) {
	for _, c := range []struct{ conf, want string }{
		{`[[interface]]
name = "ctr"
tun = "x0"
[namespace]
interface = "ctx"
addresses = ["10.0.2.100/24"]`, `namespace.interface: unknown interface "ctx" (did you mean "ctr"?)`},
		{`[[interface]]
name = "ctr"
tun = "x0"
[namespace]
interface = "ctr"
addresses = ["10.0.2.100/24"]`, "gets its TUN from the namespace"},
		{`[[interface]]
name = "ctr"
[namespace]
interface = "ctr"`, "namespace.addresses: missing"},
		{`[[interface]]
name = "ctr"
[namespace]
interface = "ctr"
addresses = ["10.0.2.300/24"]`, `namespace.addresses[0]: invalid address/prefix "10.0.2.300/24"`},
		{`[[interface]]
name = "ctr"
[namespace]
interface = "ctr"
addresses = ["10.0.2.100/24"]
gateways = ["nope"]`, `namespace.gateways[0]: invalid address "nope"`},
		{`[[interface]]
name = "ctr"
tun = "x0"
[namespace]
addresses = ["10.0.2.100/24"]`, "namespace.interface: missing"},
		{`[[interface]]
name = "lan"
[namespace]
interface = "ctr"
addresses = ["10.0.2.100/24"]`, "one of tun or tun_fd is required"},
	} {
		_, err := ParseConfig([]byte(c.conf))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("config\n%s\nwant an error containing %q, got %v", c.conf, c.want, err)
		}
	}
}
