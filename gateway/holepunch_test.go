package gateway

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/header"

	"tungate/packet"
)

// Hole punching through the mapping (issue 10): a LAN host talks to S1 from
// port P, a stranger S2 sends to the host's mapping (and is filtered out),
// then the host sends to S2 from P. RFC 4787 REQ-1 and RFC 5382 REQ-1 want
// that flow to leave from the same external endpoint, and S2's packets on
// it to reach the host, whatever the gateway did with S2's first packet.

// punchFilters are the [filter.input] variants every case runs under: none
// (accept), a drop policy, and one that accepts UDP and TCP to the gateway
// so the stranger's packet gets a confirmed connection of its own.
var punchFilters = []struct{ name, conf string }{
	{"no-input", ""},
	{"input-drop", `
[filter.input]
policy = "drop"
rules = [ { ct_state = ["established", "related"], action = "accept" } ]
`},
	{"input-accept", `
[filter.input]
policy = "drop"
rules = [
  { ct_state = ["established", "related"], action = "accept" },
  { proto = "udp", action = "accept" },
  { proto = "tcp", action = "accept" },
]
`},
}

// punchForward is a stateful forward policy that lets nothing in from the
// WAN but replies: the stranger's packets get to the host only as replies
// of the host's own flow.
const punchForward = `
[[nat.masquerade]]
out = "wan"
[filter.forward]
policy = "drop"
rules = [
  { ct_state = ["established", "related"], action = "accept" },
  { ct_state = ["invalid"], action = "drop" },
  { in = "lan", ct_state = ["new"], action = "accept" },
]
`

// punchFamily names the endpoints of one address family.
type punchFamily struct {
	name             string
	host, s1, s2, gw string
}

var punchFamilies = []punchFamily{
	{"ipv4", "10.10.0.2", "198.18.0.2", "198.18.0.3", "198.18.0.1"},
	{"ipv6", "fd10::2", "2001:db8:1::2", "2001:db8:1::3", "2001:db8:1::1"},
}

// punchRig drives a gateway's two workers directly, one packet at a time,
// and collects what each packet makes the gateway send.
type punchRig struct {
	t        *testing.T
	g        *Gateway
	lan, wan *worker
}

func newPunchRig(t *testing.T, conf string) *punchRig {
	g := nullGateway(t, conf)
	return &punchRig{t: t, g: g, lan: newWorker(g, g.Links()[0]), wan: newWorker(g, g.Links()[1])}
}

// run passes pkt through the worker and returns copies of the packets
// queued for the LAN (0) and the WAN (1).
func (r *punchRig) run(w *worker, pkt []byte) (sent [2][][]byte) {
	w.now, w.rs = r.g.ct.Now(), r.g.Rules()
	n := copy(w.bufs[0][headroom:], pkt)
	w.packet(w.bufs[0], n)
	for i, q := range w.out {
		for _, b := range q {
			sent[i] = append(sent[i], append([]byte(nil), b[headroom:]...))
		}
		w.out[i] = q[:0]
	}
	w.nscratch, w.forwarded, w.delivered = 0, 0, 0
	return sent
}

// only returns the one packet of protocol proto in list, failing unless
// there is exactly one; ICMP errors the gateway sends are not counted.
func (r *punchRig) only(list [][]byte, proto uint8, what string) *packet.Parsed {
	r.t.Helper()
	var got *packet.Parsed
	for _, b := range list {
		p := new(packet.Parsed)
		if err := p.Decode(b); err != nil {
			r.t.Fatalf("%s: undecodable packet: %v", what, err)
		}
		if p.Proto != proto {
			continue
		}
		if got != nil {
			r.t.Fatalf("%s: more than one packet", what)
		}
		got = p
	}
	if got == nil {
		r.t.Fatalf("%s: not sent (drops %v)", what, r.g.Counters.Snapshot())
	}
	if !got.L4ChecksumValid() {
		r.t.Fatalf("%s: bad checksum", what)
	}
	return got
}

