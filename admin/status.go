package admin

import (
	"fmt"
	"io"
	"strings"
	"time"

	"tungate/gateway"
)

// Status is what `tungate status` shows.
type Status struct {
	Started       time.Time         `json:"started"`
	UptimeSeconds float64           `json:"uptime_seconds"`
	Config        string            `json:"config"`
	ConfigSHA256  string            `json:"config_sha256,omitempty"`
	ConfigChanged bool              `json:"config_changed_on_disk,omitempty"`
	LastReload    *ReloadStatus     `json:"last_reload,omitempty"`
	Interfaces    []InterfaceStatus `json:"interfaces"`
	Routes        []RouteStatus     `json:"routes"`
	Conntrack     TableStatus       `json:"conntrack"`
	Helpers       []string          `json:"helpers"`
	NAT           map[string]uint64 `json:"nat"`
	// NATPorts is each snat/masquerade rule's port use per family and
	// protocol.
	NATPorts []NATPortStatus `json:"nat_ports"`
	// HelperStats are the helpers' counters.
	HelperStats gateway.HelperStats `json:"helper_stats"`
	// Reloads counts reloads since start by result.
	Reloads ReloadCounts `json:"reloads"`
	// Runtime is what was changed at runtime, on top of the file.
	Runtime RuntimeStatus `json:"runtime"`
	// RuntimeForwards are the port forwards added through the ports API
	// (the runtime layer, apart from the config's).
	RuntimeForwards []gateway.RuntimeForward `json:"runtime_forwards,omitempty"`
}

// ReloadStatus is the last reload's outcome.
type ReloadStatus struct {
	Time  time.Time `json:"time"`
	Error string    `json:"error,omitempty"`
	// Changes is how many changes a successful reload applied.
	Changes int `json:"changes"`
}

// NATPortStatus is one snat/masquerade rule's port use on one family and
// protocol (nat.PortUse): the ports held on its addresses, by any mapping
// or forward, against those it gives out.
type NATPortStatus struct {
	Rule     string `json:"rule"`
	Kind     string `json:"kind"` // masquerade or snat
	Out      string `json:"out,omitempty"`
	Family   string `json:"family"`
	Protocol string `json:"protocol"`
	Used     uint64 `json:"used"`
	Capacity uint64 `json:"capacity"`
}

// ReloadCounts are the reloads since start by result.
type ReloadCounts struct {
	Success uint64 `json:"success"`
	Failure uint64 `json:"failure"`
}

// InterfaceStatus is one interface.
type InterfaceStatus struct {
	Name      string               `json:"name"`
	Kind      string               `json:"kind"`
	TUN       string               `json:"tun,omitempty"`
	MTU       int                  `json:"mtu"`
	Addresses []string             `json:"addresses"`
	Counters  gateway.LinkCounters `json:"counters"`
	// Uplink are an uplink's own counters (package link/uplink's names).
	Uplink map[string]uint64 `json:"uplink,omitempty"`

	// State is "up", or "down" while the device is gone (DownReason says
	// why); the gateway attaches it again when it comes back.
	State      string `json:"state"`
	DownReason string `json:"down_reason,omitempty"`
}

// RouteStatus is one configured route.
type RouteStatus struct {
	To        string `json:"to"`
	Interface string `json:"interface"`
}

// TableStatus is the connection table's fill.
type TableStatus struct {
	Entries      int `json:"entries"`
	Max          int `json:"max"`
	Expectations int `json:"expectations"`
}

// Status gathers the gateway's status.
func (s *Server) Status() *Status {
	cfg := s.g.Config()
	t := s.g.Table()
	st := &Status{
		Started:       s.started,
		UptimeSeconds: time.Since(s.started).Seconds(),
		Config:        cfg.Path(),
		Helpers:       s.g.Helpers(),
		Conntrack:     TableStatus{Entries: t.Count(), Max: t.Config().Max, Expectations: t.ExpectationCount()},
		NAT:           map[string]uint64{},
		Routes:        []RouteStatus{},
		Runtime:       runtimeStatus(s.g),
	}
	s.mu.Lock()
	st.ConfigSHA256 = s.configHash
	if !s.lastReload.IsZero() {
		st.LastReload = &ReloadStatus{Time: s.lastReload, Changes: s.reloadChanges}
		if s.reloadErr != nil {
			st.LastReload.Error = s.reloadErr.Error()
		}
	}
	s.mu.Unlock()
	if st.ConfigSHA256 != "" {
		st.ConfigChanged = hashFile(st.Config) != st.ConfigSHA256
	}
	for i, ic := range cfg.Interface {
		is := InterfaceStatus{Name: ic.Name, Kind: ic.Kind, TUN: ic.TUN, MTU: ic.MTU,
			Addresses: append([]string{}, ic.Addresses...), Counters: s.g.LinkCounters(i)}
		is.Uplink, _ = s.g.UplinkStats(i)
		is.State = "up"
		if up, why := s.g.LinkUp(i); !up {
			is.State, is.DownReason = "down", why
		}
		st.Interfaces = append(st.Interfaces, is)
	}
	for _, r := range cfg.Route {
		st.Routes = append(st.Routes, RouteStatus{To: r.To, Interface: r.Interface})
	}
	st.RuntimeForwards = s.g.Forwards()
	for k, v := range s.g.Stats() {
		if n, ok := strings.CutPrefix(k, "nat_"); ok {
			st.NAT[n] = v
		}
	}
	st.NATPorts = []NATPortStatus{}
	for _, u := range s.g.NATPortUse() {
		kind := "snat"
		if u.Masquerade {
			kind = "masquerade"
		}
		st.NATPorts = append(st.NATPorts, NATPortStatus{Rule: u.Rule, Kind: kind, Out: u.Out,
			Family: gateway.FamilyName(u.Family), Protocol: gateway.ProtoName(u.Proto), Used: u.Used, Capacity: u.Capacity})
	}
	st.HelperStats = s.g.HelperStats()
	st.Reloads.Success, st.Reloads.Failure = s.g.ReloadCounts()
	if st.Helpers == nil {
		st.Helpers = []string{}
	}
	return st
}

