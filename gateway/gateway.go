// Package gateway assembles tungate: links (package link), routing, the
// datapath loop that runs every packet through conntrack, NAT, the rules and
// the helpers in netfilter order, the gateway's own ICMP, config reload and
// the admin socket.
package gateway

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"tungate/alg"
	"tungate/confdiag"
	"tungate/conntrack"
	"tungate/link/uplink"
	"tungate/nat"
	"tungate/packet"
	"tungate/rules"
)

// routeLocal marks the gateway's own addresses in the routing table.
const routeLocal = -1

// Gateway is a running tungate instance.
type Gateway struct {
	log *zap.Logger
	// level is the log's level when the gateway built its logger (a
	// reload changes it), nil when the embedder supplied the logger.
	level *zap.AtomicLevel
	// pl is the datapath's view of the config; see plane.
	pl atomic.Pointer[plane]
	// open opens a link (Options.Open or openLink).
	open OpenFunc

	ct *conntrack.Table
	// srcLimit is [conntrack] per_source_max; nil when there is none.
	srcLimit *conntrack.SourceLimit
	nat      *nat.Engine
	reasm    *packet.Reassembler
	// cookies are the SYN proxy's.
	cookies *synCookies
	// capturing counts the links being captured: with none, a batch
	// costs one load of it (capture.go).
	capturing atomic.Int32
	// sets is the runtime layer of the named sets (runtime.go).
	sets *rules.RuntimeSets
	// fwds are the port forwards added at run time (forwards.go).
	fwds runtimeForwards

	// Counters are the datapath counters (drops by reason and more).
	Counters Counters

	adminMu sync.Mutex // guards adminLn
	adminLn []net.Listener

	// reloadMu serialises reloads and link state changes (a link going
	// down or coming back), which build new planes from the current one.
	reloadMu sync.Mutex
	// running is set by Run: links opened later get their reader at once.
	running bool // guarded by reloadMu
	// settle adds to the last reload's rules and helpers what the old ones
	// counted after the swap (carry); nil when done. Guarded by reloadMu.
	settle *func()
	// runCtx ends with Run; reattach loops watch it. Guarded by reloadMu.
	runCtx  context.Context
	closed  atomic.Bool
	wg      sync.WaitGroup
	lastRel atomic.Pointer[ReloadResult]
	// reloads counts reload attempts that applied ([0]) and that failed or
	// were refused ([1]); dry runs are not attempts.
	reloads [2]atomic.Uint64
	// tunProbe, when set, answers canOpen's kernel questions (tests).
	tunProbe *tunProbe
	// state is the state file's bookkeeping (statefile.go).
	state stateFile
}

// Options change how a Gateway is built, for tests and embedding.
type Options struct {
	// Open opens an interface's link; nil opens what the config says.
	Open OpenFunc
	// Logger; nil builds one from the config's [log].
	Logger *zap.Logger
	// LogLevel is Logger's level, which a reload changing log.level sets;
	// without it such a reload is refused.
	LogLevel *zap.AtomicLevel
	// Clock is the runtime layer's clock (set element timeouts); nil
	// is time.Now.
	Clock func() time.Time
}

// New builds a gateway from a validated config and opens its devices.
func New(cfg *Config, opt Options) (*Gateway, error) {
	log, level := opt.Logger, opt.LogLevel
	if log == nil {
		var err error
		var lvl zap.AtomicLevel
		log, lvl, err = newLogger(cfg.Log)
		if err != nil {
			return nil, err
		}
		level = &lvl
	}
	g := &Gateway{log: log, level: level, open: opt.Open, sets: rules.NewRuntimeSets(opt.Clock)}
	if g.open == nil {
		g.open = openLink
	}
	logWarnings(log, cfg)
	ct, err := conntrack.NewTable(cfg.Conntrack)
	if err != nil {
		return nil, err
	}
	g.ct = ct
	if n := cfg.Conntrack.PerSourceMax; n > 0 {
		g.srcLimit = conntrack.NewSourceLimit(ct, n)
	}
	g.reasm = packet.NewReassembler(packet.ReassemblyConfig{})
	g.cookies = newSynCookies()
	n := len(cfg.Interface)
	slots := make([]int, n)
	for i := range slots {
		slots[i] = i
	}
	g.nat, err = nat.New(cfg.NAT, natIfacesBySlot(cfg, slots, n), ct, log.Named("nat"))
	if err != nil {
		return nil, err
	}
	pl := &plane{cfg: cfg, slots: slots, links: make([]*Link, n), down: make([]bool, n)}
	if err := g.preparePlane(pl); err != nil {
		return nil, err
	}
	pl.setExternal(g.nat.IsExternal)
	idents := cfg.identities()
	for i := range cfg.Interface {
		ic := &cfg.Interface[i]
		l, err := g.openLink(ic, i, &linkState{ident: idents[i]})
		if err != nil {
			for _, l := range pl.links {
				if l != nil {
					l.Dev.Close()
				}
			}
			return nil, err
		}
		pl.links[i] = l
	}
	g.pl.Store(pl)
	if err := g.listenForwards(cfg); err != nil {
		g.closeLinks()
		return nil, err
	}
	// Always installed: it reads the running plane, so an uplink a reload
	// adds is shown too; a flow not routed out of an uplink is shown as
	// it is.
	ct.SetReplyView(g.uplinkReplyView)
	g.restoreState()
	return g, nil
}

