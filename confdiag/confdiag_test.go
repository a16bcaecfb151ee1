package confdiag

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
)

const src = `# a comment with = and [brackets]
title = "x # not a comment ] }"
[[interface]]
name = "lan"
addresses = ["10.0.0.1/24", # trailing
  "fd00::1/64"]
[[interface]]
name = 'wan'
  addresses = [
    "198.18.0.1/24",
  ]
[[interface.extra]]
k = 1
[conntrack.timeouts]
udp = "30s"
"quoted.key" = true
[filter.forward]
note = """
multi "line" ]
"""
rules = [
  { action = "accept" },
  { in = "lan", ct = { state = ["new"] }, action = "drop" },
]
dotted.key = 2
[[nat.dnat]]
to = "a"
[[nat.dnat]]
to = ["b", "c"]
`

func TestScanPositions(t *testing.T) {
	var v map[string]any
	if _, err := toml.Decode(src, &v); err != nil {
		t.Fatalf("test source is not TOML: %v", err)
	}
	ix := Scan([]byte(src))
	for _, tc := range []struct {
		path      string
		line, col int
	}{
		{"title", 2, 9},
		{"interface[0]", 3, 1},
		{"interface[0].name", 4, 8},
		{"interface[0].addresses[0]", 5, 14},
		{"interface[0].addresses[1]", 6, 3},
		{"interface[1].name", 8, 8},
		{"interface[1].addresses", 9, 15},
		{"interface[1].addresses[0]", 10, 5},
		{"interface[1].extra[0].k", 13, 5},
		{"conntrack.timeouts.udp", 15, 7},
		{"conntrack.timeouts.quoted.key", 16, 16},
		{"filter.forward.rules", 21, 9},
		{"filter.forward.rules[0].action", 22, 14},
		{"filter.forward.rules[1]", 23, 3},
		{"filter.forward.rules[1].in", 23, 10},
		{"filter.forward.rules[1].ct.state[0]", 23, 33},
		{"filter.forward.rules[1].action", 23, 52},
		{"filter.forward.dotted.key", 25, 14},
		{"nat.dnat[0].to", 27, 6},
		{"nat.dnat[1].to[1]", 29, 12},
	} {
		p, exact, ok := ix.Lookup(tc.path)
		if !ok || !exact || p.Line != tc.line || p.Col != tc.col {
			t.Errorf("%s: at %d:%d (exact %v, found %v), want %d:%d", tc.path, p.Line, p.Col, exact, ok, tc.line, tc.col)
		}
	}
	// A key that is not in the file falls back to its nearest ancestor.
	if p, exact, ok := ix.Lookup("interface[1].mtu"); !ok || exact || p.Line != 7 {
		t.Errorf("fallback: %v %v %v", p, exact, ok)
	}
	if p, ok := ix.KeyPos("filter.forward.rules[1].action"); !ok || p.Line != 23 || p.Col != 43 {
		t.Errorf("key position %v %v", p, ok)
	}
	if es := ix.ByPlain("interface.name"); len(es) != 2 || es[1].Path != "interface[1].name" || es[1].Kind != "string" {
		t.Errorf("by plain path: %+v", es)
	}
}

// The scanner never fails or panics on what the decoder refuses.
func TestScanBroken(t *testing.T) {
	for _, s := range []string{"[", "[[a]", "a = ", "a = [1, {", `a = "x`, "a = '''x", "= 1", "a.b", strings.Repeat("[", 200), "a = " + strings.Repeat("[", 200)} {
		Scan([]byte(s))
	}
}

func FuzzScan(f *testing.F) {
	f.Add(src)
	f.Fuzz(func(t *testing.T, s string) {
		ix := Scan([]byte(s))
		for _, e := range ix.Entries() {
			if e.Key.Line < 1 || e.Value.Line < e.Key.Line {
				t.Fatalf("bad position %+v", e)
			}
		}
	})
}

func TestSuggest(t *testing.T) {
	keys := []string{"level", "format", "addresses"}
	for _, tc := range []struct{ word, want string }{
		{"levle", ` (did you mean "level"?)`},
		{"adresses", ` (did you mean "addresses"?)`},
		{"colour", ""},
		{"level", ""},
	} {
		if got := Suggest(tc.word, keys); got != tc.want {
			t.Errorf("Suggest(%q) = %q, want %q", tc.word, got, tc.want)
		}
	}
	if got := SuggestPrefixed("blokced", []string{"blocked"}, "@"); got != ` (did you mean "@blocked"?)` {
		t.Errorf("prefixed: %q", got)
	}
}

func TestErrorAndList(t *testing.T) {
	e := &Error{File: "a.toml", Line: 3, Col: 9, Path: "x.y", Msg: `"v": bad`}
	if e.Error() != `a.toml:3:9: x.y: "v": bad` {
		t.Error(e.Error())
	}
	if s := (&Error{Path: "x", Msg: "m"}).Error(); s != "x: m" {
		t.Error(s)
	}
	var l List
	l.Add(nil)
	l.Add(errors.Join(Errorf("a", "1"), errors.Join(Errorf("b", "2"), Errorf("c", "3"))))
	l.Addf("d", "%d", 4)
	if l.Len() != 4 || l.Err().Error() != "a: 1\nb: 2\nc: 3\nd: 4" {
		t.Errorf("%d: %v", l.Len(), l.Err())
	}
	for range 2 * MaxErrors {
		l.Addf("z", "more")
	}
	if l.Len() != MaxErrors {
		t.Errorf("list grew to %d", l.Len())
	}
	var empty List
	if empty.Err() != nil {
		t.Error("empty list has an error")
	}
}

func TestReason(t *testing.T) {
	_, err := netip.ParsePrefix("10.0.0.300/24")
	if got := Reason(err, "10.0.0.300/24"); got != `ParseAddr("10.0.0.300"): IPv4 field has value >255` {
		t.Errorf("prefix: %q", got)
	}
	_, err = netip.ParseAddr("fd00::g")
	if got := Reason(err, "fd00::g"); strings.Contains(got, "ParseAddr") || got == "" {
		t.Errorf("addr: %q", got)
	}
	if got := Reason(errors.New("plain"), "x"); got != "plain" {
		t.Errorf("plain: %q", got)
	}
}
