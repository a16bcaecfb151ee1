package gateway

import (
	"context"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"golang.zx2c4.com/wireguard/tun"
	"golang.zx2c4.com/wireguard/tun/netstack"

	"tungate/link"
)

// host is an in-memory TCP/IP host (gVisor netstack) on the far side of one
// of the gateway's links. The gateway reads what the host sends and writes
// into it; the test can also inject raw packets towards the gateway and
// watch every packet the gateway delivers to the host.
type host struct {
	Net *netstack.Net
	dev *tapDev
}

// tapDev is the gateway's side of a host link.
type tapDev struct {
	tun.Device
	from   chan []byte
	inject chan []byte
	done   chan struct{}
	once   sync.Once

	mu    sync.Mutex // guards watch and drop
	watch []func([]byte) bool
	// drop, when set, filters what reaches the host: a firewall in front
	// of it (e.g. one that drops ICMP).
	drop func([]byte) bool
	// mute, when set, keeps what it matches from the host's stack after
	// the watchers saw it: a flow the test plays by hand, which the
	// stack (no socket has it) would answer with resets.
	mute func([]byte) bool
}

func newHost(t *testing.T, mtu int, addrs ...string) *host {
	t.Helper()
	var as []netip.Addr
	for _, a := range addrs {
		as = append(as, netip.MustParseAddr(a))
	}
	dev, n, err := netstack.CreateNetTUN(as, nil, mtu)
	if err != nil {
		t.Fatal(err)
	}
	d := &tapDev{Device: dev, from: make(chan []byte, 256), inject: make(chan []byte, 16), done: make(chan struct{})}
	// The pump outlives the test on purpose: wireguard-go's netstack TUN
	// panics when its stack writes after Close (timers still fire), so the
	// stack is never closed and its output is drained for good.
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
	return &host{Net: n, dev: d}
}

func (d *tapDev) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	select {
	case b := <-d.from:
		sizes[0] = copy(bufs[0][offset:], b)
	case b := <-d.inject:
		sizes[0] = copy(bufs[0][offset:], b)
	case <-d.done:
		return 0, os.ErrClosed
	}
	return 1, nil
}

func (d *tapDev) Write(bufs [][]byte, offset int) (int, error) {
	d.mu.Lock()
	if keep, ok := filterOut(bufs, offset, d.drop); ok {
		d.mu.Unlock()
		if len(keep) > 0 {
			d.Write(keep, offset)
		}
		return len(bufs), nil
	}
	for _, b := range bufs {
		pkt := b[offset:]
		keep := d.watch[:0]
		for _, f := range d.watch {
			if !f(pkt) {
				keep = append(keep, f)
			}
		}
		d.watch = keep
	}
	if keep, ok := filterOut(bufs, offset, d.mute); ok {
		d.mu.Unlock()
		if len(keep) > 0 {
			d.Device.Write(keep, offset)
		}
		return len(bufs), nil
	}
	d.mu.Unlock()
	return d.Device.Write(bufs, offset)
}

// filterOut returns bufs without the packets f matches, and whether it
// matched any (false for a nil f).
func filterOut(bufs [][]byte, offset int, f func([]byte) bool) ([][]byte, bool) {
	if f == nil {
		return nil, false
	}
	keep := make([][]byte, 0, len(bufs))
	for _, b := range bufs {
		if !f(b[offset:]) {
			keep = append(keep, b)
		}
	}
	return keep, len(keep) < len(bufs)
}

func (d *tapDev) BatchSize() int { return 1 }

func (d *tapDev) Close() error {
	d.once.Do(func() { close(d.done) })
	return nil
}

// expect returns a channel that receives a copy of the first packet the
// gateway writes to this host for which match is true.
func (h *host) expect(match func([]byte) bool) <-chan []byte {
	ch := make(chan []byte, 1)
	h.dev.mu.Lock()
	h.dev.watch = append(h.dev.watch, func(b []byte) bool {
		if match(b) {
			ch <- append([]byte(nil), b...)
			return true
		}
		return false
	})
	h.dev.mu.Unlock()
	return ch
}

// send injects a raw packet as if the host had sent it.
func (h *host) send(b []byte) { h.dev.inject <- b }

// testGateway starts a gateway from config text whose interfaces are, in
// order, the given hosts.
func testGateway(t *testing.T, conf string, hosts ...*host) *Gateway {
	t.Helper()
	cfg, err := ParseConfig([]byte(conf))
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	i := 0
	g, err := New(cfg, Options{
		Logger: zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)),
		Open: func(ic *InterfaceConfig, log *zap.Logger) (link.Link, error) {
			d := hosts[i].dev
			i++
			return link.FromTUN(d), nil
		},
	})
	if err != nil {
		t.Fatalf("gateway: %v", err)
	}
	runUntilCleanup(t, g)
	return g
}

// runUntilCleanup runs g until the test ends, then checks it stopped
// cleanly and in time.
func runUntilCleanup(t *testing.T, g *Gateway) {
	t.Helper()
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
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	end := time.Now().Add(d)
	for !cond() {
		if time.Now().After(end) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
