// Package netns gives tungate a network namespace to route for, the way
// slirp4netns and pasta do for rootless containers, without privileges:
//
//   - Spawn (command mode) starts a command in a new user and network
//     namespace, owned by the calling user, whose only way out is a TUN
//     device the caller reads;
//   - Attach (attach mode) puts the TUN into an existing namespace, a
//     container's, and reports when that namespace goes away.
//
// Both return the TUN's descriptor over a unix socket (SCM_RIGHTS) from a
// helper: the calling process is multi-threaded, and a thread of a Go
// program can neither create a user namespace nor join one, so the work
// inside is done by this same binary re-executed in the helper role. The
// program's main must therefore call MaybeChild first thing.
//
// The namespace is configured through netlink (vishvananda/netlink) and the
// TUN is created by wireguard-go, with the virtio header so its offloads
// (GSO/GRO) work as for any other kernel TUN of tungate.
package netns

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Defaults a zero Spec gets.
const (
	// DefaultTUNName is the device name when Spec.TUNName is empty.
	DefaultTUNName = "tun0"
	// DefaultMTU is slirp4netns's and pasta's: the largest a 64 KiB
	// buffer carries with room for the headers.
	DefaultMTU = 65520
)

// Spec says what to build.
type Spec struct {
	// Args is the command and its arguments (command mode); Args[0] is
	// looked up in the PATH of Env.
	Args []string
	// Env is the command's environment; nil means the caller's.
	Env []string
	// Dir is the command's working directory; empty means the caller's.
	Dir string
	// Stdin, Stdout and Stderr are the command's; nil means the caller's
	// own (a terminal stays a terminal: *os.File values are passed as
	// they are, others through a pipe as in os/exec).
	Stdin          io.Reader
	Stdout, Stderr io.Writer

	// NetnsPath is the network namespace to attach to (attach mode), for
	// example /proc/PID/ns/net or /run/netns/NAME.
	NetnsPath string
	// UsernsPath is the user namespace owning NetnsPath (attach mode); it
	// is joined first, which is what lets an unprivileged caller into a
	// rootless container's namespaces. Empty: stay in the caller's.
	UsernsPath string

	// TUNName is the device's name inside; default DefaultTUNName.
	TUNName string
	// MTU of the device; default DefaultMTU.
	MTU int
	// Addresses are put on the device (IPv6 ones without duplicate address
	// detection, so they are usable at once).
	Addresses []netip.Prefix
	// Gateways are next hops for Routes, at most one per family; a family
	// without one is routed straight onto the device (a TUN has no
	// neighbours to resolve).
	Gateways []netip.Addr
	// Routes are the destinations sent through the device. Nil means the
	// default route (0.0.0.0/0, ::/0) of each family that has an address;
	// an empty non-nil slice means none.
	Routes []netip.Prefix
	// DNS, when set, are the only nameservers the command sees: a private
	// /etc/resolv.conf is bind-mounted in a mount namespace of its own
	// (command mode only).
	DNS []netip.Addr
}

// Session is a namespace with a TUN in it and, in command mode, the
// command running there.
type Session struct {
	ctl   *net.UnixConn
	tun   *os.File // nil once taken
	name  string
	mode  string
	pid   int // the helper
	cmd   *exec.Cmd
	watch *watcher

	startOnce sync.Once
	startErr  error
	done      chan struct{}
	code      int
	err       error
	closeOnce sync.Once
	mu        sync.Mutex // guards tun against TakeTUN and Close racing
}

// TUNFile is the device's descriptor, owned by the session (Close closes
// it) unless TakeTUN took it; nil then.
func (s *Session) TUNFile() *os.File {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tun
}

