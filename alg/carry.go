package alg

import "sync/atomic"

// StatsCarry is the state of InheritStats between the swap and Settle.
type StatsCarry struct {
	old, m *Registry
	seen   [8]uint64
}

// fields lists s's counters in a fixed order, for carrying them over.
func (s *Stats) fields() [8]*atomic.Uint64 {
	return [8]*atomic.Uint64{&s.Expected, &s.Ignored, &s.Mangled, &s.Replayed, &s.LongLines, &s.Held, &s.Dropped, &s.Unrewritable}
}

// InheritStats continues old's counters in m, a registry a reload built
// because the [helpers] section changed: the helpers themselves (ftp,
// tftp) are always registered, so their counters survive every reload
// like those of rules that did not change. m must not be in service yet;
// Settle adds what old counts until it is out of service.
func (m *Registry) InheritStats(old *Registry) *StatsCarry {
	if old == nil || old == m {
		return nil
	}
	c := &StatsCarry{old: old, m: m}
	c.Settle()
	return c
}

// Settle adds to the new registry's counters what the old one counted
// since the last call. Safe on a nil StatsCarry.
func (c *StatsCarry) Settle() {
	if c == nil {
		return
	}
	from, to := c.old.Stats.fields(), c.m.Stats.fields()
	for i, f := range from {
		now := f.Load()
		if d := now - c.seen[i]; d != 0 {
			to[i].Add(d)
			c.seen[i] = now
		}
	}
}
