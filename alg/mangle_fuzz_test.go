package alg

import (
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// ftpSetup is a control connection through the test gateway: who talks to
// whom, and the address each side's announcements must carry after NAT
// (the sender as its peer sees it).
type ftpSetup struct {
	v6, dnat            bool
	cli, srv, real      string // as in gateway.open
	cliSeen, serverSeen string // the client's and the server's address as the other side sees it
	cliAddr, serverAddr string // the addresses they really have
}

var ftpSetups = []ftpSetup{
	{false, false, "10.10.0.2:40000", "198.18.0.2:21", "198.18.0.2:21", "198.18.0.1", "198.18.0.2", "10.10.0.2", "198.18.0.2"},
	{true, false, "[fd10::2]:40000", "[2001:db8:1::2]:21", "[2001:db8:1::2]:21", "2001:db8:1::1", "2001:db8:1::2", "fd10::2", "2001:db8:1::2"},
	{false, true, "203.0.113.5:40000", "198.18.0.1:21", "10.10.0.5:21", "203.0.113.5", "198.18.0.1", "203.0.113.5", "10.10.0.5"},
	{true, true, "[2001:db8:9::5]:40000", "[2001:db8:1::1]:21", "[fd10::5]:21", "2001:db8:9::5", "2001:db8:1::1", "2001:db8:9::5", "fd10::5"},
}

func (s ftpSetup) gateway(t *testing.T) (*gateway, *session) {
	if !s.dnat {
		return masqGateway(t, s.v6, nil)
	}
	g := newGateway(t, Config{FTP: &FTPConfig{}})
	g.dnatFrom, g.dnatTo = ap(s.srv), ap(s.real)
	return g, g.open(s.cli, s.srv, s.real)
}

// The texts around 227 and 229 arguments the generator picks from; free
// text could itself hold a delimiter triple or a run of digits, which the
// parser may take for the argument (FuzzParseFTPLine covers free text).
var (
	ftpReplyTexts = []string{"Entering Passive Mode ", "Entering Extended Passive Mode ", "", "ok ", "=", "Passive mode v2 "}
	ftpReplyTails = []string{"", ".", " ok", "  "}
	ftpDelims     = "|!#$%&*+/;=?@^_~<>"
)

// FuzzFTPMangle is a differential test of the FTP helper's NAT rewrite:
// the fuzzer picks a control connection (masquerade or port forward, IPv4
// or IPv6), an announcement (PORT, EPRT, 227, 229) and its spelling
// (address, port, delimiter, leading zeros, case, spacing, surrounding
// text); a reference written here from RFC 959/2428 and nf_nat_ftp's
// output format parses the line with regular expressions and string
// splitting and says what the receiver must get. The helper's output must
// match byte for byte, the expectation must be there exactly when the
// announcement names its sender, and the stream must go on with the
// sequence offset of the length change, both ways (the harness checks
// every later segment's sequence number and ack).
//
// The TFTP helper rewrites no payload (a TFTP request names no address),
// so it has no mangling to compare.
func FuzzFTPMangle(f *testing.F) {
	for setup := range ftpSetups {
		for kind := range 4 {
			f.Add(uint8(setup), uint8(kind), true, []byte{10, 1, 2, 3}, uint16(5001), byte('|'), uint16(0))
			f.Add(uint8(setup), uint8(kind), false, []byte{192, 0, 2, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9}, uint16(80), byte('!'), uint16(0x5555))
			f.Add(uint8(setup), uint8(kind), true, []byte{}, uint16(65535), byte('#'), uint16(0xffff))
		}
	}
	f.Fuzz(func(t *testing.T, setup, kind uint8, own bool, raw []byte, port uint16, delim byte, style uint16) {
		s := ftpSetups[int(setup)%len(ftpSetups)]
		kind %= 4
		fromClient := kind < 2
		line, announced, fam := buildAnnouncement(s, kind, own, raw, port, delim, style)

		want, expected := referenceRewrite(s, line, fromClient)
		g, x := s.gateway(t)
		x.send(false, "220 hello\r\n")
		sg := x.send(fromClient, line)
		if sg.dropped {
			t.Fatalf("%q (announcing %v, IPv%d) dropped", line, announced, fam)
		}
		if string(sg.payload) != want {
			t.Fatalf("%q (announcing %v) became\n%q, the reference says\n%q", line, announced, sg.payload, want)
		}
		n := 0
		if expected {
			n = 1
		}
		if got := g.tbl.ExpectationCount(); got != n {
			t.Fatalf("%q: %d expectations, the reference says %d", line, got, n)
		}
		// The offset applies to everything after, both ways.
		for range 2 {
			x.send(fromClient, "NOOP\r\n")
			x.send(!fromClient, "200 OK\r\n")
		}
		x.ack(true)
		x.ack(false)
	})
}

// buildAnnouncement spells an announcement of kind (0 PORT, 1 EPRT, 2 227,
// 3 229) for s's sender: its own address when own, else raw's. style's
// bits choose the spelling.
func buildAnnouncement(s ftpSetup, kind uint8, own bool, raw []byte, port uint16, delim byte, style uint16) (line string, announced netip.Addr, fam int) {
	sender := s.cliAddr
	if kind >= 2 {
		sender = s.serverAddr
	}
	announced = netip.MustParseAddr(sender)
	v6 := style&1 != 0 // for EPRT: which family to announce
	if kind == 0 || kind == 2 {
		v6 = false
	}
	if !own || announced.Is6() != v6 {
		var b [16]byte
		copy(b[:], raw)
		if v6 {
			announced = netip.AddrFrom16(b)
		} else {
			announced = netip.AddrFrom4([4]byte(b[:4]))
		}
	}
	fam = 4
	if v6 {
		fam = 6
	}
	d := string(ftpDelims[int(delim)%len(ftpDelims)])
	spaces := strings.Repeat(" ", 1+int(style>>1&1)*2)
	num := func(v int) string { // leading zeros up to three digits
		t := strconv.Itoa(v)
		if style&4 != 0 {
			t = strings.Repeat("0", 3-len(t)) + t
		}
		return t
	}
	octets := func() string {
		a := announced.As4()
		return fmt.Sprintf("%s,%s,%s,%s,%s,%s", num(int(a[0])), num(int(a[1])), num(int(a[2])), num(int(a[3])), num(int(port>>8)), num(int(port&0xff)))
	}
	word := func(w string) string {
		if style&8 != 0 {
			return strings.ToLower(w)
		}
		return w
	}
	eol := "\r\n"
	if style&16 != 0 {
		eol = "\n"
	}
	trail := ""
	if style&32 != 0 {
		trail = " "
	}
	text := ftpReplyTexts[int(style>>6)%len(ftpReplyTexts)]
	tail := ftpReplyTails[int(style>>9)%len(ftpReplyTails)]
	switch kind {
	case 0:
		line = word("PORT") + spaces + octets() + trail + eol
	case 1:
		a, af := announced.String(), "1"
		if v6 {
			af = "2"
			if style&64 != 0 {
				a = announced.StringExpanded()
			}
		}
		line = word("EPRT") + spaces + d + af + d + a + d + strconv.Itoa(int(port)) + d + trail + eol
	case 2:
		lp, rp := "(", ")"
		if style&2048 != 0 {
			lp, rp = "", ""
		}
		line = "227 " + text + lp + octets() + rp + tail + eol
	case 3:
		line = "229 " + text + "(" + d + d + d + strconv.Itoa(int(port)) + d + ")" + tail + eol
	}
	return line, announced, fam
}

var (
	refPORT = regexp.MustCompile(`^(?i:port) +(\d{1,3}),(\d{1,3}),(\d{1,3}),(\d{1,3}),(\d{1,3}),(\d{1,3}) *\r?\n$`)
	refEPRT = regexp.MustCompile(`^(?i:eprt) +(.*?) *\r?\n$`)
	ref227  = regexp.MustCompile(`^227 (?:.*?[^0-9])??(\d{1,3}),(\d{1,3}),(\d{1,3}),(\d{1,3}),(\d{1,3}),(\d{1,3})`)
	ref229  = regexp.MustCompile(`^229 [^(]*\((.*)\)`)
)

// referenceRewrite is what nf_nat_ftp makes of line on s: the announcement
// rewritten to name the sender as the receiver sees it, in the normal form
// Linux prints ('|' delimiters, no leading zeros, IPv6 as eight 4-digit
// groups), when it names the sender itself in the connection's family
// (anything else opens nothing and is left alone); and whether an
// expectation is made.
func referenceRewrite(s ftpSetup, line string, fromClient bool) (string, bool) {
	sender, seen := s.serverAddr, s.serverSeen
	if fromClient {
		sender, seen = s.cliAddr, s.cliSeen
	}
	fam := 4
	if s.v6 {
		fam = 6
	}
	var (
		addr        netip.Addr
		port        int
		start, end  int // the argument's bytes in line
		annFam      int
		octetsOrder bool // PORT/227: a,b,c,d,p1,p2
	)
	octets := func(m []int) bool {
		var v [6]int
		for i := range 6 {
			v[i], _ = strconv.Atoi(line[m[2+2*i]:m[3+2*i]])
			if v[i] > 255 {
				return false
			}
		}
		addr = netip.AddrFrom4([4]byte{byte(v[0]), byte(v[1]), byte(v[2]), byte(v[3])})
		port, annFam, octetsOrder = v[4]<<8|v[5], 4, true
		start, end = m[2], m[13]
		return true
	}
	switch {
	case fromClient && refPORT.MatchString(line):
		if !octets(refPORT.FindStringSubmatchIndex(line)) {
			return line, false
		}
	case fromClient && refEPRT.MatchString(line):
		m := refEPRT.FindStringSubmatchIndex(line)
		arg := line[m[2]:m[3]]
		if len(arg) < 1 {
			return line, false
		}
		parts := strings.Split(arg, arg[:1])
		// "|1|a|p|" splits as "", "1", "a", "p", "".
		if len(parts) != 5 || parts[4] != "" {
			return line, false
		}
		a, err := netip.ParseAddr(parts[2])
		if err != nil || a.Zone() != "" || (parts[1] == "1") != a.Is4() || (parts[1] != "1" && parts[1] != "2") {
			return line, false
		}
		p, err := strconv.Atoi(parts[3])
		if err != nil || len(parts[3]) > 5 {
			return line, false
		}
		addr, port, start, end = a, p, m[2], m[3]
		annFam = 4
		if a.Is6() {
			annFam = 6
		}
	case !fromClient && ref227.MatchString(line):
		if !octets(ref227.FindStringSubmatchIndex(line)) {
			return line, false
		}
	case !fromClient && ref229.MatchString(line):
		m := ref229.FindStringSubmatchIndex(line)
		arg := line[m[2]:m[3]]
		if len(arg) < 5 || arg[1] != arg[0] || arg[2] != arg[0] || arg[len(arg)-1] != arg[0] {
			return line, false
		}
		p, err := strconv.Atoi(arg[3 : len(arg)-1])
		if err != nil || len(arg)-4 > 5 {
			return line, false
		}
		// EPSV names no address: the data connection goes to the sender.
		addr, port, start, end, annFam = netip.MustParseAddr(sender), p, m[2], m[3], fam
	default:
		return line, false
	}
	if port < 1 || port > 65535 || annFam != fam || addr != netip.MustParseAddr(sender) {
		return line, false
	}
	a := netip.MustParseAddr(seen)
	var arg string
	switch {
	case octetsOrder:
		b := a.As4()
		arg = fmt.Sprintf("%d,%d,%d,%d,%d,%d", b[0], b[1], b[2], b[3], port>>8, port&0xff)
	case line[0] == '2': // 229
		arg = fmt.Sprintf("|||%d|", port)
	case a.Is4():
		arg = fmt.Sprintf("|1|%s|%d|", a, port)
	default:
		b := a.As16()
		g := make([]string, 8)
		for i := range g {
			g[i] = fmt.Sprintf("%02x%02x", b[2*i], b[2*i+1])
		}
		arg = fmt.Sprintf("|2|%s|%d|", strings.Join(g, ":"), port)
	}
	return line[:start] + arg + line[end:], true
}

// The reference must disagree with a wrong rewrite: spot checks of what it
// says for lines whose rewrite is known (from TestLinuxRewriteForm).
func TestFTPMangleReference(t *testing.T) {
	for _, c := range []struct {
		setup      int
		fromClient bool
		line, want string
		expected   bool
	}{
		{0, true, "PORT 10,10,0,2,156,65\r\n", "PORT 198,18,0,1,156,65\r\n", true},
		{0, true, "port  010,010,000,002,156,065 \r\n", "port  198,18,0,1,156,65 \r\n", true},
		{0, true, "PORT 10,10,0,3,156,65\r\n", "PORT 10,10,0,3,156,65\r\n", false},
		{1, true, "EPRT !2!fd10::2!40001!\r\n", "EPRT |2|2001:0db8:0001:0000:0000:0000:0000:0001|40001|\r\n", true},
		{1, true, "PORT 10,10,0,2,156,65\r\n", "PORT 10,10,0,2,156,65\r\n", false},
		{0, false, "227 Entering Passive Mode (198,018,000,002,019,137).\r\n", "227 Entering Passive Mode (198,18,0,2,19,137).\r\n", true},
		{2, false, "227 =10,10,0,5,19,137\r\n", "227 =198,18,0,1,19,137\r\n", true},
		{3, false, "229 Entering Extended Passive Mode (###05001#)\r\n", "229 Entering Extended Passive Mode (|||5001|)\r\n", true},
		{2, true, "EPRT |1|203.0.113.5|0|\r\n", "EPRT |1|203.0.113.5|0|\r\n", false},
	} {
		got, exp := referenceRewrite(ftpSetups[c.setup], c.line, c.fromClient)
		if got != c.want || exp != c.expected {
			t.Errorf("setup %d %q: reference says %q (expectation %v), want %q (%v)", c.setup, c.line, got, exp, c.want, c.expected)
		}
	}
}
