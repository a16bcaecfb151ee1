// Package admintest runs an in-process gateway for the control plane's
// tests: its links are in-memory TCP/IP hosts (gVisor netstack via
// wireguard-go), so tests make real connections through it and talk to it
// over a real admin socket. Only tests import it.
package admintest

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"golang.zx2c4.com/wireguard/tun"
	"golang.zx2c4.com/wireguard/tun/netstack"

	"tungate/conntrack"
	"tungate/gateway"
	"tungate/link"
	"tungate/packet"
)

// Config is two links, lan (10.10.0.1/24, fd10::1/64) and wan
// (198.18.0.1/24, 2001:db8:1::1/64), default routes out of wan,
// masquerade on wan, a stateful forward policy and the FTP helper.
const Config = `
[conntrack]
max = 4096

[[interface]]
name = "lan"
tun = "lan0"
addresses = ["10.10.0.1/24", "fd10::1/64"]

[[interface]]
name = "wan"
tun = "wan0"
addresses = ["198.18.0.1/24", "2001:db8:1::1/64"]

[[route]]
to = "0.0.0.0/0"
interface = "wan"
[[route]]
to = "::/0"
interface = "wan"

[[nat.masquerade]]
out = "wan"
src = ["10.10.0.0/24"]

[helpers.ftp]
ports = [21]

[filter.forward]
policy = "drop"
rules = [
  { ct_state = ["established", "related"], action = "accept" },
  { in = "lan", ct_state = ["new"], action = "accept" },
]
`

// Host is an in-memory TCP/IP host on the far side of one gateway link.
type Host struct {
	Net *netstack.Net
	dev *hostDev
}

// hostDev is the gateway's side of a host link. The netstack device is
// never closed (its timers write after Close and wireguard-go panics
// then); a pump drains it for good and Close only ends the gateway's reads.
type hostDev struct {
	tun.Device
	from chan []byte
	done chan struct{}
	once sync.Once
}

// NewHost creates a host with the given addresses (default routes via its
// link).
func NewHost(t testing.TB, addrs ...string) *Host {
	t.Helper()
	var as []netip.Addr
	for _, a := range addrs {
		as = append(as, netip.MustParseAddr(a))
	}
	dev, n, err := netstack.CreateNetTUN(as, nil, 1500)
	if err != nil {
		t.Fatal(err)
	}
	d := &hostDev{Device: dev, from: make(chan []byte, 256), done: make(chan struct{})}
	go func() {
		bufs := [][]byte{make([]byte, 65535)}
		sizes := []int{0}
		for {
			k, err := dev.Read(bufs, sizes, 0)
			if err != nil {
				return
			}
			if k == 1 {
				select {
				case d.from <- append([]byte(nil), bufs[0][:sizes[0]]...):
				case <-d.done:
				}
			}
		}
	}()
	return &Host{Net: n, dev: d}
}

func (d *hostDev) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	select {
	case b := <-d.from:
		sizes[0] = copy(bufs[0][offset:], b)
		return 1, nil
	case <-d.done:
		return 0, os.ErrClosed
	}
}

func (d *hostDev) BatchSize() int { return 1 }

func (d *hostDev) Close() error {
	d.once.Do(func() { close(d.done) })
	return nil
}

// Gateway loads conf (written to a file in a temporary directory, so
// reload works; the file's path is returned) and runs a gateway whose
// interfaces are, in order, the given hosts. It stops when the test ends.
func Gateway(t testing.TB, conf string, hosts ...*Host) (*gateway.Gateway, string) {
	t.Helper()
	return GatewayOptions(t, conf, gateway.Options{}, hosts...)
}

// GatewayOptions is Gateway with options (a clock); their Open and Logger
// are set here.
func GatewayOptions(t testing.TB, conf string, opt gateway.Options, hosts ...*Host) (*gateway.Gateway, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "gw.toml")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := gateway.LoadConfig(path)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	i := 0
	opt.Logger = zap.NewNop()
	opt.Open = func(ic *gateway.InterfaceConfig, log *zap.Logger) (link.Link, error) {
		d := hosts[i].dev
		i++
		return link.FromTUN(d), nil
	}
	g, err := gateway.New(cfg, opt)
	if err != nil {
		t.Fatalf("gateway: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("gateway Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("gateway did not stop")
		}
	})
	return g, path
}

