package netns

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	wgtun "golang.zx2c4.com/wireguard/tun"
)

// controlFD is where the helper finds its end of the control socket
// (os/exec's first ExtraFiles slot; the attach fork puts it there too).
const controlFD = 3

// MaybeChild runs the namespace helper and exits when this process is one
// (Spawn and Attach re-execute the program's own binary in that role);
// otherwise it returns at once. Call it first thing in main, before flags
// are parsed: the helper has no command line of its own. Tests of a
// package that calls Spawn or Attach call it first thing in TestMain.
func MaybeChild() {
	role, ok := os.LookupEnv(roleEnv)
	if !ok {
		return
	}
	os.Unsetenv(roleEnv)
	// The helper forks the command from this thread (the parent-death
	// signal is tied to the forking thread) and creates the TUN in this
	// thread's namespaces; keep it for good.
	runtime.LockOSThread()
	os.Exit(child(role))
}

// child is the helper: it reads its orders, builds the TUN, sends it and,
// in command mode, runs the command. Its exit status is the command's.
func child(role string) int {
	f := os.NewFile(controlFD, "netns-control")
	fc, err := net.FileConn(f) // a close-on-exec duplicate
	f.Close()
	if err != nil {
		fmt.Fprintf(os.Stderr, "tungate netns helper (%s): control socket: %v\n", role, err)
		return 125
	}
	ctl := fc.(*net.UnixConn)
	if writeMsg(ctl, message{Hello: true}, nil) != nil {
		return 125 // the parent is gone
	}
	m, fd, err := readMsg(ctl)
	if fd >= 0 {
		unix.Close(fd)
	}
	if err != nil || m.Config == nil || m.Config.Role != role {
		return 125 // the parent is gone or is not ours
	}
	c := m.Config
	fail := func(err error) int {
		writeMsg(ctl, message{Error: newRemoteError(err)}, nil)
		return 125
	}
	if len(c.DNS) > 0 {
		if err := privateResolvConf(c); err != nil {
			return fail(err)
		}
	}
	dev, err := configure(c)
	if err != nil {
		return fail(err)
	}
	err = sendTUN(ctl, dev, c.TUNName)
	// The parent's copy keeps the device; this one would keep it open
	// after the parent closed its own.
	dev.Close()
	if err != nil || role != roleCommand {
		if err != nil {
			return 125
		}
		return 0
	}
	return runCommand(ctl, c)
}

func sendTUN(ctl *net.UnixConn, dev wgtun.Device, name string) error {
	rc, err := dev.File().SyscallConn()
	if err != nil {
		return err
	}
	var werr error
	err = rc.Control(func(fd uintptr) {
		ifd := int(fd)
		werr = writeMsg(ctl, message{Ready: true, Name: name}, &ifd)
	})
	if err != nil {
		return err
	}
	return werr
}

// configure brings lo up and creates and configures the TUN in the
// helper's network namespace.
func configure(c *config) (wgtun.Device, error) {
	h, err := netlink.NewHandle()
	if err != nil {
		return nil, fmt.Errorf("netlink: %w", err)
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err != nil {
		return nil, fmt.Errorf("lo: %w", err)
	}
	if err := h.LinkSetUp(lo); err != nil {
		return nil, fmt.Errorf("set lo up: %w", err)
	}
	// wireguard-go creates it with the virtio header and negotiates the
	// offloads the kernel has; the MTU it sets by ioctl is set again by
	// netlink below with the rest of the configuration.
	dev, err := wgtun.CreateTUN(c.TUNName, c.MTU)
	if err != nil {
		if errors.Is(err, unix.EPERM) {
			return nil, fmt.Errorf("create TUN %q: %w (no CAP_NET_ADMIN in the namespace: is the caller's uid root in its user namespace?)", c.TUNName, err)
		}
		return nil, fmt.Errorf("create TUN %q: %w", c.TUNName, err)
	}
	if err := configureLink(h, c); err != nil {
		dev.Close()
		return nil, err
	}
	return dev, nil
}

func configureLink(h *netlink.Handle, c *config) error {
	l, err := h.LinkByName(c.TUNName)
	if err != nil {
		return fmt.Errorf("TUN %q: %w", c.TUNName, err)
	}
	if err := h.LinkSetMTU(l, c.MTU); err != nil {
		return fmt.Errorf("TUN %q: MTU %d: %w", c.TUNName, c.MTU, err)
	}
	for _, p := range c.Addresses {
		a := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}}
		if p.Addr().Is6() {
			// Duplicate address detection would hold the address back
			// for a second on a link that has no one else on it.
			a.Flags = unix.IFA_F_NODAD
		}
		if err := h.AddrAdd(l, a); err != nil {
			return fmt.Errorf("TUN %q: address %v: %w", c.TUNName, p, err)
		}
	}
	if err := h.LinkSetUp(l); err != nil {
		return fmt.Errorf("TUN %q: set up: %w", c.TUNName, err)
	}
	for _, r := range c.Routes {
		rt := &netlink.Route{
			LinkIndex: l.Attrs().Index,
			Dst:       &net.IPNet{IP: r.Addr().AsSlice(), Mask: net.CIDRMask(r.Bits(), r.Addr().BitLen())},
		}
		for _, g := range c.Gateways {
			if g.Is4() == r.Addr().Is4() {
				rt.Gw = g.AsSlice()
			}
		}
		if rt.Gw == nil {
			rt.Scope = netlink.SCOPE_LINK
		}
		if err := h.RouteAdd(rt); err != nil {
			return fmt.Errorf("TUN %q: route %v: %w", c.TUNName, r, err)
		}
	}
	return nil
}

