package conntrack

import (
	"fmt"
	"time"

	"tungate/confdiag"
)

// Duration is a time.Duration that decodes from a Go duration string
// ("120s", "5d" is not Go syntax: use "120h").
type Duration time.Duration

// UnmarshalText parses a Go duration.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("invalid duration %q (want e.g. \"30s\", \"120h\")", b)
	}
	if v <= 0 {
		return fmt.Errorf("invalid duration %q: must be positive", b)
	}
	*d = Duration(v)
	return nil
}

// MarshalText formats the duration.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// Timeouts are the per-protocol, per-state timeouts, Linux's
// nf_conntrack_*_timeout_* sysctls. Zero means the default.
type Timeouts struct {
	TCPSynSent     Duration `toml:"tcp_syn_sent"`
	TCPSynRecv     Duration `toml:"tcp_syn_recv"`
	TCPEstablished Duration `toml:"tcp_established"`
	TCPFinWait     Duration `toml:"tcp_fin_wait"`
	TCPCloseWait   Duration `toml:"tcp_close_wait"`
	TCPLastAck     Duration `toml:"tcp_last_ack"`
	TCPTimeWait    Duration `toml:"tcp_time_wait"`
	TCPClose       Duration `toml:"tcp_close"`
	TCPSynSent2    Duration `toml:"tcp_syn_sent2"`
	// TCPRetrans is the timeout of a connection retransmitting beyond
	// Config.TCPMaxRetrans (nf_conntrack_tcp_timeout_max_retrans; nftables'
	// timeout policies call the state "retrans").
	TCPRetrans Duration `toml:"tcp_retrans"`
	// TCPRetransOld is tcp_retrans's old spelling, accepted with a
	// warning: in [conntrack] tcp_max_retrans is the retransmission count.
	//
	// Deprecated: use TCPRetrans (tcp_retrans).
	TCPRetransOld Duration `toml:"tcp_max_retrans"`
	TCPUnack      Duration `toml:"tcp_unacknowledged"`
	// UDP is the timeout of a UDP connection until it is a stream. The
	// default is 120 s, not Linux's 30 s: RFC 4787 REQ-5 asks that a NAT
	// mapping live at least two minutes after the last outbound packet.
	UDP Duration `toml:"udp"`
	// UDPDNS is the unreplied/replied timeout for destination port 53,
	// which RFC 4787 REQ-5a allows to be shorter (Linux's 30 s).
	UDPDNS     Duration `toml:"udp_dns"`
	UDPStream  Duration `toml:"udp_stream"`
	ICMP       Duration `toml:"icmp"`
	ICMPv6     Duration `toml:"icmpv6"`
	GRE        Duration `toml:"gre"`
	GREStream  Duration `toml:"gre_stream"`
	ESP        Duration `toml:"esp"`
	ESPStream  Duration `toml:"esp_stream"`
	Generic    Duration `toml:"generic"`
	Expect     Duration `toml:"expect"`
	Unreplied  Duration `toml:"-"`
	Unassigned Duration `toml:"-"`
	// SCTP per-state timeouts (nf_conntrack_sctp_timeout_*).
	SCTPClosed          Duration `toml:"sctp_closed"`
	SCTPCookieWait      Duration `toml:"sctp_cookie_wait"`
	SCTPCookieEchoed    Duration `toml:"sctp_cookie_echoed"`
	SCTPEstablished     Duration `toml:"sctp_established"`
	SCTPShutdownSent    Duration `toml:"sctp_shutdown_sent"`
	SCTPShutdownRecd    Duration `toml:"sctp_shutdown_recd"`
	SCTPShutdownAckSent Duration `toml:"sctp_shutdown_ack_sent"`
	SCTPHeartbeatSent   Duration `toml:"sctp_heartbeat_sent"`
}

