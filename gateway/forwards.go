package gateway

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"

	"go.uber.org/zap"

	"tungate/conntrack"
	"tungate/link/uplink"
	"tungate/nat"
	"tungate/packet"
)

// Runtime port forwards: added and removed while the gateway runs (the
// rootlesskit-shaped ports API), beside the [[nat.dnat]] forwards of the
// config. They are a layer of their own: the gateway holds them, not the
// config, so a reload keeps them and the status lists them apart. Each
// one is a host listener handed to an uplink like a configured forward;
// instead of a DNAT rule, the datapath binds a new connection that enters
// from that uplink on the forward's port to the forward's container
// address (nat.Engine.Bind), so the connection has the DNAT status the
// filter's `ct_status = ["dnat"]` rule admits and the container sees the
// real client address.

// RuntimeForward is one port forward added at run time, in the shape of
// rootlesskit's port.Spec plus its id.
type RuntimeForward struct {
	ID int `json:"id"`
	// Proto is tcp, tcp4, tcp6, udp, udp4 or udp6 (tcp listens on both
	// families, tcp4 on IPv4 only).
	Proto string `json:"proto"`
	// ParentIP is the host address listened on; "" for all.
	ParentIP   string `json:"parentIP,omitempty"`
	ParentPort int    `json:"parentPort"`
	// ChildIP is the container's address; "" for the [namespace]
	// addresses of each family the forward listens on.
	ChildIP   string `json:"childIP,omitempty"`
	ChildPort int    `json:"childPort"`
	// Interface is the uplink the forward enters by.
	Interface string `json:"interface"`
}

// fwdKey is what the datapath looks a new connection up by.
type fwdKey struct {
	iface int
	proto uint8
	port  uint16
}

// fwdTarget is where a runtime forward sends a connection, by family.
type fwdTarget struct{ v4, v6 netip.AddrPort }

type runtimeForward struct {
	spec RuntimeForward
	key  fwdKey
	tgt  fwdTarget
	h    *uplink.Forward
	// parent is the host address listened on (invalid for all).
	parent netip.Addr
}

// runtimeForwards is the gateway's runtime layer of port forwards.
type runtimeForwards struct {
	mu   sync.Mutex // guards next and byID; serialises changes
	next int
	byID map[int]*runtimeForward
	// table is the datapath's copy-on-write view; nil when empty, so a
	// gateway without runtime forwards pays one atomic load per new
	// connection from an uplink.
	table atomic.Pointer[map[fwdKey]fwdTarget]
}

// ErrNoForward is RemoveForward's answer for an id that names none.
var ErrNoForward = errors.New("no such port forward")

