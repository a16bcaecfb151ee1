// Command floodgen writes packets straight onto a network device (an
// AF_PACKET socket, so the sending host's IP stack neither fixes nor
// refuses them) for the flood and benchmark scripts: every class of
// malformed packet the gateway's parser rejects, or one-packet UDP flows
// (a new source address and port each packet). Run it inside the namespace
// that holds the device (`ip netns exec NS floodgen ...`); it prints what it
// sent as one JSON object on stdout.
//
//	floodgen malformed -i DEV [-rate PPS] [-d DURATION | -n COUNT]
//	floodgen udpflows -i DEV -src 10.10.0.0/16 -dst 198.18.0.2 [-dport 9 -dports 1] [-first N] [-flows N] [-dmac MAC] [-rate PPS] [-maxlag N] [-d DURATION | -n COUNT]
//	floodgen syn -i DEV -src 0.0.0.0/0 -dst 198.18.0.3 [-dport 80] [-rate PPS] [-d DURATION | -n COUNT]
//	floodgen connect -from ADDR -to ADDR:PORT [-hold N] [-workers N] [-rate CPS] [-d DURATION | -n COUNT]
//	floodgen udpports -from ADDR -to ADDR:PORT [-ports N] [-rate PPS] [-d DURATION | -n COUNT]
//
// connect and udpports go through the host's own stack instead (see
// sockets.go): a flood at a listening port such as a port forward.
//
// udpflows -flows N cycles through N flows instead of making a new one per
// packet: a fixed-rate stream of established flows (scripts/reload-rate.sh).
// -maxlag N bounds how far a paced sender that fell behind (descheduled on a
// loaded machine) catches up at once: more than N packets behind, it
// restarts its schedule from now and counts the packets it skipped, so a
// stall of the sender never becomes a burst the receiver's queue must hold.
//
// syn is a SYN flood with random sources from -src (hping3 --rand-source
// for IPv4, and IPv6, which hping3 lacks), random source ports and
// sequence numbers, paced exactly (hping3's -i uN pacing falls short on a
// loaded machine).
//
// A TUN device takes the IP packet as is; an Ethernet device (veth) needs
// -dmac, the next hop's MAC address, for the frame's destination.
//
// udpsend and udprecv (udpsock.go) go through ordinary UDP sockets instead,
// batched with sendmmsg and recvmmsg: a datagram-rate generator and
// counter that outrun the network helpers bench-rootless.sh compares.
package main

