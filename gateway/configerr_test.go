package gateway

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"tungate/confdiag"
)

// checkFile writes text to a file and runs Check on it.
func checkFile(t *testing.T, text string) (string, *Config, error) {
	t.Helper()
	f := filepath.Join(t.TempDir(), "x.toml")
	if err := os.WriteFile(f, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Check(f)
	return f, c, err
}

const twoIfaces = `[[interface]]
name = "lan"
tun = "t0"
addresses = ["10.10.0.1/24"]

[[interface]]
name = "wan"
tun = "t1"
addresses = ["198.18.0.1/24"]
`

// Every class of config error names the file, the line and column of the
// offending key or value, its key path (array indexes included) and why.
func TestConfigErrorClasses(t *testing.T) {
	for _, tc := range []struct {
		name, text string
		pos        string // line:col
		path       string
		reason     string
	}{
		{"syntax", twoIfaces + "mtu = 15x0\n", "10:9", "",
			"expected a top-level item to end with a newline"},
		{"syntax without key", "[[interface]\nname = \"lan\"\n", "1:12", "", "expected end of table array name delimiter"},
		{"unknown key", twoIfaces + "nmae = \"x\"\n", "10:1", "interface[1].nmae",
			`unknown key "nmae" (did you mean "name"?)`},
		{"unknown key in table", twoIfaces + "[conntrack]\nmax_entries = 5\n", "11:1", "conntrack.max_entries",
			`unknown key "max_entries"`},
		{"unknown key in rule", twoIfaces + "[filter.forward]\nrules = [\n  { action = \"accept\" },\n  { in = \"lan\", acton = \"drop\" },\n]\n",
			"13:17", "filter.forward.rules[1]", `unknown key "acton" (did you mean "action"?)`},
		{"unknown array of tables", twoIfaces + "[[nat.snta]]\nout = \"wan\"\n[[nat.snta]]\nout = \"lan\"\n", "10:1", "nat.snta",
			`unknown key "snta" (did you mean "snat"?)`},
		{"unknown key in user chain", twoIfaces + "[filter.chains.x]\npolcy = \"drop\"\n", "11:1", "filter.chains.x.polcy",
			`unknown key "polcy" (did you mean "policy"?)`},
		{"wrong type", twoIfaces + "mtu = \"big\"\n", "10:7", "interface[1].mtu",
			"wrong type: a TOML string where an integer is wanted"},
		{"wrong type, earlier element", strings.Replace(twoIfaces, `tun = "t0"`, "tun = \"t0\"\nmtu = \"big\"", 1) + "mtu = 1500\n",
			"4:7", "interface[0].mtu", "wrong type: a TOML string where an integer is wanted"},
		{"wrong type for a port", twoIfaces + "[[nat.masquerade]]\nout = \"wan\"\nsport = true\n",
			"12:9", "nat.masquerade[0].sport", `expected a port number or a "low-high" string, got true`},
		{"bad address", twoIfaces + "[[nat.dnat]]\ndport = 80\nto = \"10.10.0.2:80\"\n[[nat.dnat]]\ndport = 81\nto = \"10.10.0.300:80\"\n",
			"15:6", "nat.dnat[1].to", `"10.10.0.300:80": IPv4 field has value >255`},
		{"bad prefix", strings.Replace(twoIfaces, `"198.18.0.1/24"`, `"198.18.0.1/24", "10.0.0.300/24"`, 1),
			"9:31", "interface[1].addresses[1]", `"10.0.0.300/24": ParseAddr("10.0.0.300"): IPv4 field has value >255`},
		{"prefix without length", twoIfaces + "[[route]]\nto = \"10.0.0.0\"\ninterface = \"lan\"\n",
			"11:6", "route[0].to", `invalid prefix "10.0.0.0": no '/'`},
		{"bad port range", twoIfaces + "[[nat.snat]]\nto = \"198.18.0.1\"\nports = \"2000-1000\"\n",
			"12:9", "nat.snat[0].ports", `invalid port or range "2000-1000"`},
		{"bad duration", twoIfaces + "[conntrack.timeouts]\nudp = \"5 min\"\n", "11:8", "conntrack.timeouts.udp",
			`invalid duration "5 min"`},
		{"bad helper duration", twoIfaces + "[helpers.ftp]\ntimeout = \"-\"\n", "11:12", "helpers.ftp.timeout",
			`invalid duration "-"`},
		{"unknown interface", twoIfaces + "[[route]]\nto = \"0.0.0.0/0\"\ninterface = \"wna\"\n",
			"12:13", "route[0].interface", `unknown interface "wna" (did you mean "wan"?)`},
		{"unknown interface in nat", twoIfaces + "[[nat.masquerade]]\nout = \"lan\"\n[[nat.masquerade]]\nout = \"wna\"\n",
			"13:7", "nat.masquerade[1].out", `unknown interface "wna" (did you mean "wan"?)`},
		{"unknown interface in rule", twoIfaces + "[filter.input]\nrules = [ { in = \"lam\", action = \"drop\" } ]\n",
			"11:18", "filter.input.rules[0].in", `unknown interface "lam" (did you mean "lan"?)`},
		{"unknown set", twoIfaces + "[sets]\nblocked = [\"203.0.113.0/24\"]\n[filter.forward]\nrules = [\n  { src = \"@blokced\", action = \"drop\" },\n]\n",
			"14:11", "filter.forward.rules[0].src", `unknown set "@blokced" (did you mean "@blocked"?)`},
		{"duplicate interface name", twoIfaces + "[[interface]]\nname = \"lan\"\ntun = \"t2\"\n",
			"11:8", "interface[2].name", `duplicate name "lan" (also interface[0])`},
		{"duplicate device", twoIfaces + "[[interface]]\nname = \"dmz\"\ntun = \"t1\"\n",
			"12:7", "interface[2].tun", `device "t1" already used by interface[1]`},
		{"duplicate helper port", twoIfaces + "[helpers.ftp]\nports = [21, 2121, 21]\n",
			"11:20", "helpers.ftp.ports[2]", "port 21 listed twice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, _, err := checkFile(t, tc.text)
			if err == nil {
				t.Fatal("no error")
			}
			want := f + ":" + tc.pos + ": "
			if tc.path != "" {
				want += tc.path + ": "
			}
			if got := err.Error(); !strings.HasPrefix(got, want) || !strings.Contains(got, tc.reason) || strings.Contains(got, "\n") {
				t.Errorf("got  %s\nwant %s…%s", got, want, tc.reason)
			}
			// Each case has one mistake, reported once.
			var ce *confdiag.Error
			if !errors.As(err, &ce) || ce.File != f || ce.Path != tc.path {
				t.Errorf("not a located *confdiag.Error for %s: %#v", tc.path, ce)
			}
		})
	}
}

