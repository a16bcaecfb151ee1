package uplink

import (
	"bufio"
	"fmt"
	"net/netip"
	"os"
	"strings"
)

// via says how a destination the container named was mapped to the host's.
type via uint8

const (
	viaDirect   via = iota
	viaDNS          // the virtual resolver, sent to a host resolver
	viaLoopback     // a virtual host-loopback address, sent to 127.0.0.1 / ::1
)

// hostDest maps the destination the container named to the one the host
// socket sends to. ok is false for a destination the config forbids: the
// host's loopback without allow_host_loopback, and the virtual resolver on
// a port other than 53 or with no host resolver of a usable family.
func (l *Link) hostDest(dst netip.AddrPort) (host netip.AddrPort, v via, ok bool) {
	a := dst.Addr()
	switch {
	case a == l.cfg.dns4 && a.IsValid(), a == l.cfg.dns6 && a.IsValid():
		r := l.resolver4
		if a.Is6() {
			r = l.resolver6
		}
		if dst.Port() != 53 || !r.IsValid() {
			return dst, viaDNS, false
		}
		return r, viaDNS, true
	case a == l.cfg.hostLoopback4 && a.IsValid():
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), dst.Port()), viaLoopback, l.cfg.AllowHostLoopback
	case a == l.cfg.hostLoopback6 && a.IsValid():
		return netip.AddrPortFrom(netip.IPv6Loopback(), dst.Port()), viaLoopback, l.cfg.AllowHostLoopback
	}
	// The kernel takes 0.0.0.0 and :: for "this host", so they are the
	// host's loopback too; so is an IPv4-mapped loopback.
	a = a.Unmap()
	if a.IsLoopback() || a.IsUnspecified() {
		return dst, viaDirect, l.cfg.AllowHostLoopback
	}
	return dst, viaDirect, true
}

// loadResolvers picks the host resolvers behind the virtual DNS addresses
// from resolv.conf: the first nameserver of each family. The endpoint
// sockets are of the container packet's family, so an IPv6 query cannot
// go to an IPv4 resolver.
func (l *Link) loadResolvers() error {
	f, err := os.Open(l.cfg.ResolvConf)
	if err != nil {
		return fmt.Errorf("resolv_conf: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 || fields[0] != "nameserver" {
			continue
		}
		a, err := netip.ParseAddr(fields[1])
		if err != nil || a.Zone() != "" {
			continue // a link-local resolver needs an interface the container has no say in
		}
		a = a.Unmap()
		ap := netip.AddrPortFrom(a, 53)
		if a.Is4() && !l.resolver4.IsValid() {
			l.resolver4 = ap
		}
		if a.Is6() && !l.resolver6.IsValid() {
			l.resolver6 = ap
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("resolv_conf: %w", err)
	}
	if !l.resolver4.IsValid() && !l.resolver6.IsValid() {
		return fmt.Errorf("resolv_conf: %s names no usable nameserver for dns", l.cfg.ResolvConf)
	}
	return nil
}
