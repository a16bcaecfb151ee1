package conntrack

// EventType is a kind of connection event (Linux's IPCT_NEW, …).
type EventType uint8

// Event types.
const (
	EventNew EventType = 1 << iota
	EventUpdate
	EventDestroy
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

// Event is one connection event.
type Event struct {
	Type EventType
	Conn *Conn
}

// Subscribe returns a channel of events with room for buf; events that find
// it full are counted (Stats.EventsLost) and dropped, so a slow subscriber
// never stalls the datapath. Events are sent synchronously by the call that
// caused them (Confirm, In, Delete). cancel stops delivery; the channel is
// never closed, because an event being sent at that moment could not know.
func (t *Table) Subscribe(buf int) (events <-chan Event, cancel func()) {
	ch := make(chan Event, buf)
	t.subsMu.Lock()
	var cur []chan Event
	if p := t.subs.Load(); p != nil {
		cur = *p
	}
	next := append(append([]chan Event(nil), cur...), ch)
	t.subs.Store(&next)
	t.subsMu.Unlock()
	return ch, func() {
		t.subsMu.Lock()
		defer t.subsMu.Unlock()
		var keep []chan Event
		if p := t.subs.Load(); p != nil {
			for _, c := range *p {
				if c != ch {
					keep = append(keep, c)
				}
			}
		}
		if len(keep) == 0 {
			t.subs.Store(nil)
		} else {
			t.subs.Store(&keep)
		}
	}
}

func (t *Table) emit(typ EventType, c *Conn) {
	p := t.subs.Load()
	if p == nil || len(*p) == 0 {
		return
	}
	// A subscriber keeps c for as long as it likes: never reuse it.
	c.SetStatus(statusPinned)
	for _, ch := range *p {
		select {
		case ch <- Event{Type: typ, Conn: c}:
		default:
			t.Stats.EventsLost.Add(1)
		}
	}
}
