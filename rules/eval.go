package rules

import (
	"sync/atomic"
	"unsafe"

	"go.uber.org/zap"

	"tungate/conntrack"
	"tungate/packet"
)

// Hook is where in the packet path a chain runs (netfilter's hooks).
type Hook uint8

// Hooks. HookPrerouting runs the raw table (before conntrack); the others
// run the filter table.
const (
	HookPrerouting Hook = iota
	HookInput
	HookForward
	HookOutput
	numHooks
)

// Packet is what a rule sees of one packet. The gateway fills one per
// packet (reusing it) and passes a pointer, so Eval copies nothing.
type Packet struct {
	// P is the decoded packet.
	P *packet.Parsed
	// In is the input interface index, -1 for none (locally generated).
	In int
	// Out is the output interface index, -1 when not known (input chain).
	Out int
	// Conn is the packet's connection; nil for INVALID/UNTRACKED.
	Conn *conntrack.Conn
	// Info is the packet's conntrack info; Info.State() is the ct_state bit.
	Info conntrack.Info
	// Mark is the packet mark; set_mark changes it.
	Mark uint32
	// Helper is set by a helper= rule on a NEW packet; the gateway assigns
	// it to the new connection.
	Helper string
	// Peer is 1 + the index of the WireGuard peer that sent the packet
	// (on input interface In, in its config order); 0 when it came from
	// no peer. Zero meaning none keeps every Packet literal correct.
	Peer int32
	// ClampMSS is set by a clamp_mss rule: the MSS a forwarded SYN is
	// clamped to (lowered, never raised), or ClampRouteMTU for the output
	// link's MTU less the IP and TCP headers; 0 when no rule asked.
	ClampMSS uint16
}

// ClampRouteMTU is Packet.ClampMSS for clamp_mss = "rt" (nft's "tcp option
// maxseg size set rt mtu"): the gateway works the MSS out of the route.
const ClampRouteMTU uint16 = 1

// Verdict is the fate of a packet.
type Verdict uint8

// Verdicts. Accept is the zero value: a hook with no chain accepts.
const (
	Accept Verdict = iota
	Drop
	Reject
	// SynProxy: a synproxy rule took the packet. The gateway answers a
	// SYN with a SYN cookie, turns the client's ACK that carries a valid
	// cookie into the connection to the server, and drops anything else
	// (Linux's SYNPROXY target, pf's synproxy state).
	SynProxy
)

// RejectKind is how a rejected packet is answered.
type RejectKind uint8

// Reject kinds. RejectDefault answers TCP with a RST and everything else
// with a port unreachable of the packet's family, as the issue that
// specified the rule language asks. (nft's plain reject differs: it sends
// port unreachable to TCP too; the conformance suite's R04/R05 record it.)
const (
	RejectDefault RejectKind = iota
	RejectTCPReset
	RejectICMPPortUnreachable
	RejectICMPHostUnreachable
	RejectICMPAdminProhibited
	RejectICMPv6PortUnreachable
	RejectICMPv6AddrUnreachable
	RejectICMPv6AdminProhibited
)

// Decision is the outcome of one hook's evaluation.
type Decision struct {
	Verdict Verdict
	// Reject says how to answer when Verdict is Reject.
	Reject RejectKind
	// Notrack is set when a raw prerouting rule applied notrack: the
	// packet skips connection tracking (it is UNTRACKED).
	Notrack bool
	// SynProxy holds the synproxy rule's options when Verdict is SynProxy.
	SynProxy SynProxyOptions
}

// SynProxyOptions are a synproxy rule's settings (nft's synproxy mss N
// wscale N timestamp sack-perm). What the gateway advertises to the client
// stands for the server, which it has not reached yet: MSS 0 means the
// route's MTU toward the server decides it.
type SynProxyOptions struct {
	MSS    uint16
	WScale uint8
	NoTS   bool
	NoSACK bool
}

// maxJumpDepth bounds nested jumps, like the kernel's NFT_JUMP_STACK_SIZE;
// Compile rejects configurations that could go deeper, so Eval's fixed
// stack never overflows.
const maxJumpDepth = 16

// counter is one rule's packet and byte count in one shard.
type counter struct {
	packets atomic.Uint64
	bytes   atomic.Uint64
}

