package gateway

import (
	"context"
	"net/netip"
	"time"

	"tungate/rules"
)

// The runtime layer: what is changed through the admin socket on top of
// the config file (set elements now; port forwards added through the API
// belong here too). A reload keeps it, status lists it apart from the
// file, the state file saves it (RuntimeState, RestoreRuntime); only an
// explicit command removes it.
//
// Lock order: reloadMu, then the layer's own lock. A set change takes
// reloadMu so it never lands between a reload's compileRulesBySlot (which merges
// the layer into the new rules) and the swap that publishes them; the
// sweeper takes it for the same reason. Whoever swaps rules without
// reloadMu is repaired by the sweeper's Sync within a second.

// sweepInterval is the longest the set sweeper sleeps: an injected clock
// (tests) moves without waking it, and a Ruleset swapped in without
// reloadMu is brought up to date this often.
const sweepInterval = time.Second

// RuntimeState is the runtime layer as the state file saves it.
type RuntimeState struct {
	// Sets are the set elements added at runtime, with their expiry.
	Sets []rules.RuntimeElement `json:"sets,omitempty"`
}

// applyRuntime merges the runtime layer into rules compiled from a
// config, before they are swapped in. compileRulesBySlot calls it, so every
// path that compiles rules (start, reload) keeps the layer.
func (g *Gateway) applyRuntime(rs *rules.Ruleset) {
	g.sets.Apply(rs)
}

// SetAdd adds elements to a named set of the running rules, each expiring
// after timeout (0: never): what `nft add element` does. The next packet
// sees them.
func (g *Gateway) SetAdd(name string, elems []netip.Prefix, timeout time.Duration) error {
	g.reloadMu.Lock()
	defer g.reloadMu.Unlock()
	return g.sets.Add(g.Rules(), name, elems, timeout)
}

// SetDelete removes elements added at runtime from a named set. An element
// only the config file lists is refused (rules.ErrFileElement): the file
// owns it.
func (g *Gateway) SetDelete(name string, elems []netip.Prefix) error {
	g.reloadMu.Lock()
	defer g.reloadMu.Unlock()
	return g.sets.Delete(g.Rules(), name, elems)
}

// SetList returns a named set's elements, from the file and the runtime
// layer, with the time the layer's clock says it is (for "expires in").
func (g *Gateway) SetList(name string) ([]rules.SetElement, time.Time, error) {
	l, err := g.sets.List(g.Rules(), name)
	return l, g.sets.Now(), err
}

// SetNames returns the names of the running rules' sets.
func (g *Gateway) SetNames() []string { return g.Rules().SetNames() }

// RuntimeState returns the runtime layer, for status and the state file.
func (g *Gateway) RuntimeState() RuntimeState {
	return RuntimeState{Sets: g.sets.Snapshot()}
}

// RuntimeNow is the runtime layer's clock (time.Now unless a test
// injected one through Options.Clock).
func (g *Gateway) RuntimeNow() time.Time { return g.sets.Now() }

// RestoreRuntime adds a saved runtime layer back (the state file at
// start). Expired set elements are skipped; it returns how many were
// restored.
func (g *Gateway) RestoreRuntime(st RuntimeState) (int, error) {
	g.reloadMu.Lock()
	defer g.reloadMu.Unlock()
	return g.sets.Restore(g.Rules(), st.Sets)
}

// sweepSets removes set elements whose timeout ran out, at their deadline
// (nft's set GC), until ctx is done.
func (g *Gateway) sweepSets(ctx context.Context) {
	t := time.NewTimer(sweepInterval)
	defer t.Stop()
	for {
		g.reloadMu.Lock()
		rs := g.Rules()
		g.sets.Sync(rs)
		next := g.sets.Expire(rs)
		g.reloadMu.Unlock()
		d := sweepInterval
		if !next.IsZero() {
			d = min(d, max(next.Sub(g.sets.Now()), 0))
		}
		t.Reset(d)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-g.sets.Wake():
		}
	}
}
