package conntrack

import (
	"testing"

	"tungate/packet"
)

// FuzzTableIn feeds arbitrary packets, and ICMP errors quoting arbitrary
// bytes, through In and Confirm and back as replies: nothing may panic, and
// whatever In returns must be self-consistent.
func FuzzTableIn(f *testing.F) {
	for _, fam := range ctFamilies {
		f.Add(build.UDP(fam.cli, 1, fam.srv, 53, 4), false)
		f.Add(build.TCP(fam.cli, 1, fam.srv, 80, packet.TCPSyn), false)
		f.Add(build.Echo(fam.cli, fam.srv, false, 7, 8), false)
		f.Add(build.GRE(fam.cli, fam.srv, 1, true, 5, 4), false)
		f.Add(build.ESP(fam.cli, fam.srv, 9, 1), false)
		f.Add(build.Raw(fam.cli, fam.srv, 253, 3), false)
		f.Add(build.UDP(fam.cli, 1, fam.srv, 53, 4), true)
		f.Add(build.Echo(fam.srv, fam.cli, false, 7, 8), true)
	}
	off := false
	tab, err := NewTable(Config{Max: 64, Checksum: &off})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte, quote bool) {
		var p packet.Parsed
		var res Result
		now := int64(1e12)
		if p.Decode(b) != nil {
			return
		}
		tab.In(&p, now, &res)
		check := func() {
			if (res.Conn == nil) != (res.Info == Invalid || res.Info == Untracked) {
				t.Fatalf("info %v with conn %v", res.Info, res.Conn != nil)
			}
			if res.Conn != nil && res.Info.Dir() != res.Dir {
				t.Fatalf("info %v in direction %v", res.Info, res.Dir)
			}
		}
		check()
		if res.Conn != nil && !res.Conn.Confirmed() {
			tab.Confirm(res.Conn, now)
		}
		if res.Conn != nil {
			_ = tab.AppendConn(nil, res.Conn, now)
		}
		if quote {
			// The same bytes quoted in an error from the destination.
			e := build.Unreachable(p.DstIP(), p.SrcIP(), b, -1)
			if p.Decode(e) == nil {
				tab.In(&p, now, &res)
				check()
			}
		}
		if tab.Count() > 64 {
			t.Fatalf("count %d above max", tab.Count())
		}
	})
}
