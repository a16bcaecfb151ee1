package rules

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/gaissmai/bart"

	"tungate/conntrack"
	"tungate/packet"
)

// ruleKeys are the keys a rule may have, in the order they are checked and
// printed: matches as nft orders them, then statements, then the verdict.
var ruleKeys = []string{
	"family", "in", "out", "peer", "src", "dst", "proto", "sport", "dport",
	"icmp_type", "icmp_code", "tcp_flags", "length", "mark",
	"ct_state", "ct_status", "ct_direction", "ct_helper", "ct_mark",
	"limit", "burst", "log", "set_mark", "set_ct_mark", "helper", "clamp_mss",
	"synproxy", "action", "reject_with", "chain", "comment",
}

var actionNames = []string{"accept", "drop", "reject", "synproxy", "jump", "goto", "return", "notrack"}

// ruleParser compiles one rule from its TOML map.
type ruleParser struct {
	c     *compiler
	chain *chain
	path  string
	index int
	m     map[string]any
	r     *rule
	meta  *ruleMeta
	// raw is true in raw.prerouting, which runs before conntrack.
	raw bool

	parts []string // matches, for Dump
	stmts []string // statements after the counter, for Dump
	verb  string   // the verdict, for Dump
	note  string   // the comment

	// protoPos is the rule's positive proto entries (for dependencies).
	protoPos []uint8
	hasProto bool
	badProto bool
	// addrFam is the families the rule's literal src/dst prefixes allow
	// (0: no literal prefixes).
	addrFam uint8
}

func (rp *ruleParser) errf(key, format string, args ...any) {
	path := rp.path
	if key != "" {
		path += "." + key
	}
	rp.c.errs.add(path, format, args...)
}

// parse compiles the rule and returns its Dump text.
func (rp *ruleParser) parse() ruleText {
	r := rp.r
	r.target = -1
	keys := make([]string, 0, len(rp.m))
	for k := range rp.m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if !slices.Contains(ruleKeys, k) {
			rp.errf("", "unknown key %q%s", k, suggest(k, ruleKeys))
		}
	}
	for _, k := range ruleKeys {
		v, ok := rp.m[k]
		if !ok {
			continue
		}
		switch k {
		case "family":
			rp.family(v)
		case "in", "out":
			rp.iface(k, v)
		case "peer":
			rp.peer(v)
		case "clamp_mss":
			rp.clampMSS(v)
		case "src", "dst":
			rp.addrs(k, v)
		case "proto":
			rp.proto(v)
		case "sport", "dport":
			rp.ports(k, v)
		case "icmp_type":
			rp.icmpType(v)
		case "icmp_code":
			rp.icmpCode(v)
		case "tcp_flags":
			rp.tcpFlags(v)
		case "length":
			rp.length(v)
		case "mark", "ct_mark":
			rp.mark(k, v)
		case "ct_state":
			rp.ctState(v)
		case "ct_status":
			rp.ctStatus(v)
		case "ct_direction":
			rp.ctDirection(v)
		case "ct_helper":
			rp.ctHelper(v)
		case "limit":
			rp.limit(v)
		case "burst":
			if _, ok := rp.m["limit"]; !ok {
				rp.errf(k, "only with limit")
			}
		case "log":
			rp.log(v)
		case "set_mark", "set_ct_mark":
			rp.setMark(k, v)
		case "helper":
			rp.helper(v)
		case "action":
			rp.action(v)
		case "reject_with":
			rp.rejectWith(v)
		case "synproxy":
			rp.synproxyOpts(v)
		case "chain":
			rp.chainRef(v)
		case "comment":
			rp.comment(v)
		}
	}
	pre := strings.Join(rp.parts, " ")
	if pre != "" {
		pre += " "
	}
	post := strings.Join(append(rp.stmts, rp.verb), " ")
	if rp.note != "" {
		// After the verdict, as nft prints a rule's comment.
		post += " comment " + strconv.Quote(rp.note)
	}
	return ruleText{pre: pre, post: strings.TrimSpace(post), comment: rp.note}
}

// maxCommentLen bounds a rule's comment (nft's is 128 bytes): it becomes
// a metric label, so it must stay short.
const maxCommentLen = 128

// comment is the rule's free text, shown by `tungate rules` and used as the
// rule hit metric's comment label. It is part of the rule's text, so a
// changed comment is a changed rule (its counter starts again).
func (rp *ruleParser) comment(v any) {
	s, ok := v.(string)
	if !ok {
		rp.errf("comment", "want a string, got %s", describe(v))
		return
	}
	if len(s) > maxCommentLen {
		rp.errf("comment", "%d bytes long, at most %d", len(s), maxCommentLen)
		return
	}
	for _, r := range s {
		if !unicode.IsPrint(r) {
			rp.errf("comment", "%q has a control character", s)
			return
		}
	}
	rp.note = s
}

