// Package nat is tungate's NAT engine: source NAT (masquerade, SNAT),
// destination NAT (port forwards), 1:1 prefix mapping (NETMAP, NPTv6) and
// hairpinning, for IPv4 and IPv6, in the shape of Linux's nf_nat.
//
// NAT is decided once per connection, on its first packet, and stored as the
// connection's reply tuple: the translated addresses and ports are what the
// reply carries, so conntrack finds replies by the reply tuple alone, and
// every later packet is rewritten from the two tuples with no lookup and no
// lock (Linux's nf_nat_packet/nf_nat_manip_pkt). Mapping state — which
// external port an internal endpoint holds, RFC 4787's endpoint-independent
// mappings — lives in the engine, refcounted by the connections using it and
// released from a conntrack destroy hook; it is touched on the NEW path only.
//
// A mapping owns its external endpoint against the gateway itself. A
// packet from outside to a mapping that its filtering refuses (RFC 4787
// REQ-8's address-and-port-dependent filtering, the default) is not
// translated and goes to the gateway's input path, where the connection it
// makes, if the input rules accept it, is a local one (conntrack's
// StatusLocal). Local connections yield their tuples to translated ones:
// the table's Taken does not count them and Confirm deletes them for a
// connection that needs their tuple. So the stranger's packet never costs
// the mapping its later flow to that stranger, which keeps the mapping's
// external port (RFC 4787 REQ-1; UDP hole punching) and gets the
// stranger's packets as its replies — for TCP the simultaneous open of RFC
// 5382 — where Linux keeps the local entry and moves the flow to another
// port. Nor does a local connection made before a port was mapped move a
// new mapping off its preserved port (REQ-3).
package nat

import (
	"errors"
	"math/rand/v2"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"go.uber.org/zap"

	"tungate/conntrack"
	"tungate/internal/ratelimit"
	"tungate/packet"
)

// Iface is one of the gateway's interfaces as NAT sees it: its name and own
// addresses. Interfaces are referred to by their index in the list New gets.
type Iface struct {
	// Name is the interface's name in the configuration.
	Name string
	// Addrs are its own addresses: the first IPv4 one and the first global
	// IPv6 one are what masquerade translates to.
	Addrs []netip.Prefix
}

// Manip is the kind of translation Bind sets: Linux's nf_nat_manip_type.
type Manip uint8

// Manip types.
const (
	// ManipSrc makes the connection's source appear as another address.
	ManipSrc Manip = iota
	// ManipDst sends the connection to another destination.
	ManipDst
)

// Errors returned by Bind.
var (
	ErrConfirmed = errors.New("nat: connection already confirmed")
	ErrBound     = errors.New("nat: NAT of this kind already decided for the connection")
	ErrFamily    = errors.New("nat: address family differs from the connection's")
	ErrPortInUse = errors.New("nat: port in use")
	ErrClash     = errors.New("nat: translated tuple already in use")
)

// Stats are the engine's counters.
type Stats struct {
	// Mappings is the number of live port mappings (endpoint-independent
	// or not, and explicit Bind reservations).
	Mappings uint64
	// MappingsCreated counts mappings ever made.
	MappingsCreated uint64
	// SNAT, DNAT and Netmap count connections translated by each kind of
	// rule; Hairpin those whose source was translated for hairpinning.
	SNAT, DNAT, Netmap, Hairpin uint64
	// EIFAdmitted counts inbound connections let in to an existing mapping
	// by endpoint-independent filtering.
	EIFAdmitted uint64
	// PortExhausted counts NEW packets dropped because no port was free.
	PortExhausted uint64
	// NoAddress counts NEW packets dropped because the masquerade
	// interface had no address of the packet's family.
	NoAddress uint64
	// Clash counts NEW packets dropped because their translated tuple was
	// taken by another connection and could not be chosen differently.
	Clash uint64
	// ICMPErrors counts ICMP errors translated; BadICMPErrors those dropped
	// for a bad ICMP checksum or quoted IP header checksum (RFC 5508 REQ-3a).
	ICMPErrors, BadICMPErrors uint64
	// NetmapUntranslatable counts packets NPTv6 cannot map (RFC 6296: an
	// adjustment word of 0xFFFF).
	NetmapUntranslatable uint64
}

type counters struct {
	mappings, mappingsCreated   atomic.Int64
	snat, dnat, netmap, hairpin atomic.Uint64
	eifAdmitted                 atomic.Uint64
	portExhausted, noAddress    atomic.Uint64
	clash                       atomic.Uint64
	icmpErrors, badICMPErrors   atomic.Uint64
	netmapUntranslatable        atomic.Uint64
}

