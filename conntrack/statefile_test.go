package conntrack

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"strings"
	"testing"
	"time"

	"tungate/packet"
)

// memFile is an in-memory file for SaveState (a WriterAt) and
// RestoreState (a ReadSeeker over the bytes).
type memFile struct{ b []byte }

func (m *memFile) WriteAt(p []byte, off int64) (int, error) {
	if end := int(off) + len(p); end > len(m.b) {
		m.b = append(m.b, make([]byte, end-len(m.b))...)
	}
	copy(m.b[off:], p)
	return len(p), nil
}

// stateTime is the wall clock of the round-trip tests: saved and
// restored at the same instant, so every entry keeps exactly its time.
var stateTime = time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)

// markCodec is a StateCodec for tests: it saves each connection's mark
// as a blob and checks it on restore; marked 0xdead it refuses the
// connection ("gone"), as NAT refuses one whose rule is gone.
type markCodec struct{ restored, expects int }

func (*markCodec) StateName() string { return "test" }
func (*markCodec) AppendConnState(b []byte, c *Conn) []byte {
	if c.Mark() == 0 {
		return b
	}
	return binary.LittleEndian.AppendUint32(b, c.Mark())
}
func (m *markCodec) RestoreConnState(c *Conn, d *StateDecoder) error {
	v := d.U32()
	if v == 0xdead {
		return &DropError{Reason: "gone", Msg: "test"}
	}
	if v != c.Mark() {
		return errors.New("mark blob differs from the record's mark")
	}
	m.restored++
	return nil
}
func (*markCodec) AppendExpectationState(b []byte, e *Expectation) []byte {
	return append(b, e.Class+1)
}
func (m *markCodec) RestoreExpectationState(e *Expectation, d *StateDecoder) error {
	if d.U8() != e.Class+1 {
		return errors.New("class blob differs")
	}
	m.expects++
	return nil
}

