package main

import (
	"bytes"
	"strings"
	"testing"

	"tungate/link/wireguard"
)

// TestWgKeys: genkey prints a key whose public half pubkey derives from
// stdin, as wg genkey | wg pubkey.
func TestWgKeys(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"wg", "genkey"}, &out, &errb); code != 0 {
		t.Fatalf("wg genkey: exit %d: %s", code, errb.String())
	}
	priv := strings.TrimSpace(out.String())
	want, err := wireguard.PubKey(priv)
	if err != nil {
		t.Fatalf("genkey printed %q: %v", priv, err)
	}
	old := stdinReader
	defer func() { stdinReader = old }()
	stdinReader = strings.NewReader(priv + "\n")
	out.Reset()
	if code := run([]string{"wg", "pubkey"}, &out, &errb); code != 0 {
		t.Fatalf("wg pubkey: exit %d: %s", code, errb.String())
	}
	if got := strings.TrimSpace(out.String()); got != want {
		t.Errorf("pubkey %q, want %q", got, want)
	}
	stdinReader = strings.NewReader("not a key\n")
	if code := run([]string{"wg", "pubkey"}, &out, &errb); code == 0 {
		t.Error("wg pubkey accepted a bad key")
	}
}
