package conntrack

import (
	"sync"
	"sync/atomic"
	"unsafe"
)

// Dir is a packet's direction relative to its connection.
type Dir uint8

// Directions, as Linux's IP_CT_DIR_ORIGINAL / IP_CT_DIR_REPLY.
const (
	DirOriginal Dir = 0
	DirReply    Dir = 1
)

// Info is the per-packet connection tracking information, Linux's
// enum ip_conntrack_info plus the two "no connection" states.
type Info uint8

// Info values. Established, Related and New have Linux's numbers; the reply
// forms add 3 (IP_CT_IS_REPLY); NEW has no reply form.
const (
	Established      Info = 0
	Related          Info = 1
	New              Info = 2
	EstablishedReply Info = 3
	RelatedReply     Info = 4
	// Invalid: the packet has no connection (the tracker refused it).
	Invalid Info = 8
	// Untracked: raw notrack exempted the packet, or its tracker never
	// tracks such packets (IPv6 neighbour discovery and MLD).
	Untracked Info = 9
)

// State is a bit set of ctstate values as rules match them (nftables'
// ct state): one bit per state.
type State uint8

// ctstate bits.
const (
	StateInvalid State = 1 << iota
	StateEstablished
	StateRelated
	StateNew
	StateUntracked
)

// State maps the packet info to its ctstate bit.
func (i Info) State() State {
	switch i {
	case Established, EstablishedReply:
		return StateEstablished
	case Related, RelatedReply:
		return StateRelated
	case New:
		return StateNew
	case Untracked:
		return StateUntracked
	}
	return StateInvalid
}

// IsReply reports whether the info is a reply-direction one.
func (i Info) IsReply() bool { return i == EstablishedReply || i == RelatedReply }

// Dir returns the direction the info implies.
func (i Info) Dir() Dir {
	if i.IsReply() {
		return DirReply
	}
	return DirOriginal
}

// String returns the Linux name.
func (i Info) String() string {
	switch i {
	case Established:
		return "ESTABLISHED"
	case Related:
		return "RELATED"
	case New:
		return "NEW"
	case EstablishedReply:
		return "ESTABLISHED_REPLY"
	case RelatedReply:
		return "RELATED_REPLY"
	case Untracked:
		return "UNTRACKED"
	}
	return "INVALID"
}

// Status bits of a connection, with Linux's IPS_* meanings.
type Status uint32

// Status bits (the subset tungate uses, Linux bit numbers).
const (
	StatusExpected   Status = 1 << 0
	StatusSeenReply  Status = 1 << 1
	StatusAssured    Status = 1 << 2
	StatusConfirmed  Status = 1 << 3
	StatusSrcNAT     Status = 1 << 4
	StatusDstNAT     Status = 1 << 5
	StatusSeqAdjust  Status = 1 << 6
	StatusSrcNATDone Status = 1 << 7
	StatusDstNATDone Status = 1 << 8
	StatusDying      Status = 1 << 9
	StatusFixedTO    Status = 1 << 10
	StatusOffload    Status = 1 << 14
	StatusNATMask           = StatusSrcNAT | StatusDstNAT

	// StatusLocal marks a connection the gateway itself is an endpoint
	// of: its packets were delivered to the gateway's own addresses (the
	// input hook). tungate has no sockets behind those addresses, so such
	// a connection exists only for [filter.input]'s ct_state and the
	// gateway's answers; it must never cost a forwarded connection its
	// tuple. It yields: Taken does not count it, and Confirm of a
	// connection without the bit deletes a local connection holding one
	// of its tuples. That is what keeps a stranger's packet to a NAT
	// mapping (refused by the mapping's filtering and delivered to the
	// gateway, or accepted there by an input rule) from taking the tuple
	// the mapping's own later flow to that stranger needs (UDP hole
	// punching, TCP simultaneous open: RFC 4787 REQ-1, RFC 5382 REQ-1),
	// where Linux keeps the local entry and moves the flow to another
	// port. It is tungate's own bit, far above Linux's; the gateway sets
	// it before confirming.
	StatusLocal Status = 1 << 29

	// statusExpecting marks a connection that is (or was) the master of an
	// expectation, so Delete looks for expectations to remove only then.
	// It is tungate's own bit, far above Linux's.
	statusExpecting Status = 1 << 30
	// statusPinned marks a connection whose pointer may be held beyond the
	// packet that found it (handed out by Lookup or NewUnconfirmed, or sent
	// to an event subscriber): its entry is never reused (see reclaim).
	statusPinned Status = 1 << 31
)

