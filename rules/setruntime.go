package rules

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gaissmai/bart"
)

// Sets at runtime.
//
// A named set's table is read by the datapath through a liveTable: an
// atomic pointer to an immutable bart table. A change builds a new table
// (bart's persistent insert and delete copy only the path they touch, so
// the old table stays valid for the readers still on it) and stores it;
// a lookup is one atomic load more than a plain table's and takes no lock.
//
// The elements added at runtime (tungate set add, what nft add element and
// pfctl -T add do) are not part of the Ruleset: they live in RuntimeSets,
// the runtime layer, which outlives every Ruleset. A newly compiled
// Ruleset gets them through Apply before it is swapped in, so a reload
// keeps them; Sync repairs a Ruleset that missed a change made between
// its Apply and its swap.

// liveTable is a set's table as the datapath reads it.
type liveTable struct{ p atomic.Pointer[bart.Lite] }

func newLiveTable(t *bart.Lite) *liveTable {
	l := &liveTable{}
	l.p.Store(t)
	return l
}

// maxRuntimeElements bounds the elements one set holds at runtime, so a
// runaway script fills a bounded amount of memory.
const maxRuntimeElements = 1 << 20

// cloneThreshold is the number of elements past which a change clones the
// table once and inserts in place, rather than copying a path per element.
const cloneThreshold = 64

// SetElement is one element of a named set, as `set list` shows it.
type SetElement struct {
	// Prefix is the element; an address is a host prefix.
	Prefix netip.Prefix
	// File: the config file lists it. Runtime: it was added at runtime.
	// Both can be true.
	File, Runtime bool
	// Expires is when the runtime element goes; zero for never.
	Expires time.Time
}

// RuntimeElement is one element of the runtime layer, as Snapshot saves
// it and Restore takes it back (the state file).
type RuntimeElement struct {
	// Set is the set's name.
	Set string `json:"set"`
	// Prefix is the element.
	Prefix netip.Prefix `json:"element"`
	// Expires is when it goes; zero for never. It is wall-clock time, so
	// a restore after a restart keeps what was left of the timeout.
	Expires time.Time `json:"expires,omitzero"`
}

// RuntimeSets is the runtime layer of the named sets: the elements added
// while running, with their timeouts. One lives as long as the gateway;
// Rulesets come and go under it. Safe for concurrent use.
type RuntimeSets struct {
	now func() time.Time

	// mu guards elems and gen, and serialises every store into a
	// Ruleset's live tables (two changes building on the same table
	// would lose one of them).
	mu sync.Mutex
	// elems maps a set name to its runtime elements and their expiry
	// (zero: none). A set the config no longer has keeps its elements:
	// only an explicit delete removes them, and they apply again when
	// the set comes back.
	elems map[string]map[netip.Prefix]time.Time
	// gen counts changes, so Sync sees a Ruleset that missed one.
	gen uint64

	// wake is signalled when an element with a timeout is added, so a
	// sweeper sleeping until a later deadline looks again.
	wake chan struct{}
}

// NewRuntimeSets returns an empty runtime layer whose timeouts run on now
// (time.Now when nil; tests inject a clock).
func NewRuntimeSets(now func() time.Time) *RuntimeSets {
	if now == nil {
		now = time.Now
	}
	return &RuntimeSets{now: now, elems: map[string]map[netip.Prefix]time.Time{}, wake: make(chan struct{}, 1)}
}

// Now returns the layer's clock.
func (r *RuntimeSets) Now() time.Time { return r.now() }

// Wake is signalled when a timeout was added that may be sooner than the
// deadline a sweeper waits for.
func (r *RuntimeSets) Wake() <-chan struct{} { return r.wake }

// ParseSetElement parses an element of a named set: an IPv4 or IPv6
// address or prefix, host bits clear (the same spelling as in [sets]).
func ParseSetElement(s string) (netip.Prefix, error) {
	p, msg := parseCIDR(s)
	if msg != "" {
		return netip.Prefix{}, errors.New(strings.Replace(msg, "bad CIDR", "bad set element", 1))
	}
	return p, nil
}

// FormatSetElement writes an element as nft lists it: a host prefix as
// its address.
func FormatSetElement(p netip.Prefix) string {
	if p.IsSingleIP() {
		return p.Addr().String()
	}
	return p.String()
}

// set returns the named set's info, nil when the Ruleset has none.
func (rs *Ruleset) set(name string) *setInfo {
	i, ok := slices.BinarySearchFunc(rs.sets, name, func(s setInfo, n string) int { return strings.Compare(s.name, n) })
	if !ok {
		return nil
	}
	return &rs.sets[i]
}

// SetNames returns the names of the Ruleset's sets, sorted.
func (rs *Ruleset) SetNames() []string {
	out := make([]string, len(rs.sets))
	for i := range rs.sets {
		out[i] = rs.sets[i].name
	}
	return out
}

