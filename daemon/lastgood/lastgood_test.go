// SPDX-License-Identifier: Apache-2.0

package lastgood

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// configSet writes a main file and drop-ins (name → content) into a fresh
// configuration directory and returns the file list as the loader reports
// it: main first, then conf.d in lexical order.
func configSet(t *testing.T, main string, dropIns ...[2]string) (string, []string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "etc")
	if err := os.MkdirAll(filepath.Join(dir, "conf.d"), 0o755); err != nil {
		t.Fatal(err)
	}
	mainPath := filepath.Join(dir, "net-tc-filter.yml")
	write(t, mainPath, main)
	files := []string{mainPath}
	for _, d := range dropIns {
		p := filepath.Join(dir, "conf.d", d[0])
		write(t, p, d[1])
		files = append(files, p)
	}
	return mainPath, files
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// stateDir is a fresh state directory owned by the test's user, and a
// store that expects that owner.
func stateDir(t *testing.T) *Store {
	t.Helper()
	s, err := open(filepath.Join(t.TempDir(), "state"), uint32(os.Geteuid()))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func accept(string) error { return nil }

// sumsOf is what the loader records of files read now.
func sumsOf(t *testing.T, files []string) [][sha256.Size]byte {
	t.Helper()
	out := make([][sha256.Size]byte, len(files))
	for i, f := range files {
		out[i] = sha256.Sum256([]byte(read(t, f)))
	}
	return out
}

func sets(t *testing.T, s *Store) []string {
	t.Helper()
	var out []string
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), setPrefix) {
			out = append(out, e.Name())
		}
	}
	return out
}

var when = time.Date(2026, 12, 6, 1, 56, 37, 0, time.UTC)

// A saved set holds the files as they were read, under their own names
// and laid out like the original, so the loader reads it as it read them.
func TestSaveAndLatest(t *testing.T) {
	mainPath, files := configSet(t, "main: 1\n", [2]string{"10-a.yml", "a: 1\n"}, [2]string{"20-b.yml", "b: 2\n"})
	s := stateDir(t)
	var verified string
	set, saved, err := s.Save(mainPath, files, sumsOf(t, files), when, func(m string) error { verified = m; return nil })
	if err != nil || !saved {
		t.Fatalf("Save: saved %v, %v", saved, err)
	}
	if verified != set.Main {
		t.Errorf("verify was given %q, not the saved main file %q", verified, set.Main)
	}
	got, err := s.Latest(mainPath)
	if err != nil {
		t.Fatal(err)
	}
	if got.Dir != set.Dir || got.From != mainPath || !got.Saved.Equal(when) {
		t.Errorf("Latest = %+v, saved %+v", got, set)
	}
	if filepath.Base(got.Main) != "net-tc-filter.yml" || filepath.Dir(got.Main) != filepath.Join(set.Dir, "config") {
		t.Errorf("saved main file %s", got.Main)
	}
	paths := got.Paths()
	wantNames := []string{"net-tc-filter.yml", "conf.d/10-a.yml", "conf.d/20-b.yml"}
	if len(paths) != len(files) {
		t.Fatalf("saved %v, read %v", paths, files)
	}
	for i, p := range paths {
		if !strings.HasSuffix(p, "/config/"+wantNames[i]) {
			t.Errorf("file %d saved as %s, want .../config/%s", i, p, wantNames[i])
		}
		if read(t, p) != read(t, files[i]) {
			t.Errorf("%s differs from %s", p, files[i])
		}
		fi, err := os.Stat(p)
		if err != nil || fi.Mode().Perm()&0o022 != 0 {
			t.Errorf("%s: %v %v: a saved file must be writable by its owner only", p, fi.Mode(), err)
		}
	}
	if link, _ := os.Readlink(filepath.Join(s.dir, "last-good")); link != filepath.Base(set.Dir) {
		t.Errorf("last-good -> %q, want %q", link, filepath.Base(set.Dir))
	}
}

