//go:build linux

package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// edgeFloodConfig: a container (10.0.2.100, fd00::100) behind an uplink
// with port forwards, in a namespace of the test's own whose loopback
// holds the clients' addresses. 9999 forwards to an address nobody
// answers, so its connections wait in the uplink until dial_timeout.
// max_flows is small so that a flood that could take it would show;
// max_forwards_per_source is left to follow per_source_max.
const edgeFloodConfig = `[log]
level = "info"

[admin]
socket = "%s"
metrics = ""

[[interface]]
name = "lan"
tun = "{{LAN}}"
addresses = ["10.0.2.1/24", "fd00::1/64"]

[[interface]]
name = "wan"
kind = "uplink"
max_flows = 512
dial_timeout = "20s"

[[route]]
to = "0.0.0.0/0"
interface = "wan"
[[route]]
to = "::/0"
interface = "wan"

[conntrack]
per_source_max = {{MAX}}

[[nat.dnat]]
in = "wan"
proto = "tcp"
dport = 8080
to = "10.0.2.100:8080"
[[nat.dnat]]
in = "wan"
proto = "tcp"
dport = 8080
to = "[fd00::100]:8080"
[[nat.dnat]]
in = "wan"
proto = "tcp"
dport = 5201
to = "10.0.2.100:5201"
[[nat.dnat]]
in = "wan"
proto = "tcp"
dport = 9999
to = "10.0.2.200:9"
[[nat.dnat]]
in = "wan"
proto = "udp"
dport = 7777
to = "10.0.2.100:7"
[[nat.dnat]]
in = "wan"
proto = "udp"
dport = 7777
to = "[fd00::100]:7"

[filter.forward]
policy = "drop"
rules = [
  { ct_state = ["established", "related"], action = "accept" },
  { ct_state = ["invalid"], action = "drop" },
  { in = "lan", ct_state = ["new"], action = "accept" },
  { in = "wan", ct_status = ["dnat"], action = "accept" },
]
`

// udpEcho is a dual-stack UDP echo server on port 7.
const udpEcho = `
import socket
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.bind(("::", 7))
while True:
    b, a = s.recvfrom(2048)
    s.sendto(b, a)
`

// edgeRig is a gateway with an uplink in namespace h (the "host": the
// forwards listen there, the clients connect from addresses on its
// loopback) and the container in namespace c.
type edgeRig struct {
	g    *gateway
	h, c string
	max  int
}

// The clients' addresses on h's loopback: a flooder per flood, and the
// legitimate ones.
const (
	efTCPFlooder = "192.0.2.10"
	efUDPFlooder = "2001:db8::11"
	efLegit4     = "192.0.2.20"
	efLegit6     = "2001:db8::20"
	efBulk       = "192.0.2.30"
)

// efRates are the floods' rates: each connection flood's (2,000
// connections a second at two forwards, each a full handshake the host
// kernel makes and tungate accepts and resets; the flooder, the kernel
// and tungate then share the machine's two cores with the established
// flow) and the UDP flood's datagrams a second. A race-instrumented
// gateway is ten times slower: a quarter of them, and no throughput or
// memory bound.
func efRates() (conn, udp string) {
	if raceEnabled {
		return "500", "5000"
	}
	return "2000", "20000"
}

func newEdgeRig(t *testing.T, tag string, max int) *edgeRig {
	t.Helper()
	needNetAdmin(t)
	needTools(t, "curl", "iperf3", "ip")
	bin := gatewayBinary(t)
	n := newNames(tag)
	r := &edgeRig{h: n.get("h"), c: n.get("c"), max: max}
	lan := n.get("l")
	addNetns(t, r.h)
	addNetns(t, r.c)
	mustRun(t, "ip", "-n", r.h, "link", "set", "lo", "up")
	for _, a := range []string{efTCPFlooder, efLegit4, efBulk} {
		mustRun(t, "ip", "-n", r.h, "addr", "add", a+"/32", "dev", "lo")
	}
	for _, a := range []string{efUDPFlooder, efLegit6} {
		mustRun(t, "ip", "-n", r.h, "-6", "addr", "add", a+"/128", "dev", "lo")
	}
	conf := strings.NewReplacer("{{LAN}}", lan, "{{MAX}}", strconv.Itoa(max)).Replace(edgeFloodConfig)
	r.g = startGateway(t, bin, workDir(t, -1), gatewaySpec{
		cfg:  gwConfig{Raw: conf},
		tuns: []string{lan},
		argv: func(gw []string) []string { return inNS(r.h, gw...) },
	})
	r.g.netns = inNS(r.h)
	for _, st := range [][]string{
		{"-n", r.h, "link", "set", lan, "netns", r.c},
		{"-n", r.c, "link", "set", "lo", "up"},
		{"-n", r.c, "addr", "add", "10.0.2.100/24", "dev", lan},
		{"-n", r.c, "-6", "addr", "add", "fd00::100/64", "dev", lan, "nodad"},
		{"-n", r.c, "link", "set", lan, "up"},
		{"-n", r.c, "route", "add", "default", "via", "10.0.2.1", "dev", lan},
		{"-n", r.c, "-6", "route", "add", "default", "via", "fd00::1", "dev", lan},
	} {
		mustRun(t, append([]string{"ip"}, st...)...)
	}
	startHTTPServer(t, r.c, t.TempDir())
	startBackground(t, inNS(r.c, "iperf3", "-s", "-p", "5201")...)
	startBackground(t, inNS(r.c, python(), "-c", udpEcho)...)
	waitFor(t, 10*time.Second, "iperf3 and the echo server in the container", func() (bool, string) {
		out, _ := run(cmdTimeout, inNS(r.c, "ss", "-Hlnu", "sport", "=", ":7")...)
		tcp, _ := run(cmdTimeout, inNS(r.c, "ss", "-Hlnt", "sport", "=", ":5201")...)
		return strings.TrimSpace(out) != "" && strings.TrimSpace(tcp) != "", out + tcp
	})
	return r
}

