package conntrack

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"runtime"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"tungate/packet"
)

// The state file: the table written out on shutdown (and on `tungate
// save`) and read back on start, so a restart keeps its connections, as
// conntrackd's cache keeps them across a failover.
//
// Format, version 1; integers little-endian, varints as encoding/binary's:
//
//	header  magic "TGCTSTAT", version u16, host (u16 length, bytes),
//	        write time (i64, Unix ns), connections u64, expectations u64,
//	        body length u64, body CRC-32C u32, header CRC-32C u32 (over
//	        every header byte before it)
//	body    records: kind u8 ('C' connection, 'E' expectation, 'X'
//	        extra), payload length u32, payload; connections first, then
//	        expectations, then extras
//
// An extra record is a named blob the table does not interpret
// (StateOptions.Extra, RestoreReport.Extra): the gateway's runtime layer
// (set elements and port forwards added at run time) rides in it. Its
// payload is the name (u16 length, bytes) and the blob.
//
// A connection record holds both tuples, status bits, mark, the time it
// had left, the counters, its tracker's state (TCP window data), the
// helper name, sequence offsets, the learnt second reply tuple, and one
// named blob per StateCodec that had something to say (the NAT binding,
// the helper's parser state). Connections are written as the table is
// walked, without a copy of the table; the counts and checksum are known
// only at the end, so the writer leaves the header for last (WriterAt).
//
// Reading makes two passes: the first checks the header, the checksum
// and the shape of every record and changes nothing, so a damaged file
// is refused whole; the second restores the entries through the same
// insert path as live ones (newEntry, Confirm).

// stateMagic opens every state file.
const stateMagic = "TGCTSTAT"

// StateVersion is the format version written; files of another are refused.
const StateVersion = 1

// maxStateRecord bounds one record: a connection's blobs are small (a
// helper's held line is at most a kilobyte), and a corrupt length must
// not make the reader allocate gigabytes.
const maxStateRecord = 1 << 20

// maxStateHost bounds the host identity in the header.
const maxStateHost = 1024

// Record kinds.
const (
	recConn   = 'C'
	recExpect = 'E'
	recExtra  = 'X'
)

// persistedStatus are the status bits a record keeps: the table's own
// bookkeeping (confirmed, dying, pinned, expecting) is set again by the
// insert path.
const persistedStatus = ^(StatusConfirmed | StatusDying | statusPinned | statusExpecting)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// StateCodec saves and restores the state that an owner outside this
// package keeps on connections and expectations: the NAT engine its
// bindings (so their ports are held again), the helper registry its
// parser state and the callbacks of expectations.
type StateCodec interface {
	// StateName names the owner's blob in a record ("nat", "helper").
	StateName() string
	// AppendConnState appends c's state; appending nothing means none.
	AppendConnState(b []byte, c *Conn) []byte
	// RestoreConnState gives c, rebuilt but not yet confirmed, the
	// state a blob holds. A *DropError names why c cannot be restored
	// (its NAT rule is gone); any other error is a corrupt blob.
	RestoreConnState(c *Conn, d *StateDecoder) error
	// AppendExpectationState and RestoreExpectationState are the same
	// for an expectation (before Expect adds it).
	AppendExpectationState(b []byte, e *Expectation) []byte
	RestoreExpectationState(e *Expectation, d *StateDecoder) error
}

// DropError is a StateCodec's reason not to restore an entry; Reason is
// a short label for logs and metrics ("interface", "nat_rule").
type DropError struct {
	Reason string
	Msg    string
}

func (e *DropError) Error() string { return e.Reason + ": " + e.Msg }

// StateOptions are what SaveState and RestoreState need besides the table.
type StateOptions struct {
	// Host identifies the machine; a file written on another is refused
	// (its TUN devices and peers are not this machine's).
	Host string
	// Time is the wall clock now (zero: time.Now()): a restored entry
	// keeps the time it had left minus the time between.
	Time time.Time
	// Codecs save and restore what other packages keep on entries.
	Codecs []StateCodec
	// Extra are named blobs saved after the entries (SaveState) and
	// handed back whole by RestoreState in RestoreReport.Extra.
	Extra map[string][]byte
	// Workers is how many goroutines save or restore connections
	// (0: GOMAXPROCS; at most 4). Most of either is cache misses on
	// entries spread over the heap, which cores wait for side by side.
	Workers int
}

func (o *StateOptions) now() time.Time {
	if o.Time.IsZero() {
		return time.Now()
	}
	return o.Time
}

// SaveReport says what SaveState wrote.
type SaveReport struct {
	Conns, Expectations int
	Bytes               int64
}

// SaveState writes the table's live connections and expectations to w in
// the state file format. The table may be in use meanwhile (`tungate
// save` on a running gateway): each entry is read under its lock, and the
// file holds what was live as the walk passed it.
func (t *Table) SaveState(w io.WriterAt, opt StateOptions) (SaveReport, error) {
	return t.saveState(w, opt, t.Now())
}

