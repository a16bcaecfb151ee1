package gateway

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"

	"github.com/BurntSushi/toml"

	"tungate/alg"
	"tungate/conntrack"
	"tungate/nat"
	"tungate/rules"
)

// Config is the whole TOML file. Each package owns its section; this type
// composes them.
type Config struct {
	Log       LogConfig           `toml:"log"`
	Admin     AdminConfig         `toml:"admin"`
	ICMP      ICMPConfig          `toml:"icmp"`
	Conntrack conntrack.Config    `toml:"conntrack"`
	Interface []InterfaceConfig   `toml:"interface"`
	Route     []RouteConfig       `toml:"route"`
	Sets      map[string][]string `toml:"sets"`
	NAT       nat.Config          `toml:"nat"`
	Helpers   alg.Config          `toml:"helpers"`
	Filter    rules.FilterConfig  `toml:"filter"`
	Raw       rules.RawConfig     `toml:"raw"`

	// path is the file the config came from (for reload).
	path string
}

// LogConfig is the [log] section.
type LogConfig struct {
	Level  string `toml:"level"`  // debug | info | warn | error
	Format string `toml:"format"` // console | json
}

// AdminConfig is the [admin] section.
type AdminConfig struct {
	// Socket is the control socket path ("" disables it).
	Socket string `toml:"socket"`
	// Metrics is the Prometheus listen address ("" disables it).
	Metrics string `toml:"metrics"`
}

// ICMPConfig is the [icmp] section: limits on the ICMP errors the gateway
// itself sends, so a flood cannot turn it into a reflector.
type ICMPConfig struct {
	// Rate is errors per second per destination (default 1000).
	Rate float64 `toml:"rate"`
	// Burst is the bucket size per destination (default 1000).
	Burst int `toml:"burst"`
}

// InterfaceConfig is one [[interface]].
type InterfaceConfig struct {
	// Name is the interface's name in rules, routes and NAT.
	Name string `toml:"name"`
	// TUN names a kernel TUN device, created if absent or attached to
	// when it exists (a persistent device owned by this user needs no
	// privilege).
	TUN string `toml:"tun"`
	// TUNFD is an already open TUN file descriptor inherited from the
	// parent, as container runtimes hand devices over; -1/absent: none.
	TUNFD *int `toml:"tun_fd"`
	// Addresses are the gateway's own addresses on the link; each gives a
	// connected route.
	Addresses []string `toml:"addresses"`
	// MTU of the link (default 1500).
	MTU int `toml:"mtu"`

	addrs []netip.Prefix
}

// RouteConfig is one [[route]].
type RouteConfig struct {
	To        string `toml:"to"`
	Interface string `toml:"interface"`

	prefix netip.Prefix
	iface  int
}