// entries splits a value into its list entries, reporting a wrong shape.
func (rp *ruleParser) entries(key string, v any, want string) ([]any, bool) {
	es, ok := asList(v)
	if !ok {
		rp.errf(key, "want %s, got %s", want, describe(v))
	}
	return es, ok
}

// strEntries is entries for lists of strings, each optionally negated.
func (rp *ruleParser) strEntries(key string, v any, want string, fn func(s string, neg bool) bool) {
	es, ok := rp.entries(key, v, want)
	if !ok {
		return
	}
	for _, e := range es {
		s, isStr := e.(string)
		if !isStr {
			rp.errf(key, "want %s, got %s", want, describe(e))
			return
		}
		s, neg := splitNeg(s)
		if !fn(s, neg) {
			return
		}
	}
}

func (rp *ruleParser) family(v any) {
	var pos, neg uint8
	var posT, negT []string
	names := []string{"ip", "ip6"}
	rp.strEntries("family", v, `"ip" or "ip6"`, func(s string, n bool) bool {
		var b uint8
		var t string
		switch s {
		case "ip":
			b, t = famV4, "ipv4"
		case "ip6":
			b, t = famV6, "ipv6"
		default:
			rp.errf("family", "unknown family %q%s", s, orWant(suggest(s, names), `"ip" or "ip6"`))
			return false
		}
		if n {
			neg |= b
			negT = append(negT, t)
		} else {
			pos |= b
			posT = append(posT, t)
		}
		return true
	})
	if pos == 0 {
		pos = famV4 | famV6
	}
	rp.r.family = pos &^ neg
	rp.r.has |= mFamily
	rp.parts = append(rp.parts, setText("meta nfproto", posT, negT))
}

func (rp *ruleParser) iface(key string, v any) {
	ifs := rp.c.env.Interfaces
	var pos, neg []int
	var posT, negT []string
	ok := true
	rp.strEntries(key, v, "an interface name or list of them", func(s string, n bool) bool {
		i := slices.Index(ifs, s)
		if i < 0 {
			rp.errf(key, "unknown interface %q%s", s, suggest(s, ifs))
			ok = false
			return false
		}
		if n {
			neg = append(neg, i)
			negT = append(negT, strconv.Quote(s))
		} else {
			pos = append(pos, i)
			posT = append(posT, strconv.Quote(s))
		}
		return true
	})
	if !ok {
		return
	}
	set := ifaceSet{bits: make([]uint64, (len(ifs)+63)/64)}
	if len(pos) == 0 {
		set.none = true
		for i := range ifs {
			set.bits[i>>6] |= 1 << (i & 63)
		}
	}
	for _, i := range pos {
		set.bits[i>>6] |= 1 << (i & 63)
	}
	for _, i := range neg {
		set.bits[i>>6] &^= 1 << (i & 63)
	}
	kw := "iifname"
	if key == "in" {
		rp.r.in = set
		rp.r.has |= mIn
		rp.meta.usesIn = key
	} else {
		kw = "oifname"
		rp.r.out = set
		rp.r.has |= mOut
		rp.meta.usesOut = key
	}
	rp.parts = append(rp.parts, setText(kw, posT, negT))
}