// AddForward starts a port forward from the host to the container and
// returns it with its id filled in. The listener is open when it returns.
func (g *Gateway) AddForward(f RuntimeForward) (RuntimeForward, error) {
	iface, u, err := g.forwardUplink(f.Interface)
	if err != nil {
		return f, err
	}
	f.Interface = g.pl.Load().link(iface).Name
	var proto uint8
	fam := f.Proto[min(3, len(f.Proto)):]
	switch f.Proto {
	case "tcp", "tcp4", "tcp6":
		proto = packet.ProtoTCP
	case "udp", "udp4", "udp6":
		proto = packet.ProtoUDP
	default:
		return f, fmt.Errorf("proto %q: want tcp, tcp4, tcp6, udp, udp4 or udp6", f.Proto)
	}
	if f.ParentPort < 1 || f.ParentPort > 65535 {
		return f, fmt.Errorf("parentPort %d: out of range (1..65535)", f.ParentPort)
	}
	if f.ChildPort < 1 || f.ChildPort > 65535 {
		return f, fmt.Errorf("childPort %d: out of range (1..65535)", f.ChildPort)
	}
	var parent netip.Addr
	if f.ParentIP != "" {
		if parent, err = netip.ParseAddr(f.ParentIP); err != nil {
			return f, fmt.Errorf("parentIP: %w", err)
		}
		parent = parent.Unmap()
		if fam == "" && !parent.IsUnspecified() {
			// A host address is of one family: so is the listener.
			fam = "6"
			if parent.Is4() {
				fam = "4"
			}
		}
		if (fam == "4" && !parent.Is4()) || (fam == "6" && parent.Is4()) {
			return f, fmt.Errorf("parentIP %s is not an IPv%s address", parent, fam)
		}
	}
	var tgt fwdTarget
	port := uint16(f.ChildPort)
	if f.ChildIP != "" {
		child, err := netip.ParseAddr(f.ChildIP)
		if err != nil {
			return f, fmt.Errorf("childIP: %w", err)
		}
		child = child.Unmap()
		if (fam == "4" && !child.Is4()) || (fam == "6" && child.Is4()) {
			return f, fmt.Errorf("childIP %s is not an IPv%s address", child, fam)
		}
		if child.Is4() {
			tgt.v4, fam = netip.AddrPortFrom(child, port), "4"
		} else {
			tgt.v6, fam = netip.AddrPortFrom(child, port), "6"
		}
	} else {
		for _, p := range g.Config().Namespace.Prefixes() {
			a := p.Addr()
			switch {
			case a.Is4() && fam != "6" && !tgt.v4.IsValid():
				tgt.v4 = netip.AddrPortFrom(a, port)
			case a.Is6() && fam != "4" && !tgt.v6.IsValid():
				tgt.v6 = netip.AddrPortFrom(a, port)
			}
		}
		if !tgt.v4.IsValid() && !tgt.v6.IsValid() {
			return f, errors.New("childIP: needed (the config has no [namespace] address of the forward's family)")
		}
		if !tgt.v4.IsValid() {
			fam = "6"
		} else if !tgt.v6.IsValid() {
			fam = "4"
		}
	}
	key := fwdKey{iface: iface, proto: proto, port: uint16(f.ParentPort)}

	fw := &g.fwds
	fw.mu.Lock()
	defer fw.mu.Unlock()
	for _, o := range fw.byID {
		if o.key == key {
			return f, fmt.Errorf("%s port %d is forwarded already (id %d)", f.Proto[:3], f.ParentPort, o.spec.ID)
		}
	}
	host := ""
	if parent.IsValid() {
		host = parent.String()
	}
	addr := net.JoinHostPort(host, strconv.Itoa(f.ParentPort))
	var h *uplink.Forward
	if proto == packet.ProtoTCP {
		ln, err := net.Listen("tcp"+fam, addr)
		if err != nil {
			return f, err
		}
		h = u.ForwardTCP(ln, g.forwardDst)
	} else {
		ua, err := net.ResolveUDPAddr("udp"+fam, addr)
		if err != nil {
			return f, err
		}
		c, err := net.ListenUDP("udp"+fam, ua)
		if err != nil {
			return f, err
		}
		var d4, d6 netip.AddrPort
		if fam != "6" {
			d4 = g.forwardDst(netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(f.ParentPort)))
		}
		if fam != "4" {
			d6 = g.forwardDst(netip.AddrPortFrom(netip.IPv6Loopback(), uint16(f.ParentPort)))
		}
		h = u.ForwardUDP(c, d4, d6)
	}
	fw.next++
	f.ID = fw.next
	if fw.byID == nil {
		fw.byID = map[int]*runtimeForward{}
	}
	fw.byID[f.ID] = &runtimeForward{spec: f, key: key, tgt: tgt, h: h, parent: parent}
	g.reserveForwardsLocked()
	fw.publishLocked()
	g.log.Info("runtime port forward added", zap.Int("id", f.ID), zap.String("proto", f.Proto),
		zap.String("listen", addr), zap.Stringer("to4", tgt.v4), zap.Stringer("to6", tgt.v6))
	return f, nil
}

