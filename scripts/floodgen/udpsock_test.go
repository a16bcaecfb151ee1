package main

import (
	"net"
	"net/netip"
	"testing"
	"time"
)

// TestUDPSendRecv: what udpsend sends in batches from several sockets,
// udprecv counts in batches, every datagram, over IPv4 and IPv6 loopback
// (paced, so a loaded machine's loopback drops nothing).
func TestUDPSendRecv(t *testing.T) {
	for _, listen := range []string{"127.0.0.1:0", "[::1]:0"} {
		a := netip.MustParseAddrPort(listen)
		c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(a))
		if err != nil {
			t.Fatal(err)
		}
		setRcvBuf(c, 4<<20)
		dst := c.LocalAddr().(*net.UDPAddr).AddrPort()
		v6 := a.Addr().Is6()
		got := make(chan sockResult, 1)
		go func() { got <- udpRecv(newBatchConn(c, v6), c, 16, 10*time.Second, 500*time.Millisecond) }()
		cs := make([]batchConn, 3)
		for i := range cs {
			s, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(dst))
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			cs[i] = newBatchConn(s, v6)
		}
		sent := udpSend(cs, 64, 16, 20000, 200*time.Millisecond)
		r := <-got
		c.Close()
		if sent.Packets < 1000 || sent.Errors != 0 || sent.Conns != 3 {
			t.Fatalf("%s: sent %+v", listen, sent)
		}
		if r.Packets != sent.Packets || r.Errors != 0 {
			t.Errorf("%s: sent %d, received %+v", listen, sent.Packets, r)
		}
		if r.PPS <= 0 || sent.PPS <= 0 {
			t.Errorf("%s: rates %v / %v", listen, sent.PPS, r.PPS)
		}
	}
}
