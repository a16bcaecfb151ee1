// Package pcapng writes and reads the few pcapng blocks tungate's capture
// uses (draft-ietf-opsawg-pcapng): a section header, one interface
// description per captured link (LINKTYPE_RAW: the packet starts at the
// IP header), enhanced packet blocks with a comment (the verdict), the
// direction flags (epb_flags) and a drop count (epb_dropcount), and an
// interface statistics block at the end.
//
// gopacket's pcapgo.NgWriter (v1.1.19) writes enhanced packet blocks
// without options, so it cannot carry the direction or the verdict; the
// blocks are small enough to encode here. The reader exists for tests and
// reads what the writer writes (little-endian sections, any options).
package pcapng

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"
)

// Block types and option codes used here.
const (
	blockSHB = 0x0A0D0D0A
	blockIDB = 0x00000001
	blockEPB = 0x00000006
	blockISB = 0x00000005

	byteOrderMagic = 0x1A2B3C4D

	optEnd     = 0
	optComment = 1
	// shb_userappl
	optUserAppl = 4
	// if_name, if_tsresol
	optIfName   = 2
	optTSResol  = 9
	optEPBFlags = 2
	optEPBDrops = 4
	// isb_starttime, isb_endtime, isb_ifrecv, isb_osdrop
	optISBStart  = 2
	optISBEnd    = 3
	optISBIfRecv = 4
	optISBOSDrop = 7
)

// LinkTypeRaw is LINKTYPE_RAW: raw IPv4 or IPv6.
const LinkTypeRaw = 101

// Direction is an enhanced packet block's direction (epb_flags bits 0-1).
type Direction uint8

// Directions.
const (
	DirUnknown  Direction = 0
	DirInbound  Direction = 1
	DirOutbound Direction = 2
)

// String names the direction as tcpdump does.
func (d Direction) String() string {
	switch d {
	case DirInbound:
		return "In"
	case DirOutbound:
		return "Out"
	}
	return "?"
}

// Packet is one enhanced packet block.
type Packet struct {
	Interface uint32
	Time      time.Time
	// Data is the captured bytes; OrigLen the packet's length on the
	// wire (more when truncated).
	Data    []byte
	OrigLen int
	Dir     Direction
	Comment string
	// Drops is epb_dropcount: packets lost between the previous packet
	// and this one.
	Drops uint64
}

// Stats is an interface statistics block.
type Stats struct {
	Interface     uint32
	Start, End    time.Time
	Received      uint64
	Dropped       uint64
	HaveReceived  bool
	HaveDropped   bool
	HaveStartTime bool
}

// AppendHeader appends a section header block naming the writer and one
// interface description block per interface name (nanosecond timestamps,
// LINKTYPE_RAW, the given snap length).
func AppendHeader(b []byte, appl string, snaplen uint32, ifaces ...string) []byte {
	start := len(b)
	b = le32(b, blockSHB)
	b = le32(b, 0) // length, below
	b = le32(b, byteOrderMagic)
	b = le16(b, 1)
	b = le16(b, 0)
	b = le64(b, ^uint64(0)) // section length unknown
	b = appendOpt(b, optUserAppl, []byte(appl))
	b = appendEnd(b)
	b = finish(b, start)
	for _, name := range ifaces {
		start = len(b)
		b = le32(b, blockIDB)
		b = le32(b, 0)
		b = le16(b, LinkTypeRaw)
		b = le16(b, 0)
		b = le32(b, snaplen)
		b = appendOpt(b, optIfName, []byte(name))
		b = appendOpt(b, optTSResol, []byte{9})
		b = appendEnd(b)
		b = finish(b, start)
	}
	return b
}

// AppendPacket appends an enhanced packet block.
func AppendPacket(b []byte, p *Packet) []byte {
	start := len(b)
	ts := uint64(p.Time.UnixNano())
	b = le32(b, blockEPB)
	b = le32(b, 0)
	b = le32(b, p.Interface)
	b = le32(b, uint32(ts>>32))
	b = le32(b, uint32(ts))
	b = le32(b, uint32(len(p.Data)))
	b = le32(b, uint32(max(p.OrigLen, len(p.Data))))
	b = append(b, p.Data...)
	b = pad(b)
	opts := false
	if p.Comment != "" {
		b = appendOpt(b, optComment, []byte(p.Comment))
		opts = true
	}
	if p.Dir != DirUnknown {
		var f [4]byte
		binary.LittleEndian.PutUint32(f[:], uint32(p.Dir))
		b = appendOpt(b, optEPBFlags, f[:])
		opts = true
	}
	if p.Drops != 0 {
		var f [8]byte
		binary.LittleEndian.PutUint64(f[:], p.Drops)
		b = appendOpt(b, optEPBDrops, f[:])
		opts = true
	}
	if opts {
		b = appendEnd(b)
	}
	return finish(b, start)
}