// TwoLinks runs Config with a client on lan (10.10.0.2, fd10::2) and a
// server on wan (198.18.0.2, 2001:db8:1::2).
func TwoLinks(t testing.TB) (client, server *Host, g *gateway.Gateway, path string) {
	client = NewHost(t, "10.10.0.2", "fd10::2")
	server = NewHost(t, "198.18.0.2", "2001:db8:1::2")
	g, path = Gateway(t, Config, client, server)
	return client, server, g, path
}

// nullDev is a device that never delivers a packet.
type nullDev struct {
	tun.Device
	done chan struct{}
	once sync.Once
}

func (d *nullDev) Read([][]byte, []int, int) (int, error) { <-d.done; return 0, os.ErrClosed }
func (d *nullDev) Write(b [][]byte, _ int) (int, error)   { return len(b), nil }
func (d *nullDev) BatchSize() int                         { return 1 }
func (d *nullDev) MTU() (int, error)                      { return 1500, nil }
func (d *nullDev) Events() <-chan tun.Event               { return nil }
func (d *nullDev) Close() error                           { d.once.Do(func() { close(d.done) }); return nil }

// NullGateway builds (does not run) a gateway on Config's two links with
// devices that carry nothing and a table of max entries, for tests that
// fill the table themselves.
func NullGateway(t testing.TB, max int) *gateway.Gateway {
	t.Helper()
	cfg, err := gateway.ParseConfig([]byte(Config))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Conntrack.Max = max
	g, err := gateway.New(cfg, gateway.Options{Logger: zap.NewNop(),
		Open: func(*gateway.InterfaceConfig, *zap.Logger) (link.Link, error) {
			return link.FromTUN(&nullDev{done: make(chan struct{})}), nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	return g
}

// Conn describes a connection to insert with Insert.
type Conn struct {
	Src, Dst     string // addresses (original direction)
	Sport, Dport uint16
	Proto        uint8
	// ReplySrc, ReplyDst and ReplyDport make a NATed reply tuple; empty
	// or zero: the plain inverse.
	ReplySrc, ReplyDst string
	ReplyDport         uint16
	Status             conntrack.Status
	Mark               uint32
	Timeout            time.Duration // default one hour
}

// Insert confirms a connection made from c in table t, as the datapath
// would, and returns it.
func Insert(t testing.TB, tab *conntrack.Table, c Conn) *conntrack.Conn {
	t.Helper()
	s, d := netip.MustParseAddr(c.Src), netip.MustParseAddr(c.Dst)
	fam := uint8(4)
	if s.Is6() {
		fam = 6
	}
	tu := conntrack.Tuple{Src: packet.AddrFrom(s), Dst: packet.AddrFrom(d), SrcPort: c.Sport, DstPort: c.Dport, Proto: c.Proto, Family: fam}
	to := c.Timeout
	if to == 0 {
		to = time.Hour
	}
	now := tab.Now()
	cn := tab.NewUnconfirmed(tu, now, to)
	if c.ReplySrc != "" || c.ReplyDst != "" || c.ReplyDport != 0 {
		r := *cn.Tuple(conntrack.DirReply)
		if c.ReplySrc != "" {
			r.Src = packet.AddrFrom(netip.MustParseAddr(c.ReplySrc))
		}
		if c.ReplyDst != "" {
			r.Dst = packet.AddrFrom(netip.MustParseAddr(c.ReplyDst))
		}
		if c.ReplyDport != 0 {
			r.DstPort = c.ReplyDport
		}
		cn.SetReplyTuple(r)
	}
	cn.SetStatus(c.Status)
	cn.SetMark(c.Mark)
	if err := tab.Confirm(cn, now); err != nil {
		t.Fatalf("confirm %+v: %v", c, err)
	}
	return cn
}
