package packet

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"slices"
	"sync"
	"time"
)

// Errors returned by Reassembler.Add. Every one but ErrNotFragment means
// the fragment was not kept; the ones about the datagram mean everything
// held for it was dropped too.
var (
	ErrNotFragment   = errors.New("packet: not a fragment")
	ErrFragOverlap   = errors.New("packet: overlapping fragments, datagram dropped")
	ErrFragTooBig    = errors.New("packet: reassembled datagram over 65535 bytes, dropped")
	ErrFragMalformed = errors.New("packet: malformed fragment")
	ErrFragLimit     = errors.New("packet: reassembly limit reached, datagram dropped")
)

// Reassembly defaults, as Linux sets them: ipfrag_high_thresh (4 MiB),
// ipfrag_time (30 s) and ip6frag_time (60 s, RFC 8200 4.5).
const (
	DefaultReassemblyMaxBytes     = 4 << 20
	DefaultReassemblyTimeout4     = 30 * time.Second
	DefaultReassemblyTimeout6     = 60 * time.Second
	DefaultReassemblyMaxFragments = 128
	DefaultReassemblyMaxDatagrams = 1024
)

// ReassemblyConfig limits what a Reassembler holds. Zero fields take the
// defaults above.
type ReassemblyConfig struct {
	// MaxBytes bounds the memory held for incomplete datagrams; when a
	// fragment would pass it, the oldest datagrams are dropped.
	MaxBytes int `toml:"max_bytes"`
	// Timeout4 and Timeout6 are how long an incomplete datagram is kept,
	// counted from its first fragment to arrive (Linux does not extend it).
	Timeout4 time.Duration `toml:"timeout_ipv4"`
	Timeout6 time.Duration `toml:"timeout_ipv6"`
	// MaxFragments is the most fragments one datagram may have: 128 carry
	// a 64 KiB datagram over 576-byte links, more is an attack.
	MaxFragments int `toml:"max_fragments"`
	// MaxDatagrams bounds the number of incomplete datagrams; the oldest
	// is dropped to make room.
	MaxDatagrams int `toml:"max_datagrams"`
}

// Validate reports a negative limit, naming the key.
func (c ReassemblyConfig) Validate() error {
	for _, f := range []struct {
		key string
		v   int64
	}{
		{"max_bytes", int64(c.MaxBytes)},
		{"timeout_ipv4", int64(c.Timeout4)},
		{"timeout_ipv6", int64(c.Timeout6)},
		{"max_fragments", int64(c.MaxFragments)},
		{"max_datagrams", int64(c.MaxDatagrams)},
	} {
		if f.v < 0 {
			return fmt.Errorf("reassembly.%s = %d: must not be negative", f.key, f.v)
		}
	}
	return nil
}

func (c ReassemblyConfig) withDefaults() ReassemblyConfig {
	if c.MaxBytes == 0 {
		c.MaxBytes = DefaultReassemblyMaxBytes
	}
	if c.Timeout4 == 0 {
		c.Timeout4 = DefaultReassemblyTimeout4
	}
	if c.Timeout6 == 0 {
		c.Timeout6 = DefaultReassemblyTimeout6
	}
	if c.MaxFragments == 0 {
		c.MaxFragments = DefaultReassemblyMaxFragments
	}
	if c.MaxDatagrams == 0 {
		c.MaxDatagrams = DefaultReassemblyMaxDatagrams
	}
	return c
}

// ReassemblyResult tells what Reassemble did with one fragment.
type ReassemblyResult struct {
	// N is the length of the datagram written to out when Done.
	N int
	// Done reports that the fragment completed its datagram.
	Done bool
	// MaxFragSize is the largest fragment (IP length) of the datagram, set
	// when Done. Forwarding a reassembled IPv6 datagram must not produce
	// fragments larger than this (Linux frag_max_size; RFC 8200 5): when
	// it exceeds the out MTU the answer is packet too big.
	MaxFragSize int
	// Fragments is how many fragments made the datagram, set when Done.
	Fragments int
}

