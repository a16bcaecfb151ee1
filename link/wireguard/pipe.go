package wireguard

import (
	"os"
	"sync"
	"sync/atomic"
)

// maxWaitingBatches bounds how many producer batches may wait for the
// consumer of one pipe. Producers are wireguard-go's per-peer receivers on
// the way in and the gateway's link workers on the way out; past this many
// a batch is dropped and counted instead of parking yet another goroutine.
const maxWaitingBatches = 16

// pipe moves batches of packets from producers straight into a consumer's
// buffers. Both ends own their buffers (wireguard-go's tun.Device
// contract: the gateway reads into its buffers, the device reads into
// its own), so any buffer in between would cost a second copy. Instead the
// consumer offers its buffers and a producer copies into them: one copy
// per packet, nothing allocated. A producer waits until its batch is taken
// (back-pressure); when too many already wait, its batch is dropped.
type pipe struct {
	// readMu serialises consumers: the offer fields belong to its holder.
	readMu sync.Mutex
	// writeMu serialises producers: one fills an offer at a time.
	writeMu sync.Mutex

	// offer passes the consumer's buffers (offerBufs...) to a producer;
	// the fields are written before the send and read after the receive.
	offer      chan struct{}
	offerBufs  [][]byte
	offerSizes []int
	offerOff   int
	// filled returns how many offered buffers were filled. Buffered, so a
	// producer that took an offer never blocks answering it and the
	// consumer can wait for the answer without watching closed.
	filled chan int

	closed    chan struct{}
	closeOnce sync.Once

	waiting atomic.Int32 // producers inside write

	dropFull atomic.Uint64 // packets of batches dropped as too many waited
	dropBig  atomic.Uint64 // packets larger than the consumer's buffer
}

func newPipe() *pipe {
	return &pipe{
		offer:  make(chan struct{}),
		filled: make(chan int, 1),
		closed: make(chan struct{}),
	}
}

func (p *pipe) close() { p.closeOnce.Do(func() { close(p.closed) }) }

// read blocks until a producer has put at least one packet into
// bufs[i][off:], or the pipe is closed.
func (p *pipe) read(bufs [][]byte, sizes []int, off int) (int, error) {
	if len(bufs) == 0 {
		return 0, nil
	}
	p.readMu.Lock()
	defer p.readMu.Unlock()
	for {
		p.offerBufs, p.offerSizes, p.offerOff = bufs, sizes, off
		select {
		case p.offer <- struct{}{}:
		case <-p.closed:
			p.offerBufs, p.offerSizes = nil, nil
			return 0, os.ErrClosed
		}
		n := <-p.filled
		if n > 0 {
			// Not kept past the call: they are the caller's.
			p.offerBufs, p.offerSizes = nil, nil
			return n, nil
		}
		// Every packet of the producer's batch was too big; offer again.
	}
}

// write hands the packets pkts[i][off:] for which keep (nil: all) is true
// to consumers, blocking until all are taken. It returns len(pkts) unless
// the pipe closes first.
func (p *pipe) write(pkts [][]byte, off int, keep func([]byte) bool) (int, error) {
	if len(pkts) == 0 {
		return 0, nil
	}
	if p.waiting.Add(1) > maxWaitingBatches {
		p.waiting.Add(-1)
		p.dropFull.Add(uint64(len(pkts)))
		return len(pkts), nil
	}
	defer p.waiting.Add(-1)
	p.writeMu.Lock()
	defer p.writeMu.Unlock()
	i := 0
	for i < len(pkts) {
		kept := false // pkts[i] passed keep already
		if keep != nil {
			// Filter before taking an offer so a batch with nothing to
			// send never wakes the consumer.
			for i < len(pkts) && !keep(payload(pkts[i], off)) {
				i++
			}
			if i == len(pkts) {
				break
			}
			kept = true
		}
		select {
		case <-p.offer:
		case <-p.closed:
			return i, os.ErrClosed
		}
		n := 0
		for n < len(p.offerBufs) && i < len(pkts) {
			pkt := payload(pkts[i], off)
			i++
			if keep != nil && !kept && !keep(pkt) {
				continue
			}
			kept = false
			b := p.offerBufs[n]
			if p.offerOff > len(b) || len(pkt) > len(b)-p.offerOff {
				p.dropBig.Add(1)
				continue
			}
			p.offerSizes[n] = copy(b[p.offerOff:], pkt)
			n++
		}
		p.filled <- n
	}
	return len(pkts), nil
}

// payload is b[off:], or nil when b is shorter than off: a malformed
// batch is the writer's mistake, not a reason to panic.
func payload(b []byte, off int) []byte {
	if off > len(b) {
		return nil
	}
	return b[off:]
}