// noSet is the error for a set the config does not have.
func noSet(rs *Ruleset, name string) error {
	names := rs.SetNames()
	if len(names) == 0 {
		return fmt.Errorf("set %q: the config has no [sets]", name)
	}
	if s := suggest(name, names); s != "" {
		return fmt.Errorf("set %q: no such set in the config%s", name, s)
	}
	return fmt.Errorf("set %q: no such set in the config (sets: %s)", name, strings.Join(names, ", "))
}

// Add adds elements to the named set of rs at runtime, each expiring
// after timeout (0: never). An element already added at runtime gets the
// new timeout (fail2ban banning again). All or nothing: a set the config
// does not have, or too many elements, changes nothing.
func (r *RuntimeSets) Add(rs *Ruleset, name string, elems []netip.Prefix, timeout time.Duration) error {
	if timeout < 0 {
		return fmt.Errorf("set %q: negative timeout %s", name, timeout)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	si := rs.set(name)
	if si == nil {
		return noSet(rs, name)
	}
	m := r.elems[name]
	added := 0
	for _, p := range elems {
		if _, ok := m[p]; !ok {
			added++
		}
	}
	if len(m)+added > maxRuntimeElements {
		return fmt.Errorf("set %q: %d runtime elements would be more than the %d a set holds", name, len(m)+added, maxRuntimeElements)
	}
	if m == nil {
		m = map[netip.Prefix]time.Time{}
		r.elems[name] = m
	}
	var exp time.Time
	if timeout > 0 {
		exp = r.now().Add(timeout)
	}
	for _, p := range elems {
		m[p] = exp
	}
	upToDate := rs.runtimeGen.Load() == r.gen
	r.gen++
	r.insert(rs, si, elems, upToDate)
	if timeout > 0 {
		select {
		case r.wake <- struct{}{}:
		default:
		}
	}
	return nil
}

// ErrFileElement is returned (wrapped) by Delete for an element only the
// config file has.
var ErrFileElement = errors.New("it is in the config file; remove it there and reload (set del removes only elements added at runtime)")

// Delete removes runtime elements from the named set. Only the runtime
// layer is changed: an element the config file lists, and no runtime add,
// is refused (ErrFileElement), and one in both stays in the set as a file
// element. All or nothing: an element that cannot be deleted changes
// nothing. A set the config dropped can still have its runtime elements
// deleted.
func (r *RuntimeSets) Delete(rs *Ruleset, name string, elems []netip.Prefix) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	si := rs.set(name)
	m := r.elems[name]
	if si == nil && len(m) == 0 {
		return noSet(rs, name)
	}
	for _, p := range elems {
		if _, ok := m[p]; ok {
			continue
		}
		if si != nil && si.file.Get(p) {
			return fmt.Errorf("set %q: cannot delete %s: %w", name, FormatSetElement(p), ErrFileElement)
		}
		return fmt.Errorf("set %q: cannot delete %s: not in the set", name, FormatSetElement(p))
	}
	for _, p := range elems {
		delete(m, p)
	}
	if len(m) == 0 {
		delete(r.elems, name)
	}
	upToDate := rs.runtimeGen.Load() == r.gen
	r.gen++
	if si != nil {
		r.remove(rs, si, elems, upToDate)
	} else if upToDate {
		rs.runtimeGen.Store(r.gen)
	}
	return nil
}

// List returns the named set's elements, file and runtime, sorted. Expired
// runtime elements are left out even before a sweep removed them.
func (r *RuntimeSets) List(rs *Ruleset, name string) ([]SetElement, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	si := rs.set(name)
	m := r.elems[name]
	if si == nil && len(m) == 0 {
		return nil, noSet(rs, name)
	}
	now := r.now()
	byPrefix := map[netip.Prefix]*SetElement{}
	var out []SetElement
	if si != nil {
		for p := range si.file.All() {
			out = append(out, SetElement{Prefix: p, File: true})
		}
	}
	for i := range out {
		byPrefix[out[i].Prefix] = &out[i]
	}
	for p, exp := range m {
		if !exp.IsZero() && !exp.After(now) {
			continue
		}
		if e := byPrefix[p]; e != nil {
			e.Runtime, e.Expires = true, exp
			continue
		}
		out = append(out, SetElement{Prefix: p, Runtime: true, Expires: exp})
	}
	slices.SortFunc(out, func(a, b SetElement) int { return comparePrefix(a.Prefix, b.Prefix) })
	return out, nil
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}

// Snapshot returns the runtime layer, sorted by set and element, for
// status and the state file. Expired elements not yet swept are left out.
func (r *RuntimeSets) Snapshot() []RuntimeElement {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	var out []RuntimeElement
	for name, m := range r.elems {
		for p, exp := range m {
			if !exp.IsZero() && !exp.After(now) {
				continue
			}
			out = append(out, RuntimeElement{Set: name, Prefix: p, Expires: exp})
		}
	}
	slices.SortFunc(out, func(a, b RuntimeElement) int {
		if c := strings.Compare(a.Set, b.Set); c != 0 {
			return c
		}
		return comparePrefix(a.Prefix, b.Prefix)
	})
	return out
}

