package uplink

import (
	"fmt"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"
)

// Defaults a zero Config gets from Validate.
const (
	// DefaultMTU is slirp4netns's and pasta's: the container's TCP then
	// sends segments of up to 64 KiB, so the datapath handles few packets
	// per byte and no GSO is needed between it and the uplink.
	DefaultMTU = 65520
	// DefaultUDPTimeout is how long an endpoint's host socket lives without
	// traffic; Linux's conntrack keeps an assured UDP flow as long.
	DefaultUDPTimeout = 180 * time.Second
	// DefaultDialTimeout bounds the host connect a container SYN waits for.
	DefaultDialTimeout = 30 * time.Second
	// DefaultMaxPendingDials bounds the host connects in progress at once.
	DefaultMaxPendingDials = 256
	// DefaultMaxPendingDialsPerHost keeps one black-holed destination from
	// taking every dial slot: SYNs to other hosts still get theirs.
	DefaultMaxPendingDialsPerHost = 32
	// fdReserve is the part of RLIMIT_NOFILE left to the rest of the
	// process (TUNs, admin socket, logs, the gVisor stack's timers).
	fdReserve = 256
	minFlows  = 16
)

// Duration is a time.Duration written as "180s" or "2m" in the config file.
type Duration time.Duration

// UnmarshalText parses a Go duration string.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// MarshalText writes the duration the way UnmarshalText reads it.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// Config is one uplink: the container's way out through host sockets of
// the user running tungate.
type Config struct {
	// MTU is the link's MTU and so the largest packet Read returns; TCP's
	// MSS towards the container follows from it. Default DefaultMTU.
	MTU int `toml:"mtu"`
	// UDPTimeout closes an endpoint's host socket (UDP or ping) after this
	// long without a datagram either way. It is separate from the
	// datapath's conntrack timeout. Default DefaultUDPTimeout.
	UDPTimeout Duration `toml:"udp_timeout"`
	// DialTimeout bounds a host TCP connect. Default DefaultDialTimeout.
	DialTimeout Duration `toml:"dial_timeout"`
	// MaxFlows caps the host sockets the uplink holds at once: UDP and
	// ping endpoints, TCP connections and dials in progress. Zero derives
	// it from RLIMIT_NOFILE (the soft limit less a reserve).
	MaxFlows int `toml:"max_flows"`
	// MaxPendingDials caps host connects in progress. Default
	// DefaultMaxPendingDials.
	MaxPendingDials int `toml:"max_pending_dials"`
	// MaxPendingDialsPerHost caps connects in progress to one destination
	// address. Default DefaultMaxPendingDialsPerHost.
	MaxPendingDialsPerHost int `toml:"max_pending_dials_per_host"`
	// MaxForwardsPerSource caps the port-forwarded TCP connections one
	// client address holds at once, from accept until closed (waiting
	// for the container or spliced): a client over it is reset at once,
	// so one host cannot take the host socket budget (MaxFlows) with a
	// connection flood. Default a quarter of MaxFlows.
	MaxForwardsPerSource int `toml:"max_forwards_per_source"`
	// AllowHostLoopback lets the container reach the host's loopback
	// (127.0.0.0/8, ::1) and the HostLoopback addresses. Off by default,
	// like slirp4netns --disable-host-loopback: services bound to the
	// host's loopback trust local users, which the container is not.
	AllowHostLoopback bool `toml:"allow_host_loopback"`
	// HostLoopback are virtual addresses (slirp4netns's 10.0.2.2) that
	// stand for the host's loopback: 127.0.0.1 for an IPv4 one, ::1 for an
	// IPv6 one. They answer only with AllowHostLoopback.
	HostLoopback []string `toml:"host_loopback"`
	// DNS are virtual resolver addresses (one IPv4, one IPv6 at most);
	// UDP and TCP port 53 to them go to the first nameserver of
	// ResolvConf of the same family, a loopback one (systemd-resolved's
	// 127.0.0.53) included whatever AllowHostLoopback says. Other ports,
	// and a family ResolvConf names no nameserver of, are refused.
	DNS []string `toml:"dns"`
	// ResolvConf is read once at New. Default /etc/resolv.conf.
	ResolvConf string `toml:"resolv_conf"`

	hostLoopback4, hostLoopback6 netip.Addr
	dns4, dns6                   netip.Addr
	// GSO lets the TCP stack send up to 64 KiB at once as one packet to
	// be cut into segments (link.GSOReader): for a reader that handles
	// such packets (the datapath), never from a config file.
	GSO bool `toml:"-"`
}