// ReassemblyStats counts what a Reassembler did, for metrics.
type ReassemblyStats struct {
	Reassembled uint64 // datagrams completed
	Duplicates  uint64 // exact duplicate fragments ignored
	Overlaps    uint64 // datagrams dropped for overlapping fragments
	Malformed   uint64 // fragments or datagrams dropped as malformed
	TooBig      uint64 // datagrams dropped for exceeding 65535 bytes
	Limited     uint64 // datagrams dropped by MaxFragments or MaxBytes
	Evicted     uint64 // oldest datagrams dropped to make room
	Timeouts    uint64 // datagrams dropped incomplete at their deadline
	Datagrams   int    // incomplete datagrams held now
	Bytes       int    // memory accounted to them now
}

// Reassembler puts IPv4 and IPv6 fragments back together, keyed by
// (source, destination, protocol, identification, family).
//
// It follows Linux (ip_fragment.c, reassembly.c, inet_fragment.c): an exact
// duplicate fragment is ignored, any other overlap drops the whole datagram
// (RFC 5722, and for IPv4 since Linux 4.19), a last fragment that
// contradicts the length known so far drops it, an IPv4 non-last fragment
// is trimmed to a multiple of 8 while an IPv6 one is refused (RFC 8200 4.5),
// and ECN codepoints are combined per RFC 3168 5.3. It is safe for
// concurrent use.
type Reassembler struct {
	cfg     ReassemblyConfig
	timeout [2]int64 // ns, by family index

	// mu guards every field below. Fragments are rare on a gateway, so
	// one lock for the whole table is cheaper than anything finer.
	mu     sync.Mutex
	queues map[fragKey]*fragQueue
	// lists holds the queues of each family oldest first. All queues of a
	// family share its timeout, so this is deadline order too.
	lists  [2]fragList
	mem    int
	freeQ  []*fragQueue
	chunks [numChunkClasses][][]byte // recycled fragment buffers by size class
	// chunkMem is the memory in chunks, bounded by maxFreeMem so an attack
	// that has passed leaves no more than that behind.
	chunkMem int
	stats    ReassemblyStats
}

// Memory accounting overheads, standing in for Linux's skb truesize.
const (
	queueOverhead = 256
	fragOverhead  = 64
	maxFreeQueues = 64
)

// Fragment data lives in buffers of 256 B … 64 KiB, powers of two.
const (
	minChunkShift   = 8
	numChunkClasses = 9
)

type fragKey struct {
	src, dst Addr
	id       uint32
	proto    uint8
	version  uint8
}

type fragQueue struct {
	key        fragKey
	created    int64
	deadline   int64
	prev, next *fragQueue
	frags      []frag // sorted by offset, never overlapping
	length     int    // highest end seen; the total once lastIn
	recvd      int    // data bytes held
	mem        int    // accounted memory
	maxSize    int    // largest fragment, IP length
	hdrLen     int    // first fragment's header (IPv6: unfragmentable part)
	nhPos      int    // IPv6: offset of the next header field naming the fragment header
	nh         uint8  // IPv6: the fragment header's next header
	ecn        uint8  // bit per ECN codepoint seen
	firstIn    bool
	lastIn     bool
}

type frag struct {
	off, end int    // place in the fragmentable part
	buf      []byte // pooled chunk
	start    int    // where the data starts in buf (after the first fragment's header)
}

type fragList struct{ head, tail *fragQueue }

func (l *fragList) push(q *fragQueue) {
	q.prev, q.next = l.tail, nil
	if l.tail != nil {
		l.tail.next = q
	} else {
		l.head = q
	}
	l.tail = q
}

func (l *fragList) remove(q *fragQueue) {
	if q.prev != nil {
		q.prev.next = q.next
	} else {
		l.head = q.next
	}
	if q.next != nil {
		q.next.prev = q.prev
	} else {
		l.tail = q.prev
	}
	q.prev, q.next = nil, nil
}

