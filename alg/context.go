package alg

import (
	"bytes"

	"go.uber.org/zap"

	"tungate/conntrack"
	"tungate/packet"
)

// Context is what a helper sees of one packet, and its means to act: create
// expectations, rewrite payload, keep per-connection state. It is reused
// for every packet of its connection (no allocation per packet) and valid
// only during Help.
type Context struct {
	// Conn is the connection, locked during Help.
	Conn *conntrack.Conn
	// Dir and Info are the packet's direction and ctinfo.
	Dir  conntrack.Dir
	Info conntrack.Info
	// Packet is the packet, already translated for its direction.
	Packet *packet.Parsed
	// Data is the new payload: for TCP the bytes after everything seen in
	// this direction, in stream order; for UDP the datagram. Mangle
	// updates it.
	Data []byte
	// OutOfOrder (TCP) says the segment starts beyond a hole: Data is nil.
	// A helper that must rewrite what this direction sends drops such a
	// segment, since it cannot parse it yet and the peer must not get it
	// unrewritten; the sender resends it after the hole is filled.
	OutOfOrder bool
	// Gap (TCP) says bytes before Data were never shown to the helper (the
	// connection was picked up mid-stream, or the helper accepted an
	// out-of-order segment): Data may start in the middle of a message.
	Gap bool
	// State is the helper's per-connection state; it survives across
	// packets of the connection and dies with it.
	State any

	m   *Registry
	cs  *connState
	ext *conntrack.Ext
	// dataOff is Data's offset in the payload; seq is the original
	// sequence number of Data[0] (TCP).
	dataOff int
	seq     uint32
	// delta is the size change of this packet's rewrites so far; mangledTo
	// the end of the last one in Data coordinates.
	delta     int
	mangledTo int
	// adjPos is the original sequence number of the first size-changing
	// rewrite (the seqadj correction position).
	adjPos uint32
	adjSet bool
	// rewrites0 is how many rewrites the direction remembered before this
	// packet; a dropped packet's own are taken back.
	rewrites0 int
}

// Table returns the connection table.
func (x *Context) Table() *conntrack.Table { return x.m.table }

// NAT returns the NAT engine, nil when none is configured.
func (x *Context) NAT() NAT { return x.m.nat }

// Log returns the (rate-limited) logger.
func (x *Context) Log() *zap.Logger { return x.m.log }

// Stats returns the registry's counters.
func (x *Context) Stats() *Stats { return &x.m.Stats }

// Mangle replaces Data[off:off+oldLen] with repl in the packet, fixing
// lengths and checksums; Data is updated. Rewrites of one packet must come
// in ascending order, at most maxRewrites of them. For TCP, a length
// change is recorded as a sequence adjustment of the connection, and the
// rewrite is remembered so that retransmissions of these bytes are
// rewritten the same way; if the helper then drops the packet, both are
// taken back.
func (x *Context) Mangle(off, oldLen int, repl []byte) error {
	if off < x.mangledTo || oldLen < 0 || off+oldLen > len(x.Data) {
		return ErrMangleRange
	}
	p := x.Packet
	tcp := p.Proto == packet.ProtoTCP
	if tcp && len(x.cs.tcp[x.Dir].rewrites)-x.rewrites0 >= maxRewrites {
		return ErrTooManyRewrites
	}
	var old []byte
	if tcp {
		old = bytes.Clone(x.Data[off : off+oldLen])
	}
	origSeq := x.seq + uint32(off-x.delta)
	if err := p.ReplacePayload(x.dataOff+off, oldLen, repl); err != nil {
		return err
	}
	x.Data = p.Payload()[x.dataOff:]
	d := len(repl) - oldLen
	if tcp {
		x.cs.tcp[x.Dir].remember(rewrite{seq: origSeq, old: old, new: bytes.Clone(repl)})
		if d != 0 && !x.adjSet {
			x.adjPos, x.adjSet = origSeq, true
		}
	}
	x.delta += d
	x.mangledTo = off + len(repl)
	x.m.Stats.Mangled.Add(1)
	return nil
}

