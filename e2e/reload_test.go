package e2e

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestReloadSIGHUP drives the real binary: `reload --dry-run` shows the
// change and applies nothing; SIGHUP applies it (the rule change stops
// new flows from lan, counted as filter drops) and status records it; a
// file with a change that cannot be made live is refused whole on SIGHUP,
// and the running rules stay.
func TestReloadSIGHUP(t *testing.T) {
	needNetAdmin(t)
	needTools(t, "ping")
	bin := gatewayBinary(t)
	tp := newTopology(t, newNames("rl"))
	dir := workDir(t, -1)
	cfg := gwConfig{Lan: tunByName(tp.lan), Wan: tunByName(tp.wan), Stateful: true}
	g := startGateway(t, bin, dir, gatewaySpec{cfg: cfg, tuns: []string{tp.lan, tp.wan}})
	g.wire(t, tp, true)
	expectPing(t, tp.client, "198.18.0.2")

	path := filepath.Join(dir, "gw.toml")
	cfg.Sock = g.sock
	orig := cfg.render(t)
	edited := strings.Replace(orig, `{ in = "lan", ct_state = ["new"], action = "accept" }`, `{ in = "wan", ct_state = ["new"], action = "accept" }`, 1)
	if edited == orig {
		t.Fatal("the template's rule moved; fix the test")
	}
	write := func(s string) {
		if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(edited)
	out, err := g.ctl("reload", "--dry-run")
	if err != nil || !strings.Contains(out, "~ filter.forward.rules[2].in: lan -> wan  [live]") || !strings.Contains(out, "dry run: 1 changes") {
		t.Fatalf("reload --dry-run: %v\n%s", err, out)
	}
	if st, _ := g.ctl("status"); !strings.Contains(st, "last reload: never") {
		t.Fatalf("a dry run was recorded:\n%s", st)
	}
	expectPing(t, tp.client, "198.18.0.2")

	syscall.Kill(g.cmd.Process.Pid, syscall.SIGHUP)
	waitFor(t, 10*time.Second, "the reload in status", func() (bool, string) {
		st, _ := g.ctl("status")
		return strings.Contains(st, " ok, 1 changes"), st
	})
	before := filterDrops(t, g)
	if n, out := ping(tp.client, "198.18.0.2"); n != 0 {
		t.Fatalf("ping after the reload that stops lan's new flows: %d answered\n%s", n, out)
	}
	if after := filterDrops(t, g); after <= before {
		t.Fatalf("filter drops %d -> %d: the pings were not dropped by the new rule", before, after)
	}

	// A refused change: nothing of the file applies, not even its live
	// rule change back.
	write(strings.Replace(orig, `metrics = ""`, `metrics = "127.0.0.1:1"`, 1))
	syscall.Kill(g.cmd.Process.Pid, syscall.SIGHUP)
	waitFor(t, 10*time.Second, "the refusal in status", func() (bool, string) {
		st, _ := g.ctl("status")
		return strings.Contains(st, "failed: reload refused") && strings.Contains(st, "admin.metrics"), st
	})
	if rules, _ := g.ctl("rules"); !strings.Contains(rules, `iifname "wan"`) {
		t.Fatalf("the running rules changed after a refused reload:\n%s", rules)
	}
	if out, err := g.ctl("reload"); err == nil || !strings.Contains(out, "admin.metrics: the metrics listener is opened at start") {
		t.Fatalf("tungate reload of a refused change: %v\n%s", err, out)
	}
}

// filterDrops reads the gateway's filter drop counter.
func filterDrops(t *testing.T, g *gateway) uint64 {
	t.Helper()
	out, err := g.ctl("stats")
	if err != nil {
		t.Fatalf("stats: %v\n%s", err, out)
	}
	for _, line := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(line, "drop_filter "); ok {
			n, _ := strconv.ParseUint(v, 10, 64)
			return n
		}
	}
	t.Fatalf("no drop_filter in stats:\n%s", out)
	return 0
}