import (
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"tungate/internal/packettest"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	mode := os.Args[1]
	if mode == "udpsend" || mode == "udprecv" {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
		go func() { <-sig; stopped.Store(true) }()
		json.NewEncoder(os.Stdout).Encode(sockMain(mode, os.Args[2:]))
		return
	}
	fs := flag.NewFlagSet(mode, flag.ExitOnError)
	dev := fs.String("i", "", "device to write to (required)")
	rate := fs.Int("rate", 0, "packets per second (0: as fast as possible)")
	dur := fs.Duration("d", 0, "send for this long")
	count := fs.Int("n", 0, "send this many packets (with -d: whichever ends first)")
	src := fs.String("src", "10.10.0.0/16", "udpflows: source prefix (each packet a new address and port)")
	dst := fs.String("dst", "198.18.0.2", "udpflows: destination address; malformed: the IPv4 destination")
	dst6 := fs.String("dst6", "2001:db8:1::2", "malformed: the IPv6 destination")
	lan := fs.String("lan", "10.10.0.2", "malformed: the IPv4 source of well-formed headers")
	lan6 := fs.String("lan6", "fd10::2", "malformed: the IPv6 source of well-formed headers")
	dport := fs.Int("dport", 9, "udpflows: destination port")
	dports := fs.Int("dports", 1, "udpflows: spread flows over this many destination ports from -dport")
	first := fs.Int("first", 0, "udpflows: number of the first flow (a warm-up started far from 0 sends no flow the measurement after it sends again)")
	dmac := fs.String("dmac", "", "destination MAC for an Ethernet device (empty: a TUN)")
	flows := fs.Int("flows", 0, "udpflows: cycle through this many flows (0: a new flow per packet)")
	fs.IntVar(&maxLag, "maxlag", 0, "paced: when more than this many packets behind, skip them instead of bursting (0: catch up)")
	from := fs.String("from", "", "connect, udpports: the source address")
	to := fs.String("to", "", "connect, udpports: the destination address:port")
	hold := fs.Int("hold", 1000, "connect: connections kept open (the oldest is reset beyond)")
	workers := fs.Int("workers", 8, "connect: connects in parallel")
	ports := fs.Int("ports", 4096, "udpports: source sockets (ports) sent from in turn")
	fs.Parse(os.Args[2:])
	// SIGINT/SIGTERM end the run early; the result is still printed.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() { <-sig; stopped.Store(true) }()
	if mode == "connect" || mode == "udpports" {
		f, err := netip.ParseAddr(*from)
		if err != nil {
			fail(fmt.Errorf("-from: %w", err))
		}
		t, err := netip.ParseAddrPort(*to)
		if err != nil {
			fail(fmt.Errorf("-to: %w", err))
		}
		if *dur == 0 && *count == 0 || *workers < 1 || *ports < 1 || *hold < 0 {
			usage()
		}
		var res any
		if mode == "connect" {
			res = connectFlood(f, t, *hold, *workers, *rate, *dur, *count)
		} else {
			res = udpPortsFlood(f, t, *ports, *rate, *dur, *count)
		}
		json.NewEncoder(os.Stdout).Encode(res)
		return
	}
	if *dev == "" || (*dur == 0 && *count == 0) {
		usage()
	}
	s, err := openSender(*dev, *dmac)
	if err != nil {
		fail(err)
	}
	var res any
	switch mode {
	case "malformed":
		cl := malformed(*lan, *dst, *lan6, *dst6)
		res = s.sendMalformed(cl, *rate, *dur, *count)
	case "syn":
		p, err := netip.ParsePrefix(*src)
		if err != nil {
			fail(err)
		}
		d, err := netip.ParseAddr(*dst)
		if err != nil {
			fail(err)
		}
		res = s.sendSYN(p.Masked(), d, uint16(*dport), *rate, *dur, *count)
	case "udpflows":
		p, err := netip.ParsePrefix(*src)
		if err != nil {
			fail(err)
		}
		d, err := netip.ParseAddr(*dst)
		if err != nil {
			fail(err)
		}
		if *dports < 1 || *dport+*dports > 65536 {
			fail(fmt.Errorf("-dport %d -dports %d: out of range", *dport, *dports))
		}
		if *first < 0 {
			fail(fmt.Errorf("-first %d: negative", *first))
		}
		res = s.sendFlows(p.Masked(), d, uint16(*dport), *dports, *first, *flows, *rate, *dur, *count)
	default:
		usage()
	}
	json.NewEncoder(os.Stdout).Encode(res)
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: floodgen malformed|udpflows|syn -i DEV [-rate PPS] [-d DURATION] [-n COUNT] [flags] (floodgen MODE -h)")
	fmt.Fprintln(os.Stderr, "       floodgen udpsend -dst HOST:PORT -d DURATION [flags] | floodgen udprecv -listen ADDR:PORT [flags]")
	fmt.Fprintln(os.Stderr, "       floodgen connect|udpports -from ADDR -to ADDR:PORT [-rate N] [-d DURATION] [-n COUNT] [flags]")
	os.Exit(2)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "floodgen:", err)
	os.Exit(1)
}

