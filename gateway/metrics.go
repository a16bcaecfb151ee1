package gateway

import (
	"fmt"
	"net"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"tungate/conntrack"
	"tungate/link/uplink"
	"tungate/link/wireguard"
	"tungate/nat"
)

// collector exports the datapath and conntrack counters at scrape time, so
// the datapath keeps its plain atomic counters and pays nothing for metrics.
// Names follow Prometheus' conventions: counters end in _total, units
// (packets, bytes) are in the name, gauges are what can go down, and a
// label only splits what may be summed (drops by reason, interfaces).
type collector struct {
	g       *Gateway
	drops   *prometheus.Desc
	packets []counterDesc
	ifaces  [4]*prometheus.Desc
	entries *prometheus.Desc
	max     *prometheus.Desc
	expects *prometheus.Desc
	ct      []counterDesc
	nat     map[string]*prometheus.Desc
	natLive *prometheus.Desc
	// perSource counts NEW connections refused by [conntrack] per_source_max.
	perSource *prometheus.Desc
	// wgDrops are what WireGuard interfaces dropped themselves.
	wgDrops *prometheus.Desc
	// wgPeer* are per WireGuard peer: the age of its session's handshake
	// (what an operator alerts on: no handshake for over 3 minutes means
	// the session is gone) and the payload bytes each way.
	wgPeerHandshake, wgPeerRx, wgPeerTx *prometheus.Desc
	// uplink are an uplink interface's own counters.
	uplink [uplink.NumCounters]*prometheus.Desc

	// ifaceUp is 1 for an interface whose device works, 0 while it is
	// down (failed, waiting for the device to come back).
	ifaceUp *prometheus.Desc
	// reloadOK and reloadTime are the last reload's outcome and time.
	reloadOK, reloadTime *prometheus.Desc
}

// counterDesc is one counter and where its value comes from.
type counterDesc struct {
	d *prometheus.Desc
	v func(g *Gateway) uint64
}

func counter(name, help string, v func(g *Gateway) uint64) counterDesc {
	return counterDesc{prometheus.NewDesc(name, help, nil, nil), v}
}