// saveState is SaveState at table time now (tests run the table on a
// clock of their own).
func (t *Table) saveState(w io.WriterAt, opt StateOptions, now int64) (SaveReport, error) {
	var rep SaveReport
	if len(opt.Host) > maxStateHost {
		return rep, errors.New("conntrack: state file host identity too long")
	}
	wall := opt.now()
	hdr := appendStateHeader(nil, opt.Host, wall, 0, 0, 0, 0)
	bw := bufio.NewWriterSize(io.NewOffsetWriter(w, int64(len(hdr))), 256<<10)
	var crc uint32
	var body int64
	var err error
	rec := make([]byte, 0, 512)
	emit := func(kind byte, payload []byte) {
		if err != nil {
			return
		}
		var h [5]byte
		h[0] = kind
		binary.LittleEndian.PutUint32(h[1:], uint32(len(payload)))
		crc = crc32.Update(crc, castagnoli, h[:])
		crc = crc32.Update(crc, castagnoli, payload)
		if _, err = bw.Write(h[:]); err == nil {
			_, err = bw.Write(payload)
		}
		body += int64(len(h) + len(payload))
	}
	workers := opt.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	n, werr := t.saveConns(now, min(workers, maxWorkers), opt.Codecs, func(chunk []byte) error {
		crc = crc32.Update(crc, castagnoli, chunk)
		body += int64(len(chunk))
		_, err := bw.Write(chunk)
		return err
	})
	rep.Conns, err = n, werr
	if err == nil {
		t.Expectations(func(e *Expectation) bool {
			rec = appendExpectRecord(rec[:0], e, now, opt.Codecs)
			emit(recExpect, rec)
			rep.Expectations++
			return err == nil
		})
	}
	if err == nil {
		names := make([]string, 0, len(opt.Extra))
		for name := range opt.Extra {
			names = append(names, name)
		}
		slices.Sort(names) // the same table and extras write the same file
		for _, name := range names {
			if len(name) > 0xffff || len(opt.Extra[name])+len(name)+2 > maxStateRecord {
				return rep, fmt.Errorf("conntrack: state file extra %q too large", name)
			}
			rec = binary.LittleEndian.AppendUint16(rec[:0], uint16(len(name)))
			rec = append(append(rec, name...), opt.Extra[name]...)
			emit(recExtra, rec)
		}
	}
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		return rep, err
	}
	hdr = appendStateHeader(hdr[:0], opt.Host, wall, uint64(rep.Conns), uint64(rep.Expectations), uint64(body), crc)
	if _, err := w.WriteAt(hdr, 0); err != nil {
		return rep, err
	}
	rep.Bytes = int64(len(hdr)) + body
	return rep, nil
}

// saveChunk is how many bytes of records a save worker collects before
// handing them to the writer.
const saveChunk = 256 << 10

// saveConns walks the table on up to workers goroutines, each over its
// share of the buckets, and hands whole chunks of connection records to
// write, one at a time in the caller's goroutine. Each bucket is walked by
// one worker, so each connection is written once; masters' entries are
// never reused, so their addresses name them for the whole save (stateID)
// although each worker holds the walk only for its share. It returns how
// many connections were written and the first error of write.
func (t *Table) saveConns(now int64, workers int, codecs []StateCodec, write func([]byte) error) (int, error) {
	workers = max(workers, 1)
	chunks := make(chan []byte, 2*workers)
	free := make(chan []byte, 2*workers+workers)
	var stop atomic.Bool
	counts := make([]int, workers)
	var wg sync.WaitGroup
	for i := range workers {
		lo, hi := i*len(t.buckets)/workers, (i+1)*len(t.buckets)/workers
		wg.Add(1)
		go func() {
			defer wg.Done()
			t.walkStart()
			defer t.walkEnd()
			chunk := make([]byte, 0, saveChunk+4096)
			rec := make([]byte, 0, 512)
			for j := lo; j < hi && !stop.Load(); j++ {
				t.buckets[j].each(func(nd *hashNode) bool {
					if nd.kind != nodeOriginal {
						return true
					}
					c, _ := nd.conn()
					if c.Status()&StatusDying != 0 || c.expires.Load() <= now {
						return true
					}
					rec = t.appendConnRecord(rec[:0], c, now, codecs)
					if len(rec) > maxStateRecord {
						return true // cannot be read back: leave it out
					}
					chunk = append(chunk, recConn, 0, 0, 0, 0)
					binary.LittleEndian.PutUint32(chunk[len(chunk)-4:], uint32(len(rec)))
					chunk = append(chunk, rec...)
					counts[i]++
					if len(chunk) >= saveChunk {
						chunks <- chunk
						select {
						case chunk = <-free:
						default:
							chunk = make([]byte, 0, saveChunk+4096)
						}
					}
					return true
				})
			}
			if len(chunk) > 0 {
				chunks <- chunk
			}
		}()
	}
	go func() {
		wg.Wait()
		close(chunks)
	}()
	var err error
	for chunk := range chunks {
		if err == nil {
			if err = write(chunk); err != nil {
				stop.Store(true)
			}
		}
		select {
		case free <- chunk[:0]:
		default:
		}
	}
	n := 0
	for _, c := range counts {
		n += c
	}
	return n, err
}

// appendStateHeader appends the header with its checksum.
func appendStateHeader(b []byte, host string, wall time.Time, conns, expects, body uint64, crc uint32) []byte {
	start := len(b)
	b = append(b, stateMagic...)
	b = binary.LittleEndian.AppendUint16(b, StateVersion)
	b = binary.LittleEndian.AppendUint16(b, uint16(len(host)))
	b = append(b, host...)
	b = binary.LittleEndian.AppendUint64(b, uint64(wall.UnixNano()))
	b = binary.LittleEndian.AppendUint64(b, conns)
	b = binary.LittleEndian.AppendUint64(b, expects)
	b = binary.LittleEndian.AppendUint64(b, body)
	b = binary.LittleEndian.AppendUint32(b, crc)
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b[start:], castagnoli))
}

