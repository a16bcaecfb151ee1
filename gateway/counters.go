package gateway

import (
	"errors"
	"sync/atomic"

	"tungate/packet"
)

// DropReason says why the datapath dropped a packet.
type DropReason uint8

// Drop reasons. Every drop is counted under exactly one.
const (
	DropMalformed DropReason = iota
	DropIPChecksum
	DropNoRoute
	DropTTL
	DropMTU
	DropFilter
	DropReject
	DropCtFull
	DropCtInsert
	DropNAT
	DropHelper
	DropFragment
	DropLocal
	DropNoBuffer
	DropWrite
	DropMartian
	DropOptions
	// DropRPF: the source failed the link's reverse-path check.
	DropRPF
	// DropPerSource: a new connection over [conntrack] per_source_max.
	DropPerSource
	// DropNoPeer: a packet routed to a WireGuard interface whose
	// destination no peer's allowed_ips hold, or read from one whose
	// source names no peer (a peer removed by a reload as it arrived).
	DropNoPeer
	// DropSynProxy: a packet a synproxy rule took that is neither a SYN
	// nor an ACK with a valid cookie.
	DropSynProxy
	numDropReasons
)

var dropNames = [numDropReasons]string{
	"malformed", "ip_checksum", "no_route", "ttl_exceeded", "mtu", "filter", "reject",
	"conntrack_full", "conntrack_insert", "nat", "helper", "fragment", "local", "no_buffer", "write", "martian", "ip_options",
	"rpf", "per_source",
	"no_peer", "synproxy",
}

// String names the reason as metrics and `tungate stats` show it.
func (r DropReason) String() string {
	if r < numDropReasons {
		return dropNames[r]
	}
	return "unknown"
}

// paddedCounter keeps each hot counter on its own cache line: the readers
// of different links bump them from different cores.
type paddedCounter struct {
	atomic.Uint64
	_ [56]byte
}

// Counters are the datapath's counters.
type Counters struct {
	Drops     [numDropReasons]paddedCounter
	Received  paddedCounter
	Forwarded paddedCounter
	Local     paddedCounter
	Sent      paddedCounter
	ICMPSent  paddedCounter
	ICMPLimit paddedCounter
	// The SYN proxy's counters (Linux's /proc/net/stat/synproxy):
	// SYNs answered with a cookie, ACKs with a valid and with an invalid
	// cookie, handshakes with the server completed, and retransmissions
	// (the server's SYN/ACK again, the SYN sent again).
	SynProxySyn     paddedCounter
	SynProxyValid   paddedCounter
	SynProxyInvalid paddedCounter
	SynProxyOpen    paddedCounter
	SynProxyRetrans paddedCounter
}

// Snapshot returns the counters as name → value.
func (c *Counters) Snapshot() map[string]uint64 {
	m := map[string]uint64{
		"received":          c.Received.Load(),
		"forwarded":         c.Forwarded.Load(),
		"local":             c.Local.Load(),
		"sent":              c.Sent.Load(),
		"icmp_sent":         c.ICMPSent.Load(),
		"icmp_rate_limited": c.ICMPLimit.Load(),

		"synproxy_syn_received":   c.SynProxySyn.Load(),
		"synproxy_cookie_valid":   c.SynProxyValid.Load(),
		"synproxy_cookie_invalid": c.SynProxyInvalid.Load(),
		"synproxy_conn_open":      c.SynProxyOpen.Load(),
		"synproxy_retrans":        c.SynProxyRetrans.Load(),
	}
	for i := range c.Drops {
		m["drop_"+DropReason(i).String()] = c.Drops[i].Load()
	}
	return m
}

func decodeDropReason(err error) DropReason {
	if errors.Is(err, packet.ErrIPChecksum) {
		return DropIPChecksum
	}
	return DropMalformed
}
