package gateway

import (
	"encoding"
	"errors"
	"fmt"
	"io"
	"reflect"
	"runtime/debug"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"tungate/alg"
	"tungate/conntrack"
	"tungate/internal/lowprio"
	"tungate/link/tun"
	"tungate/link/wireguard"
)

// Change is one difference between the running config and a new one.
type Change struct {
	// Path is the key path, numbered as in the new file (as in the
	// running one for what the new file removes).
	Path string `json:"path"`
	// Old and New are the values ("" for absent).
	Old string `json:"old,omitempty"`
	New string `json:"new,omitempty"`
	// Live: the change is applied while running.
	Live bool `json:"live"`
	// Why says why a change that is not live cannot be made while
	// running; a reload with such a change is refused whole.
	Why string `json:"why,omitempty"`
}

// Plan is what reloading a config does: the differences from the running
// config, each applied live or refusing the reload.
type Plan struct {
	// Changes are sorted by key path.
	Changes []Change
	// Deleted counts the connections the reload deleted (those of
	// removed interfaces, and with FlushNAT the NATed ones).
	Deleted int

	cfg *Config
	old *plane
	// match[i] is the slot of the new config's interface i, -1 for an
	// interface the reload opens.
	match []int
	// removed are the slots whose interfaces the new config drops.
	removed []int
}

// Refused returns the changes that cannot be made while running.
func (p *Plan) Refused() []Change {
	var out []Change
	for _, c := range p.Changes {
		if !c.Live {
			out = append(out, c)
		}
	}
	return out
}

// Err is the refusal of the whole reload, naming each key path that
// cannot change live and why; nil when every change is live.
func (p *Plan) Err() error {
	var errs []error
	for _, c := range p.Refused() {
		errs = append(errs, fmt.Errorf("%s: %s", c.Path, c.Why))
	}
	if len(errs) == 0 {
		return nil
	}
	return &RefusedError{Errs: errs}
}

// RefusedError is a reload refused because some change cannot be made
// while running; the running config stays.
type RefusedError struct{ Errs []error }

func (e *RefusedError) Error() string {
	var b strings.Builder
	b.WriteString("reload refused, the running config stays: ")
	for i, err := range e.Errs {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(err.Error())
	}
	return b.String()
}

// WriteText writes the plan one change a line: "~" a value changed, "+"
// added, "-" removed; refused changes end with the reason.
func (p *Plan) WriteText(w io.Writer) error {
	if len(p.Changes) == 0 {
		_, err := fmt.Fprintln(w, "no changes")
		return err
	}
	for _, c := range p.Changes {
		mark := "~"
		switch {
		case c.Old == "":
			mark = "+"
		case c.New == "":
			mark = "-"
		}
		var line string
		switch mark {
		case "+":
			line = fmt.Sprintf("%s %s = %s", mark, c.Path, c.New)
		case "-":
			line = fmt.Sprintf("%s %s (was %s)", mark, c.Path, c.Old)
		default:
			line = fmt.Sprintf("%s %s: %s -> %s", mark, c.Path, c.Old, c.New)
		}
		if c.Live {
			line += "  [live]"
		} else {
			line += "  [refused: " + c.Why + "]"
		}
		if _, err := fmt.Fprintln(w, line); err != nil {
			return err
		}
	}
	return nil
}

// ReloadOptions change what a reload does.
type ReloadOptions struct {
	// DryRun computes the plan and applies nothing.
	DryRun bool
	// FlushNAT deletes every NATed connection once the new NAT rules are
	// in force, so that all flows are translated by them; without it
	// connections keep the translation they were given.
	FlushNAT bool
}

// ReloadResult is the outcome of the last reload attempt.
type ReloadResult struct {
	Time    time.Time
	Err     error
	Changes int
}

// LastReload returns the last reload's outcome, nil before any.
func (g *Gateway) LastReload() *ReloadResult { return g.lastRel.Load() }

// ReloadCounts returns how many reloads applied and how many failed or
// were refused since the gateway started (dry runs not counted).
func (g *Gateway) ReloadCounts() (ok, failed uint64) {
	return g.reloads[0].Load(), g.reloads[1].Load()
}