func (rp *ruleParser) addrs(key string, v any) {
	var set addrSet
	var pos, negP []netip.Prefix
	var posT, negT []string
	fams := uint8(0)
	literalOnly := true
	ok := true
	rp.strEntries(key, v, "a CIDR, @set or list of them", func(s string, n bool) bool {
		var t *liveTable
		var p netip.Prefix
		if name, isSet := strings.CutPrefix(s, "@"); isSet {
			t = rp.c.sets[name]
			if t == nil {
				rp.errf(key, "unknown set %q%s", s, suggestQuoted(name, rp.c.setNames, "@"))
				ok = false
				return false
			}
			fams |= famV4 | famV6
		} else {
			var msg string
			p, msg = parseCIDR(s)
			if msg != "" {
				rp.errf(key, "%s", msg)
				ok = false
				return false
			}
			f := famV6
			if p.Addr().Is4() {
				f = famV4
			}
			if rp.r.has&mFamily != 0 && rp.r.family&f == 0 {
				rp.errf(key, "%s does not fit the rule's family", s)
				ok = false
				return false
			}
			fams |= f
		}
		switch {
		case t != nil && n:
			set.negSets = append(set.negSets, t)
			negT = append(negT, s)
			literalOnly = false
		case t != nil:
			set.posSets = append(set.posSets, t)
			posT = append(posT, s)
			literalOnly = false
		case n:
			set.neg = append(set.neg, makePrefix(p))
			negP = append(negP, p)
			negT = append(negT, p.String())
			literalOnly = false
		default:
			set.pos = append(set.pos, makePrefix(p))
			pos = append(pos, p)
			posT = append(posT, p.String())
		}
		return true
	})
	if !ok {
		return
	}
	// The positive literal prefixes decide which families can match.
	if posFam := prefixFams(pos); posFam != 0 && len(set.posSets) == 0 {
		if rp.addrFam != 0 && rp.addrFam&posFam == 0 {
			rp.errf(key, "no address family in common with src (the rule could never match)")
			return
		}
		if rp.addrFam == 0 {
			rp.addrFam = posFam
		} else {
			rp.addrFam &= posFam
		}
	}
	// Many literal prefixes in one rule are an anonymous set: a bart
	// table keeps their lookup cost flat too.
	if len(set.pos) > 8 {
		t := new(bart.Lite)
		for _, p := range pos {
			t.Insert(p)
		}
		set.pos = nil
		set.posSets = append(set.posSets, newLiveTable(t))
	}
	if len(set.neg) > 8 {
		t := new(bart.Lite)
		for _, p := range negP {
			t.Insert(p)
		}
		set.neg = nil
		set.negSets = append(set.negSets, newLiveTable(t))
	}
	kw := "saddr"
	if key == "dst" {
		kw = "daddr"
	}
	switch fams {
	case famV4:
		kw = "ip " + kw
	case famV6:
		kw = "ip6 " + kw
	}
	rp.parts = append(rp.parts, setText(kw, posT, negT))
	var idx []netip.Prefix
	if literalOnly && len(pos) <= maxIndexPrefixes {
		idx = pos
	}
	if key == "src" {
		rp.r.src = set
		rp.r.has |= mSrc
		rp.meta.src = idx
	} else {
		rp.r.dst = set
		rp.r.has |= mDst
		rp.meta.dst = idx
	}
}

func prefixFams(ps []netip.Prefix) uint8 {
	var f uint8
	for _, p := range ps {
		if p.Addr().Is4() {
			f |= famV4
		} else {
			f |= famV6
		}
	}
	return f
}

// byteEntries parses a list of 8-bit values given by name or number into
// the allowed set (positive entries, or everything, minus negated ones).
func (rp *ruleParser) byteEntries(key string, v any, want string, name func(s string) (uint8, bool, string)) (set byteSet, pos []uint8, posT, negT []string, ok bool) {
	es, ok := rp.entries(key, v, want)
	if !ok {
		return set, nil, nil, nil, false
	}
	var neg []uint8
	for _, e := range es {
		var b uint8
		var n bool
		var text string
		if i, isInt := asInt(e); isInt {
			if i < 0 || i > 255 {
				rp.errf(key, "%d out of range (0-255)", i)
				return set, nil, nil, nil, false
			}
			b, text = uint8(i), strconv.Itoa(int(i))
		} else if s, isStr := e.(string); isStr {
			s, n = splitNeg(s)
			if u, err := strconv.ParseUint(s, 10, 64); err == nil {
				if u > 255 {
					rp.errf(key, "%d out of range (0-255)", u)
					return set, nil, nil, nil, false
				}
				b, text = uint8(u), s
			} else {
				var msg string
				var found bool
				b, found, msg = name(s)
				if !found {
					rp.errf(key, "%s", msg)
					return set, nil, nil, nil, false
				}
				text = s
			}
		} else {
			rp.errf(key, "want %s, got %s", want, describe(e))
			return set, nil, nil, nil, false
		}
		if n {
			neg = append(neg, b)
			negT = append(negT, text)
		} else {
			pos = append(pos, b)
			posT = append(posT, text)
		}
	}
	if len(pos) == 0 {
		set.fill()
	}
	for _, b := range pos {
		set.add(b)
	}
	for _, b := range neg {
		set.remove(b)
	}
	return set, pos, posT, negT, true
}