// LoadConfig reads and validates a config file. Decoding is strict: an
// unknown key is an error naming its path.
func LoadConfig(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	c, err := ParseConfig(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	c.path = path
	return c, nil
}

// ParseConfig decodes and validates TOML text.
func ParseConfig(b []byte) (*Config, error) {
	var c Config
	md, err := toml.NewDecoder(bytes.NewReader(b)).Decode(&c)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return nil, fmt.Errorf("line %d: %s", pe.Position.Line, pe.Message)
		}
		return nil, err
	}
	if und := md.Undecoded(); len(und) > 0 {
		keys := make([]string, 0, len(und))
		for _, k := range und {
			keys = append(keys, k.String())
		}
		return nil, fmt.Errorf("%s: unknown key", strings.Join(keys, ", "))
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// Validate checks the whole config and fills defaults.
func (c *Config) Validate() error {
	switch c.Log.Level {
	case "":
		c.Log.Level = "info"
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("log.level: unknown level %q (want debug, info, warn or error)", c.Log.Level)
	}
	switch c.Log.Format {
	case "":
		c.Log.Format = "console"
	case "console", "json":
	default:
		return fmt.Errorf("log.format: unknown format %q (want console or json)", c.Log.Format)
	}
	if c.ICMP.Rate < 0 {
		return fmt.Errorf("icmp.rate: %v must not be negative", c.ICMP.Rate)
	}
	if c.ICMP.Rate == 0 {
		c.ICMP.Rate = 1000
	}
	if c.ICMP.Burst < 0 {
		return fmt.Errorf("icmp.burst: %d must not be negative", c.ICMP.Burst)
	}
	if c.ICMP.Burst == 0 {
		c.ICMP.Burst = 1000
	}
	if err := c.Conntrack.Validate(); err != nil {
		return err
	}
	if len(c.Interface) == 0 {
		return errors.New("interface: at least one [[interface]] is required")
	}
	names := map[string]int{}
	tuns := map[string]int{}
	for i := range c.Interface {
		ic := &c.Interface[i]
		key := fmt.Sprintf("interface[%d]", i)
		if ic.Name == "" {
			return fmt.Errorf("%s.name: missing", key)
		}
		if j, dup := names[ic.Name]; dup {
			return fmt.Errorf("%s.name: duplicate name %q (also interface[%d])", key, ic.Name, j)
		}
		names[ic.Name] = i
		if ic.TUN == "" && ic.TUNFD == nil {
			return fmt.Errorf("%s: one of tun or tun_fd is required", key)
		}
		if ic.TUN != "" && ic.TUNFD != nil {
			return fmt.Errorf("%s: tun and tun_fd are exclusive", key)
		}
		if ic.TUN != "" {
			if len(ic.TUN) > 15 || strings.ContainsAny(ic.TUN, "/ \t") {
				return fmt.Errorf("%s.tun: invalid device name %q (at most 15 characters, no '/' or spaces)", key, ic.TUN)
			}
			if j, dup := tuns[ic.TUN]; dup {
				return fmt.Errorf("%s.tun: device %q already used by interface[%d]", key, ic.TUN, j)
			}
			tuns[ic.TUN] = i
		}
		if ic.TUNFD != nil && *ic.TUNFD < 0 {
			return fmt.Errorf("%s.tun_fd: %d is not a file descriptor", key, *ic.TUNFD)
		}
		if ic.MTU == 0 {
			ic.MTU = 1500
		}
		if ic.MTU < 1280 || ic.MTU > 65535 {
			// IPv6 needs 1280 (RFC 8200 section 5).
			return fmt.Errorf("%s.mtu: %d out of range (1280-65535)", key, ic.MTU)
		}
		ic.addrs = ic.addrs[:0]
		for j, a := range ic.Addresses {
			p, err := netip.ParsePrefix(a)
			if err != nil {
				return fmt.Errorf("%s.addresses[%d]: invalid address/prefix %q", key, j, a)
			}
			ic.addrs = append(ic.addrs, p)
		}
	}
	for i := range c.Route {
		r := &c.Route[i]
		key := fmt.Sprintf("route[%d]", i)
		p, err := netip.ParsePrefix(r.To)
		if err != nil {
			return fmt.Errorf("%s.to: invalid prefix %q", key, r.To)
		}
		if p != p.Masked() {
			return fmt.Errorf("%s.to: %q has host bits set (did you mean %q?)", key, r.To, p.Masked())
		}
		r.prefix = p
		j, ok := names[r.Interface]
		if !ok {
			return fmt.Errorf("%s.interface: unknown interface %q", key, r.Interface)
		}
		r.iface = j
	}
	for name, list := range c.Sets {
		for j, s := range list {
			if _, err := netip.ParsePrefix(s); err != nil {
				if _, err := netip.ParseAddr(s); err != nil {
					return fmt.Errorf("sets.%s[%d]: invalid CIDR %q", name, j, s)
				}
			}
		}
	}
	if err := c.NAT.Validate(c.InterfaceNames()); err != nil {
		return err
	}
	if err := c.Helpers.Validate(); err != nil {
		return err
	}
	return nil
}

// InterfaceNames returns the interface names in config order; a packet's
// interface index is its position here.
func (c *Config) InterfaceNames() []string {
	n := make([]string, len(c.Interface))
	for i := range c.Interface {
		n[i] = c.Interface[i].Name
	}
	return n
}

// natIfaces returns the per-interface own addresses for the NAT engine.
func (c *Config) natIfaces() []nat.Iface {
	out := make([]nat.Iface, len(c.Interface))
	for i := range c.Interface {
		out[i] = nat.Iface{Name: c.Interface[i].Name, Addrs: append([]netip.Prefix(nil), c.Interface[i].addrs...)}
	}
	return out
}
