//go:build linux

package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"text/template"
	"time"
)

// raceEnabled is set by race_test.go in a race-instrumented run.
var raceEnabled bool

const (
	// cmdTimeout bounds every helper command (ip, ping, ...).
	cmdTimeout = 30 * time.Second
	// startTimeout bounds gateway start-up. The contract is TUNs within a
	// second; the slack is for a race-instrumented build on a loaded
	// 2-core machine while other packages' tests run beside this one.
	startTimeout = 20 * time.Second
	// stopTimeout is how long SIGTERM may take before the test calls the
	// shutdown broken and kills the gateway.
	stopTimeout = 10 * time.Second
)

func TestMain(m *testing.M) {
	code := m.Run()
	if build.dir != "" {
		os.RemoveAll(build.dir)
	}
	os.Exit(code)
}

// needNetAdmin skips the test where namespaces and TUN devices cannot be
// made: the only reason an e2e test may skip.
func needNetAdmin(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces and TUN devices (CI runs as root)")
	}
	if out, err := exec.Command("ip", "netns", "list").CombinedOutput(); err != nil {
		t.Skipf("`ip netns list` does not work here: %v %s", err, bytes.TrimSpace(out))
	}
}

// needTools fails the test when a program it drives is missing: as root,
// `make test` installs them, so a missing one is a broken setup, not a
// reason to skip.
func needTools(t *testing.T, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			t.Fatalf("%s is not installed (scripts/test-deps.sh installs the test tools): %v", n, err)
		}
	}
}

// python is the interpreter for scripts/peer-httpd.py: Debian's own when
// present (it has nothing but the standard library to find).
func python() string {
	if _, err := os.Stat("/usr/bin/python3"); err == nil {
		return "/usr/bin/python3"
	}
	return "python3"
}

// build is the gateway binary, built once per test process.
var build struct {
	once sync.Once
	dir  string
	path string
	err  error
}

// gatewayBinary builds ./cmd/tungate (race-instrumented when the tests
// are) into a directory every user can read, because some tests run it as
// nobody. A build failure fails the test with the compiler's output.
func gatewayBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("TUNGATE_BIN"); p != "" {
		abs, err := filepath.Abs(p)
		if err != nil {
			t.Fatalf("TUNGATE_BIN=%q: %v", p, err)
		}
		return abs
	}
	build.once.Do(func() {
		build.dir, build.err = os.MkdirTemp("", "tungate-e2e-bin-")
		if build.err != nil {
			return
		}
		if build.err = os.Chmod(build.dir, 0o755); build.err != nil {
			return
		}
		path := filepath.Join(build.dir, "tungate")
		args := []string{"build", "-o", path}
		if raceEnabled {
			args = append(args, "-race")
		}
		cmd := exec.Command("go", append(args, "./cmd/tungate")...)
		cmd.Dir = ".." // the module root
		if out, err := cmd.CombinedOutput(); err != nil {
			build.err = fmt.Errorf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, out)
			return
		}
		build.path = path
	})
	if build.err != nil {
		t.Fatalf("cannot build the gateway: %v", build.err)
	}
	return build.path
}

// names derives the namespace and device names of one test: "tg", four hex
// digits of the pid, a two-letter test tag, a one-letter role. Nine
// characters, well inside IFNAMSIZ.
type names string

func newNames(tag string) names {
	return names(fmt.Sprintf("tg%04x%s", os.Getpid()&0xffff, tag))
}

func (n names) get(role string) string { return string(n) + role }

// run runs a command with a deadline and returns its combined output.
func run(timeout time.Duration, argv ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		err = fmt.Errorf("timed out after %v: %w", timeout, err)
	}
	return string(out), err
}

// mustRun runs a command and fails the test if it fails.
func mustRun(t *testing.T, argv ...string) string {
	t.Helper()
	out, err := run(cmdTimeout, argv...)
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(argv, " "), err, out)
	}
	return out
}

// inNS prefixes argv so that it runs in network namespace ns.
func inNS(ns string, argv ...string) []string {
	return append([]string{"ip", "netns", "exec", ns}, argv...)
}

