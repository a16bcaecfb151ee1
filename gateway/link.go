package gateway

import (
	"fmt"

	"go.uber.org/zap"
	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"

	"tungate/link"
	"tungate/link/tun"
	"tungate/link/uplink"
	"tungate/link/wireguard"
)

// Link is one interface of the gateway: a link of some kind and its
// settings. A Link value never changes: a reload that changes an
// interface's settings makes a new Link around the same device and state.
type Link struct {
	// Name is the interface's config name.
	Name string
	// Index is its slot: the number rules, routes and NAT know it by,
	// kept for the link's life (see plane).
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
	// st is shared by every Link value of the device.
	st *linkState
}

// configure sets l's settings from ic, for slot s.
func (l *Link) configure(ic *InterfaceConfig, s int) {
	l.Name, l.Index, l.MTU, l.clamp, l.rpf = ic.Name, s, ic.MTU, ic.clamp, ic.rpf
	l.peers, _ = l.Dev.(link.PeerIdentifier)
}

// with returns a copy of l with ic's settings, same device and state.
func (l *Link) with(ic *InterfaceConfig) *Link {
	n := &Link{Dev: l.Dev, st: l.st}
	n.configure(ic, l.Index)
	return n
}

// Up reports whether the link's device is attached and working.
func (l *Link) Up() bool { return !l.st.down.Load() }

// DownReason is why the link is down ("" when up).
func (l *Link) DownReason() string {
	if p := l.st.downReason.Load(); p != nil && l.st.down.Load() {
		return *p
	}
	return ""
}

// identity is what a reload matches a running link by: the device, not
// the interface's name or position. A kernel TUN is its device name or
// inherited descriptor, a WireGuard interface its listen port (its name
// when the port is picked at random), the namespace's TUN and an uplink
// by their kind (an uplink by its place among the uplinks).
func (c *Config) identities() []string {
	out := make([]string, len(c.Interface))
	uplinks := 0
	for i := range c.Interface {
		ic := &c.Interface[i]
		switch {
		case c.Namespace.Enabled() && c.Namespace.Interface == ic.Name:
			out[i] = "namespace"
		case ic.Kind == KindUplink:
			out[i] = fmt.Sprintf("uplink#%d", uplinks)
			uplinks++
		default:
			out[i] = ic.identity()
		}
	}
	return out
}

// identity is the device identity of one interface, for kinds that have
// one of their own (see Config.identities).
func (ic *InterfaceConfig) identity() string {
	switch ic.Kind {
	case KindWireGuard:
		if ic.ListenPort != 0 {
			return fmt.Sprintf("wireguard port %d", ic.ListenPort)
		}
		return "wireguard " + ic.Name
	case KindUplink:
		return "uplink"
	}
	if ic.TUNFD != nil {
		return fmt.Sprintf("tun_fd %d", *ic.TUNFD)
	}
	if ic.TUN == "" {
		return "namespace"
	}
	return "tun " + ic.TUN
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
		c := ic.UplinkConfig()
		c.GSO = true // the datapath cuts or hands on what the stack sends so
		l, err = uplink.New(c, log)
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
