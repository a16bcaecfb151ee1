//go:build !linux

package wireguard

import "errors"

// UAPIDir is where wireguard-go and the wg tool keep UAPI sockets.
const UAPIDir = "/var/run/wireguard"

// ServeUAPI is implemented on Linux only.
func (l *Link) ServeUAPI(hint string, onRefuse func(pid int32)) error {
	return errors.New("the WireGuard UAPI socket is served on Linux only")
}

func (l *Link) closeUAPI() {}
