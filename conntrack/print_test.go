package conntrack

import (
	"net/netip"
	"testing"
	"time"

	"tungate/packet"
)

// linuxTimeouts are Linux's defaults where tungate's differ (RFC 4787 and
// RFC 5508 ask for longer), so lines compare with the kernel's verbatim.
var linuxTimeouts = Timeouts{UDP: ctSec(30), ICMP: ctSec(30), ICMPv6: ctSec(30)}

// TestAppendConnMatchesConntrackTool replays, packet for packet, flows that
// went through a Linux 6.18 router namespace (nftables masquerade,
// nf_conntrack_acct=1) and compares with the lines `conntrack -L`
// (conntrack-tools 1.4.7) printed for them half a second after the last
// packet.
func TestAppendConnMatchesConntrackTool(t *testing.T) {
	v4, v6 := ctFamilies[0], ctFamilies[1]
	type flow struct {
		out, back []byte // client's packet; the server's answer to the outside address
		outs      int    // packets each way, alternating; backs may be fewer
		backs     int
		nat       netip.Addr
	}
	for _, tc := range []struct {
		name string
		flow flow
		want string
	}{
		{"udp unreplied", flow{build.UDP(v4.cli, 40002, v4.srv, 9999, 20), nil, 1, 0, v4.nat},
			"udp      17 29 src=10.10.0.2 dst=198.18.0.2 sport=40002 dport=9999 packets=1 bytes=48 [UNREPLIED] src=198.18.0.2 dst=198.18.0.1 sport=9999 dport=40002 packets=0 bytes=0 mark=0 use=1"},
		{"udp dns unreplied", flow{build.UDP(v6.cli, 40003, v6.srv, 53, 1), nil, 1, 0, v6.nat},
			"udp      17 29 src=fd10::2 dst=fd18::2 sport=40003 dport=53 packets=1 bytes=49 [UNREPLIED] src=fd18::2 dst=fd18::1 sport=53 dport=40003 packets=0 bytes=0 mark=0 use=1"},
		{"udp replied ipv4", flow{build.UDP(v4.cli, 40001, v4.srv, 5353, 10), build.UDP(v4.srv, 5353, v4.nat, 40001, 10), 3, 3, v4.nat},
			"udp      17 29 src=10.10.0.2 dst=198.18.0.2 sport=40001 dport=5353 packets=3 bytes=114 src=198.18.0.2 dst=198.18.0.1 sport=5353 dport=40001 packets=3 bytes=114 mark=0 use=1"},
		{"udp replied ipv6", flow{build.UDP(v6.cli, 40001, v6.srv, 5353, 10), build.UDP(v6.srv, 5353, v6.nat, 40001, 10), 3, 3, v6.nat},
			"udp      17 29 src=fd10::2 dst=fd18::2 sport=40001 dport=5353 packets=3 bytes=174 src=fd18::2 dst=fd18::1 sport=5353 dport=40001 packets=3 bytes=174 mark=0 use=1"},
		{"icmp echo", flow{build.Echo(v4.cli, v4.srv, false, 11583, 56), build.Echo(v4.srv, v4.nat, true, 11583, 56), 2, 2, v4.nat},
			"icmp     1 29 src=10.10.0.2 dst=198.18.0.2 type=8 code=0 id=11583 packets=2 bytes=168 src=198.18.0.2 dst=198.18.0.1 type=0 code=0 id=11583 packets=2 bytes=168 mark=0 use=1"},
		{"icmpv6 echo", flow{build.Echo(v6.cli, v6.srv, false, 11584, 56), build.Echo(v6.srv, v6.nat, true, 11584, 56), 2, 2, v6.nat},
			"icmpv6   58 29 src=fd10::2 dst=fd18::2 type=128 code=0 id=11584 packets=2 bytes=208 src=fd18::2 dst=fd18::1 type=129 code=0 id=11584 packets=2 bytes=208 mark=0 use=1"},
		{"gre", flow{build.GRE(v4.cli, v4.srv, 0, false, 0, 24), nil, 1, 0, v4.nat},
			"gre      47 29 src=10.10.0.2 dst=198.18.0.2 srckey=0x0 dstkey=0x0 packets=1 bytes=48 [UNREPLIED] src=198.18.0.2 dst=198.18.0.1 srckey=0x0 dstkey=0x0 packets=0 bytes=0 mark=0 use=1"},
		{"unknown ipv4", flow{build.Raw(v4.cli, v4.srv, 253, 5), nil, 1, 0, v4.nat},
			"unknown  253 599 src=10.10.0.2 dst=198.18.0.2 packets=1 bytes=25 [UNREPLIED] src=198.18.0.2 dst=198.18.0.1 packets=0 bytes=0 mark=0 use=1"},
		{"unknown ipv6", flow{build.Raw(v6.cli, v6.srv, 253, 5), nil, 1, 0, v6.nat},
			"unknown  253 599 src=fd10::2 dst=fd18::2 packets=1 bytes=45 [UNREPLIED] src=fd18::2 dst=fd18::1 packets=0 bytes=0 mark=0 use=1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newCTHarness(t, Config{Timeouts: linuxTimeouts})
			c := h.passNAT(tc.flow.out, tc.flow.nat).Conn
			// As the kernel saw them: out, back, out, back, ...
			for i := range tc.flow.outs {
				if i > 0 {
					h.advance(time.Millisecond)
					h.in(tc.flow.out)
				}
				if i < tc.flow.backs {
					h.advance(time.Millisecond)
					h.in(tc.flow.back)
				}
			}
			h.advance(500 * time.Millisecond)
			if got := h.line(c); got != tc.want {
				t.Fatalf("\n got %s\nwant %s", got, tc.want)
			}
		})
	}
}

