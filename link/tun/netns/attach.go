package netns

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// WatchInterval is how often an attached session checks that its
// namespace is still there.
var WatchInterval = 250 * time.Millisecond

// Attach creates and configures the TUN in the network namespace
// spec.NetnsPath, joining spec.UsernsPath first when set, and returns
// holding its descriptor. The session's Done is closed when the namespace
// disappears; see watcher for how that is told.
//
// An unprivileged caller needs UsernsPath (a rootless container's user
// namespace, which the caller's uid owns and in which it is root); root
// can attach to any namespace without it.
func Attach(ctx context.Context, spec Spec) (*Session, error) {
	if spec.NetnsPath == "" {
		return nil, errors.New("netns: Attach needs NetnsPath")
	}
	if len(spec.Args) > 0 || len(spec.DNS) > 0 {
		return nil, errors.New("netns: Args and DNS are for Spawn: an attached namespace runs its own processes")
	}
	sp, err := spec.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := checkTUNDevice(tunDevice); err != nil {
		return nil, fmt.Errorf("netns: %w", err)
	}
	netFile, err := os.Open(sp.NetnsPath)
	if err != nil {
		return nil, fmt.Errorf("netns: %w", err)
	}
	defer netFile.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(netFile.Fd()), &st); err != nil {
		return nil, fmt.Errorf("netns: %s: %w", sp.NetnsPath, err)
	}
	if err := isNamespace(int(netFile.Fd()), unix.CLONE_NEWNET); err != nil {
		return nil, fmt.Errorf("netns: %s: %w", sp.NetnsPath, err)
	}
	userFD := -1
	if sp.UsernsPath != "" {
		userFile, err := os.Open(sp.UsernsPath)
		if err != nil {
			return nil, fmt.Errorf("netns: %w", err)
		}
		defer userFile.Close()
		if err := isNamespace(int(userFile.Fd()), unix.CLONE_NEWUSER); err != nil {
			return nil, fmt.Errorf("netns: %s: %w", sp.UsernsPath, err)
		}
		userFD = int(userFile.Fd())
	}

	mine, theirs, err := controlPair()
	if err != nil {
		return nil, err
	}
	pid, err := spawnJoined(userFD, int(netFile.Fd()), int(theirs.Fd()))
	theirs.Close()
	if err != nil {
		mine.Close()
		return nil, fmt.Errorf("netns: start helper: %w", err)
	}
	proc, err := os.FindProcess(pid)
	if err != nil {
		mine.Close()
		return nil, err
	}
	s := &Session{ctl: mine, mode: roleAttach, pid: pid, done: make(chan struct{})}
	herr := s.handshake(ctx, sp.config(roleAttach), func() { proc.Kill() })
	// The helper exits once the TUN is sent (or on failure, killed).
	proc.Wait()
	if herr != nil {
		mine.Close()
		return nil, herr
	}
	s.watch = watch(sp.NetnsPath, st.Dev, st.Ino, s)
	return s, nil
}

// isNamespace checks that fd is a namespace of the given type, so a wrong
// path is refused with a clear error rather than an EINVAL from setns.
func isNamespace(fd int, nstype int) error {
	t, err := unix.IoctlRetInt(fd, unix.NS_GET_NSTYPE)
	if err != nil {
		return fmt.Errorf("not a namespace: %w", err)
	}
	if t != nstype {
		return fmt.Errorf("a namespace of another type (%#x, want %#x)", t, nstype)
	}
	return nil
}

// watcher tells when an attached namespace is gone. The TUN descriptor
// tungate holds keeps the namespace itself alive (its socket references
// it), so "gone" cannot mean destroyed: it means that the path no longer
// names it. The path is stat'ed every WatchInterval and compared with the
// namespace's nsfs device and inode taken at attach: /proc/PID/ns/net stops
// resolving when the process exits (or names another namespace if the pid
// is reused), and `ip netns del` unmounts /run/netns/NAME. Polling holds no
// reference, unlike an open descriptor or a pidfd would not tell a bind
// mount's removal; inotify does not see unmounts.
type watcher struct {
	stopc chan struct{}
	ended chan struct{}
}

func watch(path string, dev, ino uint64, s *Session) *watcher {
	w := &watcher{stopc: make(chan struct{}), ended: make(chan struct{})}
	go func() {
		defer close(w.ended)
		t := time.NewTicker(WatchInterval)
		defer t.Stop()
		for {
			select {
			case <-w.stopc:
				s.err = errors.New("netns: session closed")
				close(s.done)
				return
			case <-t.C:
				var st unix.Stat_t
				if err := unix.Stat(path, &st); err != nil || st.Dev != dev || st.Ino != ino {
					close(s.done)
					return
				}
			}
		}
	}()
	return w
}

func (w *watcher) stop() {
	select {
	case <-w.ended:
	default:
		close(w.stopc)
		<-w.ended
	}
}

// joinFailMagic starts the message the joining fork writes on the control
// socket when a step before exec fails, with the step and the errno.
var joinFailMagic = [4]byte{0, 't', 'g', 'J'}

const joinFailLen = 8

// Steps of the joining fork, as reported in its failure message.
var joinSteps = [...]string{1: "join user namespace", 2: "join network namespace", 3: "pass control socket", 4: "exec helper"}

