// Package wireguard is a gateway link that is a WireGuard interface run
// inside the process: wireguard-go's device does the protocol, over an
// ordinary UDP socket, and its TUN side is this package's in-memory
// device wired straight to the link's Read and Write. No kernel interface
// and no privileges are needed.
//
// The link also keeps its own table of the peers' allowed IPs, so the
// datapath can name the peer behind an address (PeerFor) and packets that
// no peer would take are dropped and counted on Write rather than
// vanishing inside the device.
//
// In the gateway's TOML an interface is configured as
//
//	[[interface]]
//	private_key_file = "/etc/tungate/wg0.key"   # mode 0600
//	listen_port = 51820
//
//	[[interface.peer]]
//	name = "branch"
//	public_key = "base64..."
//	endpoint = "[2001:db8::7]:51820"
//	allowed_ips = ["10.20.0.0/16", "fd20::/48"]
//	persistent_keepalive = 25
//
// Packets cross between the gateway and the device without a buffer of
// their own: whoever reads lends its buffers and the writer copies into
// them, once. A writer waits for a reader; past 16 waiting batches a
// batch is dropped and counted (Stats). So Read must be called without
// pause, as the gateway's per-link worker does: while nobody reads,
// wireguard-go's receive path, handshakes included, stalls once its own
// queues fill.
package wireguard

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/gaissmai/bart"
	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun"

	"tungate/link"
)

// batchSize is the most packets one Read returns and the device reads at
// once; wireguard-go's own ideal batch.
const batchSize = conn.IdealBatchSize

// errBadBatch reports a Read or Write call that breaks the link.Link
// contract (a negative offset, fewer sizes than buffers).
var errBadBatch = errors.New("wireguard: invalid batch (negative offset or fewer sizes than buffers)")

// Options are the parts of a Link that are not configuration.
type Options struct {
	// Bind is the device's UDP side; nil means conn.NewDefaultBind(), a
	// host socket on ListenPort. Tests pass bindtest's in-memory binds.
	Bind conn.Bind
	// Logger receives wireguard-go's log; nil discards it.
	Logger *device.Logger
}

// Link is a WireGuard interface as a gateway link. It is safe for
// concurrent use.
type Link struct {
	name string
	mtu  int
	dev  *device.Device
	tun  *memTUN

	// in carries decrypted packets from the device to Read; out carries
	// Write's packets to the device for encryption.
	in, out *pipe
	// routable is l.route bound once, so Write passes it without
	// allocating a closure per call.
	routable func([]byte) bool

	// peers is the current immutable peer table, replaced whole by
	// UpdatePeers so the datapath reads it without a lock.
	peers atomic.Pointer[peerTable]

	// cfgMu serialises UpdatePeers; it guards cur and uapi.
	cfgMu sync.Mutex
	cur   []peerSpec
	uapi  net.Listener // ServeUAPI's, nil when not served
	pub   key

	noPeer    atomic.Uint64
	malformed atomic.Uint64
	spoofed   atomic.Uint64
	garbage   atomic.Uint64 // countingBind's
	badMAC    atomic.Uint64
	cookies   atomic.Uint64
}

var _ link.Link = (*Link)(nil)

