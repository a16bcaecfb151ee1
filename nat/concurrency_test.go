package nat

import (
	"fmt"
	"sync"
	"testing"

	"tungate/conntrack"
	"tungate/packet"
)

// TestEstablishedZeroAllocs: the established path (decode, conntrack,
// both NAT hooks) allocates nothing, either direction.
func TestEstablishedZeroAllocs(t *testing.T) {
	r := newRig(t, masqConf)
	r.tcpOpen("10.10.0.2:40000", "203.0.113.5:80", lan, wan)
	out := tcp("10.10.0.2:40000", "203.0.113.5:80", packet.TCPAck, 1001, 5001).bytes()
	in := tcp("203.0.113.5:80", "198.18.0.1:40000", packet.TCPAck, 5001, 1001).bytes()
	buf := make([]byte, 128)
	var p packet.Parsed
	var res conntrack.Result
	i := 0
	allocs := testing.AllocsPerRun(1000, func() {
		src, from, to := out, lan, wan
		if i&1 == 1 {
			src, from, to = in, wan, lan
		}
		i++
		n := copy(buf, src)
		if err := p.Decode(buf[:n]); err != nil {
			t.Fatal(err)
		}
		r.tbl.In(&p, r.tbl.Now(), &res)
		r.e.Prerouting(&p, &res, from)
		if !r.e.Postrouting(&p, &res, from, to) || res.Conn == nil {
			t.Fatal("dropped")
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per packet", allocs)
	}
	v := verify(t, p.Bytes())
	expectAddrs(t, "last packet", v, "198.18.0.1:40000", "203.0.113.5:80")
}

// TestConcurrentReaders runs two readers making and ending connections on
// one engine while a third forwards an established flow, then checks that
// no two live endpoints share an external port and that everything is
// released. Run with -race.
func TestConcurrentReaders(t *testing.T) {
	r := newRig(t, masqConf+`
[[nat.dnat]]
proto = "udp"
dport = 9999
to = "10.10.0.250:9999"
`)
	r.tcpOpen("10.10.0.2:40000", "203.0.113.5:80", lan, wan)
	type live struct {
		c   *conntrack.Conn
		int string
	}
	var mu sync.Mutex
	owner := map[string]string{} // external endpoint -> internal endpoint
	var wg sync.WaitGroup
	var failed sync.Once
	fail := func(f string, a ...any) { failed.Do(func() { t.Errorf(f, a...) }) }
	for g := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var keep []live
			var p packet.Parsed
			var res conntrack.Result
			for i := range 3000 {
				src := fmt.Sprintf("10.10.0.%d:%d", g*100+i%50+2, 1024+i%40)
				b := udp(src, fmt.Sprintf("203.0.113.%d:53", i%7+1), "q").bytes()
				if p.Decode(b) != nil {
					fail("decode")
					return
				}
				now := r.tbl.Now()
				r.tbl.In(&p, now, &res)
				if res.Conn == nil {
					fail("no conn")
					return
				}
				r.e.Prerouting(&p, &res, lan)
				if !r.e.Postrouting(&p, &res, lan, wan) {
					fail("dropped: %+v", r.e.Stats())
					return
				}
				if !res.Conn.Confirmed() {
					if err := r.tbl.Confirm(res.Conn, now); err != nil {
						fail("confirm: %v", err)
						return
					}
				}
				ext := p.SrcIP().String() + fmt.Sprint(":", p.SrcPort)
				mu.Lock()
				if o, ok := owner[ext]; ok && o != src {
					fail("%s given to %s while %s holds it", ext, src, o)
				}
				owner[ext] = src
				mu.Unlock()
				keep = append(keep, live{res.Conn, src})
				if len(keep) > 200 {
					old := keep[0]
					keep = keep[1:]
					// Forget the owner before the port can be reused.
					mu.Lock()
					still := false
					for _, k := range keep {
						if k.int == old.int {
							still = true
						}
					}
					if !still {
						for e, o := range owner {
							if o == old.int {
								delete(owner, e)
							}
						}
					}
					r.tbl.Delete(old.c)
					mu.Unlock()
				}
			}
			mu.Lock()
			for _, k := range keep {
				for e, o := range owner {
					if o == k.int {
						delete(owner, e)
					}
				}
				r.tbl.Delete(k.c)
			}
			mu.Unlock()
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		var p packet.Parsed
		var res conntrack.Result
		for i := range 3000 {
			b := tcp("203.0.113.5:80", "198.18.0.1:40000", packet.TCPAck, 5001, 1001).bytes()
			in, out := wan, lan
			if i&1 == 0 {
				b = tcp("10.10.0.2:40000", "203.0.113.5:80", packet.TCPAck, 1001, 5001).bytes()
				in, out = lan, wan
			}
			if p.Decode(b) != nil {
				fail("decode")
				return
			}
			r.tbl.In(&p, r.tbl.Now(), &res)
			r.e.Prerouting(&p, &res, in)
			if !r.e.Postrouting(&p, &res, in, out) {
				fail("established dropped")
				return
			}
			if i&1 == 1 && p.DstIP().String() != "10.10.0.2" {
				fail("reply went to %v", p.DstIP())
				return
			}
		}
	}()
	wg.Wait()
	if st := r.e.Stats(); st.Mappings != 1 {
		t.Fatalf("mappings left: %+v", st)
	}
	// All UDP ports are free again, but the forwarded one.
	r.e.mu.Lock()
	defer r.e.mu.Unlock()
	s := r.e.sets[setKey{addr("198.18.0.1"), 4, packet.ProtoUDP}]
	if s == nil || s.held != 1 || !s.has(9999) {
		t.Fatalf("udp port set after release: held %d", s.held)
	}
}