// rrCounter is a round-robin position, padded so two rules' counters do
// not share a cache line on the NEW path.
type rrCounter struct {
	n atomic.Uint32
	_ [60]byte
}

// ifaceInfo is what the engine keeps per interface.
type ifaceInfo struct {
	name     string
	addr4    packet.Addr // masquerade address, valid when has4
	addr6    packet.Addr
	has4     bool
	has6     bool
	external bool
}

// setKey names one port set: an external address of a family and protocol.
type setKey struct {
	addr  packet.Addr
	fam   uint8
	proto uint8
}

// mapKey names a mapping by rule and internal endpoint; for
// address-and-port-dependent mappings the remote endpoint too.
type mapKey struct {
	rule  int32
	fam   uint8
	proto uint8
	port  uint16
	addr  packet.Addr
	rport uint16
	raddr packet.Addr
}

// mapping is one external address:port held for an internal endpoint (or
// for one connection, for Bind reservations); key.addr:key.port is the
// internal endpoint. Guarded by Engine.mu. Freed mappings go back to the
// engine's pool (newMappingLocked): nothing may keep a pointer to one it
// does not hold through a link.
type mapping struct {
	key     mapKey
	indexed bool // in Engine.byKey
	inByExt bool // in Engine.byExt (endpoint-independent, with ports)
	eim     bool
	eif     bool
	ext     setKey   // external address, family, protocol
	ps      *portSet // the set of ext
	port    uint16   // external port / ICMP identifier
	hasPort bool     // port is held in ps
	users   *link    // connections using the mapping, oldest first
	tail    *link
	n       int
	// next chains the free pool. The indexes keep the mappings' hashes
	// in their slots; removing one computes it again from the key, which
	// keeps a mapping in the 128-byte size class.
	next *mapping
}

// A mapping must stay in the 128-byte size class (see above): a NATed
// connection that is not reusing an endpoint's mapping has one.
var _ = [128 - unsafe.Sizeof(mapping{})]struct{}{}

// link ties one connection to one mapping.
type link struct {
	m          *mapping
	c          *conntrack.Conn
	prev, next *link
}

// binding is the engine's per-connection state (conntrack Conn.NATState). It is
// pooled like mappings: the destroy hook gives it back, and the dead
// connection's NAT may still point at it, so it is c's only while c is
// its owner (read and written under Engine.mu).
//
// It is 48 bytes, the allocator's 48-byte class, because every NATed
// connection has one (a million-entry table pays it a million times): the
// owner is src.c, kept while src holds no mapping, rather than a field of
// its own; the destination link, which only connections translated by a
// mapping's destination need (EIM hairpin, EIF, a ManipDst Bind to an
// own port), is allocated on first use (dstLinkLocked) and stays with the
// binding through the pool; and the pool is a slice, not a chain through
// a field. It was 88 bytes (96 with rounding) with all three inline.
type binding struct {
	e   *Engine // set once, when made
	src link    // the mapping the source was translated to; src.c is the owner, nil while pooled
	dst *link   // the mapping the destination was translated by; nil until needed
}

// A binding must stay in the 48-byte size class (see above).
var _ = [48 - unsafe.Sizeof(binding{})]struct{}{}

// owner is the connection the binding belongs to, nil while pooled.
func (b *binding) owner() *conntrack.Conn { return b.src.c }

// dstLinkLocked returns b's destination link, allocating it the first
// time; e.mu is held.
func (b *binding) dstLinkLocked() *link {
	if b.dst == nil {
		b.dst = new(link)
	}
	return b.dst
}

// dstMapping is the mapping b's destination link holds, nil for none.
func (b *binding) dstMapping() *mapping {
	if b.dst == nil {
		return nil
	}
	return b.dst.m
}

// maxPooled bounds each of the engine's pools of free mappings and
// bindings: enough to absorb the churn of connections ending and starting,
// while a burst's worth goes back to the garbage collector.
const maxPooled = 1024