// New validates cfg, starts a WireGuard device with its peers and brings
// it up (binding the UDP port). name is the interface's name in Show.
func New(name string, cfg Config, opts Options) (*Link, error) {
	s, err := cfg.resolve(lookupHost)
	if err != nil {
		return nil, err
	}
	l := &Link{
		name: name,
		mtu:  s.mtu,
		in:   newPipe(),
		out:  newPipe(),
		pub:  s.public,
	}
	l.routable = l.route
	l.tun = &memTUN{l: l, events: make(chan tun.Event)}
	bind := opts.Bind
	if bind == nil {
		bind = newMixedFamilyBind(conn.NewDefaultBind())
	}
	logger := opts.Logger
	if logger == nil {
		logger = &device.Logger{Verbosef: device.DiscardLogf, Errorf: device.DiscardLogf}
	}
	bind = &countingBind{Bind: bind, garbage: &l.garbage}
	l.dev = device.NewDevice(l.tun, bind, l.countSpoofed(logger))

	var b strings.Builder
	fmt.Fprintf(&b, "private_key=%s\nlisten_port=%d\nreplace_peers=true\n", hex.EncodeToString(s.private[:]), s.port)
	for i := range s.peers {
		writePeer(&b, &s.peers[i], nil)
	}
	if err := l.dev.IpcSet(b.String()); err != nil {
		l.dev.Close()
		return nil, fmt.Errorf("configure device: %w", err)
	}
	l.cur = s.peers
	l.peers.Store(newPeerTable(s.peers))
	if err := l.dev.Up(); err != nil {
		l.dev.Close()
		return nil, fmt.Errorf("bring device up (listen_port %d): %w", s.port, err)
	}
	return l, nil
}

// Read returns decrypted packets from the peers, blocking until there is
// at least one. Their sources are within the sending peer's allowed IPs
// (the device drops the rest); PeerFor on the source names the peer.
func (l *Link) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	if offset < 0 || len(sizes) < len(bufs) {
		return 0, errBadBatch
	}
	return l.in.read(bufs, sizes, offset)
}

// Write encrypts and sends each packet to the peer whose allowed IPs hold
// its destination. A packet no peer takes, or that is not IPv4 or IPv6, is
// dropped and counted in Stats; Write waits while the device is busy
// rather than queueing without bound.
func (l *Link) Write(bufs [][]byte, offset int) (int, error) {
	if offset < 0 {
		return 0, errBadBatch
	}
	return l.out.write(bufs, offset, l.routable)
}

// route reports whether a peer takes pkt, counting it if not.
func (l *Link) route(pkt []byte) bool {
	var dst []byte
	switch {
	case len(pkt) >= 20 && pkt[0]>>4 == 4:
		dst = pkt[16:20]
	case len(pkt) >= 40 && pkt[0]>>4 == 6:
		dst = pkt[24:40]
	default:
		l.malformed.Add(1)
		return false
	}
	if _, ok := l.peers.Load().lookupRaw(dst, len(dst) == 16); !ok {
		l.noPeer.Add(1)
		return false
	}
	return true
}

// BatchSize is the most packets one Read returns; Write takes any number.
func (l *Link) BatchSize() int { return batchSize }

// MTU is the configured tunnel MTU.
func (l *Link) MTU() (int, error) { return l.mtu, nil }

// Close stops the device, closing its socket and ending every session; a
// blocked Read or Write returns os.ErrClosed.
func (l *Link) Close() error {
	l.closeUAPI()
	l.dev.Close()
	return nil
}

// The messages wireguard-go logs when it drops a decrypted packet whose
// source lies outside its sender's allowed IPs (device/receive.go). The
// device counts nothing itself; its log is the one place the drop shows.
const (
	spoofed4Msg = "IPv4 packet with disallowed source address from %v"
	spoofed6Msg = "IPv6 packet with disallowed source address from %v"
	// A handshake message not made with the interface's public key
	// (forged or garbage of the right size), dropped before any
	// cryptography beyond one keyed hash.
	badMAC1Msg = "Received packet with invalid mac1"
	// A handshake message the device answered with a cookie instead of
	// processing it, because handshakes were arriving faster than it
	// could process them (wireguard-go's "under load").
	cookieMsg = "Sending cookie response for denied handshake message for %v"
)

