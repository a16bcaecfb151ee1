package conntrack

import (
	"strconv"
	"sync"
	"time"

	"tungate/packet"
)

// Verdict is a tracker's word on one packet.
type Verdict uint8

// Tracker verdicts.
const (
	// Accept: the packet belongs to the connection; state was updated.
	Accept Verdict = iota
	// InvalidPacket: the packet does not fit the connection's state; it is
	// INVALID and changed nothing (Linux's -NF_ACCEPT).
	InvalidPacket
	// Reopen: the old connection is over (e.g. a SYN in TIME_WAIT); delete
	// it and track the packet as a new connection (Linux's -NF_REPEAT).
	Reopen
	// Ignore: the packet belongs to the connection but neither refreshes
	// its timer nor counts in its accounting (Linux returning NF_ACCEPT
	// before nf_ct_refresh_acct: TCP's IGNORE class, SCTP's ignored
	// chunks). The returned timeout is not used.
	Ignore
)

// Check is the outcome of a tracker's pre-lookup sanity check.
type Check uint8

// Check outcomes.
const (
	CheckOK Check = iota
	// CheckInvalid: malformed or bad checksum; INVALID without lookup.
	CheckInvalid
	// CheckUntracked: the packet is never tracked (e.g. IPv6 neighbour
	// discovery, Linux's noct types).
	CheckUntracked
)

// Tracker is one layer-4 protocol's connection tracking, in the shape of
// Linux's nf_conntrack_l4proto. The table calls it; it never sees the table.
type Tracker interface {
	// Name is the protocol name shown by ct list ("tcp", "unknown").
	Name() string
	// Tuple fills the protocol part of t (addresses are set) from p; false
	// means the packet cannot be tracked.
	Tuple(p *packet.Parsed, t *Tuple) bool
	// Invert fills the protocol part of inv for the reply of orig.
	Invert(orig, inv *Tuple)
	// Error checks a packet before lookup (checksum, header sanity).
	Error(p *packet.Parsed, cfg *Config) Check
	// New initialises the protocol state of a new connection from its
	// first packet; false refuses it (the packet is INVALID).
	New(c *Conn, p *packet.Parsed, cfg *Config, now int64) bool
	// Packet updates the state with a packet in direction dir and returns
	// the verdict and the connection's new timeout; changed reports a
	// protocol state change worth an UPDATE event.
	Packet(c *Conn, p *packet.Parsed, dir Dir, cfg *Config, now int64) (v Verdict, timeout time.Duration, changed bool)
	// AppendPorts appends the conntrack -L protocol fields of a tuple.
	AppendPorts(b []byte, t *Tuple) []byte
	// AppendState appends the state field ("ESTABLISHED ") or nothing.
	AppendState(b []byte, c *Conn) []byte
}

// missResolver is implemented by trackers that can find a connection for a
// tuple the hash misses (ESP learning the peer's SPI).
type missResolver interface {
	resolveMiss(t *Table, tu *Tuple, now int64) (*Conn, Dir)
}

// destroyer is implemented by trackers with state outside the connection.
type destroyer interface {
	destroy(c *Conn)
}

// inverter is implemented by trackers whose tuples do not all have a
// reply form (Linux's invert_tuple returning false: an ICMP type without
// a reply type). The table asks before inverting a tuple quoted in an
// ICMP error, so a quoted router advertisement cannot pose as an echo.
type inverter interface {
	invertible(t *Tuple) bool
}

// earlyDropper is implemented by trackers that let a full table drop some
// of their assured connections (Linux's can_early_drop: TCP in its closing
// states). Unassured connections can always be dropped.
type earlyDropper interface {
	canEarlyDrop(c *Conn) bool
}

var (
	registryMu sync.Mutex
	registry   [256]func() Tracker
)

// Register makes a tracker available for a protocol number to tables created
// afterwards. The built-in trackers register themselves.
func Register(proto uint8, f func() Tracker) {
	registryMu.Lock()
	registry[proto] = f
	registryMu.Unlock()
}

func init() {
	Register(packet.ProtoUDP, func() Tracker { return udpTracker{} })
	Register(packet.ProtoICMP, func() Tracker { return icmpTracker{v6: false} })
	Register(packet.ProtoICMPv6, func() Tracker { return icmpTracker{v6: true} })
	Register(packet.ProtoTCP, func() Tracker { return &tcpTracker{} })
	Register(packet.ProtoGRE, func() Tracker { return greTracker{} })
	Register(packet.ProtoESP, func() Tracker { return newESPTracker() })
	Register(packet.ProtoSCTP, func() Tracker { return &sctpTracker{} })
}

// ---------------------------------------------------------------- generic

// genericTracker tracks any protocol by addresses alone (Linux's
// nf_conntrack_proto_generic, shown as "unknown").
type genericTracker struct{}