// stateTable fills a table with every kind of entry, in both families:
// TCP established with window scaling and data, TCP closing, a
// masqueraded TCP flow, a UDP stream, ICMP echo, SCTP, GRE, ESP with a
// learnt reply SPI, a raw protocol, an FTP-like master with sequence
// offsets, a helper, marks, an expectation waiting and a RELATED child.
func stateTable(t *testing.T) *ctHarness {
	h := newCTHarness(t, Config{})
	for i, f := range ctFamilies {
		base := uint16(40000 + 100*i)
		fl := tcpFlow{f.cli, f.srv, base, 21}
		const cISN, sISN = 1000, 5000
		r := h.pass(fl.build(DirOriginal, tcpSeg{flags: fSYN, seq: cISN, win: 64240, opts: synOpts}))
		ctl := r.Conn
		h.in(fl.build(DirReply, tcpSeg{flags: fSYN | fACK, seq: sISN, ack: cISN + 1, win: 65160, opts: synAckOpts}))
		h.in(fl.build(DirOriginal, tcpSeg{flags: fACK, seq: cISN + 1, ack: sISN + 1, win: 512}))
		h.in(fl.build(DirOriginal, tcpSeg{flags: fACK | fPSH, seq: cISN + 1, ack: sISN + 1, win: 512, data: 100}))
		h.in(fl.build(DirReply, tcpSeg{flags: fACK, seq: sISN + 1, ack: cISN + 101, win: 256}))
		if got := ctl.TCPStateName(); got != "ESTABLISHED" {
			t.Fatalf("%s: control connection %s", f.name, got)
		}
		e := ctl.EnsureExt()
		e.Helper = "ftp"
		e.SeqAdj[DirOriginal] = SeqAdj{CorrectionPos: cISN + 50, OffsetBefore: 0, OffsetAfter: 3}
		e.SeqAdj[DirReply] = SeqAdj{CorrectionPos: sISN + 7, OffsetBefore: -2, OffsetAfter: -5}
		// A SYN proxy's translation state rides along (no connection
		// has both in practice; the record keeps each part).
		e.Proxy = SynProxy{Proxied: true, State: SynProxyOpen, MSS: 1460, CliWScale: 7, OurWScale: 7, SrvWScale: 9,
			SACKPerm: true, TS: true, ISN: 0xdeadbeef, CliISN: cISN - 1, SrvISN: sISN, CliTSval: 11, TSecr: 22, TSOff: 33, CliWin: 502}
		ctl.SetStatus(StatusSeqAdjust)
		ctl.SetMark(0x1000 + uint32(i))

		// Two expectations: one a data connection takes (RELATED
		// child), one left waiting.
		for k, port := range []uint16{20001, 20002} {
			ex := &Expectation{
				Tuple:  Tuple{Src: packet.AddrFrom(f.srv), Dst: packet.AddrFrom(f.cli), DstPort: port, Proto: packet.ProtoTCP, Family: ctl.Tuple(DirOriginal).Family},
				Mask:   FullMask,
				Master: ctl, Helper: "ftp", HelperFollows: k == 0, Class: uint8(k),
				Expires: h.now + int64(time.Duration(k+1)*time.Minute),
			}
			ex.Mask.SrcPort = 0
			if err := h.tab.Expect(ex, 0); err != nil {
				t.Fatal(err)
			}
		}
		data := tcpFlow{f.srv, f.cli, 20, 20001}
		child := h.pass(data.build(DirOriginal, tcpSeg{flags: fSYN, seq: 77, win: 1000, opts: synOpts}))
		if child.Conn.Master() != ctl {
			t.Fatalf("%s: data connection not RELATED to the control one", f.name)
		}

		// A closing TCP flow.
		cl := tcpFlow{f.cli, f.srv, base + 1, 443}
		h.pass(cl.build(DirOriginal, tcpSeg{flags: fSYN, seq: 1, win: 1000}))
		h.in(cl.build(DirReply, tcpSeg{flags: fSYN | fACK, seq: 9, ack: 2, win: 1000}))
		h.in(cl.build(DirOriginal, tcpSeg{flags: fACK, seq: 2, ack: 10, win: 1000}))
		h.in(cl.build(DirOriginal, tcpSeg{flags: fFIN | fACK, seq: 2, ack: 10, win: 1000}))

		// Masqueraded TCP, then a UDP stream (masqueraded, replied,
		// assured after 2 s), ICMP echo.
		mq := h.passNAT(build.TCP(f.cli, base+2, f.srv, 8080, fSYN), f.nat)
		mq.Conn.SetMark(0xdead) // the test codec refuses this one
		u := h.passNAT(build.UDP(f.cli, base+3, f.srv, 5353, 20), f.nat)
		h.in(build.UDP(f.srv, 5353, f.nat, base+3, 40))
		h.advance(3 * time.Second)
		h.in(build.UDP(f.cli, base+3, f.srv, 5353, 20))
		if u.Conn.Status()&StatusAssured == 0 {
			t.Fatalf("%s: UDP flow not assured", f.name)
		}
		h.pass(build.Echo(f.cli, f.srv, false, base+4, 8))
		h.in(build.Echo(f.srv, f.cli, true, base+4, 8))

		// SCTP after INIT and INIT ACK.
		h.pass(build.SCTP(f.cli, base+5, f.srv, 5000, 0, chInit(0x1111)))
		h.in(build.SCTP(f.srv, 5000, f.cli, base+5, 0x1111, sctpChunk(packet.SCTPChunkInitAck, 0, sctpInitBody(0x2222, 9))))

		h.pass(build.GRE(f.cli, f.srv, 0, true, uint32(base), 10))
		h.pass(build.ESP(f.cli, f.srv, 0x100+uint32(i), 1))
		h.in(build.ESP(f.srv, f.cli, 0x200+uint32(i), 1))
		h.pass(build.Raw(f.cli, f.srv, 99, 10))
	}
	return h
}

// saveBytes saves the harness's table and returns the file.
func saveBytes(t testing.TB, h *ctHarness, opt StateOptions) []byte {
	t.Helper()
	var f memFile
	rep, err := h.tab.saveState(&f, opt, h.now)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Bytes != int64(len(f.b)) {
		t.Fatalf("report says %d bytes, file has %d", rep.Bytes, len(f.b))
	}
	return f.b
}

