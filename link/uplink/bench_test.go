package uplink

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"tungate/link"
)

func benchFamilies(b *testing.B, f func(b *testing.B, v6 bool)) {
	b.Run("ipv4", func(b *testing.B) { f(b, false) })
	b.Run("ipv6", func(b *testing.B) { f(b, true) })
}

// BenchmarkUDPSend writes batches of 128 datagrams of one container
// endpoint to a loopback socket; an op is one datagram.
func BenchmarkUDPSend(b *testing.B) {
	benchFamilies(b, func(b *testing.B, v6 bool) {
		l := openLink(b, Config{AllowHostLoopback: true})
		sink, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(loAddr(v6), 0)))
		if err != nil {
			b.Fatal(err)
		}
		defer sink.Close()
		dst := sink.LocalAddr().(*net.UDPAddr).AddrPort()
		pkts := make([][]byte, batchSize)
		for i := range pkts {
			pkts[i] = udpPkt(netip.AddrPortFrom(ctrAddr(v6), 50000), dst, make([]byte, 100))
		}
		l.Write(pkts[:1], link.Headroom) // opens the endpoint's socket
		b.SetBytes(100)
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i += batchSize {
			l.Write(pkts[:min(batchSize, b.N-i)], link.Headroom)
		}
		b.StopTimer()
		if s := l.Stats(); s[DropSendError] != 0 || s[UDPSockets] != 1 {
			b.Fatalf("send errors %d, sockets %d", s[DropSendError], s[UDPSockets])
		}
	})
}

// BenchmarkUDPReceive has a host socket send datagrams to a container
// endpoint's host port and Reads them as packets; an op is one datagram,
// through recvmmsg, the packet build and Read.
func BenchmarkUDPReceive(b *testing.B) {
	benchFamilies(b, func(b *testing.B, v6 bool) {
		l := openLink(b, Config{AllowHostLoopback: true})
		remote, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(loAddr(v6), 0)))
		if err != nil {
			b.Fatal(err)
		}
		defer remote.Close()
		ctr := netip.AddrPortFrom(ctrAddr(v6), 50001)
		write(b, l, udpPkt(ctr, remote.LocalAddr().(*net.UDPAddr).AddrPort(), []byte("hello")))
		buf := make([]byte, 2048)
		remote.SetReadDeadline(time.Now().Add(2 * time.Second))
		_, hostPort, err := remote.ReadFromUDPAddrPort(buf)
		if err != nil {
			b.Fatal(err)
		}
		bufs := make([][]byte, batchSize)
		for i := range bufs {
			bufs[i] = make([]byte, link.Headroom+2048)
		}
		sizes := make([]int, batchSize)
		payload := make([]byte, 100)
		const inFlight = 64
		b.SetBytes(100)
		b.ReportAllocs()
		b.ResetTimer()
		for done := 0; done < b.N; {
			k := min(inFlight, b.N-done)
			for range k {
				if _, err := remote.WriteToUDPAddrPort(payload, hostPort); err != nil {
					b.Fatal(err)
				}
			}
			for got := 0; got < k; {
				n, err := l.Read(bufs, sizes, link.Headroom)
				if err != nil {
					b.Fatal(err)
				}
				got += n
			}
			done += k
		}
		b.StopTimer()
		if s := l.Stats(); s[DropQueueFull] != 0 {
			b.Fatalf("%d dropped", s[DropQueueFull])
		}
	})
}