func (rp *ruleParser) proto(v any) {
	names := byteNames(protoNames)
	set, pos, posT, negT, ok := rp.byteEntries("proto", v, "a protocol name, number or list of them", func(s string) (uint8, bool, string) {
		if b, ok := lookupByte(protoNames, s); ok {
			return b, true, ""
		}
		return 0, false, fmt.Sprintf("unknown protocol %q%s", s, suggest(s, names))
	})
	rp.hasProto = true
	if !ok {
		rp.badProto = true
		return
	}
	rp.r.proto = set
	rp.r.has |= mProto
	rp.protoPos = pos
	rp.parts = append(rp.parts, setText("meta l4proto", posT, negT))
}

// portWord is the nft keyword for a rule's ports: tcp or udp when the rule
// names exactly that protocol, th (transport header) otherwise.
func (rp *ruleParser) portWord() string {
	if len(rp.protoPos) == 1 {
		switch rp.protoPos[0] {
		case packet.ProtoTCP:
			return "tcp"
		case packet.ProtoUDP:
			return "udp"
		}
	}
	return "th"
}

// ranges parses 16-bit values and ranges (ports, length) into the allowed
// normalized ranges.
func (rp *ruleParser) ranges(key, what string, v any) (portRanges, []string, []string, bool) {
	want := fmt.Sprintf(`a %s, range like "1024-65535" or list of them`, what)
	es, ok := rp.entries(key, v, want)
	if !ok {
		return nil, nil, nil, false
	}
	var pos, neg rangeSet
	var posT, negT []string
	num := func(s string) (uint16, bool) {
		u, err := strconv.ParseUint(strings.TrimSpace(s), 10, 64)
		if err != nil {
			rp.errf(key, "bad %s %q (want a number 0-65535 or a range like \"1024-65535\")", what, s)
			return 0, false
		}
		if u > 65535 {
			rp.errf(key, "%s %d out of range (0-65535)", what, u)
			return 0, false
		}
		return uint16(u), true
	}
	for _, e := range es {
		var x portRange
		var n bool
		var text string
		if i, isInt := asInt(e); isInt {
			if i < 0 || i > 65535 {
				rp.errf(key, "%s %d out of range (0-65535)", what, i)
				return nil, nil, nil, false
			}
			x = portRange{uint16(i), uint16(i)}
			text = strconv.Itoa(int(i))
		} else if s, isStr := e.(string); isStr {
			s, n = splitNeg(s)
			if a, b, isRange := strings.Cut(s, "-"); isRange {
				lo, ok1 := num(a)
				if !ok1 {
					return nil, nil, nil, false
				}
				hi, ok2 := num(b)
				if !ok2 {
					return nil, nil, nil, false
				}
				if lo > hi {
					rp.errf(key, "bad %s range %q (start after end)", what, s)
					return nil, nil, nil, false
				}
				x = portRange{lo, hi}
				text = fmt.Sprintf("%d-%d", lo, hi)
			} else {
				p, ok1 := num(s)
				if !ok1 {
					return nil, nil, nil, false
				}
				x = portRange{p, p}
				text = strconv.Itoa(int(p))
			}
		} else {
			rp.errf(key, "want %s, got %s", want, describe(e))
			return nil, nil, nil, false
		}
		if n {
			neg = append(neg, x)
			negT = append(negT, text)
		} else {
			pos = append(pos, x)
			posT = append(posT, text)
		}
	}
	allowed := pos.normalize()
	if len(pos) == 0 {
		allowed = rangeSet{{0, 65535}}
	}
	allowed = allowed.subtract(neg.normalize())
	return portRanges(allowed), posT, negT, true
}

func (rp *ruleParser) ports(key string, v any) {
	rs, posT, negT, ok := rp.ranges(key, "port", v)
	if !ok {
		return
	}
	if rp.hasProto && !rp.badProto && len(rp.protoPos) > 0 &&
		!slices.Contains(rp.protoPos, packet.ProtoTCP) && !slices.Contains(rp.protoPos, packet.ProtoUDP) {
		rp.errf(key, "ports need proto tcp or udp")
		return
	}
	rp.r.has |= mPorts
	if key == "sport" {
		rp.r.sport = rs
		rp.r.has |= mSport
	} else {
		rp.r.dport = rs
		rp.r.has |= mDport
	}
	rp.parts = append(rp.parts, setText(rp.portWord()+" "+key, posT, negT))
}

// icmpProtoFor returns the ICMP protocol a rule's icmp_type/icmp_code are
// read under: its proto must be exactly icmp or icmpv6.
func (rp *ruleParser) icmpProtoFor(key string) (uint8, bool) {
	if rp.badProto {
		return 0, false
	}
	if len(rp.protoPos) == 1 && (rp.protoPos[0] == packet.ProtoICMP || rp.protoPos[0] == packet.ProtoICMPv6) {
		return rp.protoPos[0], true
	}
	rp.errf(key, `needs proto = "icmp" or "icmpv6" (types are read under the rule's proto)`)
	return 0, false
}