// privateResolvConf covers /etc/resolv.conf, in the helper's own mount
// namespace, with one naming c.DNS. The file it mounts is unlinked at
// once: the mount keeps it, and it goes with the namespace.
func privateResolvConf(c *config) error {
	// Mounts made here must not propagate back to the host's namespace.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_SLAVE, ""); err != nil {
		return fmt.Errorf("resolv.conf: make mounts private: %w", err)
	}
	target, err := filepath.EvalSymlinks("/etc/resolv.conf")
	if err != nil {
		return fmt.Errorf("resolv.conf: %w", err)
	}
	f, err := os.CreateTemp("", "tungate-resolv-*.conf")
	if err != nil {
		return fmt.Errorf("resolv.conf: %w", err)
	}
	defer os.Remove(f.Name())
	var b strings.Builder
	b.WriteString("# tungate: the namespace's virtual DNS\n")
	for _, d := range c.DNS {
		b.WriteString("nameserver " + d.String() + "\n")
	}
	_, err = f.WriteString(b.String())
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(f.Name(), 0o644)
	}
	if err != nil {
		return fmt.Errorf("resolv.conf: %w", err)
	}
	if err := unix.Mount(f.Name(), target, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("resolv.conf: bind-mount over %s: %w", target, err)
	}
	return nil
}

// runCommand waits for the order to start, runs the command and returns
// its status once it and everything it started are gone. The helper is
// their subreaper, so processes the command left behind (daemons, double
// forks) come back to it and are killed rather than keeping the namespaces
// alive after the command is done.
func runCommand(ctl *net.UnixConn, c *config) int {
	m, fd, err := readMsg(ctl)
	if fd >= 0 {
		unix.Close(fd)
	}
	if err != nil || !m.Start {
		return 125
	}
	// Spawn made the helper's environment the command's.
	env := os.Environ()
	path, err := lookPath(c.Args[0], env)
	if err != nil {
		fmt.Fprintf(os.Stderr, "tungate: %v\n", err)
		return report(ctl, 127)
	}
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		fmt.Fprintf(os.Stderr, "tungate: subreaper: %v\n", err)
		return report(ctl, 125)
	}
	// Terminal signals reach the command from the terminal itself (it is
	// in the same process group); others sent to the helper are passed
	// on. Handled, not ignored: the command must not inherit SIG_IGN.
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGQUIT, syscall.SIGTERM, syscall.SIGHUP,
		syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGWINCH, syscall.SIGCONT)
	proc, err := os.StartProcess(path, c.Args, &os.ProcAttr{
		Dir:   c.Dir,
		Env:   env,
		Files: []*os.File{os.Stdin, os.Stdout, os.Stderr},
		// The helper dying (killed by the parent's Close timeout) must
		// not leave the command running.
		Sys: &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL},
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "tungate: %v\n", err)
		if errors.Is(err, unix.ENOENT) {
			return report(ctl, 127) // as a shell says "not found"
		}
		return report(ctl, 126)
	}
	go func() {
		for s := range sigs {
			if s != syscall.SIGINT && s != syscall.SIGQUIT {
				proc.Signal(s)
			}
		}
	}()
	// The parent closing the control socket (Close, or the parent dying)
	// ends the command and everything with it.
	go func() {
		for {
			if _, fd, err := readMsg(ctl); err != nil {
				killChildren()
				return
			} else if fd >= 0 {
				unix.Close(fd)
			}
		}
	}()
	code := -1
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, 0, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			break // ECHILD: nothing left
		}
		if pid == proc.Pid {
			code = ws.ExitStatus()
			if ws.Signaled() {
				code = 128 + int(ws.Signal())
			}
		}
		if code >= 0 {
			// A process is reparented here before its dead parent can
			// be reaped, so killing after every reap misses none.
			killChildren()
		}
	}
	if code < 0 {
		code = 125
	}
	return report(ctl, code)
}

func report(ctl *net.UnixConn, code int) int {
	writeMsg(ctl, message{Exit: &code}, nil)
	return code
}

// killChildren kills the helper's children: the command's leftovers that
// were reparented to it, or the command itself.
func killChildren() {
	tasks, _ := os.ReadDir("/proc/self/task")
	for _, t := range tasks {
		b, err := os.ReadFile("/proc/self/task/" + t.Name() + "/children")
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil {
				unix.Kill(pid, unix.SIGKILL)
			}
		}
	}
}

// lookPath finds file in env's PATH, as exec.LookPath would in the
// command's environment rather than the helper's.
func lookPath(file string, env []string) (string, error) {
	if strings.Contains(file, "/") {
		return file, nil
	}
	path := "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			path = v
		}
	}
	for _, dir := range filepath.SplitList(path) {
		if dir == "" {
			dir = "."
		}
		p := filepath.Join(dir, file)
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s: %w", file, exec.ErrNotFound)
}
