package rules

import (
	"encoding/binary"
	"net/netip"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"

	"tungate/conntrack"
	"tungate/packet"
)

// pkt describes a test packet; bytes builds it so the rules see it through
// packet.Parsed.Decode exactly as the gateway would.
type pkt struct {
	src, dst     string
	proto        uint8
	sport, dport uint16 // ports, or the echo id in sport for ICMP
	flags        uint8  // TCP flags
	itype, icode uint8  // ICMP type and code
	payload      int
	// nonFirstFrag makes an IPv4 fragment at offset 8 (no transport header).
	nonFirstFrag bool
}

func (s pkt) bytes() []byte {
	src := netip.MustParseAddr(s.src)
	dst := netip.MustParseAddr(s.dst)
	var l4 []byte
	switch {
	case s.nonFirstFrag:
		l4 = make([]byte, 8+s.payload)
	case s.proto == packet.ProtoTCP:
		l4 = make([]byte, 20+s.payload)
		binary.BigEndian.PutUint16(l4[0:], s.sport)
		binary.BigEndian.PutUint16(l4[2:], s.dport)
		l4[12] = 5 << 4
		l4[13] = s.flags
		binary.BigEndian.PutUint16(l4[14:], 65535)
	case s.proto == packet.ProtoUDP:
		l4 = make([]byte, 8+s.payload)
		binary.BigEndian.PutUint16(l4[0:], s.sport)
		binary.BigEndian.PutUint16(l4[2:], s.dport)
		binary.BigEndian.PutUint16(l4[4:], uint16(len(l4)))
	case s.proto == packet.ProtoICMP || s.proto == packet.ProtoICMPv6:
		l4 = make([]byte, 8+s.payload)
		l4[0], l4[1] = s.itype, s.icode
		binary.BigEndian.PutUint16(l4[4:], s.sport)
	default:
		l4 = make([]byte, s.payload)
	}
	if src.Is4() {
		b := make([]byte, 20+len(l4))
		b[0] = 0x45
		binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
		if s.nonFirstFrag {
			binary.BigEndian.PutUint16(b[6:], 1) // offset 8 bytes
		}
		b[8] = 64
		b[9] = s.proto
		a4, d4 := src.As4(), dst.As4()
		copy(b[12:], a4[:])
		copy(b[16:], d4[:])
		var sum uint32
		for i := 0; i < 20; i += 2 {
			sum += uint32(binary.BigEndian.Uint16(b[i:]))
		}
		for sum > 0xffff {
			sum = sum&0xffff + sum>>16
		}
		binary.BigEndian.PutUint16(b[10:], ^uint16(sum))
		copy(b[20:], l4)
		return b
	}
	nh := s.proto
	var ext []byte
	if s.nonFirstFrag {
		ext = make([]byte, 8)
		ext[0] = s.proto
		binary.BigEndian.PutUint16(ext[2:], 8) // offset 8, M=0
		nh = 44
	}
	b := make([]byte, 40+len(ext)+len(l4))
	b[0] = 0x60
	binary.BigEndian.PutUint16(b[4:], uint16(len(ext)+len(l4)))
	b[6] = nh
	b[7] = 64
	a16, d16 := src.As16(), dst.As16()
	copy(b[8:], a16[:])
	copy(b[24:], d16[:])
	copy(b[40:], ext)
	copy(b[40+len(ext):], l4)
	return b
}

func decode(t testing.TB, s pkt) *packet.Parsed {
	t.Helper()
	p := new(packet.Parsed)
	if err := p.Decode(s.bytes()); err != nil {
		t.Fatalf("decode %+v: %v", s, err)
	}
	return p
}

// Handy packets of both families.
func tcp4(src, dst string, sport, dport uint16, flags uint8) pkt {
	return pkt{src: src, dst: dst, proto: packet.ProtoTCP, sport: sport, dport: dport, flags: flags}
}

func udp(src, dst string, sport, dport uint16) pkt {
	return pkt{src: src, dst: dst, proto: packet.ProtoUDP, sport: sport, dport: dport}
}

func icmp(src, dst string, typ, code uint8) pkt {
	p := packet.ProtoICMP
	if strings.Contains(src, ":") {
		p = packet.ProtoICMPv6
	}
	return pkt{src: src, dst: dst, proto: uint8(p), itype: typ, icode: code, sport: 7}
}

// ctx is the conntrack side of a test packet.
type ctx struct {
	info   conntrack.Info
	noConn bool // Conn nil (implied by Invalid/Untracked)
	status conntrack.Status
	ctMark uint32
	helper string
	in     int
	out    int
	mark   uint32
}

// newCtx is an ESTABLISHED original-direction packet from lan to wan.
func newCtx() ctx { return ctx{info: conntrack.Established, in: 0, out: 1} }

func (c ctx) packet(p *packet.Parsed) *Packet {
	pk := &Packet{P: p, In: c.in, Out: c.out, Info: c.info, Mark: c.mark}
	if !c.noConn && c.info != conntrack.Invalid && c.info != conntrack.Untracked {
		conn := new(conntrack.Conn)
		conn.SetStatus(c.status)
		conn.SetMark(c.ctMark)
		if c.helper != "" {
			conn.EnsureExt().Helper = c.helper
		}
		pk.Conn = conn
	}
	return pk
}

// testConfig is the part of tungate's config file this package reads.
type testConfig struct {
	Filter FilterConfig        `toml:"filter"`
	Raw    RawConfig           `toml:"raw"`
	Sets   map[string][]string `toml:"sets"`
}

func parseTOML(t testing.TB, src string) testConfig {
	t.Helper()
	var cfg testConfig
	md, err := toml.Decode(src, &cfg)
	if err != nil {
		t.Fatalf("toml: %v\n%s", err, src)
	}
	if u := md.Undecoded(); len(u) > 0 {
		t.Fatalf("undecoded keys %v", u)
	}
	return cfg
}

var testIfaces = []string{"lan", "wan", "dmz"}

func testEnv() Env {
	return Env{Interfaces: testIfaces, Helpers: []string{"ftp"}}
}

func compileTOML(t testing.TB, src string, env Env) (*Ruleset, error) {
	t.Helper()
	cfg := parseTOML(t, src)
	return Compile(cfg.Filter, cfg.Raw, cfg.Sets, env)
}

func mustCompile(t testing.TB, src string) *Ruleset {
	t.Helper()
	rs, err := compileTOML(t, src, testEnv())
	if err != nil {
		t.Fatalf("compile: %v\n%s", err, src)
	}
	return rs
}

// fakeClock is an injectable clock for limit tests.
type fakeClock struct{ t int64 }

func (c *fakeClock) now() int64 { return c.t }
