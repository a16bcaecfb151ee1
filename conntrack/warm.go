package conntrack

import (
	"encoding/binary"

	"tungate/packet"
)

// Warmer loads, before a batch of packets is processed, the cache lines
// their new connections will need when the table is full: each packet's
// bucket, and the early-drop candidate of its stripe with that
// candidate's buckets. Processed one by one, a new connection in a full
// table waits for each of those lines in turn (in the running gateway the
// kernel's TUN work between two batches evicts them all); loaded in a
// pass over the whole batch with nothing in between that waits (no lock,
// no locked instruction), the misses of different packets overlap. It
// changes nothing in the table: what the batch then does is what it did
// without the pass.
//
// A worker keeps one Warmer and calls Begin, Packet for each packet,
// Victims, and gives the victims to the NAT engine's Warm.
type Warmer struct {
	full    bool
	victims []*Conn
	hs      []uint64
	sink    uint64
}

// Begin starts a batch. It registers res as a reader (as In does), so the
// candidates found stay unreused until res is released; it reports whether
// the table is full, the only case in which warming is worth its pass.
func (w *Warmer) Begin(t *Table, res *Result) bool {
	w.victims = w.victims[:0]
	w.full = t.count.Load() >= int64(t.cfg.Load().Max)
	if w.full {
		t.enter(res)
	}
	return w.full
}

// Packet warms for one raw IP packet (no link header): a TCP or UDP
// packet that is not a fragment, IPv4 without or IPv6 without extension
// headers, which is what a flood of new connections is; anything else is
// left to In.
func (w *Warmer) Packet(t *Table, b []byte) {
	var tu Tuple
	if !rawTuple(b, &tu) {
		return
	}
	h := tu.hash(t.seed)
	w.sink += t.buckets[h&t.mask].tags.Load()
	// A batch of one flow's packets (an established stream while the
	// table is full) names one candidate once.
	if c := t.locks[t.stripe(h)].peek(); c != nil && (len(w.victims) == 0 || w.victims[len(w.victims)-1] != c) {
		w.victims = append(w.victims, c)
	}
}

// Victims loads the candidates found and their buckets, and returns those
// that are still live connections (the slice is the Warmer's, valid until
// the next Begin).
func (w *Warmer) Victims(t *Table) []*Conn {
	live := w.victims[:0]
	for _, c := range w.victims {
		if Status(c.status.Load())&(StatusConfirmed|StatusDying) == StatusConfirmed {
			live = append(live, c)
		}
	}
	w.victims = live
	// Listed, so live when peeked at after res entered the epoch (a dying
	// connection leaves the list before its entry is retired), and
	// Confirmed: the tuples were written before, and the entry is not
	// reused before res is released.
	w.hs = w.hs[:0]
	for _, c := range live {
		w.hs = append(w.hs, c.node[DirOriginal].tuple.hash(t.seed), c.node[DirReply].tuple.hash(t.seed))
	}
	for _, h := range w.hs {
		w.sink += t.buckets[h&t.mask].tags.Load() + uint64(t.locks[t.stripe(h)].pos.Load())
	}
	return live
}

// Add folds another pass's loads into the sink.
func (w *Warmer) Add(s uint64) { w.sink += s }

// Sink is a value of every load made, which the caller keeps so that the
// compiler keeps the loads.
func (w *Warmer) Sink() uint64 { return w.sink }

// rawTuple reads the connection tuple In would look up for a plain TCP or
// UDP packet b, without decoding or checking the rest; false for anything
// else.
func rawTuple(b []byte, tu *Tuple) bool {
	if len(b) < 1 {
		return false
	}
	var l4 []byte
	switch b[0] >> 4 {
	case 4:
		if len(b) < 20 {
			return false
		}
		hl := int(b[0]&15) * 4
		// Any fragment (offset or more-fragments set) goes through
		// reassembly first.
		if hl < 20 || len(b) < hl+4 || binary.BigEndian.Uint16(b[6:])&0x3fff != 0 {
			return false
		}
		tu.Proto, tu.Family = b[9], 4
		tu.Src, tu.Dst = packet.Addr{}, packet.Addr{}
		copy(tu.Src[:4], b[12:16])
		copy(tu.Dst[:4], b[16:20])
		l4 = b[hl:]
	case 6:
		if len(b) < 44 {
			return false
		}
		tu.Proto, tu.Family = b[6], 6
		copy(tu.Src[:], b[8:24])
		copy(tu.Dst[:], b[24:40])
		l4 = b[40:]
	default:
		return false
	}
	if tu.Proto != packet.ProtoTCP && tu.Proto != packet.ProtoUDP {
		return false
	}
	tu.SrcPort = binary.BigEndian.Uint16(l4)
	tu.DstPort = binary.BigEndian.Uint16(l4[2:])
	return true
}
