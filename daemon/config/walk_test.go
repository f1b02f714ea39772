// SPDX-License-Identifier: Apache-2.0

package config

import (
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/nettcfilter/net-tc-filter/daemon/testnet"
	"golang.org/x/sys/unix"
)

// TestSymlinkedPaths: a file is trusted only if nobody but root can change
// what its path leads to: every directory on its real path and every
// directory holding a symlink it goes through is checked, as sshd's
// StrictModes checks the directories above a file.
func TestSymlinkedPaths(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		root  bool // needs chown
		prep  func(t *testing.T, dir string)
		want  func(dir string) []string // nil: loads
	}{{
		name:  "drop-in symlinked into a world-writable directory",
		files: map[string]string{mainName: seed, "other/x.yml": "on_stop: keep\n"},
		prep: func(t *testing.T, dir string) {
			mkdirs(t, dir, "conf.d")
			symlink(t, "../other/x.yml", filepath.Join(dir, "conf.d/x.yml"))
			chmod(t, filepath.Join(dir, "other"), 0o777)
		},
		want: func(dir string) []string {
			return []string{"other: refusing: directory writable by group or others (mode 0777), on the way to " + filepath.Join(dir, "conf.d/x.yml") + "; a user who can write it could swap what that path leads to and grant itself access — chmod go-w " + filepath.Join(dir, "other")}
		},
	}, {
		name:  "drop-in symlinked into a user's directory",
		files: map[string]string{mainName: seed, "home/alice/x.yml": "on_stop: keep\n"},
		root:  true,
		prep: func(t *testing.T, dir string) {
			mkdirs(t, dir, "conf.d")
			symlink(t, filepath.Join(dir, "home/alice/x.yml"), filepath.Join(dir, "conf.d/x.yml"))
			chown(t, filepath.Join(dir, "home/alice"), 1000)
		},
		want: func(dir string) []string {
			return []string{"home/alice: refusing: directory owned by uid 1000, not root, on the way to " + filepath.Join(dir, "conf.d/x.yml") + "; a user who owns it could swap what that path leads to and grant itself access — chown root " + filepath.Join(dir, "home/alice")}
		},
	}, {
		name:  "a user-owned directory further up the real path",
		files: map[string]string{mainName: seed, "home/alice/cfg/x.yml": "on_stop: keep\n"},
		root:  true,
		prep: func(t *testing.T, dir string) {
			mkdirs(t, dir, "conf.d")
			symlink(t, "../home/alice/cfg/x.yml", filepath.Join(dir, "conf.d/x.yml"))
			chown(t, filepath.Join(dir, "home/alice"), 1000)
		},
		want: func(dir string) []string {
			return []string{"home/alice: refusing: directory owned by uid 1000, not root, on the way to " + filepath.Join(dir, "conf.d/x.yml") + "; a user who owns it could swap what that path leads to and grant itself access — chown root " + filepath.Join(dir, "home/alice")}
		},
	}, {
		// The file and the directory it is in are safe, but the path
		// goes through a symlink in a writable directory, which anyone
		// can point elsewhere.
		name:  "an intermediate symlink in a world-writable directory",
		files: map[string]string{mainName: seed, "safe/x.yml": "on_stop: keep\n"},
		prep: func(t *testing.T, dir string) {
			mkdirs(t, dir, "conf.d")
			mkdirs(t, dir, "links")
			symlink(t, "../links/x.yml", filepath.Join(dir, "conf.d/x.yml"))
			symlink(t, "../safe/x.yml", filepath.Join(dir, "links/x.yml"))
			chmod(t, filepath.Join(dir, "links"), 0o757)
		},
		want: func(dir string) []string {
			return []string{"links: refusing: directory writable by group or others (mode 0757), on the way to " + filepath.Join(dir, "conf.d/x.yml") + "; a user who can write it could swap what that path leads to and grant itself access — chmod go-w " + filepath.Join(dir, "links")}
		},
	}, {
		name:  "main file symlinked into a group-writable directory",
		files: map[string]string{"real/" + mainName: seed},
		prep: func(t *testing.T, dir string) {
			symlink(t, "real/"+mainName, filepath.Join(dir, mainName))
			chmod(t, filepath.Join(dir, "real"), 0o775)
		},
		want: func(dir string) []string {
			return []string{"real: refusing: directory writable by group or others (mode 0775), on the way to " + filepath.Join(dir, mainName) + "; a user who can write it could swap what that path leads to and grant itself access — chmod go-w " + filepath.Join(dir, "real")}
		},
	}, {
		// One writable directory on the way to conf.d and to each of its
		// files is one problem, named once.
		name:  "conf.d symlinked into a world-writable directory",
		files: map[string]string{mainName: seed, "vol/d/a.yml": "on_stop: keep\n", "vol/d/b.yml": "log: {rate: 0}\n"},
		prep: func(t *testing.T, dir string) {
			symlink(t, "vol/d", filepath.Join(dir, "conf.d"))
			chmod(t, filepath.Join(dir, "vol"), 0o777)
		},
		want: func(dir string) []string {
			return []string{
				"vol: refusing: directory writable by group or others (mode 0777), on the way to " + filepath.Join(dir, "conf.d") + "; a user who can write it could swap what that path leads to and grant itself access — chmod go-w " + filepath.Join(dir, "vol"),
				"conf.d/b.yml:1: log.rate must be between 1 and 2147483647, not 0",
			}
		},
	}, {
		// Others may add to a sticky directory (like /tmp) but cannot
		// rename or remove root's entries there.
		name:  "root's file in a sticky world-writable directory",
		files: map[string]string{mainName: seed, "sticky/x.yml": "on_stop: keep\n"},
		prep: func(t *testing.T, dir string) {
			mkdirs(t, dir, "conf.d")
			symlink(t, "../sticky/x.yml", filepath.Join(dir, "conf.d/x.yml"))
			chmod(t, filepath.Join(dir, "sticky"), 0o777|os.ModeSticky)
		},
	}, {
		name:  "a user's symlink in a sticky directory",
		files: map[string]string{mainName: seed, "safe/x.yml": "on_stop: keep\n"},
		root:  true,
		prep: func(t *testing.T, dir string) {
			mkdirs(t, dir, "conf.d")
			mkdirs(t, dir, "sticky")
			symlink(t, "../sticky/x.yml", filepath.Join(dir, "conf.d/x.yml"))
			link := filepath.Join(dir, "sticky/x.yml")
			symlink(t, "../safe/x.yml", link)
			if err := os.Lchown(link, 1000, -1); err != nil {
				t.Fatal(err)
			}
			chmod(t, filepath.Join(dir, "sticky"), 0o777|os.ModeSticky)
		},
		want: func(dir string) []string {
			return []string{"sticky/x.yml: refusing: symlink owned by uid 1000 in a directory others can write to (mode 1777), on the way to " + filepath.Join(dir, "conf.d/x.yml") + "; its owner could point it elsewhere — chown -h root " + filepath.Join(dir, "sticky/x.yml")}
		},
	}, {
		// A sticky directory is fine on the way, not as the directory the
		// files are in: anyone could add a drop-in there.
		name:  "sticky conf.d",
		files: map[string]string{mainName: seed, "conf.d/x.yml": "on_stop: keep\n"},
		prep: func(t *testing.T, dir string) {
			chmod(t, filepath.Join(dir, "conf.d"), 0o777|os.ModeSticky)
		},
		want: func(dir string) []string {
			return []string{"conf.d: refusing: directory writable by group or others (mode 0777); a user who can write it could replace the files in it and grant itself access — chmod go-w " + filepath.Join(dir, "conf.d")}
		},
	}, {
		// The attack the walk must not miss: a deny in a drop-in that is
		// a symlink into a user's directory, which the user replaces with
		// something that cannot be read. The directory is still refused,
		// and the drop-in is an error, not a mere "not read".
		name:  "drop-in symlinked into a user's directory, now a directory there",
		files: map[string]string{mainName: seed, "home/mallory/deny.yml/x": ""},
		root:  true,
		prep: func(t *testing.T, dir string) {
			mkdirs(t, dir, "conf.d")
			symlink(t, filepath.Join(dir, "home/mallory/deny.yml"), filepath.Join(dir, "conf.d/deny.yml"))
			chown(t, filepath.Join(dir, "home/mallory"), 1000)
		},
		want: func(dir string) []string {
			return []string{
				"home/mallory: refusing: directory owned by uid 1000, not root, on the way to " + filepath.Join(dir, "conf.d/deny.yml") + "; a user who owns it could swap what that path leads to and grant itself access — chown root " + filepath.Join(dir, "home/mallory"),
				"conf.d/deny.yml: cannot read: a symlink to a directory, not to a regular file; a drop-in it should lead to is lost, and with it maybe a deny — point it at the file, or remove it",
			}
		},
	}, {
		name:  "drop-in symlinked into a user's directory, now a named pipe there",
		files: map[string]string{mainName: seed},
		root:  true,
		prep: func(t *testing.T, dir string) {
			mkdirs(t, dir, "conf.d")
			mkdirs(t, dir, "home/mallory")
			mkfifo(t, filepath.Join(dir, "home/mallory/deny.yml"))
			symlink(t, filepath.Join(dir, "home/mallory/deny.yml"), filepath.Join(dir, "conf.d/deny.yml"))
			chown(t, filepath.Join(dir, "home/mallory"), 1000)
		},
		want: func(dir string) []string {
			return []string{
				"home/mallory: refusing: directory owned by uid 1000, not root, on the way to " + filepath.Join(dir, "conf.d/deny.yml") + "; a user who owns it could swap what that path leads to and grant itself access — chown root " + filepath.Join(dir, "home/mallory"),
				"conf.d/deny.yml: cannot read: a symlink to a named pipe, not to a regular file; a drop-in it should lead to is lost, and with it maybe a deny — point it at the file, or remove it",
			}
		},
	}, {
		name:  "drop-in symlinked into a world-writable directory, now a named pipe there",
		files: map[string]string{mainName: seed},
		prep: func(t *testing.T, dir string) {
			mkdirs(t, dir, "conf.d")
			mkdirs(t, dir, "other")
			mkfifo(t, filepath.Join(dir, "other/deny.yml"))
			symlink(t, "../other/deny.yml", filepath.Join(dir, "conf.d/deny.yml"))
			chmod(t, filepath.Join(dir, "other"), 0o777)
		},
		want: func(dir string) []string {
			return []string{
				"other: refusing: directory writable by group or others (mode 0777), on the way to " + filepath.Join(dir, "conf.d/deny.yml") + "; a user who can write it could swap what that path leads to and grant itself access — chmod go-w " + filepath.Join(dir, "other"),
				"conf.d/deny.yml: cannot read: a symlink to a named pipe, not to a regular file; a drop-in it should lead to is lost, and with it maybe a deny — point it at the file, or remove it",
			}
		},
	}, {
		// Even where everything on the way is safe: a symlinked drop-in
		// is meant to be read.
		name:  "drop-in symlinked to a directory, all of it safe",
		files: map[string]string{mainName: seed, "conf.d/old/a.yml": "on_stop: keep\n"},
		prep: func(t *testing.T, dir string) {
			symlink(t, "old", filepath.Join(dir, "conf.d/old.yml"))
		},
		want: func(dir string) []string {
			return []string{
				"conf.d/old.yml: cannot read: a symlink to a directory, not to a regular file; a drop-in it should lead to is lost, and with it maybe a deny — point it at the file, or remove it",
			}
		},
	}, {
		// The main file's own problems are kept too when what it leads
		// to is not a file.
		name:  "main file symlinked to a directory in a world-writable directory",
		files: map[string]string{"vol/" + mainName + "/x": ""},
		prep: func(t *testing.T, dir string) {
			symlink(t, "vol/"+mainName, filepath.Join(dir, mainName))
			chmod(t, filepath.Join(dir, "vol"), 0o777)
		},
		want: func(dir string) []string {
			return []string{
				"vol: refusing: directory writable by group or others (mode 0777), on the way to " + filepath.Join(dir, mainName) + "; a user who can write it could swap what that path leads to and grant itself access — chmod go-w " + filepath.Join(dir, "vol"),
				mainName + ": cannot read: not a regular file but a directory",
			}
		},
	}, {
		name:  "symlink loop",
		files: map[string]string{mainName: seed, "conf.d/ok.yml": ""},
		prep: func(t *testing.T, dir string) {
			symlink(t, "b.yml", filepath.Join(dir, "conf.d/a.yml"))
			symlink(t, "a.yml", filepath.Join(dir, "conf.d/b.yml"))
		},
		want: func(string) []string {
			return []string{
				"conf.d/a.yml: cannot read: too many levels of symbolic links",
				"conf.d/b.yml: cannot read: too many levels of symbolic links",
			}
		},
	}, {
		// An unmounted volume must not read as "no drop-ins": they may
		// hold the denies.
		name:  "conf.d symlink leading nowhere",
		files: map[string]string{mainName: seed},
		prep: func(t *testing.T, dir string) {
			symlink(t, "vol/..data", filepath.Join(dir, "conf.d"))
		},
		want: func(string) []string {
			return []string{"conf.d: cannot read: no such file or directory"}
		},
	}, {
		name:  "absolute and relative hops, .. taken from where a symlink led",
		files: map[string]string{mainName: seed, "a/b/x.yml": "on_stop: keep\n"},
		prep: func(t *testing.T, dir string) {
			mkdirs(t, dir, "conf.d")
			mkdirs(t, dir, "c")
			symlink(t, filepath.Join(dir, "a/b"), filepath.Join(dir, "c/b"))
			// c/b/.. is a, not c.
			symlink(t, "../c/b/../b/./x.yml", filepath.Join(dir, "conf.d/x.yml"))
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
			if tt.want == nil {
				if err != nil {
					t.Fatalf("load: %v", err)
				}
				if cfg.OnStop != OnStopKeep {
					t.Errorf("on_stop %q: the symlinked drop-in was not read", cfg.OnStop)
				}
				return
			}
			if cfg != nil || err == nil {
				t.Fatalf("load = %+v, %v; want a refusal", cfg, err)
			}
			if got, want := errorList(t, dir, err), tt.want(dir); !reflect.DeepEqual(got, want) {
				t.Errorf("errors:\n%q\nwant:\n%q", got, want)
			}
		})
	}
}