func (rp *ruleParser) icmpType(v any) {
	ip, ok := rp.icmpProtoFor("icmp_type")
	if !ok {
		return
	}
	tab, word := icmpNames, "icmp"
	if ip == packet.ProtoICMPv6 {
		tab, word = icmpv6Names, "icmpv6"
	}
	names := byteNames(tab)
	set, _, posT, negT, ok := rp.byteEntries("icmp_type", v, "an ICMP type name, number or list of them", func(s string) (uint8, bool, string) {
		if b, ok := lookupByte(tab, s); ok {
			return b, true, ""
		}
		return 0, false, fmt.Sprintf("unknown %s type %q%s", word, s, suggest(s, names))
	})
	if !ok {
		return
	}
	rp.r.icmpProto = ip
	rp.r.icmpType = set
	rp.r.has |= mICMP | mICMPType
	rp.parts = append(rp.parts, setText(word+" type", posT, negT))
}

func (rp *ruleParser) icmpCode(v any) {
	ip, ok := rp.icmpProtoFor("icmp_code")
	if !ok {
		return
	}
	word := "icmp"
	if ip == packet.ProtoICMPv6 {
		word = "icmpv6"
	}
	set, _, posT, negT, ok := rp.byteEntries("icmp_code", v, "an ICMP code number or list of them", func(s string) (uint8, bool, string) {
		return 0, false, fmt.Sprintf("bad icmp code %q (want a number 0-255)", s)
	})
	if !ok {
		return
	}
	rp.r.icmpProto = ip
	rp.r.icmpCode = set
	rp.r.has |= mICMP | mICMPCode
	rp.parts = append(rp.parts, setText(word+" code", posT, negT))
}

func (rp *ruleParser) tcpFlags(v any) {
	es, ok := rp.entries("tcp_flags", v, `flags like "syn,!ack" or a list of them`)
	if !ok {
		return
	}
	names := byteNames(tcpFlagNames)
	var tests []flagTest
	var texts []string
	for _, e := range es {
		s, isStr := e.(string)
		if !isStr {
			rp.errf("tcp_flags", `want flags like "syn,!ack", got %s`, describe(e))
			return
		}
		var t flagTest
		for _, f := range strings.Split(s, ",") {
			f, n := splitNeg(f)
			b, found := lookupByte(tcpFlagNames, f)
			if !found {
				rp.errf("tcp_flags", "unknown flag %q%s", f, orWant(suggest(f, names), strings.Join(names, ", ")))
				return
			}
			t.mask |= b
			if !n {
				t.want |= b
			}
		}
		tests = append(tests, t)
		texts = append(texts, flagText(t))
	}
	if rp.hasProto && !rp.badProto && len(rp.protoPos) > 0 && !slices.Contains(rp.protoPos, packet.ProtoTCP) {
		rp.errf("tcp_flags", "needs proto tcp")
		return
	}
	rp.r.flags = tests
	rp.r.has |= mTCPFlags
	rp.parts = append(rp.parts, setText("tcp flags", texts, nil))
}

// flagText renders a flag test the way it was written: "syn,!ack".
func flagText(t flagTest) string {
	var parts []string
	for _, f := range tcpFlagNames {
		if t.mask&f.v == 0 {
			continue
		}
		if t.want&f.v == 0 {
			parts = append(parts, "!"+f.name)
		} else {
			parts = append(parts, f.name)
		}
	}
	return strings.Join(parts, ",")
}

func (rp *ruleParser) length(v any) {
	rs, posT, negT, ok := rp.ranges("length", "length", v)
	if !ok {
		return
	}
	rp.r.length = rs
	rp.r.has |= mLength
	rp.parts = append(rp.parts, setText("meta length", posT, negT))
}

// u32 parses a 32-bit value: an integer, or a decimal/0x-hex string.
func (rp *ruleParser) u32(key string, e any) (uint32, bool, bool) {
	if i, isInt := asInt(e); isInt {
		if i < 0 || i > 0xffffffff {
			rp.errf(key, "%d out of range (0-4294967295)", i)
			return 0, false, false
		}
		return uint32(i), false, true
	}
	if s, isStr := e.(string); isStr {
		s, n := splitNeg(s)
		u, err := parseUint(s, 32)
		if err != nil {
			rp.errf(key, "bad value %q (want a 32-bit number)", s)
			return 0, false, false
		}
		return uint32(u), n, true
	}
	rp.errf(key, "want an integer, got %s", describe(e))
	return 0, false, false
}

