package main

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files of `tungate check`")

// TestCheckGolden runs `tungate check` on every example config and on the
// test configs, comparing what it prints (stdout, then stderr) with
// testdata/NAME.golden. go test ./cmd/tungate -run Golden -update
// rewrites them after an intended change.
func TestCheckGolden(t *testing.T) {
	examples, _ := filepath.Glob("../../configs/*.toml")
	tests, _ := filepath.Glob("testdata/*.toml")
	if len(examples) == 0 || len(tests) == 0 {
		t.Fatal("no configs")
	}
	for _, f := range append(examples, tests...) {
		name := strings.TrimSuffix(filepath.Base(f), ".toml")
		t.Run(name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := run([]string{"check", "-c", f}, &out, &errb)
			wantCode := 0
			if name == "errors" {
				wantCode = 1
			}
			if code != wantCode {
				t.Fatalf("exit %d, want %d\n%s%s", code, wantCode, out.String(), errb.String())
			}
			got := out.String() + "--- stderr\n" + errb.String()
			golden := filepath.Join("testdata", name+".golden")
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("check output differs from %s:\n--- got\n%s--- want\n%s", golden, got, want)
			}
		})
	}
}
