package admin

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestFrames(t *testing.T) {
	var wire bytes.Buffer
	fw := newFrameWriter(&wire)
	big := strings.Repeat("x", frameMax+10) // spans two frames
	fw.WriteString(big)
	fw.Write([]byte("tail\n"))
	fw.end(frameOK, "done")
	stream := wire.Bytes()
	var out bytes.Buffer
	msg, err := readFrames(bytes.NewReader(stream), &out)
	if err != nil || msg != "done" || out.String() != big+"tail\n" {
		t.Fatalf("round trip: %v %q, %d bytes", err, msg, out.Len())
	}
	// Cut anywhere before the end frame: an error, never a silent short answer.
	for _, cut := range []int{0, 3, 5, 100, len(stream) - 5, len(stream) - 1} {
		out.Reset()
		if _, err := readFrames(bytes.NewReader(stream[:cut]), &out); !errors.Is(err, errCut) {
			t.Errorf("cut at %d: %v", cut, err)
		}
	}
	// An error frame after some data: the data stays, the error is returned.
	wire.Reset()
	fw = newFrameWriter(&wire)
	fw.WriteString("partial\n")
	fw.end(frameError, "boom")
	out.Reset()
	if _, err := readFrames(&wire, &out); err == nil || err.Error() != "boom" || out.String() != "partial\n" {
		t.Fatalf("error frame: %v %q", err, out.String())
	}
	// Garbage: an unknown type or an oversized frame is an error.
	for _, bad := range [][]byte{{'z', 0, 0, 0, 0}, {'d', 0xff, 0, 0, 0}} {
		if _, err := readFrames(bytes.NewReader(bad), &out); err == nil || errors.Is(err, errCut) {
			t.Errorf("frame % x: %v", bad, err)
		}
	}
}

func TestParseRequest(t *testing.T) {
	for line, want := range map[string]Request{
		"ct list\n":      {Cmd: "ct list"},
		"ct list json\n": {Cmd: "ct list", Output: "json"},
		"ct expect\n":    {Cmd: "expect list"},
		`{"cmd":"ct count","filter":{"proto":"tcp"}}`: {Cmd: "ct count", Filter: &Filter{Proto: "tcp"}},
	} {
		got, err := parseRequest(line)
		if err != nil || got.Cmd != want.Cmd || got.Output != want.Output || (want.Filter != nil && (got.Filter == nil || got.Filter.Proto != want.Filter.Proto)) {
			t.Errorf("%q: %+v %v", line, got, err)
		}
	}
	for _, bad := range []string{"", "\n", `{"cmd":`, `{"cmd":"ct list","filter":{"sport":70000}}`} {
		if _, err := parseRequest(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