func TestAppendConnFlagsAndCounters(t *testing.T) {
	f := ctFamilies[0]
	h := newCTHarness(t, Config{Timeouts: Timeouts{UDPStream: ctSec(120)}})
	master := h.passNAT(build.UDP(f.cli, 5060, f.srv, 5060, 0), f.nat).Conn
	h.advance(3 * time.Second)
	h.in(build.UDP(f.srv, 5060, f.nat, 5060, 0))
	h.in(build.UDP(f.cli, 5060, f.srv, 5060, 0)) // a stream now: ASSURED
	master.EnsureExt().Helper = "sip"
	master.SetMark(7)
	want := "udp      17 120 src=10.10.0.2 dst=198.18.0.2 sport=5060 dport=5060 packets=2 bytes=56 src=198.18.0.2 dst=198.18.0.1 sport=5060 dport=5060 packets=1 bytes=28 [ASSURED] mark=7 helper=sip use=1"
	if got := h.line(master); got != want {
		t.Fatalf("\n got %s\nwant %s", got, want)
	}
	// A confirmed RELATED connection holds a reference on its master, as
	// the kernel's use=2 on an FTP control connection with a data
	// connection shows.
	if err := h.tab.Expect(&Expectation{
		Tuple:   Tuple{Src: addrOf(f.srv), Dst: addrOf(f.nat), DstPort: 7000, Proto: packet.ProtoUDP, Family: 4},
		Mask:    Mask{Src: FullMask.Src, Dst: FullMask.Dst, DstPort: 0xffff},
		Master:  master,
		Helper:  "sip",
		Expires: h.now + int64(time.Minute),
	}, 0); err != nil {
		t.Fatal(err)
	}
	child := h.pass(build.UDP(f.srv, 7001, f.nat, 7000, 0))
	wantInfo(t, "expected", child, Related)
	if got := h.line(master); got[len(got)-5:] != "use=2" {
		t.Fatalf("master with a child: %s", got)
	}
	if got := h.line(child.Conn); got != "udp      17 120 src=198.18.0.2 dst=198.18.0.1 sport=7001 dport=7000 packets=1 bytes=28 [UNREPLIED] src=198.18.0.1 dst=198.18.0.2 sport=7000 dport=7001 packets=0 bytes=0 mark=0 use=1" {
		t.Fatalf("child: %s", got)
	}
	h.tab.Delete(child.Conn)
	if got := h.line(master); got[len(got)-5:] != "use=1" {
		t.Fatalf("master after its child died: %s", got)
	}

	// Without accounting there are no counters, as with nf_conntrack_acct=0.
	off := false
	h2 := newCTHarness(t, Config{Accounting: &off, Timeouts: linuxTimeouts})
	c := h2.passNAT(build.UDP(f.cli, 1, f.srv, 2, 0), f.nat).Conn
	if got, want := h2.line(c), "udp      17 30 src=10.10.0.2 dst=198.18.0.2 sport=1 dport=2 [UNREPLIED] src=198.18.0.2 dst=198.18.0.1 sport=2 dport=1 mark=0 use=1"; got != want {
		t.Fatalf("\n got %s\nwant %s", got, want)
	}
	// An expired entry shows 0, never a negative timeout.
	h2.advance(time.Hour)
	if got := h2.line(c); got[:17] != "udp      17 0 src" {
		t.Fatalf("expired: %s", got)
	}
}