// TestConfigMapVolume: kubelet makes a ConfigMap volume's directory mode
// 0777 and the container runtime bind-mounts it read-only; nobody can
// write through that mount, so its ..data is fine on the way to the
// files. The same layout writable is refused, and so is a writable
// directory that is read-only only because everything is, as under
// systemd's ProtectSystem=strict, or an entry of it that is not kubelet's.
func TestConfigMapVolume(t *testing.T) {
	testnet.RequireRoot(t)
	tests := []struct {
		name   string
		mounts func(dir string) []string // bound read-only onto themselves
		link   string                    // conf.d's target
		owner  string                    // an entry of the volume given to uid 1000
		ok     bool
	}{{
		name:   "read-only volume, through ..data",
		mounts: func(dir string) []string { return []string{filepath.Join(dir, "vol")} },
		link:   "vol/..data",
		ok:     true,
	}, {
		name:   "writable volume",
		mounts: func(string) []string { return nil },
		link:   "vol/..data",
	}, {
		name:   "everything read-only (ProtectSystem=strict)",
		mounts: func(dir string) []string { return []string{dir} },
		link:   "vol/..data",
	}, {
		// kubelet's entries are root's: one a user owns is not kubelet's.
		name:   "read-only volume, ..data owned by a user",
		mounts: func(dir string) []string { return []string{filepath.Join(dir, "vol")} },
		link:   "vol/..data",
		owner:  "..data",
	}, {
		name:   "read-only volume, not kubelet's entry",
		mounts: func(dir string) []string { return []string{filepath.Join(dir, "vol")} },
		link:   "vol/d",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeSet(t, map[string]string{
				mainName:                   seed,
				"vol/..2024_01_01.1/x.yml": "on_stop: keep\n",
				"vol/d/x.yml":              "on_stop: keep\n",
			})
			vol := filepath.Join(dir, "vol")
			symlink(t, "..2024_01_01.1", filepath.Join(vol, "..data"))
			symlink(t, tt.link, filepath.Join(dir, "conf.d"))
			chmod(t, vol, 0o777)
			if tt.owner != "" {
				if err := os.Lchown(filepath.Join(vol, tt.owner), 1000, -1); err != nil {
					t.Fatal(err)
				}
			}
			var cfg *Config
			var err error
			inMountNamespace(t, func() error {
				for _, m := range tt.mounts(dir) {
					if err := unix.Mount(m, m, "", unix.MS_BIND, ""); err != nil {
						return err
					}
					if err := unix.Mount("", m, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
						return err
					}
				}
				cfg, err = load(filepath.Join(dir, mainName), 0)
				return nil
			})
			if tt.ok {
				if err != nil || cfg.OnStop != OnStopKeep {
					t.Fatalf("load: %v; want the drop-in in the volume read", err)
				}
				return
			}
			want := []string{"vol: refusing: directory writable by group or others (mode 0777), on the way to " + filepath.Join(dir, "conf.d") + "; a user who can write it could swap what that path leads to and grant itself access — chmod go-w " + vol}
			if got := errorList(t, dir, err); !reflect.DeepEqual(got, want) {
				t.Errorf("errors %q, want %q", got, want)
			}
		})
	}
}

