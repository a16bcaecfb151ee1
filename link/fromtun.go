package link

import (
	"encoding/binary"
	"errors"
	"os"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/tun"

	"tungate/packet"
)

// TUN is a wireguard-go tun.Device seen as a Link. Its method set is
// already Link's; what it adds is the one rule for trusting a device's
// checksums, so kernel TUNs and the in-memory devices of tests agree on it,
// and checksum offload for the TCP segments the uplink generates.
type TUN struct {
	dev   tun.Device
	flags Flags
	raw   *rawBatch // nil: not a kernel TUN, one packet per read
	// skip and backoff ration the extra reads: a non-blocking read that
	// finds nothing is a wasted system call, so after one the next few
	// reads (doubling up to maxBackoff) do not look.
	skip, backoff int

	// wraw is the kernel device's descriptor when it carries the virtio
	// header (IFF_VNET_HDR), nil otherwise: WritePartial writes a packet
	// with VIRTIO_NET_HDR_F_NEEDS_CSUM through it, which wireguard-go's
	// Write cannot (its header says "no offload" for every packet it does
	// not coalesce, and 64 KiB segments never coalesce).
	wraw syscall.RawConn
	wmu  sync.Mutex // serializes WritePartial's use of the fields below
	// wb and werr are rawWrite's argument and result: one closure made
	// once, so a write allocates nothing.
	wb       []byte
	werr     error
	rawWrite func(fd uintptr) bool
	// wv is rawWritev's argument, the iovecs of a packet in pieces
	// (WritePartialVec), kept so a write allocates nothing.
	wv        []unix.Iovec
	rawWritev func(fd uintptr) bool
}

// maxBackoff is the most reads that go without looking for more after
// fruitless looks: at a low packet rate one wasted read in that many.
const maxBackoff = 16

// FromTUN adapts dev. It does not drain dev's Events: whoever creates a
// device that sends them (link/tun) owns that.
func FromTUN(dev tun.Device) *TUN {
	t := &TUN{dev: dev, raw: newRawBatch(dev)}
	// Only wireguard-go's kernel TUN has a descriptor (newRawBatch asks
	// for it); partial checksums need the virtio header on it.
	if t.raw != nil && t.raw.vnet {
		t.wraw = t.raw.rc
		t.rawWrite = func(fd uintptr) bool {
			for {
				_, err := unix.Write(int(fd), t.wb)
				switch err {
				case unix.EINTR:
					continue
				case unix.EAGAIN:
					return false
				case unix.EBADFD:
					err = os.ErrClosed
				}
				if err != nil {
					t.werr = err
				}
				return true
			}
		}
		t.rawWritev = func(fd uintptr) bool {
			for {
				_, _, e := unix.Syscall(unix.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&t.wv[0])), uintptr(len(t.wv)))
				switch e {
				case unix.EINTR:
					continue
				case unix.EAGAIN:
					return false
				case unix.EBADFD:
					t.werr = os.ErrClosed
				case 0:
				default:
					t.werr = e
				}
				return true
			}
		}
	}
	return t
}

// Read reads a batch from the device. More than one packet from one
// device read means the device split a GSO frame and computed every
// segment's checksums itself (wireguard-go's gsoSplit, or gsoSplit here
// for a frame met by the batched reads), so they are marked
// ChecksumsVerified. A single plain packet is followed by what else the
// kernel has queued, read without blocking (tunbatch.go); such a batch is
// not marked.
func (t *TUN) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	if t.raw != nil && t.raw.npend > 0 {
		n, err := t.raw.splitPending(bufs, sizes, offset)
		t.flags = ChecksumsVerified
		return n, err
	}
	n, err := t.dev.Read(bufs, sizes, offset)
	t.flags = 0
	if n > 1 {
		t.flags = ChecksumsVerified
	}
	if n == 1 && err == nil && t.raw != nil && len(bufs) > 1 {
		if t.skip > 0 {
			t.skip--
			return n, nil
		}
		m, merr := t.raw.more(bufs, sizes, offset, n)
		if m == n && t.raw.npend == 0 && merr == nil {
			t.backoff = min(max(1, 2*t.backoff), maxBackoff)
			t.skip = t.backoff
		} else {
			t.backoff = 0
		}
		n, err = m, merr
	}
	return n, err
}

// ReadFlags reports whether the last Read split a GSO frame.
func (t *TUN) ReadFlags() Flags { return t.flags }

// Write writes a batch to the device.
func (t *TUN) Write(bufs [][]byte, offset int) (int, error) { return t.dev.Write(bufs, offset) }

// CanWritePartial reports whether the device carries the virtio header.
func (t *TUN) CanWritePartial() bool { return t.wraw != nil }

// WritePartial writes a batch in order: the runs of packets not marked
// partial through Write (which coalesces them where it can), each marked
// one by itself with a virtio header asking the kernel to complete its
// TCP checksum (VIRTIO_NET_HDR_F_NEEDS_CSUM: CHECKSUM_PARTIAL, which the
// container's own TCP does not verify). It returns len(bufs) when every
// write succeeded.
func (t *TUN) WritePartial(bufs [][]byte, offset int, partial []bool) (int, error) {
	return t.write(bufs, offset, partial, nil)
}

