// SPDX-License-Identifier: Apache-2.0

package config

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
)

func TestSetPaths(t *testing.T) {
	dir := t.TempDir()
	main := filepath.Join(dir, "net-tc-filter.yml")
	if got := SetPaths(main); !slices.Equal(got, []string{main}) {
		t.Errorf("without conf.d: %q", got)
	}
	confD := filepath.Join(dir, "conf.d")
	if err := os.Mkdir(confD, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"b.yml", "a.yml", "c.yaml", ".a.yml.swp", ".hidden.yml"} {
		if err := os.WriteFile(filepath.Join(confD, n), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{main, filepath.Join(confD, "a.yml"), filepath.Join(confD, "b.yml")}
	if got := SetPaths(main); !slices.Equal(got, want) {
		t.Errorf("SetPaths = %q, want %q", got, want)
	}
}

func TestWriting(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.yml"), filepath.Join(dir, "b.yml")
	for _, p := range []string{a, b} {
		if err := os.WriteFile(p, []byte("x: 1\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	fifo := filepath.Join(dir, "fifo.yml")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	paths := []string{filepath.Join(dir, "missing.yml"), fifo, a, b}

	check := func(want string) {
		t.Helper()
		got, err := Writing(paths)
		if err != nil || got != want {
			t.Errorf("Writing = %q, %v; want %q", got, err, want)
		}
	}
	check("")

	// Open for reading and for writing by others; a read-only opener is
	// not a writer.
	r, err := os.Open(a)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	check("")
	w, err := os.OpenFile(b, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	check(b)
	// Still open for writing after a write: the writer may not be done.
	if _, err := w.WriteString("y: 2\n"); err != nil {
		t.Fatal(err)
	}
	check(b)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	check("")

	// Where the kernel cannot tell (no leases on procfs), the caller is
	// told so rather than told "nobody writes it".
	got, err := Writing([]string{"/proc/self/status", a})
	if got != "" || !errors.Is(err, ErrWriteUnknown) {
		t.Errorf("Writing on procfs = %q, %v; want \"\" and ErrWriteUnknown", got, err)
	}
}
