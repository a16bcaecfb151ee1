package gateway

import (
	"net"
	"slices"

	"tungate/nat"
)

// What the control plane (package admin) asks the gateway. Each accessor
// returns a copy or an immutable value, so nothing outside the datapath
// holds its internals.

// Config returns the running config. It must not be modified: a reload
// replaces it whole.
func (g *Gateway) Config() *Config { return g.pl.Load().cfg }

// Path returns the file the config was loaded from ("" if it was parsed
// from bytes).
func (c *Config) Path() string { return c.path }

// Helpers returns the names of the configured helpers (ALGs).
func (g *Gateway) Helpers() []string { return slices.Clone(g.pl.Load().alg.Names()) }

// NATStats returns the NAT engine's counters.
func (g *Gateway) NATStats() nat.Stats { return g.nat.Stats() }

// Stats returns the datapath counters, the NAT engine's (prefixed "nat_")
// and each uplink's ("uplink_NAME_") by name, as `tungate stats` prints
// them.
func (g *Gateway) Stats() map[string]uint64 {
	m := g.Counters.Snapshot()
	for k, v := range natStats(g.nat.Stats()) {
		m["nat_"+k] = v
	}
	// An uplink's own counters (dials pending and given up, host sockets,
	// budget drops), so `tungate stats` shows them beside the datapath's.
	for i, ic := range g.Config().Interface {
		if st, ok := g.UplinkStats(i); ok {
			for k, v := range st {
				m["uplink_"+ic.Name+"_"+k] = v
			}
		}
	}
	return m
}

// CloseWith has Close close ln too (the admin socket, whose file then goes
// away with the gateway). A gateway already closed closes ln at once.
func (g *Gateway) CloseWith(ln net.Listener) {
	g.adminMu.Lock()
	defer g.adminMu.Unlock()
	if g.closed.Load() {
		ln.Close()
		return
	}
	g.adminLn = append(g.adminLn, ln)
}
