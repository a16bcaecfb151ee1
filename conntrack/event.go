package conntrack

import (
	"sync/atomic"

	"tungate/packet"
)

// EventType is a kind of connection event (Linux's IPCT_NEW, …).
type EventType uint8

// Event types.
const (
	EventNew EventType = 1 << iota
	EventUpdate
	EventDestroy

	// EventAll selects every event type.
	EventAll = EventNew | EventUpdate | EventDestroy
)

// String names the event like `conntrack -E`.
func (e EventType) String() string {
	switch e {
	case EventNew:
		return "NEW"
	case EventUpdate:
		return "UPDATE"
	case EventDestroy:
		return "DESTROY"
	}
	return "?"
}

// Event is one connection event. Besides the connection it holds what a
// subscriber formatting it later must see as it was when the event
// happened: the status bits, the expiry and the protocol state (a NEW
// event shows SYN_SENT even if the subscriber reads it after the
// handshake). Packet and byte counters are read live.
type Event struct {
	Type EventType
	Conn *Conn
	// Status and Expires are the connection's at the event.
	Status  Status
	Expires int64
	// state is the TCP or SCTP state at the event; hasState says there
	// is one.
	state    uint8
	hasState bool
}

// AppendState appends the protocol state at the event (as Table's
// AppendState does for the present), nothing for DESTROY events and
// protocols without state.
func (e *Event) AppendState(b []byte) []byte {
	if !e.hasState {
		return b
	}
	switch e.Conn.node[DirOriginal].tuple.Proto {
	case packet.ProtoTCP:
		if int(e.state) < len(tcpStateNames) {
			return append(b, tcpStateNames[e.state]...)
		}
	case packet.ProtoSCTP:
		if int(e.state) < len(sctpStateNames) {
			return append(b, sctpStateNames[e.state]...)
		}
	}
	return b
}

// Subscription is one subscriber's feed of events. Events that find its
// channel full are dropped and counted, both here (Lost) and in the
// table's Stats.EventsLost, so a slow subscriber never stalls the datapath
// and still learns how much it missed.
type Subscription struct {
	// C delivers the events.
	C <-chan Event

	ch    chan Event
	types EventType
	lost  atomic.Uint64
	t     *Table
}

// Lost returns how many events this subscriber missed because its channel
// was full.
func (s *Subscription) Lost() uint64 { return s.lost.Load() }

// Cancel stops delivery. The channel is never closed, because an event
// being sent at that moment could not know.
func (s *Subscription) Cancel() {
	t := s.t
	t.subsMu.Lock()
	defer t.subsMu.Unlock()
	var keep []*Subscription
	if p := t.subs.Load(); p != nil {
		for _, o := range *p {
			if o != s {
				keep = append(keep, o)
			}
		}
	}
	if len(keep) == 0 {
		t.subs.Store(nil)
	} else {
		t.subs.Store(&keep)
	}
}

// SubscribeEvents returns a subscription to the event types in types (a
// mask of EventNew, EventUpdate, EventDestroy; 0 means all) with room for
// buf events. Events are sent synchronously by the call that caused them
// (Confirm, In, Delete), which never waits for a subscriber; types the
// subscriber did not ask for are not sent, so they cannot fill its channel.
func (t *Table) SubscribeEvents(buf int, types EventType) *Subscription {
	if types == 0 {
		types = EventAll
	}
	ch := make(chan Event, buf)
	s := &Subscription{C: ch, ch: ch, types: types, t: t}
	t.subsMu.Lock()
	var cur []*Subscription
	if p := t.subs.Load(); p != nil {
		cur = *p
	}
	next := append(append([]*Subscription(nil), cur...), s)
	t.subs.Store(&next)
	t.subsMu.Unlock()
	return s
}

// Subscribe returns a channel of every event with room for buf, and the
// function that stops delivery (SubscribeEvents, without the lost count).
func (t *Table) Subscribe(buf int) (events <-chan Event, cancel func()) {
	s := t.SubscribeEvents(buf, EventAll)
	return s.C, s.Cancel
}

// emit hands the event to every subscriber that wants its type, never
// waiting. Callers hold no connection lock (the snapshot takes it).
func (t *Table) emit(typ EventType, c *Conn) {
	p := t.subs.Load()
	if p == nil || len(*p) == 0 {
		return
	}
	want := false
	for _, s := range *p {
		want = want || s.types&typ != 0
	}
	if !want {
		return
	}
	ev := Event{Type: typ, Conn: c, Status: c.Status(), Expires: c.expires.Load()}
	// A subscriber keeps c for as long as it likes: never reuse it.
	c.SetStatus(statusPinned)
	if typ != EventDestroy {
		switch c.node[DirOriginal].tuple.Proto {
		case packet.ProtoTCP:
			c.mu.Lock()
			ev.state, ev.hasState = c.proto.tcp.state, true
			c.mu.Unlock()
		case packet.ProtoSCTP:
			c.mu.Lock()
			ev.state, ev.hasState = c.proto.sctp().state, true
			c.mu.Unlock()
		}
	}
	for _, s := range *p {
		if s.types&typ == 0 {
			continue
		}
		select {
		case s.ch <- ev:
		default:
			s.lost.Add(1)
			t.Stats.EventsLost.Add(1)
		}
	}
}
