package uplink

import (
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
	"golang.org/x/sys/unix"
)

func TestConfigDecode(t *testing.T) {
	var c Config
	_, err := toml.Decode(`
mtu = 9000
udp_timeout = "2m"
dial_timeout = "5s"
max_flows = 100
allow_host_loopback = true
host_loopback = ["10.0.2.2", "fd00::2"]
dns = ["10.0.2.3", "fd00::3"]
`, &c)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.MTU != 9000 || time.Duration(c.UDPTimeout) != 2*time.Minute || time.Duration(c.DialTimeout) != 5*time.Second ||
		c.MaxFlows != 100 || !c.AllowHostLoopback || c.dns6.String() != "fd00::3" || c.hostLoopback4.String() != "10.0.2.2" {
		t.Fatalf("decoded %+v", c)
	}
}

func TestConfigDefaults(t *testing.T) {
	var c Config
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.MTU != DefaultMTU || time.Duration(c.UDPTimeout) != DefaultUDPTimeout || c.MaxFlows < minFlows ||
		c.MaxPendingDials != DefaultMaxPendingDials || c.MaxPendingDialsPerHost != DefaultMaxPendingDialsPerHost ||
		c.AllowHostLoopback || c.ResolvConf != "/etc/resolv.conf" || c.MaxForwardsPerSource != c.MaxFlows/4 {
		t.Fatalf("defaults %+v", c)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		c    Config
		want string
	}{
		{Config{MTU: 576}, "mtu: 576"},
		{Config{UDPTimeout: Duration(time.Millisecond)}, "udp_timeout"},
		{Config{MaxFlows: -1}, "max_flows: -1"},
		{Config{MaxPendingDials: -1}, "max_pending_dials: -1"},
		{Config{MaxForwardsPerSource: -1}, "max_forwards_per_source: -1"},
		{Config{DNS: []string{"10.0.2.3", "10.0.2.4"}}, `dns[1]: "10.0.2.4": one address per family`},
		{Config{DNS: []string{"bogus"}}, "dns[0]"},
		{Config{DNS: []string{"127.0.0.53"}}, `dns[0]: "127.0.0.53"`},
		{Config{HostLoopback: []string{"::"}}, "host_loopback[0]"},
		{Config{DNS: []string{"10.0.2.2"}, HostLoopback: []string{"10.0.2.2"}}, "dns: 10.0.2.2 is also a host_loopback"},
	} {
		err := tc.c.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want one containing %q", tc.c, err, tc.want)
		}
	}
}

func TestResolvConfErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := New(Config{DNS: []string{"10.0.2.3"}, ResolvConf: dir + "/missing"}, nil); err == nil ||
		!strings.Contains(err.Error(), "resolv_conf") {
		t.Errorf("missing resolv.conf: %v", err)
	}
	if err := writeFile(dir+"/r", "search x\nnameserver fe80::1%eth0\n"); err != nil {
		t.Fatal(err)
	}
	if _, err := New(Config{DNS: []string{"10.0.2.3"}, ResolvConf: dir + "/r"}, nil); err == nil ||
		!strings.Contains(err.Error(), "no usable nameserver") {
		t.Errorf("resolv.conf without a usable nameserver: %v", err)
	}
}

func TestCounterNames(t *testing.T) {
	seen := map[string]bool{}
	for c := range NumCounters {
		n := c.String()
		if n == "" || n == "unknown" || seen[n] {
			t.Errorf("counter %d has name %q", c, n)
		}
		seen[n] = true
	}
	if NumCounters.String() != "unknown" {
		t.Error("out-of-range counter has a name")
	}
}

func TestCounterGauges(t *testing.T) {
	for c, want := range map[Counter]bool{UDPSockets: true, DialsPending: true, DialsRefused: false, ICMPErrorsSent: false} {
		if c.IsGauge() != want {
			t.Errorf("%v.IsGauge() = %v", c, !want)
		}
	}
}

func TestTTLCmsgSpace(t *testing.T) {
	if got := unix.CmsgSpace(4); got != ttlCmsgSpace {
		t.Fatalf("CmsgSpace(4) = %d, ttlCmsgSpace = %d", got, ttlCmsgSpace)
	}
}
