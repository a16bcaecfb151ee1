package conntrack

import (
	"encoding/binary"
	"errors"

	"tungate/packet"
)

// The primitives of the state file's records, shared with the owners of
// connection state outside this package (NAT bindings, helper state), so
// every part of a record is read with the same bounds checks: a record is
// a byte slice, and reading past its end, or a value out of range, is an
// error the decoder keeps (sticky), never a panic.

// errShort is a record that ends before its fields do.
var errShort = errors.New("record truncated")

// StateDecoder reads the fields of one state file record. The first
// failure sticks: later reads return zero values, and Err reports it.
type StateDecoder struct {
	b   []byte
	err error
}

// NewStateDecoder reads b.
func NewStateDecoder(b []byte) *StateDecoder { return &StateDecoder{b: b} }

// Err returns the first failure, nil when every read fitted.
func (d *StateDecoder) Err() error { return d.err }

// Fail records err (the first one wins).
func (d *StateDecoder) Fail(err error) {
	if d.err == nil {
		d.err = err
	}
}

// Len returns the bytes left.
func (d *StateDecoder) Len() int { return len(d.b) }

func (d *StateDecoder) take(n int) []byte {
	if d.err != nil {
		return nil
	}
	if n < 0 || n > len(d.b) {
		d.err = errShort
		d.b = nil
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

// U8 reads a byte.
func (d *StateDecoder) U8() uint8 {
	if v := d.take(1); v != nil {
		return v[0]
	}
	return 0
}

// U16 reads a little-endian uint16.
func (d *StateDecoder) U16() uint16 {
	if v := d.take(2); v != nil {
		return binary.LittleEndian.Uint16(v)
	}
	return 0
}

// U32 reads a little-endian uint32.
func (d *StateDecoder) U32() uint32 {
	if v := d.take(4); v != nil {
		return binary.LittleEndian.Uint32(v)
	}
	return 0
}

// Uvarint reads an unsigned varint.
func (d *StateDecoder) Uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errShort
		d.b = nil
		return 0
	}
	d.b = d.b[n:]
	return v
}

// Varint reads a signed varint.
func (d *StateDecoder) Varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = errShort
		d.b = nil
		return 0
	}
	d.b = d.b[n:]
	return v
}

// Bytes reads a length-prefixed byte string (uvarint length). The result
// aliases the record: copy it to keep it.
func (d *StateDecoder) Bytes() []byte {
	n := d.Uvarint()
	if n > uint64(len(d.b)) {
		d.Fail(errShort)
		return nil
	}
	return d.take(int(n))
}

// String reads a length-prefixed string.
func (d *StateDecoder) String() string { return string(d.Bytes()) }

// Bool reads a byte that must be 0 or 1.
func (d *StateDecoder) Bool() bool {
	switch d.U8() {
	case 0:
		return false
	case 1:
		return true
	}
	d.Fail(errors.New("bad boolean"))
	return false
}

// Addr reads an address of family fam (4 bytes for 4, 16 for 6).
func (d *StateDecoder) Addr(fam uint8) packet.Addr {
	var a packet.Addr
	switch fam {
	case 4:
		copy(a[:4], d.take(4))
	case 6:
		copy(a[:], d.take(16))
	default:
		d.Fail(errors.New("bad address family"))
	}
	return a
}

// Tuple reads a tuple written by AppendStateTuple.
func (d *StateDecoder) Tuple() Tuple {
	var t Tuple
	t.Family = d.U8()
	t.Proto = d.U8()
	t.SrcPort = d.U16()
	t.DstPort = d.U16()
	t.Src = d.Addr(t.Family)
	t.Dst = d.Addr(t.Family)
	return t
}

// AppendStateBytes appends a length-prefixed byte string.
func AppendStateBytes(b, v []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

// AppendStateString appends a length-prefixed string.
func AppendStateString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// AppendStateBool appends a boolean byte.
func AppendStateBool(b []byte, v bool) []byte {
	if v {
		return append(b, 1)
	}
	return append(b, 0)
}

// AppendStateAddr appends an address of family fam: an IPv4 one takes 4
// bytes, which makes a table of IPv4 flows a third smaller on disk.
func AppendStateAddr(b []byte, a *packet.Addr, fam uint8) []byte {
	if fam == 4 {
		return append(b, a[:4]...)
	}
	return append(b, a[:]...)
}

// AppendStateTuple appends a tuple (family, protocol, ports, addresses).
func AppendStateTuple(b []byte, t *Tuple) []byte {
	b = append(b, t.Family, t.Proto)
	b = binary.LittleEndian.AppendUint16(b, t.SrcPort)
	b = binary.LittleEndian.AppendUint16(b, t.DstPort)
	b = AppendStateAddr(b, &t.Src, t.Family)
	return AppendStateAddr(b, &t.Dst, t.Family)
}
