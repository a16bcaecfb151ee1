package netns

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrUsernsRestricted is wrapped by the error Spawn or Attach returns when
// the host's settings forbid the unprivileged user namespaces they need;
// the error's text says which setting and what to change.
var ErrUsernsRestricted = errors.New("unprivileged user namespaces are restricted on this host")

// ErrTUNAccess is wrapped by the error returned when the TUN clone device
// cannot be opened by the calling user; the text says how to fix it.
var ErrTUNAccess = errors.New("the TUN clone device is not usable")

// hostRoot is where /proc is looked for, and tunDevice the clone device
// checked: variables so tests can point them at files of their own.
var (
	hostRoot  = "/"
	tunDevice = "/dev/net/tun"
)

// restriction is one host setting that stops unprivileged user namespaces.
type restriction struct {
	file    string // under /proc/sys
	blocks  func(v string) bool
	explain string
}

var restrictions = []restriction{
	{
		file:   "user/max_user_namespaces",
		blocks: func(v string) bool { return v == "0" },
		explain: "user.max_user_namespaces is 0, which forbids user namespaces to everyone: " +
			"run `sysctl -w user.max_user_namespaces=15000` and keep it in /etc/sysctl.d/",
	},
	{
		file:   "kernel/unprivileged_userns_clone",
		blocks: func(v string) bool { return v == "0" },
		explain: "kernel.unprivileged_userns_clone is 0 (a Debian kernel's switch): " +
			"run `sysctl -w kernel.unprivileged_userns_clone=1` and keep it in /etc/sysctl.d/",
	},
	{
		file:   "kernel/apparmor_restrict_unprivileged_userns",
		blocks: func(v string) bool { return v == "1" },
		explain: "kernel.apparmor_restrict_unprivileged_userns is 1 (Ubuntu 23.10 and later): " +
			"give tungate an AppArmor profile that allows `userns,` (for example " +
			"/etc/apparmor.d/tungate: `abi <abi/4.0>, include <tunables/global> " +
			"profile tungate /usr/bin/tungate flags=(unconfined) { userns, }`, then " +
			"`apparmor_parser -r /etc/apparmor.d/tungate`), or run " +
			"`sysctl -w kernel.apparmor_restrict_unprivileged_userns=0`",
	},
	{
		file:    "user/max_net_namespaces",
		blocks:  func(v string) bool { return v == "0" },
		explain: "user.max_net_namespaces is 0: run `sysctl -w user.max_net_namespaces=15000`",
	},
}

// UsernsRestrictions reads the host's settings (under root/proc/sys) that
// forbid unprivileged user namespaces and returns an ErrUsernsRestricted
// error naming each one found and what to change, or nil. A setting the
// kernel lacks does not restrict anything.
func UsernsRestrictions(root string) error {
	var found []string
	for _, r := range restrictions {
		b, err := os.ReadFile(filepath.Join(root, "proc/sys", r.file))
		if err != nil {
			continue
		}
		if r.blocks(strings.TrimSpace(string(b))) {
			found = append(found, r.explain)
		}
	}
	if len(found) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %s", ErrUsernsRestricted, strings.Join(found, "; "))
}

// withUsernsDiagnosis adds to err what the host's settings say about the
// failure: setting up the namespaces failed with a permission-like errno,
// which alone tells a user nothing. Restrictions fail at different steps
// (clone, the uid_map write, AppArmor's capability denial later on), so the
// settings are read after any such failure, not guessed from the step.
func withUsernsDiagnosis(err error, root string) error {
	if !(errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) || errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EINVAL)) {
		return err
	}
	if d := UsernsRestrictions(root); d != nil {
		return fmt.Errorf("%w: %w", err, d)
	}
	return err
}

// checkTUNDevice opens the clone device as the TUN creation will, so a
// refusal is explained instead of surfacing as a bare "permission denied"
// from deep in the setup.
func checkTUNDevice(path string) error {
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err == nil {
		unix.Close(fd)
		return nil
	}
	switch {
	case errors.Is(err, unix.ENOENT):
		return fmt.Errorf("%w: %s does not exist: load the tun module (`modprobe tun`) or create it "+
			"(`mkdir -p /dev/net && mknod -m 0666 /dev/net/tun c 10 200`)", ErrTUNAccess, path)
	case errors.Is(err, unix.EACCES), errors.Is(err, unix.EPERM):
		mode := "its mode"
		if st, serr := os.Stat(path); serr == nil {
			mode = fmt.Sprintf("it is mode %04o", st.Mode().Perm())
		}
		return fmt.Errorf("%w: %s cannot be opened by uid %d (%v): %s; run `chmod 0666 %s` "+
			"(mainstream distributions ship it 0666; a udev rule `KERNEL==\"tun\", MODE=\"0666\"` keeps it so)",
			ErrTUNAccess, path, os.Getuid(), err, mode, path)
	}
	return fmt.Errorf("%w: open %s: %v", ErrTUNAccess, path, err)
}
