package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestHeapProfiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "heap")
	stop, err := startHeapProfiles(dir, 20*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		m, _ := filepath.Glob(filepath.Join(dir, "heap-*.pb.gz"))
		if len(m) >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d heap profiles after 10 s, want 2 from the ticker", len(m))
		}
		time.Sleep(10 * time.Millisecond)
	}
	stop()
	before, _ := filepath.Glob(filepath.Join(dir, "heap-*.pb.gz"))
	stop() // a second stop writes nothing more and does not block
	after, _ := filepath.Glob(filepath.Join(dir, "heap-*.pb.gz"))
	if len(after) != len(before) {
		t.Fatalf("second stop wrote %d more profiles", len(after)-len(before))
	}
	for _, f := range after {
		st, err := os.Stat(f)
		if err != nil || st.Size() == 0 {
			t.Fatalf("profile %s empty or unreadable: %v", f, err)
		}
	}
}