// hashNode links one direction of a connection into a bucket. Readers
// find nodes through atomic pointers with no lock: a node unlinked under
// the stripe lock stays readable, with its next pointer intact, to anyone
// still holding it, and its entry is not reused until no one can (reclaim).
//
// A node has no pointer back to its connection: that would cost 16 bytes a
// connection. The two nodes are the first field of Conn, so the connection
// is found by offset (see conn); kind says which node this is.
type hashNode struct {
	next  atomic.Pointer[hashNode]
	tuple Tuple
	kind  nodeKind
	// peer is half of Conn's peer index (Conn.peerIndex): the byte the
	// node's alignment would otherwise leave as padding.
	peer uint8
}

// nodeKind says where a hashNode lives.
type nodeKind uint8

const (
	nodeOriginal nodeKind = iota // Conn.node[DirOriginal]
	nodeReply                    // Conn.node[DirReply]
	nodeAlias                    // aliasNode.node: a second reply tuple
)

// aliasNode is an extra reply-direction tuple of a connection, learnt after
// it was confirmed (ESP learns the peer's SPI from its first packet). It is
// allocated only for such connections.
type aliasNode struct {
	node hashNode // first: hashNode.conn converts a *hashNode to *aliasNode
	conn *Conn
}

// The conversions in hashNode.conn depend on these layouts.
var (
	_ = [1]struct{}{}[unsafe.Offsetof(Conn{}.node)]
	_ = [1]struct{}{}[unsafe.Offsetof(aliasNode{}.node)]
)

// conn returns the connection n belongs to and the direction its tuple
// matches.
func (n *hashNode) conn() (*Conn, Dir) {
	switch n.kind {
	case nodeOriginal:
		return (*Conn)(unsafe.Pointer(n)), DirOriginal
	case nodeReply:
		return (*Conn)(unsafe.Add(unsafe.Pointer(n), -int(unsafe.Sizeof(hashNode{})))), DirReply
	}
	return (*aliasNode)(unsafe.Pointer(n)).conn, DirReply
}

// Counters are one direction's packet and byte counts (nf_conntrack_acct).
// Bytes are IP packet lengths, as Linux counts skb->len.
type Counters struct {
	Packets atomic.Uint64
	Bytes   atomic.Uint64
}

// Conn is one tracked connection. Its two tuples never change once it is
// confirmed; NAT sets the reply tuple before confirmation.
type Conn struct {
	// node must stay the first field: hashNode.conn finds the Conn from
	// the address of its nodes.
	node [2]hashNode

	status  atomic.Uint32
	mark    atomic.Uint32
	expires atomic.Int64 // monotonic nanoseconds (Table.Now)

	// mu guards proto and ext's mutable fields; lock order: bucket lock,
	// then mu. Packet processing takes only mu.
	mu    sync.Mutex
	proto protoState

	acct [2]Counters

	ext atomic.Pointer[Ext]

	// nat is the NAT engine's per-connection state (NATState).
	nat unsafe.Pointer

	// A Conn is 224 bytes, the allocator's 224-byte class: the master
	// of a RELATED connection lives in Ext (such connections are rare
	// and never reused anyway), and the WireGuard peer is an index into
	// the interned peer names kept in the nodes' padding (SetPeer), so
	// neither costs every connection a pointer. Both cost 16 bytes a
	// connection when they were fields (240 bytes), more than Linux's
	// whole nf_conn budget leaves (TestMemoryPerEntry).
}

// The Conn must stay in the 224-byte size class (see above).
var _ = [224 - unsafe.Sizeof(Conn{})]struct{}{}