// none fails when list holds a packet of protocol proto.
func (r *punchRig) none(list [][]byte, proto uint8, what string) {
	r.t.Helper()
	for _, b := range list {
		var p packet.Parsed
		if p.Decode(b) == nil && p.Proto == proto {
			r.t.Fatalf("%s: %v:%d -> %v:%d was let through", what, p.SrcIP(), p.SrcPort, p.DstIP(), p.DstPort)
		}
	}
}

// check checks p's source and destination.
func (r *punchRig) check(p *packet.Parsed, src, dst netip.AddrPort, what string) {
	r.t.Helper()
	if s, d := netip.AddrPortFrom(p.SrcIP(), p.SrcPort), netip.AddrPortFrom(p.DstIP(), p.DstPort); s != src || d != dst {
		r.t.Fatalf("%s: left as %v -> %v, want %v -> %v", what, s, d, src, dst)
	}
}

func eps(a string, port uint16) netip.AddrPort {
	return netip.AddrPortFrom(netip.MustParseAddr(a), port)
}

const (
	hostPort   = 7000
	s1Port     = 3478
	s2Port     = 5000
	synS1      = 1000
	synS2      = 2000
	strangerSN = 9000
)

// TestHolePunchUDP: the stranger's datagram to the mapping is filtered; the
// host's datagram to the stranger leaves from the same external port; the
// stranger's next datagrams reach the host.
func TestHolePunchUDP(t *testing.T) {
	for _, f := range punchFamilies {
		for _, in := range punchFilters {
			t.Run(f.name+"/"+in.name, func(t *testing.T) {
				r := newPunchRig(t, punchForward+in.conf)
				out := r.run(r.lan, udpPacket(f.host, f.s1, hostPort, s1Port, 64, false, []byte("stun")))
				toS1 := r.only(out[1], packet.ProtoUDP, "host -> S1")
				ext := netip.AddrPortFrom(toS1.SrcIP(), toS1.SrcPort)
				r.check(toS1, eps(f.gw, hostPort), eps(f.s1, s1Port), "host -> S1")

				out = r.run(r.wan, udpPacket(f.s2, f.gw, s2Port, ext.Port(), 64, false, []byte("knock")))
				r.none(out[0], packet.ProtoUDP, "stranger's first datagram (address-and-port-dependent filtering)")

				out = r.run(r.lan, udpPacket(f.host, f.s2, hostPort, s2Port, 64, false, []byte("punch")))
				r.check(r.only(out[1], packet.ProtoUDP, "host -> S2"), ext, eps(f.s2, s2Port), "host -> S2")

				for i := range 2 {
					out = r.run(r.wan, udpPacket(f.s2, f.gw, s2Port, ext.Port(), 64, false, []byte("hello")))
					r.check(r.only(out[0], packet.ProtoUDP, fmt.Sprintf("S2 -> host #%d", i)), eps(f.s2, s2Port), eps(f.host, hostPort), "S2 -> host")
				}
				// S1's flow is untouched.
				out = r.run(r.wan, udpPacket(f.s1, f.gw, s1Port, ext.Port(), 64, false, []byte("stun reply")))
				r.check(r.only(out[0], packet.ProtoUDP, "S1 -> host"), eps(f.s1, s1Port), eps(f.host, hostPort), "S1 -> host")
			})
		}
	}
}

// TestHolePunchUDPStrangerFirst: the stranger's datagram arrives before the
// host has any mapping; the host's first datagram (to the stranger) still
// keeps its port (RFC 4787 REQ-3's port preservation), not moved off it by
// the gateway's own connection for the stranger's datagram.
func TestHolePunchUDPStrangerFirst(t *testing.T) {
	for _, f := range punchFamilies {
		for _, in := range punchFilters {
			t.Run(f.name+"/"+in.name, func(t *testing.T) {
				r := newPunchRig(t, punchForward+in.conf)
				out := r.run(r.wan, udpPacket(f.s2, f.gw, s2Port, hostPort, 64, false, []byte("knock")))
				r.none(out[0], packet.ProtoUDP, "stranger's datagram to the gateway")
				out = r.run(r.lan, udpPacket(f.host, f.s2, hostPort, s2Port, 64, false, []byte("punch")))
				r.check(r.only(out[1], packet.ProtoUDP, "host -> S2"), eps(f.gw, hostPort), eps(f.s2, s2Port), "host -> S2")
				out = r.run(r.wan, udpPacket(f.s2, f.gw, s2Port, hostPort, 64, false, []byte("hello")))
				r.check(r.only(out[0], packet.ProtoUDP, "S2 -> host"), eps(f.s2, s2Port), eps(f.host, hostPort), "S2 -> host")
			})
		}
	}
}

