package netns

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	vnetns "github.com/vishvananda/netns"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"tungate/link"
	"tungate/link/tun"
)

// The namespace every command-mode test builds.
var (
	addr4, addr6 = mustPrefix("10.0.2.100/24"), mustPrefix("fd00::100/64")
	gw4, gw6     = mustAddr("10.0.2.2"), mustAddr("fd00::2")
)

func baseSpec(args ...string) Spec {
	return Spec{
		Args:      args,
		TUNName:   "tgtun0",
		Addresses: []netip.Prefix{addr4, addr6},
		Gateways:  []netip.Addr{gw4, gw6},
	}
}

// openTUN opens the session's TUN as the gateway will: through link/tun,
// with the descriptor handed over.
func openTUN(t *testing.T, s *Session) *tun.Link {
	t.Helper()
	// The device must carry the virtio header its offloads need.
	ifr, err := unix.NewIfreq("")
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.IoctlIfreq(int(s.TUNFile().Fd()), unix.TUNGETIFF, ifr); err != nil {
		t.Fatalf("TUNGETIFF: %v", err)
	}
	if flags := ifr.Uint16(); flags&unix.IFF_VNET_HDR == 0 || flags&unix.IFF_TUN == 0 {
		t.Errorf("TUN flags %#x lack IFF_TUN or IFF_VNET_HDR", flags)
	}
	if ifr.Name() != s.TUNName() {
		t.Errorf("the descriptor is bound to %q, the session says %q", ifr.Name(), s.TUNName())
	}
	fd := s.TakeTUN()
	if fd < 0 {
		t.Fatal("TakeTUN: no descriptor")
	}
	l, err := tun.Open(tun.Config{FD: &fd, MTU: DefaultMTU}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	if l.Name() != s.TUNName() {
		t.Errorf("the descriptor is bound to %q, the session says %q", l.Name(), s.TUNName())
	}
	return l
}

// datagram is a UDP datagram read from a TUN.
type datagram struct {
	src, dst netip.AddrPort
	payload  string
}

// readDatagrams reads l until it has seen a datagram to each of want,
// ignoring the kernel's own chatter, and returns them.
func readDatagrams(t *testing.T, l *tun.Link, want ...netip.AddrPort) map[netip.AddrPort]datagram {
	t.Helper()
	got := make(map[netip.AddrPort]datagram)
	c := make(chan datagram, 64)
	errc := make(chan error, 1)
	go func() {
		bufs := make([][]byte, l.BatchSize())
		for i := range bufs {
			bufs[i] = make([]byte, link.Headroom+65535)
		}
		sizes := make([]int, len(bufs))
		for {
			n, err := l.Read(bufs, sizes, link.Headroom)
			if err != nil {
				errc <- err
				return
			}
			for i := 0; i < n; i++ {
				if d, ok := parseUDP(bufs[i][link.Headroom : link.Headroom+sizes[i]]); ok {
					c <- d
				}
			}
		}
	}()
	deadline := time.After(waitFor)
	for len(got) < len(want) {
		select {
		case d := <-c:
			if slices.Contains(want, d.dst) {
				got[d.dst] = d
			}
		case err := <-errc:
			t.Fatalf("TUN read: %v (have %v of %v)", err, got, want)
		case <-deadline:
			t.Fatalf("datagrams to %v never came out of the TUN (have %v)", want, got)
		}
	}
	return got
}

func parseUDP(b []byte) (datagram, bool) {
	var d datagram
	var l4 []byte
	var src, dst netip.Addr
	switch header.IPVersion(b) {
	case 4:
		ip := header.IPv4(b)
		if !ip.IsValid(len(b)) || ip.TransportProtocol() != header.UDPProtocolNumber {
			return d, false
		}
		src, dst = netip.AddrFrom4(ip.SourceAddress().As4()), netip.AddrFrom4(ip.DestinationAddress().As4())
		l4 = ip.Payload()
	case 6:
		ip := header.IPv6(b)
		if !ip.IsValid(len(b)) || ip.TransportProtocol() != header.UDPProtocolNumber {
			return d, false
		}
		src, dst = netip.AddrFrom16(ip.SourceAddress().As16()), netip.AddrFrom16(ip.DestinationAddress().As16())
		l4 = ip.Payload()
	default:
		return d, false
	}
	if len(l4) < header.UDPMinimumSize {
		return d, false
	}
	u := header.UDP(l4)
	return datagram{netip.AddrPortFrom(src, u.SourcePort()), netip.AddrPortFrom(dst, u.DestinationPort()), string(u.Payload())}, true
}

// checkProbe asserts the namespace a probe saw is the one baseSpec asks.
func checkProbe(t *testing.T, r probeResult, mtu int) {
	t.Helper()
	if r.Err != "" {
		t.Fatalf("probe: %s", r.Err)
	}
	if !r.LoUp || !r.Up {
		t.Errorf("lo up %v, TUN up %v; want both up", r.LoUp, r.Up)
	}
	if r.MTU != mtu {
		t.Errorf("TUN MTU %d, want %d", r.MTU, mtu)
	}
	for _, a := range []string{addr4.String(), addr6.String()} {
		if !slices.Contains(r.Addrs, a) {
			t.Errorf("TUN addresses %v lack %s", r.Addrs, a)
		}
	}
	for _, rt := range []string{"default via " + gw4.String(), "default via " + gw6.String()} {
		if !slices.Contains(r.Routes, rt) {
			t.Errorf("TUN routes %v lack %q", r.Routes, rt)
		}
	}
}

// TestCommand runs a probe as the command of a namespace it creates as an
// ordinary user: the namespace has the TUN as asked, the probe's
// datagrams come out of the TUN in the parent, its exit code comes back,
// and nothing is left afterwards.
func TestCommand(t *testing.T) {
	if asUnprivileged(t) {
		return
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	sp := baseSpec(self)
	sp.MTU = 9000
	sp.Env = append(os.Environ(), testRoleEnv+"=probe", "TGNS_PROBE_TUN=tgtun0", "TGNS_PROBE_EXIT=7",
		"TGNS_PROBE_SEND=10.0.2.2:9,[fd00::2]:53")
	var out bytes.Buffer
	sp.Stdout = &out
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	s, err := Spawn(ctx, sp)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	l := openTUN(t, s)
	defer l.Close()
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	got := readDatagrams(t, l, netip.MustParseAddrPort("10.0.2.2:9"), netip.MustParseAddrPort("[fd00::2]:53"))
	for dst, d := range got {
		if d.payload != "probe" || (d.src.Addr() != addr4.Addr() && d.src.Addr() != addr6.Addr()) {
			t.Errorf("to %v: %+v, want payload \"probe\" from the namespace's address", dst, d)
		}
	}
	code, err := s.Wait()
	if err != nil || code != 7 {
		t.Fatalf("Wait = %d, %v; want 7, nil", code, err)
	}
	var r probeResult
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatalf("probe output %q: %v", out.String(), err)
	}
	checkProbe(t, r, 9000)
	if r.UID != 0 {
		t.Errorf("the command runs as uid %d inside, want 0 (the caller mapped to root)", r.UID)
	}
	mine, _ := os.Readlink("/proc/self/ns/net")
	if r.Netns == mine || r.Netns == "" {
		t.Errorf("the command's network namespace %q is not a new one (ours %q)", r.Netns, mine)
	}

	l.Close()
	s.Close()
	if !eventually(func() bool { return len(childrenOf(os.Getpid())) == 0 }) {
		t.Errorf("children left: %v", childrenOf(os.Getpid()))
	}
	for _, ns := range []string{r.Netns, r.Userns} {
		if h := holders(ns); len(h) > 0 {
			t.Errorf("%s is still held by %v", ns, h)
		}
	}
}

// TestCommandShell runs shell commands: ip sees the device, exit codes and
// deaths by signal come back, a background process does not outlive the
// command.
func TestCommandShell(t *testing.T) {
	if asUnprivileged(t) {
		return
	}
	for _, c := range []struct {
		script string
		code   int
		out    string
	}{
		{"ip -o addr show dev tgtun0; ip -o link show dev tgtun0; exit 7", 7, "mtu 65520"},
		{"kill -TERM $$", 128 + 15, ""},
		{"sleep 1000 & echo $!; exit 3", 3, ""},
		{"echo $TGNS_MARK; exec /nonexistent/tgns", 127, "from Spec.Env"},
	} {
		var out bytes.Buffer
		sp := baseSpec("sh", "-c", c.script)
		sp.Env = append(os.Environ(), "TGNS_MARK=from Spec.Env")
		sp.Stdout = &out
		s, err := Spawn(context.Background(), sp)
		if err != nil {
			t.Fatal(err)
		}
		code, err := s.Wait()
		s.Close()
		if err != nil || code != c.code {
			t.Errorf("%q: Wait = %d, %v; want %d", c.script, code, err, c.code)
		}
		if !strings.Contains(out.String(), c.out) {
			t.Errorf("%q: output %q lacks %q", c.script, out.String(), c.out)
		}
		if strings.HasPrefix(c.script, "ip") {
			for _, want := range []string{"inet 10.0.2.100/24", "inet6 fd00::100/64"} {
				if !strings.Contains(out.String(), want) {
					t.Errorf("ip shows %q, lacking %q", out.String(), want)
				}
			}
		}
		if strings.HasPrefix(c.script, "sleep") {
			pid := strings.TrimSpace(out.String())
			if _, err := os.Stat("/proc/" + pid); err == nil {
				t.Errorf("the command's background process %s outlived it", pid)
			}
		}
	}
	// A command that is not there is reported as a shell would.
	for _, name := range []string{"/nonexistent/tgns", "tgns-no-such-command"} {
		var stderr bytes.Buffer
		sp := baseSpec(name)
		sp.Stderr = &stderr
		s, err := Spawn(context.Background(), sp)
		if err != nil {
			t.Fatal(err)
		}
		code, err := s.Wait()
		s.Close()
		if code != 127 || err != nil || !strings.Contains(stderr.String(), name) {
			t.Errorf("%s: Wait = %d, %v, stderr %q; want 127 and a message naming it", name, code, err, stderr.String())
		}
	}
	if kids := childrenOf(os.Getpid()); len(kids) > 0 {
		t.Errorf("children left: %v", kids)
	}
}

// TestCommandClose ends a command that would run for ever.
func TestCommandClose(t *testing.T) {
	if asUnprivileged(t) {
		return
	}
	var out syncBuffer
	sp := baseSpec("sh", "-c", "echo $$; exec sleep 1000")
	sp.Stdout = &out
	s, err := Spawn(context.Background(), sp)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	if !eventually(func() bool { return strings.HasSuffix(out.String(), "\n") }) {
		t.Fatal("the command never started")
	}
	pid := strings.TrimSpace(out.String())
	done := make(chan struct{})
	go func() { s.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(waitFor):
		t.Fatal("Close did not return")
	}
	if _, err := os.Stat("/proc/" + pid); err == nil {
		t.Errorf("the command %s outlived Close", pid)
	}
	if code, _ := s.Wait(); code != 128+9 {
		t.Errorf("Wait after Close = %d, want %d (killed)", code, 128+9)
	}
}

// TestCommandDNS gives the command a resolv.conf of its own and leaves the
// host's, and the temporary directory, as they were.
func TestCommandDNS(t *testing.T) {
	if asUnprivileged(t) {
		return
	}
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	host, err := os.ReadFile("/etc/resolv.conf")
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	sp := baseSpec("cat", "/etc/resolv.conf")
	sp.DNS = []netip.Addr{mustAddr("10.0.2.3"), mustAddr("fd00::3")}
	sp.Stdout = &out
	s, err := Spawn(context.Background(), sp)
	if err != nil {
		t.Fatal(err)
	}
	code, err := s.Wait()
	s.Close()
	if err != nil || code != 0 {
		t.Fatalf("Wait = %d, %v", code, err)
	}
	for _, want := range []string{"nameserver 10.0.2.3\n", "nameserver fd00::3\n"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("resolv.conf inside is %q, lacking %q", out.String(), want)
		}
	}
	if now, _ := os.ReadFile("/etc/resolv.conf"); !bytes.Equal(now, host) {
		t.Errorf("the host's resolv.conf changed to %q", now)
	}
	if left, _ := os.ReadDir(tmp); len(left) > 0 {
		t.Errorf("left in TMPDIR: %v", left)
	}
}

