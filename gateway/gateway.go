// Package gateway assembles tungate: links (package link), routing, the
// datapath loop that runs every packet through conntrack, NAT, the rules and
// the helpers in netfilter order, the gateway's own ICMP, config reload and
// the admin socket.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"reflect"
	"sync"
	"sync/atomic"

	"github.com/gaissmai/bart"
	"go.uber.org/zap"

	"tungate/alg"
	"tungate/confdiag"
	"tungate/conntrack"
	"tungate/link"
	"tungate/link/uplink"
	"tungate/link/wireguard"
	"tungate/nat"
	"tungate/packet"
	"tungate/rules"
)

// routeLocal marks the gateway's own addresses in the routing table.
const routeLocal = -1

// Gateway is a running tungate instance.
type Gateway struct {
	log   *zap.Logger
	cfg   atomic.Pointer[Config]
	links []*Link

	ct *conntrack.Table
	// srcLimit is [conntrack] per_source_max; nil when there is none.
	srcLimit *conntrack.SourceLimit
	nat      *nat.Engine
	alg      *alg.Registry
	rules    atomic.Pointer[rules.Ruleset]
	reasm    *packet.Reassembler

	// routes maps prefixes to an interface index, or routeLocal for the
	// gateway's own addresses (host routes win by longest prefix).
	routes *bart.Table[int]
	// own[i] are interface i's own addresses (ICMP error sources).
	own [][]netip.Addr
	// bcast are the directed broadcast addresses of own IPv4 subnets.
	bcast [][4]byte
	// external[i]: interface i is one NAT translates out of; unsolicited
	// SYNs to its addresses get no answer (RFC 5382 REQ-4).
	external []bool

	limiter *icmpLimiter
	// Counters are the datapath counters (drops by reason and more).
	Counters Counters
	// linkCtr[i] are interface i's packet and byte counts.
	linkCtr []linkCounters

	adminMu sync.Mutex // guards adminLn
	adminLn []net.Listener

	reloadMu sync.Mutex // serialises reloads
	// state is the state file's bookkeeping (statefile.go).
	state  stateFile
	closed atomic.Bool
	wg     sync.WaitGroup
}

// Options change how a Gateway is built, for tests and embedding.
type Options struct {
	// Open opens an interface's link; nil opens what the config says.
	Open OpenFunc
	// Logger; nil builds one from the config's [log].
	Logger *zap.Logger
}

// New builds a gateway from a validated config and opens its devices.
func New(cfg *Config, opt Options) (*Gateway, error) {
	log := opt.Logger
	if log == nil {
		var err error
		log, err = NewLogger(cfg.Log)
		if err != nil {
			return nil, err
		}
	}
	g := &Gateway{log: log, linkCtr: make([]linkCounters, len(cfg.Interface))}
	logWarnings(log, cfg)
	g.cfg.Store(cfg)
	ct, err := conntrack.NewTable(cfg.Conntrack)
	if err != nil {
		return nil, err
	}
	g.ct = ct
	if n := cfg.Conntrack.PerSourceMax; n > 0 {
		g.srcLimit = conntrack.NewSourceLimit(ct, n)
	}
	g.reasm = packet.NewReassembler(packet.ReassemblyConfig{})
	g.limiter = newICMPLimiter(cfg.ICMP.Rate, cfg.ICMP.Burst)
	if err := g.buildRoutes(cfg); err != nil {
		return nil, err
	}
	g.nat, err = nat.New(cfg.NAT, cfg.natIfaces(), ct, log.Named("nat"))
	if err != nil {
		return nil, err
	}
	g.external = make([]bool, len(cfg.Interface))
	for i := range cfg.Interface {
		g.external[i] = g.nat.IsExternal(i)
	}
	g.alg, err = alg.New(cfg.Helpers, ct, natAdapter{g.nat}, log.Named("helper"))
	if err != nil {
		return nil, err
	}
	rs, err := g.compileRules(cfg)
	if err != nil {
		return nil, err
	}
	g.rules.Store(rs)

	open := opt.Open
	if open == nil {
		open = openLink
	}
	for i := range cfg.Interface {
		ic := &cfg.Interface[i]
		dev, err := open(ic, log)
		if err != nil {
			g.closeLinks()
			return nil, err
		}
		mtu := ic.MTU
		l := &Link{Name: ic.Name, Index: i, Dev: dev, MTU: mtu, clamp: ic.clamp, rpf: ic.rpf}
		l.peers, _ = dev.(link.PeerIdentifier)
		g.links = append(g.links, l)
		if u, ok := dev.(*uplink.Link); ok {
			g.ct.AddDestroyHook(uplinkCloser(u))
		}
	}
	if err := g.listenForwards(cfg); err != nil {
		g.closeLinks()
		return nil, err
	}
	g.restoreState()
	return g, nil
}

