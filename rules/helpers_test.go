package rules

import (
	"strings"
	"testing"

	"github.com/BurntSushi/toml"

	"tungate/conntrack"
	"tungate/internal/packettest"
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
	ip := packettest.IP{V6: strings.Contains(s.src, ":"), Src: s.src, Dst: s.dst}
	payload := make([]byte, s.payload)
	var l4 packettest.L4
	switch {
	case s.nonFirstFrag:
		ip.FragOff = 8
		l4 = packettest.Raw{Proto: s.proto, B: make([]byte, 8)}
	case s.proto == packet.ProtoTCP:
		l4 = packettest.TCP{SPort: s.sport, DPort: s.dport, Flags: s.flags, Win: 65535}
	case s.proto == packet.ProtoUDP:
		l4 = packettest.UDP{SPort: s.sport, DPort: s.dport}
	case s.proto == packet.ProtoICMP || s.proto == packet.ProtoICMPv6:
		l4 = packettest.ICMP{Type: s.itype, Code: s.icode, Rest: uint32(s.sport) << 16}
	default:
		l4 = packettest.Raw{Proto: s.proto}
	}
	return packettest.Build(ip, l4, payload)
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
	for _, k := range md.Undecoded() {
		if !InRule(k) {
			t.Fatalf("undecoded key %v", k)
		}
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