// stateID names a connection within one file, for its expectations and
// RELATED children: its address, which cannot be reused while the walk
// holds the table (Range), and never for a master (an entry with an
// extension is not reused at all). Only masters get one; others write 0.
func stateID(c *Conn) uint64 { return uint64(uintptr(unsafe.Pointer(c))) }

// isMaster reports whether c has (or had) expectations or children.
func isMaster(c *Conn) bool {
	if c.Status()&statusExpecting != 0 {
		return true
	}
	e := c.ext.Load()
	return e != nil && e.children.Load() > 0
}

func (t *Table) appendConnRecord(b []byte, c *Conn, now int64, codecs []StateCodec) []byte {
	var id, master uint64
	if isMaster(c) {
		id = stateID(c)
	}
	if m := c.Master(); m != nil {
		master = stateID(m)
	}
	b = binary.AppendUvarint(b, id)
	b = binary.AppendUvarint(b, master)
	b = AppendStateTuple(b, &c.node[DirOriginal].tuple)
	b = AppendStateTuple(b, &c.node[DirReply].tuple)
	b = binary.LittleEndian.AppendUint32(b, uint32(c.Status()&persistedStatus))
	b = binary.LittleEndian.AppendUint32(b, c.mark.Load())
	b = binary.AppendVarint(b, c.expires.Load()-now)
	for d := range 2 {
		b = binary.AppendUvarint(b, c.acct[d].Packets.Load())
		b = binary.AppendUvarint(b, c.acct[d].Bytes.Load())
	}
	c.mu.Lock()
	b = appendProtoState(b, c, now)
	var flags uint8
	e := c.ext.Load()
	var helper string
	var adj [2]SeqAdj
	var alias *aliasNode
	var proxy SynProxy
	if e != nil {
		helper, adj, proxy = e.Helper, e.SeqAdj, e.Proxy
		alias = e.alias.Load()
		if helper != "" || adj != ([2]SeqAdj{}) {
			flags |= 1
		}
		if alias != nil {
			flags |= 2
		}
		if proxy.Proxied {
			// A SYN-proxied connection is translated on every packet:
			// without this state it would not survive the restart.
			flags |= 4
		}
	}
	c.mu.Unlock()
	b = append(b, flags)
	if flags&1 != 0 {
		b = AppendStateString(b, helper)
		for d := range 2 {
			b = binary.LittleEndian.AppendUint32(b, adj[d].CorrectionPos)
			b = binary.AppendVarint(b, int64(adj[d].OffsetBefore))
			b = binary.AppendVarint(b, int64(adj[d].OffsetAfter))
		}
	}
	if flags&2 != 0 {
		b = AppendStateTuple(b, &alias.node.tuple)
	}
	if flags&4 != 0 {
		b = appendSynProxy(b, &proxy)
	}
	return appendBlobs(b, codecs, func(b []byte, cd StateCodec) []byte { return cd.AppendConnState(b, c) })
}

// appendBlobs appends each codec's non-empty blob, named, after a count.
func appendBlobs(b []byte, codecs []StateCodec, add func([]byte, StateCodec) []byte) []byte {
	at := len(b)
	b = append(b, 0) // count, filled below (fewer than 128 codecs: one byte)
	n := 0
	for _, cd := range codecs {
		mark := len(b)
		b = AppendStateString(b, cd.StateName())
		lenAt := len(b)
		b = append(b, 0, 0, 0, 0)
		b = add(b, cd)
		if len(b) == lenAt+4 {
			b = b[:mark]
			continue
		}
		binary.LittleEndian.PutUint32(b[lenAt:], uint32(len(b)-lenAt-4))
		n++
	}
	b[at] = byte(n)
	return b
}

// appendProtoState appends the tracker's part of the connection (c.mu
// held): TCP's window tracking whole, SCTP's tags and state, UDP's stream
// time relative to now.
func appendProtoState(b []byte, c *Conn, now int64) []byte {
	switch c.node[DirOriginal].tuple.Proto {
	case packet.ProtoTCP:
		s := &c.proto.tcp
		b = append(b, 56)
		for d := range 2 {
			p := &s.seen[d]
			b = binary.LittleEndian.AppendUint32(b, p.end)
			b = binary.LittleEndian.AppendUint32(b, p.maxEnd)
			b = binary.LittleEndian.AppendUint32(b, p.maxWin)
			b = binary.LittleEndian.AppendUint32(b, p.maxAck)
		}
		b = binary.LittleEndian.AppendUint32(b, s.lastSeq)
		b = binary.LittleEndian.AppendUint32(b, s.lastAck)
		b = binary.LittleEndian.AppendUint32(b, s.lastEnd)
		b = binary.LittleEndian.AppendUint16(b, s.lastWin)
		return append(b, s.scale[0], s.scale[1], s.flags[0], s.flags[1], s.state,
			s.lastIndex, uint8(s.lastDir), s.lastWscale, s.lastFlags, s.retrans)
	case packet.ProtoSCTP:
		s := c.proto.sctp()
		b = append(b, 14)
		b = binary.LittleEndian.AppendUint32(b, s.vtag[0])
		b = binary.LittleEndian.AppendUint32(b, s.vtag[1])
		b = append(b, s.state)
		b = AppendStateBool(b, s.init[0])
		b = AppendStateBool(b, s.init[1])
		b = AppendStateBool(b, s.hbTagFailed)
		return append(b, uint8(s.hbDir), 0)
	case packet.ProtoUDP:
		var v [binary.MaxVarintLen64]byte
		n := binary.PutVarint(v[:], *c.proto.udpStreamTS()-now)
		b = append(b, byte(n))
		return append(b, v[:n]...)
	}
	return append(b, 0)
}

