package conntrack

import (
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"

	"tungate/packet"
)

// ErrSourceLimit is SourceLimit.Confirm's refusal: the connection's source
// already holds its maximum of confirmed connections.
var ErrSourceLimit = errors.New("conntrack: source over its connection limit")

// sourceShards spreads the per-source counters over independently locked
// maps, so new connections from different sources seldom share a lock.
const sourceShards = 64

// SourceLimit bounds the confirmed connections of each original-direction
// source address ([conntrack] per_source_max), so that one host cannot fill
// the table for everyone (iptables' connlimit, nftables' ct count). Only
// new connections consult it: an established flow's packets never do.
//
// Counts are exact: a map per shard holds an entry per source with at least
// one confirmed connection, so memory is bounded by the table's maximum,
// never by the number of sources that ever sent a packet. Entries are made
// when a connection is confirmed (where conntrack allocates anyway) and
// removed by a destroy hook when the source's last connection dies.
type SourceLimit struct {
	// max changes with a reload (SetMax).
	max  atomic.Int32
	seed uint64
	// Refused counts new connections refused for being over the limit.
	Refused atomic.Uint64

	shards [sourceShards]sourceShard
}

type sourceShard struct {
	mu sync.Mutex // guards n
	// n maps a source to its confirmed connections counted by Confirm.
	n map[sourceKey]int32
	_ [40]byte // a shard per cache line: shards are locked from every core
}

// sourceKey is a source address with its family: an IPv4 address is the
// first four bytes of a packet.Addr, which an IPv6 address may share.
type sourceKey struct {
	addr   packet.Addr
	family uint8
}

// NewSourceLimit creates a limit of max connections per source for table t
// and hooks it to t's connection deaths. Every connection of t must then be
// confirmed through it (Confirm), so counts and deaths match.
func NewSourceLimit(t *Table, max int) *SourceLimit {
	l := &SourceLimit{seed: rand.Uint64()}
	l.max.Store(int32(max))
	for i := range l.shards {
		l.shards[i].n = make(map[sourceKey]int32)
	}
	t.AddDestroyHook(func(c *Conn) {
		// Delete sets Dying before the hooks run and Confirm sets
		// Confirmed only while Dying is clear, so the bit is final here:
		// set exactly when Confirm succeeded and counted the connection.
		if c.Status()&StatusConfirmed != 0 {
			l.release(key(c))
		}
	})
	return l
}

// Max returns the limit.
func (l *SourceLimit) Max() int { return int(l.max.Load()) }

// SetMax changes the limit (a reload). Sources over a lowered limit keep
// their connections; they get no new ones until under it.
func (l *SourceLimit) SetMax(max int) { l.max.Store(int32(max)) }

func key(c *Conn) sourceKey {
	t := c.Tuple(DirOriginal)
	return sourceKey{addr: t.Src, family: t.Family}
}

func (l *SourceLimit) shard(k *sourceKey) *sourceShard {
	h := binary.LittleEndian.Uint64(k.addr[:8]) ^ l.seed
	h = mix(h, binary.LittleEndian.Uint64(k.addr[8:])^uint64(k.family)^0x9e3779b97f4a7c15)
	return &l.shards[h%sourceShards]
}

// Full reports whether c's source is at its limit, so a new connection
// from it would be refused. It is advisory (Confirm decides) and lets the
// datapath refuse before NAT allocates anything.
func (l *SourceLimit) Full(c *Conn) bool {
	k := key(c)
	s := l.shard(&k)
	s.mu.Lock()
	full := s.n[k] >= l.max.Load()
	s.mu.Unlock()
	if full {
		l.Refused.Add(1)
	}
	return full
}

// Count returns the confirmed connections counted for a source.
func (l *SourceLimit) Count(addr packet.Addr, family uint8) int {
	k := sourceKey{addr: addr, family: family}
	s := l.shard(&k)
	s.mu.Lock()
	defer s.mu.Unlock()
	return int(s.n[k])
}

// Sources returns how many sources hold connections.
func (l *SourceLimit) Sources() int {
	n := 0
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		n += len(s.n)
		s.mu.Unlock()
	}
	return n
}

// Confirm confirms c in t (Table.Confirm) if its source is under the
// limit, counting it; ErrSourceLimit otherwise. The place is taken before
// the table insert, so racing workers never overshoot the limit.
func (l *SourceLimit) Confirm(t *Table, c *Conn, now int64) error {
	if c.Confirmed() {
		return nil
	}
	k := key(c)
	s := l.shard(&k)
	s.mu.Lock()
	if s.n[k] >= l.max.Load() {
		s.mu.Unlock()
		l.Refused.Add(1)
		return ErrSourceLimit
	}
	s.n[k]++
	s.mu.Unlock()
	if err := t.Confirm(c, now); err != nil {
		l.release(k)
		return err
	}
	return nil
}

func (l *SourceLimit) release(k sourceKey) {
	s := l.shard(&k)
	s.mu.Lock()
	if n := s.n[k]; n <= 1 {
		delete(s.n, k)
	} else {
		s.n[k] = n - 1
	}
	s.mu.Unlock()
}