// TakeTUN hands the device's descriptor over to the caller, who must close
// it; it is what tun.Config.FD wants. The namespace lives at least as long
// as that descriptor is open: the kernel's TUN socket holds a reference to
// it. It returns -1 when taken before.
func (s *Session) TakeTUN() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tun == nil {
		return -1
	}
	// Through Control, not Fd: Fd would switch the shared file
	// description to blocking mode under the session's own reads.
	fd := -1
	if rc, err := s.tun.SyscallConn(); err == nil {
		rc.Control(func(f uintptr) {
			fd, _ = unix.FcntlInt(f, unix.F_DUPFD_CLOEXEC, 0)
		})
	}
	s.tun.Close()
	s.tun = nil
	return fd
}

// Pid is the helper's process id. In command mode it is the namespace's
// first process (the command's parent) while the command runs, so
// /proc/PID/ns/net names the namespace; in attach mode the helper has
// exited by the time Attach returns.
func (s *Session) Pid() int { return s.pid }

// TUNName is the device's name inside the namespace.
func (s *Session) TUNName() string { return s.name }

// Start lets the command run (command mode). Spawn returns with the
// command held back so the caller can start reading the TUN first: the
// command's first packets (a DNS query, a SYN) then find a gateway. In
// attach mode it does nothing.
func (s *Session) Start() error {
	if s.mode != roleCommand {
		return nil
	}
	s.startOnce.Do(func() {
		if err := writeMsg(s.ctl, message{Start: true}, nil); err != nil {
			s.startErr = fmt.Errorf("netns: start command: %w", err)
		}
	})
	return s.startErr
}

// Done is closed when the command has exited (command mode) or the
// namespace has gone (attach mode: its path no longer names it).
func (s *Session) Done() <-chan struct{} { return s.done }

// Wait starts the command if Start was not called, waits for Done and
// returns the command's exit status: its exit code, or 128+N when signal N
// killed it, as a shell reports. In attach mode it returns 0 when the
// namespace has gone.
func (s *Session) Wait() (int, error) {
	if err := s.Start(); err != nil {
		return -1, err
	}
	<-s.done
	return s.code, s.err
}

// Signal sends sig to the command; the helper forwards it. SIGINT and
// SIGQUIT are not forwarded: a terminal sends them to the command itself
// (it is in the caller's process group), and passing them on would deliver
// them twice.
func (s *Session) Signal(sig os.Signal) error {
	if s.cmd == nil {
		return errors.New("netns: no command in attach mode")
	}
	return s.cmd.Process.Signal(sig)
}

// Close ends the session: a command still running is killed with every
// process it started, the helper is reaped, the TUN descriptor (unless
// taken) closed. The namespaces are gone once nothing holds them: no
// process in them and no TUN descriptor open.
func (s *Session) Close() error {
	s.closeOnce.Do(func() {
		// The helper takes the end of what the parent sends as the order
		// to kill what runs in the namespace and exit; the other direction
		// stays open for its report of the command's status.
		s.ctl.CloseWrite()
		if s.watch != nil {
			s.watch.stop()
		}
		select {
		case <-s.done:
		case <-time.After(5 * time.Second):
			if s.cmd != nil {
				s.cmd.Process.Kill()
			}
			<-s.done
		}
		s.ctl.Close()
		s.mu.Lock()
		if s.tun != nil {
			s.tun.Close()
			s.tun = nil
		}
		s.mu.Unlock()
	})
	return nil
}