// Saving the same contents again (an interface came, a name was resolved
// again) writes nothing; new contents make a new set that replaces the
// old one whole.
func TestSaveReplaces(t *testing.T) {
	mainPath, files := configSet(t, "main: 1\n", [2]string{"10-a.yml", "a: 1\n"})
	s := stateDir(t)
	first, _, err := s.Save(mainPath, files, sumsOf(t, files), when, accept)
	if err != nil {
		t.Fatal(err)
	}
	again, saved, err := s.Save(mainPath, files, sumsOf(t, files), when.Add(time.Hour), func(string) error {
		t.Error("verify called for contents already saved")
		return nil
	})
	if err != nil || saved || again.Dir != first.Dir || !again.Saved.Equal(when) {
		t.Errorf("same contents: saved %v, %+v, %v; want the first set (%s) kept", saved, again, err, first.Dir)
	}

	write(t, files[1], "a: 2\n")
	second, saved, err := s.Save(mainPath, files[:2], sumsOf(t, files[:2]), when.Add(2*time.Hour), accept)
	if err != nil || !saved || second.Dir == first.Dir {
		t.Fatalf("changed contents: saved %v, %+v, %v", saved, second, err)
	}
	if got := sets(t, s); len(got) != 1 || got[0] != filepath.Base(second.Dir) {
		t.Errorf("sets left: %v, want only %s", got, filepath.Base(second.Dir))
	}
	got, err := s.Latest(mainPath)
	if err != nil || got.Dir != second.Dir || read(t, got.Paths()[1]) != "a: 2\n" {
		t.Errorf("Latest = %+v, %v", got, err)
	}

	// A drop-in removed since: the new set does not carry it.
	third, _, err := s.Save(mainPath, files[:1], sumsOf(t, files[:1]), when.Add(3*time.Hour), accept)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(third.Dir, "config", "conf.d", "10-a.yml")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a drop-in that is gone was saved again: %v", err)
	}
}

