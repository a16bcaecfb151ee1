package gateway

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"tungate/confdiag"
)

// readConfigFile reads the config file after making sure no other user
// can have changed it: a world-writable file, or one in a world-writable
// directory without the sticky bit (anyone may replace it there), hands
// the firewall's rules to every local user. The file is judged by the
// descriptor it was read from, the directories by the path as given and as
// resolved through symbolic links.
func readConfigFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if st.Mode().Perm()&0o002 != 0 {
		return nil, fmt.Errorf("%s: refusing a world-writable config file (mode %s): any local user could change the rules; chmod o-w %s", path, modeString(st.Mode()), path)
	}
	dirs := []string{filepath.Dir(path)}
	if real, err := filepath.EvalSymlinks(path); err == nil && filepath.Dir(real) != dirs[0] {
		dirs = append(dirs, filepath.Dir(real))
	}
	for _, d := range dirs {
		if err := unsafeDir(d, true); err != nil {
			return nil, fmt.Errorf("%s: refusing a config file in %w: any local user could replace it", path, err)
		}
	}
	return io.ReadAll(f)
}

// unsafeDir returns an error naming dir and its mode if every user may
// write to it; stickyOK accepts a sticky one (only owners remove entries).
func unsafeDir(dir string, stickyOK bool) error {
	st, err := os.Stat(dir)
	if err != nil {
		return nil // reading the file, or creating the socket, will say
	}
	m := st.Mode()
	if m.Perm()&0o002 == 0 || (stickyOK && m&fs.ModeSticky != 0) {
		return nil
	}
	what := "a world-writable directory"
	if m&fs.ModeSticky == 0 && stickyOK {
		what = "a world-writable directory without the sticky bit"
	}
	return fmt.Errorf("%s %s (mode %s)", what, dir, modeString(m))
}

// modeString is a mode as chmod takes it and ls shows it.
func modeString(m fs.FileMode) string {
	o := uint32(m.Perm())
	if m&fs.ModeSticky != 0 {
		o |= 0o1000
	}
	if m&fs.ModeSetgid != 0 {
		o |= 0o2000
	}
	if m&fs.ModeSetuid != 0 {
		o |= 0o4000
	}
	return fmt.Sprintf("%04o, %s", o, m)
}

// checkSocketDir refuses an admin socket in a world-writable directory,
// sticky or not: another user could put a socket of their own at the path
// before the gateway starts (or between its removing a stale one and
// listening) and receive the commands of an administrator's client.
func (c *Config) checkSocketDir(l *confdiag.List) {
	if c.Admin.Socket == "" {
		return
	}
	if err := unsafeDir(filepath.Dir(c.Admin.Socket), false); err != nil {
		l.Addf("admin.socket", "%q is in %s: another user could take the socket's place; use a directory only the gateway's user can write, e.g. /run/tungate", c.Admin.Socket, err)
	}
}