func (rp *ruleParser) mark(key string, v any) {
	es, ok := rp.entries(key, v, "an integer or list of them")
	if !ok {
		return
	}
	var set valueSet
	var posT, negT []string
	for _, e := range es {
		x, n, ok := rp.u32(key, e)
		if !ok {
			return
		}
		if n {
			set.neg = append(set.neg, x)
			negT = append(negT, fmt.Sprintf("0x%08x", x))
		} else {
			set.pos = append(set.pos, x)
			posT = append(posT, fmt.Sprintf("0x%08x", x))
		}
	}
	if key == "mark" {
		rp.r.mark = set
		rp.r.has |= mMark
		rp.parts = append(rp.parts, setText("meta mark", posT, negT))
		return
	}
	if !rp.notRaw(key) {
		return
	}
	rp.r.ctMark = set
	rp.r.has |= mConn | mCtMark
	rp.parts = append(rp.parts, setText("ct mark", posT, negT))
}

// notRaw reports an error for conntrack features in raw.prerouting, where
// the packet has not been tracked yet.
func (rp *ruleParser) notRaw(key string) bool {
	if rp.raw {
		rp.errf(key, "not available in raw.prerouting (it runs before connection tracking)")
		return false
	}
	return true
}

func (rp *ruleParser) ctState(v any) {
	if !rp.notRaw("ct_state") {
		return
	}
	names := make([]string, len(stateNames))
	for i, s := range stateNames {
		names[i] = s.name
	}
	var pos, neg conntrack.State
	var posT, negT []string
	bad := false
	rp.strEntries("ct_state", v, "a state name or list of them", func(s string, n bool) bool {
		i := slices.Index(names, s)
		if i < 0 {
			rp.errf("ct_state", "unknown state %q%s", s, orWant(suggest(s, names), strings.Join(names, ", ")))
			bad = true
			return false
		}
		if n {
			neg |= stateNames[i].v
			negT = append(negT, s)
		} else {
			pos |= stateNames[i].v
			posT = append(posT, s)
		}
		return true
	})
	if bad {
		return
	}
	if pos == 0 {
		pos = conntrack.StateInvalid | conntrack.StateEstablished | conntrack.StateRelated | conntrack.StateNew | conntrack.StateUntracked
	}
	rp.r.state = pos &^ neg
	rp.r.has |= mState
	rp.parts = append(rp.parts, setText("ct state", posT, negT))
}

func (rp *ruleParser) ctStatus(v any) {
	if !rp.notRaw("ct_status") {
		return
	}
	names := make([]string, len(statusNames))
	for i, s := range statusNames {
		names[i] = s.name
	}
	var posT, negT []string
	bad := false
	rp.strEntries("ct_status", v, "a status name or list of them", func(s string, n bool) bool {
		i := slices.Index(names, s)
		if i < 0 {
			rp.errf("ct_status", "unknown status %q%s", s, orWant(suggest(s, names), strings.Join(names, ", ")))
			bad = true
			return false
		}
		if n {
			rp.r.statusNone |= statusNames[i].v
			negT = append(negT, strings.ReplaceAll(s, "_", "-"))
		} else {
			rp.r.statusAny |= statusNames[i].v
			posT = append(posT, strings.ReplaceAll(s, "_", "-"))
		}
		return true
	})
	if bad {
		return
	}
	rp.r.has |= mConn | mCtStatus
	rp.parts = append(rp.parts, setText("ct status", posT, negT))
}

func (rp *ruleParser) ctDirection(v any) {
	if !rp.notRaw("ct_direction") {
		return
	}
	s, ok := v.(string)
	if !ok {
		rp.errf("ct_direction", `want "original" or "reply", got %s`, describe(v))
		return
	}
	switch s {
	case "original":
		rp.r.ctReply = false
	case "reply":
		rp.r.ctReply = true
	default:
		rp.errf("ct_direction", "unknown direction %q%s", s, orWant(suggest(s, []string{"original", "reply"}), `"original" or "reply"`))
		return
	}
	rp.r.has |= mConn | mCtDir
	rp.parts = append(rp.parts, "ct direction "+s)
}

