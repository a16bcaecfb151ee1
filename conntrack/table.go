// Package conntrack tracks connections the way Linux netfilter conntrack
// does: tuples, a table of connections with per-protocol trackers, ctinfo and
// status, timeouts, expectations for RELATED connections, events and stats.
//
// The table is a fixed array of hash buckets whose chains readers walk with
// no lock (atomic pointers; the garbage collector stands in for RCU), and
// writers change under striped locks, so an established flow's lookup never
// takes a lock shared with other flows.
package conntrack

import (
	"context"
	"errors"
	"math/bits"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"tungate/packet"
)

// Errors returned by Confirm.
var (
	ErrClash = errors.New("conntrack: tuple already in use")
	ErrFull  = errors.New("conntrack: table full")
)

const numLocks = 1024

type paddedMutex struct {
	sync.Mutex
	_ [56]byte // one lock per cache line: stripes are hit by different cores
}

// Stats are the table counters, named like `conntrack -S`.
type Stats struct {
	Found        atomic.Uint64
	Invalid      atomic.Uint64
	Ignore       atomic.Uint64
	Insert       atomic.Uint64
	InsertFailed atomic.Uint64
	Drop         atomic.Uint64
	EarlyDrop    atomic.Uint64
	Error        atomic.Uint64
	ExpectNew    atomic.Uint64
	ExpectCreate atomic.Uint64
	ExpectDelete atomic.Uint64
	Delete       atomic.Uint64
	EventsLost   atomic.Uint64
}

// Table is the connection table.
type Table struct {
	cfg      Config
	seed     uint64
	buckets  []atomic.Pointer[hashNode]
	mask     uint64
	locks    [numLocks]paddedMutex
	count    atomic.Int64
	trackers [256]Tracker
	epoch    time.Time

	// Stats are the live counters.
	Stats Stats

	exp expectTable

	subsMu sync.Mutex // guards changes to subs
	subs   atomic.Pointer[[]chan Event]

	gcMu     sync.Mutex // guards gcCursor
	gcCursor int

	hooksMu      sync.Mutex // guards changes to destroyHooks
	destroyHooks atomic.Pointer[[]func(*Conn)]
}

// AddDestroyHook registers fn to run synchronously whenever a connection
// dies through Delete — confirmed or not — so NAT can release its port
// mapping and helpers their state. The datapath calls Delete for an
// unconfirmed connection whose packet it drops after NAT decided.
func (t *Table) AddDestroyHook(fn func(c *Conn)) {
	t.hooksMu.Lock()
	defer t.hooksMu.Unlock()
	var cur []func(*Conn)
	if p := t.destroyHooks.Load(); p != nil {
		cur = *p
	}
	next := append(append([]func(*Conn){}, cur...), fn)
	t.destroyHooks.Store(&next)
}

// NewTable creates a table. cfg is validated (defaults filled) first.
func NewTable(cfg Config) (*Table, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	n := cfg.Buckets
	if n == 0 {
		n = cfg.Max
	}
	if n < 1024 {
		n = 1024
	}
	n = 1 << bits.Len(uint(n-1))
	t := &Table{
		cfg:     cfg,
		seed:    rand.Uint64(),
		buckets: make([]atomic.Pointer[hashNode], n),
		mask:    uint64(n - 1),
		epoch:   time.Now(),
	}
	registryMu.Lock()
	for i, f := range registry {
		if f != nil {
			t.trackers[i] = f()
		} else {
			t.trackers[i] = genericTracker{}
		}
	}
	registryMu.Unlock()
	t.exp.init()
	return t, nil
}

// Config returns the table's configuration (defaults filled).
func (t *Table) Config() *Config { return &t.cfg }

// Now returns the table's clock: monotonic nanoseconds since creation. The
// datapath reads it once per batch and passes it down.
func (t *Table) Now() int64 { return int64(time.Since(t.epoch)) }

// Count returns the number of confirmed connections.
func (t *Table) Count() int { return int(t.count.Load()) }

// Tracker returns the tracker for a protocol number.
func (t *Table) Tracker(proto uint8) Tracker { return t.trackers[proto] }

// Result is conntrack's outcome for one packet.
type Result struct {
	// Conn is the packet's connection (nil for INVALID and UNTRACKED). A
	// NEW connection is unconfirmed until Confirm.
	Conn *Conn
	// Info is the ctinfo.
	Info Info
	// Dir is the packet's direction on Conn.
	Dir Dir
	// Drop is set when the packet must be dropped (table full).
	Drop bool
}