// connOf finds the connection of tuple tu in tab.
func connOf(tab *Table, tu *Tuple) *Conn {
	c, d := tab.Lookup(tu)
	if d != DirOriginal {
		return nil
	}
	return c
}

func TestStateFileRoundTrip(t *testing.T) {
	h := stateTable(t)
	codec := &markCodec{}
	opt := StateOptions{Host: "host-a", Time: stateTime, Codecs: []StateCodec{codec}}
	file := saveBytes(t, h, opt)

	tab2, err := NewTable(Config{})
	if err != nil {
		t.Fatal(err)
	}
	now2 := int64(5 * time.Hour) // another process: another clock
	codec2 := &markCodec{}
	opt.Codecs = []StateCodec{codec2}
	rep, err := tab2.restoreState(bytes.NewReader(file), opt, now2)
	if err != nil {
		t.Fatal(err)
	}
	n, dead := 0, 0
	h.tab.Range(func(c *Conn) bool {
		if c.Expires() <= h.now {
			return true // the walk's clock is not the harness's
		}
		n++
		if c.Mark() == 0xdead {
			dead++
		}
		return true
	})
	if rep.Conns != n || rep.Restored != n-dead || rep.Dropped["gone"] != dead || rep.Expired != 0 {
		t.Fatalf("report %+v; table had %d connections, %d refused by the codec", rep, n, dead)
	}
	if tab2.Count() != n-dead || dead != 2 {
		t.Fatalf("restored table has %d connections, want %d (%d refused)", tab2.Count(), n-dead, dead)
	}
	if codec2.restored == 0 {
		t.Fatal("the codec restored nothing")
	}
	kinds := map[uint8]int{}
	h.tab.Range(func(c *Conn) bool {
		o := c.Tuple(DirOriginal)
		if c.Expires() <= h.now {
			return true
		}
		c2 := connOf(tab2, o)
		if c.Mark() == 0xdead {
			if c2 != nil {
				t.Errorf("%v: refused by the codec but restored", o)
			}
			return true
		}
		if c2 == nil {
			t.Errorf("%v: not restored", o)
			return true
		}
		kinds[o.Proto]++
		compareConns(t, c, c2, h.now, now2)
		return true
	})
	for _, p := range []uint8{packet.ProtoTCP, packet.ProtoUDP, packet.ProtoICMP, packet.ProtoICMPv6, packet.ProtoSCTP, packet.ProtoGRE, packet.ProtoESP, 99} {
		if kinds[p] == 0 {
			t.Errorf("no connection of protocol %d compared", p)
		}
	}
	compareExpectations(t, h.tab, tab2, h.now, now2)
	if codec2.expects != rep.RestoredExpectations || rep.RestoredExpectations != 2 {
		t.Errorf("expectations restored %d (codec saw %d), want 2", rep.RestoredExpectations, codec2.expects)
	}
}