// Ext holds the rare parts of a connection (helper, helper state, sequence
// adjustment, NAT details) so common connections do not pay for them.
type Ext struct {
	// master is the connection whose expectation created this one
	// (RELATED); nil otherwise. Set before confirmation, then read-only.
	master *Conn

	// Helper is the assigned helper's name ("" none).
	Helper string
	// HelperData is the helper's per-connection state, guarded by Conn's
	// lock while the helper runs.
	HelperData any
	// NAT is free for NAT state a connection rarely needs; the engine's
	// binding is Conn.NATState.
	NAT any
	// SeqAdj are per-direction TCP sequence offsets after payload mangling.
	SeqAdj [2]SeqAdj
	// Proxy is the SYN proxy's state for a connection whose handshake the
	// gateway completed with the client itself (a synproxy rule).
	Proxy SynProxy

	// children counts the confirmed, live connections whose Master this
	// is; conntrack -L shows it in use= as Linux's reference count does.
	children atomic.Int32
	// alias is the learnt second reply tuple, linked into the table.
	alias atomic.Pointer[aliasNode]
}

// SeqAdj is Linux's nf_ct_seqadj: packets with seq after CorrectionPos get
// OffsetAfter, earlier ones OffsetBefore.
type SeqAdj struct {
	CorrectionPos uint32
	OffsetBefore  int32
	OffsetAfter   int32
}

// SynProxy is a proxied connection's handshake state (Linux's
// nf_conn_synproxy plus what rebuilding the handshake needs). The client
// finished its handshake with the gateway's SYN cookie; the gateway then
// opens the connection to the server with the client's own ISN and
// options, and from the server's answer on every packet is translated:
// the server's sequence numbers by SeqAdj, its timestamps by TSOff, its
// window by the difference in window scale. Guarded by the connection's
// lock once confirmed.
type SynProxy struct {
	// Proxied is set before the connection is confirmed and never
	// changes, so the datapath reads it without the lock.
	Proxied bool
	// State is SynProxyNone, SynProxyPending (SYN sent to the server) or
	// SynProxyOpen (the server answered, and StatusSeqAdjust is set).
	State uint8
	// MSS, CliWScale (0xf: none), SACKPerm and TS are the client's SYN
	// options as the cookie recorded them.
	MSS       uint16
	CliWScale uint8
	SACKPerm  bool
	TS        bool
	// OurWScale is the window scale the gateway advertised to the client
	// (0xf: none); SrvWScale the server's (0xf: none).
	OurWScale uint8
	SrvWScale uint8
	// ISN is the gateway's ISN (the cookie) told to the client, CliISN the
	// client's, SrvISN the server's.
	ISN, CliISN, SrvISN uint32
	// CliTSval is the client's timestamp in its handshake ACK, TSecr what
	// it echoed (the gateway's cookie timestamp); TSOff maps the server's
	// timestamps to the client's view (server TSval + TSOff).
	CliTSval, TSecr, TSOff uint32
	// CliWin is the window of the client's handshake ACK.
	CliWin uint16
}

// SYN proxy states (SynProxy.State).
const (
	SynProxyNone uint8 = iota
	SynProxyPending
	SynProxyOpen
)

// Tuple returns the tuple of one direction.
func (c *Conn) Tuple(d Dir) *Tuple { return &c.node[d].tuple }

// SetReplyTuple replaces the reply tuple. Only valid before confirmation
// (NAT decides the reply tuple on the connection's first packet); a
// confirmed connection's tuples are read by lookups without a lock.
func (c *Conn) SetReplyTuple(t Tuple) {
	if c.Confirmed() {
		return
	}
	c.node[DirReply].tuple = t
}

// Status returns the status bits.
func (c *Conn) Status() Status { return Status(c.status.Load()) }

// SetStatus sets bits and reports whether any of them was new.
func (c *Conn) SetStatus(s Status) bool {
	// Most calls find the bits set already (ASSURED on every packet of an
	// established flow): a plain load keeps the cache line shared between
	// the cores handling the two directions, where an atomic OR would
	// bounce it on every packet.
	if Status(c.status.Load())&s == s {
		return false
	}
	old := c.status.Or(uint32(s))
	return Status(old)&s != s
}