// fetch is one GET of /peer through the 8080 forward from client addr:
// the address the container saw, and how long the whole exchange took
// (the host kernel accepts at once; the time is tungate's connect into
// the container and the answer).
func (r *edgeRig) fetch(addr string) (string, float64, error) {
	host := addr
	if strings.Contains(addr, ":") {
		host = "[" + addr + "]"
	}
	out, err := run(20*time.Second, inNS(r.h, "curl", "-sS", "-g", "--max-time", "10", "--interface", addr,
		"-w", "\n%{time_total}", "http://"+host+":8080/peer")...)
	if err != nil {
		return "", 0, fmt.Errorf("%v: %s", err, out)
	}
	lines := strings.Fields(out)
	if len(lines) != 2 {
		return "", 0, fmt.Errorf("curl printed %q", out)
	}
	s, err := strconv.ParseFloat(lines[1], 64)
	return lines[0], s, err
}

// fetches makes n fetches from each legitimate address, failing the test
// on any that does not arrive with the client's own address; it returns
// the times by address.
func (r *edgeRig) fetches(t *testing.T, n int, when string) map[string][]float64 {
	t.Helper()
	times := map[string][]float64{}
	for range n {
		for _, a := range []string{efLegit4, efLegit6} {
			peer, s, err := r.fetch(a)
			if err != nil || peer != a {
				t.Fatalf("%s: GET /peer from %s through the forward: %q, %v; want %s", when, a, peer, err, a)
			}
			times[a] = append(times[a], s)
		}
	}
	return times
}

// iperf runs iperf3 for secs seconds from the bulk client through the
// 5201 forward and returns its receiver's bits per second.
func (r *edgeRig) iperf(t *testing.T, secs int) float64 {
	t.Helper()
	out, err := run(time.Duration(secs+30)*time.Second, inNS(r.h, "iperf3", "-c", efBulk, "-B", efBulk, "-p", "5201",
		"-t", strconv.Itoa(secs), "-J")...)
	if err != nil {
		t.Fatalf("iperf3 through the forward: %v\n%s", err, out)
	}
	_, bps, err := iperfIntervals(out)
	if err != nil {
		t.Fatal(err)
	}
	return bps
}

// fds is how many descriptors the gateway holds.
func (r *edgeRig) fds(t *testing.T) int {
	t.Helper()
	es, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", r.g.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	return len(es)
}

// entriesFrom counts the table's connections from src (ct list).
func (r *edgeRig) entriesFrom(t *testing.T, src string) int {
	t.Helper()
	out, err := r.g.ctl("ct", "list")
	if err != nil {
		t.Fatalf("ct list: %v\n%s", err, out)
	}
	n := 0
	for _, l := range strings.Split(out, "\n") {
		// The first src= of a line is the original direction's.
		if i := strings.Index(l, "src="); i >= 0 && strings.HasPrefix(l[i:], "src="+src+" ") {
			n++
		}
	}
	return n
}

func medianOf(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return s[len(s)/2]
}

