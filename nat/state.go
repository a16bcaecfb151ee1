package nat

import (
	"encoding/binary"
	"errors"

	"tungate/conntrack"
	"tungate/packet"
)

// The engine's part of the conntrack state file (conntrack.StateCodec):
// each connection's binding, that is the mappings it uses, so that after
// a restart the same external ports are held again by the same internal
// endpoints and no new flow is given one of them. A mapping shared by
// several connections (endpoint-independent) is written with each and
// made once on restore, found by its key as a live decision would find it.
//
// A mapping refers to its rule by name ("nat.masquerade[0]") and, for
// masquerade, to its out interface by name, never by index: a restart
// with another config must not attach it to another rule. A connection
// whose rule is gone, whose masquerade interface is gone or has another
// address now, or whose port is held by something else (a port forward
// added meanwhile) is not restored (conntrack.DropError reasons
// "nat_rule", "interface", "nat_address", "nat_port").

var _ conntrack.StateCodec = (*Engine)(nil)

// StateName names the engine's blob.
func (e *Engine) StateName() string { return "nat" }

// hairpinName stands for the hairpin fallback rule (index -1).
const hairpinName = "hairpin"

// AppendConnState appends c's binding: for the source and the destination
// link, whether it is set and its mapping.
func (e *Engine) AppendConnState(b []byte, c *conntrack.Conn) []byte {
	if bd := bindingOf(c); bd == nil || bd.e != e {
		return b
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	bd := e.bindingOfLocked(c)
	if bd == nil || (bd.src.m == nil && bd.dstMapping() == nil) {
		return b
	}
	for _, m := range [2]*mapping{bd.src.m, bd.dstMapping()} {
		if m == nil {
			b = append(b, 0)
			continue
		}
		b = append(b, 1)
		b = e.appendMapping(b, m, c)
	}
	return b
}

// Mapping flags. The derived ones spare most mappings their endpoints:
// a source NAT mapping's external endpoint is what the reply tuple is
// addressed to, and its internal one the original tuple's source, so a
// million-entry file is a fifth smaller.
const (
	mapHasPort      = 1 << iota
	mapIndexed      // in byKey
	mapInByExt      // in byExt
	mapEIM          // endpoint-independent mapping
	mapEIF          // endpoint-independent filtering
	mapExtFromReply // external endpoint = reply tuple's destination
	mapKeyFromOrig  // internal endpoint = original tuple's source
	mapNoRemote     // no remote endpoint in the key (EIM)
)

// appendMapping writes one mapping of c; e.mu is held.
func (e *Engine) appendMapping(b []byte, m *mapping, c *conntrack.Conn) []byte {
	o, r := c.Tuple(conntrack.DirOriginal), c.Tuple(conntrack.DirReply)
	k := &m.key
	var flags uint8
	for i, v := range []bool{m.hasPort, m.indexed, m.inByExt, m.eim, m.eif,
		m.ext.fam == r.Family && m.ext.proto == r.Proto && m.ext.addr == r.Dst && m.port == r.DstPort,
		k.fam == o.Family && k.proto == o.Proto && k.addr == o.Src && k.port == o.SrcPort,
		k.raddr == (packet.Addr{}) && k.rport == 0} {
		if v {
			flags |= 1 << i
		}
	}
	b = append(b, flags)
	if flags&mapExtFromReply == 0 {
		b = append(b, m.ext.fam, m.ext.proto)
		b = conntrack.AppendStateAddr(b, &m.ext.addr, m.ext.fam)
		b = binary.LittleEndian.AppendUint16(b, m.port)
	}
	var rule, iface string
	if m.indexed {
		v := e.v.Load()
		switch r := v.ruleByID(m.key.rule); {
		case m.key.rule < 0:
			rule = hairpinName
		case r == nil:
			// Its rule was removed by a reload: saved nameless, the
			// restore drops it as a mapping whose rule is gone.
		default:
			rule = r.name
			if r.masq {
				iface = v.ifaces[r.m.out].name
			}
		}
	}
	b = conntrack.AppendStateString(b, rule)
	b = conntrack.AppendStateString(b, iface)
	fam := k.fam
	if fam != 4 && fam != 6 {
		fam = m.ext.fam // a Bind reservation's key has no family of its own
	}
	if flags&mapKeyFromOrig == 0 {
		b = append(b, k.fam, k.proto, fam)
		b = binary.LittleEndian.AppendUint16(b, k.port)
		b = conntrack.AppendStateAddr(b, &k.addr, fam)
	}
	if flags&mapNoRemote == 0 {
		b = binary.LittleEndian.AppendUint16(b, k.rport)
		b = conntrack.AppendStateAddr(b, &k.raddr, fam)
	}
	return b
}

// ruleByID returns the SNAT rule whose mapping identity (mapKey.rule) is
// id, nil for the hairpin fallback (-1) or a rule no longer configured.
func (v *setup) ruleByID(id int32) *snatRule {
	if id < 0 {
		return nil
	}
	for _, r := range v.rules.snat {
		if r.id == id {
			return r
		}
	}
	return nil
}

// savedMapping is a decoded mapping.
type savedMapping struct {
	ext                       setKey
	port                      uint16
	hasPort, indexed, inByExt bool
	eim, eif                  bool
	rule, iface               []byte // alias the record
	key                       mapKey
}

var errBadNATState = errors.New("nat: bad binding in the state file")

func decodeMapping(d *conntrack.StateDecoder, c *conntrack.Conn) savedMapping {
	o, r := c.Tuple(conntrack.DirOriginal), c.Tuple(conntrack.DirReply)
	var s savedMapping
	f := d.U8()
	s.hasPort, s.indexed, s.inByExt, s.eim, s.eif = f&mapHasPort != 0, f&mapIndexed != 0, f&mapInByExt != 0, f&mapEIM != 0, f&mapEIF != 0
	if f&mapExtFromReply != 0 {
		s.ext = setKey{r.Dst, r.Family, r.Proto}
		s.port = r.DstPort
	} else {
		s.ext.fam, s.ext.proto = d.U8(), d.U8()
		s.ext.addr = d.Addr(s.ext.fam)
		s.port = d.U16()
	}
	s.rule, s.iface = d.Bytes(), d.Bytes()
	fam := o.Family
	if f&mapKeyFromOrig != 0 {
		s.key.fam, s.key.proto, s.key.addr, s.key.port = o.Family, o.Proto, o.Src, o.SrcPort
	} else {
		s.key.fam, s.key.proto, fam = d.U8(), d.U8(), d.U8()
		s.key.port = d.U16()
		s.key.addr = d.Addr(fam)
	}
	if f&mapNoRemote == 0 {
		s.key.rport = d.U16()
		s.key.raddr = d.Addr(fam)
	}
	if s.inByExt && !s.indexed {
		d.Fail(errBadNATState)
	}
	return s
}

func drop(reason, msg string) error { return &conntrack.DropError{Reason: reason, Msg: msg} }

// RestoreConnState holds c's mappings again and binds c to them. c is not
// confirmed yet; a failure leaves what was bound for the table's delete
// (the destroy hook) to release.
func (e *Engine) RestoreConnState(c *conntrack.Conn, d *conntrack.StateDecoder) error {
	var saved [2]savedMapping
	var has [2]bool
	for i := range saved {
		if has[i] = d.Bool(); has[i] {
			saved[i] = decodeMapping(d, c)
		}
	}
	if err := d.Err(); err != nil {
		return err
	}
	for i := range saved {
		if has[i] {
			if err := e.restoreLink(c, i == 1, &saved[i]); err != nil {
				return err
			}
		}
	}
	return nil
}

// restoreLink makes (or finds) the mapping s describes and attaches c to
// it, as its source link or (dst) its destination link.
func (e *Engine) restoreLink(c *conntrack.Conn, dst bool, s *savedMapping) error {
	if s.ext.fam != 4 && s.ext.fam != 6 {
		return errBadNATState
	}
	var r *snatRule
	if s.indexed {
		var err error
		if r, s.key.rule, err = e.ruleNamed(s); err != nil {
			return err
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	var m *mapping
	var h uint64
	if s.indexed {
		h = s.key.hash(e.seed)
		m = e.byKey.findKey(&s.key, h)
		if m != nil && (m.ext != s.ext || m.port != s.port) {
			return drop("nat_port", "the mapping of this endpoint holds another port")
		}
	}
	if m == nil {
		ps := e.portSetLocked(s.ext)
		if s.hasPort && !ps.take(s.port) {
			return drop("nat_port", "the external port is held by another mapping or a port forward")
		}
		m = e.newMappingLocked(s.ext, ps, s.port, s.key.addr, s.key.port)
		m.hasPort = s.hasPort
		if s.indexed {
			m.key, m.indexed = s.key, true
			m.eim, m.eif = s.eim, s.eif
			if r != nil {
				m.eim, m.eif = r.eim, r.eif
			}
			e.byKey.insert(m, h)
			if s.inByExt {
				if e.byExt.findExt(s.ext, s.port, e.seed) != nil {
					e.freeLocked(m)
					return drop("nat_port", "another mapping answers on the external port")
				}
				e.byExt.insert(m, extHash(s.ext, s.port, e.seed))
				m.inByExt = true
			}
		}
	}
	b := e.bindingLocked(c)
	l := &b.src
	if dst {
		l = b.dstLinkLocked()
	}
	if l.m != nil {
		return errBadNATState
	}
	e.attachLocked(l, m, c)
	return nil
}

// ruleNamed finds the rule a saved mapping names and checks it still
// translates to the saved address.
func (e *Engine) ruleNamed(s *savedMapping) (*snatRule, int32, error) {
	if string(s.rule) == hairpinName {
		return nil, -1, nil
	}
	v := e.v.Load()
	for _, r := range v.rules.snat {
		if r.name != string(s.rule) {
			continue
		}
		if r.masq {
			fi := -1
			for j := range v.ifaces {
				if v.ifaces[j].name == string(s.iface) {
					fi = j
				}
			}
			if fi < 0 {
				return nil, 0, drop("interface", "interface "+string(s.iface)+" is gone")
			}
			if r.m.out != fi {
				return nil, 0, drop("nat_rule", r.name+" masquerades out of another interface now")
			}
			f := &v.ifaces[fi]
			if (s.ext.fam == 4 && (!f.has4 || f.addr4 != s.ext.addr)) || (s.ext.fam == 6 && (!f.has6 || f.addr6 != s.ext.addr)) {
				return nil, 0, drop("nat_address", "interface "+string(s.iface)+" has another address now")
			}
		} else if r.pool.fam != s.ext.fam || !r.pool.contains(s.ext.addr.NetIP(s.ext.fam)) {
			return nil, 0, drop("nat_address", r.name+" no longer translates to the saved address")
		}
		return r, r.id, nil
	}
	return nil, 0, drop("nat_rule", "rule "+string(s.rule)+" is gone")
}

// AppendExpectationState appends nothing: an expectation's NAT is its
// helper's (alg saves the follow-master binding).
func (e *Engine) AppendExpectationState(b []byte, _ *conntrack.Expectation) []byte { return b }

// RestoreExpectationState accepts only the empty blob it writes.
func (e *Engine) RestoreExpectationState(_ *conntrack.Expectation, d *conntrack.StateDecoder) error {
	return nil
}
