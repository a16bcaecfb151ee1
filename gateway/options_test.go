package gateway

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"

	"tungate/internal/packettest"
	"tungate/packet"
)

// withOptions4 returns a UDP/IPv4 packet whose header carries opts.
func withOptions4(t *testing.T, opts []byte) *packet.Parsed {
	t.Helper()
	b := packettest.Build(packettest.IP{Src: "10.10.0.2", Dst: "198.18.0.2", Opts: opts},
		packettest.UDP{SPort: 1, DPort: 9}, []byte("x"))
	p := new(packet.Parsed)
	if err := p.Decode(b); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestIPv4Options(t *testing.T) {
	for _, c := range []struct {
		name string
		opts []byte
		v    optVerdict
		ptr  int
	}{
		{"nop and eol", []byte{1, 1, 1, 0}, optForward, 0},
		{"record route", []byte{7, 7, 4, 0, 0, 0, 0, 0}, optForward, 0},
		{"length past header", []byte{7, 9, 4, 0}, optParamProblem, 20},
		{"length one", []byte{7, 1, 0, 0}, optParamProblem, 20},
		{"rr pointer too small", []byte{7, 7, 3, 0, 0, 0, 0, 0}, optParamProblem, 22},
		{"loose source route", []byte{131, 7, 4, 1, 2, 3, 4, 0}, optDrop, 0},
		{"strict source route", []byte{137, 7, 4, 1, 2, 3, 4, 0}, optDrop, 0},
		{"timestamp bad flag", []byte{68, 8, 5, 2, 0, 0, 0, 0}, optParamProblem, 23},
	} {
		p := withOptions4(t, c.opts)
		if v, ptr := checkOptions4(p); v != c.v || ptr != c.ptr {
			t.Errorf("%s: verdict %d pointer %d, want %d %d", c.name, v, ptr, c.v, c.ptr)
		}
	}
	p := withOptions4(t, []byte{7, 7, 4, 0, 0, 0, 0, 0})
	out := packet.AddrFrom(mustAddr("198.18.0.1"))
	forwardOptions4(p, out)
	b := p.Bytes()
	if b[22] != 8 || [4]byte(b[23:27]) != [4]byte{198, 18, 0, 1} || checksum.Checksum(b[:28], 0) != 0xffff {
		t.Fatalf("record route not filled: % x", b[20:28])
	}
	forwardOptions4(p, out) // full now: unchanged
	if b[22] != 8 {
		t.Fatalf("full record route changed: % x", b[20:28])
	}
}

func TestHopByHop(t *testing.T) {
	base := udpPacket("fd10::2", "2001:db8:1::2", 1, 9, 64, false, []byte("x"))
	with := func(opt []byte) *packet.Parsed {
		b := make([]byte, len(base)+8)
		copy(b, base[:40])
		b[6] = 0
		binary.BigEndian.PutUint16(b[4:], uint16(len(base)-40+8))
		b[40], b[41] = 17, 0
		copy(b[42:48], opt)
		copy(b[48:], base[40:])
		p := new(packet.Parsed)
		if err := p.Decode(b); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, c := range []struct {
		name string
		opt  []byte
		v    optVerdict
		ptr  int
		code uint8
	}{
		{"padn", []byte{1, 4, 0, 0, 0, 0}, optForward, 0, 0},
		{"router alert", []byte{5, 2, 0, 0, 1, 0}, optForward, 0, 0},
		{"unknown skip", []byte{0x1e, 4, 0, 0, 0, 0}, optForward, 0, 0},
		{"unknown discard", []byte{0x5e, 4, 0, 0, 0, 0}, optDrop, 0, 0},
		{"unknown param problem", []byte{0x9e, 4, 0, 0, 0, 0}, optParamProblem, 42, 2},
		{"unknown param problem unless multicast", []byte{0xde, 4, 0, 0, 0, 0}, optParamProblem, 42, 2},
		{"length past header", []byte{0x1e, 9, 0, 0, 0, 0}, optDrop, 0, 0},
	} {
		if v, ptr, code := checkHopByHop6(with(c.opt)); v != c.v || ptr != c.ptr || code != c.code {
			t.Errorf("%s: %d %d %d, want %d %d %d", c.name, v, ptr, code, c.v, c.ptr, c.code)
		}
	}
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }
