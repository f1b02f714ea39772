// SPDX-License-Identifier: Apache-2.0

package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"

	"github.com/nettcfilter/net-tc-filter/daemon/testnet"
)

func TestPermissionRefusals(t *testing.T) {
	const garbage = "this: [is not: valid\n"
	tests := []struct {
		name  string
		files map[string]string
		root  bool // needs chown
		prep  func(t *testing.T, dir string)
		want  func(dir string) []string
	}{{
		name:  "group-writable main file",
		files: map[string]string{mainName: garbage},
		prep:  func(t *testing.T, dir string) { chmod(t, filepath.Join(dir, mainName), 0o664) },
		want: func(dir string) []string {
			return []string{mainName + ": refusing: writable by group or others (mode 0664); a user who can write it could grant itself access — chmod go-w " + filepath.Join(dir, mainName)}
		},
	}, {
		name:  "other-writable drop-in",
		files: map[string]string{mainName: seed, "conf.d/x.yml": garbage},
		prep:  func(t *testing.T, dir string) { chmod(t, filepath.Join(dir, "conf.d/x.yml"), 0o646) },
		want: func(dir string) []string {
			return []string{"conf.d/x.yml: refusing: writable by group or others (mode 0646); a user who can write it could grant itself access — chmod go-w " + filepath.Join(dir, "conf.d/x.yml")}
		},
	}, {
		name:  "other-writable conf.d",
		files: map[string]string{mainName: seed, "conf.d/x.yml": "log: {rate: 0}\n"},
		prep:  func(t *testing.T, dir string) { chmod(t, filepath.Join(dir, "conf.d"), 0o757) },
		want: func(dir string) []string {
			return []string{
				"conf.d: refusing: directory writable by group or others (mode 0757); a user who can write it could replace the files in it and grant itself access — chmod go-w " + filepath.Join(dir, "conf.d"),
				"conf.d/x.yml:1: log.rate must be between 1 and 2147483647, not 0",
			}
		},
	}, {
		name:  "group-writable main directory",
		files: map[string]string{mainName: seed},
		prep:  func(t *testing.T, dir string) { chmod(t, dir, 0o775) },
		want: func(dir string) []string {
			return []string{".: refusing: directory writable by group or others (mode 0775); a user who can write it could replace the files in it and grant itself access — chmod go-w " + dir}
		},
	}, {
		name:  "drop-in owned by uid 1000",
		files: map[string]string{mainName: seed, "conf.d/x.yml": garbage},
		root:  true,
		prep:  func(t *testing.T, dir string) { chown(t, filepath.Join(dir, "conf.d/x.yml"), 1000) },
		want: func(dir string) []string {
			return []string{"conf.d/x.yml: refusing: owned by uid 1000, not root; a user who owns it could grant itself access — chown root " + filepath.Join(dir, "conf.d/x.yml")}
		},
	}, {
		name:  "main file owned by uid 1000 and group-writable",
		files: map[string]string{mainName: seed},
		root:  true,
		prep: func(t *testing.T, dir string) {
			p := filepath.Join(dir, mainName)
			chown(t, p, 1000)
			chmod(t, p, 0o660)
		},
		want: func(dir string) []string {
			p := filepath.Join(dir, mainName)
			return []string{
				mainName + ": refusing: owned by uid 1000, not root; a user who owns it could grant itself access — chown root " + p,
				mainName + ": refusing: writable by group or others (mode 0660); a user who can write it could grant itself access — chmod go-w " + p,
			}
		},
	}, {
		name:  "conf.d owned by uid 1000",
		files: map[string]string{mainName: seed, "conf.d/x.yml": seed},
		root:  true,
		prep:  func(t *testing.T, dir string) { chown(t, filepath.Join(dir, "conf.d"), 1000) },
		want: func(dir string) []string {
			return []string{"conf.d: refusing: directory owned by uid 1000, not root; a user who owns it could replace the files in it and grant itself access — chown root " + filepath.Join(dir, "conf.d")}
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.root {
				testnet.RequireRoot(t)
			}
			dir := writeSet(t, tt.files)
			tt.prep(t, dir)
			owner := uint32(os.Getuid())
			if tt.root {
				owner = 0
			}
			cfg, err := load(filepath.Join(dir, mainName), owner)
			if cfg != nil || err == nil {
				t.Fatalf("load = %+v, %v; want a refusal", cfg, err)
			}
			if got, want := errorList(t, dir, err), tt.want(dir); !reflect.DeepEqual(got, want) {
				t.Errorf("errors:\n%q\nwant:\n%q", got, want)
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

func symlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

// kubernetesSet lays out conf.d the way a ConfigMap volume does:
//
//	conf.d/..2024_01_01_00_00_00.1/x.yml  the data
//	conf.d/..data -> ..2024_01_01_00_00_00.1
//	conf.d/x.yml -> ..data/x.yml
func kubernetesSet(t *testing.T, x string) string {
	t.Helper()
	const ts = "conf.d/..2024_01_01_00_00_00.1"
	dir := writeSet(t, map[string]string{
		mainName:             seed,
		ts + "/x.yml":        x,
		ts + "/hidden.yml":   "garbage: [\n", // only reachable via ..data
		"conf.d/placeholder": "",
	})
	symlink(t, "..2024_01_01_00_00_00.1", filepath.Join(dir, "conf.d/..data"))
	symlink(t, "..data/x.yml", filepath.Join(dir, "conf.d/x.yml"))
	return dir
}

func TestKubernetesSymlinkedDropIn(t *testing.T) {
	dir := kubernetesSet(t, "log: {rate: 3}\n")
	cfg := mustLoad(t, dir)
	if cfg.Log.Rate != 3 {
		t.Errorf("rate = %d, want 3 from the symlinked drop-in", cfg.Log.Rate)
	}
	want := []string{filepath.Join(dir, mainName), filepath.Join(dir, "conf.d/x.yml")}
	if !reflect.DeepEqual(cfg.Files, want) {
		t.Errorf("Files = %v, want %v (..data and its files not read directly)", cfg.Files, want)
	}
	// kubelet's ..data and ..<timestamp> are its own, never named.
	placeholder := filepath.Join(dir, "conf.d/placeholder") + " is not read: only *.yml files are read; rename it to end in .yml if it should be."
	if !reflect.DeepEqual(cfg.Warnings, []string{placeholder}) {
		t.Errorf("Warnings = %q, want only the placeholder's", cfg.Warnings)
	}
}

func TestSymlinkTargetIsChecked(t *testing.T) {
	dir := kubernetesSet(t, "log: {rate: 3}\n")
	target := filepath.Join(dir, "conf.d/..2024_01_01_00_00_00.1/x.yml")
	chmod(t, target, 0o666)
	_, err := loadSet(t, dir)
	got := errorList(t, dir, err)
	want := []string{"conf.d/x.yml: refusing: writable by group or others (mode 0666); a user who can write it could grant itself access — chmod go-w " + filepath.Join(dir, "conf.d/x.yml")}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("errors %q, want %q", got, want)
	}
}

// TestIgnoredDropIns: only *.yml files are read from conf.d, and every
// other entry is named in a warning that says why and what to do, since a
// drop-in skipped without a word can lose a deny without a word. Only
// kubelet's own ..data-style entries are passed over in silence.
func TestIgnoredDropIns(t *testing.T) {
	const garbage = "garbage: [\n"
	dir := writeSet(t, map[string]string{
		mainName:                 seed,
		"conf.d/.hidden.yml":     garbage,
		"conf.d/x.yaml":          garbage,
		"conf.d/x.yml~":          garbage,
		"conf.d/.x.yml.swp":      garbage,
		"conf.d/#x.yml#":         garbage,
		"conf.d/x.yml.dpkg-old":  garbage,
		"conf.d/x.yml.dpkg-dist": garbage,
		"conf.d/README":          garbage,
		"conf.d/dir.yml/a.yml":   garbage,
		"conf.d/old/a.yml":       garbage,
		"conf.d/ok.yml":          "on_stop: keep\n",
		"conf.d/..2024_01_01/a":  garbage,
	})
	c := filepath.Join(dir, "conf.d")
	if err := syscall.Mkfifo(filepath.Join(c, "fifo.yml"), 0o644); err != nil {
		t.Fatal(err)
	}
	symlink(t, "nobody@host.1234:1700000000", filepath.Join(c, ".#x.yml")) // an Emacs lock
	symlink(t, "..2024_01_01", filepath.Join(c, "..data"))
	cfg := mustLoad(t, dir)
	want := []string{filepath.Join(dir, mainName), filepath.Join(c, "ok.yml")}
	if !reflect.DeepEqual(cfg.Files, want) || cfg.OnStop != OnStopKeep {
		t.Errorf("Files = %v OnStop = %q, want %v and keep", cfg.Files, cfg.OnStop, want)
	}
	copyOfX := " is not read: only *.yml files are read, and it looks like a backup, an editor's or the package manager's copy of x.yml; merge what it should change into x.yml."
	directory := " is not read: it is a directory, and only the *.yml files directly in " + c + " are read; move the files in it up if they should be."
	wantWarnings := []string{
		"#x.yml#" + copyOfX,
		".#x.yml" + copyOfX,
		`.hidden.yml is not read: names starting with "." are hidden; rename it to hidden.yml if it should be read.`,
		".x.yml.swp" + copyOfX,
		"README is not read: only *.yml files are read; rename it to end in .yml if it should be.",
		"dir.yml" + directory,
		"fifo.yml is not read: it is a named pipe, and only regular *.yml files are read.",
		"old" + directory,
		"x.yaml is not read: only *.yml files are read; rename it to x.yml if it should be.",
		"x.yml.dpkg-dist" + copyOfX,
		"x.yml.dpkg-old" + copyOfX,
		"x.yml~" + copyOfX,
	}
	for i, w := range wantWarnings {
		wantWarnings[i] = filepath.Join(c, w)
	}
	if !reflect.DeepEqual(cfg.Warnings, wantWarnings) {
		t.Errorf("Warnings:\n%s\nwant:\n%s", strings.Join(cfg.Warnings, "\n"), strings.Join(wantWarnings, "\n"))
	}
}

// TestDotDotEntriesOutsideKubernetes: entries named like kubelet's are
// passed over silently only where kubelet laid out conf.d (its ..data
// symlink is there); on a plain host they are named like any other entry
// that is not read.
func TestDotDotEntriesOutsideKubernetes(t *testing.T) {
	dir := writeSet(t, map[string]string{
		mainName:                seed,
		"conf.d/..2024_01_01/a": "",
		"conf.d/..x.yml":        "on_stop: keep\n",
		"conf.d/..data":         "", // a file, not kubelet's symlink
		"conf.d/ok.yml":         "",
	})
	c := filepath.Join(dir, "conf.d")
	cfg := mustLoad(t, dir)
	want := []string{
		filepath.Join(c, "..2024_01_01") + " is not read: it is a directory, and only the *.yml files directly in " + c + " are read; move the files in it up if they should be.",
		filepath.Join(c, "..data") + " is not read: only *.yml files are read; rename it to end in .yml if it should be.",
		filepath.Join(c, "..x.yml") + ` is not read: names starting with "." are hidden; rename it to x.yml if it should be read.`,
	}
	if !reflect.DeepEqual(cfg.Warnings, want) {
		t.Errorf("Warnings:\n%s\nwant:\n%s", strings.Join(cfg.Warnings, "\n"), strings.Join(want, "\n"))
	}
}

// TestWarningsEveryLoadPath: the warnings come with every way of loading,
// and with an invalid set's partial Config too.
func TestWarningsEveryLoadPath(t *testing.T) {
	dir := writeSet(t, map[string]string{mainName: seed, "conf.d/x.yaml": "on_stop: keep\n"})
	main := filepath.Join(dir, mainName)
	want := []string{filepath.Join(dir, "conf.d/x.yaml") + " is not read: only *.yml files are read; rename it to x.yml if it should be."}
	owner := uint32(os.Getuid())
	var c Cache
	for i := range 2 { // the second load hits the cache
		cfg, errs := c.loadPartial(main, owner)
		if len(errs) > 0 || !reflect.DeepEqual(cfg.Warnings, want) {
			t.Errorf("cached load %d: warnings %q, errors %v; want %q", i, cfg.Warnings, errs, want)
		}
	}
	if cfg, err := load(main, owner); err != nil || !reflect.DeepEqual(cfg.Warnings, want) {
		t.Errorf("load: %v, %v", cfg, err)
	}
	if err := os.WriteFile(main, []byte("log: {rate: 0}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, errs := loadPartial(main, owner)
	if len(errs) != 1 || !reflect.DeepEqual(cfg.Warnings, want) {
		t.Errorf("invalid set: warnings %q, errors %v; want %q and one error", cfg.Warnings, errs, want)
	}
}

func TestEmptyFilesAreValid(t *testing.T) {
	dir := writeSet(t, map[string]string{
		mainName:             "",
		"conf.d/a.yml":       "# only a comment\n\n   # and another\n",
		"conf.d/b.yml":       "---\n",
		"conf.d/c.yml":       "---\n# comment\n...\n",
		"conf.d/d.yml":       "~\n",
		"conf.d/e-blank.yml": "\n\n",
	})
	cfg := mustLoad(t, dir)
	if len(cfg.Endpoints) != 0 || len(cfg.Interfaces) != 0 || len(cfg.Files) != 6 {
		t.Errorf("cfg = %+v, want an empty config read from 6 files", cfg)
	}
	if want := (Log{Level: "info", Decisions: "denied", Rate: 50}); cfg.Log != want || cfg.OnStop != OnStopDetach {
		t.Errorf("Log %+v OnStop %q, want defaults", cfg.Log, cfg.OnStop)
	}
}

func TestUnreadableSets(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		prep  func(t *testing.T, dir string)
		want  []string
	}{{
		name:  "missing main file",
		files: map[string]string{"conf.d/x.yml": "on_stop: keep\n"},
		want:  []string{mainName + ": cannot read: no such file or directory"},
	}, {
		name:  "main file is a directory",
		files: map[string]string{mainName + "/x": ""},
		want:  []string{mainName + ": cannot read: not a regular file but a directory"},
	}, {
		name:  "conf.d is a file",
		files: map[string]string{mainName: seed, "conf.d": ""},
		want:  []string{"conf.d: cannot read: not a directory but a regular file"},
	}, {
		name:  "broken symlink drop-in",
		files: map[string]string{mainName: seed, "conf.d/a.yml": "log: {rate: 0}\n"},
		prep: func(t *testing.T, dir string) {
			symlink(t, "nowhere.yml", filepath.Join(dir, "conf.d/b.yml"))
		},
		want: []string{
			"conf.d/a.yml:1: log.rate must be between 1 and 2147483647, not 0",
			"conf.d/b.yml: cannot read: no such file or directory",
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeSet(t, tt.files)
			if tt.prep != nil {
				tt.prep(t, dir)
			}
			cfg, err := loadSet(t, dir)
			if cfg != nil || err == nil {
				t.Fatalf("load = %+v, %v; want an error", cfg, err)
			}
			if got := errorList(t, dir, err); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("errors %q, want %q", got, tt.want)
			}
		})
	}
}

func TestMissingConfDIsFine(t *testing.T) {
	dir := writeSet(t, map[string]string{mainName: seed})
	if _, err := os.Stat(filepath.Join(dir, "conf.d")); !os.IsNotExist(err) {
		t.Fatalf("conf.d exists: %v", err)
	}
	if cfg := mustLoad(t, dir); len(cfg.Files) != 1 {
		t.Errorf("Files = %v, want the main file only", cfg.Files)
	}
}