// uplinkReplyView shows an uplink flow's reply tuple the way Linux shows
// a masqueraded one: to the host address and socket port the flow left
// from (on an uplink masquerade is implicit). The uplink saw the flow as
// the reply tuple reversed; for ICMP echo the identifier is the tuple's
// source port and the ping socket's replaces it. It reads the running
// plane, so uplinks added or removed by a reload are seen.
func (g *Gateway) uplinkReplyView(_ *conntrack.Conn, r conntrack.Tuple) conntrack.Tuple {
	icmp := r.Proto == packet.ProtoICMP || r.Proto == packet.ProtoICMPv6
	if r.Proto != packet.ProtoTCP && r.Proto != packet.ProtoUDP && !icmp {
		return r
	}
	src := netip.AddrPortFrom(r.DstAddr(), r.DstPort)
	if icmp {
		src = netip.AddrPortFrom(r.DstAddr(), r.SrcPort)
	}
	dst := netip.AddrPortFrom(r.SrcAddr(), r.SrcPort)
	// Only a flow routed out of an uplink: a container's UDP socket may
	// also talk to a host on another interface.
	pl := g.pl.Load()
	out, routed := pl.routes.Lookup(dst.Addr())
	if !routed {
		return r
	}
	l := pl.link(out)
	if l == nil {
		return r
	}
	u, ok := l.Dev.(*uplink.Link)
	if !ok {
		return r
	}
	h, ok := u.HostSide(r.Proto, src, dst)
	if !ok || h.Addr().Is4() != (r.Family == 4) {
		return r
	}
	r.Dst = packet.AddrFrom(h.Addr())
	if icmp {
		r.SrcPort = h.Port()
	} else {
		r.DstPort = h.Port()
	}
	return r
}

// openLink opens interface ic's device for slot s with state st.
func (g *Gateway) openLink(ic *InterfaceConfig, s int, st *linkState) (*Link, error) {
	dev, err := g.open(ic, g.log)
	if err != nil {
		return nil, err
	}
	l := &Link{Dev: dev, st: st}
	l.configure(ic, s)
	st.gen.Add(1)
	if u, ok := dev.(*uplink.Link); ok {
		g.ct.AddDestroyHook(uplinkCloser(u))
	}
	return l, nil
}

// preparePlane compiles what pl's config and slots need: routes, the
// rules, the helpers (unless pl has them), the ICMP limiter. It
// changes nothing running; nat must already hold the config's NAT rules
// (New) or be checked separately (a reload prepares them apart).
func (g *Gateway) preparePlane(pl *plane) error {
	cfg := pl.cfg
	n := len(pl.links)
	pl.buildRoutes()
	var err error
	if pl.alg == nil { // a reload keeps the running helpers when they did not change
		pl.alg, err = alg.New(cfg.Helpers, g.ct, natAdapter{g.nat}, g.log.Named("helper"))
		if err != nil {
			return err
		}
	}
	pl.rules, err = g.compileRulesBySlot(cfg, pl.slots, n, pl.alg)
	if err != nil {
		return err
	}
	pl.limiter = newICMPLimiter(cfg.ICMP.Rate, cfg.ICMP.Burst)
	return nil
}

// setExternal fills pl.external from the NAT setup in force for pl.
func (pl *plane) setExternal(isExternal func(int) bool) {
	pl.external = make([]bool, len(pl.links))
	for s := range pl.external {
		pl.external[s] = isExternal(s)
	}
}