// inMountNamespace runs f on a thread of its own in a new private mount
// namespace, so that its mounts are never seen outside and vanish with
// the thread, which is never returned to the scheduler.
func inMountNamespace(t *testing.T, f func() error) {
	t.Helper()
	done := make(chan error)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
		if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
			done <- err
			return
		}
		if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
			done <- err
			return
		}
		done <- f()
	}()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestWalkKeepsOpenedObject: what is read is the object checked, even
// when the name is swapped for another file between the check and the
// open (simulated by swapping between walk and openLast).
func TestWalkKeepsOpenedObject(t *testing.T) {
	dir := writeSet(t, map[string]string{"a.yml": "on_stop: keep\n", "b.yml": "on_stop: detach\n"})
	w := walker{owner: uint32(os.Getuid()), target: filepath.Join(dir, "a.yml")}
	defer w.closeAll()
	if err := w.start(); err != nil {
		t.Fatal(err)
	}
	if err := w.resolve(filepath.Join(dir, "a.yml")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "b.yml"), filepath.Join(dir, "a.yml")); err != nil {
		t.Fatal(err)
	}
	f, err := w.openLast(filepath.Join(dir, "a.yml"), false)
	if err == nil {
		f.Close()
		t.Fatal("openLast read a file other than the one checked")
	}
	if !strings.Contains(err.Error(), "replaced while being opened") {
		t.Errorf("error %v, want it to say the file was replaced", err)
	}
}