// compareConns checks every field of a restored connection.
func compareConns(t *testing.T, c, c2 *Conn, now, now2 int64) {
	t.Helper()
	o := c.Tuple(DirOriginal)
	if *c.Tuple(DirReply) != *c2.Tuple(DirReply) {
		t.Errorf("%v: reply tuple %v, want %v", o, *c2.Tuple(DirReply), *c.Tuple(DirReply))
	}
	if c2.Status()&persistedStatus != c.Status()&persistedStatus {
		t.Errorf("%v: status %#x, want %#x", o, c2.Status()&persistedStatus, c.Status()&persistedStatus)
	}
	if !c2.Confirmed() {
		t.Errorf("%v: not confirmed", o)
	}
	if c2.Mark() != c.Mark() {
		t.Errorf("%v: mark %#x, want %#x", o, c2.Mark(), c.Mark())
	}
	if l, l2 := c.Expires()-now, c2.Expires()-now2; l != l2 {
		t.Errorf("%v: %v left, want %v", o, time.Duration(l2), time.Duration(l))
	}
	for d := range 2 {
		a, a2 := c.Counters(Dir(d)), c2.Counters(Dir(d))
		if a.Packets.Load() != a2.Packets.Load() || a.Bytes.Load() != a2.Bytes.Load() || a.Packets.Load() == 0 && d == 0 {
			t.Errorf("%v: counters dir %d %d/%d, want %d/%d", o, d, a2.Packets.Load(), a2.Bytes.Load(), a.Packets.Load(), a.Bytes.Load())
		}
	}
	switch o.Proto {
	case packet.ProtoUDP:
		if a, b := *c.proto.udpStreamTS()-now, *c2.proto.udpStreamTS()-now2; a != b {
			t.Errorf("%v: stream time %v, want %v", o, b, a)
		}
	case packet.ProtoTCP, packet.ProtoSCTP:
		if c.proto != c2.proto {
			t.Errorf("%v: tracker state\n%+v, want\n%+v", o, c2.proto, c.proto)
		}
		if o.Proto == packet.ProtoTCP && c.proto.tcp.seen[0].maxWin == 0 {
			t.Errorf("%v: the test flow has no window data", o)
		}
	}
	e, e2 := c.Ext(), c2.Ext()
	switch {
	case e == nil && e2 != nil && (e2.Helper != "" || e2.SeqAdj != [2]SeqAdj{}):
		t.Errorf("%v: restored with an extension it did not have", o)
	case e != nil && e2 == nil:
		t.Errorf("%v: extension lost", o)
	case e != nil:
		if e.Helper != e2.Helper || e.SeqAdj != e2.SeqAdj {
			t.Errorf("%v: helper %q seqadj %+v, want %q %+v", o, e2.Helper, e2.SeqAdj, e.Helper, e.SeqAdj)
		}
		if e.Proxy != e2.Proxy {
			t.Errorf("%v: synproxy state %+v, want %+v", o, e2.Proxy, e.Proxy)
		}
		if a, a2 := e.alias.Load(), e2.alias.Load(); (a == nil) != (a2 == nil) || a != nil && a.node.tuple != a2.node.tuple {
			t.Errorf("%v: learnt reply tuple differs", o)
		}
	}
	if (c.Master() == nil) != (c2.Master() == nil) || c.Master() != nil && *c.Master().Tuple(DirOriginal) != *c2.Master().Tuple(DirOriginal) {
		t.Errorf("%v: master differs", o)
	}
	if c.Uses() != c2.Uses() {
		t.Errorf("%v: use=%d, want %d", o, c2.Uses(), c.Uses())
	}
}

func compareExpectations(t *testing.T, tab, tab2 *Table, now, now2 int64) {
	t.Helper()
	type exp struct {
		tu      Tuple
		mask    Mask
		master  Tuple
		helper  string
		follows bool
		class   uint8
		left    int64
	}
	list := func(tab *Table, now int64) []exp {
		var l []exp
		tab.Expectations(func(e *Expectation) bool {
			l = append(l, exp{e.Tuple, e.Mask, *e.Master.Tuple(DirOriginal), e.Helper, e.HelperFollows, e.Class, e.Expires - now})
			return true
		})
		return l
	}
	a, b := list(tab, now), list(tab2, now2)
	if len(a) != len(b) || len(a) == 0 {
		t.Fatalf("%d expectations restored, want %d", len(b), len(a))
	}
	for i := range a {
		if a[i] != b[i] {
			t.Errorf("expectation %d: %+v, want %+v", i, b[i], a[i])
		}
	}
}

