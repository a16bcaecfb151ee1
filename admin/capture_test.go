package admin

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"tungate/admin/admintest"
	"tungate/internal/pcapng"
	"tungate/packet"
)

// capturePackets runs `capture` of iface through the socket and delivers
// the packets it streams, until the test ends.
func capturePackets(t *testing.T, sock, iface string) (<-chan *pcapng.Packet, *pcapng.Reader) {
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	go func() {
		_, err := Do(ctx, sock, &Request{Cmd: "capture", Interface: iface}, pw)
		pw.CloseWithError(err)
	}()
	t.Cleanup(func() { cancel(); pr.Close() })
	rd, err := pcapng.NewReader(pr)
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan *pcapng.Packet, 1024)
	go func() {
		defer close(ch)
		for {
			p, err := rd.Next()
			if err != nil {
				return
			}
			ch <- p
		}
	}()
	return ch, rd
}

// waitPacket returns the first captured packet f accepts.
func waitPacket(t *testing.T, ch <-chan *pcapng.Packet, what string, f func(p *pcapng.Packet, d *packet.Parsed) bool) *pcapng.Packet {
	t.Helper()
	deadline := time.After(10 * time.Second)
	var d packet.Parsed
	var seen []string
	for {
		select {
		case p, ok := <-ch:
			if !ok {
				t.Fatalf("capture ended waiting for %s; saw %q", what, seen)
			}
			if d.Decode(p.Data) != nil {
				continue
			}
			seen = append(seen, p.Dir.String()+" "+d.DstIP().String()+" "+p.Comment)
			if f(p, &d) {
				return p
			}
		case <-deadline:
			t.Fatalf("timed out waiting for %s; saw %q", what, seen)
		}
	}
}

// A capture of lan streams pcapng with each packet's direction and
// verdict: accepted and dropped packets in, replies out, both families.
func TestCapture(t *testing.T) {
	client := admintest.NewHost(t, "10.10.0.2", "fd10::2")
	server := admintest.NewHost(t, "198.18.0.2", "2001:db8:1::2")
	g, _ := admintest.Gateway(t, withSetRule(setsConfig), client, server)
	_, sock := serve(t, g)
	ch, rd := capturePackets(t, sock, "lan")
	udpEcho(t, client, server, 7100)
	waitPacket(t, ch, "the echo request in", func(p *pcapng.Packet, d *packet.Parsed) bool {
		return p.Dir == pcapng.DirInbound && d.DstPort == 7100 && p.Comment == "accept: forwarded to wan" &&
			d.DstIP() == netip.MustParseAddr("198.18.0.2") && d.TTL() == 64
	})
	if len(rd.Ifaces) != 1 || rd.Ifaces[0].Name != "lan" || rd.Ifaces[0].LinkType != pcapng.LinkTypeRaw || rd.Appl != "tungate" {
		t.Fatalf("pcapng header: %+v %q", rd.Ifaces, rd.Appl)
	}
	waitPacket(t, ch, "the echo reply out", func(p *pcapng.Packet, d *packet.Parsed) bool {
		return p.Dir == pcapng.DirOutbound && d.SrcPort == 7100 && p.Comment == "sent" && d.DstIP() == netip.MustParseAddr("10.10.0.2")
	})
	// A blocked destination: its packet comes in and is dropped.
	c, err := client.Net.DialUDPAddrPort(netip.AddrPort{}, netip.MustParseAddrPort("[2001:db8:bad::1]:7101"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("x"))
	waitPacket(t, ch, "the blocked packet", func(p *pcapng.Packet, d *packet.Parsed) bool {
		return p.Dir == pcapng.DirInbound && d.Version == 6 && d.DstPort == 7101 && p.Comment == "drop: filter"
	})
	// A ping of the gateway: in to it, the reply out.
	pc, err := client.Net.Dial("ping4", "10.10.0.1")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	pc.Write(echoRequest())
	waitPacket(t, ch, "the ping in", func(p *pcapng.Packet, d *packet.Parsed) bool {
		return p.Dir == pcapng.DirInbound && d.IsICMP() && p.Comment == "accept: to the gateway"
	})
	waitPacket(t, ch, "the ping reply out", func(p *pcapng.Packet, d *packet.Parsed) bool {
		return p.Dir == pcapng.DirOutbound && d.IsICMP() && d.SrcIP() == netip.MustParseAddr("10.10.0.1")
	})

	for _, c := range []struct {
		req  Request
		want string
	}{
		{Request{Cmd: "capture"}, "capture needs an interface"},
		{Request{Cmd: "capture", Interface: "dmz"}, `capture: no interface "dmz" (interfaces: [lan wan])`},
		{Request{Cmd: "capture", Interface: "lan"}, `interface "lan" is already being captured`},
		{Request{Cmd: "capture", Interface: "wan", Count: -1}, "count -1 is negative"},
		{Request{Cmd: "capture", Interface: "wan", Output: "json"}, "no other output format"},
		{Request{Cmd: "capture", Interface: "wan", Match: &CaptureMatch{Host: "10.0.0.1/8"}}, `host: "10.0.0.1/8" is not an address or prefix`},
		{Request{Cmd: "capture", Interface: "wan", Match: &CaptureMatch{Proto: "sctpp"}}, `proto: "sctpp" is not tcp, udp, icmp or a protocol number`},
		{Request{Cmd: "capture", Interface: "wan", Match: &CaptureMatch{Port: 70000}}, "port: 70000 is not a port"},
	} {
		if _, _, err := do(t, sock, &c.req); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.req, err, c.want)
		}
	}
}

