package main

import (
	"fmt"
	"os"

	"go.uber.org/zap"

	"tungate/gateway"
	"tungate/link/wireguard"
)

// serveUAPI serves each wireguard interface's UAPI socket where the wg
// tool looks (wireguard.UAPIDir) when running as root: `wg show NAME`
// works; `wg set` is refused and pointed at the config file. Without
// root the directory is not ours to write, and there is nothing to do.
func serveUAPI(g *gateway.Gateway, cfg *gateway.Config, log *zap.Logger) error {
	if os.Geteuid() != 0 {
		return nil
	}
	hint := fmt.Sprintf("edit %s and run `tungate reload`", cfg.Path())
	for _, l := range g.Links() {
		wl, ok := l.Dev.(*wireguard.Link)
		if !ok {
			continue
		}
		ilog := log.With(zap.String("interface", l.Name))
		refused := func(pid int32) {
			ilog.Warn("wg set refused on the UAPI socket: "+hint, zap.Int32("pid", pid))
		}
		if err := wl.ServeUAPI(hint, refused); err != nil {
			return fmt.Errorf("interface %q: %w", l.Name, err)
		}
	}
	return nil
}