// TestStateFileTimeLeft: entries keep the time they had minus the time
// the gateway was down; those whose time ran out are not restored.
func TestStateFileTimeLeft(t *testing.T) {
	h := newCTHarness(t, Config{})
	f := ctFamilies[0]
	long := h.pass(build.Raw(f.cli, f.srv, 99, 10)).Conn // generic: 600 s
	short := h.pass(build.UDP(f.cli, 1000, f.srv, 2000, 10)).Conn
	file := saveBytes(t, h, StateOptions{Host: "h", Time: stateTime})
	tab2, _ := NewTable(Config{})
	now2 := int64(time.Minute)
	rep, err := tab2.restoreState(bytes.NewReader(file), StateOptions{Host: "h", Time: stateTime.Add(150 * time.Second)}, now2)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Restored != 1 || rep.Expired != 1 {
		t.Fatalf("report %+v: want the 120 s UDP flow expired and the generic one restored", rep)
	}
	if connOf(tab2, short.Tuple(DirOriginal)) != nil {
		t.Fatal("expired UDP flow restored")
	}
	c2 := connOf(tab2, long.Tuple(DirOriginal))
	if c2 == nil {
		t.Fatal("generic flow not restored")
	}
	if got, want := c2.Expires()-now2, long.Expires()-h.now-int64(150*time.Second); got != want {
		t.Fatalf("%v left, want %v", time.Duration(got), time.Duration(want))
	}
}

// fixHeader rewrites the header's checksum after a test changed it.
func fixHeader(b []byte) {
	hl := int(binary.LittleEndian.Uint16(b[10:]))
	end := 12 + hl + 36
	binary.LittleEndian.PutUint32(b[end:], crc32.Checksum(b[:end], castagnoli))
}

// refused restores b into a new table and checks it is refused with the
// given reason ("" any) and leaves the table empty.
func refused(t *testing.T, what string, b []byte, reason string) {
	t.Helper()
	tab, _ := NewTable(Config{Max: 1024})
	_, err := tab.restoreState(bytes.NewReader(b), StateOptions{Host: "host-a", Time: stateTime}, 0)
	var se *StateFileError
	if !errors.As(err, &se) {
		t.Fatalf("%s: error %v, want a StateFileError", what, err)
	}
	if reason != "" && se.Reason != reason {
		t.Fatalf("%s: refused as %q (%v), want %q", what, se.Reason, err, reason)
	}
	if se.Msg == "" {
		t.Fatalf("%s: no message", what)
	}
	if tab.Count() != 0 || tab.ExpectationCount() != 0 {
		t.Fatalf("%s: refused file left %d connections, %d expectations", what, tab.Count(), tab.ExpectationCount())
	}
}

func TestStateFileCorrupt(t *testing.T) {
	h := stateTable(t)
	good := saveBytes(t, h, StateOptions{Host: "host-a", Time: stateTime})
	mod := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }

	refused(t, "empty", nil, "empty")
	refused(t, "wrong magic", mod(func(b []byte) []byte { copy(b, "NOTSTATE"); return b }), "magic")
	refused(t, "future version", mod(func(b []byte) []byte {
		binary.LittleEndian.PutUint16(b[8:], StateVersion+1)
		fixHeader(b)
		return b
	}), "version")
	other := saveBytes(t, h, StateOptions{Host: "host-b", Time: stateTime})
	refused(t, "other host", other, "host")
	refused(t, "trailing data", append(bytes.Clone(good), 0), "corrupt")
	refused(t, "count mismatch", mod(func(b []byte) []byte {
		hl := int(binary.LittleEndian.Uint16(b[10:]))
		binary.LittleEndian.PutUint64(b[12+hl+8:], 1)
		fixHeader(b)
		return b
	}), "corrupt")
	for n := range len(good) {
		refused(t, "truncated", good[:n], "")
	}
	for i := range good {
		b := bytes.Clone(good)
		b[i] ^= 0x5a
		refused(t, "flipped byte", b, "")
	}
	// A body whose checksum was fixed up after damage: the record checks
	// catch it.
	bad := mod(func(b []byte) []byte {
		hl := int(binary.LittleEndian.Uint16(b[10:]))
		body := b[12+hl+40:]
		body[5] = 0xff // the first record's id varint runs on
		for i := 6; i < 16; i++ {
			body[i] = 0xff
		}
		binary.LittleEndian.PutUint32(b[12+hl+32:], crc32.Checksum(body, castagnoli))
		fixHeader(b)
		return b
	})
	refused(t, "bad record", bad, "corrupt")

	// And the good file still restores.
	tab, _ := NewTable(Config{})
	if _, err := tab.restoreState(bytes.NewReader(good), StateOptions{Host: "host-a", Time: stateTime}, 0); err != nil || tab.Count() == 0 {
		t.Fatalf("good file: %v, %d connections", err, tab.Count())
	}
}