// spawnJoined starts the helper inside the namespaces userFD (when >= 0)
// and netFD, its control socket as fd 3.
//
// A multi-threaded process cannot join a user namespace (setns fails with
// EINVAL), and every Go process is multi-threaded from its first
// instruction; os/exec has no hook between fork and exec. So the fork is
// done here with raw system calls, and the single-threaded child joins the
// namespaces and executes the helper, which then starts inside them.
// Between fork and exec the child runs only raw system calls on memory
// prepared before the fork, with signals blocked, as syscall.forkExec does.
func spawnJoined(userFD, netFD, sock int) (int, error) {
	exe, err := unix.BytePtrFromString("/proc/self/exe")
	if err != nil {
		return 0, err
	}
	argv, err := syscall.SlicePtrFromStrings([]string{os.Args[0]})
	if err != nil {
		return 0, err
	}
	envv, err := syscall.SlicePtrFromStrings(append(os.Environ(), roleEnv+"="+roleAttach))
	if err != nil {
		return 0, err
	}
	a := &joinArgs{
		userFD: uintptr(userFD), hasUser: userFD >= 0, netFD: uintptr(netFD), sock: uintptr(sock),
		exe: exe, argv: &argv[0], envv: &envv[0],
	}
	copy(a.fail[:], joinFailMagic[:])

	// Signal masks are per thread, and the child inherits this one's.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	syscall.ForkLock.Lock()
	all := ^uint64(0)
	var old uint64
	if _, _, e := syscall.RawSyscall6(syscall.SYS_RT_SIGPROCMASK, unix.SIG_SETMASK, uintptr(unsafe.Pointer(&all)), uintptr(unsafe.Pointer(&old)), 8, 0, 0); e != 0 {
		syscall.ForkLock.Unlock()
		return 0, e
	}
	a.oldMask = old
	pid, e := forkJoinExec(a)
	syscall.RawSyscall6(syscall.SYS_RT_SIGPROCMASK, unix.SIG_SETMASK, uintptr(unsafe.Pointer(&old)), 0, 8, 0, 0)
	syscall.ForkLock.Unlock()
	runtime.KeepAlive(argv)
	runtime.KeepAlive(envv)
	if e != 0 {
		return 0, fmt.Errorf("fork: %w", e)
	}
	return pid, nil
}

// joinArgs is everything the child needs, built before the fork.
type joinArgs struct {
	userFD, netFD, sock uintptr
	hasUser             bool
	exe                 *byte
	argv, envv          **byte
	oldMask             uint64
	dfl                 [4]uintptr // a zero sigaction: SIG_DFL
	fail                [joinFailLen]byte
}

// forkJoinExec forks; the child joins the namespaces and executes the
// helper, never returning. It must not grow the stack, allocate or take
// locks after the fork: only nosplit raw system calls follow it.
//
//go:norace
//go:nocheckptr
//go:noinline
func forkJoinExec(a *joinArgs) (int, syscall.Errno) {
	r1, _, e := syscall.RawSyscall6(syscall.SYS_CLONE, uintptr(syscall.SIGCHLD), 0, 0, 0, 0, 0)
	if e != 0 || r1 != 0 {
		return int(r1), e
	}
	// The child. Go's handlers must not run here: reset them all, then
	// restore the mask the thread had.
	for sig := uintptr(1); sig <= 64; sig++ {
		syscall.RawSyscall6(syscall.SYS_RT_SIGACTION, sig, uintptr(unsafe.Pointer(&a.dfl)), 0, 8, 0, 0)
	}
	var step byte
	if a.hasUser {
		step = 1
		if _, _, e = syscall.RawSyscall(unix.SYS_SETNS, a.userFD, unix.CLONE_NEWUSER, 0); e != 0 {
			goto fail
		}
	}
	step = 2
	if _, _, e = syscall.RawSyscall(unix.SYS_SETNS, a.netFD, unix.CLONE_NEWNET, 0); e != 0 {
		goto fail
	}
	step = 3
	if a.sock == controlFD {
		_, _, e = syscall.RawSyscall(syscall.SYS_FCNTL, a.sock, syscall.F_SETFD, 0)
	} else {
		_, _, e = syscall.RawSyscall(syscall.SYS_DUP3, a.sock, controlFD, 0)
	}
	if e != 0 {
		goto fail
	}
	syscall.RawSyscall6(syscall.SYS_RT_SIGPROCMASK, unix.SIG_SETMASK, uintptr(unsafe.Pointer(&a.oldMask)), 0, 8, 0, 0)
	step = 4
	_, _, e = syscall.RawSyscall(syscall.SYS_EXECVE, uintptr(unsafe.Pointer(a.exe)), uintptr(unsafe.Pointer(a.argv)), uintptr(unsafe.Pointer(a.envv)))
fail:
	a.fail[4] = step
	a.fail[5] = byte(e)
	a.fail[6] = byte(e >> 8)
	syscall.RawSyscall(syscall.SYS_WRITE, a.sock, uintptr(unsafe.Pointer(&a.fail[0])), joinFailLen)
	for {
		syscall.RawSyscall(syscall.SYS_EXIT_GROUP, 127, 0, 0)
	}
}

// joinFailure decodes the joining fork's failure message.
func joinFailure(b []byte) error {
	step, errno := int(b[4]), syscall.Errno(uint16(b[5])|uint16(b[6])<<8)
	what := "step " + fmt.Sprint(step)
	if step > 0 && step < len(joinSteps) {
		what = joinSteps[step]
	}
	err := fmt.Errorf("netns: %s: %w", what, errno)
	if step <= 2 && (errno == unix.EPERM || errno == unix.EINVAL) {
		hint := "joining a namespace owned by another user namespace needs its user namespace too (UsernsPath), owned by this uid"
		if step == 1 {
			hint = "the user namespace must be owned by this uid (a rootless container of this user)"
		}
		err = fmt.Errorf("%w (%s)", err, hint)
	}
	return err
}
