package gateway

import (
	"net/netip"
	"sync/atomic"

	"github.com/gaissmai/bart"

	"tungate/alg"
	"tungate/nat"
	"tungate/rules"
)

// plane is everything the datapath reads that a reload or a link going
// down changes: built whole, never modified, swapped atomically. A worker
// loads it once per batch, so a batch sees one config from start to end.
//
// Interfaces are numbered by slot, not by their position in the file:
// a link keeps its slot for its whole life, so an index stored anywhere
// (conntrack never stores one, but rule counters, NAT rules, routes and
// the workers' queues do) keeps naming the same device when a reload
// reorders, renames, adds or removes interfaces. A removed interface's
// slot stays empty (nil) and is never reused, so nothing compiled for an
// older plane can reach a new link through it.
type plane struct {
	cfg *Config
	// links are the running links by slot; nil: a removed interface.
	links []*Link
	// slots[i] is the slot of cfg.Interface[i].
	slots []int
	// down[s]: slot s's link failed and is not attached again yet; its
	// routes are withdrawn.
	down []bool

	rules *rules.Ruleset
	alg   *alg.Registry
	// routes maps prefixes to a slot, or routeLocal for the gateway's own
	// addresses (host routes win by longest prefix).
	routes *bart.Table[int]
	// own[s] are slot s's own addresses (ICMP error sources).
	own [][]netip.Addr
	// bcast are the directed broadcast addresses of own IPv4 subnets.
	bcast [][4]byte
	// external[s]: slot s is one NAT translates out of; unsolicited SYNs
	// to its addresses get no answer (RFC 5382 REQ-4).
	external []bool
	limiter  *icmpLimiter
}

// link returns the link in slot s, nil for an empty or unknown slot.
func (pl *plane) link(s int) *Link {
	if s < 0 || s >= len(pl.links) {
		return nil
	}
	return pl.links[s]
}

// slotOf returns the slot of the interface at config position i, -1 for
// none.
func (pl *plane) slotOf(i int) int {
	if i < 0 || i >= len(pl.slots) {
		return -1
	}
	return pl.slots[i]
}

// ifaceNames are the interface names by slot ("" for an empty slot): what
// rules and NAT resolve `in`/`out` against.
func ifaceNames(cfg *Config, slots []int, n int) []string {
	names := make([]string, n)
	for i, s := range slots {
		names[s] = cfg.Interface[i].Name
	}
	return names
}

// natIfacesBySlot is natIfaces indexed by slot.
func natIfacesBySlot(cfg *Config, slots []int, n int) []nat.Iface {
	out := make([]nat.Iface, n)
	for i, s := range slots {
		ic := &cfg.Interface[i]
		out[s] = nat.Iface{Name: ic.Name, Addrs: append([]netip.Prefix(nil), ic.addrs...)}
	}
	return out
}

// rulesEnvBySlot is rulesEnv with interfaces indexed by slot.
func rulesEnvBySlot(cfg *Config, slots []int, n int, env rules.Env) rules.Env {
	env.Interfaces = ifaceNames(cfg, slots, n)
	peers := make([][]string, n)
	for i, s := range slots {
		peers[s] = cfg.Interface[i].PeerNames()
	}
	env.Peers = peers
	return env
}

// buildRoutes fills pl.routes, own and bcast from pl.cfg and pl.slots,
// leaving out the routes through a link that is down (withdrawn, as the
// kernel withdraws a down link's routes) but keeping its own addresses
// local.
func (pl *plane) buildRoutes() {
	cfg := pl.cfg
	n := len(pl.links)
	pl.routes = &bart.Table[int]{}
	pl.own = make([][]netip.Addr, n)
	pl.bcast = nil
	up := func(s int) bool { return s >= len(pl.down) || !pl.down[s] }
	for i := range cfg.Interface {
		s := pl.slots[i]
		for _, p := range cfg.Interface[i].addrs {
			if up(s) {
				pl.routes.Insert(p.Masked(), s)
			}
			pl.own[s] = append(pl.own[s], p.Addr())
		}
	}
	for _, r := range cfg.Route {
		if s := pl.slots[r.iface]; up(s) {
			pl.routes.Insert(r.prefix, s)
		}
	}
	// An uplink's virtual addresses (host_loopback, dns) are reached
	// through it whatever the routes say: they are often inside the
	// container's own subnet, as slirp4netns's 10.0.2.2 and 10.0.2.3 are.
	for i := range cfg.Interface {
		ic := &cfg.Interface[i]
		if !ic.IsUplink() || !up(pl.slots[i]) {
			continue
		}
		for _, s := range append(append([]string(nil), ic.HostLoopback...), ic.DNS...) {
			if a, err := netip.ParseAddr(s); err == nil {
				a = a.Unmap()
				pl.routes.Insert(netip.PrefixFrom(a, a.BitLen()), pl.slots[i])
			}
		}
	}
	for i := range cfg.Interface {
		pl.bcast = append(pl.bcast, subnetBroadcasts(cfg.Interface[i].addrs)...)
	}
	// Own addresses last: a host route is the longest match there is.
	for i := range cfg.Interface {
		for _, p := range cfg.Interface[i].addrs {
			pl.routes.Insert(netip.PrefixFrom(p.Addr(), p.Addr().BitLen()), routeLocal)
		}
	}
}

// linkState is what a link keeps across reloads, whatever its settings
// become: its counters and whether it is up.
type linkState struct {
	ctr linkCounters
	// ident is the device identity a reload matches the link by.
	ident string
	// removed: a reload removed the interface; its reader's end is not a
	// failure.
	removed atomic.Bool
	// down: the device failed; the reason is in downReason.
	down       atomic.Bool
	downReason atomic.Pointer[string]
	// gen counts the link's attachments: a reattached device is a new
	// generation, so a stale reader's end is told from the current one's.
	gen atomic.Uint64
	// capture records the link's packets while `tungate capture` runs
	// (capture.go); nil otherwise. Here, not on Link, so a reload that
	// makes a new Link around the device keeps the capture going.
	capture atomic.Pointer[Capture]
}