// TestTUNPermission points the clone device at a file as root's 0600
// /dev/net/tun would be and expects the message that says how to fix it.
func TestTUNPermission(t *testing.T) {
	if os.Geteuid() == 0 {
		dir, err := os.MkdirTemp("", "tgnsdev")
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(dir)
		os.Chmod(dir, 0o755)
		dev := dir + "/tun"
		if err := os.WriteFile(dev, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		asUnprivileged(t, "TGNS_TUNDEV="+dev)
		return
	}
	tunDevice = os.Getenv("TGNS_TUNDEV")
	mode := "mode 0600"
	if tunDevice == "" {
		// Run by an ordinary user directly: a file of its own that it
		// may not open stands for root's.
		tunDevice = t.TempDir() + "/tun"
		if err := os.WriteFile(tunDevice, nil, 0); err != nil {
			t.Fatal(err)
		}
		mode = "mode 0000"
	}
	defer func() { tunDevice = "/dev/net/tun" }()
	_, err := Spawn(context.Background(), baseSpec("true"))
	if !errors.Is(err, ErrTUNAccess) {
		t.Fatalf("Spawn: %v, want ErrTUNAccess", err)
	}
	t.Logf("Spawn: %v", err)
	for _, want := range []string{tunDevice, mode, "chmod 0666 " + tunDevice, "0666"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q lacks %q", err, want)
		}
	}
	_, err = Attach(context.Background(), Spec{NetnsPath: "/proc/self/ns/net"})
	if !errors.Is(err, ErrTUNAccess) {
		t.Errorf("Attach: %v, want ErrTUNAccess", err)
	}
}

