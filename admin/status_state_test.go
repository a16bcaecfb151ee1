package admin

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// A down interface says so with its reason; a reload shows its changes.
func TestStatusTextDownAndReload(t *testing.T) {
	st := &Status{
		Started:    time.Unix(0, 0),
		LastReload: &ReloadStatus{Time: time.Unix(100, 0), Changes: 3},
		Interfaces: []InterfaceStatus{
			{Name: "lan", Kind: "tun", TUN: "tg-lan", MTU: 1500, State: "up"},
			{Name: "wan", Kind: "tun", TUN: "tg-wan", MTU: 1500, State: "down", DownReason: "device went away (deleted?): file already closed"},
		},
	}
	var b bytes.Buffer
	st.writeText(&b)
	out := b.String()
	for _, want := range []string{
		"last reload: 1970-01-01T00:01:40Z ok, 3 changes\n",
		"  wan      tun=tg-wan mtu=1500 \n           DOWN: device went away (deleted?): file already closed\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	if strings.Count(out, "DOWN") != 1 {
		t.Errorf("an up interface shows down:\n%s", out)
	}
}
