package pcapng

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

func TestRoundTrip(t *testing.T) {
	t0 := time.Unix(1700000000, 123456789)
	b := AppendHeader(nil, "tungate test", 65535, "lan", "wan")
	pkts := []Packet{
		{Interface: 0, Time: t0, Data: []byte{0x45, 0, 0, 20, 1, 2, 3}, Dir: DirInbound, Comment: "accept: forwarded to wan"},
		{Interface: 1, Time: t0.Add(time.Millisecond), Data: []byte{0x60, 1, 2, 3, 4, 5, 6, 7}, OrigLen: 100, Dir: DirOutbound, Drops: 7},
		{Interface: 0, Time: t0, Data: nil},
	}
	for i := range pkts {
		b = AppendPacket(b, &pkts[i])
	}
	b = AppendStats(b, &Stats{Interface: 0, Start: t0, End: t0.Add(time.Second), Received: 3, Dropped: 7})
	rd, err := NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if rd.Appl != "tungate test" {
		t.Fatalf("appl %q", rd.Appl)
	}
	for i, want := range pkts {
		got, err := rd.Next()
		if err != nil {
			t.Fatal(err)
		}
		if got.Interface != want.Interface || !got.Time.Equal(want.Time) || !bytes.Equal(got.Data, want.Data) ||
			got.Dir != want.Dir || got.Comment != want.Comment || got.Drops != want.Drops || got.OrigLen != max(want.OrigLen, len(want.Data)) {
			t.Fatalf("packet %d: %+v, want %+v", i, got, want)
		}
	}
	if _, err := rd.Next(); err != io.EOF {
		t.Fatalf("end: %v", err)
	}
	if len(rd.Ifaces) != 2 || rd.Ifaces[1].Name != "wan" || rd.Ifaces[0].LinkType != LinkTypeRaw {
		t.Fatalf("interfaces %+v", rd.Ifaces)
	}
	if len(rd.Stats) != 1 || rd.Stats[0].Dropped != 7 || rd.Stats[0].Received != 3 {
		t.Fatalf("stats %+v", rd.Stats)
	}
	// Every truncation is an error, never a panic.
	for n := 1; n < len(b); n++ {
		rd, err := NewReader(bytes.NewReader(b[:n]))
		if err != nil {
			continue
		}
		for {
			if _, err := rd.Next(); err != nil {
				break
			}
		}
	}
}

// TestTcpdumpReads: tcpdump (libpcap) reads the file, with the packets'
// directions. scripts/test-deps.sh installs it.
func TestTcpdumpReads(t *testing.T) {
	tcpdump, err := exec.LookPath("tcpdump")
	if err != nil {
		t.Fatal("tcpdump is not installed (scripts/test-deps.sh installs it)")
	}
	udp := []byte{
		0x45, 0, 0, 29, 0, 1, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
		0x30, 0x39, 0x27, 0x0f, 0, 9, 0, 0, 'x',
	}
	b := AppendHeader(nil, "tungate test", 65535, "lan")
	b = AppendPacket(b, &Packet{Time: time.Unix(1700000000, 0), Data: udp, Dir: DirInbound, Comment: "drop: filter"})
	b = AppendPacket(b, &Packet{Time: time.Unix(1700000001, 0), Data: udp, Dir: DirOutbound})
	path := filepath.Join(t.TempDir(), "c.pcapng")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(tcpdump, "-nn", "-r", path).CombinedOutput()
	if err != nil {
		t.Fatalf("tcpdump: %v\n%s", err, out)
	}
	if n := bytes.Count(out, []byte("10.0.0.1.12345 > 10.0.0.2.9999: UDP")); n != 2 {
		t.Fatalf("tcpdump read %d packets:\n%s", n, out)
	}
}

// FuzzReader: any bytes read as pcapng give packets or an error, never a
// panic, and a packet written and read back is the same.
func FuzzReader(f *testing.F) {
	b := AppendHeader(nil, "tungate", 65535, "lan")
	f.Add(AppendPacket(b, &Packet{Time: time.Unix(1, 2), Data: []byte{0x45, 1, 2}, Dir: DirInbound, Comment: "drop: filter", Drops: 3}), []byte("x"), "c")
	f.Add([]byte{}, []byte{}, "")
	f.Fuzz(func(t *testing.T, in, data []byte, comment string) {
		if rd, err := NewReader(bytes.NewReader(in)); err == nil {
			for {
				if _, err := rd.Next(); err != nil {
					break
				}
			}
		}
		p := Packet{Time: time.Unix(0, 12345), Data: data, Dir: DirOutbound, Comment: comment}
		out := AppendPacket(AppendHeader(nil, "t", 65535, "x"), &p)
		rd, err := NewReader(bytes.NewReader(out))
		if err != nil {
			t.Fatal(err)
		}
		got, err := rd.Next()
		want := comment
		if len(want) > 0xffff {
			want = want[:0xffff]
		}
		if err != nil || !bytes.Equal(got.Data, data) || got.Comment != want || got.Dir != DirOutbound {
			t.Fatalf("round trip: %+v %v", got, err)
		}
	})
}