func TestUsernsRestrictions(t *testing.T) {
	for _, c := range []struct {
		name  string
		files map[string]string
		want  []string // in the error; none: no error
	}{
		{"open host", map[string]string{"user/max_user_namespaces": "15000\n", "kernel/unprivileged_userns_clone": "1\n", "kernel/apparmor_restrict_unprivileged_userns": "0\n"}, nil},
		{"no such settings", map[string]string{}, nil},
		{"max zero", map[string]string{"user/max_user_namespaces": "0\n"}, []string{"user.max_user_namespaces is 0", "sysctl -w user.max_user_namespaces=15000"}},
		{"debian", map[string]string{"kernel/unprivileged_userns_clone": "0\n"}, []string{"kernel.unprivileged_userns_clone is 0", "sysctl -w kernel.unprivileged_userns_clone=1"}},
		{"ubuntu apparmor", map[string]string{"kernel/apparmor_restrict_unprivileged_userns": "1\n"}, []string{"apparmor_restrict_unprivileged_userns is 1", "userns,", "sysctl -w kernel.apparmor_restrict_unprivileged_userns=0"}},
		{"two at once", map[string]string{"user/max_user_namespaces": "0", "kernel/apparmor_restrict_unprivileged_userns": "1"}, []string{"max_user_namespaces", "apparmor"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			root := t.TempDir()
			for f, v := range c.files {
				p := root + "/proc/sys/" + f
				os.MkdirAll(p[:strings.LastIndexByte(p, '/')], 0o755)
				if err := os.WriteFile(p, []byte(v), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			err := UsernsRestrictions(root)
			if len(c.want) == 0 {
				if err != nil {
					t.Fatalf("UsernsRestrictions = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, ErrUsernsRestricted) {
				t.Fatalf("UsernsRestrictions = %v, want ErrUsernsRestricted", err)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%q lacks %q", err, w)
				}
			}
			// A setup failure with EPERM gets the diagnosis added; other
			// failures are left alone.
			if d := withUsernsDiagnosis(fmt.Errorf("clone: %w", syscall.EPERM), root); !errors.Is(d, ErrUsernsRestricted) || !errors.Is(d, syscall.EPERM) {
				t.Errorf("withUsernsDiagnosis(EPERM) = %v, want the diagnosis wrapping EPERM", d)
			}
			if d := withUsernsDiagnosis(errors.New("exec format error"), root); errors.Is(d, ErrUsernsRestricted) {
				t.Errorf("withUsernsDiagnosis(other) = %v, want it unchanged", d)
			}
		})
	}
}

// probeIn runs the probe on a thread that has entered the network
// namespace at path (root only).
func probeIn(t *testing.T, path string) probeResult {
	t.Helper()
	c := make(chan probeResult, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := vnetns.Get()
		if err != nil {
			c <- probeResult{Err: err.Error()}
			return
		}
		defer orig.Close()
		ns, err := vnetns.GetFromPath(path)
		if err != nil {
			c <- probeResult{Err: err.Error()}
			return
		}
		defer ns.Close()
		if err := vnetns.Set(ns); err != nil {
			c <- probeResult{Err: err.Error()}
			return
		}
		r := probe()
		// Only a thread back in its own namespace may serve others.
		if vnetns.Set(orig) == nil {
			runtime.UnlockOSThread()
		}
		c <- r
	}()
	return <-c
}

// TestAttachRoot attaches as root to a namespace `ip netns add` made and
// sees Done when `ip netns del` removes it.
func TestAttachRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates a named network namespace")
	}
	name := uniqueName("tgns")
	path := "/run/netns/" + name
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if _, err := os.Stat(path); err == nil {
			exec.Command("ip", "netns", "del", name).Run()
		}
	})
	sp := Spec{NetnsPath: path, TUNName: "tgtun0", Addresses: []netip.Prefix{addr4, addr6}, Gateways: []netip.Addr{gw4, gw6}}
	s, err := Attach(context.Background(), sp)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	l := openTUN(t, s)
	defer l.Close()
	t.Setenv("TGNS_PROBE_TUN", "tgtun0")
	t.Setenv("TGNS_PROBE_SEND", "10.0.2.2:9,[fd00::2]:53")
	r := probeIn(t, path)
	checkProbe(t, r, DefaultMTU)
	readDatagrams(t, l, netip.MustParseAddrPort("10.0.2.2:9"), netip.MustParseAddrPort("[fd00::2]:53"))

	select {
	case <-s.Done():
		t.Fatal("Done before the namespace went")
	default:
	}
	if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns del: %v\n%s", err, out)
	}
	select {
	case <-s.Done():
	case <-time.After(waitFor):
		t.Fatal("Done not closed after the namespace was deleted")
	}
	if code, err := s.Wait(); code != 0 || err != nil {
		t.Errorf("Wait = %d, %v; want 0, nil", code, err)
	}
	l.Close()
	s.Close()
	if h := holders(r.Netns); len(h) > 0 {
		t.Errorf("%s is still held by %v", r.Netns, h)
	}
}

