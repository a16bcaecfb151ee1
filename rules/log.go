package rules

import (
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"tungate/packet"
)

// Log rate limit per rule: a flood of matching packets must not turn into a
// flood of log lines (nft's log has no limit of its own, which is why nft
// users pair it with limit; we build it in).
const (
	logRate  = 10 // lines per second
	logBurst = 5
)

// ruleLog is a rule's log= statement.
type ruleLog struct {
	prefix string
	chain  string
	index  int
	lim    *limiter
	// suppressed counts lines the rate limit swallowed since the last
	// line written, reported on the next one.
	suppressed atomic.Uint64
}

func newRuleLog(prefix, chain string, index int) *ruleLog {
	return &ruleLog{
		prefix: prefix,
		chain:  chain,
		index:  index,
		lim:    newLimiter(int64(time.Second)/logRate, logBurst, false),
	}
}

// write logs one packet. It allocates (zap fields, address strings), which
// is acceptable only because the rate limit bounds how often it runs.
func (l *ruleLog) write(rs *Ruleset, h Hook, pk *Packet, now int64) {
	if rs.logger == nil {
		return
	}
	if !l.lim.allow(now) {
		l.suppressed.Add(1)
		return
	}
	ce := rs.logger.Check(zapcore.InfoLevel, "rule log")
	if ce == nil {
		return
	}
	p := pk.P
	fields := make([]zap.Field, 0, 16)
	fields = append(fields,
		zap.String("prefix", l.prefix),
		zap.String("hook", h.String()),
		zap.String("chain", l.chain),
		zap.Int("rule", l.index),
		zap.String("in", rs.ifaceName(pk.In)),
		zap.String("out", rs.ifaceName(pk.Out)),
	)
	if pk.Peer > 0 {
		fields = append(fields, zap.String("peer", rs.peerName(pk.In, pk.Peer)))
	}
	fields = append(fields,
		zap.Stringer("src", p.SrcIP()),
		zap.Stringer("dst", p.DstIP()),
		zap.Uint8("proto", p.Proto),
		zap.Int("len", p.Len()),
	)
	switch {
	case hasPorts(p):
		fields = append(fields, zap.Uint16("sport", p.SrcPort), zap.Uint16("dport", p.DstPort))
	case p.HasL4 && p.IsICMP():
		fields = append(fields, zap.Uint8("icmp_type", p.ICMPType), zap.Uint8("icmp_code", p.ICMPCode))
	}
	if p.Proto == packet.ProtoTCP && p.HasL4 {
		fields = append(fields, zap.String("tcp_flags", tcpFlagsString(p.TCPFlags)))
	}
	fields = append(fields,
		zap.String("ct_state", stateString(pk.Info.State())),
		zap.Uint32("mark", pk.Mark),
	)
	if c := pk.Conn; c != nil {
		dir := "original"
		if pk.Info.IsReply() {
			dir = "reply"
		}
		fields = append(fields,
			zap.String("ct_direction", dir),
			zap.Uint32("ct_mark", c.Mark()),
			zap.String("ct_status", statusString(c.Status())),
		)
	}
	if n := l.suppressed.Swap(0); n > 0 {
		fields = append(fields, zap.Uint64("suppressed", n))
	}
	ce.Write(fields...)
}

func (rs *Ruleset) ifaceName(i int) string {
	if i < 0 || i >= len(rs.ifaces) {
		return ""
	}
	return rs.ifaces[i]
}

// peerName names peer (Packet.Peer) of interface in, "" if unknown.
func (rs *Ruleset) peerName(in int, peer int32) string {
	return rs.PeerName(in, int(peer)-1)
}

// PeerName is the name the rule set was compiled with for peer index of
// interface in, "" when it knows none: the gateway checks it against the
// link's own so rules never judge a packet by a stale numbering.
func (rs *Ruleset) PeerName(in, index int) string {
	if in < 0 || in >= len(rs.peers) || index < 0 || index >= len(rs.peers[in]) {
		return ""
	}
	return rs.peers[in][index]
}

// PeerNameRef is PeerName as a pointer into the rule set's list (nil when
// it knows none), for conntrack.Conn.SetPeer: the list is never changed,
// so a connection can keep the name without a copy.
func (rs *Ruleset) PeerNameRef(in, index int) *string {
	if in < 0 || in >= len(rs.peers) || index < 0 || index >= len(rs.peers[in]) {
		return nil
	}
	return &rs.peers[in][index]
}