// AppendStats appends an interface statistics block.
func AppendStats(b []byte, s *Stats) []byte {
	start := len(b)
	ts := uint64(s.End.UnixNano())
	b = le32(b, blockISB)
	b = le32(b, 0)
	b = le32(b, s.Interface)
	b = le32(b, uint32(ts>>32))
	b = le32(b, uint32(ts))
	var v [8]byte
	putTS := func(code uint16, t time.Time) {
		n := uint64(t.UnixNano())
		binary.LittleEndian.PutUint32(v[:4], uint32(n>>32))
		binary.LittleEndian.PutUint32(v[4:], uint32(n))
		b = appendOpt(b, code, v[:])
	}
	putTS(optISBStart, s.Start)
	putTS(optISBEnd, s.End)
	binary.LittleEndian.PutUint64(v[:], s.Received)
	b = appendOpt(b, optISBIfRecv, v[:])
	binary.LittleEndian.PutUint64(v[:], s.Dropped)
	b = appendOpt(b, optISBOSDrop, v[:])
	b = appendEnd(b)
	return finish(b, start)
}

func le16(b []byte, v uint16) []byte { return binary.LittleEndian.AppendUint16(b, v) }
func le32(b []byte, v uint32) []byte { return binary.LittleEndian.AppendUint32(b, v) }
func le64(b []byte, v uint64) []byte { return binary.LittleEndian.AppendUint64(b, v) }