// Reload reads the config file again and applies it (ReloadFile).
func (g *Gateway) Reload() error {
	_, err := g.ReloadFile(ReloadOptions{})
	return err
}

// ReloadFile reads the config file again and applies every difference
// from the running config, or none (ApplyConfig).
func (g *Gateway) ReloadFile(opt ReloadOptions) (*Plan, error) {
	path := g.Config().path
	if path == "" {
		return nil, errors.New("reload: the config did not come from a file")
	}
	var cfg *Config
	var err error
	niceDo(func() { cfg, err = LoadConfig(path) })
	if err != nil {
		if !opt.DryRun {
			g.recordReload(err, 0)
			g.log.Error("reload failed; keeping the running config", zap.Error(err))
		}
		return nil, err
	}
	if !opt.DryRun {
		logWarnings(g.log, cfg)
	}
	cfg.inheritRunner(g.Config())
	return g.ApplyConfig(cfg, opt)
}

// inheritRunner copies onto a config just read from the file what
// `tungate run` set on the running one beyond the file: the TUN
// descriptor that command mode and --netns hand to the [namespace]
// interface (the file has neither tun nor tun_fd for it). Without it
// every reload of such a gateway would read as that interface's device
// changing, and be refused.
func (c *Config) inheritRunner(old *Config) {
	name := c.Namespace.Interface
	if name == "" || name != old.Namespace.Interface {
		return
	}
	for i := range c.Interface {
		ic := &c.Interface[i]
		if ic.Name != name || ic.TUNFD != nil || ic.TUN != "" {
			continue
		}
		for j := range old.Interface {
			if oi := &old.Interface[j]; oi.Name == name && oi.TUNFD != nil {
				fd := *oi.TUNFD
				ic.TUNFD = &fd
			}
		}
	}
}

// ReloadConfig applies an already validated config (ApplyConfig).
func (g *Gateway) ReloadConfig(cfg *Config) error {
	_, err := g.ApplyConfig(cfg, ReloadOptions{})
	return err
}

// ApplyConfig makes cfg the running config: all of it or nothing. It
// computes the plan (Diff); a change that cannot be made while running
// refuses the whole reload. Then it prepares everything that can fail —
// the rules, NAT and helpers compiled, new interfaces opened — and only
// then commits, with atomic swaps: the datapath sees the old config or
// the new one, never a mix. On any failure what was opened is closed and
// the old config keeps running. Config() always returns what runs.
func (g *Gateway) ApplyConfig(cfg *Config, opt ReloadOptions) (plan *Plan, err error) {
	niceDo(func() { plan, err = g.applyConfig(cfg, opt) })
	return plan, err
}

func (g *Gateway) applyConfig(cfg *Config, opt ReloadOptions) (*Plan, error) {
	g.reloadMu.Lock()
	defer g.reloadMu.Unlock()
	if g.closed.Load() {
		return nil, errors.New("reload: the gateway is stopping")
	}
	old := g.pl.Load()
	plan := g.diff(old, cfg)
	if opt.DryRun {
		return plan, plan.Err()
	}
	if err := plan.Err(); err != nil {
		return plan, g.failReload(err)
	}
	if err := g.commit(plan, opt); err != nil {
		return plan, g.failReload(err)
	}
	g.recordReload(nil, len(plan.Changes))
	g.log.Info("config reloaded", zap.Int("changes", len(plan.Changes)), zap.Int("connections_deleted", plan.Deleted))
	return plan, nil
}

func (g *Gateway) failReload(err error) error {
	g.recordReload(err, 0)
	g.log.Error("reload failed; keeping the running config", zap.Error(err))
	return err
}

func (g *Gateway) recordReload(err error, n int) {
	if err == nil {
		g.reloads[0].Add(1)
	} else {
		g.reloads[1].Add(1)
	}
	g.lastRel.Store(&ReloadResult{Time: time.Now(), Err: err, Changes: n})
}

