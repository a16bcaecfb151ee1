package gateway

import (
	"go.uber.org/zap"

	"tungate/privs"
)

// DropPrivileges drops every capability the running gateway no longer
// needs, on all threads: everything, or all but CAP_NET_ADMIN with
// [admin] keep_net_admin, from the effective, permitted, inheritable,
// ambient and bounding sets, and sets no_new_privs (package privs).
//
// Call it once the gateway holds all it needs: after New (TUN devices),
// ServeAdmin (the socket) and ServeMetrics (a port below 1024 needs
// CAP_NET_BIND_SERVICE). Afterwards the process keeps its uid: a gateway
// started as root can still read and write root's files by ownership, so
// run it as its own user (dist/tungate.service) for the rest.
func (g *Gateway) DropPrivileges() error {
	keep := g.Config().Admin.KeepNetAdmin
	res, err := privs.Drop(keep)
	if err != nil {
		return err
	}
	kept := "none"
	if len(res.Kept) > 0 {
		kept = "CAP_NET_ADMIN"
	}
	g.log.Info("privileges dropped", zap.String("capabilities_kept", kept), zap.Bool("bounding_set_dropped", res.BoundingDropped))
	if keep && len(res.Kept) == 0 {
		g.log.Warn("admin.keep_net_admin is set but the process did not hold CAP_NET_ADMIN")
	}
	return nil
}