// maxCounterShards is how many copies of each counter a Ruleset keeps.
// Two cores adding to one counter (the established rule, hit by every
// packet) bounce its cache line between them: measured on 2 cores, Eval went
// from 15 to 40-44 ns of CPU each, for the same counter and for adjacent
// ones alike. Each worker instead counts in the shard its Packet's address
// hashes to (the gateway keeps one Packet per worker), and readers sum the
// shards.
const maxCounterShards = 8

// maxCounterEntries bounds shards*rules so huge rulesets do not pay 8x in
// counter memory: past it, fewer shards.
const maxCounterEntries = 1 << 20

// chain is one compiled chain.
type chain struct {
	// path is the config path (filter.forward, filter.chains.NAME).
	path string
	// name is the short name: the hook's name or the user chain's.
	name   string
	base   bool
	hook   Hook
	policy Verdict

	rules []rule
	// counters holds one counter per rule per shard: shard s's counter
	// of rule i is counters[s*stride+i]. stride is a whole number of
	// cache lines and counters starts on one, so no two shards share a
	// line.
	counters []counter
	stride   int
	// segs cover rules in order; an indexed segment consults its index
	// for the rules that can match instead of trying each one.
	segs []segment
	// segOf maps a rule index to its segment, for resuming after a jump.
	segOf []int32
	// text is each rule's Dump form, split around its counter.
	text []ruleText
}

type ruleText struct{ pre, post, comment string }

// segment is a run of rules [start, end) of a chain; idx is nil for a run
// evaluated linearly.
type segment struct {
	start, end int32
	idx        *inode
}

// Ruleset is a compiled configuration: immutable but for counters and rate
// limiter state, safe for concurrent Eval from any number of goroutines.
type Ruleset struct {
	chains []chain
	// synproxy: some rule's action is synproxy.
	synproxy bool
	// hooks holds the chain index per hook, -1 for none.
	hooks  [numHooks]int32
	now    func() int64
	logger *zap.Logger
	ifaces []string
	// peers are the peer names per interface, for logs.
	peers [][]string
	sets  []setInfo
	// runtimeGen is the RuntimeSets change count its sets reflect.
	runtimeGen atomic.Uint64
	// shardShift turns a pointer hash into a shard index (64: one shard).
	shardShift uint8
}

type frame struct {
	chain int32
	pos   int32
}

// Eval runs the hook's chain over the packet. A hook with no chain
// configured accepts. It may change pk.Mark, pk.Helper and the connection
// mark (set_mark, helper, set_ct_mark).
func (rs *Ruleset) Eval(h Hook, pk *Packet) Decision {
	var d Decision
	if h >= numHooks || pk == nil || pk.P == nil {
		return d
	}
	ci := rs.hooks[h]
	if ci < 0 {
		return d
	}
	var stack [maxJumpDepth]frame
	sp := 0
	pos := 0
	shard := int((uint64(uintptr(unsafe.Pointer(pk))) * 0x9e3779b97f4a7c15) >> rs.shardShift)
	for {
		c := &rs.chains[ci]
		act, at := rs.run(c, pos, shard, h, pk, &d)
		switch act {
		case actAccept:
			d.Verdict = Accept
			return d
		case actDrop:
			d.Verdict = Drop
			return d
		case actReject:
			d.Verdict = Reject
			d.Reject = c.rules[at].reject
			return d
		case actSynProxy:
			d.Verdict = SynProxy
			d.SynProxy = c.rules[at].synproxy
			return d
		case actJump:
			stack[sp] = frame{ci, int32(at + 1)}
			sp++
			ci, pos = c.rules[at].target, 0
		case actGoto:
			ci, pos = c.rules[at].target, 0
		default: // return, or the end of the chain
			if sp == 0 {
				d.Verdict = rs.chains[rs.hooks[h]].policy
				return d
			}
			sp--
			ci, pos = stack[sp].chain, int(stack[sp].pos)
		}
	}
}