// Engine is the NAT engine. Its packet methods are safe for concurrent use.
type Engine struct {
	table *conntrack.Table
	log   *zap.Logger
	// v is the configuration in force: rules and interfaces, replaced
	// whole by Apply (a reload). A decision loads it once.
	v atomic.Pointer[setup]
	// nextID numbers the snat rules of later configurations (mapKey.rule);
	// guarded by mu.
	nextID int32
	// hairpinRule is used for a hairpinned client no snat/masquerade rule
	// matches: the address the client connected to, ports kept.
	hairpinRule snatRule
	// extra are the reservations of forwards outside the rules (Reserve);
	// guarded by mu.
	extra []Reservation

	// mu guards sets, byKey, byExt, the pools, every mapping's fields and
	// every binding's owner and links. It is taken on the NEW path only
	// (decisions, Bind, PortAvailable) and in the destroy hook; never while
	// calling into the conntrack table, whose lookups may delete an expired
	// connection and so run the hook.
	mu    sync.Mutex
	sets  map[setKey]*portSet
	byKey mapIndex // mappings by rule and internal endpoint (mapKey)
	byExt mapIndex // endpoint-independent mappings by external endpoint
	// seed keys the indexes' hashes, so internal hosts cannot pick
	// endpoints that collide.
	seed uint64
	// freeMaps and freeBinds are the pools (freeMaps chained through
	// next, nFreeMaps its length; freeBinds a stack of at most
	// maxPooled).
	freeMaps  *mapping
	freeBinds []*binding
	nFreeMaps int

	st     counters
	logTAT atomic.Int64 // logLimited's bucket (ratelimit.Rate.Allow)
	quiet  atomic.Int64 // log lines suppressed since the last one
}

// setup is one configuration of the engine: compiled rules and the
// interfaces they refer to by index. It never changes once built.
type setup struct {
	rules  *compiled
	ifaces []ifaceInfo
	// own are the gateway's own addresses; the default DNAT destination
	// and the only addresses mappings can be reached on.
	own []ownAddr
	// hasExternal: some interface is external. Without one, only a
	// connection that leaves by the interface it came in on is hairpinned.
	hasExternal bool
}

// New builds an engine for cfg over the gateway's interfaces and registers
// its destroy hook on table.
func New(cfg Config, ifaces []Iface, table *conntrack.Table, log *zap.Logger) (*Engine, error) {
	v, err := newSetup(&cfg, ifaces)
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = zap.NewNop()
	}
	e := &Engine{
		table: table,
		log:   log,
		sets:  map[setKey]*portSet{},
		byKey: newMapIndex(),
		byExt: newMapIndex(),
		seed:  rand.Uint64(),
	}
	for i, r := range v.rules.snat {
		r.id = int32(i)
	}
	e.nextID = int32(len(v.rules.snat))
	e.v.Store(v)
	e.hairpinRule = snatRule{id: -1, name: "hairpin", m: matcher{in: -1, out: -1, proto: protoAny}, eim: true, ownerIface: -1}
	table.AddDestroyHook(e.destroy)
	return e, nil
}

// newSetup compiles cfg over ifaces.
func newSetup(cfg *Config, ifaces []Iface) (*setup, error) {
	names := make([]string, len(ifaces))
	for i, f := range ifaces {
		names[i] = f.Name
	}
	rules, err := compile(cfg, names, ifaces)
	if err != nil {
		return nil, err
	}
	v := &setup{rules: rules, ifaces: make([]ifaceInfo, len(ifaces))}
	for i, f := range ifaces {
		fi := &v.ifaces[i]
		fi.name = f.Name
		for _, p := range f.Addrs {
			a := p.Addr().Unmap()
			fam := uint8(6)
			if a.Is4() {
				fam = 4
			}
			v.own = append(v.own, ownAddr{packet.AddrFrom(a), fam})
			if a.Is4() {
				if !fi.has4 {
					fi.addr4, fi.has4 = packet.AddrFrom(a), true
				}
				continue
			}
			// Prefer a global address for NAT66; a link-local one only
			// when there is nothing else.
			if !fi.has6 || (!a.IsLinkLocalUnicast() && fi.addr6.NetIP(6).IsLinkLocalUnicast()) {
				fi.addr6, fi.has6 = packet.AddrFrom(a), true
			}
		}
	}
	for _, r := range rules.snat {
		if r.ownerIface >= 0 {
			v.ifaces[r.ownerIface].external = true
		}
	}
	for _, r := range rules.netmap {
		v.ifaces[r.out].external = true
	}
	for _, fi := range v.ifaces {
		v.hasExternal = v.hasExternal || fi.external
	}
	return v, nil
}

// Prepared is a configuration compiled for an engine, ready to Apply.
type Prepared struct {
	e *Engine
	v *setup
}

