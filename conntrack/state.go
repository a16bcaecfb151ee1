package conntrack

// protoState is the per-connection state of its tracker; each tracker uses
// its own part, guarded by Conn.mu.
type protoState struct {
	// streamTS: UDP becomes a stream when replied after this time.
	streamTS int64
	tcp      tcpState
	// ESP: the peer's SPI once learnt.
	espPeerSPI uint32
	espLearned bool
}
