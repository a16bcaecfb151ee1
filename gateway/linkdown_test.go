package gateway

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	"golang.org/x/sys/unix"

	"tungate/internal/packettest"
	"tungate/link"
	"tungate/packet"
)

var kernelTUNSeq atomic.Int32

// kernelTUNName is a TUN name unique to this test process and call.
func kernelTUNName() string {
	return fmt.Sprintf("tgd%d-%d", os.Getpid()%100000, kernelTUNSeq.Add(1))
}

func ipCmd(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// kernelRx is what the kernel received from the gateway on TUN name (the
// device's rx counter: the gateway's writes are its receives).
func kernelRx(name string) uint64 {
	b, err := os.ReadFile("/sys/class/net/" + name + "/statistics/rx_packets")
	if err != nil {
		return 0
	}
	n, _ := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	return n
}

// A kernel TUN deleted under the running gateway: the link is logged
// down with the reason, shows down, its routes go (traffic to it gets
// ICMP network unreachable from the gateway), and once the device is made
// again the gateway attaches it and traffic flows through it.
func TestKernelTUNGoneAndBack(t *testing.T) {
	wan := kernelTUNName()
	t.Cleanup(func() { exec.Command("ip", "link", "del", wan).Run() })
	// Persistent, so the test can delete it while the gateway holds it and
	// make it again under the same name.
	ipCmd(t, "tuntap", "add", "dev", wan, "mode", "tun", "vnet_hdr")
	ipCmd(t, "link", "set", wan, "up")

	lan := newMemLink()
	core, logs := observer.New(zapcore.InfoLevel)
	cfg, err := ParseConfig([]byte(fmt.Sprintf(`
[[interface]]
name = "lan"
tun = "m-lan"
addresses = ["10.10.0.1/24"]
[[interface]]
name = "wan"
tun = %q
addresses = ["198.18.0.1/24"]
[[route]]
to = "0.0.0.0/0"
interface = "wan"
`, wan)))
	if err != nil {
		t.Fatal(err)
	}
	g, err := New(cfg, Options{Logger: zap.New(core), Open: func(ic *InterfaceConfig, log *zap.Logger) (link.Link, error) {
		if ic.Name == "lan" {
			return lan, nil
		}
		return openLink(ic, log)
	}})
	if err != nil {
		t.Fatal(err)
	}
	runUntilCleanup(t, g)
	flows := func(sport uint16) {
		t.Helper()
		before := kernelRx(wan)
		lan.in <- udp4("10.10.0.2", "198.18.0.2", sport, 4444)
		eventually(t, 5*time.Second, "the packet on "+wan, func() bool { return kernelRx(wan) > before })
	}
	flows(1000)

	ipCmd(t, "link", "del", wan)
	eventually(t, 5*time.Second, "the link down", func() bool { up, _ := g.LinkUp(1); return !up })
	if _, why := g.LinkUp(1); why == "" {
		t.Fatal("down without a reason")
	}
	want := "# HELP tungate_interface_up 1 when the interface's device works, 0 while it is down.\n# TYPE tungate_interface_up gauge\n" +
		"tungate_interface_up{interface=\"lan\"} 1\ntungate_interface_up{interface=\"wan\"} 0\n"
	if err := testutil.CollectAndCompare(newCollector(g), strings.NewReader(want), "tungate_interface_up"); err != nil {
		t.Fatalf("metrics while down: %v", err)
	}
	eventually(t, 5*time.Second, "the log line", func() bool { return logs.FilterMessageSnippet("interface down").Len() == 1 })
	if e := logs.FilterMessageSnippet("interface down").All()[0]; e.ContextMap()["interface"] != "wan" || e.ContextMap()["error"] == nil {
		t.Fatalf("log line without interface or reason: %v", e.ContextMap())
	}
	// The route is withdrawn: the router answers, no silence.
	lan.in <- udp4("10.10.0.2", "198.18.0.2", 1001, 4444)
	deadline := time.After(5 * time.Second)
	for got := false; !got; {
		select {
		case b := <-lan.out:
			var p packet.Parsed
			got = p.Decode(b) == nil && p.ICMPType == 3 && p.ICMPCode == 0 && p.SrcIP().String() == "10.10.0.1"
		case <-deadline:
			t.Fatal("no ICMP network unreachable for traffic to the down link")
		}
	}

	ipCmd(t, "tuntap", "add", "dev", wan, "mode", "tun", "vnet_hdr")
	ipCmd(t, "link", "set", wan, "up")
	eventually(t, 10*time.Second, "the link up again", func() bool { up, _ := g.LinkUp(1); return up })
	if logs.FilterMessageSnippet("interface up again").Len() != 1 {
		t.Fatal("no log line for the link coming back")
	}
	flows(1002)
	if logs.FilterMessageSnippet("interface down").Len() != 1 {
		t.Fatal("the failure was logged more than once")
	}
}

// failLink is a memLink whose reads fail once failed is closed, as a
// device gone under its descriptor.
type failLink struct {
	*memLink
	failed chan struct{}
}

func (f *failLink) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	select {
	case <-f.failed:
		return 0, unix.EIO
	case b := <-f.in:
		sizes[0] = copy(bufs[0][offset:], b)
		return 1, nil
	case <-f.done:
		return 0, os.ErrClosed
	}
}

// An inherited tun_fd that fails cannot be opened again: the link goes
// down for good and the log says so; the rest of the gateway runs on.
func TestTUNFDGoneStaysDown(t *testing.T) {
	wan := &failLink{memLink: newMemLink(), failed: make(chan struct{})}
	lan := newMemLink()
	core, logs := observer.New(zapcore.InfoLevel)
	cfg, err := ParseConfig([]byte(`
[[interface]]
name = "lan"
tun = "m-lan"
addresses = ["10.10.0.1/24"]
[[interface]]
name = "wan"
tun_fd = 3
addresses = ["198.18.0.1/24"]
[[route]]
to = "0.0.0.0/0"
interface = "wan"
`))
	if err != nil {
		t.Fatal(err)
	}
	opens := 0
	g, err := New(cfg, Options{Logger: zap.New(core), Open: func(ic *InterfaceConfig, _ *zap.Logger) (link.Link, error) {
		if ic.Name == "lan" {
			return lan, nil
		}
		opens++
		return wan, nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	runUntilCleanup(t, g)
	close(wan.failed)
	eventually(t, 5*time.Second, "the log line", func() bool { return logs.FilterMessageSnippet("cannot be attached again").Len() == 1 })
	if up, why := g.LinkUp(1); up || !strings.Contains(why, "input/output error") {
		t.Fatalf("wan up=%v (%q), want down with the read error", up, why)
	}
	// The gateway itself still answers on lan.
	lan.in <- packettest.Build(packettest.IP{Src: "10.10.0.2", Dst: "10.10.0.1"}, packettest.ICMP{Type: 8, Rest: 9 << 16}, []byte("ping"))
	deadline := time.After(5 * time.Second)
	for got := false; !got; {
		select {
		case b := <-lan.out:
			var p packet.Parsed
			got = p.Decode(b) == nil && p.IsEcho() && p.ICMPType == 0
		case <-deadline:
			t.Fatal("lan stopped working when wan failed")
		}
	}
	if opens != 1 {
		t.Fatalf("the tun_fd link was opened %d times", opens)
	}
}