// niceDo runs fn at the lowest CPU priority on a scheduler slot of its
// own (lowprio.Do): decoding and compiling a large config takes a core
// for a while (10,000 rules: about half a second), and the links'
// readers must not fall behind their queues meanwhile. While it runs the
// garbage collector's target is raised (sparseGC).
func niceDo(fn func()) { lowprio.Do(func() { sparseGC(fn) }) }

// reloadGCPercent is the GOGC a reload's decode and compile run under.
// They allocate about 150 MB of short-lived garbage for 10,000 rules
// against a live heap of a few tens of MB, so at the default 100 the
// collector runs a cycle every few tens of MB — five or more per reload —
// and each cycle's mark phase takes a quarter of the Ps (a dedicated
// worker at normal priority, which the compile's nice 19 does not
// lower) away from the links' readers. At 400 it runs a fraction as
// often; the memory limit tungate run sets (GOMEMLIMIT) still bounds the
// heap.
var reloadGCPercent = 400 // a var for BenchmarkReload10kRules' comparison

var (
	gcMu    sync.Mutex // guards gcUsers and gcSaved
	gcUsers int
	gcSaved int
)

// sparseGC runs fn with the GC percent at least reloadGCPercent; nested
// and concurrent calls share one change, undone when the last returns.
func sparseGC(fn func()) {
	gcMu.Lock()
	if gcUsers == 0 {
		gcSaved = debug.SetGCPercent(reloadGCPercent)
		if gcSaved < 0 || gcSaved > reloadGCPercent {
			debug.SetGCPercent(gcSaved) // off or higher already: keep it
		}
	}
	gcUsers++
	gcMu.Unlock()
	defer func() {
		gcMu.Lock()
		gcUsers--
		if gcUsers == 0 {
			debug.SetGCPercent(gcSaved)
		}
		gcMu.Unlock()
	}()
	fn()
}

// Diff returns what reloading cfg would change, without changing anything.
func (g *Gateway) Diff(cfg *Config) *Plan {
	g.reloadMu.Lock()
	defer g.reloadMu.Unlock()
	return g.diff(g.pl.Load(), cfg)
}