// listenForwards listens on the host port of each port forward from an
// uplink (dual-stack) and hands the listener to the uplink, which injects
// each connection as one from its real client.
func (g *Gateway) listenForwards(cfg *Config) error {
	for _, f := range cfg.uplinkForwards() {
		u, ok := g.links[f.iface].Dev.(*uplink.Link)
		if !ok {
			continue // a test's substitute device
		}
		name := g.links[f.iface].Name
		addr := fmt.Sprintf(":%d", f.port)
		if f.proto == "tcp" {
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				return fmt.Errorf("interface %q: port forward: %w", name, err)
			}
			g.log.Info("uplink port forward listening", zap.String("interface", name), zap.Stringer("addr", ln.Addr()))
			u.ForwardTCP(ln, g.forwardDst)
			continue
		}
		ua, err := net.ResolveUDPAddr("udp", addr)
		if err != nil {
			return err
		}
		c, err := net.ListenUDP("udp", ua)
		if err != nil {
			return fmt.Errorf("interface %q: port forward: %w", name, err)
		}
		g.log.Info("uplink port forward listening", zap.String("interface", name), zap.Stringer("addr", c.LocalAddr()))
		// Datagrams carry no local address without IP_PKTINFO: they
		// enter as addressed to the gateway's own address.
		u.ForwardUDP(c, g.forwardDst(netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), f.port)),
			g.forwardDst(netip.AddrPortFrom(netip.IPv6Loopback(), f.port)))
	}
	return nil
}

// forwardDst is the destination a forwarded connection enters the
// datapath with: the host address it reached, or for the host's loopback
// (a martian on the wire) the gateway's first own address of the family,
// as if the client had connected to the gateway.
func (g *Gateway) forwardDst(local netip.AddrPort) netip.AddrPort {
	if !local.Addr().IsLoopback() {
		return local
	}
	for _, own := range g.own {
		for _, a := range own {
			if a.Is4() == local.Addr().Is4() {
				return netip.AddrPortFrom(a, local.Port())
			}
		}
	}
	return netip.AddrPort{} // none: the uplink drops it, counted
}

// uplinkCloser is the destroy hook that makes "ct delete" of a TCP flow
// through an uplink end it on both sides: the uplink's host socket and its
// gVisor end are reset. The uplink saw the flow as the reply tuple
// reversed (after any NAT the datapath did before it); a flow that did
// not go through this uplink, or that ended already, is not found.
func uplinkCloser(u *uplink.Link) func(c *conntrack.Conn) {
	return func(c *conntrack.Conn) {
		r := c.Tuple(conntrack.DirReply)
		if r.Proto != packet.ProtoTCP || !c.Confirmed() {
			return
		}
		if u.CloseTCP(netip.AddrPortFrom(r.DstAddr(), r.DstPort), netip.AddrPortFrom(r.SrcAddr(), r.SrcPort)) {
			return
		}
		// A port forward from the uplink: it knows the flow by its
		// original tuple (client → host address).
		o := c.Tuple(conntrack.DirOriginal)
		u.CloseTCP(netip.AddrPortFrom(o.SrcAddr(), o.SrcPort), netip.AddrPortFrom(o.DstAddr(), o.DstPort))
	}
}

func (g *Gateway) compileRules(cfg *Config) (*rules.Ruleset, error) {
	rs, err := rules.Compile(cfg.Filter, cfg.Raw, cfg.Sets, cfg.rulesEnv(g.alg.Names(), g.log.Named("rules")))
	if err != nil && cfg.index != nil {
		return nil, cfg.locate(confdiag.Flatten(err))
	}
	return rs, err
}