// A file with many mistakes gets them all in one report, in file order.
func TestConfigReportsEveryError(t *testing.T) {
	text := `[log]
levle = "debug"

[[interface]]
name = "lan"
tun = "t0"
addresses = ["10.10.0.1/24"]

[[interface]]
name = "wan"
tun = "t1"
addresses = ["198.18.0.1/24", "10.0.0.300/24"]
mtu = 100

[[interface]]
name = "lan"
tun = "t2"

[[route]]
to = "0.0.0.0/0"
interface = "wna"

[sets]
bad = ["300.1.1.0/24"]

[[nat.dnat]]
dport = "80-x"
to = "10.10.0.2:80"

[[nat.masquerade]]
out = "wna"
sr = "1"

[[nat.masquerade]]
out = "wan"
mapping = "cone"

[filter.forward]
rules = [
  { ct_state = ["established"], action = "accept" },
  { src = ["@nope"], action = "drop" },
  { in = "lna", acton = "drop" },
]
`
	f, _, err := checkFile(t, text)
	if err == nil {
		t.Fatal("no error")
	}
	want := []string{
		"2:1: log.levle: unknown key",
		"12:31: interface[1].addresses[1]: invalid address/prefix",
		"13:7: interface[1].mtu: 100 out of range",
		"16:8: interface[2].name: duplicate name",
		"21:13: route[0].interface: unknown interface",
		"24:8: sets.bad[0]: invalid CIDR",
		"27:9: nat.dnat[0].dport: invalid port or range",
		"31:7: nat.masquerade[0].out: unknown interface",
		"32:1: nat.masquerade[0].sr: unknown key",
		"36:11: nat.masquerade[1].mapping: unknown mapping",
		"41:11: filter.forward.rules[1].src: unknown set",
		"42:10: filter.forward.rules[2].in: unknown interface",
		"42:17: filter.forward.rules[2]: unknown key",
	}
	got := strings.Split(err.Error(), "\n")
	if len(got) != len(want) {
		t.Fatalf("%d errors, want %d:\n%s", len(got), len(want), err)
	}
	for i := range want {
		if !strings.HasPrefix(got[i], f+":"+want[i]) {
			t.Errorf("error %d: %s\nwant %s:%s…", i, got[i], f, want[i])
		}
	}
	// LoadConfig, which run and reload use, stops before the rules but
	// reports every error of the sections.
	if _, err := LoadConfig(f); err == nil || strings.Count(err.Error(), "\n") != 9 {
		t.Errorf("LoadConfig: %v", err)
	}
}