// commit prepares and applies a plan with no refused change.
func (g *Gateway) commit(plan *Plan, opt ReloadOptions) error {
	old, cfg := plan.old, plan.cfg
	n := len(old.links)
	for _, s := range plan.match {
		if s < 0 {
			n++
		}
	}
	pl := &plane{cfg: cfg, slots: make([]int, len(cfg.Interface)), links: make([]*Link, n), down: make([]bool, n)}
	copy(pl.down, old.down)
	for _, s := range plan.removed {
		pl.down[s] = false
	}
	next := len(old.links)
	for i, s := range plan.match {
		if s < 0 {
			s, next = next, next+1
		}
		pl.slots[i] = s
	}
	// Prepare: everything that can fail, nothing the datapath sees.
	var opened []*Link
	fail := func(err error) error {
		for _, l := range opened {
			l.st.removed.Store(true)
			l.Dev.Close()
		}
		return err
	}
	idents := cfg.identities()
	for i, s := range plan.match {
		ic := &cfg.Interface[i]
		if s >= 0 {
			pl.links[pl.slots[i]] = old.links[s].with(ic)
			continue
		}
		l, err := g.openLink(ic, pl.slots[i], &linkState{ident: idents[i]})
		if err != nil {
			return fail(err)
		}
		pl.links[pl.slots[i]] = l
		opened = append(opened, l)
	}
	natPrep, err := g.nat.Prepare(cfg.NAT, natIfacesBySlot(cfg, pl.slots, n))
	if err != nil {
		return fail(cfg.locateErr(err))
	}
	if reflect.DeepEqual(old.cfg.Helpers, cfg.Helpers) {
		pl.alg = old.alg
	}
	if err := g.preparePlaneKeep(pl, old); err != nil {
		return fail(err)
	}
	pl.setExternal(natPrep.IsExternal)
	if err := cfg.Conntrack.Validate(); err != nil {
		return fail(err)
	}
	// Commit. Peers first: the one step that can still fail, undone if
	// it does.
	var peersDone []int
	for i, s := range plan.match {
		if s < 0 {
			continue
		}
		oi := slices.Index(old.slots, s)
		nic, oic := &cfg.Interface[i], &old.cfg.Interface[oi]
		if nic.Kind != KindWireGuard || reflect.DeepEqual(nic.Peers, oic.Peers) {
			continue
		}
		u, ok := old.links[s].Dev.(peerUpdater)
		if !ok {
			continue
		}
		if err := u.UpdatePeers(nic.Peers); err != nil {
			for _, j := range peersDone {
				s := plan.match[j]
				if u, ok := old.links[s].Dev.(peerUpdater); ok {
					u.UpdatePeers(old.cfg.Interface[slices.Index(old.slots, s)].Peers)
				}
			}
			return fail(fmt.Errorf("interface %q: %w", nic.Name, err))
		}
		peersDone = append(peersDone, i)
		g.log.Info("wireguard peers updated", zap.String("interface", nic.Name), zap.Strings("peers", nic.PeerNames()))
	}
	if err := g.ct.Reconfigure(cfg.Conntrack); err != nil {
		return fail(err) // refused by diff already; kept for safety
	}
	if g.srcLimit != nil {
		g.srcLimit.SetMax(cfg.Conntrack.PerSourceMax)
	}
	if g.level != nil {
		if lvl, err := zap.ParseAtomicLevel(cfg.Log.Level); err == nil {
			g.level.SetLevel(lvl.Level())
		}
	}
	if cfg.path == "" {
		cfg.path = old.cfg.path
	}
	// Counters of rules (and helpers) that did not change continue
	// theirs (rules.InheritCounters): nft keeps a kept rule's counter,
	// and a metric read from it must not go backwards.
	g.settleCounters()
	carry := pl.rules.InheritCounters(old.rules)
	var helperCarry *alg.StatsCarry
	if pl.alg != old.alg {
		helperCarry = pl.alg.InheritStats(old.alg)
	}
	natPrep.Apply()
	g.pl.Store(pl)
	if carry != nil || helperCarry != nil {
		settle := func() {
			carry.Settle()
			helperCarry.Settle()
		}
		// Now what the old rules counted before the swap; again once
		// every worker has moved on to the new plane (a worker loads it
		// once per batch, so a batch in flight may still count in the
		// old rules for a moment), or at the next reload if it comes
		// first.
		settle()
		pending := &settle
		g.settle = pending
		time.AfterFunc(settleDelay, func() {
			g.reloadMu.Lock()
			if g.settle == pending {
				g.settleCounters()
			}
			g.reloadMu.Unlock()
		})
	}
	if g.running {
		for _, l := range opened {
			g.startReader(l)
		}
	}
	// The removed interfaces go, and the connections through them.
	for _, s := range plan.removed {
		l := old.links[s]
		l.st.removed.Store(true)
		l.Dev.Close()
		g.log.Info("interface removed", zap.String("interface", l.Name))
	}
	if len(plan.removed) > 0 {
		gone := make([]bool, len(old.links))
		for _, s := range plan.removed {
			gone[s] = true
		}
		via := func(t *conntrack.Tuple) bool {
			for _, a := range [2]bool{false, true} {
				addr := t.SrcAddr()
				if a {
					addr = t.DstAddr()
				}
				if s, ok := old.routes.Lookup(addr); ok && s >= 0 && gone[s] {
					return true
				}
			}
			return false
		}
		plan.Deleted += g.ct.DeleteMatching(func(c *conntrack.Conn) bool {
			o, r := c.Tuple(conntrack.DirOriginal), c.Tuple(conntrack.DirReply)
			return via(o) || via(r)
		})
	}
	if opt.FlushNAT {
		plan.Deleted += g.ct.DeleteMatching(func(c *conntrack.Conn) bool {
			return c.Status()&conntrack.StatusNATMask != 0
		})
	}
	for _, l := range opened {
		g.log.Info("interface added", zap.String("interface", l.Name))
	}
	return nil
}