// Restore adds saved runtime elements back (the state file on start),
// merging them into rs. Elements already expired are skipped; a set rs does
// not have keeps its elements in the layer (as after a reload that dropped
// it). It returns how many elements it restored.
func (r *RuntimeSets) Restore(rs *Ruleset, elems []RuntimeElement) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	n := 0
	for _, e := range elems {
		if !e.Prefix.IsValid() || e.Prefix != e.Prefix.Masked() || !validChainName(e.Set) {
			return n, fmt.Errorf("set %q: bad saved element %v", e.Set, e.Prefix)
		}
		if !e.Expires.IsZero() && !e.Expires.After(now) {
			continue
		}
		m := r.elems[e.Set]
		if m == nil {
			m = map[netip.Prefix]time.Time{}
			r.elems[e.Set] = m
		}
		if len(m) >= maxRuntimeElements {
			return n, fmt.Errorf("set %q: more than %d saved runtime elements", e.Set, maxRuntimeElements)
		}
		m[e.Prefix] = e.Expires
		n++
	}
	r.gen++
	r.apply(rs)
	select {
	case r.wake <- struct{}{}:
	default:
	}
	return n, nil
}

// Apply merges the runtime layer into a Ruleset: each of its sets becomes
// the file's elements plus the runtime ones. The gateway calls it on every
// Ruleset it compiles, before swapping it in.
func (r *RuntimeSets) Apply(rs *Ruleset) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.apply(rs)
}

// Sync applies the runtime layer to rs if a change happened since rs last
// got it: for a Ruleset swapped in after a change that was made to the one
// before it. Cheap when nothing changed.
func (r *RuntimeSets) Sync(rs *Ruleset) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if rs.runtimeGen.Load() != r.gen {
		r.apply(rs)
	}
}

// apply rebuilds every set of rs from its file table and the layer. r.mu
// is held.
func (r *RuntimeSets) apply(rs *Ruleset) {
	now := r.now()
	for i := range rs.sets {
		si := &rs.sets[i]
		m := r.elems[si.name]
		if len(m) == 0 {
			si.live.p.Store(si.file)
			continue
		}
		t := si.file.Clone()
		for p, exp := range m {
			if exp.IsZero() || exp.After(now) {
				t.Insert(p)
			}
		}
		si.live.p.Store(t)
	}
	rs.runtimeGen.Store(r.gen)
}

// insert adds elements to the live table of si in rs, which had every
// change before this one (else it gets all of them); r.mu is held.
func (r *RuntimeSets) insert(rs *Ruleset, si *setInfo, elems []netip.Prefix, upToDate bool) {
	if !upToDate {
		r.apply(rs)
		return
	}
	t := si.live.p.Load()
	if len(elems) > cloneThreshold {
		t = t.Clone()
		for _, p := range elems {
			t.Insert(p)
		}
	} else {
		for _, p := range elems {
			t = t.InsertPersist(p)
		}
	}
	si.live.p.Store(t)
	rs.runtimeGen.Store(r.gen)
}

// remove takes elements out of the live table of si in rs, but for those
// the file lists; like insert otherwise.
func (r *RuntimeSets) remove(rs *Ruleset, si *setInfo, elems []netip.Prefix, upToDate bool) {
	if !upToDate {
		r.apply(rs)
		return
	}
	t := si.live.p.Load()
	if len(elems) > cloneThreshold {
		t = t.Clone()
		for _, p := range elems {
			if !si.file.Get(p) {
				t.Delete(p)
			}
		}
	} else {
		for _, p := range elems {
			if !si.file.Get(p) {
				t = t.DeletePersist(p)
			}
		}
	}
	si.live.p.Store(t)
	rs.runtimeGen.Store(r.gen)
}

// Expire removes the runtime elements whose time is up, from the layer and
// from rs, and returns the earliest deadline still pending (zero: none).
func (r *RuntimeSets) Expire(rs *Ruleset) time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	var next time.Time
	upToDate := rs.runtimeGen.Load() == r.gen
	var gone []netip.Prefix
	for name, m := range r.elems {
		gone = gone[:0]
		for p, exp := range m {
			switch {
			case exp.IsZero():
			case !exp.After(now):
				gone = append(gone, p)
			case next.IsZero() || exp.Before(next):
				next = exp
			}
		}
		if len(gone) == 0 {
			continue
		}
		for _, p := range gone {
			delete(m, p)
		}
		if len(m) == 0 {
			delete(r.elems, name)
		}
		r.gen++
		switch si := rs.set(name); {
		case !upToDate:
		case si != nil:
			r.remove(rs, si, gone, true)
		default:
			rs.runtimeGen.Store(r.gen)
		}
	}
	if !upToDate || rs.runtimeGen.Load() != r.gen {
		r.apply(rs)
	}
	return next
}