func appendExpectRecord(b []byte, e *Expectation, now int64, codecs []StateCodec) []byte {
	b = binary.AppendUvarint(b, stateID(e.Master))
	b = AppendStateTuple(b, &e.Tuple)
	b = append(b, e.Mask.Src[:]...)
	b = append(b, e.Mask.Dst[:]...)
	b = binary.LittleEndian.AppendUint16(b, e.Mask.SrcPort)
	b = binary.LittleEndian.AppendUint16(b, e.Mask.DstPort)
	b = AppendStateString(b, e.Helper)
	b = AppendStateBool(b, e.HelperFollows)
	b = append(b, e.Class)
	b = binary.AppendVarint(b, e.Expires-now)
	return appendBlobs(b, codecs, func(b []byte, cd StateCodec) []byte { return cd.AppendExpectationState(b, e) })
}

// StateFileError is a state file refused whole; Reason is a short label
// ("truncated", "checksum", "magic", "version", "host", "corrupt", "empty").
type StateFileError struct {
	Reason string
	Msg    string
}

func (e *StateFileError) Error() string { return "state file " + e.Reason + ": " + e.Msg }

func stateErr(reason, format string, args ...any) error {
	return &StateFileError{Reason: reason, Msg: fmt.Sprintf(format, args...)}
}

// RestoreReport says what RestoreState did.
type RestoreReport struct {
	// Host and Written are the file's.
	Host    string
	Written time.Time
	// Conns and Expectations are the entries the file holds.
	Conns, Expectations int
	// Restored and RestoredExpectations were put back; Expired had no
	// time left; Dropped counts the others by reason.
	Restored, RestoredExpectations, Expired int
	Dropped                                 map[string]int
	// Extra are the file's extra blobs by name (StateOptions.Extra).
	Extra map[string][]byte
}

func (r *RestoreReport) drop(reason string) {
	if r.Dropped == nil {
		r.Dropped = map[string]int{}
	}
	r.Dropped[reason]++
}

// stateHeader is a decoded header.
type stateHeader struct {
	host           string
	written        time.Time
	conns, expects uint64
	body           uint64
	crc            uint32
	size           int64
}

// readStateHeader reads and checks the header (not the host).
func readStateHeader(r *bufio.Reader) (*stateHeader, error) {
	var fixed [12]byte
	n, err := io.ReadFull(r, fixed[:])
	if n == 0 && errors.Is(err, io.EOF) {
		return nil, stateErr("empty", "the file is empty")
	}
	if err != nil {
		return nil, stateErr("truncated", "header cut short at %d bytes", n)
	}
	if string(fixed[:8]) != stateMagic {
		return nil, stateErr("magic", "not a tungate state file (magic %q)", fixed[:8])
	}
	if v := binary.LittleEndian.Uint16(fixed[8:]); v != StateVersion {
		return nil, stateErr("version", "format version %d, this tungate reads version %d", v, StateVersion)
	}
	hl := int(binary.LittleEndian.Uint16(fixed[10:]))
	if hl > maxStateHost {
		return nil, stateErr("corrupt", "host identity of %d bytes", hl)
	}
	rest := make([]byte, hl+8*4+4+4)
	if n, err := io.ReadFull(r, rest); err != nil {
		return nil, stateErr("truncated", "header cut short at %d bytes", 12+n)
	}
	all := append(fixed[:], rest...)
	sum := binary.LittleEndian.Uint32(all[len(all)-4:])
	if crc32.Checksum(all[:len(all)-4], castagnoli) != sum {
		return nil, stateErr("checksum", "header checksum mismatch")
	}
	h := &stateHeader{host: string(rest[:hl]), size: int64(len(all))}
	f := rest[hl:]
	h.written = time.Unix(0, int64(binary.LittleEndian.Uint64(f)))
	h.conns = binary.LittleEndian.Uint64(f[8:])
	h.expects = binary.LittleEndian.Uint64(f[16:])
	h.body = binary.LittleEndian.Uint64(f[24:])
	h.crc = binary.LittleEndian.Uint32(f[32:])
	return h, nil
}

// recordReader reads the body's records, counting and summing them.
type recordReader struct {
	r    *bufio.Reader
	left uint64 // body bytes not read yet
	crc  uint32
	buf  []byte
}

// next returns the next record (its payload valid until the next call);
// kind 0 at the end of the body.
func (rr *recordReader) next() (byte, []byte, error) {
	if rr.left == 0 {
		return 0, nil, nil
	}
	if rr.left < 5 {
		return 0, nil, stateErr("corrupt", "%d stray bytes at the end of the body", rr.left)
	}
	var h [5]byte
	if n, err := io.ReadFull(rr.r, h[:]); err != nil {
		return 0, nil, stateErr("truncated", "record header cut short (%d of 5 bytes)", n)
	}
	n := binary.LittleEndian.Uint32(h[1:])
	if n > maxStateRecord || uint64(n) > rr.left-5 {
		return 0, nil, stateErr("corrupt", "record of %d bytes does not fit", n)
	}
	if cap(rr.buf) < int(n) {
		rr.buf = make([]byte, n)
	}
	rr.buf = rr.buf[:n]
	if m, err := io.ReadFull(rr.r, rr.buf); err != nil {
		return 0, nil, stateErr("truncated", "record cut short (%d of %d bytes)", m, n)
	}
	rr.left -= 5 + uint64(n)
	rr.crc = crc32.Update(rr.crc, castagnoli, h[:])
	rr.crc = crc32.Update(rr.crc, castagnoli, rr.buf)
	return h[0], rr.buf, nil
}

