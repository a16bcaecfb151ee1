package gateway

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/renameio/v2"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"tungate/confdiag"
	"tungate/conntrack"
	"tungate/rules"
)

// The state file ([conntrack] state_file): the connection table, with the
// NAT bindings and helper state on its entries, written on shutdown and
// on `tungate save`, read back when the gateway starts. What survives a
// restart is what the links let survive: a kernel TUN that is persistent
// or whose descriptor something holds across the restart (handed back as
// tun_fd) keeps its packets flowing to the same tuples; a connection that
// ends inside tungate (the uplink's, on host sockets) dies with the
// process.

// ErrNoStateFile: the config names no state file.
var ErrNoStateFile = errors.New("conntrack.state_file is not set")

// stateFile is the gateway's state file bookkeeping.
type stateFile struct {
	mu sync.Mutex // serialises saves (SIGTERM and `tungate save`)

	saves, saveErrors    atomic.Uint64
	restores, refused    atomic.Uint64
	restored, expired    atomic.Uint64
	restoredExpectations atomic.Uint64
	lastSave, lastBytes  atomic.Int64
	dropMu               sync.Mutex // guards dropped
	dropped              map[string]uint64
}

// hostIdentity names this machine for the state file: its machine-id
// (systemd's, stable across reboots, distinct between clones that were
// set up properly), else its hostname.
func hostIdentity() string {
	for _, p := range []string{"/etc/machine-id", "/var/lib/dbus/machine-id"} {
		if b, err := os.ReadFile(p); err == nil {
			if id := strings.TrimSpace(string(b)); id != "" {
				return "machine-id:" + id
			}
		}
	}
	h, _ := os.Hostname()
	return "hostname:" + h
}

func (g *Gateway) stateOptions() conntrack.StateOptions {
	return conntrack.StateOptions{Host: hostIdentity(), Codecs: []conntrack.StateCodec{g.nat, g.pl.Load().alg}}
}

// SaveState writes the connection table to the state file atomically: a
// temporary file beside it, fsync, rename over it, fsync of the
// directory, so a crash leaves the old file or the new one, never half
// of one. It may run while the gateway forwards (`tungate save`).
func (g *Gateway) SaveState() (conntrack.SaveReport, error) {
	path := g.Config().Conntrack.StateFile
	if path == "" {
		return conntrack.SaveReport{}, ErrNoStateFile
	}
	st := &g.state
	st.mu.Lock()
	defer st.mu.Unlock()
	start := time.Now()
	rep, err := g.saveStateTo(path)
	if err != nil {
		st.saveErrors.Add(1)
		g.log.Error("state file not saved", zap.String("path", path), zap.Error(err))
		return rep, err
	}
	st.saves.Add(1)
	st.lastSave.Store(time.Now().Unix())
	st.lastBytes.Store(rep.Bytes)
	g.log.Info("state file saved", zap.String("path", path), zap.Int("connections", rep.Conns),
		zap.Int("expectations", rep.Expectations), zap.Int64("bytes", rep.Bytes), zap.Duration("took", time.Since(start)))
	return rep, nil
}

func (g *Gateway) saveStateTo(path string) (conntrack.SaveReport, error) {
	pf, err := renameio.NewPendingFile(path, renameio.WithPermissions(0o600))
	if err != nil {
		return conntrack.SaveReport{}, err
	}
	defer pf.Cleanup()
	opt := g.stateOptions()
	rt, err := json.Marshal(savedRuntime{Sets: g.RuntimeState().Sets, Forwards: g.Forwards()})
	if err != nil {
		return conntrack.SaveReport{}, err
	}
	opt.Extra = map[string][]byte{runtimeExtra: rt}
	if !g.closed.Load() {
		// `tungate save` while forwarding: one core for the walk, the
		// rest stay the datapath's. At shutdown it may take them all.
		opt.Workers = 1
	}
	rep, err := g.ct.SaveState(pf, opt)
	if err != nil {
		return rep, err
	}
	if err := pf.CloseAtomicallyReplace(); err != nil {
		return rep, err
	}
	// The rename is durable only once the directory is on disk too.
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return rep, err
	}
	defer d.Close()
	return rep, d.Sync()
}

// restoreState reads the state file into the new, not yet forwarding
// table. Nothing about it is fatal: a missing file is the first start, a
// damaged or foreign one is logged with the reason and ignored.
func (g *Gateway) restoreState() {
	path := g.Config().Conntrack.StateFile
	if path == "" {
		return
	}
	st := &g.state
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			g.log.Info("no state file to restore", zap.String("path", path))
		} else {
			st.refused.Add(1)
			g.log.Warn("state file ignored", zap.String("path", path), zap.Error(err))
		}
		return
	}
	defer f.Close()
	start := time.Now()
	rep, err := g.ct.RestoreState(f, g.stateOptions())
	if err != nil {
		st.refused.Add(1)
		g.log.Warn("state file ignored; starting with an empty table", zap.String("path", path), zap.Error(err))
		return
	}
	st.restores.Add(1)
	st.restored.Add(uint64(rep.Restored))
	st.restoredExpectations.Add(uint64(rep.RestoredExpectations))
	st.expired.Add(uint64(rep.Expired))
	st.dropMu.Lock()
	if st.dropped == nil {
		st.dropped = map[string]uint64{}
	}
	var dropped []string
	for r, n := range rep.Dropped {
		st.dropped[r] += uint64(n)
		dropped = append(dropped, fmt.Sprintf("%s=%d", r, n))
	}
	st.dropMu.Unlock()
	sort.Strings(dropped)
	g.restoreRuntimeLayer(rep.Extra[runtimeExtra])
	g.log.Info("state file restored", zap.String("path", path), zap.Time("written", rep.Written),
		zap.Int("connections", rep.Restored), zap.Int("of", rep.Conns),
		zap.Int("expectations", rep.RestoredExpectations), zap.Int("expired", rep.Expired),
		zap.Strings("dropped", dropped), zap.Duration("took", time.Since(start)))
}

