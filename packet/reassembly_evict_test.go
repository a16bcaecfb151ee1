package packet

import "testing"

// At the datagram limit the oldest incomplete datagram is evicted for a
// new one, also when the other family has none: oldest(nil) took an empty
// list's nil head for the queue to skip and dereferenced it. FuzzPipeline
// found the panic after enough IPv4 fragment heads had piled up in the
// gateway's reassembler; any remote sender could have crashed the gateway
// with max_datagrams+1 first fragments of one family.
func TestEvictWithOneFamilyEmpty(t *testing.T) {
	for _, fam6 := range []bool{false, true} {
		t.Run(famName(fam6), func(t *testing.T) {
			const max = 4
			r := NewReassembler(ReassemblyConfig{MaxDatagrams: max})
			out := make([]byte, 65535+40)
			for id := range uint32(max + 3) {
				res, err := add(t, r, piece(fam6, id+1, 0, true, []byte("12345678")), int64(id), out)
				if err != nil || res.Done {
					t.Fatalf("fragment head %d: %+v %v", id, res, err)
				}
			}
			s := r.Stats()
			if s.Datagrams != max || s.Evicted != 3 {
				t.Fatalf("%d datagrams kept, %d evicted; want %d and 3", s.Datagrams, s.Evicted, max)
			}
		})
	}
}