func (st *Status) writeText(w io.Writer) {
	up := time.Duration(st.UptimeSeconds * float64(time.Second)).Round(time.Second)
	fmt.Fprintf(w, "uptime:      %s (since %s)\n", up, st.Started.UTC().Format(time.RFC3339))
	cfg := st.Config
	if cfg == "" {
		cfg = "(not from a file)"
	}
	fmt.Fprintf(w, "config:      %s", cfg)
	if st.ConfigSHA256 != "" {
		fmt.Fprintf(w, " sha256:%s", st.ConfigSHA256[:16])
	}
	if st.ConfigChanged {
		fmt.Fprint(w, " (changed on disk since loaded)")
	}
	fmt.Fprintln(w)
	switch r := st.LastReload; {
	case r == nil:
		fmt.Fprintln(w, "last reload: never")
	case r.Error != "":
		fmt.Fprintf(w, "last reload: %s failed: %s\n", r.Time.UTC().Format(time.RFC3339), r.Error)
	default:
		fmt.Fprintf(w, "last reload: %s ok, %d changes\n", r.Time.UTC().Format(time.RFC3339), r.Changes)
	}
	if n := st.Reloads; n.Success+n.Failure > 0 {
		fmt.Fprintf(w, "reloads:     %d applied, %d failed or refused\n", n.Success, n.Failure)
	}
	c := st.Conntrack
	fmt.Fprintf(w, "conntrack:   %d/%d entries (%.1f%%), %d expectations\n", c.Entries, c.Max,
		100*float64(c.Entries)/float64(max(c.Max, 1)), c.Expectations)
	helpers := "none"
	if len(st.Helpers) > 0 {
		helpers = strings.Join(st.Helpers, ", ")
	}
	fmt.Fprintf(w, "helpers:     %s\n", helpers)
	if h := st.HelperStats; len(st.Helpers) > 0 || h != (gateway.HelperStats{}) {
		fmt.Fprintf(w, "             %d expectations created, %d mangled (%d replayed), %d ignored, %d dropped (%d held), %d long lines, %d unrewritable\n",
			h.ExpectationsCreated, h.Mangled, h.Replayed, h.Ignored, h.Dropped, h.Held, h.LongLines, h.Unrewritable)
	}
	fmt.Fprintf(w, "nat:         %d mappings live, %d created, %d port exhausted\n",
		st.NAT["mappings"], st.NAT["mappings_created"], st.NAT["port_exhausted"])
	for _, p := range st.NATPorts {
		out := ""
		if p.Out != "" {
			out = " out " + p.Out
		}
		fmt.Fprintf(w, "  %s %s%s %s/%s: %d / %d ports (%.1f %%)\n", p.Rule, p.Kind, out, p.Family, p.Protocol,
			p.Used, p.Capacity, 100*float64(p.Used)/float64(max(p.Capacity, 1)))
	}
	fmt.Fprintln(w, "interfaces:")
	for _, i := range st.Interfaces {
		k := i.Counters
		dev := "tun=" + i.TUN
		if i.Kind == gateway.KindUplink {
			dev = "uplink"
		}
		fmt.Fprintf(w, "  %-8s %s mtu=%d %s\n", i.Name, dev, i.MTU, strings.Join(i.Addresses, " "))
		if i.State == "down" {
			fmt.Fprintf(w, "           DOWN: %s\n", i.DownReason)
		}
		fmt.Fprintf(w, "           rx %d packets %d bytes, tx %d packets %d bytes\n", k.RxPackets, k.RxBytes, k.TxPackets, k.TxBytes)
		if u := i.Uplink; u != nil {
			fmt.Fprintf(w, "           %d udp, %d ping, %d tcp host sockets, %d dials pending, %d refused, %d failed, %d given up, %d over the per-host bound, %d queue drops\n",
				u["udp_sockets"], u["ping_sockets"], u["tcp_conns"], u["dials_pending"], u["dials_refused"], u["dials_failed"],
				u["dials_evicted"], u["drop_dial_budget"], u["drop_queue_full"])
		}
	}
	fmt.Fprintln(w, "routes:")
	for _, r := range st.Routes {
		fmt.Fprintf(w, "  %-20s via %s\n", r.To, r.Interface)
	}
	st.Runtime.writeText(w)
	if len(st.RuntimeForwards) > 0 {
		// Apart from the config's [[nat.dnat]]: added through the ports
		// API, gone when the gateway stops.
		fmt.Fprintln(w, "runtime port forwards:")
		for _, f := range st.RuntimeForwards {
			child := f.ChildIP
			if child == "" {
				child = "[namespace]"
			}
			fmt.Fprintf(w, "  id=%d %s %s:%d -> %s:%d via %s\n", f.ID, f.Proto, f.ParentIP, f.ParentPort, child, f.ChildPort, f.Interface)
		}
	}
}