// countSpoofed wraps the device's logger to count its spoofed-source drops
// (Stats.SpoofedSource) and its handshake refusals (HandshakeBadMAC,
// HandshakeUnderLoad); TestSpoofedSourceNotDelivered and
// TestHandshakeFloodCounted notice if a new wireguard-go words them
// differently.
func (l *Link) countSpoofed(log *device.Logger) *device.Logger {
	verbose := log.Verbosef
	return &device.Logger{
		Verbosef: func(format string, args ...any) {
			switch format {
			case spoofed4Msg, spoofed6Msg:
				l.spoofed.Add(1)
			case badMAC1Msg:
				l.badMAC.Add(1)
			case cookieMsg:
				l.cookies.Add(1)
			}
			verbose(format, args...)
		},
		Errorf: log.Errorf,
	}
}

// Stats are a link's drop counters.
type Stats struct {
	// NoPeer counts written packets whose destination no peer's
	// allowed_ips hold.
	NoPeer uint64
	// Malformed counts written packets that are neither IPv4 nor IPv6 or
	// are shorter than their header.
	Malformed uint64
	// TxQueueFull and RxQueueFull count packets dropped because too many
	// batches were already waiting to go to the device (Tx) or to be read
	// from the link (Rx).
	TxQueueFull, RxQueueFull uint64
	// RxTooBig counts decrypted packets larger than Read's buffers.
	RxTooBig uint64
	// SpoofedSource counts decrypted packets the device dropped because
	// their inner source is not within the sending peer's allowed IPs.
	SpoofedSource uint64
	// Garbage counts datagrams at the listen port that are no WireGuard
	// message (unknown type or impossible size).
	Garbage uint64
	// HandshakeBadMAC counts handshake messages whose mac1 does not match
	// the interface's public key.
	HandshakeBadMAC uint64
	// HandshakeUnderLoad counts handshake messages answered with a cookie
	// instead of processed, while handshakes arrived faster than the
	// device could process them.
	HandshakeUnderLoad uint64
}

// Stats returns the link's drop counters.
func (l *Link) Stats() Stats {
	return Stats{
		NoPeer:      l.noPeer.Load(),
		Malformed:   l.malformed.Load(),
		TxQueueFull: l.out.dropFull.Load(),
		RxQueueFull: l.in.dropFull.Load(),
		RxTooBig:    l.in.dropBig.Load(),

		SpoofedSource:      l.spoofed.Load(),
		Garbage:            l.garbage.Load(),
		HandshakeBadMAC:    l.badMAC.Load(),
		HandshakeUnderLoad: l.cookies.Load(),
	}
}

// memTUN is the device's TUN side: what the device reads is what the
// gateway wrote, what it writes is what the gateway reads.
type memTUN struct {
	l         *Link
	events    chan tun.Event
	closeOnce sync.Once
}

var _ tun.Device = (*memTUN)(nil)

func (t *memTUN) File() *os.File { return nil }

func (t *memTUN) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	return t.l.out.read(bufs, sizes, offset)
}

func (t *memTUN) Write(bufs [][]byte, offset int) (int, error) {
	return t.l.in.write(bufs, offset, nil)
}

func (t *memTUN) MTU() (int, error) { return t.l.mtu, nil }

func (t *memTUN) Name() (string, error) { return t.l.name, nil }

func (t *memTUN) Events() <-chan tun.Event { return t.events }

// Close is called by the device as it closes.
func (t *memTUN) Close() error {
	t.closeOnce.Do(func() {
		t.l.in.close()
		t.l.out.close()
		close(t.events)
	})
	return nil
}

func (t *memTUN) BatchSize() int { return batchSize }

// peerTable is one generation of the peer list, never changed once
// published.
//
// A multibit trie walks one level per byte: a /128 among peers sharing a
// /64 sits 15 levels down bart's trie, a /64 eight, several times the cost
// of a hash probe. WireGuard's allowed IPs are mostly hosts and, for IPv6,
// /64 sites, so those are answered by exact-match tables (exact.go),
// longest first, and bart holds the rest. This is exact: a host route is
// the longest possible match, and a /64 the longest left unless some
// prefix between /65 and /127 exists, in which case bart answers every
// IPv6 lookup.
type peerTable struct {
	hosts4 exactTable // IPv4 /32 routes: (0, address)
	hosts6 exactTable // IPv6 /128 routes: (upper, lower half), unless all6
	nets64 exactTable // IPv6 /64 routes: (upper half, 0), unless all6
	// nets holds every other prefix: IPv4 shorter than /32, IPv6 shorter
	// than /64, or all of IPv6 when all6.
	nets         *bart.Fast[int]
	nets4, nets6 bool
	all6         bool
	names        []string
}

