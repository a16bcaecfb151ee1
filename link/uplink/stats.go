package uplink

// Counter names one of the uplink's counters.
type Counter int

// The uplink's counters. Gauges go up and down; the rest only count up.
const (
	UDPSockets        Counter = iota // gauge: UDP endpoint sockets open
	PingSockets                      // gauge: ICMP echo sockets open
	TCPConns                         // gauge: spliced TCP connections
	DialsPending                     // gauge: host TCP connects in progress
	DialsRefused                     // connects refused (answered with RST)
	DialsFailed                      // connects unreachable or timed out (answered with ICMP)
	DropMalformed                    // undecodable packets from the datapath
	DropFragment                     // fragments (the datapath reassembles first)
	DropProto                        // protocols or ICMP types the uplink does not carry
	DropLoopback                     // host loopback refused (allow_host_loopback off)
	DropVirtualPort                  // a virtual resolver address on a port other than 53, or with no resolver
	DropMulticast                    // multicast and broadcast destinations: not forwarded
	DropBudget                       // max_flows reached
	DropDialBudget                   // max_pending_dials_per_host reached
	DropPingDenied                   // ping sockets refused by net.ipv4.ping_group_range
	DropQueueFull                    // Read too slow: a packet for the container dropped
	DropSendError                    // the host refused to send
	DropTooBig                       // a datagram larger than the MTU allows
	ICMPErrorsSent                   // ICMP errors built for the container
	Forwards                         // port-forwarded host connections the container accepted
	ForwardsFailed                   // port-forwarded host connections the container refused or never answered
	DropForward                      // port-forwarded host connections that could not be injected (no address for a loopback client, budget)
	DialsEvicted                     // host TCP connects given up for newer SYNs when max_pending_dials was reached
	DropForwardSource                // port-forwarded host connections reset because their client held max_forwards_per_source
	NumCounters
)

var counterNames = [NumCounters]string{
	"udp_sockets", "ping_sockets", "tcp_conns", "dials_pending", "dials_refused",
	"dials_failed", "drop_malformed", "drop_fragment", "drop_proto", "drop_loopback",
	"drop_virtual_port", "drop_multicast",
	"drop_budget", "drop_dial_budget", "drop_ping_denied", "drop_queue_full",
	"drop_send_error", "drop_too_big", "icmp_errors_sent",
	"forwards", "forwards_failed", "drop_forward", "dials_evicted",
	"drop_forward_source",
}

// String is the counter's name in metrics and `tungate stats`.
func (c Counter) String() string {
	if c < 0 || c >= NumCounters {
		return "unknown"
	}
	return counterNames[c]
}

// Stats is a snapshot of every counter, indexed by Counter.
type Stats [NumCounters]uint64

// Stats reads every counter.
func (l *Link) Stats() Stats {
	var s Stats
	for i := range s {
		s[i] = l.stats[i].Load()
	}
	return s
}

func (l *Link) gauge(c Counter, d int64) { l.stats[c].Add(uint64(d)) }

// IsGauge reports whether the counter goes down as well as up (a level,
// not a total), for exporters that type their metrics.
func (c Counter) IsGauge() bool { return c <= DialsPending }
