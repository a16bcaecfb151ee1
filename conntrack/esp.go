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
// the table is matched to the oldest connection still waiting for its peer's
// first packet, and its SPI is remembered for the rest of the connection.
type espTracker struct {
	mu      sync.Mutex          // guards pending and learned
	pending map[peerKey][]*Conn // waiting for the peer's SPI, oldest first
	learned map[Tuple]*Conn     // reply tuples with the learnt SPI
}

type peerKey struct {
	addr   packet.Addr
	family uint8
}

// maxPendingPerPeer bounds the waiting list per peer so unanswered ESP from
// a hostile LAN host cannot grow memory without limit.
const maxPendingPerPeer = 64

func newESPTracker() *espTracker {
	return &espTracker{pending: map[peerKey][]*Conn{}, learned: map[Tuple]*Conn{}}
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

func (e *espTracker) New(c *Conn, p *packet.Parsed, cfg *Config, now int64) bool {
	k := peerKey{c.node[0].tuple.Dst, c.node[0].tuple.Family}
	e.mu.Lock()
	defer e.mu.Unlock()
	l := e.pending[k]
	keep := l[:0]
	for _, o := range l {
		if o.Status()&StatusDying == 0 && o.expires.Load() > now {
			keep = append(keep, o)
		}
	}
	if len(keep) >= maxPendingPerPeer {
		keep = keep[1:]
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

func (e *espTracker) resolveMiss(t *Table, tu *Tuple, p *packet.Parsed) (*Conn, Dir) {
	now := t.Now()
	e.mu.Lock()
	defer e.mu.Unlock()
	if c := e.learned[*tu]; c != nil {
		if c.Status()&StatusDying == 0 && !t.expired(c, now) {
			return c, DirReply
		}
		delete(e.learned, *tu)
	}
	k := peerKey{tu.Src, tu.Family}
	l := e.pending[k]
	for i, c := range l {
		r := &c.node[DirReply].tuple
		if !c.Confirmed() || c.Status()&StatusDying != 0 || t.expired(c, now) || r.Dst != tu.Dst {
			continue
		}
		e.pending[k] = append(l[:i:i], l[i+1:]...)
		if len(e.pending[k]) == 0 {
			delete(e.pending, k)
		}
		e.learned[*tu] = c
		c.mu.Lock()
		c.proto.espPeerSPI = uint32(tu.SrcPort)<<16 | uint32(tu.DstPort)
		c.proto.espLearned = true
		c.mu.Unlock()
		return c, DirReply
	}
	return nil, DirOriginal
}

func (e *espTracker) destroy(c *Conn) {
	e.mu.Lock()
	defer e.mu.Unlock()
	c.mu.Lock()
	learned, spi := c.proto.espLearned, c.proto.espPeerSPI
	c.mu.Unlock()
	if learned {
		k := c.node[DirReply].tuple
		k.SrcPort, k.DstPort = uint16(spi>>16), uint16(spi)
		if e.learned[k] == c {
			delete(e.learned, k)
		}
		return
	}
	k := peerKey{c.node[0].tuple.Dst, c.node[0].tuple.Family}
	l := e.pending[k]
	for i, o := range l {
		if o == c {
			e.pending[k] = append(l[:i:i], l[i+1:]...)
			break
		}
	}
	if len(e.pending[k]) == 0 {
		delete(e.pending, k)
	}
}

func (*espTracker) AppendPorts(b []byte, t *Tuple) []byte {
	b = append(b, "spi=0x"...)
	b = strconv.AppendUint(b, uint64(t.SrcPort)<<16|uint64(t.DstPort), 16)
	return append(b, ' ')
}

func (*espTracker) AppendState(b []byte, c *Conn) []byte { return b }