// TestAppendExpectationMatchesConntrackTool compares with the lines
// `conntrack -L expect` printed for the kernel's FTP helper after PORT and
// EPRT commands through the masquerading router.
func TestAppendExpectationMatchesConntrackTool(t *testing.T) {
	for _, tc := range []struct {
		f         ctFamily
		ctl, data uint16
		left      time.Duration
		want      string
	}{
		{ctFamilies[0], 45005, 45004, 297 * time.Second,
			"297 proto=6 src=198.18.0.2 dst=198.18.0.1 sport=0 dport=45004 mask-src=255.255.255.255 mask-dst=255.255.255.255 sport=0 dport=65535 master-src=10.10.0.2 master-dst=198.18.0.2 sport=45005 dport=21 class=0 helper=ftp"},
		{ctFamilies[1], 46005, 46009, 293 * time.Second,
			"293 proto=6 src=fd18::2 dst=fd18::1 sport=0 dport=46009 mask-src=ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff mask-dst=ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff sport=0 dport=65535 master-src=fd10::2 master-dst=fd18::2 sport=46005 dport=21 class=0 helper=ftp"},
	} {
		t.Run(tc.f.name, func(t *testing.T) {
			h := newCTHarness(t, Config{})
			f := tc.f
			family := uint8(4)
			if f.cli.Is6() {
				family = 6
			}
			master := h.tab.NewUnconfirmed(Tuple{Src: addrOf(f.cli), Dst: addrOf(f.srv), SrcPort: tc.ctl, DstPort: 21, Proto: packet.ProtoTCP, Family: family}, h.now, time.Hour)
			if err := h.tab.Confirm(master, h.now); err != nil {
				t.Fatal(err)
			}
			e := &Expectation{
				Tuple:   Tuple{Src: addrOf(f.srv), Dst: addrOf(f.nat), DstPort: tc.data, Proto: packet.ProtoTCP, Family: family},
				Mask:    Mask{Src: FullMask.Src, Dst: FullMask.Dst, DstPort: 0xffff},
				Master:  master,
				Helper:  "ftp",
				Expires: h.now + int64(tc.left) + int64(300*time.Millisecond),
			}
			if err := h.tab.Expect(e, 1); err != nil {
				t.Fatal(err)
			}
			if got := string(h.tab.AppendExpectation(nil, e, h.now)); got != tc.want {
				t.Fatalf("\n got %s\nwant %s", got, tc.want)
			}
		})
	}
}

// addrOf returns the packet.Addr form of a.
func addrOf(a netip.Addr) packet.Addr { return packet.AddrFrom(a) }
