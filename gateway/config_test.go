package gateway

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Every example in configs/ must pass `tungate check`.
func TestExampleConfigsCheck(t *testing.T) {
	files, err := filepath.Glob("../configs/*.toml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no example configs: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			cfg, err := LoadConfig(f)
			if err != nil {
				t.Fatal(err)
			}
			if err := CheckRules(cfg); err != nil {
				t.Fatal(err)
			}
		})
	}
}

const minimal = `
[[interface]]
name = "lan"
tun = "t0"
addresses = ["10.10.0.1/24"]
[[interface]]
name = "wan"
tun = "t1"
addresses = ["198.18.0.1/24"]
`

func TestConfigErrors(t *testing.T) {
	for _, c := range []struct{ conf, want string }{
		{minimal + "[log]\nlevle = \"debug\"\n", "log.levle: unknown key"},
		{minimal + "[[route]]\nto = \"10.0.0.0/33\"\ninterface = \"lan\"\n", `route[0].to: invalid prefix "10.0.0.0/33"`},
		{minimal + "[[route]]\nto = \"10.0.0.1/8\"\ninterface = \"lan\"\n", `route[0].to: "10.0.0.1/8" has host bits set (did you mean "10.0.0.0/8"?)`},
		{minimal + "[[route]]\nto = \"0.0.0.0/0\"\ninterface = \"wna\"\n", `route[0].interface: unknown interface "wna"`},
		{minimal + "[[interface]]\nname = \"lan\"\ntun = \"t2\"\n", `interface[2].name: duplicate name "lan" (also interface[0])`},
		{minimal + "[[interface]]\nname = \"dmz\"\ntun = \"t0\"\n", `interface[2].tun: device "t0" already used by interface[0]`},
		{minimal + "[[interface]]\nname = \"dmz\"\ntun = \"t2\"\naddresses = [\"10.1.1.1\"]\n", `interface[2].addresses[0]: invalid address/prefix "10.1.1.1"`},
		{minimal + "[[interface]]\nname = \"dmz\"\ntun = \"t2\"\nmtu = 500\n", `interface[2].mtu: 500 out of range (1280-65535)`},
		{minimal + "[sets]\nbad = [\"300.1.1.0/24\"]\n", `sets.bad[0]: invalid CIDR "300.1.1.0/24"`},
		{minimal + "[log]\nlevel = \"loud\"\n", `log.level: unknown level "loud"`},
		{"[[interface]]\nname = \"x\"\n", `interface[0]: one of tun or tun_fd is required`},
		{"", "interface: at least one [[interface]] is required"},
		{minimal + "[conntrack.timeouts]\nudp = \"soon\"\n", `invalid duration "soon"`},
	} {
		_, err := ParseConfig([]byte(c.conf))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("config error %v, want it to contain %q", err, c.want)
		}
	}
}

func TestCheckCommandFindsRuleErrors(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "bad.toml")
	os.WriteFile(f, []byte(minimal+"[filter.forward]\nrules = [ { ct_state = [\"establised\"], action = \"accept\" } ]\n"), 0o600)
	cfg, err := LoadConfig(f)
	if err == nil {
		err = CheckRules(cfg)
	}
	if err == nil || !strings.Contains(err.Error(), `filter.forward.rules[0].ct_state: unknown state "establised"`) {
		t.Fatalf("got %v", err)
	}
}
