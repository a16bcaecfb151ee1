package alg

import (
	"encoding/binary"
	"errors"

	"tungate/conntrack"
)

// The helpers' part of the conntrack state file (conntrack.StateCodec):
// per connection, the framework's stream position and remembered
// rewrites in each direction (so retransmissions of bytes rewritten
// before the restart are rewritten the same way after it) and the
// helper's own parser state (FTP's unfinished line); per expectation, the
// binding its data connection will follow (FollowMaster), which lives in
// a callback and so is saved as the values it was made from.

var _ conntrack.StateCodec = (*Registry)(nil)

// maxSavedRewrite bounds one remembered rewrite's bytes on restore:
// announcements are short, so anything longer is a corrupt record.
const maxSavedRewrite = 4 * maxLine

// Helper state kinds in a record.
const (
	stateNone = 0
	stateFTP  = 1
)

// StateName names the registry's blob.
func (m *Registry) StateName() string { return "helper" }

// AppendConnState appends c's helper state: the helper's name, the
// stream state per direction and the helper's parser state.
func (m *Registry) AppendConnState(b []byte, c *conntrack.Conn) []byte {
	ext := c.Ext()
	if ext == nil {
		return b
	}
	c.Lock()
	defer c.Unlock()
	cs, ok := ext.HelperData.(*connState)
	if !ok || cs.name != ext.Helper {
		return b
	}
	b = conntrack.AppendStateString(b, cs.name)
	for d := range cs.tcp {
		s := &cs.tcp[d]
		b = binary.LittleEndian.AppendUint32(b, s.next)
		b = conntrack.AppendStateBool(b, s.known)
		b = conntrack.AppendStateBool(b, s.gap)
		b = conntrack.AppendStateBool(b, s.ooo)
		b = binary.LittleEndian.AppendUint32(b, s.oooStart)
		b = binary.LittleEndian.AppendUint32(b, s.oooEnd)
		b = append(b, byte(len(s.rewrites)))
		for _, r := range s.rewrites {
			b = binary.LittleEndian.AppendUint32(b, r.seq)
			b = conntrack.AppendStateBytes(b, r.old)
			b = conntrack.AppendStateBytes(b, r.new)
		}
	}
	switch st := cs.x.State.(type) {
	case *ftpState:
		b = append(b, stateFTP)
		for d := range st.dir {
			b = conntrack.AppendStateBool(b, st.dir[d].skip)
			b = conntrack.AppendStateBytes(b, st.dir[d].line)
		}
	default:
		// A helper without state (TFTP) or one this file cannot say:
		// it starts afresh, as after a mid-stream pickup.
		b = append(b, stateNone)
	}
	return b
}

var errBadHelperState = errors.New("alg: bad helper state in the state file")

// RestoreConnState gives c (not yet confirmed, its Ext.Helper restored)
// the helper state of a record. A helper this tungate does not have
// drops the connection ("helper").
func (m *Registry) RestoreConnState(c *conntrack.Conn, d *conntrack.StateDecoder) error {
	name := d.String()
	if d.Err() != nil {
		return d.Err()
	}
	h := m.helpers[name]
	if h == nil {
		return &conntrack.DropError{Reason: "helper", Msg: "no helper " + name}
	}
	ext := c.Ext()
	if ext == nil || ext.Helper != name {
		return errBadHelperState
	}
	cs := &connState{h: h, name: name}
	for i := range cs.tcp {
		s := &cs.tcp[i]
		s.next = d.U32()
		s.known, s.gap, s.ooo = d.Bool(), d.Bool(), d.Bool()
		s.oooStart, s.oooEnd = d.U32(), d.U32()
		n := int(d.U8())
		if n > maxRewrites {
			return errBadHelperState
		}
		for range n {
			r := rewrite{seq: d.U32(), old: clone(d.Bytes()), new: clone(d.Bytes())}
			if len(r.old) > maxSavedRewrite || len(r.new) > maxSavedRewrite {
				return errBadHelperState
			}
			s.rewrites = append(s.rewrites, r)
		}
	}
	switch d.U8() {
	case stateNone:
	case stateFTP:
		st := &ftpState{}
		for i := range st.dir {
			st.dir[i].skip = d.Bool()
			line := d.Bytes()
			if len(line) > maxLine {
				return errBadHelperState
			}
			if len(line) > 0 {
				st.dir[i].line = append(make([]byte, 0, maxLine), line...)
			}
		}
		cs.x.State = st
	default:
		return errBadHelperState
	}
	if d.Err() != nil {
		return d.Err()
	}
	ext.HelperData = cs
	return nil
}

// clone copies b, keeping nil as nil (the decoder's bytes alias the file
// buffer).
func clone(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append([]byte{}, b...)
}

// AppendExpectationState appends the binding e's connection will follow.
func (m *Registry) AppendExpectationState(b []byte, e *conntrack.Expectation) []byte {
	f, ok := e.Data.(*follow)
	if !ok {
		return b
	}
	fam := e.Tuple.Family
	b = conntrack.AppendStateAddr(b, &f.srcAs, fam)
	b = conntrack.AppendStateAddr(b, &f.dst, fam)
	return binary.LittleEndian.AppendUint16(b, f.dport)
}

// RestoreExpectationState sets e's callback again from the saved binding.
func (m *Registry) RestoreExpectationState(e *conntrack.Expectation, d *conntrack.StateDecoder) error {
	fam := e.Tuple.Family
	f := &follow{srcAs: d.Addr(fam), dst: d.Addr(fam), dport: d.U16()}
	if d.Err() != nil {
		return d.Err()
	}
	m.followMaster(e, f)
	return nil
}
