package gateway

import (
	"fmt"
	"net/netip"
	"sync/atomic"
	"time"

	"tungate/packet"
)

// Capturing a link's packets (tungate capture).
//
// A capture sits in the datapath, not on a device, so it sees every link
// kind the same way: the packets a worker reads from the link (with what
// became of each: its verdict) and the packets written to it. With no
// capture anywhere, a batch pays one atomic load (Gateway.capturing) and
// nothing per packet. With one, the worker copies each packet of that link
// into a free record of a fixed pool and hands it over through a channel;
// when the reader falls behind and no record is free, the packet is not
// recorded and the loss counted (Capture.Dropped): the datapath never
// waits for a reader.

// DefaultCaptureQueue is how many packets a capture holds for a slow
// reader before it drops (and counts) the ones that do not fit.
const DefaultCaptureQueue = 1024

// CaptureDir is the direction of a captured packet.
type CaptureDir uint8

// Directions, as pcapng's epb_flags numbers them.
const (
	CaptureIn  CaptureDir = 1
	CaptureOut CaptureDir = 2
)

// CapturedPacket is one recorded packet. It belongs to the reader from
// Packets until Release.
type CapturedPacket struct {
	Time time.Time
	Dir  CaptureDir
	// Data is the packet from its IP header, as read (in) or as written
	// (out).
	Data []byte
	// Verdict is what became of an inbound packet ("accept: forwarded to
	// wan", "drop: filter", ...); "sent" for an outbound one.
	Verdict string
}

// Capture records one link's packets.
type Capture struct {
	g    *Gateway
	link *Link
	// free holds the records not in use; ready the recorded packets for
	// the reader. Both have room for every record, so a send on ready
	// never waits, and neither is ever closed (a worker may still hold a
	// record when the capture stops).
	free, ready chan *CapturedPacket
	dropped     atomic.Uint64
	captured    atomic.Uint64
	stopped     atomic.Bool
	// fwd[i] is the verdict of a packet forwarded to link i, made once.
	fwd []string
	// filter selects what to record, when filtered.
	filter   CaptureFilter
	filtered bool
}

// wants reports whether the capture records packet b (from its IP
// header); the worker's scratch view decodes it.
func (c *Capture) wants(w *worker, b []byte) bool {
	if !c.filtered {
		return true
	}
	return w.capP.Decode(b) == nil && c.filter.match(&w.capP)
}

// CaptureOptions shape a capture.
type CaptureOptions struct {
	// Queue is how many packets the capture holds for its reader
	// (DefaultCaptureQueue when 0).
	Queue int
	// Filter selects the packets to record; the zero value takes all.
	Filter CaptureFilter
}

// CaptureFilter selects packets as tcpdump's primitives do, all that are
// set at once: "host H and proto P and port N". It is tested on the packet
// as it crossed the link (read, or written after NAT).
type CaptureFilter struct {
	// Host matches packets from or to an address in the prefix.
	Host netip.Prefix
	// Proto is the IP protocol number (ICMP matches ICMPv6 too); HasProto
	// says it is set.
	Proto    uint8
	HasProto bool
	// Port matches TCP or UDP packets from or to the port; 0: any.
	Port uint16
}

func (f *CaptureFilter) active() bool { return f.Host.IsValid() || f.HasProto || f.Port != 0 }

// match tests a decoded packet.
func (f *CaptureFilter) match(p *packet.Parsed) bool {
	if f.Host.IsValid() && !f.Host.Contains(p.SrcIP()) && !f.Host.Contains(p.DstIP()) {
		return false
	}
	if f.HasProto && p.Proto != f.Proto && !(f.Proto == packet.ProtoICMP && p.IsICMP()) {
		return false
	}
	if f.Port != 0 {
		if !p.HasL4 || (p.Proto != packet.ProtoTCP && p.Proto != packet.ProtoUDP) || (p.SrcPort != f.Port && p.DstPort != f.Port) {
			return false
		}
	}
	return true
}

