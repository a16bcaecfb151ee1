package gateway

import (
	"context"
	"encoding/binary"
	"io"
	"net/http"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"tungate/link"
)

// loopDev is a link whose far side is the test: Read hands the gateway
// what the test feeds it, and a wan loopDev answers every UDP datagram and
// TCP SYN the gateway writes to it (addresses and ports swapped; a SYN gets
// a SYN/ACK), so the reply direction and NAT's reverse path run too.
type loopDev struct {
	in      chan []byte
	done    chan struct{}
	once    sync.Once
	answer  *loopDev // where replies go (nil: none)
	written atomic.Uint64
}

func newLoopDev() *loopDev {
	return &loopDev{in: make(chan []byte, 1024), done: make(chan struct{})}
}

func (d *loopDev) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	select {
	case b := <-d.in:
		sizes[0] = copy(bufs[0][offset:], b)
		return 1, nil
	case <-d.done:
		return 0, os.ErrClosed
	}
}

func (d *loopDev) Write(bufs [][]byte, offset int) (int, error) {
	for _, b := range bufs {
		d.written.Add(1)
		if d.answer != nil {
			if r := reflectPacket(b[offset:]); r != nil {
				select {
				case d.answer.in <- r:
				default: // a full queue drops, as a link would
				}
			}
		}
	}
	return len(bufs), nil
}

func (d *loopDev) MTU() (int, error) { return 1500, nil }
func (d *loopDev) BatchSize() int    { return 1 }
func (d *loopDev) Close() error {
	d.once.Do(func() { close(d.done) })
	return nil
}

// reflectPacket builds the answer a server would send to an IPv4 or IPv6
// UDP datagram (the same payload back) or TCP SYN (a SYN/ACK); nil for
// anything else.
func reflectPacket(b []byte) []byte {
	if len(b) < 1 {
		return nil
	}
	var src, dst string
	var proto uint8
	var l4 []byte
	switch b[0] >> 4 {
	case 4:
		if len(b) < 20 {
			return nil
		}
		ihl := int(b[0]&0xf) * 4
		proto, l4 = b[9], b[ihl:]
		src, dst = ipString(b[12:16]), ipString(b[16:20])
	case 6:
		if len(b) < 40 {
			return nil
		}
		proto, l4 = b[6], b[40:]
		src, dst = ipString(b[8:24]), ipString(b[24:40])
	default:
		return nil
	}
	if len(l4) < 20 && proto == 6 || len(l4) < 8 {
		return nil
	}
	sport, dport := binary.BigEndian.Uint16(l4), binary.BigEndian.Uint16(l4[2:])
	switch proto {
	case 17:
		return udpPacket(dst, src, dport, sport, 64, false, l4[8:])
	case 6:
		if l4[13] != uint8(header.TCPFlagSyn) {
			return nil
		}
		seq := binary.BigEndian.Uint32(l4[4:])
		return tcpPacket(dst, src, dport, sport, 7000, seq+1, header.TCPFlagSyn|header.TCPFlagAck, 0)
	}
	return nil
}

func ipString(b []byte) string {
	a, _ := netip.AddrFromSlice(b)
	return a.String()
}

// TestSoakNoLeaks runs mixed traffic (UDP flows and TCP handshakes over
// IPv4 and IPv6, pings to the gateway, a flood of one-packet flows over a
// small table) through a masquerading gateway while its metrics are
// scraped, then closes it: afterwards no goroutine it started is left
// (goleak), and the traffic did go through.
func TestSoakNoLeaks(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	lanDev, wanDev := newLoopDev(), newLoopDev()
	wanDev.answer = lanDev
	cfg, err := ParseConfig([]byte(linksConf + `
[conntrack]
max = 512
[[route]]
to = "10.10.0.0/16"
interface = "lan"
[[nat.masquerade]]
out = "wan"
[filter.forward]
policy = "drop"
rules = [
  { ct_state = ["established", "related"], action = "accept" },
  { ct_state = ["invalid"], action = "drop" },
  { in = "lan", ct_state = ["new"], action = "accept" },
]
`))
	if err != nil {
		t.Fatal(err)
	}
	devs := []*loopDev{lanDev, wanDev}
	i := 0
	g, err := New(cfg, Options{Logger: nopLogger(), Open: func(*InterfaceConfig, *zap.Logger) (link.Link, error) {
		d := devs[i]
		i++
		return d, nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	addr, err := g.ServeMetrics("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()

	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	end := time.Now().Add(2 * time.Second)
	sent := 0
	for n := 0; time.Now().Before(end); n++ {
		sp := uint16(10000 + n%20000)
		pkts := [][]byte{
			udpPacket("10.10.0.2", "198.18.0.2", sp, 53, 64, false, []byte("query")),
			udpPacket("fd10::2", "2001:db8:1::2", sp, 53, 64, false, []byte("query")),
			tcpPacket("10.10.0.3", "198.18.0.2", sp, 80, 1000, 0, header.TCPFlagSyn, 0),
			tcpPacket("fd10::2", "2001:db8:1::2", sp, 443, 1000, 0, header.TCPFlagSyn, 0),
			echoRequest("10.10.0.2", "10.10.0.1", sp),
			echoRequest("fd10::2", "2001:db8:1::2", sp),
			udpPacket("10.10."+strconv.Itoa(1+n%200)+"."+strconv.Itoa(1+n%250), "198.18.0.9", sp, 9, 64, false, nil),
		}
		for _, p := range pkts {
			lanDev.in <- p
			sent++
		}
		if n%500 == 0 {
			resp, err := client.Get("http://" + addr.String() + "/metrics")
			if err != nil {
				t.Fatalf("scrape: %v", err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		if n%64 == 0 {
			runtime.Gosched()
		}
	}
	eventually(t, 10*time.Second, "the gateway to read what was sent", func() bool {
		return g.Counters.Received.Load() >= uint64(sent)
	})
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the gateway did not stop")
	}
	client.CloseIdleConnections()

	st := g.Stats()
	if st["forwarded"] < uint64(sent)/2 || wanDev.written.Load() == 0 || lanDev.written.Load() == 0 {
		t.Errorf("traffic did not go through both ways: sent %d, stats %v, wan written %d, lan written %d",
			sent, st, wanDev.written.Load(), lanDev.written.Load())
	}
	if g.ct.Stats.EarlyDrop.Load() == 0 {
		t.Errorf("the one-packet flows never filled the table (max 512): early_drop 0")
	}
	t.Logf("%d packets sent; forwarded %d, local %d, early drops %d", sent, st["forwarded"], st["local"], g.ct.Stats.EarlyDrop.Load())
	goleak.VerifyNone(t, ignore)
}