func (g *Gateway) buildRoutes(cfg *Config) error {
	g.routes = &bart.Table[int]{}
	g.own = make([][]netip.Addr, len(cfg.Interface))
	for i := range cfg.Interface {
		for _, p := range cfg.Interface[i].addrs {
			g.routes.Insert(p.Masked(), i)
			g.own[i] = append(g.own[i], p.Addr())
		}
	}
	for _, r := range cfg.Route {
		g.routes.Insert(r.prefix, r.iface)
	}
	// An uplink's virtual addresses (host_loopback, dns) are reached
	// through it whatever the routes say: they are often inside the
	// container's own subnet, as slirp4netns's 10.0.2.2 and 10.0.2.3 are.
	for i := range cfg.Interface {
		ic := &cfg.Interface[i]
		if !ic.IsUplink() {
			continue
		}
		for _, s := range append(append([]string(nil), ic.HostLoopback...), ic.DNS...) {
			if a, err := netip.ParseAddr(s); err == nil {
				a = a.Unmap()
				g.routes.Insert(netip.PrefixFrom(a, a.BitLen()), i)
			}
		}
	}
	for i := range cfg.Interface {
		g.bcast = append(g.bcast, subnetBroadcasts(cfg.Interface[i].addrs)...)
	}
	// Own addresses last: a host route is the longest match there is.
	for i := range cfg.Interface {
		for _, p := range cfg.Interface[i].addrs {
			g.routes.Insert(netip.PrefixFrom(p.Addr(), p.Addr().BitLen()), routeLocal)
		}
	}
	return nil
}

// Table returns the connection table.
func (g *Gateway) Table() *conntrack.Table { return g.ct }

// SourceLimit returns the per-source connection limit ([conntrack]
// per_source_max), nil when there is none.
func (g *Gateway) SourceLimit() *conntrack.SourceLimit { return g.srcLimit }

// Links returns the gateway's links in config order.
func (g *Gateway) Links() []*Link { return g.links }

// Logger returns the gateway's logger.
func (g *Gateway) Logger() *zap.Logger { return g.log }

// Run forwards packets until ctx is done or a device fails, then closes
// every device.
func (g *Gateway) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, len(g.links))
	for _, l := range g.links {
		w := newWorker(g, l)
		g.wg.Add(1)
		go func() {
			defer g.wg.Done()
			if err := w.run(); err != nil && !g.closed.Load() {
				errc <- fmt.Errorf("interface %q: %w", l.Name, err)
			}
		}()
	}
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		g.ct.RunGC(ctx)
	}()
	g.log.Info("gateway running", zap.Int("interfaces", len(g.links)))
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	g.Close()
	g.wg.Wait()
	return err
}

// Close closes the devices; Run returns soon after.
func (g *Gateway) Close() {
	if g.closed.Swap(true) {
		return
	}
	g.adminMu.Lock()
	for _, ln := range g.adminLn {
		ln.Close() // a unix listener removes its socket file
	}
	g.adminMu.Unlock()
	g.closeLinks()
}

func (g *Gateway) closeLinks() {
	for _, l := range g.links {
		l.Dev.Close()
	}
}

// Reload reads the config file again and swaps in the new rules and sets
// atomically; connections, NAT bindings and expectations stay. A config
// that fails to load or compile leaves the running one untouched. Changes to
// interfaces, routes, NAT or helpers need a restart and are reported.
func (g *Gateway) Reload() error {
	g.reloadMu.Lock()
	defer g.reloadMu.Unlock()
	old := g.cfg.Load()
	if old.path == "" {
		return errors.New("reload: the config did not come from a file")
	}
	cfg, err := LoadConfig(old.path)
	if err != nil {
		g.log.Error("reload failed; keeping the running config", zap.Error(err))
		return err
	}
	logWarnings(g.log, cfg)
	return g.ReloadConfig(cfg)
}

// ReloadConfig swaps in the rules of an already validated config and the
// peers of its WireGuard interfaces (ApplyPeers).
func (g *Gateway) ReloadConfig(cfg *Config) error {
	rs, err := g.compileRules(cfg)
	if err != nil {
		g.log.Error("reload failed; keeping the running config", zap.Error(err))
		return err
	}
	if _, err := g.ApplyPeers(cfg); err != nil {
		g.log.Error("reload failed; keeping the running rules", zap.Error(err))
		return err
	}
	g.rules.Store(rs)
	g.warnRestart(g.cfg.Load(), cfg)
	if cfg.path == "" {
		cfg.path = g.cfg.Load().path
	}
	g.cfg.Store(cfg)
	g.log.Info("config reloaded")
	return nil
}