// sender writes packets to one device through an AF_PACKET datagram
// socket: the kernel adds the link header (none on a TUN).
type sender struct {
	fd      int
	sa4     syscall.SockaddrLinklayer
	sa6     syscall.SockaddrLinklayer
	errs    int
	lastErr error
	// capture, when set, takes the packets instead of the socket (tests).
	capture func([]byte)
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func openSender(dev, dmac string) (*sender, error) {
	ifi, err := net.InterfaceByName(dev)
	if err != nil {
		return nil, err
	}
	fd, err := syscall.Socket(syscall.AF_PACKET, syscall.SOCK_DGRAM, 0)
	if err != nil {
		return nil, fmt.Errorf("AF_PACKET socket: %w", err)
	}
	// A big send buffer lets a burst queue instead of failing with ENOBUFS.
	syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_SNDBUF, 4<<20)
	s := &sender{fd: fd}
	s.sa4 = syscall.SockaddrLinklayer{Protocol: htons(syscall.ETH_P_IP), Ifindex: ifi.Index}
	s.sa6 = syscall.SockaddrLinklayer{Protocol: htons(syscall.ETH_P_IPV6), Ifindex: ifi.Index}
	if dmac != "" {
		hw, err := net.ParseMAC(dmac)
		if err != nil || len(hw) != 6 {
			return nil, fmt.Errorf("-dmac %q: want a 6-byte MAC", dmac)
		}
		for _, sa := range []*syscall.SockaddrLinklayer{&s.sa4, &s.sa6} {
			sa.Halen = 6
			copy(sa.Addr[:], hw)
		}
	}
	return s, nil
}

// send writes one packet; errors (ENOBUFS under a flood) are counted, not
// fatal: a flood that outruns the device loses packets, as a real one does.
func (s *sender) send(b []byte) bool {
	if s.capture != nil {
		s.capture(b)
		return true
	}
	sa := &s.sa4
	if len(b) > 0 && b[0]>>4 == 6 {
		sa = &s.sa6
	}
	if err := syscall.Sendto(s.fd, b, 0, sa); err != nil {
		s.errs++
		s.lastErr = err
		return false
	}
	return true
}

// stopped is set by a signal: the pacer ends the run.
var stopped atomic.Bool

// maxLag is -maxlag: the most packets a paced sender sends late at once.
var maxLag int

// pacer spaces packets at rate per second (0: no pacing), checking the
// clock once per 64 packets.
type pacer struct {
	start time.Time
	rate  int
	end   time.Time
	count int
	n     int
	// skipped counts packets never sent because the sender was more than
	// maxLag behind; resets the times that happened.
	skipped, resets int
}

func newPacer(rate int, dur time.Duration, count int) *pacer {
	p := &pacer{start: time.Now(), rate: rate, count: count}
	if dur > 0 {
		p.end = p.start.Add(dur)
	}
	return p
}

// next reports whether another packet is due, waiting for its time.
func (p *pacer) next() bool {
	if p.count > 0 && p.n >= p.count {
		return false
	}
	if p.n&63 == 0 {
		now := time.Now()
		if (!p.end.IsZero() && !now.Before(p.end)) || stopped.Load() {
			return false
		}
		if p.rate > 0 {
			owed := p.n + p.skipped
			due := p.start.Add(time.Duration(float64(owed) / float64(p.rate) * float64(time.Second)))
			if d := due.Sub(now); d > 0 {
				time.Sleep(d)
			} else if late := int(-d.Seconds() * float64(p.rate)); maxLag > 0 && late > maxLag {
				p.skipped += late
				p.resets++
			}
		}
	}
	p.n++
	return true
}

// result is what a run prints.
type result struct {
	Sent    int            `json:"sent"`
	Errors  int            `json:"send_errors"`
	LastErr string         `json:"last_error,omitempty"`
	Seconds float64        `json:"seconds"`
	Skipped int            `json:"skipped,omitempty"`
	Resets  int            `json:"lag_resets,omitempty"`
	PPS     float64        `json:"pps"`
	Classes map[string]int `json:"classes,omitempty"`
}

func (s *sender) result(p *pacer, sent int) result {
	r := result{Sent: sent, Errors: s.errs, Seconds: time.Since(p.start).Seconds(), Skipped: p.skipped, Resets: p.resets}
	if s.lastErr != nil {
		r.LastErr = s.lastErr.Error()
	}
	if r.Seconds > 0 {
		r.PPS = float64(sent) / r.Seconds
	}
	return r
}