// TestAttachUnprivileged attaches, as an ordinary user, to the namespaces
// of a rootless "container" of that user, and sees Done when it exits.
func TestAttachUnprivileged(t *testing.T) {
	if asUnprivileged(t) {
		return
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctr := exec.Command(self)
	ctr.Env = append(os.Environ(), testRoleEnv+"=container", "TGNS_PROBE_TUN=tgtun0", "TGNS_PROBE_SEND=10.0.2.2:9,[fd00::2]:53")
	ctr.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWNET,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}},
	}
	in, err := ctr.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	outPipe, err := ctr.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := ctr.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctr.Process.Kill()
		ctr.Wait()
	}()
	out := bufio.NewScanner(outPipe)
	if !out.Scan() || out.Text() != "up" {
		t.Fatalf("the container did not start: %q %v", out.Text(), out.Err())
	}
	pid := strconv.Itoa(ctr.Process.Pid)
	netPath, userPath := "/proc/"+pid+"/ns/net", "/proc/"+pid+"/ns/user"

	// Without its user namespace, the container's network namespace is
	// out of an ordinary user's reach; the error says what is missing.
	sp := Spec{NetnsPath: netPath, TUNName: "tgtun0", Addresses: []netip.Prefix{addr4, addr6}, Gateways: []netip.Addr{gw4, gw6}}
	if s, err := Attach(context.Background(), sp); err == nil {
		s.Close()
		t.Error("Attach without UsernsPath succeeded as an ordinary user")
	} else if t.Logf("Attach without UsernsPath: %v", err); !strings.Contains(err.Error(), "UsernsPath") {
		t.Errorf("Attach without UsernsPath: %v, want a hint at UsernsPath", err)
	}

	sp.UsernsPath = userPath
	s, err := Attach(context.Background(), sp)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	l := openTUN(t, s)
	defer l.Close()
	if _, err := io.WriteString(in, "probe\n"); err != nil {
		t.Fatal(err)
	}
	if !out.Scan() {
		t.Fatalf("no probe from the container: %v", out.Err())
	}
	var r probeResult
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatalf("probe %q: %v", out.Text(), err)
	}
	checkProbe(t, r, DefaultMTU)
	readDatagrams(t, l, netip.MustParseAddrPort("10.0.2.2:9"), netip.MustParseAddrPort("[fd00::2]:53"))
	if kids := childrenOf(os.Getpid()); len(kids) != 1 {
		t.Errorf("children %v, want only the container (the helper is reaped)", kids)
	}

	in.Close() // the container exits
	select {
	case <-s.Done():
	case <-time.After(waitFor):
		t.Fatal("Done not closed after the container exited")
	}
	ctr.Wait()
	l.Close()
	s.Close()
	for _, ns := range []string{r.Netns, r.Userns} {
		if h := holders(ns); len(h) > 0 {
			t.Errorf("%s is still held by %v", ns, h)
		}
	}
}