// repairState makes b's header announce and checksum whatever body
// follows it, so the fuzzer reaches the record parser rather than
// stopping at a checksum.
func repairState(b []byte) []byte {
	if len(b) < 12 {
		return b
	}
	hl := int(binary.LittleEndian.Uint16(b[10:]))
	end := 12 + hl + 40
	if hl > maxStateHost || len(b) < end {
		return b
	}
	b = bytes.Clone(b)
	copy(b, stateMagic)
	binary.LittleEndian.PutUint16(b[8:], StateVersion)
	body := b[end:]
	binary.LittleEndian.PutUint64(b[12+hl+24:], uint64(len(body)))
	binary.LittleEndian.PutUint32(b[12+hl+32:], crc32.Checksum(body, castagnoli))
	binary.LittleEndian.PutUint32(b[end-4:], crc32.Checksum(b[:end-4], castagnoli))
	return b
}

// FuzzStateFile feeds arbitrary files, and the same with their checksums
// and body length made right, to RestoreState: it must never panic, and a
// file it accepts restores at most what it announces.
func FuzzStateFile(f *testing.F) {
	h := stateTable(&testing.T{})
	good := saveBytes(f, h, StateOptions{Host: "host-a", Time: stateTime})
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add([]byte(stateMagic))
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, in := range [][]byte{b, repairState(b)} {
			tab, _ := NewTable(Config{Max: 1024})
			codec := &markCodec{}
			rep, err := tab.restoreState(bytes.NewReader(in), StateOptions{Host: "host-a", Time: stateTime, Codecs: []StateCodec{codec}}, 0)
			if err != nil {
				var se *StateFileError
				if !errors.As(err, &se) {
					t.Fatalf("error %v is not a StateFileError", err)
				}
				if tab.Count() != 0 {
					t.Fatalf("refused file left %d connections", tab.Count())
				}
				continue
			}
			if tab.Count() > rep.Conns || rep.Restored+rep.Expired+sumDropped(rep) > rep.Conns+rep.Expectations {
				t.Fatalf("report %+v, table %d", rep, tab.Count())
			}
			// What was restored saves again.
			var out memFile
			if _, err := tab.SaveState(&out, StateOptions{Host: "host-a"}); err != nil {
				t.Fatal(err)
			}
		}
	})
}

func sumDropped(r *RestoreReport) int {
	n := 0
	for _, v := range r.Dropped {
		n += v
	}
	return n
}

// TestStateFileReportNamesReasons: the messages say what is wrong.
func TestStateFileReportNamesReasons(t *testing.T) {
	tab, _ := NewTable(Config{})
	_, err := tab.RestoreState(bytes.NewReader([]byte("TGCTSTAT\x07\x00\x00\x00")), StateOptions{})
	if err == nil || !strings.Contains(err.Error(), "version 7") {
		t.Fatalf("error %v does not name the version", err)
	}
}

