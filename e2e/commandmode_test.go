//go:build linux

package e2e

import (
	"errors"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// commandModeConfig makes the [namespace] interface the command's only
// network: the gateway answers its pings on 10.0.2.2 and fd00::2.
const commandModeConfig = `
[admin]
socket = "%SOCK%"

[[interface]]
name = "ctr"
addresses = ["10.0.2.2/24", "fd00::2/64"]

[namespace]
interface = "ctr"
addresses = ["10.0.2.100/24", "fd00::100/64"]
dns = ["10.0.2.3"]
`

// TestCommandMode runs `tungate run -c FILE -- CMD` as nobody, the way a
// rootless user starts a command behind tungate: the command finds its TUN
// with the configured addresses, routes and MTU, reaches the gateway over
// IPv4 and IPv6, sees the resolver it was given, and its exit status
// becomes tungate's. Afterwards nothing of the session is left: no process
// of the run and no namespace held open.
func TestCommandMode(t *testing.T) {
	needNetAdmin(t)
	needTools(t, "ping", "setpriv", "unshare", "ip")
	bin := gatewayBinary(t)
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Fatal(err)
	}
	uid, err := strconv.Atoi(nobody.Uid)
	if err != nil {
		t.Fatal(err)
	}
	dir := workDir(t, uid)
	devDir := mkdirAll(t, filepath.Join(dir, "dev"))
	cfg := filepath.Join(dir, "cm.toml")
	conf := strings.ReplaceAll(commandModeConfig, "%SOCK%", filepath.Join(dir, "admin.sock"))
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	script := `ip -o link show tun0; ip -o addr show dev tun0; ip route; ip -6 route; cat /etc/resolv.conf
ping -c1 -W3 10.0.2.2 >/dev/null && echo PING4-OK
ping -c1 -W3 fd00::2 >/dev/null && echo PING6-OK
exit 7`
	argv := withOpenDevTun(devDir, asNobody([]string{bin, "run", "-c", cfg, "--", "sh", "-c", script}))
	out, err := run(60*time.Second, argv...)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 7 {
		t.Fatalf("want exit status 7 (the command's), got %v\n%s", err, out)
	}
	for _, want := range []string{
		"mtu 65520", "10.0.2.100/24", "fd00::100/64",
		"default via 10.0.2.2 dev tun0", "default via fd00::2 dev tun0",
		"nameserver 10.0.2.3", "PING4-OK", "PING6-OK",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("command output lacks %q:\n%s", want, out)
		}
	}
	// Every process of the run had cfg on its command line (the helper
	// is this binary re-executed with it); none may survive.
	waitFor(t, 10*time.Second, "no process of the run left", func() (bool, string) {
		left, _ := run(cmdTimeout, "pgrep", "-f", cfg)
		return strings.TrimSpace(left) == "", left
	})
	if _, err := os.Stat(filepath.Join(dir, "admin.sock")); err == nil {
		t.Errorf("admin socket left behind")
	}
}

// TestCommandModeNeedsNamespaceSection: without [namespace] command mode
// says what is missing instead of guessing an interface.
func TestCommandModeNeedsNamespaceSection(t *testing.T) {
	bin := gatewayBinary(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "plain.toml")
	if err := os.WriteFile(cfg, []byte("[[interface]]\nname = \"lan\"\ntun = \"tgnone0\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := run(30*time.Second, bin, "run", "-c", cfg, "--", "true")
	if err == nil || !strings.Contains(out, "need a [namespace] section") {
		t.Fatalf("want a [namespace] error, got %v:\n%s", err, out)
	}
}
