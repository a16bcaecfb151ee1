package gateway

import "tungate/packet"

// rpfMode is an interface's reverse-path check ([[interface]] rpf), the
// anti-spoofing test of Linux's rp_filter, nftables' `fib saddr . iif oif
// missing drop` and pf's antispoof.
type rpfMode uint8

const (
	// rpfOff checks nothing (the default, and the behaviour before the
	// check existed).
	rpfOff rpfMode = iota
	// rpfStrict (rp_filter=1, RFC 3704 section 2.2): the route back to the
	// source must leave through the interface the packet came in on.
	rpfStrict
	// rpfLoose (rp_filter=2, RFC 3704 section 2.4): some route back to the
	// source must exist, through any interface. With a default route every
	// source but the gateway's own addresses has one, so loose mode then
	// refuses only those; it is meant for gateways without a default route
	// or for catching sources nobody routes (unallocated space without a
	// default, another site's prefixes).
	rpfLoose
)

// reversePath reports whether packet p, arriving on the worker's link,
// passes the link's reverse-path check. The gateway's own addresses never
// pass as a source: they come from outside only when forged (Linux refuses
// them as martian sources in fib_validate_source unless accept_local).
//
// One lookup in the routing table, through a one-entry cache like the
// forward route's: a batch mostly carries one flow.
func (w *worker) reversePath(p *packet.Parsed) bool {
	if w.rpValid && w.rpSrc == p.Src && w.rpVer == p.Version {
		return w.rpOK
	}
	out, ok := w.pl.routes.Lookup(p.SrcIP())
	switch {
	case !ok || out == routeLocal:
		ok = false
	case w.rpf == rpfStrict:
		ok = out == w.in
	}
	w.rpSrc, w.rpVer, w.rpOK, w.rpValid = p.Src, p.Version, ok, true
	return ok
}