// NewReassembler returns a Reassembler with cfg's limits (zero fields take
// the defaults). Negative values are treated as zero; Validate reports them.
func NewReassembler(cfg ReassemblyConfig) *Reassembler {
	cfg.MaxBytes = max(cfg.MaxBytes, 0)
	cfg.Timeout4 = max(cfg.Timeout4, 0)
	cfg.Timeout6 = max(cfg.Timeout6, 0)
	cfg.MaxFragments = max(cfg.MaxFragments, 0)
	cfg.MaxDatagrams = max(cfg.MaxDatagrams, 0)
	cfg = cfg.withDefaults()
	return &Reassembler{
		cfg:     cfg,
		timeout: [2]int64{int64(cfg.Timeout4), int64(cfg.Timeout6)},
		queues:  make(map[fragKey]*fragQueue),
	}
}

// Add feeds one fragment, decoded into p, at time now (monotonic ns, the
// conntrack clock). When it completes its datagram, the datagram is written
// to out and Add returns its length and done. Otherwise the fragment's
// bytes were copied and p's buffer may be reused. out may be p's own buffer:
// every fragment is copied out before the datagram is written. See
// Reassemble for more about the datagram.
func (r *Reassembler) Add(p *Parsed, now int64, out []byte) (n int, done bool, err error) {
	res, err := r.Reassemble(p, now, out)
	return res.N, res.Done, err
}

// Reassemble is Add returning everything known about the completed
// datagram. An IPv4 datagram gets its first fragment's header with MF and
// the offset cleared (DF kept), total length and checksum fixed; an IPv6
// one its first fragment's unfragmentable part, the fragment header removed,
// next header and payload length fixed. out must hold the datagram
// (ErrNoRoom drops it otherwise; 65535 bytes always do for IPv4, 65575 for
// IPv6). Datagrams past their deadline are dropped first.
func (r *Reassembler) Reassemble(p *Parsed, now int64, out []byte) (ReassemblyResult, error) {
	if !p.Fragment || (p.Version != 4 && p.Version != 6) {
		return ReassemblyResult{}, ErrNotFragment
	}
	b := p.b
	key := fragKey{src: p.Src, dst: p.Dst, id: p.FragID, proto: p.Proto, version: p.Version}
	fam := 0
	var hdrLen, dataStart, maxEnd int
	if p.Version == 4 {
		hdrLen = p.IPHeaderLen()
		dataStart = hdrLen
		maxEnd = 0xffff - hdrLen
	} else {
		hdrLen = p.fragHdrOff
		dataStart = hdrLen + 8
		maxEnd = 0xffff - (hdrLen - 40)
		key.proto = b[p.fragHdrOff] // the first fragment's Proto is past later headers
		fam = 1
	}
	data := b[dataStart:]
	off := p.FragOff
	end := off + len(data)

	r.mu.Lock()
	defer r.mu.Unlock()
	r.expire(now)

	if p.MoreFragments && len(data)&7 != 0 {
		if fam == 1 {
			r.stats.Malformed++
			return ReassemblyResult{}, ErrFragMalformed
		}
		end &^= 7
		data = data[:end-off]
	}
	q := r.queues[key]
	if end > maxEnd {
		if q != nil {
			r.release(q)
		}
		r.stats.TooBig++
		return ReassemblyResult{}, ErrFragTooBig
	}
	if end == off {
		if q != nil {
			r.release(q)
		}
		r.stats.Malformed++
		return ReassemblyResult{}, ErrFragMalformed
	}
	if q == nil {
		q = r.newQueue(key, fam, now)
	}
	if !p.MoreFragments {
		if end < q.length || (q.lastIn && end != q.length) {
			r.release(q)
			r.stats.Malformed++
			return ReassemblyResult{}, ErrFragMalformed
		}
		q.lastIn = true
		q.length = end
	} else if end > q.length {
		if q.lastIn {
			r.release(q)
			r.stats.Malformed++
			return ReassemblyResult{}, ErrFragMalformed
		}
		q.length = end
	}

	// Most fragments arrive in order: look for the place from the end.
	i := len(q.frags)
	for i > 0 && q.frags[i-1].off >= off {
		i--
	}
	if i < len(q.frags) && q.frags[i].off == off && q.frags[i].end == end {
		r.stats.Duplicates++
		return ReassemblyResult{}, nil
	}
	if (i > 0 && q.frags[i-1].end > off) || (i < len(q.frags) && q.frags[i].off < end) {
		r.release(q)
		r.stats.Overlaps++
		return ReassemblyResult{}, ErrFragOverlap
	}
	if len(q.frags) >= r.cfg.MaxFragments {
		r.release(q)
		r.stats.Limited++
		return ReassemblyResult{}, ErrFragLimit
	}

	chunkLen := len(data)
	nhPos := 0
	if off == 0 {
		chunkLen += hdrLen
		if fam == 1 {
			var ok bool
			if nhPos, ok = fragNextHeaderPos(b, hdrLen); !ok {
				r.release(q)
				r.stats.Malformed++
				return ReassemblyResult{}, ErrFragMalformed
			}
		}
	}
	need := chunkSize(chunkLen) + fragOverhead
	for r.mem+need > r.cfg.MaxBytes {
		victim := r.oldest(q)
		if victim == nil {
			r.release(q)
			r.stats.Limited++
			return ReassemblyResult{}, ErrFragLimit
		}
		r.release(victim)
		r.stats.Evicted++
	}

	f := frag{off: off, end: end, buf: r.getChunk(chunkLen)}
	if off == 0 {
		copy(f.buf, b[:hdrLen])
		f.start = hdrLen
		q.firstIn = true
		q.hdrLen = hdrLen
		if fam == 1 {
			q.nhPos = nhPos
			q.nh = b[p.fragHdrOff]
		}
	}
	copy(f.buf[f.start:], data)
	q.frags = slices.Insert(q.frags, i, f)
	q.recvd += len(data)
	q.mem += need
	r.mem += need
	q.maxSize = max(q.maxSize, len(b))
	q.ecn |= 1 << ecnOf(b)

	if !q.firstIn || !q.lastIn || q.recvd != q.length {
		return ReassemblyResult{}, nil
	}
	return r.complete(q, out)
}

