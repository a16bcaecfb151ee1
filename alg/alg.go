// Package alg holds the protocol helpers (application-level gateways): the
// framework that runs a helper on its connection's payload, and the FTP and
// TFTP helpers, in the shape of Linux's nf_conntrack_helper, nf_conntrack_ftp,
// nf_nat_ftp, nf_conntrack_tftp and nf_conntrack_seqadj.
//
// A helper sees its connection's payload in stream order, announces the
// connections the protocol will open as conntrack expectations (which make
// them RELATED and let them inherit the master's NAT), and may rewrite
// payload. When a rewrite changes the payload length, the framework keeps
// per-direction sequence offsets (conntrack.Ext.SeqAdj) and fixes seq, ack
// and SACK blocks of every later packet of the connection, both ways; it
// also replays each rewrite onto retransmissions of the same bytes, so the
// receiver never sees two versions of the stream.
//
// Segmentation. The FTP helper parses a line only once it is complete and
// only from a real line start (it follows line ends across segments), so
// text in mid-line is never a command whatever the segment boundaries.
// Where the sender's announcements must never leave unrewritten (its
// address is NATed), bytes of an announcement's argument must not leave
// before the line is complete: a segment ending inside one is dropped, as
// Linux drops "partial matches", and so is a segment at a line start that
// holds only the start of an announcement's word ("PO"), and any segment
// beyond a hole in that direction, since it cannot be parsed yet; the
// sender resends them. A dropped segment leaves no trace in the helper
// state. Elsewhere nothing is ever dropped: segments beyond a hole pass
// unparsed, and parsing resumes at the next line end after them.
//
// Rewrites are byte-identical to Linux's nf_nat_ftp: on a connection with
// any NAT every announcement parsed whole in one segment is rewritten,
// also one whose sender's address NAT left alone (it is written in normal
// form: no leading zeros, '|' delimiters, IPv6 as eight 4-digit groups).
//
// The datapath calls Process only for packets whose connection wants it
// (Wanted: a helper or a sequence adjustment; c.Ext() != nil is an equally
// cheap coarser gate); everything else pays one nil check.
package alg

import (
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"tungate/conntrack"
	"tungate/packet"
)

// NAT is what helpers need from the NAT engine (the gateway adapts
// *nat.Engine to it). A nil NAT means no NAT is configured.
type NAT interface {
	// BindSource / BindDestination set an unconfirmed connection's NAT so
	// its source (destination) appears as addr:port.
	BindSource(c *conntrack.Conn, addr packet.Addr, port uint16) error
	BindDestination(c *conntrack.Conn, addr packet.Addr, port uint16) error
	// PortAvailable reports whether an external port is free for proto on addr.
	PortAvailable(proto uint8, addr packet.Addr, port uint16) bool
}

// Verdict is a helper's word on one packet.
type Verdict uint8

// Verdicts.
const (
	// Accept lets the packet pass.
	Accept Verdict = iota
	// Drop drops it. For TCP it leaves no trace in the stream state: the
	// helper sees its bytes again when the sender resends them, so a
	// helper returning Drop must leave its own state as it found it
	// (expectations it created may stay: creating them again replaces
	// them).
	Drop
)

// Helper is one protocol helper, registered under its name. Help runs with
// the connection locked, so a helper's per-connection state (Context.State)
// needs no locking of its own.
type Helper interface {
	// Name is the name configs and rules use ("ftp").
	Name() string
	// Proto is the transport protocol of the connections it helps.
	Proto() uint8
	// Help sees one packet. For TCP, Data holds only new bytes in stream
	// order: retransmitted bytes are never shown again (their rewrites are
	// replayed by the framework), and a segment beyond a hole comes with
	// OutOfOrder set and no Data, for the helper to accept or drop. For
	// UDP, Data is the datagram.
	Help(x *Context) Verdict
}

// Errors of the helper framework.
var (
	// ErrMangleRange: a rewrite outside Data or before an earlier one.
	// (Packet-level failures come from packet.ReplacePayload: no room in
	// the buffer, a fragment.)
	ErrMangleRange = errors.New("alg: rewrite outside the new payload or out of order")
	// ErrNoPort: no external port could be found for an expectation.
	ErrNoPort = errors.New("alg: all ports in use")
	// ErrTooManyRewrites: more rewrites in one segment than can be
	// remembered for retransmissions (no real client pipelines that many
	// announcements).
	ErrTooManyRewrites = errors.New("alg: too many rewrites in one segment")
)