func (s *sender) sendMalformed(cl []class, rate int, dur time.Duration, count int) result {
	p := newPacer(rate, dur, count)
	by := map[string]int{}
	sent := 0
	for i := 0; p.next(); i++ {
		c := &cl[i%len(cl)]
		if s.send(c.b) {
			by[c.name]++
			sent++
		}
	}
	r := s.result(p, sent)
	r.Classes = by
	return r
}

// sendFlows sends one UDP datagram per flow: source address and port step
// through src's addresses (skipping .0 and the broadcast-looking .255
// hosts) and ports 1024–65535, so no two packets share a 5-tuple until the
// prefix's address × port space wraps; the destination port steps through
// dports ports (a NAT that reuses a port towards other destinations, as
// Linux's masquerade does, then needs no new port per flow).
func (s *sender) sendFlows(src netip.Prefix, dst netip.Addr, dport uint16, dports, first, flows int, rate int, dur time.Duration, count int) result {
	v6 := dst.Is6()
	base := src.Addr()
	hostBits := base.BitLen() - src.Bits()
	if hostBits > 16 {
		hostBits = 16
	}
	hosts := 1 << hostBits
	tmpl := packettest.Build(packettest.IP{V6: v6, Src: base.String(), Dst: dst.String()},
		packettest.UDP{SPort: 1024, DPort: dport}, make([]byte, 18))
	b := make([]byte, len(tmpl))
	srcOff, l4 := 12, 20
	if v6 {
		srcOff, l4 = 8, 40
	}
	baseB := base.AsSlice()
	lo16 := binary.BigEndian.Uint16(baseB[len(baseB)-2:])
	off := srcOff + len(baseB) - 2
	p := newPacer(rate, dur, count)
	sent := 0
	// i numbers the flows: host i%hosts, port 1024+i/hosts. In prefixes
	// of more than 256 addresses, hosts whose low byte is 0 or 255 are
	// skipped (network and broadcast look-alikes the gateway may call
	// martian); a single address (/32, /128) sends from that address.
	// Hosts skipped advance i for good, so no flow repeats (before -flows
	// wraps it back to -first).
	i := first - 1
	for p.next() {
		i++
		if flows > 0 && i >= first+flows {
			i = first
		}
		for hosts > 256 {
			h := uint16(i % hosts)
			if h&0xff != 0 && h&0xff != 0xff {
				break
			}
			i++
		}
		copy(b, tmpl)
		binary.BigEndian.PutUint16(b[off:], lo16|uint16(i%hosts))
		binary.BigEndian.PutUint16(b[l4:], uint16(1024+(i/hosts)%64512))
		binary.BigEndian.PutUint16(b[l4+2:], dport+uint16(i%dports))
		fixSums(b, v6, l4)
		if s.send(b) {
			sent++
		}
	}
	return s.result(p, sent)
}

// sendSYN sends TCP SYNs from random addresses of src (random ports and
// sequence numbers) to dst:dport.
func (s *sender) sendSYN(src netip.Prefix, dst netip.Addr, dport uint16, rate int, dur time.Duration, count int) result {
	v6 := dst.Is6()
	tmpl := packettest.Build(packettest.IP{V6: v6, Src: src.Addr().String(), Dst: dst.String()},
		packettest.TCP{SPort: 1024, DPort: dport, Seq: 1, Flags: 0x02, Win: 64240}, nil)
	b := make([]byte, len(tmpl))
	srcOff, l4 := 12, 20
	if v6 {
		srcOff, l4 = 8, 40
	}
	base := src.Addr().AsSlice()
	bits := src.Bits()
	p := newPacer(rate, dur, count)
	sent := 0
	for p.next() {
		copy(b, tmpl)
		a := b[srcOff : srcOff+len(base)]
		for i := range a {
			r := byte(rand.Uint32())
			// keep the prefix's bits, randomise the rest
			keep := 0
			if hb := bits - 8*i; hb >= 8 {
				keep = 8
			} else if hb > 0 {
				keep = hb
			}
			m := byte(0xff << (8 - keep))
			a[i] = base[i]&m | r&^m
		}
		binary.BigEndian.PutUint16(b[l4:], uint16(1024+rand.IntN(64512)))
		binary.BigEndian.PutUint32(b[l4+4:], rand.Uint32())
		fixTCPSums(b, v6, l4)
		if s.send(b) {
			sent++
		}
	}
	return s.result(p, sent)
}

