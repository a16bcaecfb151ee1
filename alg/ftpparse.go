package alg

import (
	"net/netip"
	"strconv"

	"tungate/conntrack"
	"tungate/packet"
)

// ftpKind is the kind of an FTP address announcement.
type ftpKind uint8

const (
	ftpNone ftpKind = iota
	ftpPORT         // client: PORT h1,h2,h3,h4,p1,p2 (RFC 959)
	ftpEPRT         // client: EPRT |1|addr|port| or |2|… (RFC 2428)
	ftpPASV         // server: 227 reply to PASV (RFC 959, RFC 1123 4.1.2.6)
	ftpEPSV         // server: 229 reply to EPSV, (|||port|) (RFC 2428)
)

func (k ftpKind) String() string {
	return [...]string{"none", "PORT", "EPRT", "227", "229"}[k]
}

// ftpCmd is one parsed announcement.
type ftpCmd struct {
	kind ftpKind
	// family is 4 or 6; 0 for EPSV, which names no address.
	family uint8
	addr   packet.Addr
	port   uint16
	// start and end delimit, in the line, the text a NAT rewrite
	// replaces: the numbers of PORT and 227, the |…| part of EPRT and 229
	// (whatever its delimiter: the rewrite always writes '|', as Linux's
	// nf_nat_ftp does).
	start, end int
}

// parseFTPLine parses one complete line (with its line end) of the given
// direction: commands from the client, replies from the server. It reports
// the announcement, and bad when the line is an announcement whose
// arguments are malformed (absurd numbers, unknown family), so it can be
// counted; neither for every other line.
func parseFTPLine(line []byte, d conntrack.Dir) (cmd ftpCmd, ok, bad bool) {
	body := trimEOL(line)
	if d == conntrack.DirOriginal {
		switch {
		case hasWordFold(body, "PORT"):
			cmd, ok = parsePORT(body)
		case hasWordFold(body, "EPRT"):
			cmd, ok = parseEPRT(body)
		default:
			return cmd, false, false
		}
		return cmd, ok, !ok
	}
	switch {
	case hasCode(body, "227"):
		cmd, ok = parse227(body)
	case hasCode(body, "229"):
		cmd, ok = parse229(body)
	default:
		return cmd, false, false
	}
	return cmd, ok, !ok
}

// argStart returns where the rewritable argument of a possibly incomplete
// announcement line starts, or -1 when the line is no announcement (yet)
// or its argument has not begun. It never returns a position after the
// real start, so bytes before it are safe to pass on unrewritten.
func argStart(line []byte, d conntrack.Dir) int {
	if d == conntrack.DirOriginal {
		if !hasWordFold(line, "PORT") && !hasWordFold(line, "EPRT") {
			return -1
		}
		i := 4
		for i < len(line) && line[i] == ' ' {
			i++
		}
		if i < len(line) {
			return i
		}
		return -1
	}
	if !hasCode(line, "227") && !hasCode(line, "229") {
		return -1
	}
	for i := 4; i < len(line); i++ {
		if c := line[i]; c > ' ' && c < 0x7f {
			return i
		}
	}
	return -1
}

// partialWord reports whether b, the start of a line without its end, is
// no more than the beginning of an announcement's word of direction d: a
// case-insensitive prefix of "PORT " or "EPRT " (of "227 " or "229 "),
// perhaps followed by spaces. Linux's find_pattern calls that a partial
// match, and its helper drops the segment.
func partialWord(b []byte, d conntrack.Dir) bool {
	words := [2]string{"PORT ", "EPRT "}
	if d != conntrack.DirOriginal {
		words = [2]string{"227 ", "229 "}
	}
	for _, w := range words {
		n := min(len(b), len(w))
		if n > 0 && prefixFold(b[:n], w) && onlySpaces(b[n:]) {
			return true
		}
	}
	return false
}

// prefixFold reports whether b is an ASCII case-insensitive prefix of w.
func prefixFold(b []byte, w string) bool {
	for i, c := range b {
		if c|0x20 != w[i]|0x20 {
			return false
		}
	}
	return true
}

func trimEOL(b []byte) []byte {
	if n := len(b); n > 0 && b[n-1] == '\n' {
		b = b[:n-1]
		if n := len(b); n > 0 && b[n-1] == '\r' {
			b = b[:n-1]
		}
	}
	return b
}

// hasWordFold reports whether b starts with the 4-letter command w (ASCII
// case-insensitive, RFC 959 5.3) followed by a space.
func hasWordFold(b []byte, w string) bool {
	if len(b) < len(w)+1 || b[len(w)] != ' ' {
		return false
	}
	for i := range len(w) {
		if b[i]|0x20 != w[i]|0x20 {
			return false
		}
	}
	return true
}