// warnRestart logs the hardening settings a reload read but cannot apply:
// the reverse-path modes and the per-source limit are fixed at start.
func (g *Gateway) warnRestart(old, cfg *Config) {
	if old.Conntrack.PerSourceMax != cfg.Conntrack.PerSourceMax {
		g.log.Warn("conntrack.per_source_max changed; it applies after a restart",
			zap.Int("running", old.Conntrack.PerSourceMax), zap.Int("new", cfg.Conntrack.PerSourceMax))
	}
	for i := range cfg.Interface {
		if i < len(old.Interface) && old.Interface[i].Name == cfg.Interface[i].Name && old.Interface[i].rpf != cfg.Interface[i].rpf {
			g.log.Warn("interface rpf changed; it applies after a restart",
				zap.String("interface", cfg.Interface[i].Name), zap.String("new", cfg.Interface[i].RPF))
		}
	}
}

// peerUpdater is a link whose peers change while it runs.
type peerUpdater interface {
	UpdatePeers([]wireguard.PeerConfig) error
}

// ApplyPeers gives each running WireGuard interface the peers cfg lists
// for it, where they differ from the running config's: peers added,
// removed or changed, and every other peer's session untouched (the
// link's UpdatePeers). An interface is matched by position and name and
// must be of kind wireguard in both configs; other interface changes need
// a restart and are left alone. It returns the names of the interfaces it
// changed. On an error the interfaces before the failing one keep their
// new peers and the failing one its old.
//
// Rules compiled for cfg must be swapped in right after: rules match a
// peer by its index in the interface's list, which the update renumbers.
func (g *Gateway) ApplyPeers(cfg *Config) ([]string, error) {
	old := g.cfg.Load()
	var changed []string
	for i, l := range g.links {
		if i >= len(cfg.Interface) || i >= len(old.Interface) {
			break
		}
		nic, oic := &cfg.Interface[i], &old.Interface[i]
		if nic.Name != l.Name || nic.Kind != KindWireGuard || oic.Kind != KindWireGuard {
			continue
		}
		if reflect.DeepEqual(nic.Peers, oic.Peers) {
			continue
		}
		u, ok := l.Dev.(peerUpdater)
		if !ok {
			continue
		}
		if err := u.UpdatePeers(nic.Peers); err != nil {
			return changed, fmt.Errorf("interface %q: %w", l.Name, err)
		}
		changed = append(changed, l.Name)
		g.log.Info("wireguard peers updated", zap.String("interface", l.Name), zap.Strings("peers", nic.PeerNames()))
	}
	return changed, nil
}

// Rules returns the running rule set.
func (g *Gateway) Rules() *rules.Ruleset { return g.rules.Load() }

// NewLogger builds the zap logger the [log] section asks for.
func NewLogger(c LogConfig) (*zap.Logger, error) {
	var zc zap.Config
	if c.Format == "json" {
		zc = zap.NewProductionConfig()
	} else {
		zc = zap.NewDevelopmentConfig()
		zc.DisableStacktrace = true
	}
	lvl, err := zap.ParseAtomicLevel(orDefault(c.Level, "info"))
	if err != nil {
		return nil, fmt.Errorf("log.level: %w", err)
	}
	zc.Level = lvl
	zc.OutputPaths = []string{"stderr"}
	zc.ErrorOutputPaths = []string{"stderr"}
	return zc.Build()
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

// natAdapter gives the helpers the slice of the NAT engine they use.
type natAdapter struct{ e *nat.Engine }

func (a natAdapter) BindSource(c *conntrack.Conn, addr packet.Addr, port uint16) error {
	return a.e.Bind(c, nat.ManipSrc, addr, port)
}

func (a natAdapter) BindDestination(c *conntrack.Conn, addr packet.Addr, port uint16) error {
	return a.e.Bind(c, nat.ManipDst, addr, port)
}

func (a natAdapter) PortAvailable(proto uint8, addr packet.Addr, port uint16) bool {
	return a.e.PortAvailable(proto, addr, port)
}
