//go:build linux

package e2e

import (
	"encoding/binary"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"unsafe"
)

// devTunShim runs "$@" in the mount namespace it is started in (unshare
// -m) with a world read-writable /dev/net/tun, which is what distributions
// ship (udev's 0666), so an unprivileged gateway can open it. This machine
// has no udev and a 0600 node; the shim changes nothing on the host. $1 is
// an empty directory for the replacement node.
const devTunShim = `set -e
mount -t tmpfs -o mode=755 tungate-dev "$1"
mknod -m 666 "$1/tun" c 10 200
mount --bind "$1/tun" /dev/net/tun
shift
exec "$@"`

// withOpenDevTun wraps argv in devTunShim; dir must exist.
func withOpenDevTun(dir string, argv []string) []string {
	return append([]string{"unshare", "-m", "--", "sh", "-c", devTunShim, "sh", dir}, argv...)
}

// asNobody runs argv as nobody:nogroup without supplementary groups or
// capabilities.
func asNobody(argv []string) []string {
	return append([]string{"setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"}, argv...)
}

// TestRootless runs the gateway without host privileges three ways and
// forwards ping through each: attached to persistent TUNs that root made
// for nobody, inside a user namespace of its own (unshare -rn) where it
// creates its TUNs, and on TUN file descriptors a privileged parent opened
// and passed down (tun_fd).
func TestRootless(t *testing.T) {
	needNetAdmin(t)
	needTools(t, "ping", "setpriv", "unshare", "nsenter")
	bin := gatewayBinary(t)
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Fatal(err)
	}
	uid, err := strconv.Atoi(nobody.Uid)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("persistent_tun", func(t *testing.T) {
		tp := newTopology(t, newNames("rp"))
		for _, dev := range []string{tp.lan, tp.wan} {
			mustRun(t, "ip", "tuntap", "add", "dev", dev, "mode", "tun", "user", "nobody", "vnet_hdr")
		}
		dir := workDir(t, uid)
		devDir := mkdirAll(t, filepath.Join(dir, "dev"))
		g := startGateway(t, bin, dir, gatewaySpec{
			cfg:  gwConfig{Lan: tunByName(tp.lan), Wan: tunByName(tp.wan)},
			tuns: []string{tp.lan, tp.wan},
			argv: func(gw []string) []string { return withOpenDevTun(devDir, asNobody(gw)) },
		})
		expectUID(t, g, uid)
		g.wire(t, tp, true)
		expectForwarding(t, tp)
	})

	t.Run("user_namespace", func(t *testing.T) {
		tp := newTopology(t, newNames("ru"))
		dir := workDir(t, uid)
		devDir := mkdirAll(t, filepath.Join(dir, "dev"))
		g := startGateway(t, bin, dir, gatewaySpec{
			cfg:  gwConfig{Lan: tunByName(tp.lan), Wan: tunByName(tp.wan)},
			tuns: []string{tp.lan, tp.wan},
			argv: func(gw []string) []string {
				return withOpenDevTun(devDir, asNobody(append([]string{"unshare", "-rn", "--"}, gw...)))
			},
			ownNetns: true,
		})
		expectUID(t, g, uid)
		// The devices are made in the gateway's namespace, not the host's.
		if out, err := run(cmdTimeout, "ip", "link", "show", tp.lan); err == nil {
			t.Errorf("%s is in the host's namespace:\n%s", tp.lan, out)
		}
		mustRun(t, append(g.netns, "ip", "link", "show", tp.lan)...)
		g.wire(t, tp, true)
		expectForwarding(t, tp)
	})

	t.Run("tun_fd", func(t *testing.T) {
		tp := newTopology(t, newNames("rf"))
		lan, wan := openTUN(t, tp.lan), openTUN(t, tp.wan)
		dir := workDir(t, uid)
		g := startGateway(t, bin, dir, gatewaySpec{
			// ExtraFiles[i] is descriptor 3+i in the gateway.
			cfg:        gwConfig{Lan: "tun_fd = 3", Wan: "tun_fd = 4"},
			tuns:       []string{tp.lan, tp.wan},
			argv:       asNobody, // never opens /dev/net/tun itself
			extraFiles: []*os.File{lan, wan},
		})
		// Only the gateway holds them now: they vanish when it exits.
		lan.Close()
		wan.Close()
		expectUID(t, g, uid)
		g.wire(t, tp, true)
		expectForwarding(t, tp)
	})
}

// expectForwarding pings through the gateway and its own addresses, over
// IPv4 and IPv6.
func expectForwarding(t *testing.T, tp topology) {
	t.Helper()
	for _, f := range families {
		expectPing(t, tp.client, f.server)
		expectPing(t, tp.client, f.lanGW)
	}
}

// expectUID checks that the gateway process runs as host uid want.
func expectUID(t *testing.T, g *gateway, want int) {
	t.Helper()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", g.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if f := strings.Fields(line); len(f) >= 3 && f[0] == "Uid:" {
			if f[1] != strconv.Itoa(want) || f[2] != strconv.Itoa(want) {
				t.Errorf("gateway runs as %s, want uid %d", line, want)
			}
			return
		}
	}
	t.Errorf("no Uid line in /proc/%d/status", g.cmd.Process.Pid)
}

func mkdirAll(t *testing.T, dir string) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// openTUN creates TUN device name the way the gateway does (no packet
// information header, virtio-net header for offloads) and returns the open
// file. The device lives as long as some process holds it.
func openTUN(t *testing.T, name string) *os.File {
	t.Helper()
	fd, err := syscall.Open("/dev/net/tun", syscall.O_RDWR|syscall.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	var ifr [40]byte // struct ifreq: name[16], then the flags of the union
	copy(ifr[:syscall.IFNAMSIZ-1], name)
	binary.NativeEndian.PutUint16(ifr[syscall.IFNAMSIZ:], syscall.IFF_TUN|syscall.IFF_NO_PI|syscall.IFF_VNET_HDR)
	if _, _, errno := syscall.Syscall(syscall.SYS_IOCTL, uintptr(fd), syscall.TUNSETIFF, uintptr(unsafe.Pointer(&ifr[0]))); errno != 0 {
		syscall.Close(fd)
		t.Fatalf("TUNSETIFF %s: %v", name, errno)
	}
	f := os.NewFile(uintptr(fd), "/dev/net/tun")
	t.Cleanup(func() { f.Close() })
	return f
}
