package uplink

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"os"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"tungate/packet"
)

// setPingRange writes net.ipv4.ping_group_range of the test's own network
// namespace (the sysctl is per namespace), unless the parent prepared it.
func setPingRange(t *testing.T, r string) {
	if os.Getenv("UPLINK_PREPARED") != "" {
		return
	}
	if err := os.WriteFile("/proc/sys/net/ipv4/ping_group_range", []byte(r), 0o644); err != nil {
		t.Fatal(err)
	}
}

func isEchoReply(src, dst netip.Addr) func(p *packet.Parsed) bool {
	return func(p *packet.Parsed) bool {
		return p.IsICMP() && (p.ICMPType == 0 || p.ICMPType == 129) && p.SrcIP() == src && p.DstIP() == dst
	}
}

// TestICMPEcho pings the host's loopback through unprivileged ping
// sockets; the reply carries the container's echo identifier.
func TestICMPEcho(t *testing.T) {
	if !inNetns(t) {
		return
	}
	setPingRange(t, "0 2147483647")
	families(t, func(t *testing.T, v6 bool) {
		l := openLink(t, Config{AllowHostLoopback: true})
		r := readPackets(t, l)
		ctr := ctrAddr(v6)
		for seq := uint16(1); seq <= 3; seq++ {
			data := bytes.Repeat([]byte{byte(seq)}, 56)
			write(t, l, echoPkt(ctr, loAddr(v6), 0x1234, seq, data))
			p := r.expect(t, 2*time.Second, "echo reply", isEchoReply(loAddr(v6), ctr))
			m := p.L4()
			if id, s := binary.BigEndian.Uint16(m[4:]), binary.BigEndian.Uint16(m[6:]); id != 0x1234 || s != seq {
				t.Fatalf("reply id %#x seq %d, want %#x %d", id, s, 0x1234, seq)
			}
			if !bytes.Equal(m[8:], data) {
				t.Fatal("reply data differs")
			}
		}
		if got := l.Stats()[PingSockets]; got != 1 {
			t.Errorf("ping_sockets = %d, want 1 for one identifier", got)
		}
		// ct list's host side: the ping socket's address and identifier.
		proto := uint8(packet.ProtoICMP)
		if v6 {
			proto = packet.ProtoICMPv6
		}
		h, ok := l.HostSide(proto, netip.AddrPortFrom(ctr, 0x1234), netip.AddrPortFrom(loAddr(v6), 0))
		if !ok || h.Addr() != loAddr(v6) || h.Port() == 0 {
			t.Errorf("HostSide = %v, %v; want %v and the ping socket's identifier", h, ok, loAddr(v6))
		}
		if _, ok := l.HostSide(proto, netip.AddrPortFrom(ctr, 0x4321), netip.AddrPortFrom(loAddr(v6), 0)); ok {
			t.Error("HostSide found a socket for an identifier never used")
		}
	})
}

// TestICMPEchoDenied: outside ping_group_range the echo is dropped and
// counted, and the warning names the sysctl.
func TestICMPEchoDenied(t *testing.T) {
	if !inNetns(t) {
		return
	}
	setPingRange(t, "1 0")
	core, logs := observer.New(zap.WarnLevel)
	l, err := New(Config{AllowHostLoopback: true}, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	r := readPackets(t, l)
	write(t, l, echoPkt(ctr4, lo4, 1, 1, []byte("x")))
	r.none(t, 200*time.Millisecond, "echo reply", isEchoReply(lo4, ctr4))
	if s := l.Stats(); s[DropPingDenied] != 1 || s[PingSockets] != 0 || l.Flows() != 0 {
		t.Fatalf("drop_ping_denied %d, ping_sockets %d, flows %d", s[DropPingDenied], s[PingSockets], l.Flows())
	}
	// Once at start, once (rate-limited) at the drop.
	if n := logs.FilterMessageSnippet(`sysctl -w net.ipv4.ping_group_range="0 2147483647"`).Len(); n != 2 {
		t.Errorf("%d warnings name the sysctl, want 2: %v", n, logs.All())
	}
}
