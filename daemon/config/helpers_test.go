// SPDX-License-Identifier: Apache-2.0

package config

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// mainName is the main file's name in every test set.
const mainName = "net-tc-filter.yml"

// lines joins its arguments as the lines of a file, so that a case's line
// numbers can be read off its argument positions.
func lines(ls ...string) string { return strings.Join(ls, "\n") + "\n" }

// writeSet creates a configuration set in a fresh directory and returns the
// directory. Keys are paths relative to it. Directories are 0755 and files
// 0644 regardless of the umask, so a test changes modes only on purpose.
func writeSet(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	chmod(t, dir, 0o755)
	for name, content := range files {
		p := filepath.Join(dir, name)
		mkdirs(t, dir, filepath.Dir(name))
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		chmod(t, p, 0o644)
	}
	return dir
}

// mkdirs creates rel (relative to dir) and its parents with mode 0755.
func mkdirs(t *testing.T, dir, rel string) {
	t.Helper()
	if rel == "." {
		return
	}
	mkdirs(t, dir, filepath.Dir(rel))
	p := filepath.Join(dir, rel)
	if err := os.Mkdir(p, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		t.Fatal(err)
	}
	chmod(t, p, 0o755)
}

func chmod(t *testing.T, path string, mode os.FileMode) {
	t.Helper()
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

// loadSet loads dir's set requiring the files to belong to the test's user,
// so that everything but the ownership tests runs without root too.
func loadSet(t *testing.T, dir string) (*Config, error) {
	t.Helper()
	return load(filepath.Join(dir, mainName), uint32(os.Getuid()))
}

func mustLoad(t *testing.T, dir string) *Config {
	t.Helper()
	cfg, err := loadSet(t, dir)
	if err != nil {
		t.Fatalf("load: unexpected error:\n%v", err)
	}
	return cfg
}

// errorList returns err's problems as "relpath:line: message" strings.
func errorList(t *testing.T, dir string, err error) []string {
	t.Helper()
	var es Errors
	if !errors.As(err, &es) {
		t.Fatalf("error is %T (%v), want Errors", err, err)
	}
	out := make([]string, len(es))
	for i, e := range es {
		rel, rerr := filepath.Rel(dir, e.Pos.File)
		if rerr != nil {
			t.Fatal(rerr)
		}
		e.Pos.File = rel
		out[i] = e.Error()
	}
	return out
}

// want is one expected problem: its exact "file:line" and a part of its
// message.
type want struct {
	at  string
	msg string
}

// m names a line of the main file.
func m(line int) string { return mainName + ":" + strconv.Itoa(line) }

func checkErrors(t *testing.T, dir string, cfg *Config, err error, wants []want) {
	t.Helper()
	if cfg != nil {
		t.Errorf("Config = %+v, want nil with an error", cfg)
	}
	if err == nil {
		t.Fatalf("no error, want %d", len(wants))
	}
	got := errorList(t, dir, err)
	if len(got) != len(wants) {
		t.Fatalf("got %d errors, want %d:\n%s", len(got), len(wants), strings.Join(got, "\n"))
	}
	for i, w := range wants {
		at, msg, _ := strings.Cut(got[i], ": ")
		if at != w.at || !strings.Contains(msg, w.msg) {
			t.Errorf("error %d = %q\n          want %s: ...%s...", i, got[i], w.at, w.msg)
		}
	}
}

func prefixes(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}

func mkfifo(t *testing.T, path string) {
	t.Helper()
	if err := unix.Mkfifo(path, 0o644); err != nil {
		t.Fatal(err)
	}
}
