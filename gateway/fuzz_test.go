package gateway

import (
	"bytes"
	"testing"

	"tungate/link"
	"tungate/packet"

	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// FuzzPipeline runs arbitrary bytes through the whole datapath (decode,
// defragment, conntrack, NAT, rules, helpers, local ICMP) on both links of
// a masquerading gateway with FTP and TFTP helpers, a port forward, a SYN
// proxy on ports 80 and 443 and a stateful policy: whatever arrives,
// nothing may panic. A cookie is a keyed hash no input can guess, so an
// ACK from the LAN to port 443 gets the valid one written in: the rebuilt
// SYN, the handshake with the server and the translation run too.
// 60 s of it ran clean (742,750 inputs).
func FuzzPipeline(f *testing.F) {
	for _, s := range pipelineSeeds() {
		f.Add(s, false)
		f.Add(s, true)
	}
	g := fuzzGateway(f)
	lan := newWorker(g, g.Links()[0])
	wan := newWorker(g, g.Links()[1])
	f.Fuzz(func(t *testing.T, pkt []byte, fromWAN bool) {
		if len(pkt) > maxPacket {
			return
		}
		w := lan
		if fromWAN {
			w = wan
		}
		w.now = g.ct.Now()
		w.rs = g.Rules()
		if !fromWAN {
			pkt = withCookie(g, pkt, w.now)
		}
		runPacket(w, pkt)
	})
}

// TestPipelineSeedsReachSynProxy: the fuzz target's seeds, in the order
// the fuzzer runs them, take a connection through the SYN proxy's whole
// handshake, so mutations start from inputs that reach its translation.
func TestPipelineSeedsReachSynProxy(t *testing.T) {
	g := fuzzGateway(t)
	lan := newWorker(g, g.Links()[0])
	wan := newWorker(g, g.Links()[1])
	for _, s := range pipelineSeeds() {
		for _, w := range []*worker{lan, wan} {
			w.now, w.rs = g.ct.Now(), g.Rules()
			pkt := s
			if w == lan {
				pkt = withCookie(g, s, w.now)
			}
			runPacket(w, pkt)
		}
	}
	if g.Counters.SynProxyOpen.Load() == 0 || g.Counters.SynProxySyn.Load() == 0 {
		t.Fatalf("the seeds do not reach the SYN proxy: %v", g.Counters.Snapshot())
	}
}

func pipelineSeeds() [][]byte {
	return [][]byte{
		tcpPacket("10.10.0.2", "198.18.0.2", 40000, 21, 1, 0, header.TCPFlagSyn, 0),
		tcpPacket("198.18.0.2", "198.18.0.1", 21, 40000, 9, 2, header.TCPFlagSyn|header.TCPFlagAck, 0),
		tcpPacket("10.10.0.2", "198.18.0.2", 40000, 21, 2, 10, header.TCPFlagAck|header.TCPFlagPsh, 40),
		synPacket(false, "10.10.0.2", "198.18.0.2", 40001, 100, 5),
		tsSeg("10.10.0.2", "198.18.0.2", 40001, 443, 101, 0, packet.TCPAck, 6, 0, 0),
		tsSeg("198.18.0.2", "198.18.0.1", 443, 40001, 7000, 101, packet.TCPSyn|packet.TCPAck, 9, 6, 0),
		tsSeg("fd10::2", "2001:db8:1::2", 40002, 443, 101, 0, packet.TCPAck, 6, 0, 0),
		tsSeg("198.18.0.2", "198.18.0.1", 443, 40001, 7001, 101, packet.TCPAck, 10, 6, 100),
		udpPacket("10.10.0.2", "198.18.0.2", 5000, 53, 64, false, []byte("query")),
		udpPacket("fd10::2", "2001:db8:1::2", 5000, 53, 1, false, []byte("query")),
		udpPacket("10.10.0.2", "10.10.0.1", 5000, 69, 64, false, []byte{0, 1, 'f', 0, 'o', 'c', 't', 'e', 't', 0}),
		echoRequest("10.10.0.2", "198.18.0.2", 7),
		echoRequest("fd10::2", "fd10::1", 8),
	}
}

// withCookie returns pkt with the valid SYN cookie in its ack when it is
// a TCP ACK to port 443.
func withCookie(g *Gateway, pkt []byte, now int64) []byte {
	var p packet.Parsed
	c := bytes.Clone(pkt)
	if p.Decode(c) != nil || p.Proto != packet.ProtoTCP || !p.HasL4 || p.Fragment || p.DstPort != 443 ||
		p.TCPFlags&(packet.TCPSyn|packet.TCPAck|packet.TCPFin|packet.TCPRst) != packet.TCPAck {
		return pkt
	}
	tu := cookieTuple{p.Src, p.Dst, p.SrcPort, p.DstPort, p.Version}
	p.SetTCPAck(g.cookies.cookie(&tu, p.TCPSeq()-1, uint8(p.TCPAck()&7), now) + 1)
	return c
}

func fuzzGateway(tb testing.TB) *Gateway { return nullGateway(tb, fuzzConf) }

// fuzzConf is the fuzzed gateway's config beyond its two links.
const fuzzConf = `
[[nat.masquerade]]
out = "wan"
[[nat.dnat]]
proto = "tcp"
dport = 8080
to = "10.10.0.3:80"
[helpers.ftp]
ports = [21]
[helpers.tftp]
ports = [69]
[filter.forward]
policy = "drop"
rules = [
  { ct_state = ["established", "related"], action = "accept" },
  { ct_state = ["invalid"], action = "drop" },
  { proto = "tcp", dport = 81, action = "reject" },
  { in = "lan", proto = "tcp", dport = [80, 443], ct_state = ["new"], action = "synproxy" },
  { in = "lan", ct_state = ["new"], action = "accept" },
  { in = "wan", ct_status = ["dnat"], action = "accept" },
]
`

// FuzzPipelineOffload runs arbitrary bytes through the datapath as the
// uplink's TCP stack hands its packets over: marked ChecksumPartial, read
// lazily (the bytes past lazyAt left in a piece of their own, when lazyAt
// falls inside the packet) and marked to be cut into segments of gso
// payload bytes, toward a wan that cuts and gathers (a kernel TUN's
// offloads) or one that takes whole packets only; the batch is flushed.
// Whatever the bytes and marks, nothing may panic.
func FuzzPipelineOffload(f *testing.F) {
	for _, s := range pipelineSeeds() {
		f.Add(s, uint16(0), uint16(0), false)
		f.Add(s, uint16(1400), uint16(40), true)
	}
	data := tcpPacket("10.10.0.2", "198.18.0.2", 40000, 21, 2, 10, header.TCPFlagAck|header.TCPFlagPsh, 9000)
	f.Add(data, uint16(1400), uint16(40), true)
	f.Add(data, uint16(1400), uint16(40), false)
	f.Add(data, uint16(100), uint16(3000), true)
	var gs [2]*Gateway
	var lans [2]*worker
	for i, offload := range []bool{false, true} {
		gs[i] = offloadFuzzGateway(f, offload)
		lans[i] = newWorker(gs[i], gs[i].Links()[0])
		// The seeds' handshakes, so later inputs meet connections.
		wan := newWorker(gs[i], gs[i].Links()[1])
		for _, s := range pipelineSeeds() {
			for _, w := range []*worker{lans[i], wan} {
				w.now, w.rs = gs[i].ct.Now(), gs[i].Rules()
				runPacket(w, s)
			}
		}
	}
	f.Fuzz(func(t *testing.T, pkt []byte, gso, lazyAt uint16, offload bool) {
		if len(pkt) > maxPacket {
			return
		}
		i := 0
		if offload {
			i = 1
		}
		w := lans[i]
		w.now, w.rs = gs[i].ct.Now(), gs[i].Rules()
		n := copy(w.bufs[0][headroom:], pkt)
		w.cur, w.gso, w.partial, w.gsoSize, w.lz = w.bufs[0], true, true, int(gso), nil
		if k := int(lazyAt); k > 0 && k < n {
			w.lzHdr, w.lz = k, [][]byte{pkt[k:]}
		}
		w.packet(w.bufs[0], n)
		w.flush()
		w.lz = nil
		w.forwarded, w.delivered = 0, 0
	})
}

// offloadFuzzGateway is fuzzGateway's config on devices that never
// deliver, the wan one taking offloads (link.OffloadWriter) or not.
func offloadFuzzGateway(tb testing.TB, offload bool) *Gateway {
	var wan link.Link = &nullDev{done: make(chan struct{})}
	if offload {
		wan = &vecNullDev{nullDev{done: make(chan struct{})}}
	}
	return devGateway(tb, linksConf+fuzzConf, &nullDev{done: make(chan struct{})}, wan)
}
