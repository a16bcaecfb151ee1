package gateway

import (
	"sync/atomic"

	"tungate/link/uplink"
)

// LinkCounters are one interface's packet and byte counts: what its reader
// took in and what the gateway wrote out on it (IP packet lengths).
type LinkCounters struct {
	RxPackets uint64 `json:"rx_packets"`
	RxBytes   uint64 `json:"rx_bytes"`
	TxPackets uint64 `json:"tx_packets"`
	TxBytes   uint64 `json:"tx_bytes"`
}

// linkCounters are a link's live counters, added to once per batch (never
// per packet). Receive counts belong to the link's reader alone; transmit
// counts are shared by every reader that forwards onto the link, so they
// sit on a cache line of their own.
type linkCounters struct {
	rxPackets, rxBytes atomic.Uint64
	_                  [48]byte
	txPackets, txBytes atomic.Uint64
	_                  [48]byte
}

// LinkCounters returns interface i's counters (config order); zero for an
// index out of range. They are the device's: a reload that renames or
// moves the interface keeps them.
func (g *Gateway) LinkCounters(i int) LinkCounters {
	pl := g.pl.Load()
	l := pl.link(pl.slotOf(i))
	if l == nil {
		return LinkCounters{}
	}
	return l.st.ctr.snapshot()
}

func (c *linkCounters) snapshot() LinkCounters {
	return LinkCounters{RxPackets: c.rxPackets.Load(), RxBytes: c.rxBytes.Load(),
		TxPackets: c.txPackets.Load(), TxBytes: c.txBytes.Load()}
}

// LinkUp reports whether interface i (config order) is up, and if not
// why.
func (g *Gateway) LinkUp(i int) (bool, string) {
	pl := g.pl.Load()
	l := pl.link(pl.slotOf(i))
	if l == nil {
		return false, "no such interface"
	}
	return l.Up(), l.DownReason()
}

// UplinkStats returns the counters of interface i when it is an uplink,
// by name (uplink.Counter's String).
func (g *Gateway) UplinkStats(i int) (map[string]uint64, bool) {
	pl := g.pl.Load()
	l := pl.link(pl.slotOf(i))
	if l == nil {
		return nil, false
	}
	u, ok := l.Dev.(*uplink.Link)
	if !ok {
		return nil, false
	}
	m := make(map[string]uint64, uplink.NumCounters)
	for j, v := range u.Stats() {
		m[uplink.Counter(j).String()] = v
	}
	return m, true
}