// echoRequest is an ICMP echo request for a ping4 socket.
func echoRequest() []byte {
	return []byte{8, 0, 0, 0, 0, 1, 0, 1, 'p', 'i', 'n', 'g'}
}

// A capture with Count ends by itself, with a statistics block and the
// count in the closing message.
func TestCaptureCount(t *testing.T) {
	client, server, g, _ := admintest.TwoLinks(t)
	_, sock := serve(t, g)
	pr, pw := io.Pipe()
	type result struct {
		msg string
		err error
	}
	res := make(chan result, 1)
	go func() {
		msg, err := Do(context.Background(), sock, &Request{Cmd: "capture", Interface: "wan", Count: 2, Match: &CaptureMatch{Proto: "udp"}}, pw)
		pw.Close()
		res <- result{msg, err}
	}()
	rd, err := pcapng.NewReader(pr)
	if err != nil {
		t.Fatal(err)
	}
	udpEcho(t, client, server, 7200)
	var pkts []*pcapng.Packet
	for {
		p, err := rd.Next()
		if err != nil {
			if err != io.EOF {
				t.Fatal(err)
			}
			break
		}
		pkts = append(pkts, p)
	}
	r := <-res
	if r.err != nil || !strings.HasPrefix(r.msg, "2 packets captured on wan, 0 dropped") {
		t.Fatalf("end: %q %v", r.msg, r.err)
	}
	if len(pkts) != 2 || pkts[0].Dir != pcapng.DirOutbound || pkts[1].Dir != pcapng.DirInbound || pkts[1].Comment != "accept: forwarded to lan" {
		t.Fatalf("packets: %+v", pkts)
	}
	if len(rd.Stats) != 1 || rd.Stats[0].Received != 2 || !rd.Stats[0].HaveDropped || rd.Stats[0].Dropped != 0 {
		t.Fatalf("stats: %+v", rd.Stats)
	}
	if g.Stats()["forwarded"] == 0 {
		t.Fatal("nothing forwarded")
	}
}

// A capture client that reads nothing does not hold up forwarding: the
// packets it misses are dropped from the capture, counted, and told to it
// when it reads again.
func TestCaptureStuckReader(t *testing.T) {
	client, server, g, _ := admintest.TwoLinks(t)
	_, sock := serve(t, g)
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte(`{"cmd":"capture","interface":"lan"}` + "\n"))
	br := bufio.NewReader(c)
	// The header frame says the capture runs.
	if _, err := br.Peek(5); err != nil {
		t.Fatal(err)
	}
	// Now read nothing while thousands of datagrams cross lan.
	const n = 8000
	sink := listenSink(t, server, "198.18.0.2", 7300)
	uc, err := client.Net.DialUDPAddrPort(netip.AddrPort{}, netip.MustParseAddrPort("198.18.0.2:7300"))
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	fwd0 := g.Stats()["forwarded"]
	start := time.Now()
	payload := make([]byte, 200)
	for range n {
		uc.Write(payload)
	}
	// Every datagram the client sent is forwarded, with the capture stuck.
	deadline := time.Now().Add(30 * time.Second)
	for g.Stats()["forwarded"]-fwd0 < n {
		if time.Now().After(deadline) {
			t.Fatalf("forwarded %d of %d with a stuck capture reader (server got %d)", g.Stats()["forwarded"]-fwd0, n, sink.n.Load())
		}
		time.Sleep(time.Millisecond) // polling a counter
	}
	t.Logf("%d datagrams forwarded in %v with the capture reader stuck; server received %d", n, time.Since(start), sink.n.Load())
	udpEcho(t, client, server, 7301)
	// The reader resumes: after the packets that fit, later packets
	// carry how many were lost, until every packet is accounted for.
	framed, fw := io.Pipe()
	go func() { _, err := readFrames(br, fw); fw.CloseWithError(err) }()
	rd, err := pcapng.NewReader(framed)
	if err != nil {
		t.Fatal(err)
	}
	echoed := make(chan struct{})
	go func() {
		defer close(echoed)
		udpEcho(t, client, server, 7302) // packets after the losses
	}()
	var lost, got uint64
	for got+lost < n {
		p, err := rd.Next()
		if err != nil {
			t.Fatalf("after %d packets and %d lost: %v", got, lost, err)
		}
		got++
		lost += p.Drops
	}
	<-echoed
	if got >= n || lost == 0 {
		t.Fatalf("read %d packets, told of %d lost, of %d", got, lost, n)
	}
	t.Logf("the reader read %d packets and was told of %d lost", got, lost)
}

// A filtered capture records only what matches: here UDP to one port,
// while other traffic crosses the same link.
func TestCaptureMatch(t *testing.T) {
	client, server, g, _ := admintest.TwoLinks(t)
	_, sock := serve(t, g)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	go func() {
		_, err := Do(ctx, sock, &Request{Cmd: "capture", Interface: "lan", Count: 2,
			Match: &CaptureMatch{Host: "198.18.0.0/24", Proto: "udp", Port: 7501}}, pw)
		pw.CloseWithError(err)
	}()
	rd, err := pcapng.NewReader(pr)
	if err != nil {
		t.Fatal(err)
	}
	udpEcho(t, client, server, 7500) // not selected
	udpEcho(t, client, server, 7501)
	var d packet.Parsed
	for range 2 {
		p, err := rd.Next()
		if err != nil {
			t.Fatal(err)
		}
		if d.Decode(p.Data) != nil || d.Proto != packet.ProtoUDP || (d.DstPort != 7501 && d.SrcPort != 7501) {
			t.Fatalf("filtered capture recorded %+v", p)
		}
	}
}
