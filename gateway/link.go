package gateway

import (
	"fmt"

	"go.uber.org/zap"

	"tungate/link"
	"tungate/link/tun"
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
}

// OpenFunc opens the link of an interface; tests substitute in-memory
// devices (tun/netstack) for kernel TUNs.
type OpenFunc func(ic *InterfaceConfig, log *zap.Logger) (link.Link, error)

// openLink opens the link an interface's config describes: the one place
// that knows the kinds of link.
func openLink(ic *InterfaceConfig, log *zap.Logger) (link.Link, error) {
	l, err := tun.Open(tun.Config{Name: ic.TUN, MTU: ic.MTU, FD: ic.TUNFD}, log.With(zap.String("interface", ic.Name)))
	if err != nil {
		return nil, fmt.Errorf("interface %q: %w", ic.Name, err)
	}
	return l, nil
}
