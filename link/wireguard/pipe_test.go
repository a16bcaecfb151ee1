package wireguard

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"testing"

	"github.com/gaissmai/bart"

	"tungate/link"
)

// consume reads p until it closes, sending copies of what it reads.
func consume(p *pipe, nbufs, size int) <-chan []byte {
	ch := make(chan []byte, 64)
	go func() {
		defer close(ch)
		bufs := make([][]byte, nbufs)
		sizes := make([]int, nbufs)
		for i := range bufs {
			bufs[i] = make([]byte, size)
		}
		for {
			n, err := p.read(bufs, sizes, 4)
			if err != nil {
				return
			}
			for i := 0; i < n; i++ {
				ch <- bytes.Clone(bufs[i][4 : 4+sizes[i]])
			}
		}
	}()
	return ch
}

func withHeadroom(pkts ...string) [][]byte {
	out := make([][]byte, len(pkts))
	for i, p := range pkts {
		out[i] = append(make([]byte, link.Headroom), p...)
	}
	return out
}

func TestPipeSplitsBatchesAndDropsTooBig(t *testing.T) {
	p := newPipe()
	defer p.close()
	got := consume(p, 2, 4+8) // two buffers of 8 bytes after the offset
	pkts := withHeadroom("one", "two", "much too big", "three", "four", "five")
	n, err := p.write(pkts, link.Headroom, nil)
	if n != len(pkts) || err != nil {
		t.Fatalf("write = %d, %v", n, err)
	}
	for _, want := range []string{"one", "two", "three", "four", "five"} {
		expect(t, got, []byte(want), want)
	}
	if p.dropBig.Load() != 1 {
		t.Errorf("dropBig = %d, want 1", p.dropBig.Load())
	}
}

func TestPipeFullQueueDrops(t *testing.T) {
	p := newPipe()
	errs := make(chan error, maxWaitingBatches)
	for i := 0; i < maxWaitingBatches; i++ {
		go func() {
			_, err := p.write(withHeadroom("waiting"), link.Headroom, nil)
			errs <- err
		}()
	}
	waitFor(t, "writers to queue", func() bool { return p.waiting.Load() == maxWaitingBatches })
	// With no reader and the queue full, a batch is dropped at once.
	n, err := p.write(withHeadroom("a", "b", "c"), link.Headroom, nil)
	if n != 3 || err != nil {
		t.Fatalf("write to a full pipe = %d, %v; want 3, nil", n, err)
	}
	if p.dropFull.Load() != 3 {
		t.Errorf("dropFull = %d, want 3", p.dropFull.Load())
	}
	// Closing releases the waiting writers.
	p.close()
	for i := 0; i < maxWaitingBatches; i++ {
		if err := <-errs; !errors.Is(err, os.ErrClosed) {
			t.Errorf("waiting writer: %v, want os.ErrClosed", err)
		}
	}
}

func TestPipeManyWriters(t *testing.T) {
	// Concurrent producers (the device's per-peer receivers) each get
	// their packets through whole and in their own order.
	p := newPipe()
	defer p.close()
	got := consume(p, 3, 64)
	const writers, each = 4, 50
	for w := 0; w < writers; w++ {
		go func() {
			for i := 0; i < each; i += 5 {
				var batch []string
				for j := i; j < i+5; j++ {
					batch = append(batch, fmt.Sprintf("w%d-%03d", w, j))
				}
				p.write(withHeadroom(batch...), link.Headroom, nil)
			}
		}()
	}
	next := make([]int, writers)
	for range writers * each {
		var pkt []byte
		select {
		case pkt = <-got:
		case <-timeAfterWait():
			t.Fatal("packets stopped arriving")
		}
		var w, i int
		if _, err := fmt.Sscanf(string(pkt), "w%d-%d", &w, &i); err != nil {
			t.Fatalf("packet %q: %v", pkt, err)
		}
		if i != next[w] {
			t.Fatalf("writer %d: got packet %d, want %d", w, i, next[w])
		}
		next[w]++
	}
}