func newCollector(g *Gateway) *collector {
	ct := func(name, help string, v func(s *conntrack.Stats) uint64) counterDesc {
		return counter("tungate_conntrack_"+name+"_total", help, func(g *Gateway) uint64 { return v(&g.ct.Stats) })
	}
	c := &collector{
		g:     g,
		drops: prometheus.NewDesc("tungate_dropped_packets_total", "Packets dropped by the datapath, by reason.", []string{"reason"}, nil),
		packets: []counterDesc{
			counter("tungate_received_packets_total", "Packets read from all interfaces.", func(g *Gateway) uint64 { return g.Counters.Received.Load() }),
			counter("tungate_forwarded_packets_total", "Packets forwarded between interfaces.", func(g *Gateway) uint64 { return g.Counters.Forwarded.Load() }),
			counter("tungate_local_packets_total", "Packets addressed to the gateway itself.", func(g *Gateway) uint64 { return g.Counters.Local.Load() }),
			counter("tungate_sent_packets_total", "Packets written to all interfaces.", func(g *Gateway) uint64 { return g.Counters.Sent.Load() }),
			counter("tungate_icmp_sent_packets_total", "ICMP packets the gateway generated (echo replies and errors).", func(g *Gateway) uint64 { return g.Counters.ICMPSent.Load() }),
			counter("tungate_icmp_rate_limited_packets_total", "ICMP errors not sent because of the rate limit.", func(g *Gateway) uint64 { return g.Counters.ICMPLimit.Load() }),
			counter("tungate_synproxy_syn_received_total", "SYNs a synproxy rule answered with a cookie.", func(g *Gateway) uint64 { return g.Counters.SynProxySyn.Load() }),
			counter("tungate_synproxy_cookie_valid_total", "Handshake ACKs that returned a valid SYN cookie.", func(g *Gateway) uint64 { return g.Counters.SynProxyValid.Load() }),
			counter("tungate_synproxy_cookie_invalid_total", "ACKs a synproxy rule took whose cookie was not valid (dropped).", func(g *Gateway) uint64 { return g.Counters.SynProxyInvalid.Load() }),
			counter("tungate_synproxy_conn_open_total", "Proxied connections the server accepted.", func(g *Gateway) uint64 { return g.Counters.SynProxyOpen.Load() }),
			counter("tungate_synproxy_retrans_total", "Handshake segments the proxy sent again (the server's SYN/ACK repeated, the client waiting).", func(g *Gateway) uint64 { return g.Counters.SynProxyRetrans.Load() }),
		},
		ifaces: [4]*prometheus.Desc{
			prometheus.NewDesc("tungate_interface_receive_packets_total", "Packets read from an interface.", []string{"interface"}, nil),
			prometheus.NewDesc("tungate_interface_receive_bytes_total", "Bytes (IP packet lengths) read from an interface.", []string{"interface"}, nil),
			prometheus.NewDesc("tungate_interface_transmit_packets_total", "Packets written to an interface.", []string{"interface"}, nil),
			prometheus.NewDesc("tungate_interface_transmit_bytes_total", "Bytes (IP packet lengths) written to an interface.", []string{"interface"}, nil),
		},
		entries: prometheus.NewDesc("tungate_conntrack_entries", "Connections in the table.", nil, nil),
		max:     prometheus.NewDesc("tungate_conntrack_entries_max", "The table's capacity (conntrack.max).", nil, nil),
		expects: prometheus.NewDesc("tungate_conntrack_expectations", "Expectations waiting for their connection.", nil, nil),
		wgPeerHandshake: prometheus.NewDesc("tungate_wireguard_peer_last_handshake_seconds",
			"Unix time of the peer's latest handshake (0: never).", []string{"interface", "peer"}, nil),
		wgPeerRx: prometheus.NewDesc("tungate_wireguard_peer_receive_bytes_total",
			"Payload bytes received from the peer.", []string{"interface", "peer"}, nil),
		wgPeerTx: prometheus.NewDesc("tungate_wireguard_peer_transmit_bytes_total",
			"Payload bytes sent to the peer.", []string{"interface", "peer"}, nil),
		wgDrops: prometheus.NewDesc("tungate_wireguard_dropped_packets_total", "Packets a WireGuard interface dropped itself, by interface and reason.", []string{"interface", "reason"}, nil),
		perSource: prometheus.NewDesc("tungate_conntrack_per_source_refused_total",
			"New connections refused because their source held per_source_max connections.", nil, nil),
		ct: []counterDesc{
			ct("found", "Tuples found taken when NAT looked for a free one.", func(s *conntrack.Stats) uint64 { return s.Found.Load() }),
			ct("invalid", "Packets conntrack found INVALID.", func(s *conntrack.Stats) uint64 { return s.Invalid.Load() }),
			ct("ignore", "Packets left untracked.", func(s *conntrack.Stats) uint64 { return s.Ignore.Load() }),
			ct("insert", "Connections entered into the table.", func(s *conntrack.Stats) uint64 { return s.Insert.Load() }),
			ct("insert_failed", "Connections that clashed with an existing entry on insert.", func(s *conntrack.Stats) uint64 { return s.InsertFailed.Load() }),
			ct("drop", "NEW packets dropped because the table was full.", func(s *conntrack.Stats) uint64 { return s.Drop.Load() }),
			ct("early_drop", "Connections evicted to make room in a full table.", func(s *conntrack.Stats) uint64 { return s.EarlyDrop.Load() }),
			ct("error", "ICMP errors about no known connection.", func(s *conntrack.Stats) uint64 { return s.Error.Load() }),
			ct("delete", "Connections removed from the table.", func(s *conntrack.Stats) uint64 { return s.Delete.Load() }),
			ct("expect_new", "Connections created from an expectation.", func(s *conntrack.Stats) uint64 { return s.ExpectNew.Load() }),
			ct("expect_create", "Expectations created.", func(s *conntrack.Stats) uint64 { return s.ExpectCreate.Load() }),
			ct("expect_delete", "Expectations removed unused.", func(s *conntrack.Stats) uint64 { return s.ExpectDelete.Load() }),
			ct("events_lost", "Connection events dropped because a subscriber was behind.", func(s *conntrack.Stats) uint64 { return s.EventsLost.Load() }),
		},
		natLive: prometheus.NewDesc("tungate_nat_mappings", "Live NAT port mappings.", nil, nil),
		nat:     map[string]*prometheus.Desc{},

		ifaceUp:    prometheus.NewDesc("tungate_interface_up", "1 when the interface's device works, 0 while it is down.", []string{"interface"}, nil),
		reloadOK:   prometheus.NewDesc("tungate_last_reload_success", "1 when the last reload applied, 0 when it failed or was refused.", nil, nil),
		reloadTime: prometheus.NewDesc("tungate_last_reload_timestamp_seconds", "When the last reload was attempted (Unix time).", nil, nil),
	}
	for name, help := range natHelp {
		c.nat[name] = prometheus.NewDesc("tungate_nat_"+name+"_total", help, nil, nil)
	}
	for i := range c.uplink {
		k := uplink.Counter(i)
		name := "tungate_uplink_" + k.String()
		if !k.IsGauge() {
			name += "_total"
		}
		c.uplink[i] = prometheus.NewDesc(name, "Uplink counter "+k.String()+" (see package link/uplink).", []string{"interface"}, nil)
	}
	return c
}