// DefaultTimeouts returns Linux's defaults, except where an RFC asks for
// longer (UDP: RFC 4787 REQ-5; ICMP: RFC 5508 REQ-2, 60 s).
func DefaultTimeouts() Timeouts {
	s := func(n int) Duration { return Duration(time.Duration(n) * time.Second) }
	return Timeouts{
		TCPSynSent:     s(120),
		TCPSynRecv:     s(60),
		TCPEstablished: s(432000),
		TCPFinWait:     s(120),
		TCPCloseWait:   s(60),
		TCPLastAck:     s(30),
		TCPTimeWait:    s(120),
		TCPClose:       s(10),
		TCPSynSent2:    s(120),
		TCPRetrans:     s(300),
		TCPUnack:       s(300),
		UDP:            s(120),
		UDPDNS:         s(30),
		UDPStream:      s(120),
		ICMP:           s(60),
		ICMPv6:         s(60),
		GRE:            s(30),
		GREStream:      s(180),
		ESP:            s(30),
		ESPStream:      s(600),
		Generic:        s(600),
		Expect:         s(300),

		SCTPClosed:          s(10),
		SCTPCookieWait:      s(3),
		SCTPCookieEchoed:    s(3),
		SCTPEstablished:     s(210),
		SCTPShutdownSent:    s(3),
		SCTPShutdownRecd:    s(3),
		SCTPShutdownAckSent: s(3),
		SCTPHeartbeatSent:   s(30),
	}
}

// Config is the [conntrack] section.
type Config struct {
	// Max is the table limit (nf_conntrack_max).
	Max int `toml:"max"`
	// Buckets is the hash size; 0 picks one from Max. It is rounded up
	// to a power of two; every two make one 64-byte line of six slots,
	// so the table's index costs 32 bytes per hash entry.
	Buckets int `toml:"buckets"`
	// ExpectMax bounds the expectations of the whole table
	// (nf_conntrack_expect_max); 0 means MaxExpectations.
	ExpectMax int `toml:"expect_max"`
	// Accounting keeps per-direction packet and byte counters
	// (nf_conntrack_acct). Default true.
	Accounting *bool `toml:"accounting"`
	// Checksum verifies transport checksums before tracking
	// (nf_conntrack_checksum). Default true.
	Checksum *bool `toml:"checksum"`
	// TCPLoose picks up TCP connections already in progress
	// (nf_conntrack_tcp_loose). Default true.
	TCPLoose *bool `toml:"tcp_loose"`
	// TCPLiberal skips TCP window checks (nf_conntrack_tcp_be_liberal).
	TCPLiberal bool `toml:"tcp_liberal"`
	// TCPMaxRetrans is nf_conntrack_tcp_max_retrans (default 3).
	TCPMaxRetrans int `toml:"tcp_max_retrans"`
	// PerSourceMax bounds the confirmed connections of one
	// original-direction source address (0: no limit). See SourceLimit.
	PerSourceMax int `toml:"per_source_max"`
	// Timeouts override the defaults.
	Timeouts Timeouts `toml:"timeouts"`
	// StateFile is where the table is saved on shutdown (and `tungate
	// save`) and restored from on start ("" none); a relative path is
	// beside the config file. See Table.SaveState.
	StateFile string `toml:"state_file"`
}

// DefaultMax is the default table limit.
const DefaultMax = 262144

// maxSize bounds Max and Buckets: the bucket array is allocated up front,
// and a typo like max = 10000000000 must be a config error, not an
// out-of-memory crash. 2^26 buckets are 2 GiB.
const maxSize = 1 << 26

func boolOr(p *bool, d bool) bool {
	if p == nil {
		return d
	}
	return *p
}