// TestHolePunchTCP: TCP simultaneous open through the mapping (RFC 5382):
// the stranger's SYN reaches the mapping before the host's SYN to it; the
// host's SYN leaves from the mapped port, and the stranger's SYN/ACK (or
// its SYN again, for a simultaneous open) reaches the host.
func TestHolePunchTCP(t *testing.T) {
	syn, synack, ack := header.TCPFlagSyn, header.TCPFlagSyn|header.TCPFlagAck, header.TCPFlagAck
	for _, f := range punchFamilies {
		for _, in := range punchFilters {
			for _, answer := range []string{"synack", "syn"} {
				t.Run(f.name+"/"+in.name+"/"+answer, func(t *testing.T) {
					r := newPunchRig(t, punchForward+in.conf)
					// An established connection to S1 makes the mapping.
					out := r.run(r.lan, tcpPacket(f.host, f.s1, hostPort, 80, synS1, 0, syn, 0))
					toS1 := r.only(out[1], packet.ProtoTCP, "host SYN -> S1")
					r.check(toS1, eps(f.gw, hostPort), eps(f.s1, 80), "host SYN -> S1")
					ext := netip.AddrPortFrom(toS1.SrcIP(), toS1.SrcPort)
					out = r.run(r.wan, tcpPacket(f.s1, f.gw, 80, ext.Port(), 500, synS1+1, synack, 0))
					r.check(r.only(out[0], packet.ProtoTCP, "S1 SYN/ACK"), eps(f.s1, 80), eps(f.host, hostPort), "S1 SYN/ACK")
					r.only(r.run(r.lan, tcpPacket(f.host, f.s1, hostPort, 80, synS1+1, 501, ack, 0))[1], packet.ProtoTCP, "host ACK -> S1")

					// The stranger's SYN arrives first: no answer, nothing
					// to the host (RFC 5382 REQ-4).
					out = r.run(r.wan, tcpPacket(f.s2, f.gw, s2Port, ext.Port(), strangerSN, 0, syn, 0))
					r.none(out[0], packet.ProtoTCP, "stranger's SYN")
					r.none(out[1], packet.ProtoTCP, "an answer to the stranger's SYN")

					out = r.run(r.lan, tcpPacket(f.host, f.s2, hostPort, s2Port, synS2, 0, syn, 0))
					r.check(r.only(out[1], packet.ProtoTCP, "host SYN -> S2"), ext, eps(f.s2, s2Port), "host SYN -> S2")

					if answer == "synack" {
						out = r.run(r.wan, tcpPacket(f.s2, f.gw, s2Port, ext.Port(), strangerSN, synS2+1, synack, 0))
						r.check(r.only(out[0], packet.ProtoTCP, "S2 SYN/ACK"), eps(f.s2, s2Port), eps(f.host, hostPort), "S2 SYN/ACK")
						out = r.run(r.lan, tcpPacket(f.host, f.s2, hostPort, s2Port, synS2+1, strangerSN+1, ack, 0))
						r.only(out[1], packet.ProtoTCP, "host ACK -> S2")
					} else {
						// Simultaneous open: S2's SYN again, then both
						// sides' SYN/ACKs.
						out = r.run(r.wan, tcpPacket(f.s2, f.gw, s2Port, ext.Port(), strangerSN, 0, syn, 0))
						r.check(r.only(out[0], packet.ProtoTCP, "S2 SYN"), eps(f.s2, s2Port), eps(f.host, hostPort), "S2 SYN")
						out = r.run(r.lan, tcpPacket(f.host, f.s2, hostPort, s2Port, synS2, strangerSN+1, synack, 0))
						r.check(r.only(out[1], packet.ProtoTCP, "host SYN/ACK -> S2"), ext, eps(f.s2, s2Port), "host SYN/ACK -> S2")
						out = r.run(r.wan, tcpPacket(f.s2, f.gw, s2Port, ext.Port(), strangerSN, synS2+1, synack, 0))
						r.check(r.only(out[0], packet.ProtoTCP, "S2 SYN/ACK"), eps(f.s2, s2Port), eps(f.host, hostPort), "S2 SYN/ACK")
					}
					out = r.run(r.wan, tcpPacket(f.s2, f.gw, s2Port, ext.Port(), strangerSN+1, synS2+1, ack|header.TCPFlagPsh, 10))
					r.check(r.only(out[0], packet.ProtoTCP, "S2 data"), eps(f.s2, s2Port), eps(f.host, hostPort), "S2 data")
				})
			}
		}
	}
}

