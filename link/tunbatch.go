package link

import (
	"encoding/binary"
	"errors"
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/tun"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"

	"tungate/packet"
)

// Batched reads from a kernel TUN. A read on a TUN returns one frame, and
// wireguard-go's Read makes one read per call, so a flood of small
// packets (64-byte UDP) costs the datapath a read, a pass and a write per
// packet: a system call each way, which on a virtual machine is most of
// the cost. After the blocking read, rawBatch takes what else is already
// queued on the descriptor with non-blocking reads straight into the
// caller's buffers (the virtio header in the headroom), so one pass and
// one batched write (the uplink's sendmmsg, the other TUN's GRO write)
// serve them all. A GSO frame met that way is kept and split on the next
// Read, alone, as wireguard-go splits the first.

// vnetHdrLen is sizeof(struct virtio_net_hdr).
const vnetHdrLen = 10

// batchBytes ends a batch of extra reads once it holds this much, as a
// GSO frame would: the batching is for floods of small packets; big ones
// (a jumbo MTU's 64 KB segments) are worth a read each already, and a
// batch of 128 of them would pass the datapath out of the cache.
const batchBytes = 64 << 10

// virtio_net_hdr fields (linux/virtio_net.h).
const (
	vnetNeedsCsum = 1 // VIRTIO_NET_HDR_F_NEEDS_CSUM
	gsoNone       = 0
	gsoTCPv4      = 1
	gsoTCPv6      = 4
	gsoUDPL4      = 5
)

// rawBatch reads extra frames from a TUN descriptor.
type rawBatch struct {
	rc   syscall.RawConn
	vnet bool // IFF_VNET_HDR: every frame starts with a virtio header
	// pend holds a GSO frame (virtio header first) read after the first
	// packet of a batch, split at the start of the next Read.
	pend  []byte
	npend int

	// readFn is the one closure readOne hands to rc.Read, made once: a
	// closure per read would escape to the heap, an allocation per
	// packet. buf, n and err are its argument and results.
	readFn func(fd uintptr) bool
	buf    []byte
	n      int
	err    error
}

// newRawBatch returns the extra reader for dev, or nil when dev is not a
// kernel TUN (an in-memory test device) or its flags cannot be read.
func newRawBatch(dev tun.Device) *rawBatch {
	// Only wireguard-go's own device: test devices that embed a nil
	// tun.Device would answer File with a panic.
	nt, ok := dev.(*tun.NativeTun)
	if !ok {
		return nil
	}
	f := nt.File()
	if f == nil {
		return nil
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return nil
	}
	var flags uint16
	var ierr error
	cerr := rc.Control(func(fd uintptr) {
		var ifr *unix.Ifreq
		if ifr, ierr = unix.NewIfreq(""); ierr != nil {
			return
		}
		if ierr = unix.IoctlIfreq(int(fd), unix.TUNGETIFF, ifr); ierr == nil {
			flags = ifr.Uint16()
		}
	})
	if cerr != nil || ierr != nil || flags&unix.IFF_TUN == 0 {
		return nil
	}
	r := &rawBatch{rc: rc, vnet: flags&unix.IFF_VNET_HDR != 0}
	r.readFn = func(fd uintptr) bool {
		for {
			r.n, r.err = unix.Read(int(fd), r.buf)
			if r.err != unix.EINTR {
				return true // never wait: the batch goes as it is
			}
		}
	}
	return r
}

// readOne makes one non-blocking read into b; 0 when nothing is queued
// (or the descriptor failed: the next blocking read reports that).
func (r *rawBatch) readOne(b []byte) int {
	r.buf = b
	cerr := r.rc.Read(r.readFn)
	r.buf = nil
	if cerr != nil || r.err != nil || r.n < 0 {
		return 0
	}
	return r.n
}

// errBadFrame: a frame the batched reads dropped (shorter than its virtio
// header, or a checksum position outside the packet), reported with the
// batch so the datapath counts it as wireguard-go's own errors are.
var errBadFrame = errors.New("tun: malformed frame dropped")