// reserveForwardsLocked reserves the runtime forwards' ports in the NAT
// engine's port sets, as [[nat.dnat]] forwards' are: masquerade never
// hands one out as a new mapping's source port. A connection enters by a
// forward with the gateway's own address as its destination (forwardDst)
// or, listening on a host address that is not loopback, that address; both
// are reserved. Called under fw.mu, before a new forward is published and
// after a removed one is withdrawn.
func (g *Gateway) reserveForwardsLocked() {
	rs := make([]nat.Reservation, 0, 2*len(g.fwds.byID))
	for _, f := range g.fwds.byID {
		r := nat.Reservation{Proto: f.key.proto, Lo: f.key.port, Hi: f.key.port}
		rs = append(rs, r)
		if f.parent.IsValid() && !f.parent.IsUnspecified() && !f.parent.IsLoopback() {
			r.Dst = []netip.Prefix{netip.PrefixFrom(f.parent, f.parent.BitLen())}
			rs = append(rs, r)
		}
	}
	g.nat.Reserve(rs)
}

// publishLocked rebuilds the datapath's table from byID. Called under mu.
func (fw *runtimeForwards) publishLocked() {
	if len(fw.byID) == 0 {
		fw.table.Store(nil)
		return
	}
	m := make(map[fwdKey]fwdTarget, len(fw.byID))
	for _, f := range fw.byID {
		m[f.key] = f.tgt
	}
	fw.table.Store(&m)
}

// RemoveForward stops runtime forward id: its host socket closes;
// connections it forwarded already go on.
func (g *Gateway) RemoveForward(id int) error {
	fw := &g.fwds
	fw.mu.Lock()
	defer fw.mu.Unlock()
	f, ok := fw.byID[id]
	if !ok {
		return fmt.Errorf("%w: id %d", ErrNoForward, id)
	}
	delete(fw.byID, id)
	fw.publishLocked()
	g.reserveForwardsLocked()
	f.h.Stop()
	g.log.Info("runtime port forward removed", zap.Int("id", id))
	return nil
}

// Forwards lists the runtime forwards by id.
func (g *Gateway) Forwards() []RuntimeForward {
	fw := &g.fwds
	fw.mu.Lock()
	out := make([]RuntimeForward, 0, len(fw.byID))
	for _, f := range fw.byID {
		out = append(out, f.spec)
	}
	fw.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// forwardUplink finds the uplink a forward enters by: the named one, or
// the only one.
func (g *Gateway) forwardUplink(name string) (int, *uplink.Link, error) {
	found := -1
	links := g.pl.Load().links // by slot, as the datapath's w.in is
	for i, l := range links {
		if l == nil {
			continue
		}
		if _, ok := l.Dev.(*uplink.Link); !ok {
			continue
		}
		if name == l.Name || (name == "" && found < 0) {
			found = i
			if name != "" {
				break
			}
		} else if name == "" {
			return 0, nil, errors.New("interface: the gateway has more than one uplink; name one")
		}
	}
	if found < 0 {
		if name != "" {
			return 0, nil, fmt.Errorf("interface %q: no such uplink", name)
		}
		return 0, nil, errors.New("the gateway has no uplink to forward from")
	}
	return found, links[found].Dev.(*uplink.Link), nil
}

// bindForward gives a new connection that entered from an uplink on a
// runtime forward's port its DNAT binding to the container, before
// Prerouting applies it. The datapath calls it for unconfirmed
// connections only.
func (g *Gateway) bindForward(c *conntrack.Conn, p *packet.Parsed, in int) {
	tab := g.fwds.table.Load()
	if tab == nil {
		return
	}
	t, ok := (*tab)[fwdKey{iface: in, proto: p.Proto, port: p.DstPort}]
	if !ok {
		return
	}
	to := t.v4
	if p.Version == 6 {
		to = t.v6
	}
	if !to.IsValid() || c.Status()&conntrack.StatusDstNATDone != 0 {
		return
	}
	if err := g.nat.Bind(c, nat.ManipDst, packet.AddrFrom(to.Addr()), to.Port()); err != nil {
		g.log.Debug("runtime port forward: bind", zap.Error(err))
	}
}