// Prepare compiles a new configuration for the engine without applying
// it: the first half of a reload, the half that can fail.
func (e *Engine) Prepare(cfg Config, ifaces []Iface) (*Prepared, error) {
	v, err := newSetup(&cfg, ifaces)
	if err != nil {
		return nil, err
	}
	return &Prepared{e: e, v: v}, nil
}

// IsExternal is Engine.IsExternal for the prepared configuration.
func (p *Prepared) IsExternal(i int) bool { return p.v.isExternal(i) }

// Apply puts a prepared configuration in force. New connections are
// decided by its rules from now on; connections decided already keep
// their translation and their mappings (Linux's nf_nat behaves the same
// when the rules change). A snat or masquerade rule that is unchanged,
// translating to the same addresses, keeps its identity, so new flows of
// an endpoint keep reusing its endpoint-independent mapping; a changed
// rule starts mappings afresh. The ports of forwards the new rules add
// are reserved in the port sets, and those of forwards they remove
// released, as at start: a port a mapping holds when its forward is added
// stays that mapping's until its connections end, but the mapping is not
// reused for new ones (reserveLocked), and new connections to the port go
// to the forward, whose rule is matched before mappings are.
func (p *Prepared) Apply() {
	e := p.e
	old := e.v.Load()
	e.mu.Lock()
	for _, r := range p.v.rules.snat {
		r.id = -1
		for _, o := range old.rules.snat {
			if o.sig == r.sig && sameExt(old, o, p.v, r) {
				r.id = o.id
				break
			}
		}
		if r.id < 0 {
			r.id = e.nextID
			e.nextID++
		}
	}
	// The forwards' ports are reserved before the rules that forward them
	// are in force, under the lock every new mapping takes, so no mapping
	// made after Apply returns holds a port the new forwards use.
	e.reserveLocked(p.v)
	e.v.Store(p.v)
	e.mu.Unlock()
}

// sameExt reports whether rule a of setup va translates to the same
// addresses as rule b of setup vb (a masquerade's are its interface's).
func sameExt(va *setup, a *snatRule, vb *setup, b *snatRule) bool {
	if !a.masq {
		return true // the pool is in the signature
	}
	fa, fb := &va.ifaces[a.m.out], &vb.ifaces[b.m.out]
	return fa.addr4 == fb.addr4 && fa.has4 == fb.has4 && fa.addr6 == fb.addr6 && fa.has6 == fb.has6
}

// IsExternal reports whether interface i is one masquerade, snat or netmap
// rules translate out of: its addresses are external addresses, and an
// unsolicited connection to them that matched no mapping or forward should
// get no answer (RFC 5382 REQ-4).
func (e *Engine) IsExternal(i int) bool {
	return e.v.Load().isExternal(i)
}

func (v *setup) isExternal(i int) bool {
	return i >= 0 && i < len(v.ifaces) && v.ifaces[i].external
}

// Stats returns a snapshot of the counters.
func (e *Engine) Stats() Stats {
	s := &e.st
	return Stats{
		Mappings:             uint64(s.mappings.Load()),
		MappingsCreated:      uint64(s.mappingsCreated.Load()),
		SNAT:                 s.snat.Load(),
		DNAT:                 s.dnat.Load(),
		Netmap:               s.netmap.Load(),
		Hairpin:              s.hairpin.Load(),
		EIFAdmitted:          s.eifAdmitted.Load(),
		PortExhausted:        s.portExhausted.Load(),
		NoAddress:            s.noAddress.Load(),
		Clash:                s.clash.Load(),
		ICMPErrors:           s.icmpErrors.Load(),
		BadICMPErrors:        s.badICMPErrors.Load(),
		NetmapUntranslatable: s.netmapUntranslatable.Load(),
	}
}

// ownAddr is one of the gateway's addresses.
type ownAddr struct {
	addr packet.Addr
	fam  uint8
}

// isOwn reports whether a is one of the gateway's own addresses.
func (e *Engine) isOwn(a packet.Addr, fam uint8) bool { return e.v.Load().isOwn(a, fam) }

func (v *setup) isOwn(a packet.Addr, fam uint8) bool {
	for i := range v.own {
		if v.own[i].addr == a && v.own[i].fam == fam {
			return true
		}
	}
	return false
}

// logRate is one warning line a second: a flood of new connections that
// cannot be translated must not become a flood of log lines.
var logRate = ratelimit.Every(int64(time.Second), 1)

