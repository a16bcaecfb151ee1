package packet

import (
	"encoding/binary"
	"errors"
)

// Errors returned by Fragment4.
var (
	ErrDontFragment     = errors.New("packet: DF set, may not fragment")
	ErrMTU              = errors.New("packet: MTU too small to fragment into")
	ErrTooManyFragments = errors.New("packet: more fragments than output buffers")
	ErrIPOptions        = errors.New("packet: malformed IPv4 options")
)

// MinMTU4 is the smallest MTU an IPv4 link may have (RFC 791: every
// module must forward a 68-octet datagram without further fragmentation).
const MinMTU4 = 68

// Fragment4 splits the IPv4 packet p into fragments of at most mtu bytes,
// written into the caller's buffers out[0], out[1], ... (each resliced to
// its fragment's length; each needs cap ≥ mtu), and returns how many it
// wrote. A packet that already fits is copied into out[0].
//
// As RFC 791 specifies: data is cut at multiples of 8 bytes; the first
// fragment keeps every option, later ones only options with the copied
// flag; every fragment but the last has MF set. A packet that is itself a
// fragment is refragmented: offsets count from its own offset and the last
// piece keeps its MF flag. The buffers in out must not overlap p.
//
// It returns ErrDontFragment for a packet with DF set (the caller answers
// with fragmentation needed), ErrMTU for an mtu that leaves no room for 8
// bytes of data after the header, ErrTooManyFragments
// when out is too short, ErrNoRoom when a buffer is too small.
func Fragment4(p *Parsed, mtu int, out [][]byte) (n int, err error) {
	if p.Version != 4 {
		return 0, ErrUnsupported
	}
	// Below MinMTU4 is allowed: the gateway sends a reassembled datagram
	// on in the sizes it came in, as Linux does with frag_max_size, and
	// a sender may have used smaller fragments. One 8-byte unit of data
	// per fragment is the least that works.
	if mtu < p.IPHeaderLen()+8 {
		return 0, ErrMTU
	}
	b := p.b
	if len(b) <= mtu {
		if len(out) < 1 {
			return 0, ErrTooManyFragments
		}
		if cap(out[0]) < len(b) {
			return 0, ErrNoRoom
		}
		out[0] = out[0][:len(b)]
		copy(out[0], b)
		return 1, nil
	}
	if p.DF() {
		return 0, ErrDontFragment
	}
	hl := p.IPHeaderLen()
	opts := b[20:hl]
	copiedLen, err := copiedOptionsLen(opts)
	if err != nil {
		return 0, err
	}
	hlN := 20 + (copiedLen+3)&^3 // later fragments' header length
	data := b[hl:]
	first := (mtu - hl) &^ 7
	per := (mtu - hlN) &^ 7
	count := 1
	if rest := len(data) - first; rest > 0 {
		count += (rest + per - 1) / per
	}
	if count > len(out) {
		return 0, ErrTooManyFragments
	}

	off := 0
	for i := range count {
		h := hl
		size := first
		if i > 0 {
			h, size = hlN, per
		}
		last := off+size >= len(data)
		if last {
			size = len(data) - off
		}
		if cap(out[i]) < h+size {
			return i, ErrNoRoom
		}
		f := out[i][:h+size]
		out[i] = f
		copy(f[:20], b[:20])
		if i == 0 {
			copy(f[20:hl], opts)
		} else {
			writeCopiedOptions(f[20:hlN], opts)
			f[0] = 0x40 | uint8(hlN/4)
		}
		copy(f[h:], data[off:off+size])
		binary.BigEndian.PutUint16(f[2:], uint16(h+size))
		ff := uint16((p.FragOff + off) / 8)
		if !last || p.MoreFragments {
			ff |= 0x2000
		}
		binary.BigEndian.PutUint16(f[6:], ff)
		SetIPv4Checksum(f[:h])
		off += size
	}
	return count, nil
}

// copiedOptionsLen returns the length of the options in opts that carry the
// copied flag, checking the option list is well formed.
func copiedOptionsLen(opts []byte) (int, error) {
	n := 0
	for i := 0; i < len(opts); {
		t := opts[i]
		if t == 0 { // end of option list
			break
		}
		if t == 1 { // no-operation, one byte, not copied
			i++
			continue
		}
		if i+1 >= len(opts) {
			return 0, ErrIPOptions
		}
		l := int(opts[i+1])
		if l < 2 || i+l > len(opts) {
			return 0, ErrIPOptions
		}
		if t&0x80 != 0 {
			n += l
		}
		i += l
	}
	return n, nil
}

// writeCopiedOptions fills dst with the copied options of opts (already
// checked by copiedOptionsLen), padded with end-of-option-list bytes.
func writeCopiedOptions(dst, opts []byte) {
	w := 0
	for i := 0; i < len(opts); {
		t := opts[i]
		if t == 0 {
			break
		}
		if t == 1 {
			i++
			continue
		}
		l := int(opts[i+1])
		if t&0x80 != 0 {
			w += copy(dst[w:], opts[i:i+l])
		}
		i += l
	}
	clear(dst[w:])
}
