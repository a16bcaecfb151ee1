package link_test

import (
	"errors"
	"os"
	"testing"

	"golang.zx2c4.com/wireguard/tun"

	"tungate/link"
)

// batchDev returns the next count of reads packets per Read, then closed.
type batchDev struct {
	tun.Device // the methods the adapter must not need
	reads      []int
}

func (d *batchDev) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	if len(d.reads) == 0 {
		return 0, os.ErrClosed
	}
	n := d.reads[0]
	d.reads = d.reads[1:]
	for i := 0; i < n; i++ {
		sizes[i] = copy(bufs[i][offset:], []byte{0x45})
	}
	return n, nil
}

func TestFromTUNTrustsOnlySplitFrames(t *testing.T) {
	dev := &batchDev{reads: []int{1, 3, 0, 2, 1}}
	l := link.FromTUN(dev)
	var _ link.Flagger = l
	bufs := make([][]byte, 4)
	for i := range bufs {
		bufs[i] = make([]byte, link.Headroom+1)
	}
	sizes := make([]int, len(bufs))
	for _, want := range []link.Flags{0, link.ChecksumsVerified, 0, link.ChecksumsVerified, 0} {
		n, err := l.Read(bufs, sizes, link.Headroom)
		if err != nil {
			t.Fatal(err)
		}
		if got := l.ReadFlags(); got != want {
			t.Errorf("read of %d packets: flags %b, want %b", n, got, want)
		}
	}
	if _, err := l.Read(bufs, sizes, link.Headroom); !errors.Is(err, os.ErrClosed) {
		t.Errorf("read after the device closed: %v, want os.ErrClosed", err)
	}
	if l.ReadFlags() != 0 {
		t.Errorf("a failed read kept the last batch's flags")
	}
	if l.Device() != dev {
		t.Errorf("Device() is not the adapted device")
	}
}

// oneDev returns one packet per Read, forever.
type oneDev struct{ tun.Device }

func (oneDev) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	sizes[0] = 1
	return 1, nil
}

// Package variables, so the compiler cannot see through the interfaces.
var (
	benchDev  tun.Device = oneDev{}
	benchLink link.Link  = link.FromTUN(oneDev{})
)

// BenchmarkRead prices the adapter: a read through link.Link and the
// Flagger question against the same read straight from the tun.Device.
// The datapath pays the difference once per batch, not per packet.
func BenchmarkRead(b *testing.B) {
	bufs := [][]byte{make([]byte, link.Headroom+1)}
	sizes := []int{0}
	b.Run("tun.Device", func(b *testing.B) {
		dev := benchDev
		b.ReportAllocs()
		for b.Loop() {
			dev.Read(bufs, sizes, link.Headroom)
		}
	})
	b.Run("link.Link+Flagger", func(b *testing.B) {
		l := benchLink
		f := l.(link.Flagger)
		b.ReportAllocs()
		for b.Loop() {
			l.Read(bufs, sizes, link.Headroom)
			_ = f.ReadFlags()
		}
	})
}
