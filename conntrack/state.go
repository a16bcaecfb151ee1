package conntrack

import "unsafe"

// protoState is the per-connection state of its tracker; each tracker uses
// its own part, guarded by Conn.mu (or written before confirmation and then
// only read).
type protoState struct {
	_ [0]int64 // udpStreamTS's int64 lives in tcp's bytes
	// tcp is TCP's state; an SCTP connection keeps its sctpState in the
	// same bytes (see sctp), a UDP one its stream time (udpStreamTS).
	tcp tcpState
}

// udpStreamTS is a UDP connection's stream time: it becomes a stream when
// replied after it (set before confirmation, then read-only). It shares
// tcp's memory like sctp, which saves the 8 bytes Conn.nat takes.
func (p *protoState) udpStreamTS() *int64 { return (*int64)(unsafe.Pointer(&p.tcp)) }

// sctp returns an SCTP connection's state. It shares tcp's memory, which
// an SCTP connection never uses: Conn has no room for both (its budget is
// 232 bytes, TestMemoryPerEntry), and Go has no unions. Neither type holds
// pointers, so the garbage collector does not care which one is there.
func (p *protoState) sctp() *sctpState { return (*sctpState)(unsafe.Pointer(&p.tcp)) }

// sctpState must fit in tcpState and need no stricter alignment (each line
// fails to compile otherwise).
var (
	_ = [unsafe.Sizeof(tcpState{}) - unsafe.Sizeof(int64(0))]struct{}{}
	_ = [1]struct{}{}[unsafe.Offsetof(protoState{}.tcp)]
	_ = [unsafe.Sizeof(tcpState{}) - unsafe.Sizeof(sctpState{})]struct{}{}
	_ = [unsafe.Alignof(tcpState{}) - unsafe.Alignof(sctpState{})]struct{}{}
)