// A new set links the files the current set holds with the same name and
// contents, and writes the others: a reload of one drop-in of many copies
// one file. A current set that no longer matches its checksums lends
// nothing: every file is written from what was loaded.
func TestSaveLinksUnchanged(t *testing.T) {
	mainPath, files := configSet(t, "main: 1\n", [2]string{"10-a.yml", "a: 1\n"}, [2]string{"20-b.yml", "b: 1\n"}, [2]string{"30-c.yml", "c: 1\n"})
	s := stateDir(t)
	inodes := func(set Set) []uint64 {
		t.Helper()
		var out []uint64
		for _, p := range set.Paths() {
			fi, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, fi.Sys().(*syscall.Stat_t).Ino)
		}
		return out
	}
	first, _, err := s.Save(mainPath, files, sumsOf(t, files), when, accept)
	if err != nil {
		t.Fatal(err)
	}
	before := inodes(first)

	write(t, files[2], "b: 2\n")
	second, saved, err := s.Save(mainPath, files, sumsOf(t, files), when.Add(time.Hour), accept)
	if err != nil || !saved {
		t.Fatalf("saved %v, %v", saved, err)
	}
	after := inodes(second)
	for i, p := range second.Paths() {
		if read(t, p) != read(t, files[i]) {
			t.Errorf("%s differs from %s", p, files[i])
		}
		if linked := after[i] == before[i]; linked != (i != 2) {
			t.Errorf("%s: linked from the set before %v, want %v", p, linked, i != 2)
		}
		fi, _ := os.Stat(p)
		if n := fi.Sys().(*syscall.Stat_t).Nlink; n != 1 {
			t.Errorf("%s has %d links once the set before is removed, want 1", p, n)
		}
	}

	// Damage the current set: the next save links nothing, and the
	// damaged bytes are nowhere in it.
	if err := os.WriteFile(second.Paths()[1], []byte("a: 666\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	write(t, files[3], "c: 2\n")
	third, saved, err := s.Save(mainPath, files, sumsOf(t, files), when.Add(2*time.Hour), accept)
	if err != nil || !saved {
		t.Fatalf("saved %v, %v", saved, err)
	}
	for i, ino := range inodes(third) {
		if ino == after[i] {
			t.Errorf("%s linked from a set that fails its checksums", third.Paths()[i])
		}
		if read(t, third.Paths()[i]) != read(t, files[i]) {
			t.Errorf("%s differs from %s", third.Paths()[i], files[i])
		}
	}
	if _, err := s.Latest(mainPath); err != nil {
		t.Errorf("Latest after the save: %v", err)
	}
}

// A copy that does not load to what is live (the files changed after they
// were read) never replaces the saved set; nor does a crash in the middle
// of a save, which leaves a half-written set and a stray link behind.
func TestSaveKeepsPreviousOnFailure(t *testing.T) {
	mainPath, files := configSet(t, "main: 1\n")
	s := stateDir(t)
	good, _, err := s.Save(mainPath, files, sumsOf(t, files), when, accept)
	if err != nil {
		t.Fatal(err)
	}

	write(t, mainPath, "main: [\n")
	refused := errors.New("not what is live")
	if _, saved, err := s.Save(mainPath, files, sumsOf(t, files), when.Add(time.Hour), func(string) error { return refused }); !errors.Is(err, refused) || saved {
		t.Errorf("Save with a failing verify: saved %v, %v", saved, err)
	}
	if got := sets(t, s); len(got) != 1 {
		t.Errorf("the refused copy was left behind: %v", got)
	}

	// What a crash between writing a set and switching the link leaves.
	if err := os.Mkdir(filepath.Join(s.dir, "set-20261206T020000Z-crash"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("set-20261206T020000Z-crash", filepath.Join(s.dir, "last-good.new")); err != nil {
		t.Fatal(err)
	}
	got, err := s.Latest(mainPath)
	if err != nil || got.Dir != good.Dir || read(t, got.Main) != "main: 1\n" {
		t.Fatalf("after failures Latest = %+v, %v; want the good set %s", got, err, good.Dir)
	}

	write(t, mainPath, "main: 2\n")
	next, _, err := s.Save(mainPath, files, sumsOf(t, files), when.Add(2*time.Hour), accept)
	if err != nil {
		t.Fatalf("save after a crash: %v", err)
	}
	if got := sets(t, s); len(got) != 1 || got[0] != filepath.Base(next.Dir) {
		t.Errorf("sets after the next save: %v, want only %s", got, filepath.Base(next.Dir))
	}
}

// A file changed since it was loaded is saved as it was loaded or not at
// all. The main file below is held by the saved set as loaded: its saved
// copy is linked, and the new version is nowhere in the new set. The
// drop-in was loaded in a version the saved set does not hold: it must be
// read again, and the version read is refused, keeping the set before.
func TestSaveOnlyWhatWasLoaded(t *testing.T) {
	for _, changed := range []int{0, 1} {
		t.Run(fmt.Sprint("file ", changed), func(t *testing.T) {
			mainPath, files := configSet(t, "main: 1\n", [2]string{"10-a.yml", "a: 1\n"})
			s := stateDir(t)
			good, _, err := s.Save(mainPath, files, sumsOf(t, files), when, accept)
			if err != nil {
				t.Fatal(err)
			}
			write(t, files[1], "a: 2\n")
			loaded := sumsOf(t, files)
			want := []string{read(t, files[0]), read(t, files[1])}
			write(t, files[changed], "broken: [\n")
			set, saved, err := s.Save(mainPath, files, loaded, when.Add(time.Hour), func(string) error {
				if changed == 1 {
					t.Error("verify called for a copy that is not what was loaded")
				}
				return nil
			})
			if changed == 0 {
				if !saved || err != nil {
					t.Fatalf("Save with the main file changed: saved %v, %v; its loaded version is in the saved set", saved, err)
				}
				for i, p := range set.Paths() {
					if got := read(t, p); got != want[i] {
						t.Errorf("%s saved as %q, loaded as %q", p, got, want[i])
					}
				}
				return
			}
			if saved || err == nil || !strings.Contains(err.Error(), files[changed]+" changed since it was loaded") {
				t.Errorf("Save of a version not loaded: saved %v, %v", saved, err)
			}
			if got, err := s.Latest(mainPath); err != nil || got.Dir != good.Dir {
				t.Errorf("Latest = %+v, %v; want the set saved before, %s", got, err, good.Dir)
			}
			if got := sets(t, s); len(got) != 1 {
				t.Errorf("sets left: %v", got)
			}
		})
	}
	mainPath, files := configSet(t, "main: 1\n")
	if _, _, err := stateDir(t).Save(mainPath, files, nil, when, accept); err == nil {
		t.Error("Save without checksums succeeded")
	}
}

// rename gives the i-th file of a saved set another name in saved.json.
func rename(t *testing.T, set Set, i int, name string) {
	t.Helper()
	path := filepath.Join(set.Dir, metaName)
	var m meta
	if err := json.Unmarshal([]byte(read(t, path)), &m); err != nil {
		t.Fatal(err)
	}
	m.Files[i].Name = name
	js, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	write(t, path, string(js))
}

// Names with dots are names like any other: a drop-in called
// 50-imds..v2.yml is saved and read back, not taken for a way out.
func TestDottedNames(t *testing.T) {
	mainPath, files := configSet(t, "main: 1\n", [2]string{"50-imds..v2.yml", "a: 1\n"}, [2]string{"x..yml", "b: 1\n"})
	s := stateDir(t)
	set, _, err := s.Save(mainPath, files, sumsOf(t, files), when, accept)
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.Latest(mainPath)
	if err != nil || got.Dir != set.Dir {
		t.Fatalf("Latest = %+v, %v; want the set just saved", got, err)
	}
	if p := got.Paths(); len(p) != 3 || read(t, p[1]) != "a: 1\n" {
		t.Errorf("saved %v", p)
	}
}

// Latest refuses what it cannot vouch for: nothing saved, a set of another
// configuration, a file changed or added after the save, a link out of
// the state directory.
func TestLatestRefuses(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, s *Store, set Set)
		from   string // asked for another main file when set
		want   string
	}{
		{"nothing saved", func(t *testing.T, s *Store, set Set) {
			os.Remove(filepath.Join(s.dir, "last-good"))
		}, "", "no last good set saved"},
		{"another configuration", nil, "/etc/other/net-tc-filter.yml", "not of /etc/other/net-tc-filter.yml"},
		{"file changed", func(t *testing.T, s *Store, set Set) {
			write(t, set.Paths()[1], "a: 3\n")
		}, "", "conf.d/10-a.yml does not match its checksum"},
		{"file truncated", func(t *testing.T, s *Store, set Set) {
			write(t, set.Main, "")
		}, "", "net-tc-filter.yml does not match its checksum"},
		{"drop-in added", func(t *testing.T, s *Store, set Set) {
			write(t, filepath.Join(set.Dir, "config", "conf.d", "99-new.yml"), "x: 1\n")
		}, "", "conf.d/99-new.yml was not saved with the set"},
		{"link out of the state directory", func(t *testing.T, s *Store, set Set) {
			link := filepath.Join(s.dir, "last-good")
			os.Remove(link)
			os.Symlink("../elsewhere", link)
		}, "", `points to "../elsewhere"`},
		{"a name out of the set", func(t *testing.T, s *Store, set Set) {
			rename(t, set, 1, "../10-a.yml")
		}, "", `bad file name "../10-a.yml"`},
		{"a name out of conf.d", func(t *testing.T, s *Store, set Set) {
			rename(t, set, 1, "conf.d/../../10-a.yml")
		}, "", `bad file name "conf.d/../../10-a.yml"`},
		{"a drop-in that is not in conf.d", func(t *testing.T, s *Store, set Set) {
			rename(t, set, 1, "10-a.yml")
		}, "", `bad file name "10-a.yml"`},
		{"a drop-in below conf.d", func(t *testing.T, s *Store, set Set) {
			rename(t, set, 1, "conf.d/x/10-a.yml")
		}, "", `bad file name "conf.d/x/10-a.yml"`},
		{"conf.d itself", func(t *testing.T, s *Store, set Set) {
			rename(t, set, 1, "conf.d/..")
		}, "", `bad file name "conf.d/.."`},
		{"an absolute name", func(t *testing.T, s *Store, set Set) {
			rename(t, set, 0, set.Main)
		}, "", "bad file name"},
		{"a main file in conf.d", func(t *testing.T, s *Store, set Set) {
			rename(t, set, 0, "conf.d/10-a.yml")
		}, "", `bad file name "conf.d/10-a.yml"`},
		{"description unreadable", func(t *testing.T, s *Store, set Set) {
			write(t, filepath.Join(set.Dir, "saved.json"), "{")
		}, "", "saved.json"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mainPath, files := configSet(t, "main: 1\n", [2]string{"10-a.yml", "a: 1\n"})
			s := stateDir(t)
			set, _, err := s.Save(mainPath, files, sumsOf(t, files), when, accept)
			if err != nil {
				t.Fatal(err)
			}
			if tc.damage != nil {
				tc.damage(t, s, set)
			}
			from := mainPath
			if tc.from != "" {
				from = tc.from
			}
			_, err = s.Latest(from)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Latest: %v; want an error containing %q", err, tc.want)
			}
		})
	}
}

func chown(t *testing.T, path string, uid int) {
	t.Helper()
	if err := os.Chown(path, uid, -1); err != nil {
		t.Fatal(err)
	}
}

// A state directory that someone other than root could write is refused,
// for saving and for loading, as the loader refuses such a configuration
// file; a sticky, world-writable directory above it (/tmp) is fine.
func TestUnsafeStateDirectory(t *testing.T) {
	me := uint32(os.Geteuid())
	for _, tc := range []struct {
		name   string
		mode   os.FileMode // of the state directory
		parent os.FileMode // of the directory above it
		owner  uint32      // the owner the store requires
		other  bool        // the state directory is given to another user
		want   string      // "" when accepted
	}{
		{"private", 0o700, 0o755, me, false, ""},
		{"readable by all", 0o755, 0o755, me, false, ""},
		{"below a sticky world-writable directory", 0o700, os.ModeSticky | 0o777, me, false, ""},
		{"group-writable", 0o770, 0o755, me, false, "state: directory writable by group or others (mode 0770); a user who can write it could replace the files in it and grant itself access — chmod go-w"},
		{"world-writable and sticky", os.ModeSticky | 0o777, 0o755, me, false, "state: directory writable by group or others (mode 0777)"},
		{"below a world-writable directory", 0o700, 0o777, me, false, "parent: directory writable by group or others (mode 0777), on the way to"},
		{"owned by someone else", 0o700, 0o755, me, true, "state: directory owned by uid"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			parent := filepath.Join(t.TempDir(), "parent")
			dir := filepath.Join(parent, "state")
			if err := os.MkdirAll(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			// Someone else: as root, a user; else a uid the store is
			// told to require, which the test's user is not.
			harm := func() {
				chmod(t, dir, tc.mode)
				chmod(t, parent, tc.parent)
				if tc.other && me == 0 {
					chown(t, dir, 1000)
				}
			}
			owner := tc.owner
			if tc.other && me != 0 {
				owner = me + 1
			}
			harm()
			mainPath, files := configSet(t, "main: 1\n")

			s, err := open(dir, owner)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if _, _, err := s.Save(mainPath, files, sumsOf(t, files), when, accept); err != nil {
					t.Errorf("Save: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), "refusing state directory "+dir) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("open: %v; want a refusal containing %q", err, tc.want)
			}

			// Made unsafe after it was opened: refused at the next use.
			chmod(t, dir, 0o700)
			chmod(t, parent, 0o755)
			chown(t, dir, int(me))
			s, err = open(dir, me)
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := s.Save(mainPath, files, sumsOf(t, files), when, accept); err != nil {
				t.Fatal(err)
			}
			harm()
			s.owner = owner
			if _, _, err := s.Save(mainPath, files, sumsOf(t, files), when.Add(time.Hour), accept); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Save into an unsafe directory: %v", err)
			}
			if _, err := s.Latest(mainPath); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Latest from an unsafe directory: %v", err)
			}
		})
	}
}