func pad(b []byte) []byte {
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

func appendOpt(b []byte, code uint16, v []byte) []byte {
	if len(v) > 0xffff {
		v = v[:0xffff]
	}
	b = le16(b, code)
	b = le16(b, uint16(len(v)))
	b = append(b, v...)
	return pad(b)
}

func appendEnd(b []byte) []byte { return le32(b, 0) }

// finish writes the block's total length at its start and its end. Blocks
// are built aligned from a 4-byte-aligned start.
func finish(b []byte, start int) []byte {
	n := uint32(len(b) - start + 4)
	binary.LittleEndian.PutUint32(b[start+4:], n)
	return le32(b, n)
}

// Reader reads blocks written by this package (little-endian sections).
type Reader struct {
	r      io.Reader
	buf    []byte
	Ifaces []Interface
	// Stats are the statistics blocks read so far.
	Stats []Stats
	// Appl is the section header's shb_userappl.
	Appl string
}

// Interface is an interface description block.
type Interface struct {
	LinkType uint16
	SnapLen  uint32
	Name     string
	TSResol  uint8
}

// NewReader reads the section header block.
func NewReader(r io.Reader) (*Reader, error) {
	rd := &Reader{r: r}
	typ, body, err := rd.block()
	if err != nil {
		return nil, err
	}
	if typ != blockSHB {
		return nil, fmt.Errorf("pcapng: first block is %#x, not a section header", typ)
	}
	if len(body) < 16 || binary.LittleEndian.Uint32(body[:4]) != byteOrderMagic {
		return nil, errors.New("pcapng: not a little-endian section")
	}
	return rd, rd.options(body[16:], func(code uint16, v []byte) {
		if code == optUserAppl {
			rd.Appl = string(v)
		}
	})
}

// Next returns the next packet; io.EOF at the end. Interface and
// statistics blocks on the way are recorded.
func (rd *Reader) Next() (*Packet, error) {
	for {
		typ, body, err := rd.block()
		if err != nil {
			return nil, err
		}
		switch typ {
		case blockIDB:
			if len(body) < 8 {
				return nil, errors.New("pcapng: short interface block")
			}
			in := Interface{LinkType: binary.LittleEndian.Uint16(body), SnapLen: binary.LittleEndian.Uint32(body[4:]), TSResol: 6}
			if err := rd.options(body[8:], func(code uint16, v []byte) {
				switch {
				case code == optIfName:
					in.Name = string(v)
				case code == optTSResol && len(v) == 1:
					in.TSResol = v[0]
				}
			}); err != nil {
				return nil, err
			}
			rd.Ifaces = append(rd.Ifaces, in)
		case blockEPB:
			if len(body) < 20 {
				return nil, errors.New("pcapng: short packet block")
			}
			p := &Packet{Interface: binary.LittleEndian.Uint32(body)}
			if int(p.Interface) >= len(rd.Ifaces) {
				return nil, fmt.Errorf("pcapng: packet of undeclared interface %d", p.Interface)
			}
			ts := uint64(binary.LittleEndian.Uint32(body[4:]))<<32 | uint64(binary.LittleEndian.Uint32(body[8:]))
			if rd.Ifaces[p.Interface].TSResol == 9 {
				p.Time = time.Unix(0, int64(ts))
			} else {
				p.Time = time.UnixMicro(int64(ts))
			}
			caplen := binary.LittleEndian.Uint32(body[12:])
			p.OrigLen = int(binary.LittleEndian.Uint32(body[16:]))
			if uint64(caplen) > uint64(len(body)-20) {
				return nil, errors.New("pcapng: packet longer than its block")
			}
			p.Data = append([]byte(nil), body[20:20+caplen]...)
			off := 20 + (int(caplen)+3)&^3
			if off > len(body) {
				off = len(body)
			}
			if err := rd.options(body[off:], func(code uint16, v []byte) {
				switch {
				case code == optComment:
					p.Comment = string(v)
				case code == optEPBFlags && len(v) == 4:
					p.Dir = Direction(binary.LittleEndian.Uint32(v) & 3)
				case code == optEPBDrops && len(v) == 8:
					p.Drops = binary.LittleEndian.Uint64(v)
				}
			}); err != nil {
				return nil, err
			}
			return p, nil
		case blockISB:
			if len(body) < 12 {
				return nil, errors.New("pcapng: short statistics block")
			}
			s := Stats{Interface: binary.LittleEndian.Uint32(body)}
			if err := rd.options(body[12:], func(code uint16, v []byte) {
				switch {
				case code == optISBIfRecv && len(v) == 8:
					s.Received, s.HaveReceived = binary.LittleEndian.Uint64(v), true
				case code == optISBOSDrop && len(v) == 8:
					s.Dropped, s.HaveDropped = binary.LittleEndian.Uint64(v), true
				case code == optISBStart && len(v) == 8:
					s.HaveStartTime = true
				}
			}); err != nil {
				return nil, err
			}
			rd.Stats = append(rd.Stats, s)
		}
	}
}

// block reads one block: its type and body (without type, lengths).
func (rd *Reader) block() (uint32, []byte, error) {
	var hdr [8]byte
	if _, err := io.ReadFull(rd.r, hdr[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return 0, nil, errors.New("pcapng: truncated block header")
		}
		return 0, nil, err
	}
	typ := binary.LittleEndian.Uint32(hdr[:])
	n := binary.LittleEndian.Uint32(hdr[4:])
	if n < 12 || n%4 != 0 || n > 1<<24 {
		return 0, nil, fmt.Errorf("pcapng: bad block length %d", n)
	}
	if cap(rd.buf) < int(n-8) {
		rd.buf = make([]byte, n-8)
	}
	b := rd.buf[:n-8]
	if _, err := io.ReadFull(rd.r, b); err != nil {
		return 0, nil, errors.New("pcapng: truncated block")
	}
	if binary.LittleEndian.Uint32(b[len(b)-4:]) != n {
		return 0, nil, errors.New("pcapng: block lengths differ")
	}
	return typ, b[:len(b)-4], nil
}

// options walks an option list.
func (rd *Reader) options(b []byte, f func(code uint16, v []byte)) error {
	for len(b) >= 4 {
		code := binary.LittleEndian.Uint16(b)
		n := int(binary.LittleEndian.Uint16(b[2:]))
		if code == optEnd {
			return nil
		}
		if 4+n > len(b) {
			return errors.New("pcapng: option longer than its block")
		}
		f(code, b[4:4+n])
		b = b[min(4+(n+3)&^3, len(b)):]
	}
	return nil
}