// benchTable is a peer table of n peers, each with an IPv4 and an IPv6
// host address (in one /112, so the trie would be deep) and an IPv4 /24
// and an IPv6 /64 behind it, as a site-to-site hub has.
func benchTable(n int) *peerTable { return newPeerTable(benchSpecs(n)) }

// benchSpecs are benchTable's peers.
func benchSpecs(n int) []peerSpec {
	specs := make([]peerSpec, n)
	for i := range specs {
		specs[i].name = fmt.Sprintf("peer%d", i)
		specs[i].allowed = []netip.Prefix{
			netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), 32),
			netip.PrefixFrom(netip.AddrFrom16([16]byte{0xfd, 14: byte(i >> 8), 15: byte(i)}), 128),
			netip.PrefixFrom(netip.AddrFrom4([4]byte{172, 16 + byte(i>>8), byte(i), 0}), 24),
			netip.PrefixFrom(netip.AddrFrom16([16]byte{0xfd, 1, 6: byte(i >> 8), 7: byte(i)}), 64),
		}
	}
	return specs
}

// benchAddrs are 256 addresses each held by one of benchTable's peers: host
// routes, or addresses inside the peers' subnets.
func benchAddrs(v6, subnet bool) []netip.Addr {
	addrs := make([]netip.Addr, 256)
	for i := range addrs {
		switch {
		case v6 && subnet:
			addrs[i] = netip.AddrFrom16([16]byte{0xfd, 1, 7: byte(i), 8: 0x12, 15: 0x34})
		case v6:
			addrs[i] = netip.AddrFrom16([16]byte{0xfd, 15: byte(i)})
		case subnet:
			addrs[i] = netip.AddrFrom4([4]byte{172, 16, byte(i), 77})
		default:
			addrs[i] = netip.AddrFrom4([4]byte{10, 0, 0, byte(i)})
		}
	}
	return addrs
}

func TestPeerForAllocatesNothing(t *testing.T) {
	l := &Link{}
	l.peers.Store(benchTable(256))
	l.routable = l.route
	var addrs []netip.Addr
	for _, v6 := range []bool{false, true} {
		for _, subnet := range []bool{false, true} {
			addrs = append(addrs, benchAddrs(v6, subnet)...)
		}
	}
	if _, ok := l.PeerFor(netip.Addr{}); ok {
		t.Error("PeerFor(invalid address) found a peer")
	}
	pkt := udp("10.0.0.9", "10.0.0.200", "x")
	allocs := testing.AllocsPerRun(100, func() {
		for _, a := range addrs {
			if _, ok := l.PeerFor(a); !ok {
				t.Fatalf("no peer for %v", a)
			}
		}
		if !l.routable(pkt) {
			t.Fatal("packet not routable")
		}
	})
	if allocs != 0 {
		t.Errorf("PeerFor/route allocate %v times", allocs)
	}
}

func BenchmarkPeerFor(b *testing.B) {
	for _, bc := range []struct {
		name       string
		v6, subnet bool
	}{{"v4-host", false, false}, {"v4-subnet", false, true}, {"v6-host", true, false}, {"v6-subnet", true, true}} {
		b.Run(bc.name, func(b *testing.B) {
			l := &Link{}
			l.peers.Store(benchTable(256))
			addrs := benchAddrs(bc.v6, bc.subnet)
			b.ReportAllocs()
			miss := 0
			cpu := startCPU(b)
			for i := 0; i < b.N; i++ {
				if _, ok := l.PeerFor(addrs[i&255]); !ok {
					miss++
				}
			}
			cpu.stop()
			if miss != 0 {
				b.Fatalf("%d lookups missed", miss)
			}
		})
	}
}

