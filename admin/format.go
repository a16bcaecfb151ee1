package admin

import (
	"strconv"

	"tungate/conntrack"
)

// ConnJSON is one connection in `ct list -o json` (one object per line in
// a JSON array) and in `ct events -o json`.
type ConnJSON struct {
	ID       uint32    `json:"id"`
	Family   string    `json:"family"`
	Proto    string    `json:"proto"`
	ProtoNum uint8     `json:"protonum"`
	Timeout  int64     `json:"timeout"`
	State    string    `json:"state,omitempty"`
	Orig     TupleJSON `json:"original"`
	Reply    TupleJSON `json:"reply"`
	Status   []string  `json:"status"`
	Mark     uint32    `json:"mark"`
	Peer     string    `json:"peer,omitempty"`
	Helper   string    `json:"helper,omitempty"`
	Use      int       `json:"use"`
}

// TupleJSON is one direction of a connection. Ports appear for protocols
// with ports, type/code/id for ICMP; packets and bytes when the table
// counts them.
type TupleJSON struct {
	Src     string  `json:"src"`
	Dst     string  `json:"dst"`
	Sport   *uint16 `json:"sport,omitempty"`
	Dport   *uint16 `json:"dport,omitempty"`
	Type    *uint8  `json:"type,omitempty"`
	Code    *uint8  `json:"code,omitempty"`
	ICMPID  *uint16 `json:"icmp_id,omitempty"`
	Packets *uint64 `json:"packets,omitempty"`
	Bytes   *uint64 `json:"bytes,omitempty"`
}

// EventJSON is one line of `ct events -o json`: an event with its
// connection, or (Type "LOST") how many events the reader missed.
type EventJSON struct {
	Type string    `json:"type"`
	Conn *ConnJSON `json:"conn,omitempty"`
	Lost uint64    `json:"lost,omitempty"`
}

// ExpectJSON is one expectation in `expect list -o json`.
type ExpectJSON struct {
	ID       uint32    `json:"id"`
	Timeout  int64     `json:"timeout"`
	Proto    uint8     `json:"protonum"`
	Tuple    TupleJSON `json:"tuple"`
	Mask     TupleJSON `json:"mask"`
	Master   TupleJSON `json:"master"`
	Class    uint8     `json:"class"`
	Helper   string    `json:"helper,omitempty"`
	Follows  bool      `json:"helper_follows,omitempty"`
	MasterID uint32    `json:"master_id"`
}

// statusNames name the status bits in JSON, as conntrack's XML output and
// libnetfilter_conntrack name them.
var statusNames = [...]struct {
	bit  conntrack.Status
	name string
}{
	{conntrack.StatusExpected, "EXPECTED"}, {conntrack.StatusSeenReply, "SEEN_REPLY"},
	{conntrack.StatusAssured, "ASSURED"}, {conntrack.StatusConfirmed, "CONFIRMED"},
	{conntrack.StatusSrcNAT, "SRC_NAT"}, {conntrack.StatusDstNAT, "DST_NAT"},
	{conntrack.StatusSeqAdjust, "SEQ_ADJUST"}, {conntrack.StatusSrcNATDone, "SRC_NAT_DONE"},
	{conntrack.StatusDstNATDone, "DST_NAT_DONE"}, {conntrack.StatusDying, "DYING"},
	{conntrack.StatusFixedTO, "FIXED_TIMEOUT"}, {conntrack.StatusOffload, "OFFLOAD"},
}

// appendJSONString appends s as a JSON string.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c < 0x20:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&15])
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}

func appendKey(b []byte, key string) []byte {
	b = append(b, '"')
	b = append(b, key...)
	return append(b, '"', ':')
}

func appendUintField(b []byte, key string, v uint64) []byte {
	b = appendKey(b, key)
	return strconv.AppendUint(b, v, 10)
}

// appendTupleJSON appends one direction of c (its counters too, when acct).
func appendTupleJSON(b []byte, tu *conntrack.Tuple, k *conntrack.Counters, acct bool) []byte {
	b = append(b, '{')
	b = appendKey(b, "src")
	b = append(b, '"')
	b = tu.SrcAddr().AppendTo(b)
	b = append(b, '"', ',')
	b = appendKey(b, "dst")
	b = append(b, '"')
	b = tu.DstAddr().AppendTo(b)
	b = append(b, '"')
	switch {
	case hasPorts(tu.Proto):
		b = appendUintField(append(b, ','), "sport", uint64(tu.SrcPort))
		b = appendUintField(append(b, ','), "dport", uint64(tu.DstPort))
	case tu.Proto == 1 || tu.Proto == 58:
		// The ICMP tracker keeps type<<8|code in DstPort and the echo
		// identifier in SrcPort.
		b = appendUintField(append(b, ','), "type", uint64(tu.DstPort>>8))
		b = appendUintField(append(b, ','), "code", uint64(tu.DstPort&0xff))
		b = appendUintField(append(b, ','), "icmp_id", uint64(tu.SrcPort))
	}
	if acct && k != nil {
		b = appendUintField(append(b, ','), "packets", k.Packets.Load())
		b = appendUintField(append(b, ','), "bytes", k.Bytes.Load())
	}
	return append(b, '}')
}