// Expect registers e (Linux's nf_ct_expect_related); the master's oldest
// expectation of the same helper and class goes when it has max already.
func (x *Context) Expect(e *conntrack.Expectation, max int) error {
	if err := x.m.table.Expect(e, max); err != nil {
		return err
	}
	x.m.Stats.Expected.Add(1)
	return nil
}

// maxPortTries bounds the search for a free external port, as Linux's
// nf_nat_exp_find_port gives up after 128 attempts.
const maxPortTries = 128

// ExpectPort registers e on an external port of e.Tuple.Dst chosen through
// the NAT port allocator: pref if it is free, else the next one that the
// NAT reports free and no other master's expectation waits on. It sets
// e.Tuple.DstPort and returns the port (Linux's nf_nat_exp_find_port).
func (x *Context) ExpectPort(e *conntrack.Expectation, pref uint16, max int) (uint16, error) {
	m := x.m
	m.expMu.Lock()
	defer m.expMu.Unlock()
	var busy []uint16
	m.table.Expectations(func(o *conntrack.Expectation) bool {
		t := &o.Tuple
		if o.Master != e.Master && t.Proto == e.Tuple.Proto && t.Family == e.Tuple.Family && t.Dst == e.Tuple.Dst {
			busy = append(busy, t.DstPort)
		}
		return true
	})
	port := pref
	for range maxPortTries {
		if port == 0 {
			port = 1024 // wrapped: stay clear of the well-known ports
		}
		free := !containsPort(busy, port)
		if free && m.nat != nil {
			free = m.nat.PortAvailable(e.Tuple.Proto, e.Tuple.Dst, port)
		}
		if free {
			e.Tuple.DstPort = port
			if err := m.table.Expect(e, max); err != nil {
				return 0, err
			}
			m.Stats.Expected.Add(1)
			return port, nil
		}
		port++
	}
	return 0, ErrNoPort
}

func containsPort(ps []uint16, p uint16) bool {
	for _, q := range ps {
		if q == p {
			return true
		}
	}
	return false
}

// FollowMaster makes the connection e admits inherit the master's NAT
// (Linux's nf_nat_follow_master): its destination is bound to dst:dport
// (where it must really go) and its source to srcAs (how its sender is
// known on the other side), each only where it differs from what the
// connection carries. A source port already taken on srcAs is left to the
// NAT rules. Without a NAT engine nothing is bound.
func (x *Context) FollowMaster(e *conntrack.Expectation, srcAs, dst packet.Addr, dport uint16) {
	x.m.followMaster(e, &follow{srcAs: srcAs, dst: dst, dport: dport})
}

// follow is what FollowMaster binds an expected connection to, kept in
// Expectation.Data so the state file can save it (the callback cannot be).
type follow struct {
	srcAs, dst packet.Addr
	dport      uint16
}

// followMaster sets e's callback for f; without a NAT engine nothing is
// bound.
func (m *Registry) followMaster(e *conntrack.Expectation, f *follow) {
	nat := m.nat
	if nat == nil {
		return
	}
	srcAs, dst, dport := f.srcAs, f.dst, f.dport
	e.Data = f
	e.OnMatch = func(c *conntrack.Conn, _ *conntrack.Expectation) {
		t := *c.Tuple(conntrack.DirOriginal)
		if t.Dst != dst || t.DstPort != dport {
			if err := nat.BindDestination(c, dst, dport); err != nil {
				m.log.Warn("cannot bind the expected connection's destination",
					zap.Stringer("to", dst.NetIP(t.Family)), zap.Uint16("port", dport), zap.Error(err))
			}
		}
		if t.Src != srcAs && nat.PortAvailable(t.Proto, srcAs, t.SrcPort) {
			if err := nat.BindSource(c, srcAs, t.SrcPort); err != nil {
				m.log.Warn("cannot bind the expected connection's source",
					zap.Stringer("to", srcAs.NetIP(t.Family)), zap.Error(err))
			}
		}
	}
}