// natHelp describes the NAT engine's counters (natStats' names; mappings,
// a gauge, apart).
var natHelp = map[string]string{
	"mappings_created": "NAT port mappings made.",
	"snat":             "Connections source-translated.",
	"dnat":             "Connections destination-translated.",
	"netmap":           "Connections translated by netmap rules.",
	"hairpin":          "Connections source-translated for hairpinning.",
	"eif_admitted":     "Inbound connections admitted to a mapping by endpoint-independent filtering.",
	"port_exhausted":   "NEW packets dropped because no port was free.",
	"no_address":       "NEW packets dropped because the masquerade interface had no address of their family.",
	"clash":            "NEW packets dropped because their translated tuple was taken.",
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.drops
	for _, p := range c.packets {
		ch <- p.d
	}
	for _, d := range c.ifaces {
		ch <- d
	}
	ch <- c.ifaceUp
	ch <- c.reloadOK
	ch <- c.reloadTime
	ch <- c.entries
	ch <- c.max
	ch <- c.expects
	ch <- c.perSource
	for _, d := range c.ct {
		ch <- d.d
	}
	ch <- c.natLive
	for _, d := range c.nat {
		ch <- d
	}
	ch <- c.wgDrops
	ch <- c.wgPeerHandshake
	ch <- c.wgPeerRx
	ch <- c.wgPeerTx
	for _, d := range c.uplink {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	g := c.g
	k := &g.Counters
	for i := range k.Drops {
		ch <- prometheus.MustNewConstMetric(c.drops, prometheus.CounterValue, float64(k.Drops[i].Load()), DropReason(i).String())
	}
	for _, p := range c.packets {
		ch <- prometheus.MustNewConstMetric(p.d, prometheus.CounterValue, float64(p.v(g)))
	}
	links := g.Links()
	for _, l := range links {
		lc := l.st.ctr.snapshot()
		for j, v := range [4]uint64{lc.RxPackets, lc.RxBytes, lc.TxPackets, lc.TxBytes} {
			ch <- prometheus.MustNewConstMetric(c.ifaces[j], prometheus.CounterValue, float64(v), l.Name)
		}
		up := 1.0
		if !l.Up() {
			up = 0
		}
		ch <- prometheus.MustNewConstMetric(c.ifaceUp, prometheus.GaugeValue, up, l.Name)
	}
	if r := g.LastReload(); r != nil {
		ok := 1.0
		if r.Err != nil {
			ok = 0
		}
		ch <- prometheus.MustNewConstMetric(c.reloadOK, prometheus.GaugeValue, ok)
		ch <- prometheus.MustNewConstMetric(c.reloadTime, prometheus.GaugeValue, float64(r.Time.UnixNano())/1e9)
	}
	for _, l := range links {
		wl, ok := l.Dev.(*wireguard.Link)
		if !ok {
			continue
		}
		st := wl.Stats()
		for reason, v := range map[string]uint64{
			"no_peer": st.NoPeer, "malformed": st.Malformed, "tx_queue_full": st.TxQueueFull,
			"rx_queue_full": st.RxQueueFull, "rx_too_big": st.RxTooBig, "spoofed_source": st.SpoofedSource,
			"garbage": st.Garbage, "handshake_bad_mac": st.HandshakeBadMAC, "handshake_under_load": st.HandshakeUnderLoad,
		} {
			ch <- prometheus.MustNewConstMetric(c.wgDrops, prometheus.CounterValue, float64(v), l.Name, reason)
		}
		peers, err := wl.PeerStats()
		if err != nil {
			continue
		}
		for _, p := range peers {
			hs := 0.0
			if !p.LastHandshake.IsZero() {
				hs = float64(p.LastHandshake.UnixNano()) / 1e9
			}
			ch <- prometheus.MustNewConstMetric(c.wgPeerHandshake, prometheus.GaugeValue, hs, l.Name, p.Name)
			ch <- prometheus.MustNewConstMetric(c.wgPeerRx, prometheus.CounterValue, float64(p.RxBytes), l.Name, p.Name)
			ch <- prometheus.MustNewConstMetric(c.wgPeerTx, prometheus.CounterValue, float64(p.TxBytes), l.Name, p.Name)
		}
	}
	ch <- prometheus.MustNewConstMetric(c.entries, prometheus.GaugeValue, float64(g.ct.Count()))
	ch <- prometheus.MustNewConstMetric(c.max, prometheus.GaugeValue, float64(g.ct.Config().Max))
	ch <- prometheus.MustNewConstMetric(c.expects, prometheus.GaugeValue, float64(g.ct.ExpectationCount()))
	for _, d := range c.ct {
		ch <- prometheus.MustNewConstMetric(d.d, prometheus.CounterValue, float64(d.v(g)))
	}
	for name, v := range natStats(g.nat.Stats()) {
		if name == "mappings" {
			ch <- prometheus.MustNewConstMetric(c.natLive, prometheus.GaugeValue, float64(v))
		} else if d := c.nat[name]; d != nil {
			ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v))
		}
	}
	if l := c.g.srcLimit; l != nil {
		ch <- prometheus.MustNewConstMetric(c.perSource, prometheus.CounterValue, float64(l.Refused.Load()))
	}
	for _, l := range links {
		u, ok := l.Dev.(*uplink.Link)
		if !ok {
			continue
		}
		for i, v := range u.Stats() {
			t := prometheus.CounterValue
			if uplink.Counter(i).IsGauge() {
				t = prometheus.GaugeValue
			}
			ch <- prometheus.MustNewConstMetric(c.uplink[i], t, float64(v), l.Name)
		}
	}
}

