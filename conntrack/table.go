// Package conntrack tracks connections the way Linux netfilter conntrack
// does: tuples, a table of connections with per-protocol trackers, ctinfo and
// status, timeouts, expectations for RELATED connections, events and stats.
//
// The table is a fixed array of cache-line buckets (tagged slots and an
// overflow chain, see bucket) that readers search with no lock (atomic
// pointers), and writers change under striped locks, so an established
// flow's lookup never takes a lock shared with other flows. The entries of
// dead connections are reused once no reader can still hold them (epoch-
// based reclamation, see reclaim); the garbage collector frees the rest.
//
// Lock order: the reclaim walkers lock (read), bucket stripe locks (lower
// index first), then Conn.mu; the reclaim lock is taken after any of them
// and holds none; the expectation lock and the ESP tracker's lock are never
// held while taking a stripe lock.
package conntrack

import (
	"context"
	"errors"
	"fmt"
	"math/bits"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"tungate/packet"
)

// Errors returned by Confirm.
var (
	ErrClash = errors.New("conntrack: tuple already in use")
	ErrFull  = errors.New("conntrack: table full")
	// ErrDead: the connection was deleted before it could be confirmed
	// (a destroy hook, a flush, or a clash on a tracker's side table).
	ErrDead = errors.New("conntrack: connection already deleted")
)

const numLocks = 1024

// paddedMutex is one stripe lock, alone on its cache line (stripes are hit
// by different cores) with the stripe's early-drop candidates in the rest
// of the line.
type paddedMutex struct {
	sync.Mutex
	// recent are the connections most recently confirmed in this stripe,
	// recent[(head+i)%len] for i < n, oldest first: they were unassured
	// then, so they are where early drop looks first. They are read and
	// written with the mutex held; entries may have become assured since
	// (dropCandidate checks what is there now), but never dead: a dying
	// connection leaves the list (forget).
	recent [recentLen]*Conn
	pos    uint32 // head | n<<8
	_      [64 - 8 - 8*recentLen - 4]byte
}

const recentLen = 6

// remember records c, just confirmed, as an early-drop candidate; l is
// locked.
func (l *paddedMutex) remember(c *Conn) {
	head, n := l.pos&0xff, l.pos>>8
	if n < recentLen {
		l.recent[(head+n)%recentLen] = c
		l.pos = head | (n+1)<<8
		return
	}
	l.recent[head] = c
	l.pos = (head+1)%recentLen | n<<8
}

// oldest takes the oldest candidate (nil when none); l is locked. Slots
// emptied by forget are passed over.
func (l *paddedMutex) oldest() *Conn {
	head, n := l.pos&0xff, l.pos>>8
	var c *Conn
	for c == nil && n > 0 {
		c, l.recent[head] = l.recent[head], nil
		head, n = (head+1)%recentLen, n-1
	}
	l.pos = head | n<<8
	return c
}

// forget empties c's slot, if it has one, when c dies; l is locked. The
// list then never names an entry that may be reused: early drop, which
// takes a candidate as a reader of the table, only meets connections that
// were live when listed, whose entries wait for it (see reclaim).
func (l *paddedMutex) forget(c *Conn) {
	for i := range l.recent {
		if l.recent[i] == c {
			l.recent[i] = nil
			return
		}
	}
}

// Stats are the table counters, named like `conntrack -S` and
// /proc/net/stat/nf_conntrack. Only slow paths count: an established
// packet's lookup touches no shared counter.
type Stats struct {
	// Found counts tuples found taken (Taken), as Linux counts in
	// nf_conntrack_tuple_taken.
	Found   atomic.Uint64
	Invalid atomic.Uint64
	// Ignore counts packets a tracker left untracked (neighbour discovery).
	Ignore       atomic.Uint64
	Insert       atomic.Uint64
	InsertFailed atomic.Uint64
	// Drop counts NEW packets dropped because the table was full.
	Drop      atomic.Uint64
	EarlyDrop atomic.Uint64
	// Error counts ICMP errors about no known connection (also INVALID).
	Error atomic.Uint64
	// ExpectNew counts connections created from an expectation.
	ExpectNew    atomic.Uint64
	ExpectCreate atomic.Uint64
	ExpectDelete atomic.Uint64
	Delete       atomic.Uint64
	EventsLost   atomic.Uint64
}