// tcp_max_retrans in [conntrack.timeouts] is the old name of tcp_retrans:
// it still sets the timeout, with a located warning; in [conntrack] it is
// the retransmission count, as Linux's sysctl.
func TestDeprecatedTimeoutName(t *testing.T) {
	text := twoIfaces + "[conntrack]\ntcp_max_retrans = 5\n[conntrack.timeouts]\ntcp_max_retrans = \"200s\"\n"
	f, c, err := checkFile(t, text)
	if err != nil {
		t.Fatal(err)
	}
	if c.Conntrack.TCPMaxRetrans != 5 || time.Duration(c.Conntrack.Timeouts.TCPRetrans) != 200*time.Second {
		t.Fatalf("count %d timeout %v", c.Conntrack.TCPMaxRetrans, time.Duration(c.Conntrack.Timeouts.TCPRetrans))
	}
	w := c.Warnings()
	if len(w) != 1 || !strings.HasPrefix(w[0], f+":13:1: conntrack.timeouts.tcp_max_retrans: deprecated name of the timeout tcp_retrans") {
		t.Fatalf("warnings %q", w)
	}

	_, c, err = checkFile(t, twoIfaces+"[conntrack.timeouts]\ntcp_retrans = \"100s\"\n")
	if err != nil || len(c.Warnings()) != 0 || time.Duration(c.Conntrack.Timeouts.TCPRetrans) != 100*time.Second {
		t.Fatalf("new name: %v %q", err, c.Warnings())
	}
	_, c, err = checkFile(t, twoIfaces)
	if err != nil || time.Duration(c.Conntrack.Timeouts.TCPRetrans) != 300*time.Second || c.Conntrack.TCPMaxRetrans != 3 {
		t.Fatalf("defaults: %v", err)
	}
	_, _, err = checkFile(t, twoIfaces+"[conntrack.timeouts]\ntcp_retrans = \"100s\"\ntcp_max_retrans = \"200s\"\n")
	if err == nil || !strings.Contains(err.Error(), ":12:19: conntrack.timeouts.tcp_max_retrans: 3m20s: old name of tcp_retrans, which is set too") {
		t.Fatalf("both names: %v", err)
	}
	_, _, err = checkFile(t, twoIfaces+"[conntrack.timeouts]\ntcp_retrans = 5\n")
	if err == nil || !strings.Contains(err.Error(), "conntrack.timeouts.tcp_retrans") {
		t.Fatalf("count given as timeout: %v", err)
	}
}

// run and reload compile the rules after LoadConfig: their errors are
// located too.
func TestRunRuleErrorsLocated(t *testing.T) {
	f := filepath.Join(t.TempDir(), "x.toml")
	os.WriteFile(f, []byte(twoIfaces+"[filter.forward]\nrules = [ { ct_state = [\"establised\"] } ]\n"), 0o600)
	cfg, err := LoadConfig(f)
	if err != nil {
		t.Fatal(err)
	}
	// The rules are compiled before any device is opened.
	_, err = New(cfg, Options{Logger: zap.NewNop()})
	want := f + `:11:24: filter.forward.rules[0].ct_state: unknown state "establised" (did you mean "established"?)`
	if err == nil || err.Error() != want {
		t.Fatalf("got  %v\nwant %s", err, want)
	}
}