func (genericTracker) Name() string                                               { return "unknown" }
func (genericTracker) Tuple(p *packet.Parsed, t *Tuple) bool                      { return true }
func (genericTracker) Invert(orig, inv *Tuple)                                    {}
func (genericTracker) Error(p *packet.Parsed, cfg *Config) Check                  { return CheckOK }
func (genericTracker) New(c *Conn, p *packet.Parsed, cfg *Config, now int64) bool { return true }
func (genericTracker) Packet(c *Conn, p *packet.Parsed, dir Dir, cfg *Config, now int64) (Verdict, time.Duration, bool) {
	return Accept, time.Duration(cfg.Timeouts.Generic), false
}
func (genericTracker) AppendPorts(b []byte, t *Tuple) []byte { return b }
func (genericTracker) AppendState(b []byte, c *Conn) []byte  { return b }

// ---------------------------------------------------------------- UDP

type udpTracker struct{}

func (udpTracker) Name() string { return "udp" }
func (udpTracker) Tuple(p *packet.Parsed, t *Tuple) bool {
	if !p.HasL4 {
		return false
	}
	t.SrcPort, t.DstPort = p.SrcPort, p.DstPort
	return true
}
func (udpTracker) Invert(orig, inv *Tuple) { inv.SrcPort, inv.DstPort = orig.DstPort, orig.SrcPort }
func (udpTracker) Error(p *packet.Parsed, cfg *Config) Check {
	if cfg.checksum() && !p.L4ChecksumValid() {
		return CheckInvalid
	}
	return CheckOK
}

// New starts the two-second clock after which a replied flow is a stream
// (Linux's proto.udp.stream_ts).
func (udpTracker) New(c *Conn, p *packet.Parsed, cfg *Config, now int64) bool {
	*c.proto.udpStreamTS() = now + int64(2*time.Second)
	return true
}

// Packet follows nf_conntrack_udp_packet: once a reply was seen and the flow
// is still active after two seconds it is a stream (ASSURED, long timeout).
func (udpTracker) Packet(c *Conn, p *packet.Parsed, dir Dir, cfg *Config, now int64) (Verdict, time.Duration, bool) {
	t := &cfg.Timeouts
	to := time.Duration(t.UDP)
	if c.node[DirOriginal].tuple.DstPort == 53 {
		to = time.Duration(t.UDPDNS)
	}
	st := c.Status()
	if st&StatusSeenReply == 0 {
		return Accept, to, false
	}
	changed := false
	if now > *c.proto.udpStreamTS() {
		to = time.Duration(t.UDPStream)
		if st&StatusAssured == 0 {
			changed = c.SetStatus(StatusAssured)
		}
	}
	return Accept, to, changed
}

func (udpTracker) AppendPorts(b []byte, t *Tuple) []byte { return appendPorts(b, t) }
func (udpTracker) AppendState(b []byte, c *Conn) []byte  { return b }

// ---------------------------------------------------------------- ICMP

// icmpTracker tracks echo request/reply by identifier (SrcPort) with the
// type/code in DstPort, so the reply tuple of a request names type 0/129.
type icmpTracker struct{ v6 bool }

func (i icmpTracker) Name() string {
	if i.v6 {
		return "icmpv6"
	}
	return "icmp"
}

// icmpInvert maps a query type to its reply type (Linux's invmap).
func icmpInvert(v6 bool, typ uint8) (uint8, bool) {
	if v6 {
		switch typ {
		case 128:
			return 129, true
		case 129:
			return 128, true
		case 139:
			return 140, true
		case 140:
			return 139, true
		}
		return 0, false
	}
	switch typ {
	case 8:
		return 0, true
	case 0:
		return 8, true
	case 13:
		return 14, true
	case 14:
		return 13, true
	case 15:
		return 16, true
	case 16:
		return 15, true
	case 17:
		return 18, true
	case 18:
		return 17, true
	}
	return 0, false
}

func (i icmpTracker) Tuple(p *packet.Parsed, t *Tuple) bool {
	if !p.HasL4 || i.v6 != (p.Version == 6) {
		return false
	}
	l4 := p.L4()
	t.SrcPort = uint16(l4[4])<<8 | uint16(l4[5])
	t.DstPort = uint16(p.ICMPType)<<8 | uint16(p.ICMPCode)
	return true
}

func (i icmpTracker) invertible(t *Tuple) bool {
	_, ok := icmpInvert(i.v6, uint8(t.DstPort>>8))
	return ok
}

func (i icmpTracker) Invert(orig, inv *Tuple) {
	typ, _ := icmpInvert(i.v6, uint8(orig.DstPort>>8))
	inv.SrcPort = orig.SrcPort
	inv.DstPort = uint16(typ)<<8 | orig.DstPort&0xff
}