// logLimited logs at most one line a second, saying how many were held back.
func (e *Engine) logLimited(msg string, fields ...zap.Field) {
	if !logRate.Allow(&e.logTAT, e.table.Now()) {
		e.quiet.Add(1)
		return
	}
	if q := e.quiet.Swap(0); q > 0 {
		fields = append(fields, zap.Int64("suppressed", q))
	}
	e.log.Warn(msg, fields...)
}

// portSetLocked returns the port set of k, creating it with the ports of
// the port forwards that serve k's address reserved, so no mapping can
// ever shadow a forward. e.mu is held.
func (e *Engine) portSetLocked(k setKey) *portSet {
	if s := e.sets[k]; s != nil {
		return s
	}
	s := &portSet{}
	s.setReserved(e.reservedLocked(e.v.Load(), k), nil)
	e.sets[k] = s
	return s
}

// Reservation is a port range a port forward outside the engine's rules
// (the gateway's runtime forwards) holds on some external addresses: no
// mapping takes a port of it, as none takes a [[nat.dnat]] forward's.
type Reservation struct {
	// Proto is the protocol (packet.ProtoTCP, ...); 0 for TCP and UDP.
	Proto uint8
	// Lo and Hi bound the ports.
	Lo, Hi uint16
	// Dst are the addresses; none for the gateway's own addresses.
	Dst []netip.Prefix
}

// Reserve makes rs the reservations of forwards outside the rules,
// replacing the previous ones; Apply keeps them. Ports a mapping holds
// already stay its until its connections end (see portSet.setReserved).
func (e *Engine) Reserve(rs []Reservation) {
	e.mu.Lock()
	e.extra = append([]Reservation(nil), rs...)
	e.reserveLocked(e.v.Load())
	e.mu.Unlock()
}

// Reserved reports whether port forwards reserve port of proto on addr,
// so no new mapping takes it.
func (e *Engine) Reserved(addr netip.Addr, proto uint8, port uint16) bool {
	addr = addr.Unmap()
	fam := uint8(6)
	if addr.Is4() {
		fam = 4
	}
	k := setKey{packet.AddrFrom(addr), fam, proto}
	e.mu.Lock()
	defer e.mu.Unlock()
	if s := e.sets[k]; s != nil {
		return s.reserved(port)
	}
	res := e.reservedLocked(e.v.Load(), k)
	return res != nil && res[port>>6]&(1<<(port&63)) != 0
}

// reservedLocked returns the ports port forwards reserve on k's address
// under setup v and the extra reservations, nil for none. e.mu is held.
func (e *Engine) reservedLocked(v *setup, k setKey) *[1024]uint64 {
	var res *[1024]uint64
	add := func(lo, hi uint16) {
		if res == nil {
			res = new([1024]uint64)
		}
		for p := uint32(lo); p <= uint32(hi); p++ {
			res[p>>6] |= 1 << (p & 63)
		}
	}
	ip := k.addr.NetIP(k.fam)
	for _, r := range v.rules.dnat {
		if !r.m.dport.set || !r.m.protoMatch(k.proto) {
			continue
		}
		if r.ownDst {
			if !v.isOwn(k.addr, k.fam) {
				continue
			}
		} else if !prefixesMatch(r.m.dst, ip) {
			continue
		}
		add(r.m.dport.lo, r.m.dport.hi)
	}
	for _, r := range e.extra {
		if r.Proto != k.proto && (r.Proto != 0 || (k.proto != packet.ProtoTCP && k.proto != packet.ProtoUDP)) {
			continue
		}
		if len(r.Dst) == 0 {
			if !v.isOwn(k.addr, k.fam) {
				continue
			}
		} else if !prefixesMatch(r.Dst, ip) {
			continue
		}
		add(r.Lo, r.Hi)
	}
	return res
}

// reserveLocked brings every port set's reservations in line with setup v
// (a reload, a runtime forward added or removed). An endpoint-independent
// mapping that holds a port newly reserved leaves the index: its
// connections keep it, but no new connection reuses it, no hairpin or
// inbound connection finds it, and its endpoint's next flow gets a new
// mapping. e.mu is held.
func (e *Engine) reserveLocked(v *setup) {
	var taken []uint16
	for k, s := range e.sets {
		taken = s.setReserved(e.reservedLocked(v, k), taken[:0])
		for _, p := range taken {
			m := e.byExt.findExt(k, p, e.seed)
			if m == nil || !m.indexed {
				continue
			}
			e.byKey.remove(m, m.key.hash(e.seed))
			if m.inByExt {
				e.byExt.remove(m, extHash(m.ext, m.port, e.seed))
			}
			m.indexed, m.inByExt = false, false
		}
	}
}

