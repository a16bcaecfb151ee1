package conntrack

import (
	"errors"
	"sync"
	"sync/atomic"
)

// Expectation announces a connection a helper expects (the data connection
// of FTP): a NEW packet whose tuple matches Tuple under Mask becomes RELATED
// to Master, with status EXPECTED (Linux's nf_conntrack_expect).
type Expectation struct {
	// Tuple is the expected original tuple; Mask says which parts count.
	Tuple Tuple
	Mask  Mask
	// Master is the connection whose helper created the expectation.
	Master *Conn
	// Helper names the creating helper; the new connection gets it too
	// when HelperFollows is set.
	Helper string
	// HelperFollows assigns Helper to the expected connection.
	HelperFollows bool
	// Class separates a helper's expectation kinds for the per-master limit.
	Class uint8
	// Expires is when the expectation lapses (Table.Now units).
	Expires int64
	// OnMatch runs when a new connection matches, before its first packet
	// is tracked; NAT uses it to make the connection follow the master's
	// translation (Linux's expectfn, nf_nat_follow_master).
	OnMatch func(c *Conn, e *Expectation)
	// Data is the creator's.
	Data any

	removed bool
}

// ErrExpectLimit is returned when the table holds too many expectations.
var ErrExpectLimit = errors.New("conntrack: too many expectations")

// MaxExpectations bounds all expectations in a table, whatever the
// per-master limits, so hostile control connections cannot grow memory.
const MaxExpectations = 4096

type expectTable struct {
	mu    sync.Mutex // guards list and each expectation's removed flag
	list  []*Expectation
	count atomic.Int64
}

func (x *expectTable) init() {}

// match finds and consumes the expectation a new tuple matches.
func (x *expectTable) match(tu *Tuple, now int64) *Expectation {
	x.mu.Lock()
	defer x.mu.Unlock()
	for i, e := range x.list {
		if e.Expires <= now || e.Master.Status()&StatusDying != 0 {
			continue
		}
		if e.Mask.matches(&e.Tuple, tu) {
			x.removeAt(i)
			return e
		}
	}
	return nil
}

func (x *expectTable) removeAt(i int) {
	e := x.list[i]
	e.removed = true
	last := len(x.list) - 1
	copy(x.list[i:], x.list[i+1:])
	x.list[last] = nil
	x.list = x.list[:last]
	x.count.Store(int64(len(x.list)))
}

func (x *expectTable) removeMaster(c *Conn, st *Stats) {
	x.mu.Lock()
	defer x.mu.Unlock()
	for i := 0; i < len(x.list); {
		if x.list[i].Master == c {
			x.removeAt(i)
			st.ExpectDelete.Add(1)
			continue
		}
		i++
	}
}

func (x *expectTable) expire(now int64, st *Stats) {
	x.mu.Lock()
	defer x.mu.Unlock()
	for i := 0; i < len(x.list); {
		if e := x.list[i]; e.Expires <= now || e.Master.Status()&StatusDying != 0 {
			x.removeAt(i)
			st.ExpectDelete.Add(1)
			continue
		}
		i++
	}
}

// Expect adds an expectation. When the master already has max expectations
// of the same helper and class, the oldest is replaced, as Linux does (a new
// PORT command replaces the previous one). An expectation identical to an
// existing one replaces it.
func (t *Table) Expect(e *Expectation, max int) error {
	x := &t.exp
	x.mu.Lock()
	defer x.mu.Unlock()
	n, oldest := 0, -1
	for i := 0; i < len(x.list); i++ {
		o := x.list[i]
		if o.Tuple == e.Tuple && o.Mask == e.Mask {
			x.removeAt(i)
			i--
			continue
		}
		if o.Master == e.Master && o.Helper == e.Helper && o.Class == e.Class {
			n++
			if oldest < 0 {
				oldest = i
			}
		}
	}
	if max > 0 && n >= max && oldest >= 0 {
		x.removeAt(oldest)
		t.Stats.ExpectDelete.Add(1)
	}
	if len(x.list) >= MaxExpectations {
		return ErrExpectLimit
	}
	x.list = append(x.list, e)
	x.count.Store(int64(len(x.list)))
	t.Stats.ExpectCreate.Add(1)
	return nil
}

// Unexpect removes an expectation if it is still waiting.
func (t *Table) Unexpect(e *Expectation) {
	x := &t.exp
	x.mu.Lock()
	defer x.mu.Unlock()
	for i, o := range x.list {
		if o == e {
			x.removeAt(i)
			return
		}
	}
}

// Expectations calls fn for a snapshot of the live expectations.
func (t *Table) Expectations(fn func(e *Expectation) bool) {
	now := t.Now()
	t.exp.mu.Lock()
	snap := append([]*Expectation(nil), t.exp.list...)
	t.exp.mu.Unlock()
	for _, e := range snap {
		if e.Expires <= now {
			continue
		}
		if !fn(e) {
			return
		}
	}
}

// ExpectationCount returns how many expectations wait.
func (t *Table) ExpectationCount() int { return int(t.exp.count.Load()) }