// ServeMetrics serves Prometheus metrics on addr (/metrics) until the
// gateway closes, and returns the address it listens on.
func (g *Gateway) ServeMetrics(addr string) (net.Addr, error) {
	reg := prometheus.NewRegistry()
	// The Go runtime's and the process's own metrics (go_goroutines,
	// process_resident_memory_bytes, process_open_fds) are what a soak
	// watches for leaks; they cost nothing until scraped.
	reg.MustRegister(newCollector(g), newStateCollector(g), newOpsCollector(g), collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("admin.metrics: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux}
	g.adminMu.Lock()
	g.adminLn = append(g.adminLn, ln)
	g.adminMu.Unlock()
	go func() {
		if err := srv.Serve(ln); err != nil && err != http.ErrServerClosed && !g.closed.Load() {
			g.log.Warn("metrics server", zap.Error(err))
		}
	}()
	return ln.Addr(), nil
}

// natStats flattens the NAT engine's counters for stats and metrics.
func natStats(s nat.Stats) map[string]uint64 {
	return map[string]uint64{
		"mappings": s.Mappings, "mappings_created": s.MappingsCreated,
		"snat": s.SNAT, "dnat": s.DNAT, "netmap": s.Netmap, "hairpin": s.Hairpin,
		"eif_admitted": s.EIFAdmitted, "port_exhausted": s.PortExhausted,
		"no_address": s.NoAddress, "clash": s.Clash,
	}
}
