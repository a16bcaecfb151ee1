package gateway

import (
	"errors"
	"os"
	"testing"

	"tungate/link"
)

// TestWarmBatchSameOutcome runs the same batches of new flows into a full
// table with the warming pass and without: the pass must change nothing
// the pipeline decides (what is forwarded and how, the early drops, the
// table and the NAT mappings).
func TestWarmBatchSameOutcome(t *testing.T) {
	const max, perRead, reads = 32768, 64, 40
	for _, v6 := range []bool{false, true} {
		pkts := newFlowPackets(max+perRead*reads, v6)
		type outcome struct {
			fwd, ed, entries, mappings uint64
			out                        []string
		}
		run := func(warm bool) outcome {
			g := nullGateway(t, newFlowsConf)
			lan := newWorker(g, g.Links()[0])
			lan.rs = g.Rules()
			lan.now = g.ct.Now()
			for i := range max {
				runPacket(lan, pkts[i])
			}
			lan.res.Release()
			dev := &flowsDev{replayDev: replayDev{perRead: perRead, reads: reads}, pkts: pkts[max:]}
			rec := &recordDev{}
			g.Links()[0].Dev = link.FromTUN(dev)
			g.Links()[1].Dev = link.FromTUN(rec)
			w := newWorker(g, g.Links()[0])
			w.noWarm = !warm
			fwd, ed := g.Counters.Forwarded.Load(), g.ct.Stats.EarlyDrop.Load()
			if err := w.run(); err != nil && !errors.Is(err, os.ErrClosed) {
				t.Fatal(err)
			}
			if warm && w.warmSink == 0 {
				t.Fatal("the warming pass did not run")
			}
			return outcome{g.Counters.Forwarded.Load() - fwd, g.ct.Stats.EarlyDrop.Load() - ed, uint64(g.ct.Count()), g.nat.Stats().Mappings, rec.out}
		}
		on, off := run(true), run(false)
		if on.fwd != perRead*reads || on.ed < perRead*reads*9/10 {
			t.Fatalf("v6 %v: forwarded %d, early drops %d of %d", v6, on.fwd, on.ed, perRead*reads)
		}
		if on.fwd != off.fwd || on.ed != off.ed || on.entries != off.entries || on.mappings != off.mappings {
			t.Fatalf("v6 %v: warm %+v, not %+v", v6, on, off)
		}
		if len(on.out) != perRead*reads || len(on.out) != len(off.out) {
			t.Fatalf("v6 %v: %d packets written warm, %d not", v6, len(on.out), len(off.out))
		}
		for i := range on.out {
			if on.out[i] != off.out[i] {
				t.Fatalf("v6 %v: packet %d written differently with the pass", v6, i)
			}
		}
	}
}

// recordDev keeps a copy of every packet written to it.
type recordDev struct {
	replayDev
	out []string
}

func (d *recordDev) Write(bufs [][]byte, offset int) (int, error) {
	for _, b := range bufs {
		d.out = append(d.out, string(b[offset:]))
	}
	return len(bufs), nil
}