// more appends what is queued to bufs[n:], after n packets already read,
// and returns the new count. It stops at a GSO frame, which it keeps for
// the next Read, and at a malformed frame (errBadFrame).
func (r *rawBatch) more(bufs [][]byte, sizes []int, offset, n int) (int, error) {
	hl := 0
	if r.vnet {
		hl = vnetHdrLen
		if offset < hl {
			return n, nil
		}
	}
	bytes := 0
	for i := range n {
		bytes += sizes[i]
	}
	for n < len(bufs) && bytes < batchBytes {
		b := bufs[n][offset-hl:]
		m := r.readOne(b)
		if m == 0 {
			return n, nil
		}
		bytes += m
		if !r.vnet {
			sizes[n] = m
			n++
			continue
		}
		if m < hl {
			return n, errBadFrame
		}
		if b[1] != gsoNone {
			if r.pend == nil {
				r.pend = make([]byte, vnetHdrLen+65535)
			}
			r.npend = copy(r.pend, b[:m])
			return n, nil
		}
		pkt := b[hl:m]
		if b[0]&vnetNeedsCsum != 0 && !finishCsum(pkt, vnetField(b, 6), vnetField(b, 8)) {
			return n, errBadFrame
		}
		sizes[n] = len(pkt)
		n++
	}
	return n, nil
}

// vnetField reads a 16-bit virtio header field (the host's byte order:
// legacy virtio_net_hdr, as TUNSETVNETLE is never set).
func vnetField(h []byte, off int) uint16 { return binary.NativeEndian.Uint16(h[off:]) }

// finishCsum completes a partial checksum (CHECKSUM_PARTIAL): the field at
// start+off holds the pseudo-header sum; the sum from start on goes there.
func finishCsum(pkt []byte, start, off uint16) bool {
	at := int(start) + int(off)
	if at+1 >= len(pkt) || int(start) > len(pkt) {
		return false
	}
	initial := binary.BigEndian.Uint16(pkt[at:])
	pkt[at], pkt[at+1] = 0, 0
	binary.BigEndian.PutUint16(pkt[at:], ^checksum.Checksum(pkt[start:], initial))
	return true
}

// errTooManySegments: a GSO frame splits into more packets than the
// caller has buffers for.
var errTooManySegments = errors.New("tun: GSO frame has more segments than buffers")

// splitPending splits the kept GSO frame into bufs, computing every
// segment's headers and checksums, and forgets it.
func (r *rawBatch) splitPending(bufs [][]byte, sizes []int, offset int) (int, error) {
	frame := r.pend[:r.npend]
	r.npend = 0
	return gsoSplit(frame, bufs, sizes, offset)
}

// gsoSplit cuts a TCP or UDP GSO frame (virtio header first) into
// segments of gso_size payload bytes, as the kernel's segmentation would:
// IPv4 identifiers counting up, TCP sequence numbers advancing, FIN and
// PSH on the last segment only, CWR on the first only, every length and
// checksum recomputed.
func gsoSplit(frame []byte, bufs [][]byte, sizes []int, offset int) (int, error) {
	if len(frame) < vnetHdrLen {
		return 0, errors.New("tun: short virtio header")
	}
	// csum_start is where the transport header begins.
	return splitSegments(frame[vnetHdrLen:], frame[1], int(vnetField(frame, 4)), int(vnetField(frame, 6)), bufs, sizes, offset)
}

// SplitTCP cuts the IPv4 or IPv6 TCP packet pkt (no IPv6 extension
// headers) into segments of gsoSize payload bytes in bufs[i][offset:], as
// a device doing TCP segmentation offload would (see gsoSplit), every
// checksum computed: for a writer that cannot take a GSO packet.
func SplitTCP(pkt []byte, gsoSize int, bufs [][]byte, sizes []int, offset int) (int, error) {
	if len(pkt) < 1 {
		return 0, errors.New("tun: empty GSO frame")
	}
	if pkt[0]>>4 == 6 {
		return splitSegments(pkt, gsoTCPv6, gsoSize, 40, bufs, sizes, offset)
	}
	return splitSegments(pkt, gsoTCPv4, gsoSize, int(pkt[0]&0xf)*4, bufs, sizes, offset)
}

