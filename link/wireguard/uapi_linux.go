package wireguard

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/ipc"
)

// UAPIDir is where wireguard-go and the wg tool keep UAPI sockets (fixed
// when wg is built; wireguard-go's ipc package has it too).
const UAPIDir = "/var/run/wireguard"

// ServeUAPI serves the link's state on wireguard-go's UAPI socket,
// UAPIDir/NAME.sock (mode 0600), so that the standard `wg show NAME`
// works. It is read-only: the TOML file is the one source of truth, so a
// set operation (`wg set`) is refused with EROFS, and refusal explains
// where the configuration lives (hint, e.g. "edit /etc/tungate.toml and
// run tungate reload"): on the caller's standard error, since wg prints
// only the errno, and through onRefuse (the gateway's log).
//
// A socket left by a process that is gone is replaced; one another live
// process answers on is an error. Close removes the socket.
func (l *Link) ServeUAPI(hint string, onRefuse func(pid int32)) error {
	f, err := ipc.UAPIOpen(l.name)
	if err != nil {
		return fmt.Errorf("UAPI socket %s: %w", filepath.Join(UAPIDir, l.name+".sock"), err)
	}
	path := filepath.Join(UAPIDir, l.name+".sock")
	// wireguard-go opens it under umask 077 (mode 0700); 0600 is enough.
	if err := os.Chmod(path, 0o600); err != nil {
		f.Close()
		return fmt.Errorf("UAPI socket %s: %w", path, err)
	}
	ln, err := ipc.UAPIListen(l.name, f)
	f.Close() // the listener holds its own descriptor
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("UAPI socket %s: %w", path, err)
	}
	l.cfgMu.Lock()
	l.uapi = ln
	l.cfgMu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return // closed, or the socket file was removed
			}
			go l.serveUAPIConn(c, hint, onRefuse)
		}
	}()
	return nil
}

// serveUAPIConn answers one client's operations as device.IpcHandle does,
// without the set operation. Errors are negative errnos, as there.
func (l *Link) serveUAPIConn(c net.Conn, hint string, onRefuse func(pid int32)) {
	defer c.Close()
	r, w := bufio.NewReader(c), bufio.NewWriter(c)
	for {
		op, err := r.ReadString('\n')
		if err != nil {
			return
		}
		errno := 0
		switch op {
		case "get=1\n":
			if b, err := r.ReadByte(); err != nil || b != '\n' {
				return
			}
			text, err := l.dev.IpcGet()
			if err != nil {
				errno = -int(unix.EIO)
				break
			}
			io.WriteString(w, text)
		case "set=1\n":
			// Read the whole request, so the client sees the answer
			// rather than a reset.
			for {
				line, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if line == "\n" {
					break
				}
			}
			errno = -int(unix.EROFS)
			pid := peerPID(c)
			tellCaller(pid, fmt.Sprintf("tungate: %s is read-only here: its peers and keys come from tungate's configuration; %s\n", l.name, hint))
			if onRefuse != nil {
				onRefuse(pid)
			}
		default:
			return
		}
		fmt.Fprintf(w, "errno=%d\n\n", errno)
		if w.Flush() != nil {
			return
		}
	}
}

// peerPID is the process at the other end of a unix socket, 0 if unknown.
func peerPID(c net.Conn) int32 {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return 0
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return 0
	}
	var cred *unix.Ucred
	raw.Control(func(fd uintptr) {
		cred, _ = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	})
	if cred == nil {
		return 0
	}
	return cred.Pid
}

// tellCaller shows msg to process pid: the UAPI has no way to carry a
// message, and wg prints only strerror of the errno. It writes to the
// caller's standard error when allowed (a gateway that still holds its
// capabilities), else to its controlling terminal, a pseudo-terminal that
// belongs to the caller's user: the socket is root's alone (0600), so the
// caller is root, as is this process after dropping its capabilities.
// A caller without a terminal (a script) has the errno and the log.
func tellCaller(pid int32, msg string) {
	if pid <= 0 {
		return
	}
	f, err := os.OpenFile(fmt.Sprintf("/proc/%d/fd/2", pid), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		tty := controllingPTY(pid)
		if tty == "" {
			return
		}
		if f, err = os.OpenFile(tty, os.O_WRONLY|unix.O_NOCTTY|unix.O_NONBLOCK, 0); err != nil {
			return
		}
	}
	f.WriteString(msg)
	f.Close()
}

// controllingPTY is the /dev/pts path of process pid's controlling
// terminal (proc(5) stat field 7, tty_nr), "" when it has none or it is
// not a pseudo-terminal.
func controllingPTY(pid int32) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	// The command name (field 2) may hold spaces and parentheses; the
	// fields after its closing one are plain numbers.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return ""
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 5 {
		return ""
	}
	nr, err := strconv.ParseUint(f[4], 10, 32)
	if err != nil || nr == 0 {
		return ""
	}
	major := (nr >> 8) & 0xfff
	minor := (nr & 0xff) | ((nr >> 12) & 0xfff00)
	if major < 136 || major > 143 { // UNIX98_PTY_SLAVE_MAJOR .. +7
		return ""
	}
	return fmt.Sprintf("/dev/pts/%d", (major-136)<<20|minor)
}

// closeUAPI stops serving the UAPI socket and removes it.
func (l *Link) closeUAPI() {
	l.cfgMu.Lock()
	ln := l.uapi
	l.uapi = nil
	l.cfgMu.Unlock()
	if ln != nil {
		ln.Close()
	}
}
