package main

import (
	"strings"
	"testing"

	"tungate/packet"
)

// TestMalformedClasses: every class the decoder does not refuse itself is
// one a later check of the gateway drops (martian sources, IPv4 options,
// transport checksums), so the storm holds nothing forwardable by mistake.
func TestMalformedClasses(t *testing.T) {
	later := []string{"martian", "options", "checksum"}
	seen := map[string]bool{}
	for _, c := range malformed("10.10.0.2", "198.18.0.2", "fd10::2", "2001:db8:1::2") {
		if seen[c.name] {
			t.Errorf("class %s twice", c.name)
		}
		seen[c.name] = true
		var p packet.Parsed
		err := p.Decode(c.b)
		isLater := false
		for _, l := range later {
			isLater = isLater || strings.Contains(c.name, l)
		}
		if err == nil && !isLater {
			t.Errorf("%s: the decoder accepts it (%x)", c.name, c.b)
		}
		if err != nil && isLater && !strings.Contains(c.name, "header-checksum") {
			t.Errorf("%s: the decoder refuses it (%v); it is meant for a later check", c.name, err)
		}
	}
}