// complete writes the whole datagram of q to out and forgets q.
func (r *Reassembler) complete(q *fragQueue, out []byte) (ReassemblyResult, error) {
	total := q.hdrLen + q.length
	v4 := q.key.version == 4
	if (v4 && total > 0xffff) || (!v4 && total-40 > 0xffff) {
		r.release(q)
		r.stats.TooBig++
		return ReassemblyResult{}, ErrFragTooBig
	}
	// RFC 3168 5.3: not-ECT mixed with ECT or CE is invalid; CE anywhere
	// marks the datagram.
	const notECT, ce = 1 << 0, 1 << 3
	if q.ecn&notECT != 0 && q.ecn != notECT {
		r.release(q)
		r.stats.Malformed++
		return ReassemblyResult{}, ErrFragMalformed
	}
	if len(out) < total {
		r.release(q)
		return ReassemblyResult{}, ErrNoRoom
	}
	first := q.frags[0]
	copy(out, first.buf[:first.start])
	for _, f := range q.frags {
		copy(out[q.hdrLen+f.off:], f.buf[f.start:f.start+f.end-f.off])
	}
	if v4 {
		binary.BigEndian.PutUint16(out[2:], uint16(total))
		out[6] &= 0x40 // keep DF; clear MF, the offset and the reserved bit
		out[7] = 0
		if q.ecn&ce != 0 {
			out[1] |= 3
		}
		SetIPv4Checksum(out[:q.hdrLen])
	} else {
		binary.BigEndian.PutUint16(out[4:], uint16(total-40))
		out[q.nhPos] = q.nh
		if q.ecn&ce != 0 {
			out[1] |= 0x30
		}
	}
	res := ReassemblyResult{N: total, Done: true, MaxFragSize: q.maxSize, Fragments: len(q.frags)}
	r.stats.Reassembled++
	r.release(q)
	return res, nil
}

// Expire drops the datagrams whose deadline is at or before now and
// returns how many. Add does the same lazily; a periodic call frees memory
// when no fragments arrive.
func (r *Reassembler) Expire(now int64) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.expire(now)
}

