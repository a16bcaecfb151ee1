package conntrack

import (
	"cmp"
	"container/heap"
	"errors"
	"math"
	"slices"
	"sync"
	"sync/atomic"

	"tungate/packet"
)

// Expectation announces a connection a helper expects (the data connection
// of FTP): a NEW packet whose tuple matches Tuple under Mask becomes RELATED
// to Master, with status EXPECTED (Linux's nf_conntrack_expect).
//
// An expectation whose mask fixes the destination address and port (FTP's
// always do, as all of Linux's) is found by a hash lookup on them; others
// are kept on a short list that every new connection scans, so there may be
// at most maxWildExpectations of them.
type Expectation struct {
	// Tuple is the expected original tuple; Mask says which parts count.
	Tuple Tuple
	Mask  Mask
	// Master is the connection whose helper created the expectation.
	Master *Conn
	// Helper names the creating helper (shown by ct expect); the new
	// connection gets it too when HelperFollows is set.
	Helper string
	// HelperFollows assigns Helper to the expected connection.
	HelperFollows bool
	// Class separates a helper's expectation kinds for the per-master limit.
	Class uint8
	// Expires is when the expectation lapses (Table.Now units); zero means
	// the configured expect timeout from now.
	Expires int64
	// OnMatch runs when a new connection matches, before its first packet
	// is tracked; NAT uses it to make the connection follow the master's
	// translation (Linux's expectfn, nf_nat_follow_master).
	OnMatch func(c *Conn, e *Expectation)
	// Data is the creator's.
	Data any

	// Bookkeeping, guarded by expectTable.mu.
	live    bool      // in the table
	indexed bool      // in byDst under key (else in wild)
	key     expectKey // the fixed destination
	heapIdx int       // position in the expiry heap
	seq     uint64    // insertion order: the oldest is replaced first
}

// Errors returned by Expect.
var (
	// ErrExpectLimit: the table holds ExpectMax expectations (or
	// maxWildExpectations without a fixed destination).
	ErrExpectLimit = errors.New("conntrack: too many expectations")
	// ErrExpectClash: another master expects an overlapping tuple
	// (Linux's -EBUSY from __nf_ct_expect_check).
	ErrExpectClash = errors.New("conntrack: expectation clashes with another")
	// ErrExpectInvalid: no master, or a tuple of no address family.
	ErrExpectInvalid = errors.New("conntrack: expectation needs a master and an IPv4 or IPv6 tuple")
)

// MaxExpectations is the default bound on all expectations in a table,
// whatever the per-master limits, so hostile control connections cannot
// grow memory (Config.ExpectMax changes it).
const MaxExpectations = 4096

// maxWildExpectations bounds expectations without a fixed destination:
// each one costs every new connection a comparison.
const maxWildExpectations = 64

// expectKey is the part of a tuple an indexed expectation fixes.
type expectKey struct {
	dst    packet.Addr
	dport  uint16
	proto  uint8
	family uint8
}

func keyOf(t *Tuple) expectKey {
	return expectKey{dst: t.Dst, dport: t.DstPort, proto: t.Proto, family: t.Family}
}

// fixesDst reports whether m compares the whole destination address and
// port of a tuple of the given family.
func (m *Mask) fixesDst(family uint8) bool {
	n := 16
	if family == 4 {
		n = 4
	}
	for _, b := range m.Dst[:n] {
		if b != 0xff {
			return false
		}
	}
	return m.DstPort == 0xffff
}

// expHeap orders expectations by expiry for expire.
type expHeap []*Expectation

func (h expHeap) Len() int           { return len(h) }
func (h expHeap) Less(i, j int) bool { return h[i].Expires < h[j].Expires }
func (h expHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].heapIdx, h[j].heapIdx = i, j
}
func (h *expHeap) Push(x any) {
	e := x.(*Expectation)
	e.heapIdx = len(*h)
	*h = append(*h, e)
}
func (h *expHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return e
}

type expectTable struct {
	// mu guards the indexes below and every Expectation's bookkeeping.
	// Lookups by new connections take it shared; a match upgrades.
	mu       sync.RWMutex
	byDst    map[expectKey][]*Expectation // oldest first
	wild     []*Expectation               // oldest first
	byMaster map[*Conn][]*Expectation
	expiry   expHeap
	seq      uint64

	count      atomic.Int64
	nextExpiry atomic.Int64 // earliest Expires in the table, MaxInt64 if none
}