// waitFor polls cond until it holds, failing the test at the deadline with
// what was awaited and cond's last word on why not.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, why := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s: %s", timeout, what, why)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// addNetns creates network namespace name with loopback up, and removes it
// (killing whatever still runs inside) when the test ends.
func addNetns(t *testing.T, name string) {
	t.Helper()
	delNetns(name) // a leftover of a crashed run with the same pid
	mustRun(t, "ip", "netns", "add", name)
	t.Cleanup(func() { delNetns(name) })
	mustRun(t, "ip", "-n", name, "link", "set", "lo", "up")
}

func delNetns(name string) {
	if out, err := exec.Command("ip", "netns", "pids", name).Output(); err == nil {
		for _, f := range strings.Fields(string(out)) {
			if pid, err := strconv.Atoi(f); err == nil {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	exec.Command("ip", "netns", "del", name).Run()
}

// delLinkAtEnd removes host device name when the test ends, whoever made it.
func delLinkAtEnd(t *testing.T, name string) {
	t.Helper()
	exec.Command("ip", "link", "del", name).Run()
	t.Cleanup(func() { exec.Command("ip", "link", "del", name).Run() })
}

// workDir makes a directory for one gateway's config, log and admin
// socket. It is not under t.TempDir because that is private to root and
// some gateways run as nobody; owner >= 0 chowns it to that uid.
func workDir(t *testing.T, owner int) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "tungate-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if owner >= 0 {
		if err := os.Chown(dir, owner, owner); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// writeRandomFile writes size random bytes to path and returns their hash.
func writeRandomFile(t *testing.T, path string, size int) [sha256.Size]byte {
	t.Helper()
	b := make([]byte, size)
	rand.Read(b)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// sameFile reports whether path holds bytes with hash want.
func sameFile(path string, want [sha256.Size]byte) (bool, string) {
	b, err := os.ReadFile(path)
	if err != nil {
		return false, err.Error()
	}
	got := sha256.Sum256(b)
	if got != want {
		return false, fmt.Sprintf("%d bytes, sha256 %x, want sha256 %x", len(b), got[:8], want[:8])
	}
	return true, ""
}

// gwConfig is what varies between the tests' gateway configurations; the
// addresses and routes are the ones of ../shared/conformance/README.md.
type gwConfig struct {
	Sock     string
	Lan, Wan string // the TOML line naming the device: `tun = "x"` or `tun_fd = 3`
	// Masquerade adds masquerade on wan, one entry per MasqSrc prefix, or
	// one entry without src when MasqSrc is empty.
	Masquerade bool
	MasqSrc    []string
	FTP        bool // [helpers.ftp] ports = [21]
	// Stateful is the conformance forward policy: drop, except
	// established/related and new from lan. Otherwise the policy accepts.
	Stateful bool
	// SynProxy (with Stateful) proxies the handshake of new TCP
	// connections from lan (a synproxy rule).
	SynProxy bool
	Level    string
	// StateFile sets [conntrack] state_file.
	StateFile string
	// Raw, when set, is the whole config instead of the template, with
	// one %s for the admin socket path.
	Raw string
}

var configTemplate = template.Must(template.New("gw").Parse(`[log]
level = "{{.Level}}"

[admin]
socket = "{{.Sock}}"
metrics = ""
{{if .StateFile}}
[conntrack]
state_file = "{{.StateFile}}"
{{end}}
[[interface]]
name = "lan"
{{.Lan}}
addresses = ["10.10.0.1/24", "fd10::1/64"]

[[interface]]
name = "wan"
{{.Wan}}
addresses = ["198.18.0.1/24", "2001:db8:1::1/64"]

[[route]]
to = "10.10.0.0/24"
interface = "lan"

[[route]]
to = "fd10::/64"
interface = "lan"

[[route]]
to = "0.0.0.0/0"
interface = "wan"

[[route]]
to = "::/0"
interface = "wan"
{{if .Masquerade}}{{range .MasqSrc}}
[[nat.masquerade]]
out = "wan"
src = ["{{.}}"]
{{else}}
[[nat.masquerade]]
out = "wan"
{{end}}{{end}}{{if .FTP}}
[helpers.ftp]
ports = [21]
{{end}}
[filter.forward]
{{if .Stateful}}policy = "drop"
rules = [
  { ct_state = ["established", "related"], action = "accept" },
  { ct_state = ["invalid"], action = "drop" },
{{if .SynProxy}}  { in = "lan", proto = "tcp", ct_state = ["new"], action = "synproxy" },
{{end}}  { in = "lan", ct_state = ["new"], action = "accept" },
]
{{else}}policy = "accept"
{{end}}`))

func (c gwConfig) render(t *testing.T) string {
	t.Helper()
	if c.Raw != "" {
		return fmt.Sprintf(c.Raw, c.Sock)
	}
	if c.Level == "" {
		c.Level = os.Getenv("TUNGATE_E2E_LOG")
	}
	if c.Level == "" {
		c.Level = "info"
	}
	var b strings.Builder
	if err := configTemplate.Execute(&b, c); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// tunByName is the config line that has the gateway open (or create) a
// kernel TUN device by name.
func tunByName(name string) string { return fmt.Sprintf("tun = %q", name) }

// topology is the client and server namespaces and the two gateway
// devices that end up in them.
type topology struct {
	client, server string // namespaces
	lan, wan       string // TUN devices
}

// newTopology creates the namespaces; the devices come from the gateway.
func newTopology(t *testing.T, n names) topology {
	t.Helper()
	tp := topology{client: n.get("c"), server: n.get("s"), lan: n.get("l"), wan: n.get("w")}
	addNetns(t, tp.client)
	addNetns(t, tp.server)
	delLinkAtEnd(t, tp.lan)
	delLinkAtEnd(t, tp.wan)
	return tp
}

// gatewaySpec says how to start one gateway.
type gatewaySpec struct {
	cfg  gwConfig // rendered with Sock set to the gateway's admin socket
	tuns []string // devices the gateway holds open once it is up
	// argv wraps the command line (to run it as another user or in other
	// namespaces); nil runs it as is. The wrapper must exec, so that the
	// process the test started is the gateway itself.
	argv       func(gw []string) []string
	extraFiles []*os.File
	// ownNetns: the gateway runs in a network namespace of its own, so its
	// devices are found and moved through nsenter into that namespace.
	ownNetns bool
}

// gateway is one running tungate process.
type gateway struct {
	t       *testing.T
	bin     string
	dir     string
	sock    string
	logPath string
	cmd     *exec.Cmd
	exited  chan struct{} // closed when the process has been reaped
	waitErr error         // valid once exited is closed
	netns   []string      // prefix running a command in the gateway's netns; nil: the host's
	stopped bool
}

// startGateway writes spec.cfg to dir/gw.toml, starts `tungate run` on
// it, and returns once the gateway holds every device in spec.tuns and its
// admin socket exists. The gateway is stopped (SIGTERM, which must end it
// cleanly) when the test ends, and its log is shown if the test failed.
func startGateway(t *testing.T, bin, dir string, spec gatewaySpec) *gateway {
	t.Helper()
	g := &gateway{
		t: t, bin: bin, dir: dir,
		sock:    filepath.Join(dir, "admin.sock"),
		logPath: filepath.Join(dir, "gw.log"),
		exited:  make(chan struct{}),
	}
	cfgPath := filepath.Join(dir, "gw.toml")
	spec.cfg.Sock = g.sock
	if err := os.WriteFile(cfgPath, []byte(spec.cfg.render(t)), 0o644); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(g.logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	argv := []string{bin, "run", "-c", cfgPath}
	if spec.argv != nil {
		argv = spec.argv(argv)
	}
	g.cmd = exec.Command(argv[0], argv[1:]...)
	g.cmd.Stdout, g.cmd.Stderr = logf, logf
	g.cmd.ExtraFiles = spec.extraFiles
	g.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := g.cmd.Start(); err != nil {
		t.Fatalf("start %v: %v", argv, err)
	}
	go func() {
		g.waitErr = g.cmd.Wait()
		close(g.exited)
	}()
	t.Cleanup(func() {
		g.stop()
		if t.Failed() {
			t.Logf("gateway log (%s):\n%s", strings.Join(argv, " "), g.logText())
		}
	})
	if spec.ownNetns {
		g.netns = []string{"nsenter", "-t", strconv.Itoa(g.cmd.Process.Pid), "-n"}
	}
	deadline := time.Now().Add(startTimeout)
	for {
		why := g.notReady(spec.tuns)
		if why == "" {
			return g
		}
		select {
		case <-g.exited:
			g.stopped = true // said here; stop need not say it again
			t.Fatalf("gateway exited before it was up (%v); it had not %s", g.waitErr, why)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("gateway not up after %v: it has not %s", startTimeout, why)
		}
	}
}

// notReady says what the gateway has not done yet, or "" when it is up:
// opened each TUN device (the kernel names the device of each open TUN
// file in /proc/PID/fdinfo) and created its admin socket.
func (g *gateway) notReady(tuns []string) string {
	held := tunsHeld(g.cmd.Process.Pid)
	for _, name := range tuns {
		if !held[name] {
			return "opened TUN device " + name
		}
	}
	if _, err := os.Stat(g.sock); err != nil {
		return "created its admin socket " + g.sock
	}
	return ""
}

// tunsHeld returns the TUN devices process pid has open.
func tunsHeld(pid int) map[string]bool {
	held := map[string]bool{}
	fdDir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(fdDir)
	if err != nil {
		return held
	}
	for _, e := range ents {
		if target, err := os.Readlink(filepath.Join(fdDir, e.Name())); err != nil || target != "/dev/net/tun" {
			continue
		}
		info, err := os.ReadFile(fmt.Sprintf("/proc/%d/fdinfo/%s", pid, e.Name()))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(info), "\n") {
			if name, ok := strings.CutPrefix(line, "iff:"); ok {
				held[strings.TrimSpace(name)] = true
			}
		}
	}
	return held
}

// stop sends SIGTERM and expects a clean exit; it is idempotent. A race
// report in the log of a race-instrumented gateway fails the test.
func (g *gateway) stop() {
	if g.stopped {
		return
	}
	g.stopped = true
	pid := g.cmd.Process.Pid
	select {
	case <-g.exited:
		g.t.Errorf("gateway exited on its own before the test ended: %v", g.waitErr)
	default:
		syscall.Kill(pid, syscall.SIGTERM)
		select {
		case <-g.exited:
			if g.waitErr != nil {
				g.t.Errorf("gateway did not exit cleanly on SIGTERM: %v", g.waitErr)
			}
		case <-time.After(stopTimeout):
			syscall.Kill(-pid, syscall.SIGKILL)
			<-g.exited
			g.t.Errorf("gateway still running %v after SIGTERM; killed", stopTimeout)
		}
	}
	syscall.Kill(-pid, syscall.SIGKILL) // anything it left in its group
	if strings.Contains(g.logText(), "WARNING: DATA RACE") {
		g.t.Errorf("the race detector reported a data race in the gateway (log below)")
	}
}

// logText returns the gateway's log, shortened to its head and tail when long.
func (g *gateway) logText() string {
	b, err := os.ReadFile(g.logPath)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	const head, tail = 60, 200
	if len(lines) > head+tail {
		skipped := len(lines) - head - tail
		lines = append(append(lines[:head:head], fmt.Sprintf("... %d lines ...", skipped)), lines[len(lines)-tail:]...)
	}
	return strings.Join(lines, "\n")
}

// ctl runs a tungate admin command against this gateway's socket.
func (g *gateway) ctl(args ...string) (string, error) {
	return run(cmdTimeout, append(append([]string{g.bin}, args...), "--socket", g.sock)...)
}

// wire moves the gateway's devices into the client and server namespaces
// and addresses them as the conformance sample does: client 10.10.0.2 and
// fd10::2 with default routes via the gateway, server 198.18.0.2 and
// 2001:db8:1::2. routeBack gives the server routes to the LAN through the
// gateway (for tests without NAT).
func (g *gateway) wire(t *testing.T, tp topology, routeBack bool) {
	t.Helper()
	mustRun(t, append(g.netns, "ip", "link", "set", tp.lan, "netns", tp.client)...)
	mustRun(t, append(g.netns, "ip", "link", "set", tp.wan, "netns", tp.server)...)
	c, s := tp.client, tp.server
	steps := [][]string{
		{"-n", c, "addr", "add", "10.10.0.2/24", "dev", tp.lan},
		{"-n", c, "-6", "addr", "add", "fd10::2/64", "dev", tp.lan, "nodad"},
		{"-n", c, "link", "set", tp.lan, "up"},
		{"-n", c, "route", "add", "default", "via", "10.10.0.1", "dev", tp.lan},
		{"-n", c, "-6", "route", "add", "default", "via", "fd10::1", "dev", tp.lan},
		{"-n", s, "addr", "add", "198.18.0.2/24", "dev", tp.wan},
		{"-n", s, "-6", "addr", "add", "2001:db8:1::2/64", "dev", tp.wan, "nodad"},
		{"-n", s, "link", "set", tp.wan, "up"},
	}
	if routeBack {
		steps = append(steps,
			[]string{"-n", s, "route", "add", "10.10.0.0/24", "via", "198.18.0.1", "dev", tp.wan},
			[]string{"-n", s, "-6", "route", "add", "fd10::/64", "via", "2001:db8:1::1", "dev", tp.wan})
	}
	for _, st := range steps {
		mustRun(t, append([]string{"ip"}, st...)...)
	}
}

// startHTTPServer serves root on port 8080 (IPv4 and IPv6) in namespace ns
// with scripts/peer-httpd.py, whose /peer answers the client address it
// saw, and returns once it listens.
func startHTTPServer(t *testing.T, ns, root string) {
	t.Helper()
	script, err := filepath.Abs("../scripts/peer-httpd.py")
	if err != nil {
		t.Fatal(err)
	}
	ready := filepath.Join(t.TempDir(), "ready")
	var log bytes.Buffer
	argv := inNS(ns, python(), script, "8080", root, ready)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("http server log:\n%s", log.String())
		}
	})
	waitFor(t, 10*time.Second, "the HTTP server in "+ns, func() (bool, string) {
		select {
		case err := <-done:
			done <- err
			t.Fatalf("HTTP server exited: %v", err)
		default:
		}
		_, err := os.Stat(ready)
		return err == nil, "no ready file yet"
	})
}

// curl runs curl in namespace ns with bounded connect and total times.
func curl(ns string, maxTime time.Duration, args ...string) (string, error) {
	argv := inNS(ns, "curl", "-sS", "-g", "--connect-timeout", "10",
		"--max-time", strconv.Itoa(int(maxTime/time.Second)))
	return run(maxTime+10*time.Second, append(argv, args...)...)
}

var pingSummary = regexp.MustCompile(`(\d+) packets transmitted, (\d+) received`)

// ping sends three echo requests from namespace ns to addr and returns how
// many were answered; each has two seconds.
func ping(ns, addr string) (int, string) {
	out, _ := run(cmdTimeout, inNS(ns, "ping", "-n", "-c", "3", "-i", "0.2", "-W", "2", addr)...)
	m := pingSummary.FindStringSubmatch(out)
	if m == nil {
		return -1, out
	}
	n, _ := strconv.Atoi(m[2])
	return n, out
}

// expectPing fails the test unless all three echo requests are answered:
// the first packet of a flow must not be lost either.
func expectPing(t *testing.T, ns, addr string) {
	t.Helper()
	if n, out := ping(ns, addr); n != 3 {
		t.Errorf("ping %s from %s: %d of 3 answered\n%s", addr, ns, n, out)
	}
}