func newPeerTable(peers []peerSpec) *peerTable {
	t := &peerTable{
		nets:  new(bart.Fast[int]),
		names: make([]string, len(peers)),
	}
	n4, n6, n64 := 0, 0, 0
	for i := range peers {
		for _, p := range peers[i].allowed {
			switch {
			case p.Addr().Is4() && p.Bits() == 32:
				n4++
			case p.Addr().Is6() && p.Bits() == 128:
				n6++
			case p.Addr().Is6() && p.Bits() == 64:
				n64++
			case p.Addr().Is6() && p.Bits() > 64:
				t.all6 = true
			}
		}
	}
	t.hosts4, t.hosts6, t.nets64 = newExactTable(n4), newExactTable(n6), newExactTable(n64)
	for i := range peers {
		t.names[i] = peers[i].name
		for _, p := range peers[i].allowed {
			a := p.Addr()
			switch {
			case a.Is4() && p.Bits() == 32:
				b := a.As4()
				t.hosts4.insert(0, uint64(binary.BigEndian.Uint32(b[:])), i)
			case a.Is4():
				t.nets.Insert(p, i)
				t.nets4 = true
			case !t.all6 && p.Bits() == 128:
				b := a.As16()
				t.hosts6.insert(binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:]), i)
			case !t.all6 && p.Bits() == 64:
				b := a.As16()
				t.nets64.insert(binary.BigEndian.Uint64(b[:8]), 0, i)
			default:
				t.nets.Insert(p, i)
				t.nets6 = true
			}
		}
	}
	return t
}

// lookup finds the peer for addr by longest prefix.
func (t *peerTable) lookup(addr netip.Addr) (int, bool) {
	switch {
	case addr.Is4():
		a := addr.As4()
		return t.lookupRaw(a[:], false)
	case addr.Is6():
		a := addr.As16()
		return t.lookupRaw(a[:], true)
	}
	return 0, false
}

// lookupRaw finds the peer for the address in a (network byte order: 4
// bytes or more for IPv4, 16 for IPv6) by longest prefix.
func (t *peerTable) lookupRaw(a []byte, v6 bool) (int, bool) {
	if !v6 {
		if len(a) < 4 {
			return 0, false
		}
		if i, ok := t.hosts4.lookup(0, uint64(binary.BigEndian.Uint32(a))); ok {
			return i, true
		}
		if !t.nets4 {
			return 0, false
		}
		return t.nets.Lookup(netip.AddrFrom4([4]byte(a[:4])))
	}
	if len(a) < 16 {
		return 0, false
	}
	if !t.all6 {
		hi := binary.BigEndian.Uint64(a[:8])
		if i, ok := t.hosts6.lookup(hi, binary.BigEndian.Uint64(a[8:16])); ok {
			return i, true
		}
		if i, ok := t.nets64.lookup(hi, 0); ok {
			return i, true
		}
		if !t.nets6 {
			return 0, false
		}
	}
	return t.nets.Lookup(netip.AddrFrom16([16]byte(a[:16])))
}

// PeerFor returns the index of the peer whose allowed IPs hold addr by
// longest prefix: the peer a packet to addr goes to, and the peer a
// decrypted packet from addr came from. Indexes are positions in the peer
// list of the config or of the last UpdatePeers.
func (l *Link) PeerFor(addr netip.Addr) (index int, ok bool) {
	return l.peers.Load().lookup(addr)
}

