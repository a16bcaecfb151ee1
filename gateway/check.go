package gateway

import (
	"bufio"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"time"

	"go.uber.org/zap"

	"tungate/alg"
	"tungate/confdiag"
	"tungate/conntrack"
	"tungate/nat"
	"tungate/rules"
)

// CheckRules builds everything a config compiles into (NAT, helpers, rules)
// without opening a device, so `tungate check` finds every error `run`
// would. Errors are located in the config's file when it came from one.
func CheckRules(cfg *Config) error {
	var l confdiag.List
	ct, err := conntrack.NewTable(conntrack.Config{Max: 1024})
	if err != nil {
		return err
	}
	if _, err := nat.New(cfg.NAT, cfg.natIfaces(), ct, zap.NewNop()); err != nil {
		l.Add(err)
	}
	_, err = cfg.compileForCheck(ct)
	l.Add(err)
	if l.Len() == 0 {
		return nil
	}
	if cfg.index == nil {
		return l.Err()
	}
	return cfg.locate(l.Errors())
}

// compileForCheck compiles the helpers and the rule set the way New does.
func (c *Config) compileForCheck(ct *conntrack.Table) (*rules.Ruleset, error) {
	var helpers []string
	m, err := alg.New(c.Helpers, ct, nil, zap.NewNop())
	if err != nil {
		return nil, err
	}
	helpers = m.Names()
	return rules.Compile(c.Filter, c.Raw, c.Sets, c.rulesEnv(helpers, zap.NewNop()))
}

// Check loads a config file and compiles everything it configures without
// opening a device. Unlike LoadConfig followed by CheckRules it reports
// every error of the file at once: those of the sections and those of the
// rules, sorted by position. A syntax or type error stops decoding and is
// the only error then.
func Check(path string) (*Config, error) {
	b, err := readConfigFile(path)
	if err != nil {
		return nil, err
	}
	c, l, err := decodeConfig(b, path)
	if err != nil {
		return nil, err
	}
	c.path = path
	if l.Len() == 0 {
		if err := CheckRules(c); err != nil {
			return nil, err
		}
		return c, nil
	}
	// The sections had errors (NAT's among them): compile the rules
	// anyway, against what is known, so their errors come in the same
	// report.
	if ct, err := conntrack.NewTable(conntrack.Config{Max: 1024}); err == nil {
		if _, err := c.compileForCheck(ct); err != nil {
			l.Add(err)
		}
	}
	return nil, c.locate(l.Errors())
}