// In tracks one packet arriving at the gateway (Linux's nf_conntrack_in at
// PRE_ROUTING). p must be a whole packet (fragments reassembled).
func (t *Table) In(p *packet.Parsed, now int64, res *Result) {
	*res = Result{Info: Invalid}
	if p.IsICMPError() {
		t.icmpError(p, now, res)
		return
	}
	tr := t.trackers[p.Proto]
	if p.Fragment && !p.HasL4 {
		if _, generic := tr.(genericTracker); !generic {
			t.Stats.Invalid.Add(1)
			return
		}
	}
	switch tr.Error(p, &t.cfg) {
	case CheckInvalid:
		t.Stats.Invalid.Add(1)
		return
	case CheckUntracked:
		res.Info = Untracked
		return
	}
	var tu Tuple
	tupleAddrs(p, &tu)
	if !tr.Tuple(p, &tu) {
		t.Stats.Invalid.Add(1)
		return
	}
	for range 2 {
		c, dir := t.lookup(&tu, now)
		if c == nil {
			if r, ok := tr.(missResolver); ok {
				c, dir = r.resolveMiss(t, &tu, p)
			}
		}
		if c == nil {
			c = t.newConn(tr, &tu, p, now, res)
			if c == nil {
				return
			}
			dir = DirOriginal
		}
		var info Info
		st := c.Status()
		switch {
		case dir == DirReply:
			info = EstablishedReply
		case st&StatusSeenReply != 0:
			info = Established
		case st&StatusExpected != 0:
			info = Related
		default:
			info = New
		}
		v, to, changed := tr.Packet(c, p, dir, &t.cfg, now)
		switch v {
		case InvalidPacket:
			t.Stats.Invalid.Add(1)
			return
		case Reopen:
			t.Delete(c)
			continue
		}
		if st&StatusFixedTO == 0 {
			c.expires.Store(now + int64(to))
		}
		if t.cfg.accounting() {
			a := &c.acct[dir]
			a.Packets.Add(1)
			a.Bytes.Add(uint64(p.Len()))
		}
		if dir == DirReply && st&StatusSeenReply == 0 {
			changed = c.SetStatus(StatusSeenReply) || changed
		}
		if changed && st&StatusConfirmed != 0 {
			t.emit(EventUpdate, c)
		}
		res.Conn, res.Info, res.Dir = c, info, dir
		return
	}
	t.Stats.Invalid.Add(1)
}

// newConn creates an unconfirmed connection for a packet that matched none.
func (t *Table) newConn(tr Tracker, tu *Tuple, p *packet.Parsed, now int64, res *Result) *Conn {
	if t.count.Load() >= int64(t.cfg.Max) && !t.earlyDrop(tu.hash(t.seed), now) {
		t.Stats.Drop.Add(1)
		res.Drop = true
		return nil
	}
	c := &Conn{}
	c.node[0].tuple = *tu
	c.node[0].conn = c
	c.node[1].conn = c
	invertAddrs(tu, &c.node[1].tuple)
	tr.Invert(tu, &c.node[1].tuple)
	if !tr.New(c, p, &t.cfg, now) {
		t.Stats.Invalid.Add(1)
		return nil
	}
	if t.exp.count.Load() > 0 {
		if e := t.exp.match(tu, now); e != nil {
			t.Stats.ExpectNew.Add(1)
			c.Master = e.Master
			c.status.Store(uint32(StatusExpected))
			if e.Helper != "" {
				c.EnsureExt().Helper = e.Helper
			}
			if e.OnMatch != nil {
				e.OnMatch(c, e)
			}
		}
	}
	return c
}

// NewUnconfirmed creates a connection from a tuple without a packet, for
// tests and for helpers that predict connections. Its tracker's New is not
// run.
func (t *Table) NewUnconfirmed(tu Tuple, now int64, timeout time.Duration) *Conn {
	c := &Conn{}
	c.node[0].tuple = tu
	c.node[0].conn = c
	c.node[1].conn = c
	invertAddrs(&tu, &c.node[1].tuple)
	t.trackers[tu.Proto].Invert(&tu, &c.node[1].tuple)
	c.expires.Store(now + int64(timeout))
	return c
}

func (t *Table) expired(c *Conn, now int64) bool { return c.expires.Load() <= now }