// PeerForRaw is PeerFor on an address as it sits in a packet (network
// byte order; IPv4: the first 4 bytes of addr, IPv6: 16), the datapath's
// per-packet form.
func (l *Link) PeerForRaw(addr []byte, v6 bool) (index int, ok bool) {
	return l.peers.Load().lookupRaw(addr, v6)
}

// PeerName returns the name of peer i, or "" if there is no such peer.
func (l *Link) PeerName(i int) string {
	names := l.peers.Load().names
	if i < 0 || i >= len(names) {
		return ""
	}
	return names[i]
}

// writePeer appends the UAPI lines that make the device's peer p: all of
// it when old is nil, else only what differs from old, leaving the peer's
// sessions alone.
func writePeer(b *strings.Builder, p, old *peerSpec) {
	var lines strings.Builder
	if old == nil || old.psk != p.psk {
		if old != nil || !p.psk.isZero() {
			fmt.Fprintf(&lines, "preshared_key=%s\n", hex.EncodeToString(p.psk[:]))
		}
	}
	// The UAPI cannot unset an endpoint; a peer whose endpoint is dropped
	// from the config keeps the last one until it roams.
	if p.endpoint.IsValid() && (old == nil || old.endpoint != p.endpoint) {
		fmt.Fprintf(&lines, "endpoint=%s\n", p.endpoint)
	}
	if (old == nil && p.keepalive != 0) || (old != nil && old.keepalive != p.keepalive) {
		fmt.Fprintf(&lines, "persistent_keepalive_interval=%d\n", p.keepalive)
	}
	if old == nil || !samePrefixes(old.allowed, p.allowed) {
		if old != nil {
			lines.WriteString("replace_allowed_ips=true\n")
		}
		for _, a := range p.allowed {
			fmt.Fprintf(&lines, "allowed_ip=%s\n", a)
		}
	}
	if old != nil && lines.Len() == 0 {
		return
	}
	fmt.Fprintf(b, "public_key=%s\n", hex.EncodeToString(p.pub[:]))
	if old != nil {
		b.WriteString("update_only=true\n")
	}
	b.WriteString(lines.String())
}

func samePrefixes(a, b []netip.Prefix) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// UpdatePeers makes peers the link's peer list while it runs. Peers are
// matched by public key: new ones are added, missing ones removed (ending
// their sessions), changed ones updated in place (UAPI update_only and
// replace_allowed_ips), so every peer that stays keeps its session and
// counters. Names and indexes follow the new list. On a validation error
// nothing changes.
func (l *Link) UpdatePeers(peers []PeerConfig) error {
	l.cfgMu.Lock()
	defer l.cfgMu.Unlock()
	specs, err := resolvePeers(peers, l.pub, lookupHost)
	if err != nil {
		return err
	}
	old := make(map[key]*peerSpec, len(l.cur))
	for i := range l.cur {
		old[l.cur[i].pub] = &l.cur[i]
	}
	var b strings.Builder
	// Removals first, so that a prefix moving to a new peer is never
	// claimed by two peers in between.
	kept := make(map[key]bool, len(specs))
	for i := range specs {
		kept[specs[i].pub] = true
	}
	for i := range l.cur {
		if !kept[l.cur[i].pub] {
			fmt.Fprintf(&b, "public_key=%s\nremove=true\n", hex.EncodeToString(l.cur[i].pub[:]))
		}
	}
	for i := range specs {
		writePeer(&b, &specs[i], old[specs[i].pub])
	}
	if b.Len() > 0 {
		if err := l.dev.IpcSet(b.String()); err != nil {
			// The UAPI applies line by line: the device may hold part of
			// the change. The table keeps the old list so routing stays
			// on the peers that were fully configured.
			return fmt.Errorf("update peers: %w", err)
		}
	}
	l.cur = specs
	l.peers.Store(newPeerTable(specs))
	return nil
}
