package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCLI(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.toml")
	bad := filepath.Join(dir, "bad.toml")
	os.WriteFile(good, []byte("[[interface]]\nname = \"lan\"\ntun = \"t0\"\n"), 0o600)
	os.WriteFile(bad, []byte("[[interface]]\nname = \"lan\"\ntun = \"t0\"\n[filter.forward]\nrules = [ { ct_state = [\"establised\"] } ]\n"), 0o600)
	for _, c := range []struct {
		args     []string
		code     int
		out, err string
	}{
		{[]string{"check", "-c", good}, 0, "interfaces:\n  [0] lan: tun t0 mtu 1500, no addresses\n", ""},
		{[]string{"check", "-q", "-c", good}, 0, good + ": ok\n", ""},
		{[]string{"check", "-c", bad}, 1, "", `filter.forward.rules[0].ct_state: unknown state "establised" (did you mean "established"?)`},
		{[]string{"check"}, 2, "", "-c FILE is required"},
		{[]string{"version"}, 0, "tungate ", ""},
		{[]string{"frobnicate"}, 2, "", `unknown command "frobnicate"`},
		{[]string{"ct", "list", "--socket", filepath.Join(dir, "none.sock")}, 1, "", "admin socket"},
		{[]string{"ct", "list", "-c", good}, 1, "", "admin.socket is not set"},
		{[]string{"ct", "bogus"}, 2, "", `unknown subcommand "bogus"`},
	} {
		var out, errb bytes.Buffer
		code := run(c.args, &out, &errb)
		if code != c.code || !strings.Contains(out.String(), c.out) || !strings.Contains(errb.String(), c.err) {
			t.Errorf("%v: exit %d out %q err %q; want %d, %q, %q", c.args, code, out.String(), errb.String(), c.code, c.out, c.err)
		}
	}
	var out, errb bytes.Buffer
	if code := run([]string{"check", "-q", "-c", good}, &out, &errb); code != 0 || out.String() != good+": ok\n" {
		t.Errorf("check -q: exit %d, out %q", code, out.String())
	}
}