// blob is one codec's part of a record; both slices alias the record.
type blob struct {
	name, data []byte
}

// connRecord is a decoded connection record.
type connRecord struct {
	id, master  uint64
	orig, reply Tuple
	status      Status
	mark        uint32
	left        int64
	acct        [4]uint64
	proto       []byte
	helper      string
	hasExt      bool
	adj         [2]SeqAdj
	alias       Tuple
	hasAlias    bool
	proxy       SynProxy
	hasProxy    bool
	blobs       []blob
}

var errBadRecord = errors.New("bad field")

func validTuple(t *Tuple) bool { return t.Family == 4 || t.Family == 6 }

// decodeConn decodes a connection record, checking every field a restore
// would use as an index or a length.
func decodeConn(d *StateDecoder, r *connRecord) error {
	r.id, r.master = d.Uvarint(), d.Uvarint()
	r.orig, r.reply = d.Tuple(), d.Tuple()
	r.status = Status(d.U32()) & persistedStatus
	r.mark = d.U32()
	r.left = d.Varint()
	for i := range r.acct {
		r.acct[i] = d.Uvarint()
	}
	r.proto = d.Bytes()
	flags := d.U8()
	r.hasExt, r.hasAlias = flags&1 != 0, flags&2 != 0
	r.helper = ""
	r.adj = [2]SeqAdj{}
	if r.hasExt {
		r.helper = d.String()
		for i := range 2 {
			r.adj[i].CorrectionPos = d.U32()
			r.adj[i].OffsetBefore = int32(d.Varint())
			r.adj[i].OffsetAfter = int32(d.Varint())
		}
	}
	if r.hasAlias {
		r.alias = d.Tuple()
	}
	r.hasProxy = flags&4 != 0
	r.proxy = SynProxy{}
	if r.hasProxy {
		decodeSynProxy(d, &r.proxy)
	}
	r.blobs = decodeBlobs(d, r.blobs[:0])
	if d.Err() != nil {
		return d.Err()
	}
	if flags&^7 != 0 || d.Len() != 0 || !validTuple(&r.orig) || !validTuple(&r.reply) ||
		r.orig.Family != r.reply.Family || r.orig.Proto != r.reply.Proto ||
		(r.hasProxy && (r.orig.Proto != 6 || !validSynProxy(&r.proxy) ||
			(r.proxy.State == SynProxyOpen) != (r.status&StatusSeqAdjust != 0))) ||
		(r.hasAlias && (!validTuple(&r.alias) || r.alias.Proto != r.orig.Proto)) {
		return errBadRecord
	}
	return checkProtoState(r.orig.Proto, r.proto)
}

func decodeBlobs(d *StateDecoder, out []blob) []blob {
	n := int(d.U8())
	for range n {
		name := d.Bytes()
		l := d.U32()
		if uint64(l) > uint64(d.Len()) {
			d.Fail(errShort)
			return out
		}
		out = append(out, blob{name, d.take(int(l))})
	}
	return out
}

// checkProtoState checks a tracker blob's length and the values that
// index tables (TCP and SCTP states, directions, window scales).
func checkProtoState(proto uint8, b []byte) error {
	switch proto {
	case packet.ProtoTCP:
		if len(b) != 56 {
			return errBadRecord
		}
		f := b[46:]
		if f[0] > tcpMaxWScale || f[1] > tcpMaxWScale || f[4] >= tcpMax || f[5] > tcpNoneSet || f[6] > 1 || f[7] > tcpMaxWScale {
			return errBadRecord
		}
	case packet.ProtoSCTP:
		if len(b) != 14 || int(b[8]) >= len(sctpStateNames) || b[9] > 1 || b[10] > 1 || b[11] > 1 || b[12] > 1 {
			return errBadRecord
		}
	case packet.ProtoUDP:
		if len(b) == 0 {
			return errBadRecord
		}
		if _, n := binary.Varint(b); n != len(b) {
			return errBadRecord
		}
	default:
		if len(b) != 0 {
			return errBadRecord
		}
	}
	return nil
}

// setProtoState applies a checked tracker blob to c (not yet confirmed).
func setProtoState(c *Conn, b []byte, now int64) {
	switch c.node[DirOriginal].tuple.Proto {
	case packet.ProtoTCP:
		s := &c.proto.tcp
		for d := range 2 {
			p := &s.seen[d]
			o := b[d*16:]
			p.end = binary.LittleEndian.Uint32(o)
			p.maxEnd = binary.LittleEndian.Uint32(o[4:])
			p.maxWin = binary.LittleEndian.Uint32(o[8:])
			p.maxAck = binary.LittleEndian.Uint32(o[12:])
		}
		s.lastSeq = binary.LittleEndian.Uint32(b[32:])
		s.lastAck = binary.LittleEndian.Uint32(b[36:])
		s.lastEnd = binary.LittleEndian.Uint32(b[40:])
		s.lastWin = binary.LittleEndian.Uint16(b[44:])
		f := b[46:]
		s.scale = [2]uint8{f[0], f[1]}
		s.flags = [2]uint8{f[2], f[3]}
		s.state, s.lastIndex, s.lastDir = f[4], f[5], Dir(f[6])
		s.lastWscale, s.lastFlags, s.retrans = f[7], f[8], f[9]
	case packet.ProtoSCTP:
		s := c.proto.sctp()
		s.vtag = [2]uint32{binary.LittleEndian.Uint32(b), binary.LittleEndian.Uint32(b[4:])}
		s.state = b[8]
		s.init = [2]bool{b[9] == 1, b[10] == 1}
		s.hbTagFailed, s.hbDir = b[11] == 1, Dir(b[12])
	case packet.ProtoUDP:
		v, _ := binary.Varint(b)
		*c.proto.udpStreamTS() = now + v
	}
}