// Table is the connection table.
type Table struct {
	cfg      atomic.Pointer[Config] // replaced whole by SetTimeouts
	seed     uint64
	buckets  []bucket
	mask     uint64
	locks    [numLocks]paddedMutex // stripe i guards chains of buckets ≡ i mod numLocks
	count    atomic.Int64
	trackers [256]Tracker
	epoch    time.Time
	// replyView is what listings show of a reply tuple (SetReplyView).
	replyView atomic.Pointer[ReplyView]

	// Stats are the live counters.
	Stats Stats

	exp expectTable

	subsMu sync.Mutex // guards changes to subs
	subs   atomic.Pointer[[]*Subscription]

	gcMu     sync.Mutex // guards gcCursor
	gcCursor int

	hooksMu      sync.Mutex // guards changes to destroyHooks
	destroyHooks atomic.Pointer[[]func(*Conn)]

	_  [64]byte // rc.epoch is read by every packet: keep it off written lines
	rc reclaim
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
	// A bucket is a cache line of six slots: half as many as the hash
	// size hold, at max, four nodes (two per connection) a line.
	n /= 2
	t := &Table{
		seed:    rand.Uint64(),
		buckets: make([]bucket, n),
		mask:    uint64(n - 1),
		epoch:   time.Now(),
	}
	t.cfg.Store(&cfg)
	t.rc.init(cfg.Max)
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

// Config returns the table's configuration (defaults filled). It must not
// be modified; SetTimeouts replaces it.
func (t *Table) Config() *Config { return t.cfg.Load() }

// SetTimeouts replaces the timeouts (a config reload), validated and with
// defaults filled like Config.Validate. Connections keep their current
// expiry; the new values apply from their next packet.
func (t *Table) SetTimeouts(to Timeouts) error {
	if err := to.validate(); err != nil {
		return err
	}
	c := *t.cfg.Load()
	c.Timeouts = to
	t.cfg.Store(&c)
	return nil
}

// Reconfigure replaces the table's settings (a config reload), validated
// like NewTable's: the limits, the tracking switches and the timeouts are
// read per packet, so they apply from the next one, and an entry takes a
// new timeout when its next packet refreshes it, as Linux's sysctls do.
// The hash size (Buckets) is fixed for the table's life and per_source_max
// belongs to the SourceLimit; Reconfigure refuses a Buckets change.
func (t *Table) Reconfigure(cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	if cur := t.cfg.Load(); cfg.Buckets != cur.Buckets {
		return fmt.Errorf("conntrack.buckets: the hash size is fixed while running (%d → %d)", cur.Buckets, cfg.Buckets)
	}
	t.cfg.Store(&cfg)
	return nil
}

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

	// tu is In's scratch tuple. It lives here, in memory the caller keeps
	// per worker, because a tuple on In's stack would escape to the heap
	// through the trackers' interface calls: one allocation a packet.
	tu Tuple
	// rd is this Result's reader slot in the table (see reclaim). Zeroing
	// a Result loses it: the next In registers a new one (an allocation).
	rd *reader
}

func isGeneric(tr Tracker) bool {
	_, ok := tr.(genericTracker)
	return ok
}