func (x *expectTable) init() {
	x.byDst = map[expectKey][]*Expectation{}
	x.byMaster = map[*Conn][]*Expectation{}
	x.nextExpiry.Store(math.MaxInt64)
}

// usable reports whether e may still be matched or listed: it has not
// lapsed and its master is alive. An expired master counts as dead even
// before the collector deletes it (Linux deletes expired entries as soon
// as anything looks at them, taking their expectations along).
func (e *Expectation) usable(now int64) bool {
	return e.Expires > now && e.Master.Status()&StatusDying == 0 && e.Master.expires.Load() > now
}

// find returns the oldest live expectation tu matches; mu is held.
func (x *expectTable) find(tu *Tuple, now int64) *Expectation {
	for _, e := range x.byDst[keyOf(tu)] {
		if e.usable(now) && e.Mask.matches(&e.Tuple, tu) {
			return e
		}
	}
	for _, e := range x.wild {
		if e.usable(now) && e.Mask.matches(&e.Tuple, tu) {
			return e
		}
	}
	return nil
}

// match finds and consumes the expectation a new tuple matches.
func (x *expectTable) match(tu *Tuple, now int64, st *Stats) *Expectation {
	x.mu.RLock()
	e := x.find(tu, now)
	x.mu.RUnlock()
	if e == nil {
		return nil
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if !e.live {
		// Another connection took it meanwhile; look again.
		if e = x.find(tu, now); e == nil {
			return nil
		}
	}
	x.remove(e)
	st.ExpectDelete.Add(1)
	return e
}

// deleteFrom removes e from list l (keeping the order) and returns it.
func deleteFrom(l []*Expectation, e *Expectation) []*Expectation {
	if i := slices.Index(l, e); i >= 0 {
		return slices.Delete(l, i, i+1)
	}
	return l
}

// remove takes e out of every index; mu is held for writing.
func (x *expectTable) remove(e *Expectation) {
	if !e.live {
		return
	}
	e.live = false
	if e.indexed {
		if l := deleteFrom(x.byDst[e.key], e); len(l) == 0 {
			delete(x.byDst, e.key)
		} else {
			x.byDst[e.key] = l
		}
	} else {
		x.wild = deleteFrom(x.wild, e)
	}
	if l := deleteFrom(x.byMaster[e.Master], e); len(l) == 0 {
		delete(x.byMaster, e.Master)
	} else {
		x.byMaster[e.Master] = l
	}
	heap.Remove(&x.expiry, e.heapIdx)
	x.count.Add(-1)
	x.updateNext()
}

func (x *expectTable) updateNext() {
	if len(x.expiry) == 0 {
		x.nextExpiry.Store(math.MaxInt64)
	} else {
		x.nextExpiry.Store(x.expiry[0].Expires)
	}
}

func (x *expectTable) removeMaster(c *Conn, st *Stats) {
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, e := range slices.Clone(x.byMaster[c]) {
		x.remove(e)
		st.ExpectDelete.Add(1)
	}
}

// expire removes the lapsed expectations, cheaply when none has.
func (x *expectTable) expire(now int64, st *Stats) {
	if x.nextExpiry.Load() > now {
		return
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	for len(x.expiry) > 0 && x.expiry[0].Expires <= now {
		x.remove(x.expiry[0])
		st.ExpectDelete.Add(1)
	}
}

// intersect returns the mask of the fields both masks compare.
func (m *Mask) intersect(o *Mask) Mask {
	r := Mask{SrcPort: m.SrcPort & o.SrcPort, DstPort: m.DstPort & o.DstPort}
	for i := range r.Src {
		r.Src[i] = m.Src[i] & o.Src[i]
		r.Dst[i] = m.Dst[i] & o.Dst[i]
	}
	return r
}

// clashes reports whether some tuple could match both expectations
// (Linux's expect_clash: equal where both masks look).
func clashes(a, b *Expectation) bool {
	m := a.Mask.intersect(&b.Mask)
	return m.matches(&a.Tuple, &b.Tuple)
}

// Expect adds an expectation, following Linux's nf_ct_expect_related: an
// identical expectation of the same master and class is replaced; one of
// another master, or any that overlaps, is ErrExpectClash. When the master
// already has max expectations (max > 0) of the same helper and class, the
// oldest is replaced (a new PORT command replaces the previous one). The
// whole table holds at most Config.ExpectMax.
func (t *Table) Expect(e *Expectation, max int) error {
	if e.Master == nil || (e.Tuple.Family != 4 && e.Tuple.Family != 6) {
		return ErrExpectInvalid
	}
	cfg := t.cfg.Load()
	if e.Expires == 0 {
		e.Expires = t.Now() + int64(cfg.Timeouts.Expect)
	}
	// Marked before the dying check below: see Delete.
	e.Master.SetStatus(statusExpecting)
	x := &t.exp
	x.mu.Lock()
	defer x.mu.Unlock()
	if e.Master.Status()&StatusDying != 0 {
		return ErrDead
	}
	if e.live {
		x.remove(e)
	}
	e.indexed = e.Mask.fixesDst(e.Tuple.Family)
	e.key = keyOf(&e.Tuple)
	check := func(o *Expectation) error {
		if o.Tuple == e.Tuple && o.Mask == e.Mask && o.Master == e.Master && o.Class == e.Class {
			x.remove(o)
			t.Stats.ExpectDelete.Add(1)
			return nil
		}
		if clashes(o, e) {
			return ErrExpectClash
		}
		return nil
	}
	var cands []*Expectation
	if e.indexed {
		cands = append(slices.Clone(x.byDst[e.key]), x.wild...)
	} else {
		for _, l := range x.byDst {
			cands = append(cands, l...)
		}
		cands = append(cands, x.wild...)
	}
	for _, o := range cands {
		if err := check(o); err != nil {
			return err
		}
	}
	if max > 0 {
		n := 0
		var oldest *Expectation
		for _, o := range x.byMaster[e.Master] {
			if o.Helper == e.Helper && o.Class == e.Class {
				n++
				if oldest == nil || o.seq < oldest.seq {
					oldest = o
				}
			}
		}
		if n >= max {
			x.remove(oldest)
			t.Stats.ExpectDelete.Add(1)
		}
	}
	if x.count.Load() >= int64(cfg.ExpectMax) || (!e.indexed && len(x.wild) >= maxWildExpectations) {
		return ErrExpectLimit
	}
	x.seq++
	e.seq = x.seq
	e.live = true
	if e.indexed {
		x.byDst[e.key] = append(x.byDst[e.key], e)
	} else {
		x.wild = append(x.wild, e)
	}
	x.byMaster[e.Master] = append(x.byMaster[e.Master], e)
	heap.Push(&x.expiry, e)
	x.count.Add(1)
	x.updateNext()
	t.Stats.ExpectCreate.Add(1)
	return nil
}

// Unexpect removes an expectation if it is still waiting.
func (t *Table) Unexpect(e *Expectation) {
	x := &t.exp
	x.mu.Lock()
	defer x.mu.Unlock()
	if e.live {
		x.remove(e)
		t.Stats.ExpectDelete.Add(1)
	}
}

// FlushExpectations removes every expectation (conntrack -F expect).
func (t *Table) FlushExpectations() {
	x := &t.exp
	x.mu.Lock()
	defer x.mu.Unlock()
	for len(x.expiry) > 0 {
		x.remove(x.expiry[0])
		t.Stats.ExpectDelete.Add(1)
	}
}

// Expectations calls fn for a snapshot of the live expectations, oldest
// first.
func (t *Table) Expectations(fn func(e *Expectation) bool) {
	type entry struct {
		e            *Expectation
		seq, expires int64
	}
	now := t.Now()
	t.exp.mu.RLock()
	snap := make([]entry, 0, len(t.exp.expiry))
	for _, e := range t.exp.expiry {
		snap = append(snap, entry{e, int64(e.seq), e.Expires})
	}
	t.exp.mu.RUnlock()
	slices.SortFunc(snap, func(a, b entry) int { return cmp.Compare(a.seq, b.seq) })
	for _, s := range snap {
		if s.expires <= now || !s.e.usable(now) {
			continue
		}
		if !fn(s.e) {
			return
		}
	}
}

// ExpectationCount returns how many expectations wait.
func (t *Table) ExpectationCount() int { return int(t.exp.count.Load()) }