func TestReadyAndExitFDs(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	wfd, err := syscall.Dup(int(w.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	w.Close()
	if err := SignalReady(wfd); err != nil {
		t.Fatal(err)
	}
	if b, err := io.ReadAll(r); err != nil || string(b) != "1" {
		t.Errorf("ready fd carried %q, %v; want \"1\" then its end", b, err)
	}

	for _, how := range []string{"close", "write"} {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		exit, err := WatchExitFD(int(r.Fd()))
		if err != nil {
			t.Fatal(err)
		}
		select {
		case <-exit:
			t.Fatalf("%s: exit before anything happened", how)
		default:
		}
		if how == "close" {
			w.Close()
		} else {
			w.Write([]byte("x"))
		}
		select {
		case <-exit:
		case <-time.After(waitFor):
			t.Fatalf("%s: the exit fd's %s went unnoticed", how, how)
		}
		w.Close()
		r.Close()
	}
	if _, err := WatchExitFD(1 << 20); err == nil {
		t.Error("WatchExitFD accepted a descriptor that is not open")
	}
	if err := SignalReady(-1); err == nil {
		t.Error("SignalReady accepted -1")
	}
}

// TestUsernsRestrictedSpawn has Spawn fail for real where user namespaces
// are forbidden, without touching the host's settings: a namespace of ours
// forbids them below itself, and the probe tries Spawn in there.
func TestUsernsRestrictedSpawn(t *testing.T) {
	if asUnprivileged(t) {
		return
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	sp := Spec{Args: []string{self}, Env: append(os.Environ(), testRoleEnv+"=restricted"), Stdout: &out}
	s, err := Spawn(context.Background(), sp)
	if err != nil {
		t.Fatal(err)
	}
	code, err := s.Wait()
	s.Close()
	t.Logf("inside: %s", out.String())
	if err != nil || code != 0 {
		t.Fatalf("Wait = %d, %v; the restricted Spawn did not fail with the diagnosis", code, err)
	}
	if !strings.Contains(out.String(), "user.max_user_namespaces is 0") {
		t.Errorf("the error %q does not name the setting", out.String())
	}
}

func TestSpecErrors(t *testing.T) {
	long := strings.Repeat("x", 16)
	for _, c := range []struct {
		name   string
		attach bool
		spec   Spec
		want   string
	}{
		{"no command", false, Spec{}, "no command"},
		{"attach field in Spawn", false, Spec{Args: []string{"true"}, NetnsPath: "/proc/1/ns/net"}, "for Attach"},
		{"long name", false, Spec{Args: []string{"true"}, TUNName: long}, "longer than 15"},
		{"small MTU", false, Spec{Args: []string{"true"}, MTU: 60}, "outside 68..65535"},
		{"v6 MTU", false, Spec{Args: []string{"true"}, MTU: 1000, Addresses: []netip.Prefix{addr6}}, "below IPv6's minimum"},
		{"two v4 gateways", false, Spec{Args: []string{"true"}, Gateways: []netip.Addr{gw4, mustAddr("10.0.2.1")}}, "one gateway per family"},
		{"empty gateway", false, Spec{Args: []string{"true"}, Gateways: []netip.Addr{{}}}, "gateway address is empty"},
		{"bad address", false, Spec{Args: []string{"true"}, Addresses: []netip.Prefix{{}}}, "not a prefix"},
		{"bad route", false, Spec{Args: []string{"true"}, Routes: []netip.Prefix{{}}}, "not a prefix"},
		{"empty DNS", false, Spec{Args: []string{"true"}, DNS: []netip.Addr{{}}}, "DNS address is empty"},
		{"no path", true, Spec{}, "needs NetnsPath"},
		{"command in Attach", true, Spec{NetnsPath: "/proc/self/ns/net", Args: []string{"true"}}, "for Spawn"},
		{"not a namespace", true, Spec{NetnsPath: "/proc/self/status"}, "not a namespace"},
		{"wrong type", true, Spec{NetnsPath: "/proc/self/ns/user"}, "another type"},
		{"userns of wrong type", true, Spec{NetnsPath: "/proc/self/ns/net", UsernsPath: "/proc/self/ns/net"}, "another type"},
		{"missing", true, Spec{NetnsPath: "/nonexistent/ns"}, "no such file"},
	} {
		var err error
		if c.attach {
			var s *Session
			if s, err = Attach(context.Background(), c.spec); err == nil {
				s.Close()
			}
		} else {
			var s *Session
			if s, err = Spawn(context.Background(), c.spec); err == nil {
				s.Close()
			}
		}
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error with %q", c.name, err, c.want)
		}
	}
	if kids := childrenOf(os.Getpid()); len(kids) > 0 {
		t.Errorf("children left: %v", kids)
	}
}

// TestSpawnCanceled: a context ended during the setup ends it, with no
// helper left.
func TestSpawnCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	s, err := Spawn(ctx, baseSpec("true"))
	if err == nil {
		s.Close()
		t.Fatal("Spawn with an ended context succeeded")
	}
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Spawn: %v, want context.Canceled", err)
	}
	if kids := childrenOf(os.Getpid()); len(kids) > 0 {
		t.Errorf("children left: %v", kids)
	}
}