// In tracks one packet arriving at the gateway (Linux's nf_conntrack_in at
// PRE_ROUTING). p must be a whole packet (fragments reassembled).
//
// Keep one Result per goroutine and pass it to every call: In then
// allocates nothing for packets of known connections. res.Conn is valid
// until the next call with res or res.Release: then the entry of a
// connection that died meanwhile may be reused for another (see reclaim).
func (t *Table) In(p *packet.Parsed, now int64, res *Result) {
	res.Conn, res.Info, res.Dir, res.Drop = nil, Invalid, DirOriginal, false
	t.enter(res)
	cfg := t.cfg.Load()
	if p.IsICMPError() {
		t.icmpError(p, cfg, now, res)
		return
	}
	tr := t.trackers[p.Proto]
	if p.Fragment && !p.HasL4 && !isGeneric(tr) {
		t.Stats.Invalid.Add(1)
		return
	}
	switch tr.Error(p, cfg) {
	case CheckInvalid:
		t.Stats.Invalid.Add(1)
		return
	case CheckUntracked:
		t.Stats.Ignore.Add(1)
		res.Info = Untracked
		return
	}
	tu := &res.tu
	tupleAddrs(p, tu)
	if !tr.Tuple(p, tu) {
		t.Stats.Invalid.Add(1)
		return
	}
	for range 2 {
		c, dir := t.lookup(tu, now)
		if c == nil {
			if r, ok := tr.(missResolver); ok {
				c, dir = r.resolveMiss(t, tu, now)
			}
		}
		created := false
		if c == nil {
			c = t.newConn(tr, cfg, tu, p, now, res)
			if c == nil {
				return
			}
			dir, created = DirOriginal, true
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
		v, to, changed := tr.Packet(c, p, dir, cfg, now)
		switch v {
		case InvalidPacket:
			t.Stats.Invalid.Add(1)
			if created {
				// Nobody will see it: let the destroy hooks release what
				// an expectation's OnMatch may have bound to it.
				t.Delete(c)
			}
			return
		case Reopen:
			t.Delete(c)
			continue
		}
		if v != Ignore {
			if st&StatusFixedTO == 0 {
				c.expires.Store(now + int64(to))
			}
			if cfg.accounting() {
				a := &c.acct[dir]
				a.Packets.Add(1)
				a.Bytes.Add(uint64(p.Len()))
			}
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

// newConn creates an unconfirmed connection for a packet that matched none
// (Linux's init_conntrack).
func (t *Table) newConn(tr Tracker, cfg *Config, tu *Tuple, p *packet.Parsed, now int64, res *Result) *Conn {
	if t.count.Load() >= int64(cfg.Max) && !t.earlyDrop(tu.hash(t.seed), now) {
		t.Stats.Drop.Add(1)
		res.Drop = true
		return nil
	}
	c := t.newEntry()
	c.initNodes(tu)
	tr.Invert(tu, &c.node[DirReply].tuple)
	if !tr.New(c, p, cfg, now) {
		t.Stats.Invalid.Add(1)
		t.retire(c, 0)
		return nil
	}
	if t.exp.count.Load() > 0 {
		if e := t.exp.match(tu, now, &t.Stats); e != nil {
			t.Stats.ExpectNew.Add(1)
			c.SetMaster(e.Master)
			c.status.Store(uint32(StatusExpected))
			if e.HelperFollows && e.Helper != "" {
				c.EnsureExt().Helper = e.Helper
			}
			if e.OnMatch != nil {
				e.OnMatch(c, e)
			}
		}
	}
	return c
}

// initNodes sets up both nodes for original tuple tu: the reply tuple gets
// the swapped addresses; the tracker fills its ports.
func (c *Conn) initNodes(tu *Tuple) {
	c.node[DirOriginal].tuple = *tu
	c.node[DirOriginal].kind = nodeOriginal
	c.node[DirReply].kind = nodeReply
	invertAddrs(tu, &c.node[DirReply].tuple)
}

// NewUnconfirmed creates a connection from a tuple without a packet, for
// tests and for helpers that predict connections. Its tracker's New is not
// run. Its entry is never reused: the caller may keep it.
func (t *Table) NewUnconfirmed(tu Tuple, now int64, timeout time.Duration) *Conn {
	c := &Conn{}
	c.status.Store(uint32(statusPinned))
	c.initNodes(&tu)
	t.trackers[tu.Proto].Invert(&c.node[DirOriginal].tuple, &c.node[DirReply].tuple)
	c.expires.Store(now + int64(timeout))
	return c
}

func (t *Table) expired(c *Conn, now int64) bool { return c.expires.Load() <= now }

// lookup finds the live connection holding tuple tu in either direction.
// Expired entries it meets are deleted on the way, as Linux's
// ____nf_conntrack_find reaps them.
func (t *Table) lookup(tu *Tuple, now int64) (*Conn, Dir) {
	h := tu.hash(t.seed)
	b := &t.buckets[h&t.mask]
	tags, tag := b.tags.Load(), tagOf(h)
	for i := range b.slot {
		if (tags>>(i*tagBits))&tagMask != tag {
			continue
		}
		if c, dir := t.live(b.slot[i].Load(), tu, now); c != nil {
			return c, dir
		}
	}
	for n := b.more.Load(); n != nil; n = n.next.Load() {
		if c, dir := t.live(n, tu, now); c != nil {
			return c, dir
		}
	}
	return nil, DirOriginal
}

// live returns n's connection and direction when n (nil allowed) holds
// tuple tu and its connection lives. An expired one met on the way is
// deleted, as Linux's ____nf_conntrack_find reaps them.
func (t *Table) live(n *hashNode, tu *Tuple, now int64) (*Conn, Dir) {
	if n == nil || !n.tuple.Equal(tu) {
		return nil, DirOriginal
	}
	c, dir := n.conn()
	if c.Status()&StatusDying != 0 {
		return nil, DirOriginal
	}
	if t.expired(c, now) {
		t.Delete(c)
		return nil, DirOriginal
	}
	return c, dir
}

// Lookup finds a live connection by either of its tuples. The connection's
// entry is never reused (the caller may keep it), so the datapath uses In.
func (t *Table) Lookup(tu *Tuple) (*Conn, Dir) {
	t.walkStart()
	c, d := t.lookup(tu, t.Now())
	if c != nil {
		c.SetStatus(statusPinned)
	}
	t.walkEnd()
	return c, d
}

// Taken reports whether a confirmed connection other than ignore uses tu as
// either tuple (Linux's nf_conntrack_tuple_taken, for NAT port choice). A
// local connection (StatusLocal) does not count: it yields the tuple when
// ignore is confirmed (see Confirm). The gateway marks a connection local
// only after NAT decided, so ignore is never one.
func (t *Table) Taken(tu *Tuple, ignore *Conn) bool {
	t.walkStart()
	c, _ := t.lookup(tu, t.Now())
	taken := c != nil && c != ignore && c.Status()&StatusLocal == 0
	t.walkEnd()
	if taken {
		t.Stats.Found.Add(1)
		return true
	}
	return false
}

func (t *Table) stripe(h uint64) int { return int(h & t.mask & (numLocks - 1)) }

func (t *Table) lockPair(h0, h1 uint64) (a, b *paddedMutex) {
	i, j := t.stripe(h0), t.stripe(h1)
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

// findLocked looks for a live entry with tuple tu; its stripe is locked.
func (t *Table) findLocked(h uint64, tu *Tuple, now int64) *Conn {
	b := &t.buckets[h&t.mask]
	tags, tag := b.tags.Load(), tagOf(h)
	var found *Conn
	check := func(n *hashNode) bool {
		if n == nil || !n.tuple.Equal(tu) {
			return true
		}
		if c, _ := n.conn(); c.Status()&StatusDying == 0 && !t.expired(c, now) {
			found = c
			return false
		}
		return true
	}
	for i := range b.slot {
		if (tags>>(i*tagBits))&tagMask == tag && !check(b.slot[i].Load()) {
			return found
		}
	}
	for n := b.more.Load(); n != nil; n = n.next.Load() {
		if !check(n) {
			return found
		}
	}
	return nil
}

// link puts n into its bucket; its stripe is locked. The store publishes
// n's tuple and c's fields written before it to lock-free readers.
func (t *Table) link(h uint64, n *hashNode) { t.buckets[h&t.mask].insert(h, n) }

// unlink removes n from its bucket; its stripe is locked.
func (t *Table) unlink(h uint64, n *hashNode) { t.buckets[h&t.mask].remove(n) }

// maxYield bounds how many local connections one Confirm deletes: one per
// tuple, and once more for each that a racing packet re-created meanwhile.
const maxYield = 4

// Confirm enters a new connection into the table, as Linux's
// __nf_conntrack_confirm does once the packet was accepted. A clash with an
// existing entry (another packet of the same flow won the race, or NAT chose
// a tuple that became taken) is an error; the caller drops the packet —
// except that a local connection (StatusLocal) yields to a c that is not
// local: it is deleted (a DESTROY event) and c takes its place.
func (t *Table) Confirm(c *Conn, now int64) error {
	st := c.Status()
	if st&StatusConfirmed != 0 {
		return nil
	}
	if st&StatusDying != 0 {
		return ErrDead
	}
	o, r := &c.node[DirOriginal], &c.node[DirReply]
	h0, h1 := o.tuple.hash(t.seed), r.tuple.hash(t.seed)
	a, b := t.lockPair(h0, h1)
	for yields := 0; ; yields++ {
		x, y := t.findLocked(h0, &o.tuple, now), t.findLocked(h1, &r.tuple, now)
		if x == nil && y == nil {
			break
		}
		if yields == maxYield || st&StatusLocal != 0 || !yielding(x) || !yielding(y) {
			unlockPair(a, b)
			t.Stats.InsertFailed.Add(1)
			return ErrClash
		}
		// Delete locks the stripes of the local connection's own tuples.
		// Holding walkers keeps x's and y's entries from being reused
		// meanwhile by another connection (reclaim), whether or not our
		// caller is a reader.
		t.walkStart()
		unlockPair(a, b)
		if x != nil {
			t.Delete(x)
		}
		if y != nil && y != x {
			t.Delete(y)
		}
		t.walkEnd()
		a, b = t.lockPair(h0, h1)
	}
	// Confirmed and Dying are decided together: Delete sets Dying and then
	// unlinks only if it saw Confirmed, so a connection is either linked
	// here with Delete bound to find it, or refused here.
	for {
		old := c.status.Load()
		if old&uint32(StatusDying) != 0 {
			unlockPair(a, b)
			return ErrDead
		}
		if c.status.CompareAndSwap(old, old|uint32(StatusConfirmed)) {
			break
		}
	}
	t.link(h0, o)
	t.link(h1, r)
	t.locks[t.stripe(h0)].remember(c)
	unlockPair(a, b)
	t.count.Add(1)
	t.Stats.Insert.Add(1)
	if m := c.Master(); m != nil {
		m.EnsureExt().children.Add(1)
	}
	t.emit(EventNew, c)
	return nil
}

// yielding reports whether c (nil: none) gives its tuples up to a
// connection being confirmed.
func yielding(c *Conn) bool { return c == nil || c.Status()&StatusLocal != 0 }

// addAlias links a second reply tuple for confirmed connection c (ESP's
// learnt SPI). It reports false when the tuple is in use or c is dying.
func (t *Table) addAlias(c *Conn, tu *Tuple, now int64) bool {
	e := c.EnsureExt()
	a := &aliasNode{conn: c}
	a.node.tuple = *tu
	a.node.kind = nodeAlias
	if !e.alias.CompareAndSwap(nil, a) {
		return false
	}
	h := tu.hash(t.seed)
	l := &t.locks[t.stripe(h)]
	l.Lock()
	defer l.Unlock()
	// Delete sets Dying before it reads e.alias; reading Dying after
	// storing e.alias means one of us sees the other.
	if c.Status()&StatusDying != 0 || t.findLocked(h, tu, now) != nil {
		e.alias.CompareAndSwap(a, nil)
		return false
	}
	t.link(h, &a.node)
	return true
}

// Delete removes a connection (it dies: expectations it is master of go
// too). It reports whether this call killed it.
func (t *Table) Delete(c *Conn) bool {
	old := Status(c.status.Or(uint32(StatusDying)))
	if old&StatusDying != 0 {
		return false
	}
	t.kill(c, old)
	return true
}

// kill does Delete's work once the caller set Dying on c, whose status was
// old.
func (t *Table) kill(c *Conn, old Status) {
	if old&StatusConfirmed != 0 {
		o, r := &c.node[DirOriginal], &c.node[DirReply]
		h0, h1 := o.tuple.hash(t.seed), r.tuple.hash(t.seed)
		a, b := t.lockPair(h0, h1)
		t.unlink(h0, o)
		t.unlink(h1, r)
		// Confirm listed c in the stripe of h0, locked here.
		t.locks[t.stripe(h0)].forget(c)
		unlockPair(a, b)
		if e := c.ext.Load(); e != nil {
			if al := e.alias.Load(); al != nil {
				h := al.node.tuple.hash(t.seed)
				l := &t.locks[t.stripe(h)]
				l.Lock()
				t.unlink(h, &al.node)
				l.Unlock()
			}
		}
		t.count.Add(-1)
		t.Stats.Delete.Add(1)
		if m := c.Master(); m != nil {
			if e := m.ext.Load(); e != nil {
				e.children.Add(-1)
			}
		}
	}
	if d, ok := t.trackers[c.node[DirOriginal].tuple.Proto].(destroyer); ok {
		d.destroy(c)
	}
	if hs := t.destroyHooks.Load(); hs != nil {
		for _, fn := range *hs {
			fn(c)
		}
	}
	if old&statusExpecting != 0 {
		t.exp.removeMaster(c, &t.Stats)
	}
	if old&StatusConfirmed != 0 {
		t.emit(EventDestroy, c)
	}
	t.retire(c, c.Status())
}

// earlyDropRange is how many buckets from the new tuple's earlyDrop looks
// at, Linux's NF_CT_EVICTION_RANGE.
const earlyDropRange = 8

// earlyDrop frees room for a new connection when the table is full. It
// first takes, without scanning, the oldest of the connections last
// confirmed in the new tuple's stripe that is still unassured (or has
// expired): in a flood those are the flood's own. Failing that it does as
// Linux's early_drop: in the buckets from the new tuple's on, expired
// entries are reaped and unassured ones (or assured ones their tracker
// gives up, like TCP in its closing states) are deleted, one bucket at a
// time until something was freed. It reports whether anything was.
func (t *Table) earlyDrop(h uint64, now int64) bool {
	l := &t.locks[t.stripe(h)]
	for range recentLen {
		l.Lock()
		c := l.oldest()
		l.Unlock()
		if c == nil {
			break
		}
		if t.dropCandidate(c, now) {
			return true
		}
	}
	freed := false
	drop := func(n *hashNode) bool {
		c, dir := n.conn()
		if dir != DirOriginal || n.kind != nodeOriginal {
			return true
		}
		st := c.Status()
		if st&StatusDying != 0 {
			return true
		}
		if t.expired(c, now) {
			if t.Delete(c) {
				freed = true
			}
			return true
		}
		if st&StatusAssured != 0 {
			ed, ok := t.trackers[n.tuple.Proto].(earlyDropper)
			if !ok || !ed.canEarlyDrop(c) {
				return true
			}
		}
		if t.Delete(c) {
			t.Stats.EarlyDrop.Add(1)
			freed = true
		}
		return true
	}
	for i := range uint64(earlyDropRange) {
		t.buckets[(h+i)&t.mask].each(drop)
		if freed {
			return true
		}
	}
	return false
}

// dropCandidate deletes c, taken from a stripe's recent list, if what is
// there now is a live confirmed connection that is unassured or expired.
// The entry may have died and been reused since it was listed: the status
// is read and swapped atomically, so only the connection that the checks
// passed for dies, and reading it Confirmed orders its tuples before our
// reads of them. It reports whether c was deleted.
func (t *Table) dropCandidate(c *Conn, now int64) bool {
	st := c.Status()
	if st&(StatusConfirmed|StatusDying) != StatusConfirmed {
		return false
	}
	expired := t.expired(c, now)
	if !expired && st&StatusAssured != 0 {
		return false
	}
	if !c.status.CompareAndSwap(uint32(st), uint32(st|StatusDying)) {
		return false
	}
	t.kill(c, st)
	if !expired {
		t.Stats.EarlyDrop.Add(1)
	}
	return true
}

// GC scans up to n buckets from where the last call stopped and deletes the
// expired connections it finds, and lapsed expectations. Calls are cheap
// and incremental (no lock is held across buckets), so a million entries
// never cause a pause; RunGC calls it on a timer.
func (t *Table) GC(now int64, n int) (removed int) {
	removed, _, _ = t.gcStep(now, n)
	return removed
}

// gcStep is GC, also reporting how many live connections it saw and the
// sum of their remaining lifetimes (each capped at gcSweepMax), which
// RunGC paces itself by.
func (t *Table) gcStep(now int64, n int) (removed, live int, remaining int64) {
	t.gcMu.Lock()
	start := t.gcCursor
	n = min(max(n, 0), len(t.buckets))
	t.gcCursor = (start + n) & int(t.mask)
	t.gcMu.Unlock()
	t.walkStart()
	defer t.walkEnd()
	for i := range n {
		// Deleting while walking is safe: an unlinked node keeps its next,
		// and nodes never move between slots.
		t.buckets[(start+i)&int(t.mask)].each(func(nd *hashNode) bool {
			if nd.kind != nodeOriginal {
				return true
			}
			c, _ := nd.conn()
			left := c.expires.Load() - now
			switch {
			case left <= 0:
				if t.Delete(c) {
					removed++
				}
			case c.Status()&StatusDying == 0:
				live++
				remaining += min(left, int64(gcSweepMax))
			}
			return true
		})
	}
	if t.exp.count.Load() > 0 {
		t.exp.expire(now, &t.Stats)
	}
	return removed, live, remaining
}

// RunGC's pace, after Linux's gc_worker: the whole table is swept in
// gcStepsPerSweep steps, over as long as the connections it saw had left
// to live on average, between gcSweepMin and gcSweepMax. Entries that
// expire in between are reaped sooner by any lookup that meets them and
// by early drop when the table is full, so a slow sweep costs only their
// memory for a while. A sweep that found many expired entries, or a full
// table, makes the next one fast.
const (
	gcStepsPerSweep = 64
	gcSweepMin      = time.Second
	gcSweepMax      = 60 * time.Second
)

// RunGC collects expired entries until ctx ends.
func (t *Table) RunGC(ctx context.Context) {
	step := (len(t.buckets) + gcStepsPerSweep - 1) / gcStepsPerSweep
	sweep := gcSweepMin
	var removed, live, steps int
	var remaining int64
	tm := time.NewTimer(sweep / gcStepsPerSweep)
	defer tm.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tm.C:
		}
		r, l, rem := t.gcStep(t.Now(), step)
		removed, live, remaining = removed+r, live+l, remaining+rem
		if steps++; steps == gcStepsPerSweep {
			full := t.count.Load() >= int64(t.cfg.Load().Max)*9/10
			sweep = nextSweep(removed, live, remaining, full)
			removed, live, steps, remaining = 0, 0, 0, 0
		}
		tm.Reset(sweep / gcStepsPerSweep)
	}
}

// nextSweep is how long the next sweep should take after one that removed
// and saw live connections with remaining lifetime in total.
func nextSweep(removed, live int, remaining int64, full bool) time.Duration {
	if full || removed*10 > removed+live {
		return gcSweepMin
	}
	sweep := gcSweepMax
	if live > 0 {
		sweep = time.Duration(remaining / int64(live))
	}
	return min(max(sweep, gcSweepMin), gcSweepMax)
}

// Range calls fn for each live connection (once each) until fn returns
// false. It takes no locks; connections may come and go meanwhile.
//
// c is valid only while fn runs: once it returns, the entry of a connection
// that died meanwhile may be reused (see reclaim).
func (t *Table) Range(fn func(c *Conn) bool) {
	t.walkStart()
	defer t.walkEnd()
	now := t.Now()
	for i := range t.buckets {
		if !t.buckets[i].each(func(n *hashNode) bool {
			if n.kind != nodeOriginal {
				return true
			}
			c, _ := n.conn()
			if c.Status()&StatusDying != 0 || t.expired(c, now) {
				return true
			}
			return fn(c)
		}) {
			return
		}
	}
}

// Flush deletes every connection (conntrack -F).
func (t *Table) Flush() {
	t.Range(func(c *Conn) bool { t.Delete(c); return true })
}

// icmpScratch is icmpError's working space, pooled because the quoted
// packet and tuples pass through tracker interfaces and would otherwise be
// allocated for every ICMP error.
type icmpScratch struct {
	inner   packet.Parsed
	it, inv Tuple
}

var icmpScratchPool = sync.Pool{New: func() any { return new(icmpScratch) }}

// icmpError finds the connection an ICMP error is about (Linux's
// nf_conntrack_inet_error): the quoted packet's tuple, inverted, must be a
// tracked connection, and the error must travel to the endpoint that sent
// the quoted packet. The error is RELATED (RELATED_REPLY when it travels in
// the connection's reply direction); otherwise INVALID. Like Linux, the
// error is not counted in the connection's accounting and does not refresh
// its timeout.
func (t *Table) icmpError(p *packet.Parsed, cfg *Config, now int64, res *Result) {
	if (cfg.checksum() && !p.L4ChecksumValid()) || (p.Version == 4 && p.ICMPType > maxICMPType) {
		t.icmpInvalid()
		return
	}
	s := icmpScratchPool.Get().(*icmpScratch)
	defer icmpScratchPool.Put(s)
	inner, it, inv := &s.inner, &s.it, &s.inv
	if inner.DecodeQuoted(p.ICMPQuote()) != nil || inner.Version != p.Version || inner.IsICMPError() {
		t.icmpInvalid()
		return
	}
	tr := t.trackers[inner.Proto]
	tupleAddrs(inner, it)
	switch inner.Proto {
	case packet.ProtoTCP, packet.ProtoUDP, packet.ProtoICMP, packet.ProtoICMPv6:
		// Linux reads 8 bytes of the quoted transport header for the
		// tuple (RFC 792's minimum quote); a shorter quote is INVALID.
		if inner.L4Off == 0 || len(inner.Bytes())-inner.L4Off < 8 {
			t.icmpInvalid()
			return
		}
	}
	if (!inner.HasL4 && !isGeneric(tr)) || !tr.Tuple(inner, it) {
		t.icmpInvalid()
		return
	}
	if ck, ok := tr.(inverter); ok && !ck.invertible(it) {
		t.icmpInvalid()
		return
	}
	invertAddrs(it, inv)
	tr.Invert(it, inv)
	c, dir := t.lookup(inv, now)
	if c == nil || c.node[dir].tuple.Dst != p.Dst {
		t.icmpInvalid()
		return
	}
	res.Conn, res.Dir = c, dir
	if dir == DirReply {
		res.Info = RelatedReply
	} else {
		res.Info = Related
	}
}

// icmpInvalid counts an ICMP error that relates to no connection: INVALID,
// and an error in Linux's sense (the error column of conntrack -S).
func (t *Table) icmpInvalid() {
	t.Stats.Invalid.Add(1)
	t.Stats.Error.Add(1)
}

// AppendStats appends the counters in the `conntrack -S` line format (one
// line for the whole table, as cpu=0), without a newline.
func (t *Table) AppendStats(b []byte) []byte {
	s := &t.Stats
	b = append(b, "cpu=0   \t"...)
	for _, f := range [...]struct {
		name string
		v    uint64
	}{
		{"found", s.Found.Load()}, {"invalid", s.Invalid.Load()}, {"insert", s.Insert.Load()},
		{"insert_failed", s.InsertFailed.Load()}, {"drop", s.Drop.Load()},
		{"early_drop", s.EarlyDrop.Load()}, {"error", s.Error.Load()},
		{"search_restart", 0}, {"clash_resolve", 0}, {"chaintoolong", 0},
	} {
		b = append(b, f.name...)
		b = append(b, '=')
		b = strconv.AppendUint(b, f.v, 10)
		b = append(b, ' ')
	}
	return b
}