// expectRecord is a decoded expectation record.
type expectRecord struct {
	master  uint64
	tuple   Tuple
	mask    Mask
	helper  string
	follows bool
	class   uint8
	left    int64
	blobs   []blob
}

func decodeExpect(d *StateDecoder, r *expectRecord) error {
	r.master = d.Uvarint()
	r.tuple = d.Tuple()
	copy(r.mask.Src[:], d.take(16))
	copy(r.mask.Dst[:], d.take(16))
	r.mask.SrcPort, r.mask.DstPort = d.U16(), d.U16()
	r.helper = d.String()
	r.follows = d.Bool()
	r.class = d.U8()
	r.left = d.Varint()
	r.blobs = decodeBlobs(d, r.blobs[:0])
	if d.Err() != nil {
		return d.Err()
	}
	if d.Len() != 0 || !validTuple(&r.tuple) {
		return errBadRecord
	}
	return nil
}

// RestoreState reads a state file written by SaveState into the table,
// which should be new and not yet forwarding. A file that is damaged,
// truncated, of another version or from another host is refused whole
// (a *StateFileError) and the table is left untouched; otherwise each
// entry still alive is restored with the time it has left, and entries a
// codec or the table refuses are dropped and counted by reason.
func (t *Table) RestoreState(r io.ReadSeeker, opt StateOptions) (*RestoreReport, error) {
	return t.restoreState(r, opt, t.Now())
}

// restoreState is RestoreState at table time now.
func (t *Table) restoreState(r io.ReadSeeker, opt StateOptions, now int64) (*RestoreReport, error) {
	start, err := r.Seek(0, io.SeekCurrent)
	if err != nil {
		return nil, err
	}
	br := bufio.NewReaderSize(r, 64<<10)
	h, err := readStateHeader(br)
	if err != nil {
		return nil, err
	}
	rep := &RestoreReport{Host: h.host, Written: h.written}
	if h.host != opt.Host {
		return rep, stateErr("host", "written on host %q, this is %q", h.host, opt.Host)
	}
	// Pass 1: the checksum and every record's shape.
	rr := &recordReader{r: br, left: h.body}
	var cr connRecord
	var er expectRecord
	var conns, expects, extras uint64
	for {
		kind, p, err := rr.next()
		if err != nil {
			return rep, err
		}
		if kind == 0 {
			break
		}
		d := StateDecoder{b: p}
		switch kind {
		case recConn:
			if expects > 0 || extras > 0 {
				return rep, stateErr("corrupt", "connection record after the expectations")
			}
			err = decodeConn(&d, &cr)
			conns++
		case recExpect:
			if extras > 0 {
				return rep, stateErr("corrupt", "expectation record after the extras")
			}
			err = decodeExpect(&d, &er)
			expects++
		case recExtra:
			_, _, err = decodeExtra(p)
			extras++
		default:
			err = fmt.Errorf("unknown record kind %d", kind)
		}
		if err != nil {
			return rep, stateErr("corrupt", "record %d: %v", conns+expects, err)
		}
	}
	if rr.crc != h.crc {
		return rep, stateErr("checksum", "body checksum mismatch")
	}
	if conns != h.conns || expects != h.expects {
		return rep, stateErr("corrupt", "the header announces %d connections and %d expectations, the body holds %d and %d", h.conns, h.expects, conns, expects)
	}
	if _, err := br.Peek(1); err != io.EOF {
		return rep, stateErr("corrupt", "data after the body")
	}
	rep.Conns, rep.Expectations = int(conns), int(expects)

	// Pass 2: restore. Everything it allocates stays live (entries,
	// bindings), so a collection during it would only mark a growing heap
	// over and over: more than half of a million-entry restore's CPU
	// time. It runs at start-up, before the datapath allocates anything,
	// so the collector waits until it is done (a memory limit still
	// applies: GOMEMLIMIT collects regardless).
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	if _, err := r.Seek(start+h.size, io.SeekStart); err != nil {
		return rep, err
	}
	br.Reset(r)
	rr = &recordReader{r: br, left: h.body}
	codecs := map[string]StateCodec{}
	for _, cd := range opt.Codecs {
		codecs[cd.StateName()] = cd
	}
	rs := &restorer{t: t, now: now, elapsed: max(int64(opt.now().Sub(h.written)), 0), codecs: codecs,
		masters: map[uint64]*Conn{}}
	kind, p, err := rr.next()
	workers := opt.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	rs.start(workers)
	for err == nil && kind == recConn {
		rs.feed(p)
		kind, p, err = rr.next()
	}
	rs.finish(rep)
	for err == nil && kind == recExpect {
		d := StateDecoder{b: p}
		if decodeExpect(&d, &er) != nil {
			return rep, stateErr("corrupt", "the file changed while it was read")
		}
		t.restoreExpect(&er, now, rs.elapsed, codecs, rs.masters, rep)
		kind, p, err = rr.next()
	}
	for err == nil && kind == recExtra {
		name, blob, derr := decodeExtra(p)
		if derr != nil {
			return rep, stateErr("corrupt", "the file changed while it was read")
		}
		if rep.Extra == nil {
			rep.Extra = map[string][]byte{}
		}
		rep.Extra[name] = bytes.Clone(blob)
		kind, p, err = rr.next()
	}
	if err == nil && kind != 0 {
		err = stateErr("corrupt", "the file changed while it was read")
	}
	return rep, err
}

