package nat

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"testing"

	"tungate/conntrack"
	"tungate/packet"
)

// The NAT setups the rewrite fuzzer picks from: each rewrites something
// different (source to the link address, to a pool, destination to a
// forward target, prefix to prefix with NPTv6's checksum-neutral mapping,
// ports at random).
var fuzzNATConfigs = []string{
	`[[nat.masquerade]]
out = "wan"`,
	`[[nat.snat]]
out = "wan"
to = "198.18.0.10-198.18.0.12"
[[nat.masquerade]]
out = "wan"`,
	`[[nat.masquerade]]
out = "wan"
[[nat.dnat]]
in = "wan"
proto = "tcp"
dport = 8080
to = "10.10.0.3:80"
[[nat.dnat]]
in = "wan"
proto = "udp"
dst = "198.18.0.1"
dport = 5353
to = "10.10.0.2"
[[nat.dnat]]
in = "wan"
proto = "sctp"
dst = "198.18.0.1"
to = "10.10.0.4"
[[nat.dnat]]
in = "wan"
proto = "tcp"
dst = "2001:db8:1::1"
dport = 8080
to = "[fd10::2]:80"`,
	`[[nat.netmap]]
out = "wan"
from = "10.10.0.0/24"
to = "198.18.5.0/24"
[[nat.netmap]]
out = "wan"
from = "fd10::/64"
to = "2001:db8:5::/64"`,
	`[[nat.masquerade]]
out = "wan"
random = true
ports = "2000-2010"
mapping = "address-port-dependent"`,
}

// FuzzNATRewrite runs arbitrary packets through every NAT setup in both
// directions and checks, after every rewrite, each checksum the packet
// carries (IPv4 header, TCP, UDP, ICMP, ICMPv6, SCTP's CRC32c, and inside
// ICMP errors the quoted IPv4 header and, when quoted whole, the quoted
// transport checksum) against a recomputation from scratch by a parser of
// this file's own. The input's checksums are first made valid, so every
// mismatch is one the rewrite made. Each forwarded packet is followed by
// its mirror image (the reply, translated back) and by an ICMP error from
// its destination quoting qlen bytes of it (translated inside and out).
func FuzzNATRewrite(f *testing.F) {
	udpOff := udp("10.10.0.2:5000", "198.18.0.2:53", "query")
	udpOff.noUDPSum = true
	sctpInit := make([]byte, 12+20)
	binary.BigEndian.PutUint16(sctpInit[0:], 5000)
	binary.BigEndian.PutUint16(sctpInit[2:], 9899)
	sctpInit[12], sctpInit[15] = 1, 20 // INIT, length 20
	binary.BigEndian.PutUint32(sctpInit[16:], 0x1234)
	for _, s := range []struct {
		b       []byte
		fromWAN bool
	}{
		{tcp("10.10.0.2:40000", "198.18.0.2:80", packet.TCPSyn, 1000, 0).bytes(), false},
		{tcp("[fd10::2]:40000", "[2001:db8:1::9]:80", packet.TCPSyn, 1000, 0).bytes(), false},
		{tcp("198.18.0.2:40000", "198.18.0.1:8080", packet.TCPSyn, 1000, 0).bytes(), true},
		{tcp("[2001:db8:1::9]:40000", "[2001:db8:1::1]:8080", packet.TCPSyn, 1000, 0).bytes(), true},
		{udp("10.10.0.2:5000", "198.18.0.2:53", "query").bytes(), false},
		{udpOff.bytes(), false},
		{udp("[fd10::2]:5000", "[2001:db8:1::9]:53", "query").bytes(), false},
		{udp("198.18.0.2:5000", "198.18.0.1:5353", "query").bytes(), true},
		{echo("10.10.0.2", "198.18.0.2", 7, false).bytes(), false},
		{echo("fd10::2", "2001:db8:1::9", 7, false).bytes(), false},
		{pkt{proto: packet.ProtoSCTP, src: ap("10.10.0.2"), dst: ap("198.18.0.2"), payload: sctpInit}.bytes(), false},
		{pkt{proto: packet.ProtoSCTP, src: ap("198.18.0.2"), dst: ap("198.18.0.1"), payload: sctpInit}.bytes(), true},
		{icmpErr("10.10.0.2", "198.18.0.2", udp("198.18.0.2:53", "10.10.0.2:5000", "x").bytes()).bytes(), false},
	} {
		for cfg := range fuzzNATConfigs {
			f.Add(s.b, s.fromWAN, uint8(cfg), uint16(0xffff))
			f.Add(s.b, s.fromWAN, uint8(cfg), uint16(28))
		}
	}
	cfgs := make([]Config, len(fuzzNATConfigs))
	for i, text := range fuzzNATConfigs {
		cfgs[i] = decodeConfig(f, text)
	}
	f.Fuzz(func(t *testing.T, b []byte, fromWAN bool, cfg uint8, qlen uint16) {
		if len(b) > 1500 {
			return
		}
		tbl, err := conntrack.NewTable(conntrack.Config{Max: 1024})
		if err != nil {
			t.Fatal(err)
		}
		e, err := New(cfgs[int(cfg)%len(cfgs)], testIfaces, tbl, nil)
		if err != nil {
			t.Fatal(err)
		}
		r := &rig{t: t, tbl: tbl, e: e}
		in, out := lan, wan
		if fromWAN {
			in, out = wan, lan
		}
		b = append([]byte(nil), b...)
		o, ok := r.checkedPass(b, in, out, "packet")
		if !ok {
			return
		}
		// Once more, now on an established connection.
		r.checkedPass(append([]byte(nil), b...), in, out, "second packet")
		if rep := mirror(o); rep != nil {
			r.checkedPass(rep, out, in, "reply")
		}
		if e := icmpErrorAbout(o, int(qlen)); e != nil {
			r.checkedPass(e, out, in, "ICMP error about the packet")
		}
	})
}