// TestHolePunchSockets is the reported case end to end, with real UDP
// sockets on both sides: after the stranger's datagram, the host's
// datagram to it arrives from the host's mapping, and the stranger's
// answer reaches the host's socket.
func TestHolePunchSockets(t *testing.T) {
	client, server, g := natGateway(t, "")
	for _, f := range punchFamilies {
		t.Run(f.name, func(t *testing.T) {
			if f.name == "ipv6" {
				// natGateway's second server address is IPv4 only.
				f.s2 = "2001:db8:1::2"
			}
			listen := func(h *host, a netip.AddrPort) *udpEnd {
				c, err := h.Net.ListenUDPAddrPort(a)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { c.Close() })
				return &udpEnd{t: t, c: c}
			}
			hc := listen(client, eps(f.host, hostPort+10))
			s1 := listen(server, eps(f.s1, s1Port))
			s2 := listen(server, eps(f.s2, s2Port))
			hc.send("stun", eps(f.s1, s1Port))
			_, ext := s1.recv("S1")
			if ext.Port() != hostPort+10 {
				t.Fatalf("S1 saw %v, want the preserved port %d", ext, hostPort+10)
			}
			// The stranger's datagram must have been handled (delivered
			// to the gateway and refused) before the host's goes out:
			// the two links have readers of their own.
			local := g.Counters.Local.Load()
			s2.send("knock", ext)
			eventually(t, 5*time.Second, "the stranger's datagram at the gateway", func() bool { return g.Counters.Local.Load() > local })
			hc.send("punch", eps(f.s2, s2Port))
			if msg, from := s2.recv("S2"); msg != "punch" || from != ext {
				t.Fatalf("S2 got %q from %v, want \"punch\" from the mapping %v", msg, from, ext)
			}
			s2.send("hello", ext)
			if msg, from := hc.recv("host"); msg != "hello" || from != eps(f.s2, s2Port) {
				t.Fatalf("host got %q from %v, want \"hello\" from S2", msg, from)
			}
		})
	}
}

type udpEnd struct {
	t *testing.T
	c interface {
		WriteTo([]byte, net.Addr) (int, error)
		ReadFrom([]byte) (int, net.Addr, error)
		SetReadDeadline(time.Time) error
	}
}

func (u *udpEnd) send(msg string, to netip.AddrPort) {
	u.t.Helper()
	if _, err := u.c.WriteTo([]byte(msg), net.UDPAddrFromAddrPort(to)); err != nil {
		u.t.Fatal(err)
	}
}

func (u *udpEnd) recv(who string) (string, netip.AddrPort) {
	u.t.Helper()
	buf := make([]byte, 100)
	u.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, from, err := u.c.ReadFrom(buf)
	if err != nil {
		u.t.Fatalf("%s: %v", who, err)
	}
	a, err := netip.ParseAddrPort(from.String())
	if err != nil {
		u.t.Fatalf("%s: peer %v: %v", who, from, err)
	}
	return strings.TrimSpace(string(buf[:n])), netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
}
