// Package tun is the kernel TUN kind of link: a device the gateway creates,
// a persistent one it attaches to without privileges, or one whose
// descriptor it inherits. wireguard-go's tun package does the device work
// (offloads, GSO splitting and GRO coalescing through the virtio header);
// it is imported as wgtun wherever this package is in scope too.
package tun

import (
	"errors"
	"fmt"
	"net"
	"os"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"
	wgtun "golang.zx2c4.com/wireguard/tun"

	"tungate/link"
)

// Config says which device to open.
type Config struct {
	// Name is the device name; unused when FD is set.
	Name string
	// MTU is set on a device this process creates and only compared with
	// the MTU of one it attaches to or inherits (the owner sets that).
	MTU int
	// FD, when set, is an inherited /dev/net/tun descriptor already bound
	// to a device (TUNSETIFF done by the parent); the link owns it.
	FD *int
}

// Link is an open kernel TUN device.
type Link struct {
	*link.TUN
	name string
}

// Name is the kernel's name of the device (for an inherited descriptor,
// the one it is bound to).
func (l *Link) Name() string { return l.name }

// Open opens the device cfg names. A device that exists already (a
// persistent one, perhaps owned by this unprivileged user) is attached to
// without privileged ioctls: its MTU and link state are then the owner's
// business, and a mismatch is only a warning. The device's events (link
// up/down, MTU) are drained and logged at debug level until it is closed:
// wireguard-go's monitor blocks on a full channel otherwise.
func Open(cfg Config, log *zap.Logger) (*Link, error) {
	dev, name, err := open(cfg, log)
	if err != nil {
		return nil, err
	}
	if ev := dev.Events(); ev != nil {
		go func() {
			for e := range ev {
				log.Debug("link event", zap.Int("event", int(e)))
			}
		}()
	}
	return &Link{TUN: link.FromTUN(dev), name: name}, nil
}

func open(cfg Config, log *zap.Logger) (wgtun.Device, string, error) {
	if cfg.FD != nil {
		dev, name, err := wgtun.CreateUnmonitoredTUNFromFD(*cfg.FD)
		if err != nil {
			return nil, "", fmt.Errorf("tun_fd %d: %w", *cfg.FD, err)
		}
		log.Info("attached inherited TUN", zap.Int("fd", *cfg.FD), zap.String("device", name))
		checkMTU(dev, cfg.MTU, log)
		return dev, name, nil
	}
	// Asked of the kernel, not of /sys/class/net: sysfs lists the devices
	// of the namespace it was mounted in, which need not be ours.
	_, lookupErr := net.InterfaceByName(cfg.Name)
	existed := lookupErr == nil
	if !existed || (os.Geteuid() == 0 && hasNetAdmin()) {
		dev, err := wgtun.CreateTUN(cfg.Name, cfg.MTU)
		if err == nil {
			return dev, cfg.Name, nil
		}
		if !existed {
			return nil, "", fmt.Errorf("create TUN %q: %w", cfg.Name, err)
		}
		log.Warn("privileged TUN setup failed; attaching without it", zap.String("device", cfg.Name), zap.Error(err))
	}
	fd, err := attach(cfg.Name)
	if errors.Is(err, unix.EBUSY) {
		// A TUN has one reader: the device is another process's.
		return nil, "", fmt.Errorf("attach TUN %q: another process holds it (another gateway running on these devices?): %w", cfg.Name, err)
	}
	if err != nil {
		return nil, "", fmt.Errorf("attach TUN %q: %w", cfg.Name, err)
	}
	dev, _, err := wgtun.CreateUnmonitoredTUNFromFD(fd)
	if err != nil {
		unix.Close(fd)
		return nil, "", fmt.Errorf("TUN %q: %w", cfg.Name, err)
	}
	checkMTU(dev, cfg.MTU, log)
	return dev, cfg.Name, nil
}

// hasNetAdmin reports whether the calling thread may configure devices.
// Root without CAP_NET_ADMIN (a container that dropped it) must take the
// unprivileged way: wireguard-go's CreateTUN binds the device before its
// MTU ioctl fails and keeps the descriptor, which then makes the device
// busy for the attach that follows.
func hasNetAdmin() bool {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return true // unknown: try, as before capabilities were asked
	}
	return data[unix.CAP_NET_ADMIN/32].Effective&(1<<(unix.CAP_NET_ADMIN%32)) != 0
}

func checkMTU(dev wgtun.Device, want int, log *zap.Logger) {
	if m, err := dev.MTU(); err == nil && m != want {
		log.Warn("TUN MTU differs from config; the device owner sets it",
			zap.Int("device_mtu", m), zap.Int("config_mtu", want))
	}
}

// attach opens /dev/net/tun and binds it to an existing device with
// TUNSETIFF only, which needs no capability when the caller owns the device.
// The virtio header is requested so offloads keep working; a device that
// refuses it is attached without.
func attach(name string) (int, error) {
	for _, flags := range []uint16{unix.IFF_TUN | unix.IFF_NO_PI | unix.IFF_VNET_HDR, unix.IFF_TUN | unix.IFF_NO_PI} {
		fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			return -1, err
		}
		ifr, err := unix.NewIfreq(name)
		if err != nil {
			unix.Close(fd)
			return -1, err
		}
		ifr.SetUint16(flags)
		if err = unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err == nil {
			return fd, nil
		}
		unix.Close(fd)
		if !errors.Is(err, unix.EINVAL) {
			return -1, err
		}
	}
	return -1, errors.New("TUNSETIFF refused")
}

// Exists reports whether a network device of that name exists in the
// calling thread's namespace (asked of the kernel).
func Exists(name string) bool {
	_, err := net.InterfaceByName(name)
	return err == nil
}

// CanCreate reports whether this process may create a TUN device: it needs
// CAP_NET_ADMIN, which a gateway that dropped its privileges no longer has
// (attaching to an existing device it owns needs none).
func CanCreate() bool { return hasNetAdmin() }
