package wireguard

import (
	"encoding/binary"
	"errors"
	"sync/atomic"
	"syscall"

	"golang.zx2c4.com/wireguard/conn"
)

// mixedFamilyBind works around a bug of wireguard-go's StdNetBind.Send
// (upstream pull request WireGuard/wireguard-go#135, open in the latest
// version): the destination address it takes from a pool keeps the 4-byte
// length an IPv4 send gave it, and the next IPv6 send that gets it copies
// only the first 4 bytes of the address, so the datagram goes to a
// corrupted address (2001:db8:b::2 becomes 2001:db8:: plus whatever the
// pooled bytes held). A VPN edge with peers over both families loses IPv6
// handshake responses and packets to it.
//
// The wrapper repairs the pool instead of copying the bind: once the bind
// has sent over IPv6, each IPv4 send is followed by an IPv6 send that
// takes the address the IPv4 send just returned (the pool hands a
// goroutine back what it put, unless it moved to another thread in
// between) and returns it 16 bytes long. That send goes to port 0 of ::1,
// which the kernel refuses (EINVAL) before anything is sent: it costs one
// failing system call per IPv4 batch, and only where peers use both
// families. (A send of no datagrams would be cheaper, but x/net's
// sendmmsg panics on an empty batch.) An IPv6 send that still fails with ENETUNREACH (the usual
// outcome of a corrupted address) is retried once: the failed send itself
// left its pooled address whole.
//
// The wrapper hides the bind's type from the device, which turns off
// wireguard-go's netlink route listener (it watches only a
// *conn.StdNetBind): a peer's cached source address is then refreshed by
// the handshake timers rather than at once when the host's routes change.
type mixedFamilyBind struct {
	conn.Bind
	// v6 is [::1]:0, the repair's destination, which no datagram reaches.
	v6    conn.Endpoint
	sawV6 atomic.Bool
}

// repairPayload is what the repair offers the kernel to refuse.
var repairPayload = [][]byte{{0}}

func newMixedFamilyBind(b conn.Bind) conn.Bind {
	ep, err := b.ParseEndpoint("[::1]:0")
	if err != nil {
		return b
	}
	return &mixedFamilyBind{Bind: b, v6: ep}
}

func (b *mixedFamilyBind) Send(bufs [][]byte, ep conn.Endpoint) error {
	if !ep.DstIP().Is6() {
		err := b.Bind.Send(bufs, ep)
		if b.sawV6.Load() {
			b.Bind.Send(repairPayload, b.v6) // EINVAL by design
		}
		return err
	}
	if !b.sawV6.Load() && b.sawV6.CompareAndSwap(false, true) {
		// The IPv4 sends so far were not followed by a repair.
		b.Bind.Send(repairPayload, b.v6)
	}
	err := b.Bind.Send(bufs, ep)
	if err != nil && errors.Is(err, syscall.ENETUNREACH) {
		err = b.Bind.Send(bufs, ep)
	}
	return err
}

// countingBind counts the datagrams at the listen port that are no
// WireGuard message at all (an unknown type, or a size its type cannot
// have): the device drops them without a word, so a flood of garbage
// would otherwise leave no trace. It looks at four bytes and the length
// of each datagram in the batch the device asked for, nothing more.
type countingBind struct {
	conn.Bind
	garbage *atomic.Uint64
}

func (b *countingBind) Open(port uint16) ([]conn.ReceiveFunc, uint16, error) {
	fns, actual, err := b.Bind.Open(port)
	for i, f := range fns {
		fns[i] = func(packets [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
			n, err := f(packets, sizes, eps)
			bad := 0
			for j := range n {
				if !isMessage(packets[j][:sizes[j]]) {
					bad++
				}
			}
			if bad > 0 {
				b.garbage.Add(uint64(bad))
			}
			return n, err
		}
	}
	return fns, actual, err
}

// The WireGuard message types and sizes the device accepts
// (device/noise-protocol.go; wireguard-go does not export them all).
const (
	msgInitiation, msgInitiationSize   = 1, 148
	msgResponse, msgResponseSize       = 2, 92
	msgCookieReply, msgCookieReplySize = 3, 64
	msgTransport, msgTransportMinSize  = 4, 32
)

// isMessage reports whether b has a WireGuard message's type and a size
// that type can have, as the device's receive routine checks them.
func isMessage(b []byte) bool {
	if len(b) < msgTransportMinSize {
		return false
	}
	switch binary.LittleEndian.Uint32(b) {
	case msgInitiation:
		return len(b) == msgInitiationSize
	case msgResponse:
		return len(b) == msgResponseSize
	case msgCookieReply:
		return len(b) == msgCookieReplySize
	case msgTransport:
		return true
	}
	return false
}