func (rp *ruleParser) ctHelper(v any) {
	if !rp.notRaw("ct_helper") {
		return
	}
	var set helperSet
	var posT, negT []string
	bad := false
	rp.strEntries("ct_helper", v, "a helper name or list of them", func(s string, n bool) bool {
		if !slices.Contains(rp.c.env.Helpers, s) {
			rp.errf("ct_helper", "unknown helper %q%s", s, suggest(s, rp.c.env.Helpers))
			bad = true
			return false
		}
		if n {
			set.neg = append(set.neg, s)
			negT = append(negT, strconv.Quote(s))
		} else {
			set.pos = append(set.pos, s)
			posT = append(posT, strconv.Quote(s))
		}
		return true
	})
	if bad {
		return
	}
	rp.r.helper = set
	rp.r.has |= mConn | mCtHelper
	rp.parts = append(rp.parts, setText("ct helper", posT, negT))
}

var limitUnits = []struct {
	name string
	d    time.Duration
}{
	{"second", time.Second},
	{"minute", time.Minute},
	{"hour", time.Hour},
	{"day", 24 * time.Hour},
	{"week", 7 * 24 * time.Hour},
}

// defaultBurst is nft's default limit burst.
const defaultBurst = 5

func (rp *ruleParser) limit(v any) {
	s, ok := v.(string)
	if !ok {
		rp.errf("limit", `want a rate like "50/second", got %s`, describe(v))
		return
	}
	spec := strings.TrimSpace(s)
	over := false
	if rest, ok := strings.CutPrefix(spec, "over "); ok {
		over, spec = true, strings.TrimSpace(rest)
	}
	bad := func() {
		rp.errf("limit", `bad rate %q (want N/second, N/minute, N/hour, N/day or N/week, optionally "over N/unit")`, s)
	}
	num, unit, found := strings.Cut(spec, "/")
	if !found {
		bad()
		return
	}
	n, err := strconv.ParseUint(strings.TrimSpace(num), 10, 32)
	if err != nil || n == 0 {
		bad()
		return
	}
	var per time.Duration
	unit = strings.TrimSpace(unit)
	for _, u := range limitUnits {
		if u.name == unit {
			per = u.d
		}
	}
	if per == 0 {
		bad()
		return
	}
	interval := int64(per) / int64(n)
	if interval == 0 {
		rp.errf("limit", "rate %q too high (at most one packet per nanosecond)", s)
		return
	}
	burst := int64(defaultBurst)
	if bv, ok := rp.m["burst"]; ok {
		b, isInt := asInt(bv)
		if !isInt || b < 1 || b > 1<<20 {
			rp.errf("burst", "want a packet count 1-%d, got %s", 1<<20, describe(bv))
			return
		}
		burst = b
	}
	rp.r.lim = newLimiter(interval, burst, over)
	rp.r.has |= mLimit
	o := ""
	if over {
		o = "over "
	}
	rp.parts = append(rp.parts, fmt.Sprintf("limit rate %s%d/%s burst %d packets", o, n, unit, burst))
}

func (rp *ruleParser) log(v any) {
	var prefix string
	switch x := v.(type) {
	case string:
		prefix = x
	case bool:
		if !x {
			return
		}
	default:
		rp.errf("log", "want a prefix string, got %s", describe(v))
		return
	}
	rp.r.log = newRuleLog(prefix, rp.chain.path, rp.index)
	rp.r.do |= doLog
	if prefix == "" {
		rp.stmts = append(rp.stmts, "log")
	} else {
		rp.stmts = append(rp.stmts, "log prefix "+strconv.Quote(prefix))
	}
}

func (rp *ruleParser) setMark(key string, v any) {
	x, n, ok := rp.u32(key, v)
	if !ok {
		return
	}
	if n {
		rp.errf(key, "a mark to set cannot be negated")
		return
	}
	if key == "set_mark" {
		rp.r.setMark = x
		rp.r.do |= doSetMark
		rp.stmts = append(rp.stmts, fmt.Sprintf("meta mark set 0x%08x", x))
		return
	}
	if !rp.notRaw(key) {
		return
	}
	rp.r.setCtMark = x
	rp.r.do |= doSetCtMark
	rp.stmts = append(rp.stmts, fmt.Sprintf("ct mark set 0x%08x", x))
}

func (rp *ruleParser) helper(v any) {
	if !rp.notRaw("helper") {
		return
	}
	s, ok := v.(string)
	if !ok {
		rp.errf("helper", "want a helper name, got %s", describe(v))
		return
	}
	if !slices.Contains(rp.c.env.Helpers, s) {
		rp.errf("helper", "unknown helper %q%s", s, suggest(s, rp.c.env.Helpers))
		return
	}
	rp.r.helperName = s
	rp.r.do |= doHelper
	rp.stmts = append(rp.stmts, "ct helper set "+strconv.Quote(s))
}

