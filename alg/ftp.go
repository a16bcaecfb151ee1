package alg

import (
	"bytes"
	"time"

	"go.uber.org/zap"

	"tungate/conntrack"
	"tungate/packet"
)

// maxLine bounds the unfinished line kept per direction. Announcements are
// far shorter; a longer line is not parsed, and the connection goes on.
const maxLine = 1024

// ftpHelper is the FTP helper: it follows the control connection's lines
// and turns PORT/EPRT commands and 227/229 replies into expectations for
// the data connection, rewriting them when the connection is NATed
// (Linux's nf_conntrack_ftp with nf_nat_ftp).
type ftpHelper struct {
	loose   bool
	max     int
	timeout time.Duration
}

func newFTP(c FTPConfig) *ftpHelper {
	return &ftpHelper{loose: c.Loose, max: c.MaxExpected, timeout: time.Duration(c.Timeout)}
}

func (*ftpHelper) Name() string { return "ftp" }

func (*ftpHelper) Proto() uint8 { return packet.ProtoTCP }

// ftpState is one control connection's parser state, per direction.
type ftpState struct {
	dir [2]ftpDir
}

type ftpDir struct {
	// line holds the start of a line whose end has not arrived (already
	// passed on); allocated at maxLine capacity the first time.
	line []byte
	// skip ignores everything up to the next line end: inside an
	// over-long line, or after a gap in the stream.
	skip bool
}

// translated reports whether NAT changed the address direction d's sender
// has as the peer sees it. Only then must its announcements never leave
// unrewritten, so only then are partial lines held back and segments
// beyond a hole dropped.
func translated(c *conntrack.Conn, d conntrack.Dir) bool {
	return c.Tuple(d).Src != c.Tuple(1-d).Dst
}

// natted reports whether the connection has any NAT. Linux's nf_nat_ftp
// then rewrites every announcement it parses, both ways, also those of a
// sender whose own address was not translated (the address written is the
// one the receiver should use, which for such a sender is its own, in
// normal form), so tungate does too: the receiver sees the same bytes.
func natted(c *conntrack.Conn) bool {
	return c.Status()&conntrack.StatusNATMask != 0
}

// Help splits the new bytes into lines. A line is parsed only once
// complete (the start of one that continues is held in the buffer, never
// guessed at), and only from its first byte, so text inside another line
// is never taken for a command.
func (f *ftpHelper) Help(x *Context) Verdict {
	st, _ := x.State.(*ftpState)
	if st == nil {
		st = &ftpState{}
		x.State = st
	}
	d := &st.dir[x.Dir]
	hold := translated(x.Conn, x.Dir)
	if x.OutOfOrder {
		if hold {
			return Drop
		}
		return Accept
	}
	if x.Gap {
		d.line, d.skip = d.line[:0], true
	}
	if hold && d.mustHold(x.Data, x.Dir) {
		x.Stats().Held.Add(1)
		return Drop
	}
	held0, skip0 := len(d.line), d.skip
	for pos := 0; pos < len(x.Data); {
		nl := bytes.IndexByte(x.Data[pos:], '\n')
		if nl < 0 {
			d.hold(x, x.Data[pos:])
			return Accept
		}
		end := pos + nl + 1
		if d.skip {
			d.skip = false
			pos = end
			continue
		}
		line, held := x.Data[pos:end], len(d.line)
		if held+len(line) > maxLine {
			x.Stats().LongLines.Add(1)
			d.line = d.line[:0]
			pos = end
			continue
		}
		if held > 0 {
			d.line = append(d.line, line...)
			line = d.line
		} else if !mayAnnounce(line[0], x.Dir) {
			pos = end // the common line: no parse
			continue
		}
		grown, v := f.line(x, line, held, pos, hold)
		d.line = d.line[:0]
		if v != Accept {
			// Leave the state as it was: the packet comes again. Only
			// the final partial line ever overwrites the held bytes.
			d.line, d.skip = d.line[:held0], skip0
			return v
		}
		pos = end + grown
	}
	return Accept
}

// mayAnnounce reports whether a line starting with c can be an
// announcement of direction d (PORT, EPRT; 227, 229).
func mayAnnounce(c byte, d conntrack.Dir) bool {
	if d == conntrack.DirOriginal {
		c |= 0x20
		return c == 'p' || c == 'e'
	}
	return c == '2'
}

// mustHold reports whether the segment ends inside a line that will have
// to be rewritten and whose argument has begun in this segment: those
// bytes must not leave before the line is complete, so the segment is
// dropped and the sender resends it (hopefully whole) — Linux drops such
// "partial matches" too. So is a segment that starts a line and holds no
// more than the start of an announcement's word (Linux's find_pattern
// returns -1 for it, "PO" or "PORT "). The state is not changed.
func (d *ftpDir) mustHold(data []byte, dir conntrack.Dir) bool {
	if nl := bytes.LastIndexByte(data, '\n'); nl >= 0 {
		tail := data[nl+1:]
		return len(tail) <= maxLine && argStart(tail, dir) >= 0
	}
	held := len(d.line)
	if d.skip || held+len(data) > maxLine {
		return false
	}
	if held == 0 && partialWord(data, dir) {
		return true
	}
	if d.line == nil {
		d.line = make([]byte, 0, maxLine)
	}
	return argStart(append(d.line, data...), dir) >= held
}