// settleDelay is how long after a reload's swap the old rules' last
// counts are carried over: far longer than a worker keeps a plane (one
// batch).
const settleDelay = 200 * time.Millisecond

// settleCounters runs the last reload's pending settle. reloadMu is held.
func (g *Gateway) settleCounters() {
	if g.settle != nil {
		(*g.settle)()
		g.settle = nil
	}
}

// preparePlaneKeep is preparePlane keeping what the old plane has that did
// not change: the helper registry (pl.alg when set) and the ICMP limiter
// with its buckets.
func (g *Gateway) preparePlaneKeep(pl, old *plane) error {
	if err := g.preparePlane(pl); err != nil {
		return err
	}
	if old.cfg.ICMP == pl.cfg.ICMP {
		pl.limiter = old.limiter
	}
	return nil
}

// locateErr gives configuration errors their file positions.
func (c *Config) locateErr(err error) error {
	if c.index == nil {
		return err
	}
	var ce interface{ Unwrap() []error }
	if errors.As(err, &ce) {
		return c.locate(ce.Unwrap())
	}
	return c.locate([]error{err})
}

// peerUpdater is a link whose peers change while it runs.
type peerUpdater interface {
	UpdatePeers([]wireguard.PeerConfig) error
}

// ApplyPeers gives each running WireGuard interface the peers cfg lists
// for it (matched by device identity) where they differ from the running
// config's, and returns the names of the interfaces it changed. It is a
// part of a reload; ApplyConfig is the whole.
func (g *Gateway) ApplyPeers(cfg *Config) ([]string, error) {
	g.reloadMu.Lock()
	defer g.reloadMu.Unlock()
	old := g.pl.Load()
	match, _ := matchInterfaces(old, cfg)
	var changed []string
	for i, s := range match {
		if s < 0 {
			continue
		}
		nic, oic := &cfg.Interface[i], &old.cfg.Interface[slices.Index(old.slots, s)]
		if nic.Kind != KindWireGuard || reflect.DeepEqual(nic.Peers, oic.Peers) {
			continue
		}
		u, ok := old.links[s].Dev.(peerUpdater)
		if !ok {
			continue
		}
		if err := u.UpdatePeers(nic.Peers); err != nil {
			return changed, fmt.Errorf("interface %q: %w", nic.Name, err)
		}
		changed = append(changed, nic.Name)
	}
	return changed, nil
}

// matchInterfaces matches cfg's interfaces to the running links by device
// identity: match[i] is the slot of cfg.Interface[i] (-1: a new one), and
// removed the slots of running interfaces cfg does not have.
func matchInterfaces(old *plane, cfg *Config) (match, removed []int) {
	oldIDs, newIDs := old.cfg.identities(), cfg.identities()
	used := make([]bool, len(oldIDs))
	match = make([]int, len(newIDs))
	for i, id := range newIDs {
		match[i] = -1
		for j, oid := range oldIDs {
			if !used[j] && oid == id {
				used[j] = true
				match[i] = old.slots[j]
				break
			}
		}
	}
	for j := range oldIDs {
		if !used[j] {
			removed = append(removed, old.slots[j])
		}
	}
	return match, removed
}

