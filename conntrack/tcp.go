package conntrack

import (
	"time"

	"tungate/packet"
)

// Placeholder TCP tracker: replaced by the window-tracking implementation.

type tcpState struct {
	state uint8
}

var tcpStateNames = [...]string{"NONE", "SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT", "CLOSE_WAIT", "LAST_ACK", "TIME_WAIT", "CLOSE", "SYN_SENT2"}

type tcpTracker struct{}

func (*tcpTracker) Name() string { return "tcp" }
func (*tcpTracker) Tuple(p *packet.Parsed, t *Tuple) bool {
	if !p.HasL4 {
		return false
	}
	t.SrcPort, t.DstPort = p.SrcPort, p.DstPort
	return true
}
func (*tcpTracker) Invert(orig, inv *Tuple) { inv.SrcPort, inv.DstPort = orig.DstPort, orig.SrcPort }
func (*tcpTracker) Error(p *packet.Parsed, cfg *Config) Check {
	if cfg.checksum() && !p.L4ChecksumValid() {
		return CheckInvalid
	}
	return CheckOK
}
func (*tcpTracker) New(c *Conn, p *packet.Parsed, cfg *Config, now int64) bool {
	c.proto.tcp.state = 1
	return true
}
func (*tcpTracker) Packet(c *Conn, p *packet.Parsed, dir Dir, cfg *Config, now int64) (Verdict, time.Duration, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if dir == DirReply && c.proto.tcp.state == 1 {
		c.proto.tcp.state = 3
		c.SetStatus(StatusAssured)
	}
	return Accept, time.Duration(cfg.Timeouts.TCPEstablished), false
}
func (*tcpTracker) AppendPorts(b []byte, t *Tuple) []byte { return appendPorts(b, t) }
func (*tcpTracker) AppendState(b []byte, c *Conn) []byte {
	c.mu.Lock()
	s := c.proto.tcp.state
	c.mu.Unlock()
	b = append(b, tcpStateNames[s]...)
	return append(b, ' ')
}
