package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"tungate/admin"
	"tungate/admin/admintest"
)

// TestSaveCommand: `tungate save` through the real socket, found by
// --socket and by -c; and the error when no state file is configured.
func TestSaveCommand(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "admin.sock")
	conf := "[admin]\nsocket = \"" + sock + "\"\n" +
		strings.Replace(admintest.Config, "max = 4096\n", "max = 4096\nstate_file = \"ct.state\"\n", 1)
	g, path := admintest.Gateway(t, conf, admintest.NewHost(t, "10.10.0.2"), admintest.NewHost(t, "198.18.0.2"))
	admintest.Insert(t, g.Table(), admintest.Conn{Src: "10.10.0.2", Dst: "198.18.0.2", Sport: 5000, Dport: 53, Proto: 17})
	srv, err := admin.Listen(g, sock)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	state := filepath.Join(filepath.Dir(path), "ct.state")
	for _, args := range [][]string{{"save", "--socket", sock}, {"save", "-c", path}} {
		code, out, errs := cli(args...)
		if code != 0 || !strings.Contains(out, "state saved to "+state+": 1 connections") {
			t.Errorf("tungate %v: exit %d, stdout %q, stderr %q", args, code, out, errs)
		}
	}
	if fi, err := os.Stat(state); err != nil || fi.Size() == 0 {
		t.Fatalf("state file: %v", err)
	}

	_, _, g2, _ := admintest.TwoLinks(t)
	sock2 := filepath.Join(t.TempDir(), "admin.sock")
	srv2, err := admin.Listen(g2, sock2)
	if err != nil {
		t.Fatal(err)
	}
	defer srv2.Close()
	if code, _, errs := cli("save", "--socket", sock2); code != 1 || !strings.Contains(errs, "conntrack.state_file is not set") {
		t.Errorf("save without a state file: exit %d, stderr %q", code, errs)
	}
}