// withDefaults fills a Spec's zero values and checks the rest.
func (sp Spec) withDefaults() (Spec, error) {
	if sp.TUNName == "" {
		sp.TUNName = DefaultTUNName
	}
	if len(sp.TUNName) >= unix.IFNAMSIZ {
		return sp, fmt.Errorf("netns: TUN name %q is longer than %d bytes", sp.TUNName, unix.IFNAMSIZ-1)
	}
	if sp.MTU == 0 {
		sp.MTU = DefaultMTU
	}
	if sp.MTU < 68 || sp.MTU > 65535 {
		return sp, fmt.Errorf("netns: MTU %d is outside 68..65535", sp.MTU)
	}
	var has4, has6, gw4, gw6 bool
	for _, p := range sp.Addresses {
		if !p.IsValid() {
			return sp, fmt.Errorf("netns: address %v is not a prefix", p)
		}
		if p.Addr().Is4() {
			has4 = true
		} else {
			has6 = true
		}
	}
	if has6 && sp.MTU < 1280 {
		return sp, fmt.Errorf("netns: MTU %d is below IPv6's minimum of 1280", sp.MTU)
	}
	for _, g := range sp.Gateways {
		switch {
		case !g.IsValid():
			return sp, errors.New("netns: a gateway address is empty")
		case g.Is4() && gw4, g.Is6() && gw6:
			return sp, fmt.Errorf("netns: gateway %v: one gateway per family", g)
		}
		gw4 = gw4 || g.Is4()
		gw6 = gw6 || g.Is6()
	}
	if sp.Routes == nil {
		if has4 {
			sp.Routes = append(sp.Routes, netip.PrefixFrom(netip.IPv4Unspecified(), 0))
		}
		if has6 {
			sp.Routes = append(sp.Routes, netip.PrefixFrom(netip.IPv6Unspecified(), 0))
		}
	}
	for _, r := range sp.Routes {
		if !r.IsValid() {
			return sp, fmt.Errorf("netns: route %v is not a prefix", r)
		}
	}
	for _, d := range sp.DNS {
		if !d.IsValid() {
			return sp, errors.New("netns: a DNS address is empty")
		}
	}
	return sp, nil
}

func (sp Spec) config(role string) config {
	return config{
		Role:      role,
		TUNName:   sp.TUNName,
		MTU:       sp.MTU,
		Addresses: sp.Addresses,
		Gateways:  sp.Gateways,
		Routes:    sp.Routes,
		DNS:       sp.DNS,
		Args:      sp.Args,
		Dir:       sp.Dir,
	}
}

// Spawn makes a user namespace mapping the caller's uid and gid to root, a
// network namespace it owns (and a mount namespace when spec.DNS is set),
// configures the TUN there and returns once the caller holds its
// descriptor. The command is started by Start (or Wait). ctx bounds the
// setup only; end a running session with Close.
func Spawn(ctx context.Context, spec Spec) (*Session, error) {
	if len(spec.Args) == 0 {
		return nil, errors.New("netns: no command to run")
	}
	if spec.NetnsPath != "" || spec.UsernsPath != "" {
		return nil, errors.New("netns: NetnsPath and UsernsPath are for Attach")
	}
	sp, err := spec.withDefaults()
	if err != nil {
		return nil, err
	}
	// Checked here, as the caller: the helper is the same user, but as
	// root of its namespace it would report a misleading uid.
	if err := checkTUNDevice(tunDevice); err != nil {
		return nil, fmt.Errorf("netns: %w", err)
	}
	mine, theirs, err := controlPair()
	if err != nil {
		return nil, err
	}
	defer theirs.Close()

	cmd := exec.Command("/proc/self/exe")
	cmd.Args = []string{os.Args[0]}
	// The helper's environment is the command's (it passes its own on),
	// plus the role it removes first.
	env := sp.Env
	if env == nil {
		env = os.Environ()
	}
	cmd.Env = append(slices.Clip(env), roleEnv+"="+roleCommand)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = sp.Stdin, sp.Stdout, sp.Stderr
	if cmd.Stdin == nil {
		cmd.Stdin = os.Stdin
	}
	if cmd.Stdout == nil {
		cmd.Stdout = os.Stdout
	}
	if cmd.Stderr == nil {
		cmd.Stderr = os.Stderr
	}
	cmd.ExtraFiles = []*os.File{theirs}
	flags := uintptr(unix.CLONE_NEWUSER | unix.CLONE_NEWNET)
	if len(sp.DNS) > 0 {
		flags |= unix.CLONE_NEWNS
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  flags,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Geteuid(), Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getegid(), Size: 1}},
		// An unprivileged process may write gid_map only after denying
		// setgroups(2) in the namespace (user_namespaces(7)).
		GidMappingsEnableSetgroups: false,
	}
	if err := cmd.Start(); err != nil {
		mine.Close()
		return nil, withUsernsDiagnosis(fmt.Errorf("netns: create user and network namespaces: %w", err), hostRoot)
	}
	s := &Session{ctl: mine, mode: roleCommand, pid: cmd.Process.Pid, cmd: cmd, done: make(chan struct{})}
	if err := s.handshake(ctx, sp.config(roleCommand), func() { cmd.Process.Kill() }); err != nil {
		mine.Close()
		cmd.Wait()
		return nil, err
	}
	go s.waitCommand()
	return s, nil
}

