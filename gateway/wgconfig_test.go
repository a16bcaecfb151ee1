package gateway

import (
	"strings"
	"testing"
)

// The keys of one kind of interface are refused on another, each error
// located at the key and naming it; wireguard errors carry the interface's
// key path in front of link/wireguard's own.
func TestInterfaceKindErrors(t *testing.T) {
	priv, pub := wgKeys(t)
	_, pub2 := wgKeys(t)
	key := writeKey(t, priv)
	base := twoIfaces + "\n[[interface]]\nname = \"wg0\"\nkind = \"wireguard\"\nprivate_key_file = \"" + key + "\"\n"
	peer := "[[interface.peer]]\nname = \"alice\"\npublic_key = \"" + pub2 + "\"\nallowed_ips = [\"10.8.0.2\"]\n"
	for _, tc := range []struct {
		name, text, want string
	}{
		{"tun key on wireguard", base + "tun = \"x\"\n" + peer,
			`:15:7: interface[2].tun: "tun" is a key of tun interfaces, not of kind "wireguard"`},
		{"wireguard key on tun", strings.Replace(twoIfaces, "tun = \"t1\"\n", "tun = \"t1\"\nlisten_port = 51820\n", 1),
			`:9:15: interface[1].listen_port: "listen_port" is a key of wireguard interfaces, not of kind "tun"`},
		{"peer block on tun", twoIfaces + "[[interface.peer]]\nname = \"x\"\n",
			`interface[1].peer: "peer" is a key of wireguard interfaces, not of kind "tun"`},
		{"unknown kind", strings.Replace(twoIfaces, "tun = \"t1\"\n", "kind = \"wiregaurd\"\n", 1),
			`interface[1].kind: unknown kind "wiregaurd" (did you mean "wireguard"?)`},
		{"peer error located", base + peer + "[[interface.peer]]\nname = \"bob\"\npublic_key = \"nope\"\n",
			`:21:14: interface[2].peer[1].public_key: decodes to 3 bytes, want 32`},
		{"own key as peer", base + "[[interface.peer]]\nname = \"me\"\npublic_key = \"" + pub + "\"\n",
			`interface[2].peer[0].public_key: is the interface's own public key`},
		{"inline key refused", twoIfaces + "[[interface]]\nname = \"wg0\"\nkind = \"wireguard\"\nprivate_key = \"" + priv + "\"\n",
			`interface[2].private_key: an inline key is refused`},
		{"no key", twoIfaces + "[[interface]]\nname = \"wg0\"\nkind = \"wireguard\"\n",
			`interface[2].private_key_file: missing`},
		{"mtu of wireguard", base + "mtu = 65500\n",
			`interface[2].mtu: 65500 out of range (1280-65455)`},
		{"small mtu of wireguard reported once", base + "mtu = 1000\n",
			`interface[2].mtu: 1000 out of range (1280-65455)`},
		{"unknown peer in a rule", base + peer + "[filter.forward]\nrules = [ { peer = \"alcie\", action = \"accept\" } ]\n",
			`filter.forward.rules[0].peer: unknown peer "alcie" (did you mean "alice"?)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := checkFile(t, tc.text)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v\nwant one containing %s", err, tc.want)
			}
			if n := strings.Count(err.Error(), "\n") + 1; n != 1 {
				t.Errorf("%d errors, want 1:\n%v", n, err)
			}
		})
	}
}

func TestWireGuardInterfaceDefaults(t *testing.T) {
	priv, _ := wgKeys(t)
	_, pub2 := wgKeys(t)
	key := writeKey(t, priv)
	_, c, err := checkFile(t, twoIfaces+"\n[[interface]]\nname = \"wg0\"\nkind = \"wireguard\"\nprivate_key_file = \""+key+
		"\"\n[[interface.peer]]\nname = \"alice\"\npublic_key = \""+pub2+"\"\n"+
		"[[interface]]\nname = \"wg1\"\nkind = \"wireguard\"\nmtu = 1380\nclamp_mss = false\nprivate_key_file = \""+key+"\"\n")
	if err != nil {
		t.Fatal(err)
	}
	if ic := c.Interface[2]; ic.MTU != 1420 || !ic.clamp || ic.Kind != KindWireGuard {
		t.Errorf("wg0: mtu %d clamp %v kind %q, want 1420 true wireguard", ic.MTU, ic.clamp, ic.Kind)
	}
	if ic := c.Interface[3]; ic.MTU != 1380 || ic.clamp {
		t.Errorf("wg1: mtu %d clamp %v, want 1380 false", ic.MTU, ic.clamp)
	}
	if ic := c.Interface[0]; ic.Kind != KindTUN || ic.MTU != 1500 || ic.clamp {
		t.Errorf("lan: kind %q mtu %d clamp %v", ic.Kind, ic.MTU, ic.clamp)
	}
	if got := c.Interface[2].PeerNames(); len(got) != 1 || got[0] != "alice" {
		t.Errorf("peer names %v", got)
	}
}
