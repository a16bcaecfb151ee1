package gateway

import (
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"

	"tungate/link"
)

// countLink is a link whose far side only counts what the gateway writes
// to it, so a fast flow is counted without a reader to keep up.
type countLink struct {
	*memLink
	n atomic.Uint64
}

func (c *countLink) Write(bufs [][]byte, offset int) (int, error) {
	c.n.Add(uint64(len(bufs)))
	return len(bufs), nil
}

// rules10k is the reload test config with n generated forward rules after
// the usual first one (established and related accepted), which the test
// flows' packets never reach once their connection is made.
func rules10k(n int) string {
	var b strings.Builder
	b.WriteString(`
[[interface]]
name = "lan"
tun = "m-lan"
addresses = ["10.10.0.1/24"]
[[interface]]
name = "wan"
tun = "m-wan"
addresses = ["198.18.0.1/24"]
[[route]]
to = "0.0.0.0/0"
interface = "wan"
[filter.forward]
policy = "drop"
rules = [
  { ct_state = ["established", "related"], action = "accept" },
`)
	for i := range n {
		fmt.Fprintf(&b, "  { src = [\"10.%d.%d.0/24\"], proto = \"tcp\", dport = %d, action = \"accept\" },\n", 100+i/256%100, i%256, 1000+i%5000)
	}
	b.WriteString(`  { in = "lan", action = "accept" },
]
`)
	return b.String()
}

// TestReload10kRulesNoLoss forwards UDP at a fixed rate — a fraction of
// the rate measured just before on the same gateway — and reloads a config
// of 10,000 rules twice mid-stream (20 rules → 10,000 → 20 again): every
// packet sent arrives, none is dropped. By default a full input queue
// (32768 packets) holds the sender back, counted per phase, so the test
// asserts that the swap loses nothing whatever the shared machine's load;
// with TUNGATE_RELOAD_QUEUE set (e.g. 1024, near a TUN's txqueuelen) a
// packet the queue cannot take is lost, as a kernel TUN would drop it,
// which measures whether the gateway keeps the rate through the reload.
// TUNGATE_RELOAD_RATE_FRACTION is the fraction of the measured maximum
// (default 0.5), TUNGATE_RELOAD_RATE_SECONDS the length (default 3);
// scripts/reload-rate.sh runs the measurement; scripts/reload-rate-tun.sh
// measures the same end to end, over kernel TUNs with a paced sender
// (the in-process sender shares the gateway's Ps and GC).
func TestReload10kRulesNoLoss(t *testing.T) {
	queue, lossy := 32768, false
	if s := os.Getenv("TUNGATE_RELOAD_QUEUE"); s != "" {
		fmt.Sscan(s, &queue)
		lossy = true
	}
	lan := &memLink{in: make(chan []byte, queue), done: make(chan struct{}), closed: make(chan struct{})}
	wan := &countLink{memLink: newMemLink()}
	cfg, err := ParseConfig([]byte(rules10k(20)))
	if err != nil {
		t.Fatal(err)
	}
	g, err := New(cfg, Options{Logger: zap.NewNop(), Open: func(ic *InterfaceConfig, _ *zap.Logger) (link.Link, error) {
		if ic.Name == "lan" {
			return lan, nil
		}
		return wan, nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	runUntilCleanup(t, g)
	big, err := ParseConfig([]byte(rules10k(10000)))
	if err != nil {
		t.Fatal(err)
	}
	small, err := ParseConfig([]byte(rules10k(20)))
	if err != nil {
		t.Fatal(err)
	}
	const flows = 64
	pkts := make([][]byte, flows)
	for i := range pkts {
		pkts[i] = udp4("10.10.0.2", "198.18.0.2", uint16(20000+i), 4444)
	}
	arrived := func(want uint64) {
		t.Helper()
		eventually(t, 10*time.Second, fmt.Sprintf("%d packets at wan", want), func() bool { return wan.n.Load() >= want })
	}

	// The maximum: what the gateway forwards in a second of sending as
	// fast as it takes them (the send blocks), counted once all arrived.
	start := time.Now()
	probe := 0
	for ; time.Since(start) < time.Second; probe++ {
		lan.in <- pkts[probe%flows]
	}
	arrived(uint64(probe))
	maxRate := float64(probe) / time.Since(start).Seconds()
	frac := 0.5
	if s := os.Getenv("TUNGATE_RELOAD_RATE_FRACTION"); s != "" {
		fmt.Sscan(s, &frac)
	}
	rate := maxRate * frac

	dur := 3 * time.Second
	if s := os.Getenv("TUNGATE_RELOAD_RATE_SECONDS"); s != "" {
		fmt.Sscan(s, &dur)
		dur *= time.Second
	}
	base := wan.n.Load()
	var sent, overflow uint64
	// phase: 0 before the reloads, 1 and 3 during one, 2 between, 4 after;
	// the times the input queue was full are counted per phase.
	var phase atomic.Int32
	var fullIn [5]uint64
	var reloadTimes [2]time.Duration
	reloaded := make(chan error, 1)
	go func() {
		time.Sleep(dur / 3)
		t0 := time.Now()
		phase.Store(1)
		if err := g.ReloadConfig(big); err != nil {
			reloaded <- err
			return
		}
		reloadTimes[0] = time.Since(t0)
		phase.Store(2)
		time.Sleep(dur / 3)
		t0 = time.Now()
		phase.Store(3)
		err := g.ReloadConfig(small)
		reloadTimes[1] = time.Since(t0)
		phase.Store(4)
		reloaded <- err
	}()
	// Paced in 1 ms ticks: each tick sends what the rate owes so far.
	start = time.Now()
	depth := 0
	for el := time.Duration(0); el < dur; el = time.Since(start) {
		depth = max(depth, len(lan.in))
		owed := uint64(el.Seconds() * rate)
		for ; sent < owed; sent++ {
			select {
			case lan.in <- pkts[sent%flows]:
			default:
				fullIn[phase.Load()]++
				if lossy {
					overflow++
				} else {
					lan.in <- pkts[sent%flows]
				}
			}
		}
		time.Sleep(time.Millisecond)
	}
	if err := <-reloaded; err != nil {
		t.Fatal(err)
	}
	if n := len(g.Config().Filter.Forward.Rules); n > 100 {
		t.Fatalf("%d rules after reloading the small config", n)
	}
	delivered := sent - overflow
	arrived(base + delivered)
	got := wan.n.Load() - base
	t.Logf("max %.0f pkt/s, sent %d at %.0f pkt/s over %v, %d lost at the input queue; queue full (before/during/between/during/after the reloads: %v), %d arrived; queue %d, deepest %d; reload to 10k rules %v, back to 20 %v",
		maxRate, sent, rate, dur, overflow, fullIn, got, queue, depth, reloadTimes[0].Round(time.Millisecond), reloadTimes[1].Round(time.Millisecond))
	if overflow != 0 || got != sent {
		t.Fatalf("lost %d of %d packets (%d at the input queue) across two reloads of 10,000 rules", sent-got, sent, overflow)
	}
	if d := g.Counters.Snapshot(); d["drop_filter"] != 0 {
		t.Fatalf("filter drops during the reloads: %v", d)
	}
}