// appendConnJSON appends c as one ConnJSON object, without a newline; with
// ev, the status, timeout and state are the event's (none for DESTROY).
// It is written by hand so a million entries cost no reflection.
func appendConnJSON(b []byte, t *conntrack.Table, c *conntrack.Conn, now int64, scratch []byte, ev *conntrack.Event) ([]byte, []byte) {
	o := c.Tuple(conntrack.DirOriginal)
	b = append(b, '{')
	b = appendUintField(b, "id", uint64(conntrack.ConnID(c)))
	b = append(b, ',')
	b = appendKey(b, "family")
	if o.Family == 4 {
		b = append(b, `"ipv4"`...)
	} else {
		b = append(b, `"ipv6"`...)
	}
	b = append(b, ',')
	b = appendKey(b, "proto")
	b = appendJSONString(b, t.Tracker(o.Proto).Name())
	b = appendUintField(append(b, ','), "protonum", uint64(o.Proto))
	expires, st := c.Expires(), c.Status()
	if ev != nil {
		expires, st = ev.Expires, ev.Status
	}
	left := (expires - now) / 1e9
	if left < 0 {
		left = 0
	}
	if ev == nil || ev.Type != conntrack.EventDestroy {
		b = append(b, ',')
		b = appendKey(b, "timeout")
		b = strconv.AppendInt(b, left, 10)
	}
	if ev != nil {
		scratch = ev.AppendState(scratch[:0])
	} else {
		scratch = t.AppendState(scratch[:0], c)
	}
	if len(scratch) > 0 {
		b = append(b, ',')
		b = appendKey(b, "state")
		b = append(b, '"') // state names are plain upper-case words
		b = append(b, scratch...)
		b = append(b, '"')
	}
	acct := t.Accounting()
	b = append(b, ',')
	b = appendKey(b, "original")
	b = appendTupleJSON(b, o, c.Counters(conntrack.DirOriginal), acct)
	b = append(b, ',')
	b = appendKey(b, "reply")
	r := t.ShownReplyOf(c)
	b = appendTupleJSON(b, &r, c.Counters(conntrack.DirReply), acct)
	b = append(b, ',')
	b = appendKey(b, "status")
	b = append(b, '[')
	first := true
	for _, s := range statusNames {
		if st&s.bit != 0 {
			if !first {
				b = append(b, ',')
			}
			first = false
			b = appendJSONString(b, s.name)
		}
	}
	b = append(b, ']', ',')
	b = appendUintField(b, "mark", uint64(c.Mark()))
	if p := c.Peer(); p != "" {
		b = append(b, ',')
		b = appendKey(b, "peer")
		b = appendJSONString(b, p)
	}
	if h := c.Helper(); h != "" {
		b = append(b, ',')
		b = appendKey(b, "helper")
		b = appendJSONString(b, h)
	}
	b = appendUintField(append(b, ','), "use", uint64(c.Uses()))
	return append(b, '}'), scratch
}

// appendConnText appends c in the `conntrack -L` line format; withID adds
// conntrack -o id's id= field.
func appendConnText(b []byte, t *conntrack.Table, c *conntrack.Conn, now int64, withID bool) []byte {
	b = t.AppendConn(b, c, now)
	if withID {
		b = append(b, " id="...)
		b = strconv.AppendUint(b, uint64(conntrack.ConnID(c)), 10)
	}
	return b
}

// appendEventText appends one event line as `conntrack -E` prints it;
// withID adds the id= field.
func appendEventText(b []byte, t *conntrack.Table, ev *conntrack.Event, now int64, withID bool) []byte {
	b = t.AppendEvent(b, ev, now)
	if withID {
		b = append(b, " id="...)
		b = strconv.AppendUint(b, uint64(conntrack.ConnID(ev.Conn)), 10)
	}
	return b
}

// appendExpectJSON appends e as one ExpectJSON object.
func appendExpectJSON(b []byte, e *conntrack.Expectation, now int64) []byte {
	left := (e.Expires - now) / 1e9
	if left < 0 {
		left = 0
	}
	b = append(b, '{')
	b = appendUintField(b, "id", uint64(conntrack.ExpectationID(e)))
	b = append(b, ',')
	b = appendKey(b, "timeout")
	b = strconv.AppendInt(b, left, 10)
	b = appendUintField(append(b, ','), "protonum", uint64(e.Tuple.Proto))
	b = append(b, ',')
	b = appendKey(b, "tuple")
	b = appendTupleJSON(b, &e.Tuple, nil, false)
	m := conntrack.Tuple{Src: e.Mask.Src, Dst: e.Mask.Dst, SrcPort: e.Mask.SrcPort, DstPort: e.Mask.DstPort, Proto: e.Tuple.Proto, Family: e.Tuple.Family}
	b = append(b, ',')
	b = appendKey(b, "mask")
	b = appendTupleJSON(b, &m, nil, false)
	b = append(b, ',')
	b = appendKey(b, "master")
	b = appendTupleJSON(b, e.Master.Tuple(conntrack.DirOriginal), nil, false)
	b = appendUintField(append(b, ','), "master_id", uint64(conntrack.ConnID(e.Master)))
	b = appendUintField(append(b, ','), "class", uint64(e.Class))
	if e.Helper != "" {
		b = append(b, ',')
		b = appendKey(b, "helper")
		b = appendJSONString(b, e.Helper)
	}
	if e.HelperFollows {
		b = append(b, `,"helper_follows":true`...)
	}
	return append(b, '}')
}