// run evaluates chain c from rule pos until a rule decides something, and
// returns the action with the deciding rule's index.
func (rs *Ruleset) run(c *chain, pos, shard int, h Hook, pk *Packet, d *Decision) (action, int) {
	if pos >= len(c.rules) {
		return actEnd, pos
	}
	p := pk.P
	for si := int(c.segOf[pos]); si < len(c.segs); si++ {
		s := &c.segs[si]
		if s.idx == nil {
			for i := max(pos, int(s.start)); i < int(s.end); i++ {
				if a := rs.try(c, i, shard, h, pk, p, d); a != actNone {
					return a, i
				}
			}
			continue
		}
		for _, i := range s.idx.lookup(p) {
			if int(i) < pos {
				continue
			}
			if a := rs.try(c, int(i), shard, h, pk, p, d); a != actNone {
				return a, int(i)
			}
		}
	}
	return actEnd, len(c.rules)
}

// try runs rule i: its matches, then (when they all match) its counter,
// statements and verdict.
func (rs *Ruleset) try(c *chain, i, shard int, h Hook, pk *Packet, p *packet.Parsed, d *Decision) action {
	r := &c.rules[i]
	if !r.match(pk, p) {
		return actNone
	}
	if r.has&mLimit != 0 && !r.lim.match(rs.now()) {
		return actNone
	}
	ctr := &c.counters[shard*c.stride+i]
	ctr.packets.Add(1)
	ctr.bytes.Add(uint64(p.Len()))
	if r.do != 0 {
		rs.statements(r, h, pk, d)
	}
	return r.verdict
}

// statements applies a matching rule's non-terminal statements, in the
// order nft would print them: log, then the marks, helper and notrack.
func (rs *Ruleset) statements(r *rule, h Hook, pk *Packet, d *Decision) {
	if r.do&doLog != 0 {
		r.log.write(rs, h, pk, rs.now())
	}
	if r.do&doSetMark != 0 {
		pk.Mark = r.setMark
	}
	if r.do&doSetCtMark != 0 && pk.Conn != nil {
		pk.Conn.SetMark(r.setCtMark)
	}
	if r.do&doHelper != 0 && pk.Info == conntrack.New {
		// Like nft's ct helper set: only a connection not yet confirmed
		// can get a helper.
		pk.Helper = r.helperName
	}
	if r.do&doNotrack != 0 {
		d.Notrack = true
	}
	if r.do&doClampMSS != 0 {
		// The last clamp_mss rule that matches decides, as each nft
		// statement rewrites what the one before set.
		pk.ClampMSS = r.clampMSS
	}
}

// RuleCounter is one rule's packet and byte count.
type RuleCounter struct {
	Packets, Bytes uint64
}

// Counters returns the counters of the chain with the given config path
// (filter.forward, filter.chains.NAME, raw.prerouting), one per rule in
// order, or nil when there is no such chain. For metrics and tests.
func (rs *Ruleset) Counters(path string) []RuleCounter {
	for i := range rs.chains {
		c := &rs.chains[i]
		if c.path != path {
			continue
		}
		out := make([]RuleCounter, len(c.rules))
		for j := range c.rules {
			out[j] = c.count(j)
		}
		return out
	}
	return nil
}

// count sums rule i's counter over the shards.
func (c *chain) count(i int) RuleCounter {
	var rc RuleCounter
	for s := i; s < len(c.counters); s += c.stride {
		rc.Packets += c.counters[s].packets.Load()
		rc.Bytes += c.counters[s].bytes.Load()
	}
	return rc
}

// allocCounters gives every chain its sharded, cache-line aligned counters.
func (rs *Ruleset) allocCounters() {
	total := 0
	for i := range rs.chains {
		total += len(rs.chains[i].rules)
	}
	shards, shift := maxCounterShards, uint8(64-3)
	for shards > 1 && total*shards > maxCounterEntries {
		shards /= 2
		shift++
	}
	rs.shardShift = shift
	const perLine = 64 / int(unsafe.Sizeof(counter{}))
	for i := range rs.chains {
		c := &rs.chains[i]
		c.stride = (len(c.rules) + perLine - 1) / perLine * perLine
		buf := make([]counter, shards*c.stride+perLine)
		// Allocations of 16-byte multiples are 16-byte aligned, so
		// skipping whole counters reaches a line boundary.
		off := int((64-uintptr(unsafe.Pointer(&buf[0]))%64)%64) / int(unsafe.Sizeof(counter{}))
		c.counters = buf[off : off+shards*c.stride]
	}
}