// listenForwards listens on the host port of each port forward from an
// uplink (dual-stack) and hands the listener to the uplink, which injects
// each connection as one from its real client.
func (g *Gateway) listenForwards(cfg *Config) error {
	pl := g.pl.Load()
	for _, f := range cfg.uplinkForwards() {
		l := pl.link(pl.slotOf(f.iface))
		u, ok := l.Dev.(*uplink.Link)
		if !ok {
			continue // a test's substitute device
		}
		name := l.Name
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
	for _, own := range g.pl.Load().own {
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

// compileRulesBySlot compiles cfg's rules against the interfaces by slot,
// with the runtime layer's set elements merged in (applyRuntime): every
// path that makes rules goes through it, so a reload keeps what was added
// at runtime. Hold reloadMu from here until the result is swapped in (see
// runtime.go).
func (g *Gateway) compileRulesBySlot(cfg *Config, slots []int, n int, helpers *alg.Registry) (*rules.Ruleset, error) {
	env := rulesEnvBySlot(cfg, slots, n, cfg.rulesEnv(helpers.Names(), g.log.Named("rules")))
	rs, err := rules.Compile(cfg.Filter, cfg.Raw, cfg.Sets, env)
	if err != nil && cfg.index != nil {
		return nil, cfg.locate(confdiag.Flatten(err))
	}
	if err != nil {
		return nil, err
	}
	g.applyRuntime(rs)
	return rs, nil
}

// Table returns the connection table.
func (g *Gateway) Table() *conntrack.Table { return g.ct }

// SourceLimit returns the per-source connection limit ([conntrack]
// per_source_max), nil when there is none.
func (g *Gateway) SourceLimit() *conntrack.SourceLimit { return g.srcLimit }

// Links returns the gateway's links in config order.
func (g *Gateway) Links() []*Link {
	pl := g.pl.Load()
	out := make([]*Link, len(pl.slots))
	for i, s := range pl.slots {
		out[i] = pl.links[s]
	}
	return out
}

// Logger returns the gateway's logger.
func (g *Gateway) Logger() *zap.Logger { return g.log }

// Run forwards packets until ctx is done, then closes every device. A
// link that fails does not end it: the link goes down and comes back when
// its device does (see linkEnded).
func (g *Gateway) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	g.reloadMu.Lock()
	g.running, g.runCtx = true, ctx
	pl := g.pl.Load()
	for _, l := range pl.links {
		if l != nil {
			g.startReader(l)
		}
	}
	g.reloadMu.Unlock()
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		g.ct.RunGC(ctx)
	}()
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		g.sweepSets(ctx)
	}()
	g.log.Info("gateway running", zap.Int("interfaces", len(pl.slots)))
	<-ctx.Done()
	g.Close()
	g.wg.Wait()
	return nil
}

// startReader runs a reader for link l until its device ends. Called with
// reloadMu held.
func (g *Gateway) startReader(l *Link) {
	w := newWorker(g, l)
	gen := l.st.gen.Load()
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		err := w.run()
		g.linkEnded(l, gen, err)
	}()
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
	// Under reloadMu: a reload or a reattach in progress finishes first,
	// and the links it opened are among those closed here.
	g.reloadMu.Lock()
	g.closeLinks()
	g.reloadMu.Unlock()
}

func (g *Gateway) closeLinks() {
	for _, l := range g.pl.Load().links {
		if l != nil {
			l.Dev.Close()
		}
	}
}

// Rules returns the running rule set.
func (g *Gateway) Rules() *rules.Ruleset { return g.pl.Load().rules }

// NewLogger builds the zap logger the [log] section asks for.
func NewLogger(c LogConfig) (*zap.Logger, error) {
	l, _, err := newLogger(c)
	return l, err
}

// newLogger is NewLogger that also returns the level, which a reload sets.
func newLogger(c LogConfig) (*zap.Logger, zap.AtomicLevel, error) {
	var zc zap.Config
	if c.Format == "json" {
		zc = zap.NewProductionConfig()
	} else {
		zc = zap.NewDevelopmentConfig()
		zc.DisableStacktrace = true
	}
	lvl, err := zap.ParseAtomicLevel(orDefault(c.Level, "info"))
	if err != nil {
		return nil, lvl, fmt.Errorf("log.level: %w", err)
	}
	zc.Level = lvl
	zc.OutputPaths = []string{"stderr"}
	zc.ErrorOutputPaths = []string{"stderr"}
	l, err := zc.Build()
	return l, lvl, err
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