// diff computes the plan for reloading cfg over the running plane old.
func (g *Gateway) diff(old *plane, cfg *Config) *Plan {
	p := &Plan{cfg: cfg, old: old}
	p.match, p.removed = matchInterfaces(old, cfg)
	add := func(c Change) { p.Changes = append(p.Changes, c) }

	// Everything but the interfaces, key by key.
	oc, nc := *old.cfg, *cfg
	oc.Interface, nc.Interface = nil, nil
	diffValues("", reflect.ValueOf(oc), reflect.ValueOf(nc), func(k, o, n string) {
		o, n = redact(k, o), redact(k, n)
		c := Change{Path: k, Old: o, New: n, Live: true}
		c.Live, c.Why = g.liveKey(k, old.cfg, cfg)
		add(c)
	})
	if !slices.Equal(fmtForwards(old.cfg), fmtForwards(cfg)) {
		add(Change{Path: "nat.dnat", Old: strings.Join(fmtForwards(old.cfg), " "), New: strings.Join(fmtForwards(cfg), " "),
			Why: "the host ports of port forwards from an uplink are listened on at start; restart to change them"})
	}

	// Interfaces, matched by device.
	oldIdx := func(s int) int { return slices.Index(old.slots, s) }
	for i, s := range p.match {
		ic := &cfg.Interface[i]
		key := fmt.Sprintf("interface[%d]", i)
		if s < 0 {
			c := Change{Path: key, New: describeIface(cfg, i), Live: true}
			c.Live, c.Why = g.canOpen(cfg, i, old)
			add(c)
			continue
		}
		j := oldIdx(s)
		oic := &old.cfg.Interface[j]
		if j != i {
			add(Change{Path: key, Old: fmt.Sprintf("interface[%d] %q", j, oic.Name), New: fmt.Sprintf("interface[%d] %q", i, ic.Name), Live: true})
		}
		diffValues(key, reflect.ValueOf(*oic), reflect.ValueOf(*ic), func(k, o, n string) {
			o, n = redact(k, o), redact(k, n)
			c := Change{Path: k, Old: o, New: n, Live: true}
			c.Live, c.Why = liveIfaceKey(strings.TrimPrefix(k, key+"."))
			add(c)
		})
	}
	for _, s := range p.removed {
		j := oldIdx(s)
		c := Change{Path: fmt.Sprintf("interface[%d]", j), Old: describeIface(old.cfg, j), Live: true}
		if old.cfg.Namespace.Enabled() && old.cfg.Namespace.Interface == old.cfg.Interface[j].Name {
			c.Live, c.Why = false, "the [namespace] interface's TUN is made when the gateway starts"
		}
		// A device swapped under an interface that keeps its name is
		// refused rather than silently closed and opened.
		for i, ms := range p.match {
			nic, oic := &cfg.Interface[i], &old.cfg.Interface[j]
			if ms < 0 && nic.Name == oic.Name && nic.Kind == oic.Kind {
				c.Path = fmt.Sprintf("interface[%d].%s", i, deviceKey(nic))
				c.Old, c.New = oic.identity(), nic.identity()
				c.Live = false
				c.Why = fmt.Sprintf("the device of running interface %q cannot change; remove the interface in one reload and add it in the next, or restart", nic.Name)
				p.Changes = slices.DeleteFunc(p.Changes, func(x Change) bool { return x.Path == fmt.Sprintf("interface[%d]", i) && x.Old == "" })
			}
		}
		add(c)
	}
	sort.SliceStable(p.Changes, func(a, b int) bool { return p.Changes[a].Path < p.Changes[b].Path })
	return p
}

// redact hides a secret's value (an inline private key) in a plan, which
// `reload --dry-run` prints.
func redact(k, v string) string {
	if v != "" && strings.HasSuffix(k, "private_key") {
		return "(secret)"
	}
	return v
}

// deviceKey is the key that names an interface's device.
func deviceKey(ic *InterfaceConfig) string {
	switch {
	case ic.Kind == KindWireGuard:
		return "listen_port"
	case ic.TUNFD != nil:
		return "tun_fd"
	}
	return "tun"
}

func describeIface(c *Config, i int) string {
	ic := &c.Interface[i]
	return fmt.Sprintf("%q (%s)", ic.Name, c.identities()[i])
}

func fmtForwards(c *Config) []string {
	var out []string
	for _, f := range c.uplinkForwards() {
		out = append(out, fmt.Sprintf("%s/%d@%s", f.proto, f.port, c.Interface[f.iface].Name))
	}
	return out
}

