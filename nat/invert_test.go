package nat

import (
	"testing"
	"time"

	"tungate/conntrack"
	"tungate/packet"
)

// TestInvertMatchesTrackers checks the local inversion against the
// conntrack trackers it stands in for, and the shortcuts built on it:
// replyVia, and current for a connection no manip changed.
func TestInvertMatchesTrackers(t *testing.T) {
	r := newRig(t, masqConf)
	for _, proto := range []uint8{packet.ProtoTCP, packet.ProtoUDP, packet.ProtoICMP, packet.ProtoICMPv6, packet.ProtoGRE, packet.ProtoESP, packet.ProtoSCTP, 99} {
		for typ := 0; typ < 256; typ++ {
			fam := uint8(4)
			if proto == packet.ProtoICMPv6 {
				fam = 6
			}
			tu := conntrack.Tuple{Src: addr("10.0.0.1"), Dst: addr("10.0.0.2"), SrcPort: 1234, DstPort: uint16(typ)<<8 | 3, Proto: proto, Family: fam}
			got := r.e.invert(&tu)
			want := trackerInvert(r.tbl.Tracker(proto), tu)
			if got != want {
				t.Fatalf("proto %d type %d: got %+v, want %+v", proto, typ, got, want)
			}
			next := tu
			next.Src, next.SrcPort = addr("198.18.0.1"), 40000
			var reply conntrack.Tuple
			r.e.replyVia(&tu, next.Src, next.SrcPort, &reply)
			if want := r.e.invert(&next); reply != want {
				t.Fatalf("proto %d type %d: replyVia %+v, want %+v", proto, typ, reply, want)
			}
			c := r.tbl.NewUnconfirmed(tu, r.tbl.Now(), time.Minute)
			if cur, want := r.e.current(c), r.e.invert(c.Tuple(conntrack.DirReply)); cur != want {
				t.Fatalf("proto %d type %d: current %+v, want %+v", proto, typ, cur, want)
			}
		}
	}
}