// runtimeExtra names the state file's blob of the runtime layer.
const runtimeExtra = "runtime"

// savedRuntime is the runtime layer as the state file keeps it (JSON in
// an extra record): set elements added at run time with their expiry,
// and the port forwards added through the ports API.
type savedRuntime struct {
	Sets     []rules.RuntimeElement `json:"sets,omitempty"`
	Forwards []RuntimeForward       `json:"forwards,omitempty"`
}

// restoreRuntimeLayer puts a saved runtime layer back: what was added at
// run time survives a restart as the connections do. What no longer
// applies (a set the config lost, a host port taken meanwhile) is logged
// and skipped, never fatal.
func (g *Gateway) restoreRuntimeLayer(blob []byte) {
	if blob == nil {
		return
	}
	var rt savedRuntime
	if err := json.Unmarshal(blob, &rt); err != nil {
		g.log.Warn("state file: runtime layer ignored", zap.Error(err))
		return
	}
	if len(rt.Sets) > 0 {
		n, err := g.RestoreRuntime(RuntimeState{Sets: rt.Sets})
		if err != nil {
			g.log.Warn("state file: runtime set elements not all restored", zap.Int("restored", n), zap.Error(err))
		} else {
			g.log.Info("state file: runtime set elements restored", zap.Int("elements", n))
		}
	}
	for _, f := range rt.Forwards {
		f.ID = 0
		if _, err := g.AddForward(f); err != nil {
			g.log.Warn("state file: runtime port forward not restored", zap.String("proto", f.Proto),
				zap.Int("parent_port", f.ParentPort), zap.Error(err))
		}
	}
}

// checkStateFileDir refuses a state file in a world-writable directory,
// sticky or not: another user could put a file of their own there (the
// checksum protects against damage, not against a forger) and have the
// gateway hold ports and let flows in for it. A directory that does not
// exist is an error too: the save at shutdown would fail.
func (c *Config) checkStateFileDir(l *confdiag.List) {
	p := c.Conntrack.StateFile
	if p == "" {
		return
	}
	dir := filepath.Dir(p)
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		l.Addf("conntrack.state_file", "%q: directory %s does not exist", p, dir)
		return
	}
	if err := unsafeDir(dir, false); err != nil {
		l.Addf("conntrack.state_file", "%q is in %s: another user could replace the file; use a directory only the gateway's user can write, e.g. /var/lib/tungate", p, err)
	}
}

// stateCollector exports the state file's counters.
type stateCollector struct {
	g                                           *Gateway
	saves, restores, restored, expired, dropped *prometheus.Desc
	restoredExpectations, lastSave, lastBytes   *prometheus.Desc
}

func newStateCollector(g *Gateway) *stateCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("tungate_statefile_"+name, help, labels, nil)
	}
	return &stateCollector{
		g:                    g,
		saves:                d("saves_total", "State file saves, by result (ok, error).", "result"),
		restores:             d("restores_total", "State file restores at start, by result (ok; refused: damaged, foreign or unreadable file).", "result"),
		restored:             d("restored_entries_total", "Connections restored from the state file."),
		restoredExpectations: d("restored_expectations_total", "Expectations restored from the state file."),
		expired:              d("expired_entries_total", "State file entries whose time ran out while the gateway was down."),
		dropped:              d("dropped_entries_total", "State file entries not restored, by reason (interface, nat_rule, nat_address, nat_port, helper, clash, full, master).", "reason"),
		lastSave:             d("last_save_timestamp_seconds", "Unix time of the last successful save (0: none)."),
		lastBytes:            d("last_save_bytes", "Size of the last state file saved."),
	}
}

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.saves, c.restores, c.restored, c.restoredExpectations, c.expired, c.dropped, c.lastSave, c.lastBytes} {
		ch <- d
	}
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	st := &c.g.state
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	counter(c.saves, st.saves.Load(), "ok")
	counter(c.saves, st.saveErrors.Load(), "error")
	counter(c.restores, st.restores.Load(), "ok")
	counter(c.restores, st.refused.Load(), "refused")
	counter(c.restored, st.restored.Load())
	counter(c.restoredExpectations, st.restoredExpectations.Load())
	counter(c.expired, st.expired.Load())
	st.dropMu.Lock()
	for r, v := range st.dropped {
		counter(c.dropped, v, r)
	}
	st.dropMu.Unlock()
	ch <- prometheus.MustNewConstMetric(c.lastSave, prometheus.GaugeValue, float64(st.lastSave.Load()))
	ch <- prometheus.MustNewConstMetric(c.lastBytes, prometheus.GaugeValue, float64(st.lastBytes.Load()))
}