// checkedPass repairs b's checksums, passes it through the rig like
// rig.pass (without its checks, which assume well-formed packets) and, when
// it is forwarded, checks that every checksum is as valid as it was.
func (r *rig) checkedPass(b []byte, in, out int, what string) ([]byte, bool) {
	t := r.t
	t.Helper()
	refSums(b, false, true, "", nil)
	before := refSums(b, false, false, "", nil)
	for _, c := range before {
		if !c.ok {
			t.Fatalf("%s: reference repair left %s wrong: % x", what, c.name, b)
		}
	}
	orig := append([]byte(nil), b...)
	var p packet.Parsed
	if p.Decode(b) != nil {
		return nil, false
	}
	var res conntrack.Result
	now := r.tbl.Now()
	r.tbl.In(&p, now, &res)
	if res.Drop || res.Conn == nil {
		return nil, false
	}
	r.e.Prerouting(&p, &res, in)
	if res.Drop {
		return nil, false
	}
	c := res.Conn
	if !r.e.Postrouting(&p, &res, in, out) {
		if !c.Confirmed() {
			r.tbl.Delete(c)
		}
		return nil, false
	}
	if !c.Confirmed() {
		if err := r.tbl.Confirm(c, now); err != nil {
			r.tbl.Delete(c)
			return nil, false
		}
	}
	o := p.Bytes()
	after := refSums(o, false, false, "", nil)
	if fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("%s: checksums after the rewrite %v, before %v\nin:  % x\nout: % x", what, after, before, orig, o)
	}
	return append([]byte(nil), o...), true
}

// sumCheck is one checksum a packet carries and whether it verifies.
type sumCheck struct {
	name string
	ok   bool
}

func (c sumCheck) String() string {
	if c.ok {
		return c.name
	}
	return c.name + " WRONG"
}

func refSum16(b []byte, s uint32) uint32 {
	for len(b) >= 2 {
		s += uint32(b[0])<<8 | uint32(b[1])
		b = b[2:]
	}
	if len(b) == 1 {
		s += uint32(b[0]) << 8
	}
	return s
}

// fold is the ones' complement sum of s.
func fold(s uint32) uint16 {
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return uint16(s)
}

