package gateway

import (
	"fmt"
	"net"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"tungate/link/wireguard"
	"tungate/nat"
)

// collector exports the datapath and conntrack counters at scrape time, so
// the datapath keeps its plain atomic counters and pays nothing for metrics.
type collector struct {
	g       *Gateway
	drops   *prometheus.Desc
	packets *prometheus.Desc
	entries *prometheus.Desc
	ctStat  *prometheus.Desc
	nat     *prometheus.Desc
	wgDrops *prometheus.Desc
}

func newCollector(g *Gateway) *collector {
	return &collector{
		g:       g,
		drops:   prometheus.NewDesc("tungate_dropped_packets_total", "Packets dropped by the datapath, by reason.", []string{"reason"}, nil),
		packets: prometheus.NewDesc("tungate_packets_total", "Packets seen by the datapath, by stage.", []string{"stage"}, nil),
		entries: prometheus.NewDesc("tungate_conntrack_entries", "Connections in the table.", nil, nil),
		ctStat:  prometheus.NewDesc("tungate_conntrack_events_total", "Conntrack counters as conntrack -S names them.", []string{"counter"}, nil),
		nat:     prometheus.NewDesc("tungate_nat", "NAT engine counters (mappings is a gauge of live mappings).", []string{"counter"}, nil),
		wgDrops: prometheus.NewDesc("tungate_wireguard_dropped_packets_total", "Packets a WireGuard interface dropped itself, by interface and reason.", []string{"interface", "reason"}, nil),
	}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.drops
	ch <- c.packets
	ch <- c.entries
	ch <- c.ctStat
	ch <- c.nat
	ch <- c.wgDrops
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	k := &c.g.Counters
	for i := range k.Drops {
		ch <- prometheus.MustNewConstMetric(c.drops, prometheus.CounterValue, float64(k.Drops[i].Load()), DropReason(i).String())
	}
	for name, v := range map[string]uint64{
		"received": k.Received.Load(), "forwarded": k.Forwarded.Load(), "local": k.Local.Load(),
		"sent": k.Sent.Load(), "icmp_sent": k.ICMPSent.Load(), "icmp_rate_limited": k.ICMPLimit.Load(),
	} {
		ch <- prometheus.MustNewConstMetric(c.packets, prometheus.CounterValue, float64(v), name)
	}
	for _, l := range c.g.links {
		wl, ok := l.Dev.(*wireguard.Link)
		if !ok {
			continue
		}
		st := wl.Stats()
		for reason, v := range map[string]uint64{
			"no_peer": st.NoPeer, "malformed": st.Malformed, "tx_queue_full": st.TxQueueFull,
			"rx_queue_full": st.RxQueueFull, "rx_too_big": st.RxTooBig,
		} {
			ch <- prometheus.MustNewConstMetric(c.wgDrops, prometheus.CounterValue, float64(v), l.Name, reason)
		}
	}
	ch <- prometheus.MustNewConstMetric(c.entries, prometheus.GaugeValue, float64(c.g.ct.Count()))
	for name, v := range natStats(c.g.nat.Stats()) {
		ch <- prometheus.MustNewConstMetric(c.nat, prometheus.CounterValue, float64(v), name)
	}
	s := &c.g.ct.Stats
	for name, v := range map[string]uint64{
		"invalid": s.Invalid.Load(), "insert": s.Insert.Load(), "insert_failed": s.InsertFailed.Load(),
		"drop": s.Drop.Load(), "early_drop": s.EarlyDrop.Load(), "expect_new": s.ExpectNew.Load(),
		"expect_create": s.ExpectCreate.Load(), "expect_delete": s.ExpectDelete.Load(), "delete": s.Delete.Load(),
	} {
		ch <- prometheus.MustNewConstMetric(c.ctStat, prometheus.CounterValue, float64(v), name)
	}
}

// ServeMetrics serves Prometheus metrics on addr (/metrics) until the
// gateway closes, and returns the address it listens on.
func (g *Gateway) ServeMetrics(addr string) (net.Addr, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(newCollector(g))
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