// Stats are the helper counters; all count rare events, never packets.
type Stats struct {
	// Expected counts expectations created.
	Expected atomic.Uint64
	// Ignored counts announcements refused: another address than the
	// sender's (without loose), a foreign family, malformed numbers.
	Ignored atomic.Uint64
	// Mangled counts payload rewrites, Replayed their repetition on
	// retransmissions.
	Mangled  atomic.Uint64
	Replayed atomic.Uint64
	// LongLines counts lines too long for the parse buffer (not parsed).
	LongLines atomic.Uint64
	// Held counts segments dropped because they ended inside a command
	// that must be rewritten whole (the sender resends it).
	Held atomic.Uint64
	// Dropped counts every packet a helper or the sequence adjustment
	// dropped (Held included).
	Dropped atomic.Uint64
	// Unrewritable counts commands that needed a rewrite but whose text
	// had partly left already (after a mid-stream pickup).
	Unrewritable atomic.Uint64
}

// Registry holds the helpers by name and by server port, attaches them to
// new connections and runs them on their packets.
type Registry struct {
	table *conntrack.Table
	nat   NAT
	log   *zap.Logger

	helpers map[string]Helper
	names   []string
	// byPort maps (proto, port) to the helper configured for it; read
	// once per new connection.
	byPort map[uint32]Helper

	// expMu serialises choosing a free external port and registering the
	// expectation for it, so two commands cannot pick the same port. Lock
	// order: connection lock, then expMu, then the table's.
	expMu sync.Mutex

	// Stats are the live counters.
	Stats Stats
}

// New builds the registry with the built-in helpers (ftp, tftp) configured
// from cfg (validated here, defaults filled). nat may be nil (no NAT
// configured); a nil log discards.
func New(cfg Config, table *conntrack.Table, nat NAT, log *zap.Logger) (*Registry, error) {
	if table == nil {
		return nil, errors.New("alg: nil conntrack table")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = zap.NewNop()
	}
	// Hostile control connections can trigger a log line per command:
	// sample so they cannot flood the log.
	log = log.Named("alg").WithOptions(zap.WrapCore(func(c zapcore.Core) zapcore.Core {
		return zapcore.NewSamplerWithOptions(c, time.Second, 10, 100)
	}))
	m := &Registry{
		table:   table,
		nat:     nat,
		log:     log,
		helpers: map[string]Helper{},
		byPort:  map[uint32]Helper{},
	}
	ftp := FTPConfig{MaxExpected: DefaultMaxExpected, Timeout: DefaultTimeout}
	if cfg.FTP != nil {
		ftp = *cfg.FTP
	}
	if err := m.Register(newFTP(ftp), ftp.Ports...); err != nil {
		return nil, err
	}
	tftp := TFTPConfig{Timeout: DefaultTimeout}
	if cfg.TFTP != nil {
		tftp = *cfg.TFTP
	}
	if err := m.Register(newTFTP(tftp), tftp.Ports...); err != nil {
		return nil, err
	}
	return m, nil
}

// Register adds a helper under its name, attached automatically to new
// connections of its protocol to the given server ports. Register before
// the datapath starts: the registry is read without locks.
func (m *Registry) Register(h Helper, ports ...int) error {
	name := h.Name()
	if name == "" {
		return errors.New("alg: helper without a name")
	}
	if _, dup := m.helpers[name]; dup {
		return errors.New("alg: helper " + name + " registered twice")
	}
	for _, p := range ports {
		if p < 1 || p > 65535 {
			return errors.New("alg: helper " + name + ": port out of range")
		}
		if o, taken := m.byPort[portKey(h.Proto(), uint16(p))]; taken {
			return errors.New("alg: helpers " + o.Name() + " and " + name + " both claim a port")
		}
	}
	for _, p := range ports {
		m.byPort[portKey(h.Proto(), uint16(p))] = h
	}
	m.helpers[name] = h
	m.names = append(m.names, name)
	slices.Sort(m.names)
	return nil
}

func portKey(proto uint8, port uint16) uint32 { return uint32(proto)<<16 | uint32(port) }

// Names returns the registered helper names, sorted, for the rule
// compiler to check `helper = "…"` against.
func (m *Registry) Names() []string { return slices.Clone(m.names) }