// canOpen says whether the reload may open new interface i: a kernel TUN
// that does not exist yet is created, which needs CAP_NET_ADMIN.
func (g *Gateway) canOpen(cfg *Config, i int, old *plane) (bool, string) {
	ic := &cfg.Interface[i]
	if cfg.Namespace.Enabled() && cfg.Namespace.Interface == ic.Name {
		return false, "the [namespace] interface's TUN is made when the gateway starts"
	}
	if ic.Kind != KindTUN || ic.TUNFD != nil || ic.TUN == "" {
		return true, ""
	}
	exists, canCreate := tun.Exists, tun.CanCreate
	if g.tunProbe != nil {
		exists, canCreate = g.tunProbe.exists, g.tunProbe.canCreate
	}
	if !exists(ic.TUN) && !canCreate() {
		why := fmt.Sprintf("creating TUN %q needs CAP_NET_ADMIN, which this gateway does not hold", ic.TUN)
		if !old.cfg.Admin.KeepNetAdmin {
			why += " (it dropped its privileges; [admin] keep_net_admin = true keeps it, or create the device beforehand owned by the gateway's user)"
		}
		return false, why
	}
	return true, ""
}

// tunProbe replaces the kernel questions canOpen asks, for tests.
type tunProbe struct {
	exists    func(string) bool
	canCreate func() bool
}

// liveKey says whether a top-level key path can change while running.
func (g *Gateway) liveKey(k string, old, cfg *Config) (bool, string) {
	top, rest, _ := strings.Cut(k, ".")
	switch top {
	case "admin":
		switch rest {
		case "socket":
			return false, "the admin socket is bound at start (and the CLI finds it by this path); restart to move it"
		case "metrics":
			return false, "the metrics listener is opened at start; restart to change it"
		case "keep_net_admin":
			return false, "capabilities are dropped at start and cannot be taken back; restart to change it"
		}
		return false, "fixed at start"
	case "namespace":
		return false, "the namespace and its TUN are set up when the gateway starts; restart to change them"
	case "log":
		if rest == "level" {
			if g.level == nil {
				return false, "the logger was supplied by the program embedding the gateway"
			}
			return true, ""
		}
		return false, "the log's format is fixed at start; restart to change it"
	case "conntrack":
		switch rest {
		case "buckets":
			return false, "the hash size is allocated at start; restart to change it"
		case "per_source_max":
			if (old.Conntrack.PerSourceMax == 0) != (cfg.Conntrack.PerSourceMax == 0) {
				return false, "per-source counting starts with the table (existing connections were not counted); turning it on or off needs a restart, changing the limit does not"
			}
		}
	}
	return true, ""
}

// liveIfaceKey says whether a key of a running interface can change.
func liveIfaceKey(k string) (bool, string) {
	base, _, _ := strings.Cut(k, "[")
	base, _, _ = strings.Cut(base, ".")
	switch base {
	case "name", "addresses", "rpf", "clamp_mss", "peer":
		return true, ""
	case "mtu":
		return false, "the device's MTU is set when it is opened; remove and add the interface again, or restart"
	}
	return false, "set when the link is opened; remove the interface in one reload and add it in the next, or restart"
}