// maxICMPType is the highest ICMP type Linux knows (NR_ICMP_TYPES); higher
// ones are INVALID (RFC 1122 3.2.2: unknown types are silently discarded).
const maxICMPType = 18

func (i icmpTracker) Error(p *packet.Parsed, cfg *Config) Check {
	if cfg.checksum() && !p.L4ChecksumValid() {
		return CheckInvalid
	}
	if i.v6 {
		switch p.ICMPType {
		case 130, 131, 132, 133, 134, 135, 136, 143:
			// MLD and router/neighbour discovery: link-local chatter that
			// is never tracked (Linux's noct_valid_new). Redirect (137)
			// is not in that list: it is INVALID, as in Linux.
			return CheckUntracked
		}
	} else if p.ICMPType > maxICMPType {
		return CheckInvalid
	}
	return CheckOK
}

// New accepts only query types that have a reply (Linux's valid_new).
func (i icmpTracker) New(c *Conn, p *packet.Parsed, cfg *Config, now int64) bool {
	if i.v6 {
		return p.ICMPType == 128 || p.ICMPType == 139
	}
	switch p.ICMPType {
	case 8, 13, 15, 17:
		return true
	}
	return false
}

func (i icmpTracker) Packet(c *Conn, p *packet.Parsed, dir Dir, cfg *Config, now int64) (Verdict, time.Duration, bool) {
	if i.v6 {
		return Accept, time.Duration(cfg.Timeouts.ICMPv6), false
	}
	return Accept, time.Duration(cfg.Timeouts.ICMP), false
}

func (i icmpTracker) AppendPorts(b []byte, t *Tuple) []byte {
	b = append(b, "type="...)
	b = strconv.AppendUint(b, uint64(t.DstPort>>8), 10)
	b = append(b, " code="...)
	b = strconv.AppendUint(b, uint64(t.DstPort&0xff), 10)
	b = append(b, " id="...)
	b = strconv.AppendUint(b, uint64(t.SrcPort), 10)
	return append(b, ' ')
}

func (icmpTracker) AppendState(b []byte, c *Conn) []byte { return b }

// ---------------------------------------------------------------- GRE

// greTracker follows Linux's nf_conntrack_proto_gre: 30 s unreplied, 180 s
// once replied (then ASSURED). Linux ignores the key of version 0 GRE
// (RFC 2784/2890) and tracks it like the generic protocol; tungate keys it
// by the RFC 2890 key when present (both halves of the 32-bit key in the
// tuple's two ports, the same in both directions), so that two keyed
// tunnels from behind one NAT address to the same peer stay apart. Unkeyed
// GRE has key 0 and looks exactly like Linux's. PPTP's enhanced GRE
// (version 1) is paired by call IDs only with the PPTP helper's key map,
// which tungate has not; without it Linux never matches its replies, so
// tungate tracks it by addresses alone (key 0), like version 0 in Linux.
type greTracker struct{}

func (greTracker) Name() string { return "gre" }
func (greTracker) Tuple(p *packet.Parsed, t *Tuple) bool {
	if !p.HasL4 {
		return false
	}
	if l4 := p.L4(); len(l4) >= 2 && l4[1]&7 == 1 {
		t.SrcPort, t.DstPort = 0, 0
		return true
	}
	t.SrcPort, t.DstPort = p.SrcPort, p.DstPort
	return true
}
func (greTracker) Invert(orig, inv *Tuple)                                    { inv.SrcPort, inv.DstPort = orig.SrcPort, orig.DstPort }
func (greTracker) Error(p *packet.Parsed, cfg *Config) Check                  { return CheckOK }
func (greTracker) New(c *Conn, p *packet.Parsed, cfg *Config, now int64) bool { return true }
func (greTracker) Packet(c *Conn, p *packet.Parsed, dir Dir, cfg *Config, now int64) (Verdict, time.Duration, bool) {
	if c.Status()&StatusSeenReply != 0 {
		changed := c.SetStatus(StatusAssured)
		return Accept, time.Duration(cfg.Timeouts.GREStream), changed
	}
	return Accept, time.Duration(cfg.Timeouts.GRE), false
}

// AppendPorts prints the key as Linux prints its two 16-bit GRE keys.
func (greTracker) AppendPorts(b []byte, t *Tuple) []byte {
	b = append(b, "srckey=0x"...)
	b = strconv.AppendUint(b, uint64(t.SrcPort), 16)
	b = append(b, " dstkey=0x"...)
	b = strconv.AppendUint(b, uint64(t.DstPort), 16)
	return append(b, ' ')
}
func (greTracker) AppendState(b []byte, c *Conn) []byte { return b }