// timeoutFields lists the timeouts with their TOML names, for defaults and
// error messages.
func (t *Timeouts) fields() []struct {
	name string
	v    *Duration
} {
	return []struct {
		name string
		v    *Duration
	}{
		{"tcp_syn_sent", &t.TCPSynSent}, {"tcp_syn_recv", &t.TCPSynRecv},
		{"tcp_established", &t.TCPEstablished}, {"tcp_fin_wait", &t.TCPFinWait},
		{"tcp_close_wait", &t.TCPCloseWait}, {"tcp_last_ack", &t.TCPLastAck},
		{"tcp_time_wait", &t.TCPTimeWait}, {"tcp_close", &t.TCPClose},
		{"tcp_syn_sent2", &t.TCPSynSent2}, {"tcp_retrans", &t.TCPRetrans},
		{"tcp_unacknowledged", &t.TCPUnack}, {"udp", &t.UDP}, {"udp_dns", &t.UDPDNS},
		{"udp_stream", &t.UDPStream}, {"icmp", &t.ICMP}, {"icmpv6", &t.ICMPv6},
		{"gre", &t.GRE}, {"gre_stream", &t.GREStream}, {"esp", &t.ESP},
		{"esp_stream", &t.ESPStream}, {"generic", &t.Generic}, {"expect", &t.Expect},
		{"sctp_closed", &t.SCTPClosed}, {"sctp_cookie_wait", &t.SCTPCookieWait},
		{"sctp_cookie_echoed", &t.SCTPCookieEchoed}, {"sctp_established", &t.SCTPEstablished},
		{"sctp_shutdown_sent", &t.SCTPShutdownSent}, {"sctp_shutdown_recd", &t.SCTPShutdownRecd},
		{"sctp_shutdown_ack_sent", &t.SCTPShutdownAckSent}, {"sctp_heartbeat_sent", &t.SCTPHeartbeatSent},
	}
}

// Validate checks the section and fills defaults. Every error is
// reported (joined), each a *confdiag.Error naming the key.
func (c *Config) Validate() error {
	var l confdiag.List
	c.validate(&l)
	return l.Err()
}

func (c *Config) validate(l *confdiag.List) {
	if c.Max < 0 || c.Max > maxSize {
		l.Addf("conntrack.max", "%d out of range (0 for the default %d, at most %d)", c.Max, DefaultMax, maxSize)
	}
	if c.Max == 0 {
		c.Max = DefaultMax
	}
	if c.Buckets < 0 || c.Buckets > maxSize {
		l.Addf("conntrack.buckets", "%d out of range (0 picks one from max, at most %d)", c.Buckets, maxSize)
	}
	if c.ExpectMax < 0 || c.ExpectMax > maxSize {
		l.Addf("conntrack.expect_max", "%d out of range (0 for the default %d, at most %d)", c.ExpectMax, MaxExpectations, maxSize)
	}
	if c.ExpectMax == 0 {
		c.ExpectMax = MaxExpectations
	}
	if c.TCPMaxRetrans < 0 || c.TCPMaxRetrans > 255 {
		l.Addf("conntrack.tcp_max_retrans", "%d out of range (0 for the default 3, at most 255)", c.TCPMaxRetrans)
	}
	if c.TCPMaxRetrans == 0 {
		c.TCPMaxRetrans = 3
	}
	if c.PerSourceMax < 0 || c.PerSourceMax > maxSize {
		l.Addf("conntrack.per_source_max", "%d out of range (0 for no limit, at most %d)", c.PerSourceMax, maxSize)
	}
	c.Timeouts.check(l)
}

// validate is check for SetTimeouts.
func (t *Timeouts) validate() error {
	var l confdiag.List
	t.check(&l)
	return l.Err()
}

// check takes the deprecated spelling, fills zero timeouts with the
// defaults and refuses negative ones.
func (t *Timeouts) check(l *confdiag.List) {
	if t.TCPRetransOld != 0 {
		if t.TCPRetrans != 0 {
			l.Addf("conntrack.timeouts.tcp_max_retrans", "%v: old name of tcp_retrans, which is set too; keep only tcp_retrans", time.Duration(t.TCPRetransOld))
		} else {
			t.TCPRetrans = t.TCPRetransOld
		}
		t.TCPRetransOld = 0
	}
	def := DefaultTimeouts()
	df := def.fields()
	for i, f := range t.fields() {
		switch {
		case *f.v < 0:
			l.Addf("conntrack.timeouts."+f.name, "%v must be positive", time.Duration(*f.v))
		case *f.v == 0:
			*f.v = *df[i].v
		}
	}
}

// accounting reports whether per-connection counters are kept.
func (c *Config) accounting() bool { return boolOr(c.Accounting, true) }

func (c *Config) checksum() bool { return boolOr(c.Checksum, true) }

func (c *Config) tcpLoose() bool { return boolOr(c.TCPLoose, true) }