// decodeExtra splits an extra record's payload into its name and blob
// (the blob aliases p).
func decodeExtra(p []byte) (string, []byte, error) {
	if len(p) < 2 {
		return "", nil, errors.New("extra record too short")
	}
	n := int(binary.LittleEndian.Uint16(p))
	if len(p) < 2+n {
		return "", nil, errors.New("extra record name runs past its end")
	}
	return string(p[2 : 2+n]), p[2+n:], nil
}

// restorer restores connection records on several goroutines: the
// inserts are independent (the table and the NAT engine lock what they
// share), and most of their time goes to cache misses in a large table,
// which cores wait for side by side. RELATED connections wait until every
// master is in (deferred), then go in one by one.
type restorer struct {
	t            *Table
	now, elapsed int64
	codecs       map[string]StateCodec

	batches chan *recordBatch
	free    chan *recordBatch
	cur     *recordBatch
	wg      sync.WaitGroup
	workers []restoreWorker

	mu      sync.Mutex // guards masters while the workers run
	masters map[uint64]*Conn
}

// recordBatch is a run of connection records copied out of the reader's
// buffer: record i is buf[ends[i-1]:ends[i]].
type recordBatch struct {
	buf  []byte
	ends []int
}

// restoreWorker is one goroutine's report and its deferred records.
type restoreWorker struct {
	rep      RestoreReport
	deferred []connRecord
}

const (
	batchRecords = 256
	maxWorkers   = 4
)

func (rs *restorer) start(n int) {
	n = min(max(n, 1), maxWorkers)
	rs.batches = make(chan *recordBatch, 2*n)
	rs.free = make(chan *recordBatch, 2*n+1)
	rs.workers = make([]restoreWorker, n)
	for i := range rs.workers {
		rs.wg.Add(1)
		go func(w *restoreWorker) {
			defer rs.wg.Done()
			var cr connRecord
			for b := range rs.batches {
				start := 0
				for _, end := range b.ends {
					d := StateDecoder{b: b.buf[start:end]}
					start = end
					if decodeConn(&d, &cr) != nil {
						w.rep.drop("corrupt") // the file changed while it was read
						continue
					}
					if cr.master != 0 {
						w.deferred = append(w.deferred, cloneConnRecord(&cr))
						continue
					}
					rs.t.restoreConn(&cr, rs.now, rs.elapsed, rs.codecs, rs, &w.rep)
				}
				b.buf, b.ends = b.buf[:0], b.ends[:0]
				select {
				case rs.free <- b:
				default:
				}
			}
		}(&rs.workers[i])
	}
}

// feed queues one connection record.
func (rs *restorer) feed(p []byte) {
	if rs.cur == nil {
		select {
		case rs.cur = <-rs.free:
		default:
			rs.cur = &recordBatch{buf: make([]byte, 0, 64<<10), ends: make([]int, 0, batchRecords)}
		}
	}
	b := rs.cur
	b.buf = append(b.buf, p...)
	b.ends = append(b.ends, len(b.buf))
	if len(b.ends) == batchRecords {
		rs.batches <- b
		rs.cur = nil
	}
}

// finish waits for the workers, restores the deferred RELATED
// connections and adds everything to rep.
func (rs *restorer) finish(rep *RestoreReport) {
	if rs.cur != nil && len(rs.cur.ends) > 0 {
		rs.batches <- rs.cur
	}
	rs.cur = nil
	close(rs.batches)
	rs.wg.Wait()
	for i := range rs.workers {
		w := &rs.workers[i]
		rep.Restored += w.rep.Restored
		rep.Expired += w.rep.Expired
		for r, n := range w.rep.Dropped {
			if rep.Dropped == nil {
				rep.Dropped = map[string]int{}
			}
			rep.Dropped[r] += n
		}
		for j := range w.deferred {
			rs.t.restoreConn(&w.deferred[j], rs.now, rs.elapsed, rs.codecs, rs, rep)
		}
	}
}

// master returns the restored master of id (nil: none).
func (rs *restorer) master(id uint64) *Conn {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return rs.masters[id]
}

// addMaster records a restored master.
func (rs *restorer) addMaster(id uint64, c *Conn) {
	rs.mu.Lock()
	rs.masters[id] = c
	rs.mu.Unlock()
}

// cloneConnRecord copies a record out of the reader's buffer.
func cloneConnRecord(r *connRecord) connRecord {
	c := *r
	c.proto = bytes.Clone(r.proto)
	c.blobs = make([]blob, len(r.blobs))
	for i, b := range r.blobs {
		c.blobs[i] = blob{bytes.Clone(b.name), bytes.Clone(b.data)}
	}
	return c
}