// StartCapture starts recording the packets of the named interface. One
// capture per interface at a time.
func (g *Gateway) StartCapture(name string, opt CaptureOptions) (*Capture, error) {
	pl := g.pl.Load()
	var l *Link
	var names []string
	for _, x := range pl.links {
		if x == nil {
			continue
		}
		names = append(names, x.Name)
		if x.Name == name {
			l = x
		}
	}
	if l == nil {
		return nil, fmt.Errorf("capture: no interface %q (interfaces: %v)", name, names)
	}
	queue := opt.Queue
	if queue <= 0 {
		queue = DefaultCaptureQueue
	}
	c := &Capture{g: g, link: l, free: make(chan *CapturedPacket, queue), ready: make(chan *CapturedPacket, queue),
		filter: opt.Filter, filtered: opt.Filter.active()}
	for range queue {
		c.free <- &CapturedPacket{}
	}
	// By slot, as the datapath's output index is.
	for _, x := range pl.links {
		if x == nil {
			c.fwd = append(c.fwd, "accept: forwarded")
			continue
		}
		c.fwd = append(c.fwd, "accept: forwarded to "+x.Name)
	}
	if !l.st.capture.CompareAndSwap(nil, c) {
		return nil, fmt.Errorf("capture: interface %q is already being captured", name)
	}
	g.capturing.Add(1)
	return c, nil
}

// Interface is the captured interface's name.
func (c *Capture) Interface() string { return c.link.Name }

// Packets delivers the recorded packets; hand each back with Release.
func (c *Capture) Packets() <-chan *CapturedPacket { return c.ready }

// Release returns a packet's record for reuse.
func (c *Capture) Release(p *CapturedPacket) {
	select {
	case c.free <- p:
	default: // cannot happen: there are only as many records as room
	}
}

// Dropped is the number of packets not recorded because the reader was
// behind; Captured the number recorded.
func (c *Capture) Dropped() uint64 { return c.dropped.Load() }

// Captured is the number of packets recorded.
func (c *Capture) Captured() uint64 { return c.captured.Load() }

// Stop ends the capture; packets already recorded stay readable.
func (c *Capture) Stop() {
	if c.stopped.Swap(true) {
		return
	}
	if c.link.st.capture.CompareAndSwap(c, nil) {
		c.g.capturing.Add(-1)
	}
}

// take returns a free record, or nil (counted) when the reader is behind.
func (c *Capture) take() *CapturedPacket {
	select {
	case r := <-c.free:
		return r
	default:
		c.dropped.Add(1)
		return nil
	}
}

// put hands a filled record to the reader.
func (c *Capture) put(r *CapturedPacket) {
	c.captured.Add(1)
	c.ready <- r
}

// capturedPacket runs one packet read from a captured link: it records
// the packet as read, runs it, and notes its verdict.
func (w *worker) capturedPacket(c *Capture, buf []byte, size int) {
	if !c.wants(w, buf[headroom:headroom+size]) {
		w.packet(buf, size)
		return
	}
	r := c.take()
	if r == nil {
		w.packet(buf, size)
		return
	}
	r.Time, r.Dir = w.capTime, CaptureIn
	r.Data = append(r.Data[:0], buf[headroom:headroom+size]...)
	w.lastDrop = 0
	fwd, local := w.forwarded, w.delivered
	w.packet(buf, size)
	switch {
	case w.lastDrop == DropReject+1:
		r.Verdict = "reject"
	case w.lastDrop != 0:
		r.Verdict = dropVerdicts[w.lastDrop-1]
	case w.forwarded != fwd && w.pk.Out >= 0 && w.pk.Out < len(c.fwd):
		r.Verdict = c.fwd[w.pk.Out]
	case w.forwarded != fwd:
		r.Verdict = "accept: forwarded"
	case w.delivered != local:
		r.Verdict = "accept: to the gateway"
	default:
		r.Verdict = "held: reassembling fragments"
	}
	c.put(r)
}

// captureOut records the packets queued for link out before they are
// written (a link may coalesce them in place as it writes).
func (w *worker) captureOut(c *Capture, q [][]byte) {
	for _, b := range q {
		if !c.wants(w, b[headroom:]) {
			continue
		}
		r := c.take()
		if r == nil {
			continue
		}
		r.Time, r.Dir, r.Verdict = w.capTime, CaptureOut, "sent"
		r.Data = append(r.Data[:0], b[headroom:]...)
		c.put(r)
	}
}

// dropVerdicts are the verdict comments of drops, made once.
var dropVerdicts = func() (v [numDropReasons]string) {
	for i := range v {
		v[i] = "drop: " + DropReason(i).String()
	}
	return v
}()
