package gateway

import (
	"os"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// TestPrefault: after prefault every page of every buffer is resident
// (mincore), so the batch buffers count in RSS from the start instead of
// creeping in as traffic happens to use them.
func TestPrefault(t *testing.T) {
	ps := os.Getpagesize()
	bufs := make([][]byte, 8)
	for i := range bufs {
		bufs[i] = make([]byte, headroom+maxPacket)
	}
	prefault(bufs)
	for i, b := range bufs {
		start := uintptr(unsafe.Pointer(&b[0])) &^ uintptr(ps-1)
		end := uintptr(unsafe.Pointer(&b[len(b)-1])) + 1
		vec := make([]byte, (end-start+uintptr(ps)-1)/uintptr(ps))
		if _, _, e := unix.Syscall(unix.SYS_MINCORE, start, end-start, uintptr(unsafe.Pointer(&vec[0]))); e != 0 {
			t.Fatalf("mincore: %v", e)
		}
		for p, v := range vec {
			if v&1 == 0 {
				t.Fatalf("buffer %d: page %d of %d not resident after prefault", i, p, len(vec))
			}
		}
	}
}