func chmod(t *testing.T, path string, mode os.FileMode) {
	t.Helper()
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

// The state directory is checked as the loader checks a configuration
// directory, symlinks included: one reached through a symlink in a
// directory anyone can write is refused, though every directory on its
// real path is safe, as anyone could point the symlink elsewhere.
func TestStateDirectoryThroughSymlink(t *testing.T) {
	top := t.TempDir()
	safe := filepath.Join(top, "safe")
	writable := filepath.Join(top, "open")
	for _, d := range []string{filepath.Join(safe, "state"), writable} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	chmod(t, safe, 0o755)
	chmod(t, writable, 0o777)
	if err := os.Symlink(safe, filepath.Join(writable, "link")); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(writable, "link", "state")
	_, err := open(dir, uint32(os.Geteuid()))
	if err == nil || !strings.Contains(err.Error(), "refusing state directory "+dir) || !strings.Contains(err.Error(), writable+": directory writable by group or others (mode 0777), on the way to "+dir) {
		t.Errorf("Open through a symlink in a world-writable directory: %v", err)
	}
}

// Files that are not the main file and its drop-ins cannot be saved as a
// set of that main file.
func TestSaveNames(t *testing.T) {
	mainPath, files := configSet(t, "main: 1\n", [2]string{"10-a.yml", "a: 1\n"})
	other := filepath.Join(t.TempDir(), "x.yml")
	write(t, other, "x: 1\n")
	s := stateDir(t)
	for _, tc := range []struct {
		name  string
		files []string
		want  string
	}{
		{"no files", nil, "begin with its main file"},
		{"main file not first", []string{files[1], files[0]}, "begin with its main file"},
		{"a file elsewhere", []string{files[0], other}, "is not a drop-in of"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, err := s.Save(mainPath, tc.files, sumsOf(t, tc.files), when, accept); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Save: %v; want %q", err, tc.want)
			}
		})
	}
	if !s.Contains(filepath.Join(s.dir, "set-x", "config", "a.yml")) || s.Contains(mainPath) || s.Contains(s.dir+"-other/a.yml") {
		t.Errorf("Contains is wrong about what lies in %s", s.dir)
	}
}

// A file is read twice by a save: once to check it against what was
// loaded, once to be copied. A version written in between is never copied.
func TestSaveNeverCopiesALaterVersion(t *testing.T) {
	mainPath, files := configSet(t, "main: 1\n", [2]string{"10-a.yml", "a: 1\n"})
	sums := sumsOf(t, files)
	m := meta{Version: version, From: mainPath, Files: []File{
		{Name: "net-tc-filter.yml", SHA256: fmt.Sprintf("%x", sums[0])},
		{Name: "conf.d/10-a.yml", SHA256: fmt.Sprintf("%x", sums[1])},
	}}
	write(t, files[1], "a: 2\n") // after the check, before the copy
	err := writeSet(t.TempDir(), m, files, nil)
	if err == nil || !strings.Contains(err.Error(), "changed since it was loaded") {
		t.Errorf("writeSet of a file changed since its check: %v", err)
	}
}
