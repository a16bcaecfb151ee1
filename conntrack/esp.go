package conntrack

import (
	"strconv"
	"sync"
	"time"

	"tungate/packet"
)

// espTracker tracks ESP by SPI, which Linux does not (it lumps ESP into the
// generic tracker, so two IPsec clients behind one NAT talking to the same
// peer share one entry and collide). Each direction of an IPsec pair has its
// own SPI, chosen by the receiver: the original tuple carries the SPI of the
// client's packets; the peer's SPI is learnt from its first packet back.
//
// Until then the reply tuple holds the original SPI as a placeholder (unique
// per peer, since the peer chose it). A reply-direction packet that misses
// the table is matched to the oldest connection to that peer and reply
// address still waiting for its peer's first packet; the SPI it carries is
// then linked into the table as a second reply tuple (an alias node), so
// every later packet of the peer is an ordinary lock-free hit. Two clients
// whose first packets to one peer cross with the peer's first answers may be
// paired the wrong way round; nothing in ESP's cleartext can tell them apart
// (IKE negotiated the SPIs inside its encryption).
type espTracker struct {
	mu      sync.Mutex          // guards pending
	pending map[peerKey][]*Conn // waiting for the peer's SPI, oldest first
}

type peerKey struct {
	addr   packet.Addr
	family uint8
}

// maxPendingPerPeer bounds the waiting list per peer so unanswered ESP from
// a hostile LAN host cannot grow memory without limit.
const maxPendingPerPeer = 64

func newESPTracker() *espTracker {
	return &espTracker{pending: map[peerKey][]*Conn{}}
}

func (*espTracker) Name() string { return "esp" }

func (*espTracker) Tuple(p *packet.Parsed, t *Tuple) bool {
	if !p.HasL4 {
		return false
	}
	t.SrcPort, t.DstPort = p.SrcPort, p.DstPort
	return true
}

func (*espTracker) Invert(orig, inv *Tuple) { inv.SrcPort, inv.DstPort = orig.SrcPort, orig.DstPort }

func (*espTracker) Error(p *packet.Parsed, cfg *Config) Check { return CheckOK }

// New puts the connection on its peer's waiting list. It is not confirmed
// yet: resolveMiss skips it until it is.
func (e *espTracker) New(c *Conn, p *packet.Parsed, cfg *Config, now int64) bool {
	k := peerKey{c.node[DirOriginal].tuple.Dst, c.node[DirOriginal].tuple.Family}
	e.mu.Lock()
	defer e.mu.Unlock()
	l := e.pending[k]
	keep := l[:0]
	for _, o := range l {
		if o.Status()&StatusDying == 0 && o.expires.Load() > now {
			keep = append(keep, o)
		}
	}
	clear(l[len(keep):])
	if len(keep) >= maxPendingPerPeer {
		copy(keep, keep[1:])
		keep = keep[:len(keep)-1]
	}
	e.pending[k] = append(keep, c)
	return true
}

func (*espTracker) Packet(c *Conn, p *packet.Parsed, dir Dir, cfg *Config, now int64) (Verdict, time.Duration, bool) {
	if c.Status()&StatusSeenReply != 0 {
		changed := c.SetStatus(StatusAssured)
		return Accept, time.Duration(cfg.Timeouts.ESPStream), changed
	}
	return Accept, time.Duration(cfg.Timeouts.ESP), false
}

// resolveMiss pairs a packet from a peer with the oldest confirmed
// connection to that peer still waiting for the peer's SPI.
func (e *espTracker) resolveMiss(t *Table, tu *Tuple, now int64) (*Conn, Dir) {
	k := peerKey{tu.Src, tu.Family}
	e.mu.Lock()
	l := e.pending[k]
	var found *Conn
	for i, c := range l {
		if !c.Confirmed() || c.Status()&StatusDying != 0 || t.expired(c, now) || c.node[DirReply].tuple.Dst != tu.Dst {
			continue
		}
		found = c
		e.remove(k, l, i)
		break
	}
	e.mu.Unlock()
	if found == nil || !t.addAlias(found, tu, now) {
		return nil, DirOriginal
	}
	return found, DirReply
}

// destroy takes a connection that never learnt its peer's SPI off the
// waiting list (the table unlinks a learnt alias itself).
func (e *espTracker) destroy(c *Conn) {
	k := peerKey{c.node[DirOriginal].tuple.Dst, c.node[DirOriginal].tuple.Family}
	e.mu.Lock()
	defer e.mu.Unlock()
	l := e.pending[k]
	for i, o := range l {
		if o == c {
			e.remove(k, l, i)
			return
		}
	}
}

// remove deletes l[i] from k's waiting list l; e.mu is held.
func (e *espTracker) remove(k peerKey, l []*Conn, i int) {
	last := len(l) - 1
	copy(l[i:], l[i+1:])
	l[last] = nil // let the connection be collected
	if last == 0 {
		delete(e.pending, k)
	} else {
		e.pending[k] = l[:last]
	}
}

// AppendPorts prints the SPI; Linux has no ESP tracker, so this is
// tungate's own field.
func (*espTracker) AppendPorts(b []byte, t *Tuple) []byte {
	b = append(b, "spi=0x"...)
	b = strconv.AppendUint(b, uint64(t.SrcPort)<<16|uint64(t.DstPort), 16)
	return append(b, ' ')
}

func (*espTracker) AppendState(b []byte, c *Conn) []byte { return b }

// learntReply returns the reply tuple a connection's packets from the peer
// carry: the alias once learnt, else the reply tuple.
func (c *Conn) learntReply() *Tuple {
	if e := c.ext.Load(); e != nil {
		if a := e.alias.Load(); a != nil {
			return &a.node.tuple
		}
	}
	return &c.node[DirReply].tuple
}