// TestCommandSignal: a signal sent through the session reaches the
// command, which decides what it means.
func TestCommandSignal(t *testing.T) {
	if asUnprivileged(t) {
		return
	}
	var out syncBuffer
	sp := baseSpec("sh", "-c", `trap 'exit 42' TERM; echo ready; while :; do sleep 0.05; done`)
	sp.Stdout = &out
	s, err := Spawn(context.Background(), sp)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	if !eventually(func() bool { return strings.Contains(out.String(), "ready") }) {
		t.Fatal("the command never started")
	}
	if err := s.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.Done():
	case <-time.After(waitFor):
		t.Fatal("the command ignored the forwarded SIGTERM")
	}
	if code, err := s.Wait(); code != 42 || err != nil {
		t.Errorf("Wait = %d, %v; want 42 from the command's trap", code, err)
	}
}

// BenchmarkSpawn prices a command-mode session: namespaces, TUN,
// configuration, `true`, teardown.
func BenchmarkSpawn(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		s, err := Spawn(context.Background(), baseSpec("true"))
		if err != nil {
			b.Fatal(err)
		}
		if code, err := s.Wait(); code != 0 || err != nil {
			b.Fatalf("Wait = %d, %v", code, err)
		}
		s.Close()
	}
}

// syncBuffer is a bytes.Buffer the test may read while the command's
// output is copied into it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// TestNoMaybeChild: a program that forgot MaybeChild gets told so, not a
// hang. The helper here is a binary that exits at once.
func TestNoMaybeChild(t *testing.T) {
	s := &Session{done: make(chan struct{})}
	mine, theirs, err := controlPair()
	if err != nil {
		t.Fatal(err)
	}
	s.ctl = mine
	defer mine.Close()
	cmd := exec.Command("true")
	cmd.ExtraFiles = []*os.File{theirs}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	theirs.Close()
	err = s.handshake(context.Background(), config{}, func() {})
	cmd.Wait()
	if err == nil || !strings.Contains(err.Error(), "MaybeChild") {
		t.Errorf("handshake with a helper that never answers: %v, want a hint at MaybeChild", err)
	}
}
