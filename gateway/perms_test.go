package gateway

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeConf writes linksConf plus extra to dir/name with mode perm, dir
// having mode dirPerm.
func writeConf(t *testing.T, dir string, dirPerm, perm os.FileMode, extra string) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "gw.toml")
	if err := os.WriteFile(p, []byte(linksConf+extra), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, perm); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, dirPerm); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestConfigFilePermissions(t *testing.T) {
	base := t.TempDir()
	load := func(path string) error {
		_, err := LoadConfig(path)
		if _, err2 := Check(path); (err == nil) != (err2 == nil) {
			t.Errorf("%s: LoadConfig says %v, Check %v", path, err, err2)
		}
		return err
	}
	for _, c := range []struct {
		name          string
		dirPerm, perm os.FileMode
		wantErr       []string // all in the error; none: loads
	}{
		{"private", 0o700, 0o600, nil},
		{"readable", 0o755, 0o644, nil},
		{"world-writable-file", 0o755, 0o666, []string{"world-writable config file", "mode 0666"}},
		{"world-writable-dir", 0o777, 0o644, []string{"world-writable directory without the sticky bit", "mode 0777"}},
		{"sticky-dir", 0o777 | os.ModeSticky, 0o644, nil},
		{"group-writable", 0o775, 0o664, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := filepath.Join(base, c.name)
			p := writeConf(t, dir, c.dirPerm, c.perm, "")
			err := load(p)
			if c.wantErr == nil {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("loaded")
			}
			for _, w := range append(c.wantErr, p) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
	// A link in a safe directory to a file in an unsafe one.
	unsafe := writeConf(t, filepath.Join(base, "open"), 0o777, 0o644, "")
	safe := filepath.Join(base, "safe")
	os.Mkdir(safe, 0o755)
	link := filepath.Join(safe, "gw.toml")
	if err := os.Symlink(unsafe, link); err != nil {
		t.Fatal(err)
	}
	if err := load(link); err == nil || !strings.Contains(err.Error(), filepath.Join(base, "open")) {
		t.Errorf("symlink into a world-writable directory: %v", err)
	}
}

func TestAdminSocketDirectory(t *testing.T) {
	base := t.TempDir()
	shared := filepath.Join(base, "shared")
	os.Mkdir(shared, 0o700)
	os.Chmod(shared, 0o777|os.ModeSticky)
	p := writeConf(t, filepath.Join(base, "conf"), 0o755, 0o644, "[admin]\nsocket = \""+filepath.Join(shared, "admin.sock")+"\"\n")
	_, err := LoadConfig(p)
	want := fmt.Sprintf("%s:%d:10: admin.socket: ", p, strings.Count(linksConf, "\n")+2)
	if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "mode 1777") {
		t.Fatalf("err = %v, want it at %q naming the mode", err, want)
	}
	if _, err := Check(p); err == nil || !strings.Contains(err.Error(), "admin.socket") {
		t.Fatalf("check: %v", err)
	}
	private := filepath.Join(base, "run")
	os.Mkdir(private, 0o700)
	p = writeConf(t, filepath.Join(base, "conf2"), 0o755, 0o644, "[admin]\nsocket = \""+filepath.Join(private, "admin.sock")+"\"\n")
	if _, err := LoadConfig(p); err != nil {
		t.Fatal(err)
	}
	// A directory that does not exist yet is the gateway's to create.
	p = writeConf(t, filepath.Join(base, "conf3"), 0o755, 0o644, "[admin]\nsocket = \""+filepath.Join(base, "new", "admin.sock")+"\"\n")
	if _, err := LoadConfig(p); err != nil {
		t.Fatal(err)
	}
}