func unionKeys(a, b map[string]string) []string {
	keys := make([]string, 0, len(a)+len(b))
	for k := range a {
		keys = append(keys, k)
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	return keys
}

// diffValues calls emit for each key path under path whose value differs
// between a and b (absent: ""). Equal subtrees are skipped whole, so a
// reload of 10,000 unchanged rules walks none of them.
func diffValues(path string, a, b reflect.Value, emit func(k, old, new string)) {
	// Not at the top: a whole Config differs in its unexported fields,
	// and DeepEqual would walk every rule only to find that out.
	if path != "" && a.IsValid() && b.IsValid() && reflect.DeepEqual(a.Interface(), b.Interface()) {
		return
	}
	if !a.IsValid() || !b.IsValid() || !walked(a) || !walked(b) || deref(a).Kind() != deref(b).Kind() {
		ov, nv := map[string]string{}, map[string]string{}
		if a.IsValid() {
			flatten(path, a, ov)
		}
		if b.IsValid() {
			flatten(path, b, nv)
		}
		for _, k := range unionKeys(ov, nv) {
			if ov[k] != nv[k] {
				emit(k, ov[k], nv[k])
			}
		}
		return
	}
	join := func(k string) string {
		if path == "" {
			return k
		}
		return path + "." + k
	}
	a, b = deref(a), deref(b)
	if !a.IsValid() || !b.IsValid() {
		diffValues(path, a, b, emit)
		return
	}
	switch a.Kind() {
	case reflect.Struct:
		t := a.Type()
		for i := range t.NumField() {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
			if !f.IsExported() || name == "" || name == "-" {
				continue
			}
			diffValues(join(name), a.Field(i), b.Field(i), emit)
		}
	case reflect.Map:
		keys := map[string]reflect.Value{}
		for _, k := range append(a.MapKeys(), b.MapKeys()...) {
			keys[fmt.Sprint(k.Interface())] = k
		}
		names := make([]string, 0, len(keys))
		for n := range keys {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			diffValues(join(n), a.MapIndex(keys[n]), b.MapIndex(keys[n]), emit)
		}
	case reflect.Slice, reflect.Array:
		for i := range max(a.Len(), b.Len()) {
			var x, y reflect.Value
			if i < a.Len() {
				x = a.Index(i)
			}
			if i < b.Len() {
				y = b.Index(i)
			}
			diffValues(fmt.Sprintf("%s[%d]", path, i), x, y, emit)
		}
	}
}

// deref follows pointers and interfaces; the zero Value for nil.
func deref(v reflect.Value) reflect.Value {
	for v.IsValid() && (v.Kind() == reflect.Pointer || v.Kind() == reflect.Interface) {
		if v.IsNil() {
			return reflect.Value{}
		}
		v = v.Elem()
	}
	return v
}

// walked reports whether diffValues descends into v rather than comparing
// it whole (tables and arrays of tables).
func walked(v reflect.Value) bool {
	v = deref(v)
	if !v.IsValid() || v.Type().Implements(textMarshaler) {
		return false
	}
	switch v.Kind() {
	case reflect.Struct, reflect.Map:
		return true
	case reflect.Slice, reflect.Array:
		return !isLeaf(v.Type().Elem())
	}
	return false
}

var textMarshaler = reflect.TypeFor[encoding.TextMarshaler]()

// flatten writes v's TOML keys as key path → value text into out: tables
// and arrays of tables are walked, everything else is a leaf.
func flatten(path string, v reflect.Value, out map[string]string) {
	join := func(k string) string {
		if path == "" {
			return k
		}
		return path + "." + k
	}
	for v.Kind() == reflect.Pointer || v.Kind() == reflect.Interface {
		if v.IsNil() {
			return
		}
		v = v.Elem()
	}
	if v.Type().Implements(textMarshaler) {
		if b, err := v.Interface().(encoding.TextMarshaler).MarshalText(); err == nil {
			if len(b) > 0 && !v.IsZero() {
				out[path] = string(b)
			}
			return
		}
	}
	switch v.Kind() {
	case reflect.Struct:
		t := v.Type()
		for i := range t.NumField() {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
			if !f.IsExported() || name == "" || name == "-" {
				continue
			}
			flatten(join(name), v.Field(i), out)
		}
	case reflect.Map:
		keys := v.MapKeys()
		for _, k := range keys {
			flatten(join(fmt.Sprint(k.Interface())), v.MapIndex(k), out)
		}
	case reflect.Slice, reflect.Array:
		if v.Len() == 0 {
			return
		}
		if isLeaf(v.Type().Elem()) {
			out[path] = fmt.Sprint(v.Interface())
			return
		}
		for i := range v.Len() {
			flatten(fmt.Sprintf("%s[%d]", path, i), v.Index(i), out)
		}
	default:
		if v.IsZero() {
			return // absent and zero read the same
		}
		out[path] = fmt.Sprint(v.Interface())
	}
}

// isLeaf: values of type t are shown whole, not walked.
func isLeaf(t reflect.Type) bool {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Struct, reflect.Map, reflect.Slice, reflect.Array, reflect.Interface:
		return t.Implements(textMarshaler)
	}
	return true
}
