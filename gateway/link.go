package gateway

import (
	"errors"
	"fmt"
	"os"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/tun"
)

// Link is one interface of the gateway: a tun.Device and its settings.
type Link struct {
	// Name is the interface's config name.
	Name string
	// Index is its position in the config.
	Index int
	// Dev is the packet device.
	Dev tun.Device
	// MTU is the link MTU used for forwarding checks.
	MTU int
}

// OpenFunc opens the device of an interface; tests substitute in-memory
// devices (tun/netstack) for kernel TUNs.
type OpenFunc func(ic *InterfaceConfig, log *zap.Logger) (tun.Device, error)

// openKernelTUN opens the kernel TUN device of an interface. A device that
// exists already (a persistent one, perhaps owned by this unprivileged user)
// is attached to without privileged ioctls: its MTU and link state are then
// the owner's business, and a mismatch is only a warning.
func openKernelTUN(ic *InterfaceConfig, log *zap.Logger) (tun.Device, error) {
	if ic.TUNFD != nil {
		dev, name, err := tun.CreateUnmonitoredTUNFromFD(*ic.TUNFD)
		if err != nil {
			return nil, fmt.Errorf("interface %q: tun_fd %d: %w", ic.Name, *ic.TUNFD, err)
		}
		log.Info("attached inherited TUN", zap.String("interface", ic.Name), zap.Int("fd", *ic.TUNFD), zap.String("device", name))
		checkMTU(dev, ic, log)
		return dev, nil
	}
	_, statErr := os.Stat("/sys/class/net/" + ic.TUN)
	existed := statErr == nil
	if !existed || os.Geteuid() == 0 {
		dev, err := tun.CreateTUN(ic.TUN, ic.MTU)
		if err == nil {
			return dev, nil
		}
		if !existed {
			return nil, fmt.Errorf("interface %q: create TUN %q: %w", ic.Name, ic.TUN, err)
		}
		log.Warn("privileged TUN setup failed; attaching without it", zap.String("device", ic.TUN), zap.Error(err))
	}
	fd, err := attachTUN(ic.TUN)
	if err != nil {
		return nil, fmt.Errorf("interface %q: attach TUN %q: %w", ic.Name, ic.TUN, err)
	}
	dev, _, err := tun.CreateUnmonitoredTUNFromFD(fd)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("interface %q: TUN %q: %w", ic.Name, ic.TUN, err)
	}
	checkMTU(dev, ic, log)
	return dev, nil
}

func checkMTU(dev tun.Device, ic *InterfaceConfig, log *zap.Logger) {
	if m, err := dev.MTU(); err == nil && m != ic.MTU {
		log.Warn("TUN MTU differs from config; the device owner sets it",
			zap.String("interface", ic.Name), zap.Int("device_mtu", m), zap.Int("config_mtu", ic.MTU))
	}
}

// attachTUN opens /dev/net/tun and binds it to an existing device with
// TUNSETIFF only, which needs no capability when the caller owns the device.
// The virtio header is requested so offloads keep working; a device that
// refuses it is attached without.
func attachTUN(name string) (int, error) {
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