// Describe writes what a checked config will do: interfaces with their
// addresses, routes, NAT rules with addresses and port ranges resolved,
// helpers, and every chain's rules with their index, the view an operator
// reads before a reload.
func (c *Config) Describe(w io.Writer) error {
	bw := bufio.NewWriter(w)
	fmt.Fprintln(bw, "interfaces:")
	for i := range c.Interface {
		ic := &c.Interface[i]
		dev := "tun " + ic.TUN
		switch {
		case ic.Kind == KindWireGuard:
			dev = fmt.Sprintf("wireguard port %d peers [%s]", ic.ListenPort, strings.Join(ic.PeerNames(), " "))
		case ic.TUNFD != nil:
			dev = fmt.Sprintf("tun_fd %d", *ic.TUNFD)
		case c.Namespace.Enabled() && c.Namespace.Index() == i:
			name := c.Namespace.TUN
			if name == "" {
				name = "tun0"
			}
			dev = fmt.Sprintf("tun %s inside the command's or --netns namespace (container %s, via %s)", name,
				strings.Join(c.Namespace.Addresses, ", "), joinAddrs(c.Namespace.GatewayAddrs()))
		}
		if ic.IsUplink() {
			u := ic.uplink
			flows := "from RLIMIT_NOFILE"
			if ic.MaxFlows > 0 {
				flows = fmt.Sprint(ic.MaxFlows)
			}
			dev = fmt.Sprintf("uplink (host sockets, masquerade implicit; udp_timeout %v, dial_timeout %v, max_flows %s, host loopback %s",
				time.Duration(u.UDPTimeout), time.Duration(u.DialTimeout), flows, onOff(u.AllowHostLoopback))
			if len(u.HostLoopback) > 0 {
				dev += " as " + strings.Join(u.HostLoopback, ", ")
			}
			if len(u.DNS) > 0 {
				dev += "; dns " + strings.Join(u.DNS, ", ") + " from " + u.ResolvConf
			}
			dev += ")"
		}
		clamp := ""
		if ic.clamp {
			clamp = ", clamp_mss"
		}
		addrs := make([]string, len(ic.addrs))
		for j, p := range ic.addrs {
			addrs[j] = p.String()
		}
		a := strings.Join(addrs, ", ")
		if a == "" {
			a = "no addresses"
		}
		fmt.Fprintf(bw, "  [%d] %s: %s mtu %d%s, %s\n", i, ic.Name, dev, ic.MTU, clamp, a)
	}
	fmt.Fprintln(bw, "routes:")
	for i := range c.Interface {
		for _, p := range c.Interface[i].addrs {
			fmt.Fprintf(bw, "  %s dev %s (connected)\n", p.Masked(), c.Interface[i].Name)
		}
	}
	for _, r := range c.Route {
		fmt.Fprintf(bw, "  %s dev %s\n", r.prefix, c.Interface[r.iface].Name)
	}
	for i := range c.Interface {
		ic := &c.Interface[i]
		if !ic.IsUplink() {
			continue
		}
		for _, a := range append(append([]string(nil), ic.HostLoopback...), ic.DNS...) {
			if v, err := netip.ParseAddr(a); err == nil {
				fmt.Fprintf(bw, "  %s dev %s (uplink virtual address)\n", netip.PrefixFrom(v, v.BitLen()), ic.Name)
			}
		}
	}
	fmt.Fprintln(bw, "nat:")
	var nb strings.Builder
	if err := c.NAT.Describe(&nb, c.natIfaces()); err != nil {
		return err
	}
	if nb.Len() == 0 {
		fmt.Fprintln(bw, "  none")
	}
	for _, line := range strings.SplitAfter(nb.String(), "\n") {
		if line != "" {
			bw.WriteString("  " + line)
		}
	}
	fmt.Fprintln(bw, "helpers:")
	none := true
	if f := c.Helpers.FTP; f != nil {
		none = false
		loose := ""
		if f.Loose {
			loose = " loose"
		}
		fmt.Fprintf(bw, "  ftp: tcp ports %v, max_expected %d, timeout %v%s\n", f.Ports, f.MaxExpected, time.Duration(f.Timeout), loose)
	}
	if t := c.Helpers.TFTP; t != nil {
		none = false
		fmt.Fprintf(bw, "  tftp: udp ports %v, timeout %v\n", t.Ports, time.Duration(t.Timeout))
	}
	if none {
		fmt.Fprintln(bw, "  none assigned by port (ftp, tftp by rule)")
	}
	ct, err := conntrack.NewTable(conntrack.Config{Max: 1024})
	if err != nil {
		return err
	}
	rs, err := c.compileForCheck(ct)
	if err != nil {
		return err
	}
	fmt.Fprintln(bw, "rules:")
	var rb strings.Builder
	if err := rs.DumpConfig(&rb); err != nil {
		return err
	}
	if rb.Len() == 0 {
		fmt.Fprintln(bw, "  none (every chain accepts)")
	}
	for _, line := range strings.SplitAfter(rb.String(), "\n") {
		if line != "" {
			bw.WriteString("  " + line)
		}
	}
	return bw.Flush()
}

func onOff(b bool) string {
	if b {
		return "allowed"
	}
	return "refused"
}

// joinAddrs lists addresses for the plan.
func joinAddrs(a []netip.Addr) string {
	s := make([]string, len(a))
	for i := range a {
		s[i] = a[i].String()
	}
	return strings.Join(s, ", ")
}