// TestUplinkForwardFlood: connection floods from one client address at
// two TCP port forwards (one whose container answers, one whose
// connections wait for dial_timeout), then a UDP flood from 2,000 source
// ports of another at a UDP forward. The flooding client is bounded
// (max_forwards_per_source host connections, per_source_max table
// entries; the rest reset or dropped and counted), the host socket budget
// (max_flows) is never exhausted, other clients' new connections and
// datagrams get through over IPv4 and IPv6, an established iperf3 flow
// keeps a share of its throughput, and memory stays bounded. Without the
// per-source cap the flood takes all of max_flows within a second and the
// other clients are reset.
func TestUplinkForwardFlood(t *testing.T) {
	const max = 64
	r := newEdgeRig(t, "ef", max)
	fg := floodgen(t)

	fetches := 5
	if raceEnabled {
		fetches = 2
	}
	base := r.fetches(t, fetches, "before the flood")
	baseBPS := r.iperf(t, edgeSecs())
	rss0, fds0 := r.g.rss(t), r.fds(t)

	connRate, udpRate := efRates()
	refused := uint64(1000)
	if raceEnabled {
		refused = 250
	}
	flood := func(port1, port2 string) []*background {
		return []*background{
			startBackground(t, inNS(r.h, fg, "connect", "-from", efTCPFlooder, "-to", efTCPFlooder+":"+port1, "-hold", "2000", "-rate", connRate, "-d", "60s")...),
			startBackground(t, inNS(r.h, fg, "connect", "-from", efTCPFlooder, "-to", efTCPFlooder+":"+port2, "-hold", "2000", "-rate", connRate, "-d", "60s")...),
		}
	}
	// The reference: the same flood at a listener of the test's own in
	// the same namespace that resets every connection at once, which is
	// what the flood costs the machine (the flooder and the kernel's
	// handshakes) without tungate. The established flow's share under
	// it is what tungate's share is compared with, on a shared machine.
	// Not with a race-instrumented gateway, whose throughput means
	// nothing.
	refBPS := 0.0
	if !raceEnabled {
		refBPS = r.referenceFlood(t, flood)
	}
	floods := flood("8080", "9999")
	waitFor(t, 20*time.Second, "the flooder at its cap and refused beyond", func() (bool, string) {
		st := r.g.statsJSON(t, "stats")
		return st["uplink_wan_drop_forward_source"] > refused, fmt.Sprint(st["uplink_wan_drop_forward_source"], " refused so far")
	})
	during := r.fetches(t, fetches, "during the connection flood")
	floodBPS := r.iperf(t, edgeSecs())
	rss1, fds1 := r.g.rss(t), r.fds(t)
	held := r.entriesFrom(t, efTCPFlooder)
	st := r.g.statsJSON(t, "stats")
	for _, f := range floods {
		f.stop()
	}
	var res []connectResult
	for _, f := range floods {
		var c connectResult
		out := f.output()
		if err := json.Unmarshal([]byte(out[strings.IndexByte(out, '{'):]), &c); err != nil {
			t.Fatalf("floodgen connect: %v\n%s", err, out)
		}
		res = append(res, c)
	}

	for _, a := range []string{efLegit4, efLegit6} {
		mb, md := medianOf(base[a]), medianOf(during[a])
		t.Logf("FIGURE uplink GET through a forward from %s: median %.1f ms alone, %.1f ms under the connection flood", a, mb*1e3, md*1e3)
		// A legitimate connection waits in the listener's accept queue
		// behind the flood's (the host kernel completes every handshake;
		// tungate accepts them in order and resets the flooder's): up to
		// a second seen at load average 29. Generous for a loaded
		// two-core machine; a client reset for a lack of host sockets
		// fails above instead.
		if md > mb+3 && !raceEnabled {
			t.Errorf("%s: median %.2f s under the flood, %.2f s alone", a, md, mb)
		}
	}
	if raceEnabled {
		refBPS = floodBPS // not measured
	}
	t.Logf("FIGURE uplink iperf3 through a forward: %.2f Gbit/s alone, %.2f under the flood at the reference listener, %.2f under the flood at the forwards (%.2f of the reference's); flooder: %d+%d connects accepted by the host kernel in %.0f s",
		baseBPS/1e9, refBPS/1e9, floodBPS/1e9, floodBPS/refBPS, res[0].Connected, res[1].Connected, res[0].Seconds)
	// Generous: one iperf3 run of each on a machine shared with others
	// (0.27 to 0.55 seen at load averages 18 to 29); a collapse fails.
	if !raceEnabled && floodBPS < 0.15*refBPS {
		t.Errorf("the established flow kept %.2f of its reference throughput under the flood, want at least 0.15", floodBPS/refBPS)
	}
	if held > max {
		t.Errorf("the flooder holds %d table entries, over per_source_max %d", held, max)
	}
	if st["uplink_wan_drop_budget"] != 0 {
		t.Errorf("max_flows was reached %d times: one client took the host socket budget", st["uplink_wan_drop_budget"])
	}
	// The flooder's connections each hold one host socket at most.
	if fds1 > fds0+max+32 {
		t.Errorf("the gateway holds %d descriptors under the flood, %d before: more than the cap of %d", fds1, fds0, max)
	}
	if !raceEnabled && rss1 > rss0+64<<20 {
		t.Errorf("RSS grew from %d MiB to %d MiB under the flood", rss0>>20, rss1>>20)
	}
	t.Logf("FIGURE uplink under the connection flood: %d descriptors (%d before), RSS %d MiB (%d before), %d resets for the per-source cap",
		fds1, fds0, rss1>>20, rss0>>20, st["uplink_wan_drop_forward_source"])
	if !strings.Contains(r.g.logText(), "max_forwards_per_source") {
		t.Error("no warning about max_forwards_per_source in the log")
	}

	// The UDP flood: every source port a new flow for the table, from one
	// IPv6 client; others' datagrams are still echoed.
	before := r.g.statsJSON(t, "stats")
	udp := startBackground(t, inNS(r.h, fg, "udpports", "-from", efUDPFlooder, "-to", "["+efUDPFlooder+"]:7777",
		"-ports", "2000", "-rate", udpRate, "-d", "30s")...)
	waitFor(t, 20*time.Second, "the UDP flooder refused beyond per_source_max", func() (bool, string) {
		n := r.g.statsJSON(t, "stats")["drop_per_source"] - before["drop_per_source"]
		return n > refused, fmt.Sprint(n, " per_source drops")
	})
	for _, a := range []string{efLegit4, efLegit6} {
		r.echo(t, a)
	}
	if n := r.entriesFrom(t, efUDPFlooder); n > max {
		t.Errorf("the UDP flooder holds %d table entries, over per_source_max %d", n, max)
	}
	if _, _, err := r.fetch(efLegit4); err != nil {
		t.Errorf("GET through the TCP forward during the UDP flood: %v", err)
	}
	udp.stop()
	if s := r.g.logText(); strings.Contains(s, "panic") {
		t.Errorf("the gateway's log shows a panic:\n%s", s)
	}
	select {
	case <-r.g.exited:
		t.Fatalf("the gateway exited: %v", r.g.waitErr)
	default:
	}
}