// Assign runs for a NEW (unconfirmed) connection after the filter: helper
// is the name a rule set ("" none); otherwise the configured ports decide,
// by the server's real port (the reply tuple's source, after DNAT), as
// Linux looks helpers up by the reply tuple. A connection an expectation
// created is not given a helper by port (Linux assigns none either). A
// helper whose protocol differs from the connection's is not attached.
func (m *Registry) Assign(c *conntrack.Conn, p *packet.Parsed, helper string) {
	if c == nil || c.Confirmed() {
		return
	}
	h := m.pick(c, helper)
	if h == nil {
		return
	}
	e := c.EnsureExt()
	if name := h.Name(); e.Helper != name {
		e.Helper = name
		e.HelperData = &connState{h: h, name: name}
	}
}

func (m *Registry) pick(c *conntrack.Conn, helper string) Helper {
	rt := c.Tuple(conntrack.DirReply)
	if helper != "" {
		h := m.helpers[helper]
		if h == nil || h.Proto() != rt.Proto {
			return nil
		}
		return h
	}
	if c.Status()&conntrack.StatusExpected != 0 || len(m.byPort) == 0 {
		return nil
	}
	return m.byPort[portKey(rt.Proto, rt.SrcPort)]
}

// Wanted reports whether Process must see the packet: its connection has a
// helper or adjusts sequence numbers. It is the gate the datapath uses, so
// connections without either never enter Process; it costs one pointer
// load for connections without an extension.
func Wanted(res *conntrack.Result) bool {
	c := res.Conn
	if c == nil {
		return false
	}
	e := c.Ext()
	return e != nil && (e.Helper != "" || c.Status()&conntrack.StatusSeqAdjust != 0)
}

// Process runs after SNAT, before confirm, for every packet whose
// connection has a helper or StatusSeqAdjust (gate with Wanted). It runs
// the helper on the payload and applies the sequence adjustment; false
// means drop. The packet is fully translated for its direction; a rewrite
// may change its length within cap(p.Bytes()), so the caller must send
// p.Bytes() afterwards, not the slice it decoded.
func (m *Registry) Process(p *packet.Parsed, res *conntrack.Result) bool {
	c := res.Conn
	if c == nil {
		return true
	}
	ext := c.Ext()
	if ext == nil || !p.HasL4 || p.Proto != c.Tuple(conntrack.DirOriginal).Proto {
		// ICMP errors about the connection are not its payload.
		return true
	}
	if ext.Helper == "" && c.Status()&conntrack.StatusSeqAdjust == 0 {
		return true
	}
	if ext.Helper != "" || !ext.Proxy.Proxied {
		// A SYN-proxied connection without a helper goes without the
		// lock: its translation was written before StatusSeqAdjust was
		// set (the load above orders the reads after it) and never
		// changes, so both directions' workers read it as it is.
		c.Lock()
		defer c.Unlock()
	}
	ok := true
	if ext.Helper != "" {
		ok = m.help(c, ext, p, res)
	}
	if ok && p.Proto == packet.ProtoTCP && c.Status()&conntrack.StatusSeqAdjust != 0 {
		ok = seqAdjust(p, ext, res.Dir)
		if ok && ext.Proxy.Proxied {
			synproxyAdjust(p, &ext.Proxy, res.Dir)
		}
	}
	if !ok {
		m.Stats.Dropped.Add(1)
	}
	return ok
}

// state returns the connection's framework state, creating it for a
// connection whose helper was set elsewhere (an expectation's
// HelperFollows). The connection is locked.
func (m *Registry) state(ext *conntrack.Ext) *connState {
	if cs, ok := ext.HelperData.(*connState); ok && cs.name == ext.Helper {
		return cs
	}
	h := m.helpers[ext.Helper]
	if h == nil {
		return nil
	}
	cs := &connState{h: h, name: ext.Helper}
	ext.HelperData = cs
	return cs
}

func (m *Registry) help(c *conntrack.Conn, ext *conntrack.Ext, p *packet.Parsed, res *conntrack.Result) bool {
	cs := m.state(ext)
	if cs == nil {
		return true
	}
	x := &cs.x
	*x = Context{Conn: c, Dir: res.Dir, Info: res.Info, Packet: p, State: x.State, m: m, cs: cs, ext: ext}
	if p.Proto != packet.ProtoTCP {
		x.Data = p.Payload()
		if len(x.Data) == 0 {
			return true
		}
		return cs.h.Help(x) == Accept
	}
	return m.helpTCP(x, cs, ext, p)
}
