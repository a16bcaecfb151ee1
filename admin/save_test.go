package admin

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"tungate/admin/admintest"
	"tungate/packet"
)

// TestSave: `save` through the socket writes the running table to the
// config's state file (beside the config) and says what it wrote; without
// a state file configured it is an error that names the key.
func TestSave(t *testing.T) {
	conf := strings.Replace(admintest.Config, "max = 4096\n", "max = 4096\nstate_file = \"ct.state\"\n", 1)
	client, server := admintest.NewHost(t, "10.10.0.2"), admintest.NewHost(t, "198.18.0.2")
	g, path := admintest.Gateway(t, conf, client, server)
	for _, p := range []uint16{1000, 1001, 1002} {
		admintest.Insert(t, g.Table(), admintest.Conn{Src: "10.10.0.2", Dst: "198.18.0.2", Sport: p, Dport: 53, Proto: packet.ProtoUDP})
	}
	_, sock := serve(t, g)
	_, msg, err := do(t, sock, &Request{Cmd: "save"})
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(filepath.Dir(path), "ct.state")
	if !strings.Contains(msg, file) || !strings.Contains(msg, "3 connections") {
		t.Fatalf("save said %q, want the path and 3 connections", msg)
	}
	b, err := os.ReadFile(file)
	if err != nil || !strings.HasPrefix(string(b), "TGCTSTAT") {
		t.Fatalf("state file: %v, %q", err, b[:min(len(b), 8)])
	}
}

func TestSaveWithoutStateFile(t *testing.T) {
	_, _, g, _ := admintest.TwoLinks(t)
	_, sock := serve(t, g)
	if _, _, err := do(t, sock, &Request{Cmd: "save"}); err == nil || !strings.Contains(err.Error(), "state_file") {
		t.Fatalf("save without a state file: %v", err)
	}
}