// BenchmarkWrite is the link's own cost per packet on the way out: the
// route check and the hand-over into the device's buffers (the device's
// encryption is wireguard-go's and not measured here).
func BenchmarkWrite(b *testing.B) {
	l := &Link{out: newPipe()}
	l.peers.Store(benchTable(256))
	l.routable = l.route
	done := make(chan struct{})
	go func() {
		defer close(done)
		bufs := make([][]byte, batchSize)
		sizes := make([]int, batchSize)
		for i := range bufs {
			bufs[i] = make([]byte, 2048)
		}
		for {
			if _, err := l.out.read(bufs, sizes, 16); err != nil {
				return
			}
		}
	}()
	batch := make([][]byte, 64)
	for i := range batch {
		batch[i] = append(make([]byte, link.Headroom), udp("10.0.0.1", fmt.Sprintf("10.0.0.%d", i), string(make([]byte, 1200)))...)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(batch[0]) - link.Headroom))
	b.ResetTimer()
	for i := 0; i < b.N; i += len(batch) {
		if _, err := l.Write(batch, link.Headroom); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	l.out.close()
	<-done
}

// BenchmarkRead is the link's own cost per packet on the way in: the
// device's write of decrypted packets handed into the gateway's buffers.
func BenchmarkRead(b *testing.B) {
	l := &Link{in: newPipe()}
	t := &memTUN{l: l}
	batch := make([][]byte, 64)
	for i := range batch {
		batch[i] = append(make([]byte, 16), udp("10.0.0.1", "10.0.0.2", string(make([]byte, 1200)))...)
	}
	go func() {
		for {
			if _, err := t.Write(batch, 16); err != nil {
				return
			}
		}
	}()
	bufs := make([][]byte, batchSize)
	sizes := make([]int, batchSize)
	for i := range bufs {
		bufs[i] = make([]byte, link.Headroom+2048)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(batch[0]) - 16))
	b.ResetTimer()
	for i := 0; i < b.N; {
		n, err := l.Read(bufs, sizes, link.Headroom)
		if err != nil {
			b.Fatal(err)
		}
		i += n
	}
	b.StopTimer()
	l.in.close()
}

// TestPeerTableMatchesBart checks the table's exact-match shortcuts
// against a plain bart table holding the same prefixes, on random tables
// with and without IPv6 prefixes between /65 and /127.
func TestPeerTableMatchesBart(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	v4len := []int{8, 16, 20, 24, 28, 31, 32, 32, 32}
	v6len := []int{16, 32, 48, 56, 64, 64, 128, 128, 128}
	randAddr := func(v6 bool) netip.Addr {
		// Few distinct upper bytes, so prefixes nest and overlap.
		if v6 {
			var b [16]byte
			b[0], b[1] = 0xfd, byte(rng.IntN(2))
			b[7] = byte(rng.IntN(4))
			b[15] = byte(rng.IntN(8))
			return netip.AddrFrom16(b)
		}
		return netip.AddrFrom4([4]byte{10, byte(rng.IntN(2)), byte(rng.IntN(4)), byte(rng.IntN(8))})
	}
	for round := 0; round < 200; round++ {
		mid := round%3 == 0
		specs := make([]peerSpec, 1+rng.IntN(6))
		ref := new(bart.Table[int])
		for i := range specs {
			for range 1 + rng.IntN(6) {
				v6 := rng.IntN(2) == 0
				bits := v4len[rng.IntN(len(v4len))]
				if v6 {
					bits = v6len[rng.IntN(len(v6len))]
					if mid && rng.IntN(4) == 0 {
						bits = 96 + rng.IntN(31)
					}
				}
				p := netip.PrefixFrom(randAddr(v6), bits).Masked()
				specs[i].allowed = append(specs[i].allowed, p)
				ref.Insert(p, i)
			}
		}
		tbl := newPeerTable(specs)
		for range 200 {
			a := randAddr(rng.IntN(2) == 0)
			gi, gok := tbl.lookup(a)
			wi, wok := ref.Lookup(a)
			if gi != wi || gok != wok {
				t.Fatalf("round %d: lookup(%v) = %d, %v; bart says %d, %v\ntable: %v", round, a, gi, gok, wi, wok, specs)
			}
		}
	}
}