// TestStateFileSaveWhileForwarding: saving a table that packets are
// changing (new flows, deaths) gives files that restore: what the save
// walked is consistent per entry. Run it with -race.
func TestStateFileSaveWhileForwarding(t *testing.T) {
	h := newCTHarness(t, Config{Max: 1 << 14})
	f := ctFamilies[0]
	done := make(chan struct{})
	busy := make(chan struct{})
	go func() {
		defer close(busy)
		var p packet.Parsed
		var r Result
		for i := 0; ; i++ {
			select {
			case <-done:
				return
			default:
			}
			p.Decode(build.UDP(f.cli, uint16(1000+i%5000), f.srv, 53, 8))
			now := h.tab.Now()
			h.tab.In(&p, now, &r)
			if r.Conn != nil && !r.Conn.Confirmed() {
				h.tab.Confirm(r.Conn, now)
			}
			if i%3 == 0 && r.Conn != nil {
				h.tab.Delete(r.Conn)
			}
			r.Release()
		}
	}()
	for range 20 {
		var out memFile
		rep, err := h.tab.SaveState(&out, StateOptions{Host: "h", Workers: 2})
		if err != nil {
			t.Fatal(err)
		}
		tab2, _ := NewTable(Config{Max: 1 << 14})
		rrep, err := tab2.RestoreState(bytes.NewReader(out.b), StateOptions{Host: "h"})
		if err != nil {
			t.Fatalf("a file saved while forwarding does not restore: %v", err)
		}
		if rrep.Conns != rep.Conns || tab2.Count()+rrep.Expired+sumDropped(rrep) != rep.Conns {
			t.Fatalf("saved %d, restored %+v into %d", rep.Conns, rrep, tab2.Count())
		}
	}
	close(done)
	<-busy
}

// TestStateFileFullAndClash: entries beyond the table's max are dropped
// as "full"; an entry whose tuple is already in the table as "clash".
func TestStateFileFullAndClash(t *testing.T) {
	h := newCTHarness(t, Config{})
	f := ctFamilies[0]
	for i := range 20 {
		h.pass(build.UDP(f.cli, uint16(2000+i), f.srv, 9, 8))
	}
	file := saveBytes(t, h, StateOptions{Host: "h", Time: stateTime})
	small, _ := NewTable(Config{Max: 12})
	rep, err := small.restoreState(bytes.NewReader(file), StateOptions{Host: "h", Time: stateTime, Workers: 1}, 0)
	if err != nil || rep.Restored != 12 || rep.Dropped["full"] != 8 || small.Count() != 12 {
		t.Fatalf("restore into max 12: %v %+v, table %d", err, rep, small.Count())
	}
	tab, _ := NewTable(Config{})
	if _, err := tab.restoreState(bytes.NewReader(file), StateOptions{Host: "h", Time: stateTime}, 0); err != nil {
		t.Fatal(err)
	}
	rep, err = tab.restoreState(bytes.NewReader(file), StateOptions{Host: "h", Time: stateTime}, 0)
	if err != nil || rep.Restored != 0 || rep.Dropped["clash"] != 20 || tab.Count() != 20 {
		t.Fatalf("second restore: %v %+v, table %d", err, rep, tab.Count())
	}
}

// TestStateFileExtra: named blobs ride after the entries and come back
// whole; a file cut inside one, or with a connection after one, is
// refused.
func TestStateFileExtra(t *testing.T) {
	h := newCTHarness(t, Config{})
	f := ctFamilies[0]
	h.pass(build.UDP(f.cli, 1000, f.srv, 2000, 10))
	extra := map[string][]byte{"runtime": []byte(`{"sets":[]}`), "other": {0, 1, 2}, "empty": {}}
	file := saveBytes(t, h, StateOptions{Host: "host-a", Time: stateTime, Extra: extra})
	tab, _ := NewTable(Config{})
	rep, err := tab.restoreState(bytes.NewReader(file), StateOptions{Host: "host-a", Time: stateTime}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Restored != 1 || len(rep.Extra) != len(extra) {
		t.Fatalf("report %+v: want 1 connection and %d extras", rep, len(extra))
	}
	for k, v := range extra {
		if !bytes.Equal(rep.Extra[k], v) {
			t.Errorf("extra %q = %q, want %q", k, rep.Extra[k], v)
		}
	}
	// Without extras a file has none in its report.
	plain := saveBytes(t, h, StateOptions{Host: "host-a", Time: stateTime})
	tab2, _ := NewTable(Config{})
	if rep, err := tab2.restoreState(bytes.NewReader(plain), StateOptions{Host: "host-a", Time: stateTime}, 0); err != nil || rep.Extra != nil {
		t.Fatalf("plain file: %+v, %v", rep, err)
	}
	refused(t, "cut inside an extra", file[:len(file)-2], "")
}