// ClearStatus clears bits.
func (c *Conn) ClearStatus(s Status) { c.status.And(^uint32(s)) }

// Confirmed reports whether the connection is in the table.
func (c *Conn) Confirmed() bool { return c.Status()&StatusConfirmed != 0 }

// Mark returns the connection mark.
func (c *Conn) Mark() uint32 { return c.mark.Load() }

// SetMark sets the connection mark.
func (c *Conn) SetMark(m uint32) { c.mark.Store(m) }

// SetPeer records the WireGuard peer the connection came from (nil:
// none). The name is interned (peerIndex), so setting it copies nothing
// once the name is known. Only valid before confirmation: a confirmed
// connection is read without a lock.
func (c *Conn) SetPeer(name *string) {
	var i uint16
	if name != nil {
		i = internPeer(*name)
	}
	c.node[0].peer, c.node[1].peer = uint8(i), uint8(i>>8)
}

// Peer names the WireGuard peer the connection came from, "" for none.
func (c *Conn) Peer() string {
	return peerName(uint16(c.node[0].peer) | uint16(c.node[1].peer)<<8)
}

// Master is the connection whose expectation created this one (RELATED),
// nil otherwise.
func (c *Conn) Master() *Conn {
	if e := c.ext.Load(); e != nil {
		return e.master
	}
	return nil
}

// SetMaster records the connection whose expectation created this one.
// Only before confirmation; a master costs the connection an Ext.
func (c *Conn) SetMaster(m *Conn) {
	if m == nil {
		if e := c.ext.Load(); e != nil {
			e.master = nil
		}
		return
	}
	c.EnsureExt().master = m
}

// Expires returns the expiry time in Table.Now units.
func (c *Conn) Expires() int64 { return c.expires.Load() }

// Counters returns the accounting counters of one direction.
func (c *Conn) Counters(d Dir) *Counters { return &c.acct[d] }

// Ext returns the connection's extension, nil when it has none.
func (c *Conn) Ext() *Ext { return c.ext.Load() }

// EnsureExt returns the extension, creating it. Call before confirmation or
// with the connection's lock held.
func (c *Conn) EnsureExt() *Ext {
	if e := c.ext.Load(); e != nil {
		return e
	}
	e := &Ext{}
	if c.ext.CompareAndSwap(nil, e) {
		return e
	}
	return c.ext.Load()
}

// NATState returns the NAT engine's per-connection state, nil when it has
// none. It has a field of its own rather than a place in Ext because most
// forwarded connections are NATed: there it would cost every one of them a
// second allocation; and it is an unsafe.Pointer, 8 bytes where an
// interface takes 16, because a Conn of 232 bytes would fall into the
// allocator's 240-byte class. Only the NAT engine sets it, to its own type.
func (c *Conn) NATState() unsafe.Pointer { return c.nat }

// SetNATState sets the NAT engine's state: before confirmation, or with
// the engine's own lock held. The table clears it when it reuses the
// entry (see reclaim).
func (c *Conn) SetNATState(p unsafe.Pointer) { c.nat = p }

// Helper returns the assigned helper name.
func (c *Conn) Helper() string {
	if e := c.ext.Load(); e != nil {
		return e.Helper
	}
	return ""
}

// Lock locks the connection's mutable state (protocol state, helper data,
// sequence adjustment).
func (c *Conn) Lock() { c.mu.Lock() }

// Unlock unlocks it.
func (c *Conn) Unlock() { c.mu.Unlock() }

// SetTCPScaleLocked sets the window scale the TCP tracker applies to
// direction d's windows: the SYN proxy's client keeps its scale when the
// server it never saw declined scaling. The connection is locked.
func (c *Conn) SetTCPScaleLocked(d Dir, scale uint8) {
	c.proto.tcp.scale[d] = min(scale, tcpMaxWScale)
}

// TCPStateName returns the TCP state name (for rules/admin), "" for others.
func (c *Conn) TCPStateName() string {
	if c.node[0].tuple.Proto != 6 {
		return ""
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return tcpStateNames[c.proto.tcp.state]
}
