package gateway

import (
	"fmt"
	"sync/atomic"

	"go.uber.org/zap"
	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"

	"tungate/link"
	"tungate/link/tun"
	"tungate/link/uplink"
	"tungate/link/wireguard"
)

// Link is one interface of the gateway: a link of some kind and its
// settings.
type Link struct {
	// Name is the interface's config name.
	Name string
	// Index is its position in the config.
	Index int
	// Dev moves the interface's packets.
	Dev link.Link
	// MTU is the link MTU used for forwarding checks.
	MTU int

	// rpf is the reverse-path check on the link's incoming packets.
	rpf rpfMode
	// peers names the sender of each packet read from the link and the
	// receiver of each written to it; nil for links without peers.
	peers link.PeerIdentifier
	// clamp: forwarded SYNs entering or leaving the link get their MSS
	// clamped (clamp_mss).
	clamp bool
	// capture records the link's packets while `tungate capture` runs
	// (capture.go); nil otherwise.
	capture atomic.Pointer[Capture]
}

// OpenFunc opens the link of an interface; tests substitute in-memory
// devices (tun/netstack) for kernel TUNs.
type OpenFunc func(ic *InterfaceConfig, log *zap.Logger) (link.Link, error)

// openLink opens the link an interface's config describes: the one place
// that knows the kinds of link.
func openLink(ic *InterfaceConfig, log *zap.Logger) (link.Link, error) {
	return openLinkWith(ic, log, nil)
}

// openLinkWith is openLink with the UDP side of a WireGuard link given
// (nil: a host socket), so tests run the real path over in-memory binds.
func openLinkWith(ic *InterfaceConfig, log *zap.Logger, bind conn.Bind) (link.Link, error) {
	log = log.With(zap.String("interface", ic.Name))
	var l link.Link
	var err error
	switch ic.Kind {
	case KindWireGuard:
		l, err = wireguard.New(ic.Name, ic.wireGuard(), wireguard.Options{Bind: bind, Logger: wgLogger(log)})
	case KindUplink:
		l, err = uplink.New(ic.UplinkConfig(), log)
	default:
		l, err = tun.Open(tun.Config{Name: ic.TUN, MTU: ic.MTU, FD: ic.TUNFD}, log)
	}
	if err != nil {
		return nil, fmt.Errorf("interface %q: %w", ic.Name, err)
	}
	return l, nil
}

// wgLogger passes wireguard-go's log on at debug level: handshakes and
// per-peer errors are routine for a VPN edge, not warnings.
func wgLogger(log *zap.Logger) *device.Logger {
	s := log.Named("wireguard").Sugar()
	return &device.Logger{Verbosef: s.Debugf, Errorf: s.Debugf}
}