// hold keeps the unfinished line at the end of the segment (already
// passed on) for parsing when its end comes.
func (d *ftpDir) hold(x *Context, tail []byte) {
	if d.skip {
		return
	}
	if len(d.line)+len(tail) > maxLine {
		x.Stats().LongLines.Add(1)
		d.line, d.skip = d.line[:0], true
		return
	}
	if d.line == nil {
		d.line = make([]byte, 0, maxLine)
	}
	d.line = append(d.line, tail...)
}

// line handles one complete line; held of its bytes came in earlier
// segments, the rest is Data[pos:]. hold says the sender is translated
// (its announcements never leave unrewritten). It returns how much the
// packet grew.
func (f *ftpHelper) line(x *Context, line []byte, held, pos int, hold bool) (int, Verdict) {
	cmd, ok, bad := parseFTPLine(line, x.Dir)
	if !ok {
		if bad {
			x.Stats().Ignored.Add(1)
			x.Log().Info("ftp: ignoring malformed announcement", zap.ByteString("line", bytes.TrimSpace(line)))
		}
		return 0, Accept
	}
	c := x.Conn
	sender, peer := c.Tuple(x.Dir), c.Tuple(1-x.Dir)
	fam := sender.Family
	if cmd.kind == ftpEPSV {
		cmd.family, cmd.addr = fam, sender.Src
	}
	if cmd.family != fam {
		x.Stats().Ignored.Add(1)
		x.Log().Info("ftp: ignoring announcement of the other address family", zap.Stringer("cmd", cmd.kind))
		return 0, Accept
	}
	ann := cmd.addr.NetIP(fam)
	if ann.IsUnspecified() || ann.IsMulticast() || (fam == 4 && ann == broadcast4) {
		x.Stats().Ignored.Add(1)
		x.Log().Info("ftp: ignoring announced non-unicast address", zap.Stringer("cmd", cmd.kind), zap.Stringer("addr", ann))
		return 0, Accept
	}
	own := cmd.addr == sender.Src
	if !own && !f.loose {
		// FTP bounce / NAT slipstreaming: a data connection to anyone but
		// the announcing host is not opened without loose.
		x.Stats().Ignored.Add(1)
		x.Log().Warn("ftp: ignoring announced address that is not the sender's",
			zap.Stringer("cmd", cmd.kind), zap.Stringer("announced", ann),
			zap.Stringer("sender", sender.SrcAddr()), zap.Stringer("peer", sender.DstAddr()))
		return 0, Accept
	}
	// The data connection comes from the peer, as it sends, to the sender
	// as the peer knows it (translated); it may use any source port.
	e := &conntrack.Expectation{
		Tuple: conntrack.Tuple{
			Src: peer.Src, Dst: cmd.addr, DstPort: cmd.port,
			Proto: packet.ProtoTCP, Family: fam,
		},
		Mask:    conntrack.FullMask,
		Master:  c,
		Helper:  "ftp",
		Expires: x.Table().Now() + int64(f.timeout),
	}
	e.Mask.SrcPort = 0
	x.FollowMaster(e, sender.Dst, cmd.addr, cmd.port)
	if !own || !natted(c) || (cmd.start < held && !hold) {
		// No rewrite: none is needed, or (an untranslated sender's line
		// that came in parts, see G31 in the conformance suite) the
		// argument already left as the sender wrote it, which names the
		// right address.
		if err := x.Expect(e, f.max); err != nil {
			x.Log().Warn("ftp: cannot add expectation", zap.Error(err))
			return 0, Drop
		}
		return 0, Accept
	}
	if cmd.start < held {
		// Part of the argument already left unrewritten: possible only
		// after a mid-stream pickup. Do not open anything for it.
		x.Stats().Unrewritable.Add(1)
		x.Log().Warn("ftp: announcement split before its rewrite could start; ignored", zap.Stringer("cmd", cmd.kind))
		return 0, Accept
	}
	e.Tuple.Dst = peer.Dst
	port, err := x.ExpectPort(e, cmd.port, f.max)
	if err != nil {
		x.Log().Warn("ftp: no external port for the data connection", zap.Error(err))
		return 0, Drop
	}
	var buf [64]byte
	arg := appendArg(buf[:0], &cmd, peer.Dst, port)
	if err := x.Mangle(pos+cmd.start-held, cmd.end-cmd.start, arg); err != nil {
		x.Table().Unexpect(e)
		x.Log().Warn("ftp: cannot rewrite the announcement", zap.Error(err))
		return 0, Drop
	}
	return len(arg) - (cmd.end - cmd.start), Accept
}