// lookup finds the connection holding tuple tu in either direction.
func (t *Table) lookup(tu *Tuple, now int64) (*Conn, Dir) {
	h := tu.hash(t.seed)
	for n := t.buckets[h&t.mask].Load(); n != nil; n = n.next.Load() {
		if n.tuple != *tu {
			continue
		}
		c := n.conn
		if t.expired(c, now) {
			t.Delete(c)
			return nil, DirOriginal
		}
		if n == &c.node[DirReply] {
			return c, DirReply
		}
		return c, DirOriginal
	}
	return nil, DirOriginal
}

// Lookup finds a live connection by either of its tuples.
func (t *Table) Lookup(tu *Tuple) (*Conn, Dir) { return t.lookup(tu, t.Now()) }

// Taken reports whether a confirmed connection other than ignore uses tu as
// either tuple (Linux's nf_conntrack_tuple_taken, for NAT port choice).
func (t *Table) Taken(tu *Tuple, ignore *Conn) bool {
	c, _ := t.lookup(tu, t.Now())
	return c != nil && c != ignore
}

func (t *Table) lockPair(h0, h1 uint64) (a, b *paddedMutex) {
	i, j := h0&t.mask&(numLocks-1), h1&t.mask&(numLocks-1)
	if i > j {
		i, j = j, i
	}
	a = &t.locks[i]
	a.Lock()
	if i != j {
		b = &t.locks[j]
		b.Lock()
	}
	return a, b
}

func unlockPair(a, b *paddedMutex) {
	if b != nil {
		b.Unlock()
	}
	a.Unlock()
}

func (t *Table) findLocked(h uint64, tu *Tuple, now int64) *Conn {
	for n := t.buckets[h&t.mask].Load(); n != nil; n = n.next.Load() {
		if n.tuple == *tu && n.conn.Status()&StatusDying == 0 && !t.expired(n.conn, now) {
			return n.conn
		}
	}
	return nil
}

// Confirm enters a new connection into the table, as Linux's
// __nf_conntrack_confirm does once the packet was accepted. A clash with an
// existing entry (another packet of the same flow won the race, or NAT chose
// a tuple that became taken) is an error; the caller drops the packet.
func (t *Table) Confirm(c *Conn, now int64) error {
	if c.Confirmed() {
		return nil
	}
	h0 := c.node[0].tuple.hash(t.seed)
	h1 := c.node[1].tuple.hash(t.seed)
	a, b := t.lockPair(h0, h1)
	if t.findLocked(h0, &c.node[0].tuple, now) != nil || t.findLocked(h1, &c.node[1].tuple, now) != nil {
		unlockPair(a, b)
		t.Stats.InsertFailed.Add(1)
		return ErrClash
	}
	c.SetStatus(StatusConfirmed)
	b0 := &t.buckets[h0&t.mask]
	c.node[0].next.Store(b0.Load())
	b0.Store(&c.node[0])
	b1 := &t.buckets[h1&t.mask]
	c.node[1].next.Store(b1.Load())
	b1.Store(&c.node[1])
	unlockPair(a, b)
	t.count.Add(1)
	t.Stats.Insert.Add(1)
	t.emit(EventNew, c)
	return nil
}

// unlink removes n from its chain; the bucket's lock is held.
func (t *Table) unlink(h uint64, n *hashNode) {
	p := &t.buckets[h&t.mask]
	for cur := p.Load(); cur != nil; cur = cur.next.Load() {
		if cur == n {
			p.Store(n.next.Load())
			return
		}
		p = &cur.next
	}
}

// Delete removes a connection (it dies: expectations it is master of go
// too). It reports whether this call killed it.
func (t *Table) Delete(c *Conn) bool {
	if !c.SetStatus(StatusDying) {
		return false
	}
	if c.Confirmed() {
		h0 := c.node[0].tuple.hash(t.seed)
		h1 := c.node[1].tuple.hash(t.seed)
		a, b := t.lockPair(h0, h1)
		t.unlink(h0, &c.node[0])
		t.unlink(h1, &c.node[1])
		unlockPair(a, b)
		t.count.Add(-1)
		t.Stats.Delete.Add(1)
	}
	if d, ok := t.trackers[c.node[0].tuple.Proto].(destroyer); ok {
		d.destroy(c)
	}
	if hs := t.destroyHooks.Load(); hs != nil {
		for _, fn := range *hs {
			fn(c)
		}
	}
	if t.exp.count.Load() > 0 {
		t.exp.removeMaster(c, &t.Stats)
	}
	if c.Confirmed() {
		t.emit(EventDestroy, c)
	}
	return true
}