// hasCode reports whether b starts with the reply code followed by a
// space (the last line of a reply; RFC 959 4.2).
func hasCode(b []byte, code string) bool {
	return len(b) > len(code) && string(b[:len(code)]) == code && b[len(code)] == ' '
}

// onlySpaces reports whether b holds nothing but spaces (trailing blanks
// some clients send before the line end).
func onlySpaces(b []byte) bool {
	for _, c := range b {
		if c != ' ' && c != '\t' {
			return false
		}
	}
	return true
}

// parseOctets reads want comma-separated decimal numbers of at most three
// digits and value 255 from the start of b, returning them and the length
// read. Anything else (a fourth digit, a sign, a missing number) fails.
func parseOctets(b []byte, want int, out []byte) (int, bool) {
	i := 0
	for k := range want {
		if k > 0 {
			if i >= len(b) || b[i] != ',' {
				return 0, false
			}
			i++
		}
		v, digits := 0, 0
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			if digits == 3 {
				return 0, false
			}
			v = v*10 + int(b[i]-'0')
			digits++
			i++
		}
		if digits == 0 || v > 255 {
			return 0, false
		}
		out[k] = byte(v)
	}
	if i < len(b) && (b[i] == ',' || (b[i] >= '0' && b[i] <= '9')) {
		return 0, false
	}
	return i, true
}

// parsePort reads a decimal port of 1 to 5 digits, 1..65535.
func parsePort(b []byte) (uint16, bool) {
	if len(b) == 0 || len(b) > 5 {
		return 0, false
	}
	v := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int(c-'0')
	}
	if v < 1 || v > 65535 {
		return 0, false
	}
	return uint16(v), true
}

func fromOctets(o []byte) (packet.Addr, uint16, bool) {
	var a packet.Addr
	copy(a[:4], o[:4])
	port := uint16(o[4])<<8 | uint16(o[5])
	return a, port, port != 0
}

func parsePORT(body []byte) (ftpCmd, bool) {
	i := 5
	for i < len(body) && body[i] == ' ' {
		i++
	}
	var o [6]byte
	n, ok := parseOctets(body[i:], 6, o[:])
	if !ok || !onlySpaces(body[i+n:]) {
		return ftpCmd{}, false
	}
	a, port, ok := fromOctets(o[:])
	return ftpCmd{kind: ftpPORT, family: 4, addr: a, port: port, start: i, end: i + n}, ok
}

// validDelim reports whether c may delimit EPRT/EPSV fields: RFC 2428
// allows ASCII 33-126; digits and address characters would be ambiguous.
func validDelim(c byte) bool {
	return c >= 33 && c <= 126 && !(c >= '0' && c <= '9') && c != '.' && c != ':' &&
		!(c >= 'a' && c <= 'f') && !(c >= 'A' && c <= 'F')
}

func indexByteFrom(b []byte, c byte, from int) int {
	for i := from; i < len(b); i++ {
		if b[i] == c {
			return i
		}
	}
	return -1
}

func parseEPRT(body []byte) (ftpCmd, bool) {
	i := 5
	for i < len(body) && body[i] == ' ' {
		i++
	}
	if i+2 >= len(body) || !validDelim(body[i]) || body[i+2] != body[i] {
		return ftpCmd{}, false
	}
	d := body[i]
	a := i + 3
	ae := indexByteFrom(body, d, a)
	if ae < 0 || ae-a > 45 { // INET6_ADDRSTRLEN
		return ftpCmd{}, false
	}
	pe := indexByteFrom(body, d, ae+1)
	if pe < 0 || !onlySpaces(body[pe+1:]) {
		return ftpCmd{}, false
	}
	port, ok := parsePort(body[ae+1 : pe])
	if !ok {
		return ftpCmd{}, false
	}
	cmd := ftpCmd{kind: ftpEPRT, port: port, start: i, end: pe + 1}
	switch body[i+1] {
	case '1':
		var o [4]byte
		n, ok := parseDotted(body[a:ae], o[:])
		if !ok || n != ae-a {
			return ftpCmd{}, false
		}
		cmd.family = 4
		copy(cmd.addr[:4], o[:])
	case '2':
		ip, err := netip.ParseAddr(string(body[a:ae]))
		if err != nil || !ip.Is6() || ip.Is4In6() || ip.Zone() != "" {
			return ftpCmd{}, false
		}
		cmd.family = 6
		cmd.addr = ip.As16()
	default:
		return ftpCmd{}, false
	}
	return cmd, true
}