// fixTCPSums is fixSums for a TCP segment.
func fixTCPSums(b []byte, v6 bool, l4 int) {
	if !v6 {
		b[10], b[11] = 0, 0
		binary.BigEndian.PutUint16(b[10:], ^packettest.Sum16(b[:20]))
	}
	b[l4+16], b[l4+17] = 0, 0
	var ps []byte
	if v6 {
		ps = packettest.Pseudo(true, b[8:24], b[24:40], 6, len(b)-l4)
	} else {
		ps = packettest.Pseudo(false, b[12:16], b[16:20], 6, len(b)-l4)
	}
	binary.BigEndian.PutUint16(b[l4+16:], ^packettest.Sum16(ps, b[l4:]))
}

// fixSums recomputes the IPv4 header and UDP checksums after the source
// changed (whole, not incrementally: this is a generator, not a datapath).
func fixSums(b []byte, v6 bool, l4 int) {
	if !v6 {
		b[10], b[11] = 0, 0
		binary.BigEndian.PutUint16(b[10:], ^packettest.Sum16(b[:20]))
	}
	b[l4+6], b[l4+7] = 0, 0
	var ps []byte
	if v6 {
		ps = packettest.Pseudo(true, b[8:24], b[24:40], 17, len(b)-l4)
	} else {
		ps = packettest.Pseudo(false, b[12:16], b[16:20], 17, len(b)-l4)
	}
	c := ^packettest.Sum16(ps, b[l4:])
	if c == 0 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(b[l4+6:], c)
}

// class is one kind of malformed packet.
type class struct {
	name string
	b    []byte
}