// Validate fills defaults and checks every value, naming the key.
func (c *Config) Validate() error {
	if c.MTU == 0 {
		c.MTU = DefaultMTU
	}
	if c.MTU < 1280 || c.MTU > 65535 {
		return fmt.Errorf("mtu: %d out of range (1280..65535; IPv6 needs 1280)", c.MTU)
	}
	if c.UDPTimeout == 0 {
		c.UDPTimeout = Duration(DefaultUDPTimeout)
	}
	if c.UDPTimeout < Duration(time.Second) {
		return fmt.Errorf("udp_timeout: %v is below one second", time.Duration(c.UDPTimeout))
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = Duration(DefaultDialTimeout)
	}
	if c.DialTimeout < 0 {
		return fmt.Errorf("dial_timeout: %v must not be negative", time.Duration(c.DialTimeout))
	}
	if c.MaxFlows < 0 {
		return fmt.Errorf("max_flows: %d must not be negative", c.MaxFlows)
	}
	if c.MaxFlows == 0 {
		c.MaxFlows = flowsFromRlimit()
	}
	if c.MaxPendingDials < 0 {
		return fmt.Errorf("max_pending_dials: %d must not be negative", c.MaxPendingDials)
	}
	if c.MaxPendingDials == 0 {
		c.MaxPendingDials = DefaultMaxPendingDials
	}
	if c.MaxPendingDialsPerHost < 0 {
		return fmt.Errorf("max_pending_dials_per_host: %d must not be negative", c.MaxPendingDialsPerHost)
	}
	if c.MaxPendingDialsPerHost == 0 {
		c.MaxPendingDialsPerHost = min(DefaultMaxPendingDialsPerHost, c.MaxPendingDials)
	}
	if c.MaxForwardsPerSource < 0 {
		return fmt.Errorf("max_forwards_per_source: %d must not be negative", c.MaxForwardsPerSource)
	}
	if c.MaxForwardsPerSource == 0 {
		c.MaxForwardsPerSource = max(c.MaxFlows/4, 1)
	}
	if c.ResolvConf == "" {
		c.ResolvConf = "/etc/resolv.conf"
	}
	var err error
	if c.hostLoopback4, c.hostLoopback6, err = parsePair("host_loopback", c.HostLoopback); err != nil {
		return err
	}
	if c.dns4, c.dns6, err = parsePair("dns", c.DNS); err != nil {
		return err
	}
	for _, a := range []netip.Addr{c.dns4, c.dns6} {
		if a.IsValid() && (a == c.hostLoopback4 || a == c.hostLoopback6) {
			return fmt.Errorf("dns: %s is also a host_loopback address", a)
		}
	}
	return nil
}

// parsePair reads at most one address of each family; a virtual address
// must be one host that is neither loopback, multicast nor unspecified.
func parsePair(key string, list []string) (v4, v6 netip.Addr, err error) {
	for i, s := range list {
		a, perr := netip.ParseAddr(s)
		if perr != nil {
			return v4, v6, fmt.Errorf("%s[%d]: %w", key, i, perr)
		}
		a = a.Unmap()
		if a.Zone() != "" || a.IsLoopback() || a.IsMulticast() || a.IsUnspecified() {
			return v4, v6, fmt.Errorf("%s[%d]: %q must be a unicast address without zone, not loopback", key, i, s)
		}
		slot := &v6
		if a.Is4() {
			slot = &v4
		}
		if slot.IsValid() {
			return v4, v6, fmt.Errorf("%s[%d]: %q: one address per family", key, i, s)
		}
		*slot = a
	}
	return v4, v6, nil
}

// flowsFromRlimit is what Go raised the soft RLIMIT_NOFILE to at start
// (the hard limit), less what the rest of the process needs.
func flowsFromRlimit() int {
	var r unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &r); err != nil {
		return 1024 - fdReserve
	}
	cur := r.Cur
	if cur > 1<<20 {
		cur = 1 << 20
	}
	return max(int(cur)-fdReserve, minFlows)
}
