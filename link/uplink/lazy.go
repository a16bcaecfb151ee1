package uplink

import (
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"tungate/link"
)

// lazyMin is the least payload Read leaves in the stack's buffers: below
// it the copy costs less than handing the pieces on (one more iovec per
// write). A full segment at MTU 1500 (1,460 bytes) is above it.
const lazyMin = 1024

// maxLazyHeader bounds the headers of a packet read lazily: an IPv6
// header and a TCP header with the most options.
const maxLazyHeader = header.IPv6MinimumSize + header.TCPHeaderMaximumSize

// ReadLazily lets later Reads leave the payload of the TCP stack's large
// segments where the stack holds it (see link.LazyReader): the forward
// toward the container then copies it once, in the output device's write,
// instead of once into the datapath's buffer and again in the write.
func (l *Link) ReadLazily() { l.lazy = true }

// Lazy reports how much of packet i of the last Read was copied and the
// pieces of the rest (nil: all of it was copied). They stay valid until
// the next Read.
func (l *Link) Lazy(i int) (int, [][]byte) {
	if i >= len(l.pieces) || l.hdr[i] < 0 {
		return 0, nil
	}
	return l.hdr[i], l.pieces[i]
}

var _ link.LazyReader = (*Link)(nil)

// readLazily copies only the headers of the stack's packet p into b and
// keeps the pieces of its payload as packet i of the batch, holding p
// until the next Read. It reports false, having done nothing, for a
// packet whose payload is small.
func (l *Link) readLazily(b []byte, i int, p *outPkt) bool {
	pkt := p.pkt
	hdr := pkt.HeaderSize()
	// The headers are what the datapath parses and rewrites: an IP
	// header and a TCP header, options included, all in b.
	if pkt.Size()-hdr < lazyMin || hdr < header.IPv4MinimumSize+header.TCPMinimumSize || hdr > maxLazyHeader {
		return false
	}
	for len(l.pieces) <= i {
		l.pieces = append(l.pieces, nil)
		l.hdr = append(l.hdr, 0)
	}
	// The headers are the stack's prepended views, the payload its send
	// queue's: one walk copies the first and names the others.
	pcs := l.pieces[i][:0]
	vl, off := pkt.AsViewList()
	n := 0
	for v := vl.Front(); v != nil; v = v.Next() {
		s := v.AsSlice()
		if off >= len(s) {
			off -= len(s)
			continue
		}
		s = s[off:]
		off = 0
		if n < hdr {
			c := copy(b[n:hdr], s)
			n += c
			s = s[c:]
		}
		if len(s) > 0 {
			if rest := pkt.Size() - n; len(s) > rest {
				s = s[:rest]
			}
			pcs = append(pcs, s)
			n += len(s)
		}
		if n >= pkt.Size() {
			break
		}
	}
	l.pieces[i], l.hdr[i] = pcs, hdr
	l.held = append(l.held, p)
	return true
}

// GSO reports the segment size packet i of the last Read is to be cut
// into (see link.GSOReader), 0 when it is not to be cut.
func (l *Link) GSO(i int) int {
	if i >= len(l.gso) {
		return 0
	}
	return l.gso[i]
}

var _ link.GSOReader = (*Link)(nil)

// setGSO records packet i's segment size: the stack's MSS when it sent
// more than one segment's payload at once (Config.GSO).
func (l *Link) setGSO(i int, p *outPkt) {
	if !l.cfg.GSO {
		return
	}
	for len(l.gso) <= i {
		l.gso = append(l.gso, 0)
	}
	l.gso[i] = 0
	if p.pkt == nil {
		return
	}
	o := p.pkt.GSOOptions
	if (o.Type == stack.GSOTCPv4 || o.Type == stack.GSOTCPv6) && o.MSS > 0 && p.pkt.Data().Size() > int(o.MSS) {
		l.gso[i] = int(o.MSS)
	}
}

// noPieces marks packet i of the batch as copied whole.
func (l *Link) noPieces(i int) {
	if i < len(l.hdr) {
		l.hdr[i] = -1
	}
}

// releaseHeld gives back the packets the last batch left their payload
// in: whoever read it lazily has written it by now (see link.LazyReader).
func (l *Link) releaseHeld() {
	for i, p := range l.held {
		putPkt(p)
		l.held[i] = nil
	}
	l.held = l.held[:0]
}