// WriteOffload is WritePartial with packets in pieces and TCP packets to
// be cut (see link.OffloadWriter): each such one is written with one
// writev, its virtio header and headers from bufs[i] and the rest
// gathered from its pieces, so the payload is copied only by the kernel;
// the virtio header of a GSO packet asks the kernel to cut it
// (VIRTIO_NET_HDR_GSO_TCPV4/6), which for the receiving stack in the
// container means one large receive instead of forty-five.
func (t *TUN) WriteOffload(bufs [][]byte, offset int, offs []Offload) (int, error) {
	return t.write(bufs, offset, nil, offs)
}

func (t *TUN) write(bufs [][]byte, offset int, partial []bool, offs []Offload) (int, error) {
	var errs error
	start := 0
	for i := range bufs {
		var o Offload
		if offs != nil {
			o = offs[i]
		} else {
			o.Partial = partial[i]
		}
		if !o.Partial {
			continue
		}
		if start < i {
			if _, err := t.dev.Write(bufs[start:i], offset); err != nil {
				errs = errors.Join(errs, err)
			}
		}
		start = i + 1
		if err := t.writeOffloaded(bufs[i:i+1], offset, o.Pieces, o.GSOSize); err != nil {
			errs = errors.Join(errs, err)
		}
	}
	if start < len(bufs) {
		if _, err := t.dev.Write(bufs[start:], offset); err != nil {
			errs = errors.Join(errs, err)
		}
	}
	if errs != nil {
		return 0, errs
	}
	return len(bufs), nil
}

// writeOffloaded writes one packet (one is a slice of one buffer, and the
// pieces of the rest of the packet when they are not nil) whose TCP
// checksum is the kernel's to complete, and which the kernel is to cut
// into segments of gso payload bytes when gso is not 0.
func (t *TUN) writeOffloaded(one [][]byte, offset int, pieces [][]byte, gso int) error {
	b := one[0]
	total := len(b) - offset
	for _, s := range pieces {
		total += len(s)
	}
	cs := -1
	if t.wraw != nil && offset >= vnetHdrLen {
		cs = packet.TCPPseudoChecksumLen(b[offset:], total)
	}
	if cs < 0 {
		// No virtio header, or not a TCP packet the kernel could
		// complete: sum it here (when it is TCP) and write it plainly,
		// whole and uncut (WriteOffload's callers cut packets for a
		// device without the header: CanWritePartial is false).
		if pieces != nil {
			b = Fill(b, pieces)
			one = [][]byte{b}
		}
		packet.FinishTCPChecksum(b[offset:])
		_, err := t.dev.Write(one, offset)
		return err
	}
	h := b[offset-vnetHdrLen : offset]
	h[0] = unix.VIRTIO_NET_HDR_F_NEEDS_CSUM
	h[1] = unix.VIRTIO_NET_HDR_GSO_NONE
	hdrLen := min(cs+int(b[offset+cs+12]>>4)*4, total)
	if gso > 0 && total-hdrLen > gso {
		h[1] = unix.VIRTIO_NET_HDR_GSO_TCPV4
		if b[offset]>>4 == 6 {
			h[1] = unix.VIRTIO_NET_HDR_GSO_TCPV6
		}
	} else {
		gso = 0
	}
	// hdr_len: IP and TCP headers, as the kernel's own senders give it.
	binary.NativeEndian.PutUint16(h[2:], uint16(hdrLen))
	binary.NativeEndian.PutUint16(h[4:], uint16(gso)) // gso_size
	binary.NativeEndian.PutUint16(h[6:], uint16(cs))  // csum_start
	binary.NativeEndian.PutUint16(h[8:], 16)          // csum_offset: TCP's checksum field
	t.wmu.Lock()
	var err error
	if pieces == nil {
		t.wb, t.werr = b[offset-vnetHdrLen:], nil
		err = t.wraw.Write(t.rawWrite)
		t.wb = nil
	} else {
		t.wv = appendIovec(t.wv[:0], b[offset-vnetHdrLen:])
		for _, s := range pieces {
			if len(s) > 0 {
				t.wv = appendIovec(t.wv, s)
			}
		}
		t.werr = nil
		err = t.wraw.Write(t.rawWritev)
		clear(t.wv) // no pointers into the pieces kept past the write
	}
	if err == nil {
		err = t.werr
	}
	t.wmu.Unlock()
	return err
}

func appendIovec(v []unix.Iovec, b []byte) []unix.Iovec {
	var iov unix.Iovec
	iov.Base = &b[0]
	iov.SetLen(len(b))
	return append(v, iov)
}

// BatchSize is the device's batch size.
func (t *TUN) BatchSize() int { return t.dev.BatchSize() }

// MTU is the device's MTU.
func (t *TUN) MTU() (int, error) { return t.dev.MTU() }

// Close closes the device.
func (t *TUN) Close() error { return t.dev.Close() }

// Device returns the adapted device, for the kind that owns it.
func (t *TUN) Device() tun.Device { return t.dev }

var (
	_ Link          = (*TUN)(nil)
	_ Flagger       = (*TUN)(nil)
	_ PartialWriter = (*TUN)(nil)
)
