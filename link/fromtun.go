package link

import "golang.zx2c4.com/wireguard/tun"

// TUN is a wireguard-go tun.Device seen as a Link. Its method set is
// already Link's; what it adds is the one rule for trusting a device's
// checksums, so kernel TUNs and the in-memory devices of tests agree on it.
type TUN struct {
	dev   tun.Device
	flags Flags
}

// FromTUN adapts dev. It does not drain dev's Events: whoever creates a
// device that sends them (link/tun) owns that.
func FromTUN(dev tun.Device) *TUN { return &TUN{dev: dev} }

// Read reads a batch from the device. More than one packet from one read
// means the device split a GSO frame and computed every segment's checksums
// itself (wireguard-go's gsoSplit), so they are marked ChecksumsVerified.
func (t *TUN) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	n, err := t.dev.Read(bufs, sizes, offset)
	t.flags = 0
	if n > 1 {
		t.flags = ChecksumsVerified
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
