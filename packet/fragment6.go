package packet

import "encoding/binary"

// Fragment6 splits the IPv6 packet p into fragments of at most size bytes
// with the given identification, written into out[0], out[1], ... (each
// resliced to its length), and returns how many it wrote. Routers never
// fragment IPv6 (RFC 8200 section 4.5); the gateway uses this only to send
// a datagram it reassembled on in pieces no larger than those it arrived
// in, as Linux's ip6_fragment does for forwarded reassembled packets.
//
// The unfragmentable part (the IPv6 header, hop-by-hop and routing headers
// and destination options before a routing header) is repeated in every
// fragment, followed by a fragment header.
func Fragment6(p *Parsed, size int, id uint32, out [][]byte) (int, error) {
	if p.Version != 6 {
		return 0, ErrUnsupported
	}
	b := p.b
	// Find the end of the unfragmentable part and the next-header byte
	// that points past it.
	unfrag, nhAt := 40, 6
	off, nh := 40, b[6]
	for i := 0; i <= maxExtHeaders; i++ {
		if nh != 0 && nh != 43 && nh != 60 {
			break
		}
		if len(b) < off+8 {
			return 0, ErrExtHeader
		}
		l := (int(b[off+1]) + 1) * 8
		if len(b) < off+l {
			return 0, ErrExtHeader
		}
		if nh == 0 || nh == 43 {
			unfrag, nhAt = off+l, off
		}
		nh = b[off]
		off += l
	}
	per := (size - unfrag - 8) &^ 7
	if per < 8 {
		return 0, ErrMTU
	}
	data := b[unfrag:]
	count := (len(data) + per - 1) / per
	if count > len(out) {
		return 0, ErrTooManyFragments
	}
	next := b[nhAt]
	for i := range count {
		start := i * per
		end := min(start+per, len(data))
		n := unfrag + 8 + end - start
		if cap(out[i]) < n {
			return 0, ErrNoRoom
		}
		f := out[i][:n]
		copy(f, b[:unfrag])
		f[nhAt] = 44
		binary.BigEndian.PutUint16(f[4:], uint16(n-40))
		fh := f[unfrag:]
		fh[0], fh[1] = next, 0
		fo := uint16(start)
		if end < len(data) {
			fo |= 1
		}
		binary.BigEndian.PutUint16(fh[2:], fo)
		binary.BigEndian.PutUint32(fh[4:], id)
		copy(f[unfrag+8:], data[start:end])
		out[i] = f
	}
	return count, nil
}
