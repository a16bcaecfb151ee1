// Package link defines the one interface every kind of gateway link
// implements, so the datapath moves batches of IP packets without knowing
// whether they come from a kernel TUN, host sockets or a WireGuard peer.
//
// The method set is the part of wireguard-go's tun.Device the datapath
// uses: batched reads and writes with caller-owned buffers and a headroom
// offset. Keeping that shape means a kernel TUN needs no adapter and its
// offloads (GSO/GRO through the virtio header in the headroom) stay intact.
package link

import (
	"errors"
	"net/netip"
)

// Headroom is the space the datapath leaves in front of every packet it
// passes to Read and Write. A kernel TUN writes its virtio-net header
// there; other kinds may use it for their own framing (WireGuard's
// transport header is 16 bytes) so a packet is never moved to make room.
const Headroom = 16

// Link is one packet interface of the gateway.
type Link interface {
	// Read fills bufs[i][offset:] with up to len(bufs) IP packets and their
	// lengths in sizes, blocking until at least one is there. It returns
	// os.ErrClosed (wrapped or not) once the link is closed.
	Read(bufs [][]byte, sizes []int, offset int) (n int, err error)
	// Write sends the IP packets bufs[i][offset:]; offset is at least
	// Headroom and the bytes before it are the link's to use.
	Write(bufs [][]byte, offset int) (int, error)
	// BatchSize is the most packets one Read returns or one Write should
	// carry.
	BatchSize() int
	// MTU is the link's current MTU.
	MTU() (int, error)
	// Close releases the link; a blocked Read returns.
	Close() error
}

// Flags describe how a link's packets may be trusted by the datapath.
type Flags uint8

const (
	// ChecksumsVerified: every packet of a multi-packet read came from one
	// frame whose checksums the link computed itself (a TUN splitting a GSO
	// frame), so the datapath need not sum them again.
	ChecksumsVerified Flags = 1 << iota
	// ChecksumPartial: every TCP packet of the batch is one the link
	// generated itself with its checksum not filled in (checksum offload,
	// Linux's CHECKSUM_PARTIAL); the batch holds no packet from elsewhere.
	// Such a batch is ChecksumsVerified too. The datapath passes the
	// segments it forwards as they are to a PartialWriter and fills the
	// checksum in itself before any other write (or capture).
	ChecksumPartial
)

// PartialWriter is implemented by links that can send a TCP packet whose
// checksum is not filled in (see ChecksumPartial) and have the receiver
// treat it as one whose checksum is known good: a kernel TUN with the
// virtio header marks it VIRTIO_NET_HDR_F_NEEDS_CSUM, so the kernel
// computes it only if the packet leaves through a device without checksum
// offload, and the local receiver does not verify it.
type PartialWriter interface {
	// CanWritePartial reports whether WritePartial can offload; when it
	// is false the caller fills checksums in and calls Write.
	CanWritePartial() bool
	// WritePartial is Write, with partial[i] set for each packet bufs[i]
	// whose TCP checksum is left to the device. A packet marked partial
	// that is not a whole IPv4 or IPv6 TCP packet gets its checksum
	// computed before it is written.
	WritePartial(bufs [][]byte, offset int, partial []bool) (int, error)
}

// LazyReader is implemented by links whose packets already lie in memory
// of their own (the uplink's TCP stack keeps what it sends): Read may copy
// only a large packet's headers into the caller's buffer and leave the
// rest where it is, so a forward through the datapath copies the payload
// once, in the output device's write, instead of twice.
//
// A caller that turns this on owes the link two things: before anything
// reads a packet's bytes past the headers (a helper, a capture, a
// checksum, fragmentation, an ICMP error quoting it) it copies the pieces
// Lazy names into its buffer behind the headers; and it has written or
// dropped every packet of a batch before calling Read again, as Read
// reuses the pieces' memory then.
type LazyReader interface {
	// ReadLazily turns lazy reads on for every later Read; it is called
	// by the goroutine that calls Read.
	ReadLazily()
	// Lazy reports for packet i of the last Read how many bytes of it Read
	// copied (its IP and TCP headers, whole) and the rest of it in order,
	// by reference; pieces is nil when Read copied the packet whole.
	// sizes[i] is always the whole packet's length.
	Lazy(i int) (hdr int, pieces [][]byte)
}

// GSOReader is implemented by links whose Read may return a TCP packet
// larger than the MTU, to be cut into segments (generic segmentation
// offload, as Linux hands a NIC a TSO packet): the uplink's TCP stack
// sends 64 KiB at once so, when its config asks for it, and the datapath
// moves one packet where it would move forty-five. Such a packet is
// always one of a ChecksumPartial batch, its checksum left unfilled.
type GSOReader interface {
	// GSO reports the segment size (TCP payload bytes) packet i of the
	// last Read is to be cut into, 0 for a packet that is not to be cut.
	GSO(i int) int
}

// Offload is how one packet of a WriteOffload batch goes to the device.
type Offload struct {
	// Partial: the TCP checksum is the device's to fill (see
	// PartialWriter).
	Partial bool
	// Pieces, when not nil, are the rest of the packet behind the
	// buffer's bytes (headers whole), as a LazyReader left it.
	Pieces [][]byte
	// GSOSize, when not 0, is the segment size the device is to cut a
	// TCP packet larger than its MTU into (Partial is then set).
	GSOSize int
}

// OffloadWriter is implemented by PartialWriters that can also take a
// packet in pieces (the device's write gathers them) and a TCP packet to
// be cut into segments: a kernel TUN with the virtio header.
type OffloadWriter interface {
	PartialWriter
	// WriteOffload is WritePartial with more per packet: offs[i] says
	// how bufs[i] goes. It is called only when CanWritePartial is true.
	WriteOffload(bufs [][]byte, offset int, offs []Offload) (int, error)
}

// Fill copies pieces behind the first n bytes of b and returns b grown to
// hold them: a packet a LazyReader left in pieces made whole, in the
// buffer its headers were read into (which has room for the whole packet).
func Fill(b []byte, pieces [][]byte) []byte {
	n := len(b)
	for _, s := range pieces {
		n += copy(b[n:cap(b)], s)
	}
	return b[:n]
}

// Flagger is implemented by links that can vouch for their packets; a link
// without it gets no flags.
type Flagger interface {
	// ReadFlags reports the flags of the last Read's batch. It is called
	// by the goroutine that called Read, before the next Read.
	ReadFlags() Flags
}

// ErrClosed is returned by links that have no os-level closed error.
var ErrClosed = errors.New("link closed")

// PeerIdentifier is implemented by links whose packets come from named
// peers (WireGuard): the peer behind an address is the one whose allowed
// IPs hold it, by longest prefix. The datapath asks once per packet read
// from such a link, with the packet's source, so rules can match the
// sender; links without it have no peers.
type PeerIdentifier interface {
	// PeerFor returns the index of the peer whose allowed IPs hold addr.
	PeerFor(addr netip.Addr) (index int, ok bool)
	// PeerForRaw is PeerFor on an address in network byte order, as it
	// sits in a packet (IPv4: the first 4 bytes of addr; IPv6: 16): the
	// datapath's per-packet form, which builds no netip.Addr (its As16
	// costs a store-forwarding stall per lookup).
	PeerForRaw(addr []byte, v6 bool) (index int, ok bool)
	// PeerName returns the name of peer index, "" when there is none.
	PeerName(index int) string
}