// earlyDrop frees a slot by deleting an unassured connection near hash h,
// as Linux's early_drop does when the table is full.
func (t *Table) earlyDrop(h uint64, now int64) bool {
	for i := range uint64(8) {
		for n := t.buckets[(h+i)&t.mask].Load(); n != nil; n = n.next.Load() {
			c := n.conn
			if t.expired(c, now) || c.Status()&(StatusAssured|StatusDying) == 0 {
				if t.Delete(c) {
					t.Stats.EarlyDrop.Add(1)
					return true
				}
			}
		}
	}
	return false
}

// GC scans up to n buckets from where the last call stopped and deletes the
// expired connections it finds. Calls are cheap and incremental, so a
// million entries never cause a pause; RunGC calls it on a timer.
func (t *Table) GC(now int64, n int) (removed int) {
	t.gcMu.Lock()
	start := t.gcCursor
	if n > len(t.buckets) {
		n = len(t.buckets)
	}
	t.gcCursor = (start + n) % len(t.buckets)
	t.gcMu.Unlock()
	var dead [16]*Conn
	for i := range n {
		k := 0
		b := &t.buckets[(start+i)%len(t.buckets)]
		for nd := b.Load(); nd != nil && k < len(dead); nd = nd.next.Load() {
			if t.expired(nd.conn, now) {
				dead[k] = nd.conn
				k++
			}
		}
		for _, c := range dead[:k] {
			if t.Delete(c) {
				removed++
			}
		}
	}
	if t.exp.count.Load() > 0 {
		t.exp.expire(now, &t.Stats)
	}
	return removed
}

// RunGC collects expired entries until ctx ends, sweeping the whole table
// about once a second in small steps.
func (t *Table) RunGC(ctx context.Context) {
	const tick = 20 * time.Millisecond
	step := len(t.buckets) / 50
	if step < 256 {
		step = 256
	}
	tk := time.NewTicker(tick)
	defer tk.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tk.C:
			t.GC(t.Now(), step)
		}
	}
}

// Range calls fn for each live connection (once each) until fn returns
// false. It takes no locks; connections may come and go meanwhile.
func (t *Table) Range(fn func(c *Conn) bool) {
	now := t.Now()
	for i := range t.buckets {
		for n := t.buckets[i].Load(); n != nil; n = n.next.Load() {
			c := n.conn
			if n != &c.node[DirOriginal] || c.Status()&StatusDying != 0 || t.expired(c, now) {
				continue
			}
			if !fn(c) {
				return
			}
		}
	}
}

// Flush deletes every connection.
func (t *Table) Flush() {
	t.Range(func(c *Conn) bool { t.Delete(c); return true })
}

// icmpError finds the connection an ICMP error is about (Linux's
// nf_conntrack_inet_error): the quoted packet's tuple, inverted, must be a
// tracked connection, and the error must travel to that connection's
// endpoint. The error is RELATED (reply-direction when it travels in the
// connection's reply direction); otherwise INVALID.
func (t *Table) icmpError(p *packet.Parsed, now int64, res *Result) {
	if t.cfg.checksum() && !p.L4ChecksumValid() {
		t.Stats.Invalid.Add(1)
		return
	}
	var inner packet.Parsed
	if inner.DecodeQuoted(p.ICMPQuote()) != nil || inner.Version != p.Version || inner.IsICMPError() {
		t.Stats.Invalid.Add(1)
		return
	}
	tr := t.trackers[inner.Proto]
	var it, inv Tuple
	tupleAddrs(&inner, &it)
	if (!inner.HasL4 && inner.Proto != packet.ProtoESP) || !tr.Tuple(&inner, &it) {
		if _, generic := tr.(genericTracker); !generic {
			t.Stats.Invalid.Add(1)
			return
		}
	}
	invertAddrs(&it, &inv)
	tr.Invert(&it, &inv)
	c, dir := t.lookup(&inv, now)
	if c == nil {
		t.Stats.Invalid.Add(1)
		return
	}
	// The error goes to the endpoint that sent the quoted packet.
	if c.node[dir].tuple.Dst != p.Dst {
		t.Stats.Invalid.Add(1)
		return
	}
	if t.cfg.accounting() {
		a := &c.acct[dir]
		a.Packets.Add(1)
		a.Bytes.Add(uint64(p.Len()))
	}
	res.Conn, res.Dir = c, dir
	if dir == DirReply {
		res.Info = RelatedReply
	} else {
		res.Info = Related
	}
}