// connectResult is floodgen connect's output.
type connectResult struct {
	Attempts, Connected, Failed, Held int64
	Seconds                           float64
}

// echo sends datagrams from client addr through the UDP forward until one
// comes back (a flood may cost a few), failing the test after 10 s.
func (r *edgeRig) echo(t *testing.T, addr string) {
	t.Helper()
	a := netip.MustParseAddr(addr)
	var c *net.UDPConn
	inNetns(t, r.h, func() {
		var err error
		c, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(a, 0)))
		if err != nil {
			t.Fatal(err)
		}
	})
	defer c.Close()
	to := netip.AddrPortFrom(a, 7777)
	want := "echo from " + addr
	deadline := time.Now().Add(10 * time.Second)
	buf := make([]byte, 256)
	for time.Now().Before(deadline) {
		if _, err := c.WriteToUDPAddrPort([]byte(want), to); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		n, _, err := c.ReadFromUDPAddrPort(buf)
		if err == nil && string(buf[:n]) == want {
			return
		}
	}
	t.Errorf("no echo through the UDP forward for %s within 10 s of the flood", addr)
}

// referenceFlood runs flood at port 8081, a listener of the test's own
// that resets every connection, and returns the established flow's
// throughput meanwhile.
func (r *edgeRig) referenceFlood(t *testing.T, flood func(port1, port2 string) []*background) float64 {
	t.Helper()
	var ref net.Listener
	inNetns(t, r.h, func() {
		var err error
		if ref, err = net.Listen("tcp", "[::]:8081"); err != nil {
			t.Fatal(err)
		}
	})
	go func() {
		for {
			c, err := ref.Accept()
			if err != nil {
				return
			}
			c.(*net.TCPConn).SetLinger(0)
			c.Close()
		}
	}()
	floods := flood("8081", "8081")
	waitFor(t, 20*time.Second, "the reference flood under way", func() (bool, string) {
		out, _ := run(cmdTimeout, inNS(r.h, "nstat", "-az", "TcpPassiveOpens")...)
		f := strings.Fields(grepLine(out, "TcpPassiveOpens"))
		n := 0
		if len(f) > 1 {
			n, _ = strconv.Atoi(f[1])
		}
		return n > 2000, out
	})
	bps := r.iperf(t, edgeSecs())
	for _, f := range floods {
		f.stop()
	}
	ref.Close()
	return bps
}