// Stats returns the counters.
func (r *Reassembler) Stats() ReassemblyStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.stats
	s.Datagrams = len(r.queues)
	s.Bytes = r.mem
	return s
}

func (r *Reassembler) expire(now int64) int {
	n := 0
	for i := range r.lists {
		for q := r.lists[i].head; q != nil && q.deadline <= now; q = r.lists[i].head {
			r.release(q)
			n++
		}
	}
	r.stats.Timeouts += uint64(n)
	return n
}

func (r *Reassembler) newQueue(key fragKey, fam int, now int64) *fragQueue {
	if len(r.queues) >= r.cfg.MaxDatagrams {
		if victim := r.oldest(nil); victim != nil {
			r.release(victim)
			r.stats.Evicted++
		}
	}
	var q *fragQueue
	if n := len(r.freeQ); n > 0 {
		q = r.freeQ[n-1]
		r.freeQ = r.freeQ[:n-1]
	} else {
		q = &fragQueue{frags: make([]frag, 0, 8)}
	}
	q.key = key
	q.created = now
	q.deadline = now + r.timeout[fam]
	q.mem = queueOverhead
	r.mem += queueOverhead
	r.lists[fam].push(q)
	r.queues[key] = q
	return q
}

// oldest returns the queue created first, other than except.
func (r *Reassembler) oldest(except *fragQueue) *fragQueue {
	var best *fragQueue
	for i := range r.lists {
		q := r.lists[i].head
		if q != nil && q == except {
			q = q.next
		}
		if q != nil && (best == nil || q.created < best.created) {
			best = q
		}
	}
	return best
}

// release forgets q, whether completed, dropped or expired, recycling its
// buffers.
func (r *Reassembler) release(q *fragQueue) {
	fam := 0
	if q.key.version == 6 {
		fam = 1
	}
	r.lists[fam].remove(q)
	delete(r.queues, q.key)
	r.mem -= q.mem
	for i := range q.frags {
		r.putChunk(q.frags[i].buf)
		q.frags[i] = frag{}
	}
	frags := q.frags[:0]
	*q = fragQueue{frags: frags}
	if len(r.freeQ) < maxFreeQueues {
		r.freeQ = append(r.freeQ, q)
	}
}

func chunkClass(n int) int {
	if n <= 1<<minChunkShift {
		return 0
	}
	return bits.Len(uint(n-1)) - minChunkShift
}

func chunkSize(n int) int { return 1 << (minChunkShift + chunkClass(n)) }

func (r *Reassembler) getChunk(n int) []byte {
	c := chunkClass(n)
	if l := len(r.chunks[c]); l > 0 {
		b := r.chunks[c][l-1]
		r.chunks[c] = r.chunks[c][:l-1]
		r.chunkMem -= cap(b)
		return b
	}
	return make([]byte, 1<<(minChunkShift+c))
}

func (r *Reassembler) putChunk(b []byte) {
	if b == nil || r.chunkMem+cap(b) > r.cfg.MaxBytes/4 {
		return
	}
	c := chunkClass(cap(b))
	r.chunks[c] = append(r.chunks[c], b[:cap(b)])
	r.chunkMem += cap(b)
}

// fragNextHeaderPos returns the offset of the next header field that names
// the fragment header at fragOff, walking the chain Decode already checked.
func fragNextHeaderPos(b []byte, fragOff int) (int, bool) {
	pos, off := 6, 40
	for off < fragOff {
		if len(b) < off+2 {
			return 0, false
		}
		nh := b[pos]
		pos = off
		if nh == ProtoAH {
			off += (int(b[off+1]) + 2) * 4
		} else {
			off += (int(b[off+1]) + 1) * 8
		}
	}
	return pos, off == fragOff
}

// ecnOf returns the ECN codepoint of an IP packet.
func ecnOf(b []byte) uint8 {
	if b[0]>>4 == 4 {
		return b[1] & 3
	}
	return b[1] >> 4 & 3
}