// newMappingLocked makes a mapping holding port in ps, the set of k
// (already taken there), for the internal endpoint a:p, and counts it.
func (e *Engine) newMappingLocked(k setKey, ps *portSet, port uint16, a packet.Addr, p uint16) *mapping {
	e.st.mappings.Add(1)
	e.st.mappingsCreated.Add(1)
	m := e.freeMaps
	if m != nil {
		e.freeMaps, m.next = m.next, nil
		e.nFreeMaps--
	} else {
		m = &mapping{}
	}
	m.ext, m.ps, m.port, m.hasPort = k, ps, port, true
	m.key = mapKey{addr: a, port: p}
	return m
}

// attachLocked records that c uses m through l.
func (e *Engine) attachLocked(l *link, m *mapping, c *conntrack.Conn) {
	l.m, l.c = m, c
	l.prev, l.next = m.tail, nil
	if m.tail != nil {
		m.tail.next = l
	} else {
		m.users = l
	}
	m.tail = l
	m.n++
}

// detachLocked drops l's use of its mapping and frees the mapping when it
// was the last.
func (e *Engine) detachLocked(l *link) {
	m := l.m
	if m == nil {
		return
	}
	if l.prev != nil {
		l.prev.next = l.next
	} else {
		m.users = l.next
	}
	if l.next != nil {
		l.next.prev = l.prev
	} else {
		m.tail = l.prev
	}
	// l.c stays: a binding's src.c is its owner whether or not src
	// holds a mapping (binding.owner).
	l.m, l.prev, l.next = nil, nil, nil
	m.n--
	if m.n == 0 {
		e.freeLocked(m)
	}
}

// freeLocked releases a mapping nobody uses and pools it.
func (e *Engine) freeLocked(m *mapping) {
	if m.indexed {
		// Indexed mappings are unique per key and external endpoint
		// (mapFor re-checks under the lock before publishing).
		e.byKey.remove(m, m.key.hash(e.seed))
		if m.inByExt {
			e.byExt.remove(m, extHash(m.ext, m.port, e.seed))
		}
	}
	if m.hasPort {
		m.ps.release(m.port)
	}
	e.st.mappings.Add(-1)
	*m = mapping{}
	if e.nFreeMaps < maxPooled {
		m.next = e.freeMaps
		e.freeMaps = m
		e.nFreeMaps++
	}
}

// bindingLocked returns c's binding, making it. Only before confirmation;
// e.mu is held.
func (e *Engine) bindingLocked(c *conntrack.Conn) *binding {
	if b := e.bindingOfLocked(c); b != nil {
		return b
	}
	var b *binding
	if n := len(e.freeBinds); n > 0 {
		b = e.freeBinds[n-1]
		e.freeBinds[n-1] = nil
		e.freeBinds = e.freeBinds[:n-1]
	} else {
		b = &binding{e: e}
	}
	b.src.c = c
	c.SetNATState(unsafe.Pointer(b))
	return b
}

// bindingOf is the binding c's NATState points at: only this package sets
// it, always to a *binding (of this or another engine).
func bindingOf(c *conntrack.Conn) *binding { return (*binding)(c.NATState()) }

// bindingOfLocked returns c's binding if it has one; e.mu is held.
func (e *Engine) bindingOfLocked(c *conntrack.Conn) *binding {
	// b.e is written once, before b is first published.
	if b := bindingOf(c); b != nil && b.e == e && b.owner() == c {
		return b
	}
	return nil
}

// destroy is the conntrack destroy hook: a dying connection gives back its
// uses of mappings, and its binding goes back to the pool.
func (e *Engine) destroy(c *conntrack.Conn) {
	if b := bindingOf(c); b == nil || b.e != e {
		return
	}
	e.mu.Lock()
	if b := e.bindingOfLocked(c); b != nil {
		e.detachLocked(&b.src)
		if b.dst != nil {
			e.detachLocked(b.dst)
			b.dst.c = nil
		}
		b.src.c = nil
		if len(e.freeBinds) < maxPooled {
			if e.freeBinds == nil {
				e.freeBinds = make([]*binding, 0, maxPooled)
			}
			e.freeBinds = append(e.freeBinds, b)
		}
	}
	e.mu.Unlock()
}