func pseudoSum(src, dst []byte, proto uint8, n int) uint32 {
	return refSum16(dst, refSum16(src, 0)) + uint32(proto) + uint32(n)
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// refSums walks b (quoted: an ICMP error's quote, possibly cut) and checks,
// or with fix sets, every checksum it finds, appending them to cs with
// prefix on their names. It knows IPv4 (options, fragments), IPv6 (hop-by-
// hop, routing, destination options, fragment headers), TCP, UDP (zero:
// none, in IPv4), ICMP, ICMPv6 and SCTP. A fragment other than a whole
// packet has no transport checksum it could verify.
func refSums(b []byte, quoted, fix bool, prefix string, cs []sumCheck) []sumCheck {
	if len(b) < 1 {
		return cs
	}
	var src, dst, l4 []byte
	var proto uint8
	whole := true
	fam := b[0] >> 4
	switch fam {
	case 4:
		if len(b) < 20 {
			return cs
		}
		ihl := int(b[0]&0xf) * 4
		if ihl < 20 || ihl > len(b) {
			return cs
		}
		if fix {
			b[10], b[11] = 0, 0
			binary.BigEndian.PutUint16(b[10:], ^fold(refSum16(b[:ihl], 0)))
		}
		cs = append(cs, sumCheck{prefix + "ipv4", fold(refSum16(b[:ihl], 0)) == 0xffff})
		tot := int(binary.BigEndian.Uint16(b[2:]))
		if tot < ihl {
			return cs
		}
		if tot > len(b) {
			if !quoted {
				return cs
			}
			whole, tot = false, len(b)
		}
		if binary.BigEndian.Uint16(b[6:])&0x3fff != 0 {
			return cs // a fragment
		}
		src, dst, proto, l4 = b[12:16], b[16:20], b[9], b[ihl:tot]
	case 6:
		if len(b) < 40 {
			return cs
		}
		end := 40 + int(binary.BigEndian.Uint16(b[4:]))
		if end == 40 {
			return cs // jumbogram or nothing
		}
		if end > len(b) {
			if !quoted {
				return cs
			}
			whole, end = false, len(b)
		}
		src, dst, proto = b[8:24], b[24:40], b[6]
		off := 40
	ext:
		for {
			switch proto {
			case 0, 43, 60:
				if off+8 > end {
					return cs
				}
				proto = b[off]
				off += (int(b[off+1]) + 1) * 8
			case 44:
				if off+8 > end {
					return cs
				}
				if binary.BigEndian.Uint16(b[off+2:])&0xfff9 != 0 {
					return cs // a fragment
				}
				proto = b[off]
				off += 8
			default:
				break ext
			}
		}
		if off > end {
			return cs
		}
		l4 = b[off:end]
	default:
		return cs
	}
	n := len(l4)
	switch proto {
	case packet.ProtoTCP:
		if n < 20 || !whole {
			return cs
		}
		if fix {
			l4[16], l4[17] = 0, 0
			binary.BigEndian.PutUint16(l4[16:], ^fold(refSum16(l4, pseudoSum(src, dst, proto, n))))
		}
		cs = append(cs, sumCheck{prefix + "tcp", fold(refSum16(l4, pseudoSum(src, dst, proto, n))) == 0xffff})
	case packet.ProtoUDP:
		if n < 8 || !whole {
			return cs
		}
		if fam == 4 && l4[6] == 0 && l4[7] == 0 {
			// No checksum; a rewrite must not invent one or lose it.
			cs = append(cs, sumCheck{prefix + "udp-none", true})
			return cs
		}
		if fix {
			l4[6], l4[7] = 0, 0
			v := ^fold(refSum16(l4, pseudoSum(src, dst, proto, n)))
			if v == 0 {
				v = 0xffff
			}
			binary.BigEndian.PutUint16(l4[6:], v)
		}
		// Zero is not a checksum (RFC 768): a rewrite whose result is 0
		// writes 0xffff.
		ok := fold(refSum16(l4, pseudoSum(src, dst, proto, n))) == 0xffff && (l4[6] != 0 || l4[7] != 0)
		cs = append(cs, sumCheck{prefix + "udp", ok})
	case packet.ProtoICMP, packet.ProtoICMPv6:
		if n < 8 {
			return cs
		}
		isErr := (proto == packet.ProtoICMP && (l4[0] == 3 || l4[0] == 4 || l4[0] == 5 || l4[0] == 11 || l4[0] == 12)) ||
			(proto == packet.ProtoICMPv6 && l4[0] < 128)
		if isErr && !quoted {
			// The quote first: the error's checksum covers it.
			cs = refSums(l4[8:], true, fix, prefix+"quoted ", cs)
		}
		if !whole {
			return cs
		}
		var ps uint32
		name := prefix + "icmp"
		if proto == packet.ProtoICMPv6 {
			ps, name = pseudoSum(src, dst, proto, n), prefix+"icmpv6"
		}
		if fix {
			l4[2], l4[3] = 0, 0
			binary.BigEndian.PutUint16(l4[2:], ^fold(refSum16(l4, ps)))
		}
		cs = append(cs, sumCheck{name, fold(refSum16(l4, ps)) == 0xffff})
	case packet.ProtoSCTP:
		if n < 12 || !whole {
			return cs
		}
		crc := func() uint32 {
			c := crc32.Update(0, castagnoli, l4[:8])
			c = crc32.Update(c, castagnoli, []byte{0, 0, 0, 0})
			return crc32.Update(c, castagnoli, l4[12:])
		}
		if fix {
			binary.LittleEndian.PutUint32(l4[8:], crc())
		}
		cs = append(cs, sumCheck{prefix + "sctp", binary.LittleEndian.Uint32(l4[8:]) == crc()})
	}
	return cs
}

// mirror returns the packet o's destination would send back: addresses and
// ports swapped, an echo request answered, a SYN answered with SYN-ACK.
// nil when o is not something that has a reply (an ICMP error).
func mirror(o []byte) []byte {
	b := append([]byte(nil), o...)
	var p packet.Parsed
	if p.Decode(b) != nil || !p.HasL4 || p.IsICMPError() {
		return nil
	}
	if b[0]>>4 == 4 {
		var a [4]byte
		copy(a[:], b[12:16])
		copy(b[12:16], b[16:20])
		copy(b[16:20], a[:])
	} else {
		var a [16]byte
		copy(a[:], b[8:24])
		copy(b[8:24], b[24:40])
		copy(b[24:40], a[:])
	}
	l4 := b[p.L4Off:]
	switch p.Proto {
	case packet.ProtoTCP, packet.ProtoUDP, packet.ProtoSCTP:
		if len(l4) < 4 {
			return nil
		}
		sp := binary.BigEndian.Uint16(l4)
		copy(l4[0:2], l4[2:4])
		binary.BigEndian.PutUint16(l4[2:], sp)
		if p.Proto == packet.ProtoTCP && len(l4) >= 14 && l4[13]&(packet.TCPSyn|packet.TCPAck) == packet.TCPSyn {
			seq := binary.BigEndian.Uint32(l4[4:])
			binary.BigEndian.PutUint32(l4[8:], seq+1)
			binary.BigEndian.PutUint32(l4[4:], 5000)
			l4[13] |= packet.TCPAck
		}
	case packet.ProtoICMP:
		if len(l4) > 0 && l4[0] == 8 {
			l4[0] = 0
		}
	case packet.ProtoICMPv6:
		if len(l4) > 0 && l4[0] == 128 {
			l4[0] = 129
		}
	}
	return b
}

// icmpErrorAbout returns an ICMP error (destination/port unreachable) from
// o's destination to its source quoting at most qlen bytes of o (at least
// its IP header and 8 bytes, as routers must).
func icmpErrorAbout(o []byte, qlen int) []byte {
	var p packet.Parsed
	if p.Decode(o) != nil || p.IsICMPError() {
		return nil
	}
	qlen = max(min(qlen, len(o), 1200), min(len(o), p.L4Off+8))
	q := pkt{quote: append([]byte(nil), o[:qlen]...)}
	if o[0]>>4 == 4 {
		q.proto, q.typ, q.code = packet.ProtoICMP, 3, 3
		q.src = ap(p.Dst.NetIP(4).String())
		q.dst = ap(p.Src.NetIP(4).String())
	} else {
		q.proto, q.typ, q.code = packet.ProtoICMPv6, 1, 4
		q.src = ap(p.Dst.NetIP(6).String())
		q.dst = ap(p.Src.NetIP(6).String())
	}
	return q.bytes()
}

// The fuzzer's reference must be able to fail, and its seeds must reach
// the rewrite: a masqueraded SYN, its reply and an ICMP error about it are
// all forwarded and checked, and a flipped bit in any checked field is
// caught.
func TestNATRewriteFuzzReference(t *testing.T) {
	r := newRigCT(t, fuzzNATConfigs[0], conntrack.Config{Max: 1024})
	syn := tcp("10.10.0.2:40000", "198.18.0.2:80", packet.TCPSyn, 1000, 0).bytes()
	o, ok := r.checkedPass(syn, lan, wan, "SYN")
	if !ok {
		t.Fatal("SYN not forwarded")
	}
	if v := verify(t, o); v.src.Addr() != ap("198.18.0.1").Addr() {
		t.Fatalf("SYN left from %v, want the wan address", v.src)
	}
	if _, ok := r.checkedPass(mirror(o), wan, lan, "SYN-ACK"); !ok {
		t.Fatal("SYN-ACK not forwarded")
	}
	e := icmpErrorAbout(o, 1000)
	if _, ok := r.checkedPass(e, wan, lan, "ICMP error"); !ok {
		t.Fatal("ICMP error not forwarded")
	}
	cs := refSums(e, false, false, "", nil)
	if got := fmt.Sprint(cs); got != "[ipv4 quoted ipv4 quoted tcp icmp]" {
		t.Fatalf("checks of an ICMP error quoting a whole TCP segment: %s", got)
	}
	for _, off := range []int{10, 20 + 2, 20 + 8 + 10, 20 + 8 + 20 + 16} {
		bad := append([]byte(nil), e...)
		bad[off] ^= 0x40
		for _, c := range refSums(bad, false, false, "", nil) {
			ok = ok && c.ok
		}
		if ok {
			t.Errorf("a flipped bit at %d went unnoticed", off)
		}
		ok = true
	}
}