// parseDotted reads an IPv4 dotted quad with the same limits as
// parseOctets.
func parseDotted(b []byte, out []byte) (int, bool) {
	// The same grammar as the comma list, with dots.
	var tmp [16]byte
	if len(b) > len(tmp) {
		return 0, false
	}
	copy(tmp[:], b)
	for i := range b {
		if tmp[i] == '.' {
			tmp[i] = ','
		} else if tmp[i] == ',' {
			return 0, false
		}
	}
	return parseOctets(tmp[:len(b)], 4, out)
}

// parse227 finds h1,h2,h3,h4,p1,p2 in a 227 reply. RFC 1123 4.1.2.6 warns
// that the text around the numbers varies (parentheses or not, "=",
// trailing text): the numbers inside parentheses win, otherwise the first
// run of digits that reads as six numbers.
func parse227(body []byte) (ftpCmd, bool) {
	var o [6]byte
	try := func(i int) (ftpCmd, bool) {
		n, ok := parseOctets(body[i:], 6, o[:])
		if !ok {
			return ftpCmd{}, false
		}
		a, port, ok := fromOctets(o[:])
		return ftpCmd{kind: ftpPASV, family: 4, addr: a, port: port, start: i, end: i + n}, ok
	}
	if p := indexByteFrom(body, '(', 4); p >= 0 {
		if cmd, ok := try(p + 1); ok {
			return cmd, true
		}
	}
	for i := 4; i < len(body); i++ {
		if body[i] >= '0' && body[i] <= '9' && (body[i-1] < '0' || body[i-1] > '9') {
			if cmd, ok := try(i); ok {
				return cmd, true
			}
		}
	}
	return ftpCmd{}, false
}

// parse229 finds (<d><d><d>port<d>) in a 229 reply, parentheses or not.
func parse229(body []byte) (ftpCmd, bool) {
	for i := 4; i+4 < len(body); i++ {
		d := body[i]
		if !validDelim(d) || body[i+1] != d || body[i+2] != d {
			continue
		}
		e := indexByteFrom(body, d, i+3)
		if e < 0 {
			// Another delimiter may still follow: `"""1|||2|` announces
			// port 2, as its rewrite with '|' must parse back.
			continue
		}
		port, ok := parsePort(body[i+3 : e])
		if !ok {
			continue
		}
		return ftpCmd{kind: ftpEPSV, port: port, start: i, end: e + 1}, true
	}
	return ftpCmd{}, false
}

// appendArg formats the rewritten argument of cmd for addr:port exactly as
// Linux's nf_nat_ftp_fmt_cmd does, so the receiver gets the same bytes
// through tungate as through Linux: decimal numbers without leading zeros,
// '|' as the EPRT/EPSV delimiter whatever the sender used, and an IPv6
// address as eight 4-digit hex groups without "::" (printk's %pI6).
func appendArg(b []byte, cmd *ftpCmd, addr packet.Addr, port uint16) []byte {
	switch cmd.kind {
	case ftpPORT, ftpPASV:
		for i := range 4 {
			b = strconv.AppendUint(b, uint64(addr[i]), 10)
			b = append(b, ',')
		}
		b = strconv.AppendUint(b, uint64(port>>8), 10)
		b = append(b, ',')
		return strconv.AppendUint(b, uint64(port&0xff), 10)
	case ftpEPRT:
		if cmd.family == 4 {
			b = append(b, "|1|"...)
			b = addr.NetIP(4).AppendTo(b)
		} else {
			b = append(b, "|2|"...)
			b = appendIPv6Full(b, addr)
		}
		b = append(b, '|')
		b = strconv.AppendUint(b, uint64(port), 10)
		return append(b, '|')
	case ftpEPSV:
		b = append(b, "|||"...)
		b = strconv.AppendUint(b, uint64(port), 10)
		return append(b, '|')
	}
	return b
}

// appendIPv6Full appends a as eight colon-separated groups of four
// lowercase hex digits, no "::" compression (printk's %pI6; %pI6c would
// compress).
func appendIPv6Full(b []byte, a packet.Addr) []byte {
	const hex = "0123456789abcdef"
	for i := 0; i < 16; i += 2 {
		if i > 0 {
			b = append(b, ':')
		}
		b = append(b, hex[a[i]>>4], hex[a[i]&0xf], hex[a[i+1]>>4], hex[a[i+1]&0xf])
	}
	return b
}
