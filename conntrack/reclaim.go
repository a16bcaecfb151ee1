package conntrack

import (
	"sync"
	"sync/atomic"
	"weak"
)

// reclaim recycles the entries of dead connections, so a flood of new
// connections allocates nothing once the pool is warm, and the memory of a
// table at its max is the entries it holds plus a bounded pool.
//
// An entry cannot go back into use the moment its connection dies: readers
// walk the chains with no lock and may stand on its nodes, and the
// goroutine that got it from In keeps using it until its next packet. The
// scheme is epoch-based reclamation (Fraser's EBR; userspace RCU's
// quiescent states):
//
//   - The table has a global epoch. Each Result In is called with is a
//     reader with a slot in the table; In first publishes the epoch it sees
//     in that slot (only when it changed: one load on the established
//     path). Publishing is the reader's promise that it holds no connection
//     it found before: res.Conn is overwritten by this call. Release marks
//     the slot idle (holding nothing).
//   - Delete unlinks the connection and then files it under the epoch it
//     reads then (retire).
//   - The epoch moves from e to e+1 only when every slot shows e or is
//     idle, and no lock-free walk without a Result (Lookup, Taken, Range,
//     GC, which hold walkers for reading) is under way. Entries filed under
//     e-2 are then reused: the epoch became e-1 after they were unlinked,
//     and every reader has since published e-1 or gone idle, so none can
//     reach them through a bucket and none kept one in res.Conn; and no
//     walk without a Result that began before the unlink is still running.
//
// Entries that may be referred to beyond one packet are never reused:
// those with an Ext (helpers, aliases, masters of expectations), with a
// Master, given out by Lookup or NewUnconfirmed, or sent to an event
// subscriber (statusPinned). The garbage collector frees them as before,
// and frees whatever does not fit in the bounded pool and limbo.
//
// A slot whose Result is dropped without Release is found dead through its
// weak pointer and forgotten; until the collector notices, it holds the
// epoch back, which only means new connections are allocated meanwhile.
// Nothing is ever reused early: a stuck or slow reader stops reuse, not
// safety.
type reclaim struct {
	epoch atomic.Uint64 // starts at 1; a slot's 0 means idle

	// walkers is held for reading by each lock-free walk made without a
	// Result, and tried for writing by advance.
	walkers sync.RWMutex

	// mu guards the fields below. It is taken with no stripe lock held
	// (walkers, for reading, may be), and advance only tries walkers.
	mu      sync.Mutex
	readers []weak.Pointer[reader]
	limbo   [3][]*Conn // limbo[e%3]: retired in epoch e
	free    []*Conn
	max     int // bound of free and of each limbo slice
}

// reader is one Result's published epoch, on its own cache line: only its
// owner writes it.
type reader struct {
	seen atomic.Uint64
	t    *Table
	_    [48]byte
}

// reuseBatch is how many entries must wait in the current epoch before a
// new connection tries to move the epoch on: each try reads every slot.
const reuseBatch = 32

// init bounds the pool by the table's max: a sixteenth of it, within
// 1024 and 65536 entries.
func (r *reclaim) init(tableMax int) {
	r.epoch.Store(1)
	r.max = min(max(tableMax/16, 1024), 1<<16)
}

// enter publishes the table's epoch in res's slot, registering it first.
func (t *Table) enter(res *Result) {
	rd := res.rd
	if rd == nil || rd.t != t {
		rd = t.register()
		res.rd = rd
	}
	if e := t.rc.epoch.Load(); rd.seen.Load() != e {
		rd.seen.Store(e)
	}
}

func (t *Table) register() *reader {
	rd := &reader{t: t}
	rd.seen.Store(t.rc.epoch.Load())
	wp := weak.Make(rd)
	t.rc.mu.Lock()
	t.rc.readers = append(t.rc.readers, wp)
	t.rc.mu.Unlock()
	return rd
}

// Release says the goroutine using res holds none of the connections it
// got from In any more (res.Conn is cleared). A worker calls it when it is
// done with a batch: a Result that waits, unreleased, for its next packet
// keeps entries of dead connections from being reused.
func (r *Result) Release() {
	r.Conn = nil
	if r.rd != nil {
		r.rd.seen.Store(0)
	}
}

// retire files a dead, unlinked connection for reuse when nothing can
// refer to it beyond its last packet.
func (t *Table) retire(c *Conn, st Status) {
	if st&(statusPinned|statusExpecting) != 0 || c.ext.Load() != nil {
		return
	}
	r := &t.rc
	r.mu.Lock()
	l := &r.limbo[r.epoch.Load()%3]
	if len(*l) < r.max {
		*l = append(*l, c)
	}
	r.mu.Unlock()
}

// newEntry returns a zeroed entry: a reused one when one is ready.
func (t *Table) newEntry() *Conn {
	r := &t.rc
	r.mu.Lock()
	if len(r.free) == 0 && len(r.limbo[r.epoch.Load()%3]) >= reuseBatch {
		t.advance()
	}
	var c *Conn
	if n := len(r.free); n > 0 {
		c = r.free[n-1]
		r.free[n-1] = nil
		r.free = r.free[:n-1]
	}
	r.mu.Unlock()
	if c == nil {
		return &Conn{}
	}
	*c = Conn{}
	return c
}

// advance moves the epoch on when every reader has seen it, and moves the
// entries retired two epochs back to the free list. r.mu is held.
func (t *Table) advance() {
	r := &t.rc
	if !r.walkers.TryLock() {
		return
	}
	defer r.walkers.Unlock()
	e := r.epoch.Load()
	live := r.readers[:0]
	ok := true
	for _, wp := range r.readers {
		rd := wp.Value()
		if rd == nil {
			continue
		}
		live = append(live, wp)
		if s := rd.seen.Load(); s != 0 && s != e {
			ok = false
		}
	}
	clear(r.readers[len(live):])
	r.readers = live
	if !ok {
		return
	}
	r.epoch.Store(e + 1)
	// limbo[(e+1)%3] holds what was retired in e-2 (or before): no reader
	// can reach it.
	old := &r.limbo[(e+1)%3]
	n := min(len(*old), r.max-len(r.free))
	r.free = append(r.free, (*old)[:n]...)
	clear(*old)
	*old = (*old)[:0]
}

// walk brackets a lock-free walk made without a Result.
func (t *Table) walkStart() { t.rc.walkers.RLock() }
func (t *Table) walkEnd()   { t.rc.walkers.RUnlock() }