// handshake sends the helper its orders and receives the TUN.
func (s *Session) handshake(ctx context.Context, c config, kill func()) error {
	// AfterFunc runs in a goroutine of its own, so a context ended
	// already could lose the race with a quick helper; check it first.
	if err := ctx.Err(); err != nil {
		kill()
		return err
	}
	stop := context.AfterFunc(ctx, func() { s.ctl.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	fail := func(err error, fd int) error {
		if fd >= 0 {
			unix.Close(fd)
		}
		kill()
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return fmt.Errorf("netns: helper: %w", err)
	}
	// The helper speaks first. Were the orders sent before, a joining
	// fork that fails would exit with them unread, and a unix socket
	// closed with unread data resets its peer: the failure record it had
	// written would be lost behind ECONNRESET.
	m, fd, err := readMsg(s.ctl)
	switch {
	case errors.Is(err, errEOF):
		return fail(errors.New("it never answered: does the program's main call netns.MaybeChild first?"), fd)
	case err != nil:
		return fail(err, fd)
	case m.joinErr != nil:
		kill()
		return m.joinErr
	case !m.Hello:
		return fail(errors.New("no greeting"), fd)
	}
	if err := writeMsg(s.ctl, message{Config: &c}, nil); err != nil {
		return fail(err, -1)
	}
	m, fd, err = readMsg(s.ctl)
	switch {
	case err != nil:
		return fail(err, fd)
	case m.Error != nil:
		if fd >= 0 {
			unix.Close(fd)
		}
		kill()
		return m.Error.err()
	case fd < 0 || !m.Ready:
		return fail(errors.New("answered without the TUN"), fd)
	}
	s.tun = os.NewFile(uintptr(fd), "/dev/net/tun:"+m.Name)
	s.name = m.Name
	return nil
}

// waitCommand collects the command's status: the helper reports it before
// exiting with it, so a helper that dies without a report is told apart
// from a command that failed.
func (s *Session) waitCommand() {
	var report *int
	for {
		m, fd, err := readMsg(s.ctl)
		if fd >= 0 {
			unix.Close(fd)
		}
		if err != nil {
			break
		}
		if m.Exit != nil {
			report = m.Exit
		}
	}
	werr := s.cmd.Wait()
	switch {
	case report != nil:
		s.code = *report
	case werr != nil:
		s.code, s.err = -1, fmt.Errorf("netns: helper: %w", werr)
	default:
		s.code, s.err = -1, errors.New("netns: helper exited without the command's status")
	}
	close(s.done)
}

// controlPair is the socket the helper talks over: datagrams, so every
// message (and the descriptor riding on it) arrives whole.
func controlPair() (*net.UnixConn, *os.File, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("netns: socketpair: %w", err)
	}
	f := os.NewFile(uintptr(fds[0]), "netns-control")
	c, err := net.FileConn(f)
	f.Close()
	if err != nil {
		unix.Close(fds[1])
		return nil, nil, fmt.Errorf("netns: socketpair: %w", err)
	}
	return c.(*net.UnixConn), os.NewFile(uintptr(fds[1]), "netns-control"), nil
}
