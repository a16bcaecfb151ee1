package admin_test

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/zap"

	"tungate/admin"
	"tungate/gateway"
	"tungate/link/wireguard"
)

// TestWgShow: `wg show` through the socket prints a running gateway's
// WireGuard interface in wg show's format, narrowed by name, and says so
// when there is no such interface.
func TestWgShow(t *testing.T) {
	priv, err := wireguard.GenKey()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := wireguard.PubKey(priv)
	peerPriv, _ := wireguard.GenKey()
	peerPub, _ := wireguard.PubKey(peerPriv)
	cfg, err := gateway.ParseConfig([]byte(`
[[interface]]
name = "wg0"
kind = "wireguard"
private_key = "` + priv + `"
allow_inline_key = true
addresses = ["10.8.0.1/24", "fd08::1/64"]
[[interface.peer]]
name = "alice"
public_key = "` + peerPub + `"
allowed_ips = ["10.8.0.2/32", "fd08::2/128"]
`))
	if err != nil {
		t.Fatal(err)
	}
	g, err := gateway.New(cfg, gateway.Options{Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	sock := filepath.Join(t.TempDir(), "admin.sock")
	srv, err := admin.Listen(g, sock)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	var out bytes.Buffer
	if _, err := admin.Do(context.Background(), sock, &admin.Request{Cmd: "wg show"}, &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"interface: wg0", "public key: " + pub, "private key: (hidden)", "peer: " + peerPub, "allowed ips: 10.8.0.2/32, fd08::2/128"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("wg show lacks %q:\n%s", want, out.String())
		}
	}
	out.Reset()
	if _, err := admin.Do(context.Background(), sock, &admin.Request{Cmd: "wg show", Interface: "wg9"}, &out); err == nil || !strings.Contains(err.Error(), `no wireguard interface "wg9"`) {
		t.Errorf("wg show wg9: want a no-such-interface error, got %v", err)
	}
}