// splitSegments is gsoSplit of the frame in whose virtio header gave typ,
// gsoSize and iphLen.
func splitSegments(in []byte, typ byte, gsoSize, iphLen int, bufs [][]byte, sizes []int, offset int) (int, error) {
	if len(in) == 0 {
		return 0, errors.New("tun: empty GSO frame")
	}
	v6 := in[0]>>4 == 6
	switch {
	case typ == gsoTCPv4 && !v6, typ == gsoTCPv6 && v6, typ == gsoUDPL4 && (in[0]>>4 == 4 || v6):
	default:
		return 0, fmt.Errorf("tun: unsupported GSO type %d for IP version %d", typ, in[0]>>4)
	}
	if (!v6 && iphLen < 20) || (v6 && iphLen < 40) || gsoSize == 0 {
		return 0, fmt.Errorf("tun: GSO frame with header length %d, segment size %d", iphLen, gsoSize)
	}
	tcp := typ != gsoUDPL4
	hdrLen := iphLen + 8
	if tcp {
		if len(in) < iphLen+20 {
			return 0, errors.New("tun: GSO frame shorter than its TCP header")
		}
		th := int(in[iphLen+12]>>4) * 4
		if th < 20 {
			return 0, fmt.Errorf("tun: TCP header length %d", th)
		}
		hdrLen = iphLen + th
	}
	if len(in) < hdrLen {
		return 0, fmt.Errorf("tun: GSO frame of %d bytes, headers of %d", len(in), hdrLen)
	}
	payload := in[hdrLen:]
	var seq uint32
	var id uint16
	if tcp {
		seq = binary.BigEndian.Uint32(in[iphLen+4:])
	}
	if !v6 {
		id = binary.BigEndian.Uint16(in[4:])
	}
	n := 0
	for off := 0; off < len(payload) || off == 0; off += gsoSize {
		if n == len(bufs) {
			return n, errTooManySegments
		}
		end := min(off+gsoSize, len(payload))
		out := bufs[n][offset:]
		total := hdrLen + end - off
		if total > len(out) {
			return n, fmt.Errorf("tun: segment of %d bytes overflows a buffer of %d", total, len(out))
		}
		copy(out, in[:hdrLen])
		copy(out[hdrLen:], payload[off:end])
		pkt := out[:total]
		if v6 {
			binary.BigEndian.PutUint16(pkt[4:], uint16(total-40))
		} else {
			binary.BigEndian.PutUint16(pkt[2:], uint16(total))
			binary.BigEndian.PutUint16(pkt[4:], id+uint16(n))
			pkt[10], pkt[11] = 0, 0
			binary.BigEndian.PutUint16(pkt[10:], ^checksum.Checksum(pkt[:iphLen], 0))
		}
		l4 := pkt[iphLen:]
		var src, dst []byte
		if v6 {
			src, dst = pkt[8:24], pkt[24:40]
		} else {
			src, dst = pkt[12:16], pkt[16:20]
		}
		proto := uint8(17)
		csumAt := 6
		if tcp {
			proto, csumAt = 6, 16
			binary.BigEndian.PutUint32(l4[4:], seq+uint32(off))
			if end < len(payload) {
				l4[13] &^= 0x01 | 0x08 // FIN, PSH: the last segment's
			}
			if n > 0 {
				l4[13] &^= 0x80 // CWR: the first segment's
			}
		} else {
			binary.BigEndian.PutUint16(l4[4:], uint16(len(l4)))
		}
		l4[csumAt], l4[csumAt+1] = 0, 0
		ver := uint8(4)
		if v6 {
			ver = 6
		}
		c := ^checksum.Checksum(l4, packet.PseudoSum(ver, src, dst, proto, len(l4)))
		if !tcp && c == 0 {
			c = 0xffff
		}
		binary.BigEndian.PutUint16(l4[csumAt:], c)
		sizes[n] = total
		n++
		if end == len(payload) {
			break
		}
	}
	return n, nil
}
