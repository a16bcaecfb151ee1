package gateway

import (
	"fmt"

	"go.uber.org/zap"

	"tungate/link"
	"tungate/link/tun"
	"tungate/link/uplink"
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
}

// OpenFunc opens the link of an interface; tests substitute in-memory
// devices (tun/netstack) for kernel TUNs.
type OpenFunc func(ic *InterfaceConfig, log *zap.Logger) (link.Link, error)

// openLink opens the link an interface's config describes: the one place
// that knows the kinds of link.
func openLink(ic *InterfaceConfig, log *zap.Logger) (link.Link, error) {
	log = log.With(zap.String("interface", ic.Name))
	var (
		l   link.Link
		err error
	)
	switch ic.Kind {
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