func (rp *ruleParser) action(v any) {
	s, ok := v.(string)
	if !ok {
		rp.errf("action", "want one of %s, got %s", strings.Join(actionNames, ", "), describe(v))
		return
	}
	r := rp.r
	switch s {
	case "accept":
		r.verdict = actAccept
	case "drop":
		r.verdict = actDrop
	case "reject":
		r.verdict = actReject
	case "synproxy":
		rp.synproxy()
		return
	case "return":
		r.verdict = actReturn
	case "jump", "goto":
		if rp.raw {
			rp.errf("action", "%s is not available in raw.prerouting (it has no user chains)", s)
			return
		}
		if _, ok := rp.m["chain"]; !ok {
			rp.errf("action", `%s needs chain = "NAME"`, s)
			return
		}
		r.verdict = actJump
		if s == "goto" {
			r.verdict = actGoto
		}
		return // the text comes with the chain
	case "notrack":
		if !rp.raw {
			rp.errf("action", "notrack is only valid in raw.prerouting")
			return
		}
		// nft's notrack is a statement: evaluation goes on, and a later
		// rule or the policy decides the verdict.
		r.do |= doNotrack
		rp.verb = "notrack"
		return
	default:
		rp.errf("action", "unknown action %q%s", s, orWant(suggest(s, actionNames), strings.Join(actionNames, ", ")))
		return
	}
	rp.verb = s
}

func (rp *ruleParser) rejectWith(v any) {
	if a, _ := rp.m["action"].(string); a != "reject" {
		rp.errf("reject_with", `only with action = "reject"`)
		return
	}
	s, ok := v.(string)
	names := make([]string, len(rejectNames))
	for i, e := range rejectNames {
		names[i] = e.name
	}
	if !ok {
		rp.errf("reject_with", "want one of %s, got %s", strings.Join(names, ", "), describe(v))
		return
	}
	i := slices.IndexFunc(rejectNames, func(e namedReject) bool { return e.name == s })
	if i < 0 {
		rp.errf("reject_with", "unknown reject type %q%s", s, orWant(suggest(s, names), strings.Join(names, ", ")))
		return
	}
	e := rejectNames[i]
	r := rp.r
	if e.family != 0 {
		// nft: reject with icmp(v6) type X implies the family.
		want := famV4
		if e.family == 6 {
			want = famV6
		}
		if r.has&mFamily != 0 && r.family&want == 0 || rp.addrFam != 0 && rp.addrFam&want == 0 {
			rp.errf("reject_with", "%s does not fit the rule's family", s)
			return
		}
		if r.has&mFamily == 0 || r.family != want {
			w := "ipv4"
			if want == famV6 {
				w = "ipv6"
			}
			rp.parts = append([]string{"meta nfproto " + w}, rp.parts...)
		}
		r.family = want
		r.has |= mFamily
	} else {
		// nft: reject with tcp reset implies meta l4proto tcp.
		var tcp byteSet
		tcp.add(packet.ProtoTCP)
		if r.has&mProto != 0 && !r.proto.has(packet.ProtoTCP) {
			rp.errf("reject_with", "tcp-reset needs proto tcp")
			return
		}
		if r.has&mProto == 0 || !r.proto.only(packet.ProtoTCP) {
			rp.parts = append([]string{"meta l4proto tcp"}, rp.parts...)
		}
		r.proto = tcp
		r.has |= mProto
	}
	r.reject = e.v
	rp.verb = "reject with " + e.nft
}

func (rp *ruleParser) chainRef(v any) {
	a, _ := rp.m["action"].(string)
	if a != "jump" && a != "goto" {
		rp.errf("chain", `only with action = "jump" or "goto"`)
		return
	}
	s, ok := v.(string)
	if !ok {
		rp.errf("chain", "want a chain name, got %s", describe(v))
		return
	}
	rp.meta.jumpPath = rp.path + ".chain"
	t, ok := rp.c.userIdx[s]
	if !ok {
		switch s {
		case "input", "forward", "output":
			rp.errf("chain", "cannot %s to base chain %q (only to [filter.chains.NAME])", a, s)
		default:
			rp.errf("chain", "unknown chain %q%s", s, suggest(s, rp.c.userName))
		}
		return
	}
	rp.r.target = t
	rp.verb = a + " " + s
}

// maxIndexPrefixes is how many literal prefixes a rule may list and still
// be indexed by them; beyond, the rule is a wildcard in that dimension.
const maxIndexPrefixes = 16