// restoreBlobs hands each blob to its codec, for connection c or (c nil)
// expectation e; it returns the reason to drop the entry, "" when all
// went well.
func restoreBlobs(blobs []blob, codecs map[string]StateCodec, c *Conn, e *Expectation) string {
	for _, b := range blobs {
		cd := codecs[string(b.name)]
		if cd == nil {
			return "no_" + string(b.name)
		}
		d := StateDecoder{b: b.data}
		var err error
		if c != nil {
			err = cd.RestoreConnState(c, &d)
		} else {
			err = cd.RestoreExpectationState(e, &d)
		}
		if err == nil && d.Err() == nil && d.Len() != 0 {
			err = errBadRecord
		}
		if err == nil {
			err = d.Err()
		}
		if err != nil {
			var de *DropError
			if errors.As(err, &de) {
				return de.Reason
			}
			return "corrupt_" + string(b.name)
		}
	}
	return ""
}

// restoreConn rebuilds one connection and confirms it.
func (t *Table) restoreConn(r *connRecord, now, elapsed int64, codecs map[string]StateCodec, rs *restorer, rep *RestoreReport) {
	left := r.left - elapsed
	if left <= 0 {
		rep.Expired++
		return
	}
	var master *Conn
	if r.master != 0 {
		if master = rs.master(r.master); master == nil {
			rep.drop("master")
			return
		}
	}
	if t.count.Load() >= int64(t.cfg.Load().Max) {
		rep.drop("full")
		return
	}
	// A new table has no entries to reuse: allocate without newEntry's
	// lock, which the workers would contend for.
	c := &Conn{}
	c.initNodes(&r.orig)
	c.node[DirReply].tuple = r.reply
	c.status.Store(uint32(r.status))
	c.mark.Store(r.mark)
	c.expires.Store(now + left)
	for d := range 2 {
		c.acct[d].Packets.Store(r.acct[2*d])
		c.acct[d].Bytes.Store(r.acct[2*d+1])
	}
	setProtoState(c, r.proto, now)
	if r.hasExt {
		e := c.EnsureExt()
		e.Helper, e.SeqAdj = r.helper, r.adj
	}
	if r.hasProxy {
		c.EnsureExt().Proxy = r.proxy
	}
	c.SetMaster(master)
	if reason := restoreBlobs(r.blobs, codecs, c, nil); reason != "" {
		t.Delete(c)
		rep.drop(reason)
		return
	}
	if err := t.Confirm(c, now); err != nil {
		t.Delete(c)
		rep.drop("clash")
		return
	}
	if r.hasAlias {
		t.addAlias(c, &r.alias, now)
	} else if e, ok := t.trackers[r.orig.Proto].(*espTracker); ok {
		e.New(c, nil, nil, now)
	}
	if r.id != 0 {
		rs.addMaster(r.id, c)
	}
	rep.Restored++
}

// restoreExpect adds one expectation back for its restored master.
func (t *Table) restoreExpect(r *expectRecord, now, elapsed int64, codecs map[string]StateCodec, masters map[uint64]*Conn, rep *RestoreReport) {
	left := r.left - elapsed
	if left <= 0 {
		rep.Expired++
		return
	}
	master := masters[r.master]
	if master == nil {
		rep.drop("master")
		return
	}
	e := &Expectation{
		Tuple: r.tuple, Mask: r.mask, Master: master, Helper: r.helper,
		HelperFollows: r.follows, Class: r.class, Expires: now + left,
	}
	if reason := restoreBlobs(r.blobs, codecs, nil, e); reason != "" {
		rep.drop(reason)
		return
	}
	if err := t.Expect(e, 0); err != nil {
		rep.drop("expect")
		return
	}
	rep.RestoredExpectations++
}

// appendSynProxy appends a proxied connection's SynProxy state.
func appendSynProxy(b []byte, s *SynProxy) []byte {
	var bits uint8
	if s.SACKPerm {
		bits |= 1
	}
	if s.TS {
		bits |= 2
	}
	b = append(b, s.State, bits, s.CliWScale, s.OurWScale, s.SrvWScale)
	b = binary.LittleEndian.AppendUint16(b, s.MSS)
	b = binary.LittleEndian.AppendUint16(b, s.CliWin)
	for _, v := range [...]uint32{s.ISN, s.CliISN, s.SrvISN, s.CliTSval, s.TSecr, s.TSOff} {
		b = binary.LittleEndian.AppendUint32(b, v)
	}
	return b
}

func decodeSynProxy(d *StateDecoder, s *SynProxy) {
	s.Proxied = true
	s.State = d.U8()
	bits := d.U8()
	s.SACKPerm, s.TS = bits&1 != 0, bits&2 != 0
	s.CliWScale, s.OurWScale, s.SrvWScale = d.U8(), d.U8(), d.U8()
	s.MSS, s.CliWin = d.U16(), d.U16()
	s.ISN, s.CliISN, s.SrvISN = d.U32(), d.U32(), d.U32()
	s.CliTSval, s.TSecr, s.TSOff = d.U32(), d.U32(), d.U32()
	if bits&^3 != 0 {
		d.Fail(errBadRecord)
	}
}

// validSynProxy checks what the datapath uses as a state or a shift.
func validSynProxy(s *SynProxy) bool {
	ws := func(v uint8) bool { return v <= 14 || v == 0xf }
	return (s.State == SynProxyPending || s.State == SynProxyOpen) &&
		ws(s.CliWScale) && ws(s.OurWScale) && ws(s.SrvWScale)
}