// malformed returns one packet of every class the gateway must drop before
// it forwards anything: what the decoder rejects (truncated, bad version,
// bad lengths, bad IPv4 header checksum, bad transport headers, bad IPv6
// extension header chains), what its later checks drop (martian and
// broadcast sources, malformed IPv4 options, overlapping and oversized
// fragments) and a transport checksum conntrack finds wrong. Each would be
// forwarded if the flaw were not there, so a forwarded packet means a
// check failed.
func malformed(src, dst, src6, dst6 string) []class {
	v4 := func(ip packettest.IP) packettest.IP { ip.Src, ip.Dst = src, dst; return ip }
	v6 := func(ip packettest.IP) packettest.IP { ip.V6, ip.Src, ip.Dst = true, src6, dst6; return ip }
	syn := packettest.TCP{SPort: 40000, DPort: 80, Seq: 1, Flags: 0x02, Win: 65535}
	udp := packettest.UDP{SPort: 40000, DPort: 53}
	pl := []byte("malformed-storm")
	tcpDoff := func(doff uint8) packettest.Bytes {
		h := make([]byte, 20)
		binary.BigEndian.PutUint16(h[0:], 40001)
		binary.BigEndian.PutUint16(h[2:], 80)
		h[12] = doff << 4
		h[13] = 0x02
		return packettest.Bytes{Proto: 6, B: h, CsumOff: 16}
	}
	udpLen := func() packettest.UDP { u := udp; u.Length = 200; return u }
	badSum := uint16(0x1234)
	destOpt := packettest.Ext{Type: 60, Body: make([]byte, 6)}
	longChain := make([]packettest.Ext, 10)
	for i := range longChain {
		longChain[i] = destOpt
	}
	cl := []class{
		{"v4-truncated", packettest.Build(v4(packettest.IP{}), syn, nil)[:12]},
		{"bad-version", packettest.Build(v4(packettest.IP{Version: 5}), syn, pl)},
		{"v4-ihl-short", packettest.Build(v4(packettest.IP{IHL: 16}), syn, pl)},
		{"v4-total-length-short", packettest.Build(v4(packettest.IP{TotalLen: 12}), syn, pl)},
		{"v4-total-length-long", packettest.Build(v4(packettest.IP{TotalLen: 400}), syn, pl)},
		{"v4-header-checksum", packettest.Build(v4(packettest.IP{BadCsum: true}), syn, pl)},
		{"v4-tcp-short", packettest.Build(v4(packettest.IP{}), packettest.Raw{Proto: 6, B: make([]byte, 12)}, nil)},
		{"v4-tcp-data-offset", packettest.Build(v4(packettest.IP{}), tcpDoff(3), pl)},
		{"v4-tcp-data-offset-long", packettest.Build(v4(packettest.IP{}), tcpDoff(15), pl)},
		{"v4-udp-short", packettest.Build(v4(packettest.IP{}), packettest.Raw{Proto: 17, B: make([]byte, 6)}, nil)},
		{"v4-udp-length", packettest.Build(v4(packettest.IP{}), udpLen(), pl)},
		{"v4-icmp-short", packettest.Build(v4(packettest.IP{}), packettest.Raw{Proto: 1, B: []byte{8, 0, 0, 0}}, nil)},
		{"v4-options", packettest.Build(v4(packettest.IP{Opts: []byte{0x44, 0x01, 0, 0}}), syn, pl)},
		{"v4-martian-loopback", packettest.Build(packettest.IP{Src: "127.0.0.1", Dst: dst}, syn, pl)},
		{"v4-martian-zero", packettest.Build(packettest.IP{Src: "0.0.0.0", Dst: dst}, syn, pl)},
		{"v4-martian-multicast", packettest.Build(packettest.IP{Src: "224.0.0.1", Dst: dst}, udp, pl)},
		{"v4-tcp-checksum", packettest.Build(v4(packettest.IP{L4Csum: &badSum}), syn, pl)},
		{"v4-udp-checksum", packettest.Build(v4(packettest.IP{L4Csum: &badSum}), udp, pl)},
		{"v6-truncated", packettest.Build(v6(packettest.IP{}), syn, nil)[:30]},
		{"v6-payload-length-long", packettest.Build(v6(packettest.IP{TotalLen: 400}), syn, pl)},
		{"v6-ext-chain-too-long", packettest.Build(v6(packettest.IP{Ext: longChain}), syn, pl)},
		{"v6-hop-by-hop-not-first", packettest.Build(v6(packettest.IP{Ext: []packettest.Ext{destOpt, {Type: 0, Body: make([]byte, 6)}}}), syn, pl)},
		{"v6-ext-truncated", packettest.Build(v6(packettest.IP{ExtFirst: 60, ExtRaw: []byte{6, 4, 0, 0}}), nil, nil)},
		{"v6-two-fragment-headers", packettest.Build(v6(packettest.IP{ExtFirst: 44,
			ExtRaw: []byte{44, 0, 0, 0, 0, 0, 0, 1, 6, 0, 0, 0, 0, 0, 0, 2}}), nil, nil)},
		{"v6-tcp-data-offset", packettest.Build(v6(packettest.IP{}), tcpDoff(2), pl)},
		{"v6-udp-length", packettest.Build(v6(packettest.IP{}), udpLen(), pl)},
		{"v6-icmp-short", packettest.Build(v6(packettest.IP{}), packettest.Raw{Proto: 58, B: []byte{128, 0, 0, 0}}, nil)},
		{"v6-martian-loopback", packettest.Build(packettest.IP{V6: true, Src: "::1", Dst: dst6}, syn, pl)},
		{"v6-martian-multicast", packettest.Build(packettest.IP{V6: true, Src: "ff02::1", Dst: dst6}, udp, pl)},
		{"v6-tcp-checksum", packettest.Build(v6(packettest.IP{L4Csum: &badSum}), syn, pl)},
		{"v6-udp-checksum", packettest.Build(v6(packettest.IP{L4Csum: &badSum}), udp, pl)},
	}
	return cl
}
