package conntrack

// protoState is the per-connection state of its tracker; each tracker uses
// its own part, guarded by Conn.mu (or written before confirmation and then
// only read).
type protoState struct {
	// streamTS: UDP becomes a stream when replied after this time (set
	// before confirmation, then read-only).
	streamTS int64
	tcp      tcpState
}
