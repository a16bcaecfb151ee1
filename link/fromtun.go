package link

import "golang.zx2c4.com/wireguard/tun"

// TUN is a wireguard-go tun.Device seen as a Link. Its method set is
// already Link's; what it adds is the one rule for trusting a device's
// checksums, so kernel TUNs and the in-memory devices of tests agree on it.
type TUN struct {
	dev   tun.Device
	flags Flags
	raw   *rawBatch // nil: not a kernel TUN, one packet per read
	// skip and backoff ration the extra reads: a non-blocking read that
	// finds nothing is a wasted system call, so after one the next few
	// reads (doubling up to maxBackoff) do not look.
	skip, backoff int
}

// maxBackoff is the most reads that go without looking for more after
// fruitless looks: at a low packet rate one wasted read in that many.
const maxBackoff = 16

// FromTUN adapts dev. It does not drain dev's Events: whoever creates a
// device that sends them (link/tun) owns that.
func FromTUN(dev tun.Device) *TUN { return &TUN{dev: dev, raw: newRawBatch(dev)} }

// Read reads a batch from the device. More than one packet from one
// device read means the device split a GSO frame and computed every
// segment's checksums itself (wireguard-go's gsoSplit, or gsoSplit here
// for a frame met by the batched reads), so they are marked
// ChecksumsVerified. A single plain packet is followed by what else the
// kernel has queued, read without blocking (tunbatch.go); such a batch is
// not marked.
func (t *TUN) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	if t.raw != nil && t.raw.npend > 0 {
		n, err := t.raw.splitPending(bufs, sizes, offset)
		t.flags = ChecksumsVerified
		return n, err
	}
	n, err := t.dev.Read(bufs, sizes, offset)
	t.flags = 0
	if n > 1 {
		t.flags = ChecksumsVerified
	}
	if n == 1 && err == nil && t.raw != nil && len(bufs) > 1 {
		if t.skip > 0 {
			t.skip--
			return n, nil
		}
		m, merr := t.raw.more(bufs, sizes, offset, n)
		if m == n && t.raw.npend == 0 && merr == nil {
			t.backoff = min(max(1, 2*t.backoff), maxBackoff)
			t.skip = t.backoff
		} else {
			t.backoff = 0
		}
		n, err = m, merr
	}
	return n, err
}

// ReadFlags reports whether the last Read split a GSO frame.
func (t *TUN) ReadFlags() Flags { return t.flags }

// Write writes a batch to the device.
func (t *TUN) Write(bufs [][]byte, offset int) (int, error) { return t.dev.Write(bufs, offset) }

// BatchSize is the device's batch size.
func (t *TUN) BatchSize() int { return t.dev.BatchSize() }

// MTU is the device's MTU.
func (t *TUN) MTU() (int, error) { return t.dev.MTU() }

// Close closes the device.
func (t *TUN) Close() error { return t.dev.Close() }

// Device returns the adapted device, for the kind that owns it.
func (t *TUN) Device() tun.Device { return t.dev }

var (
	_ Link    = (*TUN)(nil)
	_ Flagger = (*TUN)(nil)
)
