// SPDX-License-Identifier: Apache-2.0

package watch

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// Timing: a test waits up to waitFor for a Change it expects, and asserts
// the absence of one over 3×Debounce after the filesystem has settled, so a
// slow machine makes the tests slower, not flaky.
const (
	testDebounce = 100 * time.Millisecond
	waitFor      = 5 * time.Second
)

// env is a configuration layout in temporary directories: the config
// directory with the main file and conf.d/a.yml, and an account directory
// standing in for /etc.
type env struct {
	t     *testing.T
	dir   string // config directory (symlinks resolved, as events name it)
	main  string
	confD string
	acct  string
	w     *Watcher
}

func newEnv(t *testing.T) *env {
	t.Helper()
	dir := realTempDir(t)
	e := &env{
		t:     t,
		dir:   dir,
		main:  filepath.Join(dir, "net-tc-filter.yml"),
		confD: filepath.Join(dir, "conf.d"),
		acct:  realTempDir(t),
	}
	e.write(e.main, "main: 1\n")
	e.mkdir(e.confD)
	e.write(filepath.Join(e.confD, "a.yml"), "a: 1\n")
	e.write(filepath.Join(e.acct, "passwd"), "root:x:0:0::/root:/bin/sh\n")
	e.write(filepath.Join(e.acct, "group"), "root:x:0:\n")
	return e
}

func realTempDir(t *testing.T) string {
	t.Helper()
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// start watches e with the given timings (0 = test defaults).
func (e *env) start(debounce, maxDelay time.Duration) *Watcher {
	e.t.Helper()
	if debounce == 0 {
		debounce = testDebounce
	}
	if maxDelay == 0 {
		maxDelay = 20 * debounce
	}
	w, err := New(Options{
		ConfigPath:   e.main,
		AccountFiles: []string{filepath.Join(e.acct, "passwd"), filepath.Join(e.acct, "group")},
		Debounce:     debounce,
		MaxDelay:     maxDelay,
		Logger:       slog.New(slog.NewTextHandler(testWriter{e.t}, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() {
		if err := w.Close(); err != nil {
			e.t.Errorf("Close: %v", err)
		}
	})
	e.w = w
	return w
}

func (e *env) write(path, content string) {
	e.t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) appendTo(path, content string) {
	e.t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := f.WriteString(content); err != nil {
		e.t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) mkdir(path string) {
	e.t.Helper()
	if err := os.Mkdir(path, 0o755); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) rename(from, to string) {
	e.t.Helper()
	if err := os.Rename(from, to); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) symlink(target, link string) {
	e.t.Helper()
	if err := os.Symlink(target, link); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) removeAll(path string) {
	e.t.Helper()
	if err := os.RemoveAll(path); err != nil {
		e.t.Fatal(err)
	}
}

// expectChange waits for Changes that together name every path in want. A
// burst the machine's load split in two is still one expected change.
func (e *env) expectChange(want ...string) []string {
	e.t.Helper()
	var seen []string
	timeout := time.After(waitFor)
	for {
		missing := slices.DeleteFunc(slices.Clone(want), func(p string) bool { return slices.Contains(seen, p) })
		if len(seen) > 0 && len(missing) == 0 {
			return seen
		}
		select {
		case c, ok := <-e.w.Changes():
			if !ok {
				e.t.Fatal("Changes closed")
			}
			if !slices.IsSorted(c.Paths) || len(slices.Compact(slices.Clone(c.Paths))) != len(c.Paths) {
				e.t.Errorf("Change paths not sorted and distinct: %q", c.Paths)
			}
			seen = mergeSorted(seen, c.Paths)
		case <-timeout:
			e.t.Fatalf("no Change naming %q within %v (seen %q)", missing, waitFor, seen)
		}
	}
}

// settle drains Changes until none came for 3×Debounce, so that the trailing
// events of one step cannot be mistaken for the signal of the next.
func (e *env) settle() {
	e.t.Helper()
	quiet := 3 * e.w.debounce
	deadline := time.Now().Add(4 * waitFor)
	for time.Now().Before(deadline) {
		select {
		case _, ok := <-e.w.Changes():
			if !ok {
				e.t.Fatal("Changes closed")
			}
		case <-time.After(quiet):
			return
		}
	}
	e.t.Fatal("Changes never settled")
}

// expectNone asserts no Change within 3×Debounce.
func (e *env) expectNone() {
	e.t.Helper()
	select {
	case c := <-e.w.Changes():
		e.t.Fatalf("unexpected Change %q", c.Paths)
	case <-time.After(3 * e.w.debounce):
	}
}

func (e *env) watching(dir string) bool {
	return slices.Contains(e.w.fw.WatchList(), dir)
}

// TestSignals covers changes to existing files (cases 1–3 of the design)
// and the documented choice that any entry of conf.d counts (case 9).
func TestSignals(t *testing.T) {
	tests := []struct {
		name string
		act  func(e *env)
		want func(e *env) []string
	}{{
		name: "main file written in place",
		act:  func(e *env) { e.appendTo(e.main, "more: 1\n") },
		want: func(e *env) []string { return []string{e.main} },
	}, {
		name: "drop-in written in place",
		act:  func(e *env) { e.appendTo(filepath.Join(e.confD, "a.yml"), "more: 1\n") },
		want: func(e *env) []string { return []string{filepath.Join(e.confD, "a.yml")} },
	}, {
		name: "cp over drop-in (O_TRUNC and write)",
		act:  func(e *env) { e.write(filepath.Join(e.confD, "a.yml"), "a: 2\n") },
		want: func(e *env) []string { return []string{filepath.Join(e.confD, "a.yml")} },
	}, {
		name: "vim: swap file then rename over drop-in",
		act: func(e *env) {
			swp := filepath.Join(e.confD, ".a.yml.swp")
			e.write(swp, "a: 2\n")
			e.rename(swp, filepath.Join(e.confD, "a.yml"))
		},
		want: func(e *env) []string { return []string{filepath.Join(e.confD, "a.yml")} },
	}, {
		name: "sed -i: temp file then rename over drop-in",
		act: func(e *env) {
			tmp := filepath.Join(e.confD, "a.yml.tmp")
			e.write(tmp, "a: 2\n")
			e.rename(tmp, filepath.Join(e.confD, "a.yml"))
		},
		want: func(e *env) []string { return []string{filepath.Join(e.confD, "a.yml")} },
	}, {
		name: "main file replaced by rename",
		act: func(e *env) {
			tmp := filepath.Join(e.dir, ".net-tc-filter.yml.tmp")
			e.write(tmp, "main: 2\n")
			e.rename(tmp, e.main)
		},
		want: func(e *env) []string { return []string{e.main} },
	}, {
		name: "vim backupcopy=no: main renamed away then written anew",
		act: func(e *env) {
			e.rename(e.main, e.main+"~")
			e.write(e.main, "main: 2\n")
		},
		want: func(e *env) []string { return []string{e.main} },
	}, {
		name: "new drop-in",
		act:  func(e *env) { e.write(filepath.Join(e.confD, "b.yml"), "b: 1\n") },
		want: func(e *env) []string { return []string{filepath.Join(e.confD, "b.yml")} },
	}, {
		name: "drop-in deleted",
		act: func(e *env) {
			if err := os.Remove(filepath.Join(e.confD, "a.yml")); err != nil {
				e.t.Fatal(err)
			}
		},
		want: func(e *env) []string { return []string{filepath.Join(e.confD, "a.yml")} },
	}, {
		name: "conf.d made group-writable (the loader refuses it)",
		act: func(e *env) {
			if err := os.Chmod(e.confD, 0o775); err != nil {
				e.t.Fatal(err)
			}
		},
		want: func(e *env) []string { return []string{e.confD} },
	}, {
		// Documented choice: every entry of conf.d counts, the daemon skips
		// an unchanged policy.
		name: "editor swap file alone in conf.d",
		act:  func(e *env) { e.write(filepath.Join(e.confD, ".a.yml.swp"), "x") },
		want: func(e *env) []string { return []string{filepath.Join(e.confD, ".a.yml.swp")} },
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			e.start(0, 0)
			tt.act(e)
			e.expectChange(tt.want(e)...)
		})
	}
}

// TestConfigDirOtherFilesIgnored: unlike conf.d, the config directory may
// hold anything (it could be /etc itself), so only the main file and conf.d
// count there.
func TestConfigDirOtherFilesIgnored(t *testing.T) {
	e := newEnv(t)
	e.start(0, 0)
	e.write(filepath.Join(e.dir, ".net-tc-filter.yml.swp"), "x")
	e.write(filepath.Join(e.dir, "README"), "x")
	e.write(filepath.Join(e.dir, "other.tmp"), "x")
	e.rename(filepath.Join(e.dir, "other.tmp"), filepath.Join(e.dir, "other"))
	e.mkdir(filepath.Join(e.dir, "conf.d.new"))
	e.expectNone()

	// The watcher was working all along: the next change names only the
	// main file, none of the files above.
	e.appendTo(e.main, "more: 1\n")
	if got := e.expectChange(e.main); !slices.Equal(got, []string{e.main}) {
		t.Errorf("Change paths = %q, want only %q", got, e.main)
	}
}

func TestConfDRemovedAndRecreated(t *testing.T) {
	e := newEnv(t)
	e.start(0, 0)

	e.removeAll(e.confD)
	e.expectChange(e.confD)
	e.settle()

	e.mkdir(e.confD)
	e.write(filepath.Join(e.confD, "a.yml"), "a: 2\n")
	e.expectChange(e.confD)
	e.settle()
	if !e.watching(e.confD) {
		t.Fatalf("re-created conf.d not watched; watching %q", e.w.fw.WatchList())
	}

	// The new watch, not a leftover of the first, reports this.
	e.write(filepath.Join(e.confD, "b.yml"), "b: 1\n")
	e.expectChange(filepath.Join(e.confD, "b.yml"))
	e.settle()

	// Twice, in case the first re-creation worked by accident.
	e.removeAll(e.confD)
	e.mkdir(e.confD)
	e.expectChange(e.confD)
	e.settle()
	e.write(filepath.Join(e.confD, "c.yml"), "c: 1\n")
	e.expectChange(filepath.Join(e.confD, "c.yml"))
}

func TestConfDRenamedIntoPlace(t *testing.T) {
	for _, existing := range []bool{false, true} {
		t.Run(fmt.Sprintf("replacing existing conf.d %v", existing), func(t *testing.T) {
			e := newEnv(t)
			if !existing {
				e.removeAll(e.confD)
			}
			e.start(0, 0)

			prepared := filepath.Join(e.dir, "conf.d.new")
			e.mkdir(prepared)
			e.write(filepath.Join(prepared, "x.yml"), "x: 1\n")
			if existing {
				e.rename(e.confD, filepath.Join(e.dir, "conf.d.old"))
			}
			e.rename(prepared, e.confD)
			e.expectChange(e.confD)
			e.settle()

			e.appendTo(filepath.Join(e.confD, "x.yml"), "more: 1\n")
			e.expectChange(filepath.Join(e.confD, "x.yml"))
			if existing {
				e.settle()
				// The old directory moved away is not watched any more.
				e.write(filepath.Join(e.dir, "conf.d.old", "a.yml"), "a: 3\n")
				e.expectNone()
			}
		})
	}
}

func TestConfDAbsentAtStart(t *testing.T) {
	e := newEnv(t)
	e.removeAll(e.confD)
	e.start(0, 0)

	e.mkdir(e.confD)
	e.expectChange(e.confD)
	e.settle()

	e.write(filepath.Join(e.confD, "a.yml"), "a: 1\n")
	e.expectChange(filepath.Join(e.confD, "a.yml"))
}

// configMap lays out a Kubernetes ConfigMap volume in dir: the files in a
// timestamped directory and ..data pointing at it. swap updates it the way
// the kubelet does.
type configMap struct {
	e     *env
	dir   string
	files []string
	gen   int
}

func newConfigMap(e *env, dir string, files ...string) *configMap {
	c := &configMap{e: e, dir: dir, files: files, gen: 1}
	e.mkdir(c.current())
	for _, f := range files {
		e.write(filepath.Join(c.current(), f), f+": 1\n")
	}
	e.symlink(filepath.Base(c.current()), filepath.Join(dir, "..data"))
	return c
}

func (c *configMap) current() string {
	return filepath.Join(c.dir, fmt.Sprintf("..2026_11_24_10_00_0%d.123", c.gen))
}

func (c *configMap) swap() {
	old := c.current()
	c.gen++
	c.e.mkdir(c.current())
	for _, f := range c.files {
		c.e.write(filepath.Join(c.current(), f), fmt.Sprintf("%s: %d\n", f, c.gen))
	}
	tmp := filepath.Join(c.dir, "..data_tmp")
	c.e.symlink(filepath.Base(c.current()), tmp)
	c.e.rename(tmp, filepath.Join(c.dir, "..data"))
	c.e.removeAll(old)
}

// TestConfigMapInConfD: conf.d is the volume, drop-ins are x.yml -> ..data/x.yml.
func TestConfigMapInConfD(t *testing.T) {
	e := newEnv(t)
	e.removeAll(e.confD)
	e.mkdir(e.confD)
	cm := newConfigMap(e, e.confD, "a.yml")
	e.symlink("..data/a.yml", filepath.Join(e.confD, "a.yml"))
	e.start(0, 0)

	for range 3 {
		cm.swap()
		e.expectChange(filepath.Join(e.confD, "..data"))
		e.settle()
		if !e.watching(cm.current()) {
			t.Fatalf("target directory %s not watched; watching %q", cm.current(), e.w.fw.WatchList())
		}
		// An in-place edit of the resolved target is seen too.
		e.appendTo(filepath.Join(cm.current(), "a.yml"), "more: 1\n")
		e.expectChange(filepath.Join(cm.current(), "a.yml"))
		e.settle()
	}
}

// TestConfDSymlinkToVolume: conf.d itself is a symlink into a ConfigMap
// volume elsewhere, so the swap happens outside the config directory.
func TestConfDSymlinkToVolume(t *testing.T) {
	e := newEnv(t)
	e.removeAll(e.confD)
	vol := filepath.Join(realTempDir(t), "cm")
	e.mkdir(vol)
	cm := newConfigMap(e, vol, "a.yml", "b.yml")
	e.symlink(filepath.Join(vol, "..data"), e.confD)
	e.start(0, 0)
	if !e.watching(cm.current()) {
		t.Fatalf("resolved conf.d %s not watched; watching %q", cm.current(), e.w.fw.WatchList())
	}

	for range 3 {
		old := cm.current()
		cm.swap()
		e.expectChange(filepath.Join(vol, "..data"))
		e.settle()
		if list := e.w.fw.WatchList(); !slices.Contains(list, cm.current()) || slices.Contains(list, old) {
			t.Fatalf("after swap want %s watched and %s not; watching %q", cm.current(), old, list)
		}
		e.write(filepath.Join(cm.current(), "c.yml"), "c: 1\n")
		e.expectChange(filepath.Join(cm.current(), "c.yml"))
		e.settle()
	}

	// Unrelated entries of the volume directory do not count.
	e.write(filepath.Join(vol, "unrelated"), "x")
	e.expectNone()
}

// TestMainFileSymlink: net-tc-filter.yml -> ..data/net-tc-filter.yml.
func TestMainFileSymlink(t *testing.T) {
	e := newEnv(t)
	if err := os.Remove(e.main); err != nil {
		t.Fatal(err)
	}
	cm := newConfigMap(e, e.dir, "net-tc-filter.yml")
	e.symlink("..data/net-tc-filter.yml", e.main)
	e.start(0, 0)

	for range 3 {
		cm.swap()
		e.expectChange(filepath.Join(e.dir, "..data"))
		e.settle()
		target := filepath.Join(cm.current(), "net-tc-filter.yml")
		e.appendTo(target, "more: 1\n")
		e.expectChange(target)
		e.settle()
	}
}

func TestAccountFiles(t *testing.T) {
	replace := func(tmpName, name string) func(e *env) {
		return func(e *env) {
			tmp := filepath.Join(e.acct, tmpName)
			e.write(tmp, "root:x:0:0::/root:/bin/sh\nu:x:1000:1000::/home/u:/bin/sh\n")
			e.rename(tmp, filepath.Join(e.acct, name))
		}
	}
	tests := []struct {
		name string
		act  func(e *env)
		want string
	}{
		{"passwd in place", func(e *env) { e.appendTo(filepath.Join(e.acct, "passwd"), "u:x:1000:1000::/:/bin/sh\n") }, "passwd"},
		{"group in place", func(e *env) { e.appendTo(filepath.Join(e.acct, "group"), "u:x:1000:\n") }, "group"},
		{"passwd+ renamed over passwd", replace("passwd+", "passwd"), "passwd"},
		{"npasswd renamed over passwd", replace("npasswd", "passwd"), "passwd"},
		{"passwd.lock renamed over passwd", replace("passwd.lock", "passwd"), "passwd"},
		{"group+ renamed over group", replace("group+", "group"), "group"},
		{"passwd deleted", func(e *env) {
			if err := os.Remove(filepath.Join(e.acct, "passwd")); err != nil {
				e.t.Fatal(err)
			}
		}, "passwd"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			e.start(0, 0)
			tt.act(e)
			e.expectChange(filepath.Join(e.acct, tt.want))
		})
	}
}

// TestAccountDirOtherFilesIgnored: the account files live in /etc, where
// much else changes; only their own names count.
func TestAccountDirOtherFilesIgnored(t *testing.T) {
	e := newEnv(t)
	e.start(0, 0)
	e.write(filepath.Join(e.acct, "resolv.conf"), "nameserver 127.0.0.1\n")
	e.appendTo(filepath.Join(e.acct, "resolv.conf"), "search example\n")
	e.write(filepath.Join(e.acct, "ld.so.cache~"), "x")
	e.rename(filepath.Join(e.acct, "ld.so.cache~"), filepath.Join(e.acct, "ld.so.cache"))
	e.write(filepath.Join(e.acct, "passwd-"), "backup\n") // shadow-utils' backup copy
	e.write(filepath.Join(e.acct, "shadow"), "x")
	e.write(filepath.Join(e.acct, ".pwd.lock"), "")
	if err := os.Remove(filepath.Join(e.acct, ".pwd.lock")); err != nil {
		t.Fatal(err)
	}
	e.mkdir(filepath.Join(e.acct, "passwd.d"))
	e.expectNone()

	e.appendTo(filepath.Join(e.acct, "passwd"), "u:x:1000:1000::/:/bin/sh\n")
	want := filepath.Join(e.acct, "passwd")
	if got := e.expectChange(want); !slices.Equal(got, []string{want}) {
		t.Errorf("Change paths = %q, want only %q", got, want)
	}
}

// TestBurstSignalsOnce: 50 writes to several files in one burst are one
// Change. Debounce is longer than elsewhere so that a scheduling hiccup on a
// loaded machine cannot split the (few milliseconds long) burst.
func TestBurstSignalsOnce(t *testing.T) {
	e := newEnv(t)
	e.start(300*time.Millisecond, 10*time.Second)
	files := []string{e.main, filepath.Join(e.confD, "a.yml"), filepath.Join(e.confD, "b.yml"),
		filepath.Join(e.confD, "c.yml"), filepath.Join(e.acct, "passwd")}
	begin := time.Now()
	for i := range 50 {
		e.write(files[i%len(files)], fmt.Sprintf("v: %d\n", i))
	}
	t.Logf("burst took %v", time.Since(begin))

	got := e.expectChange(files...)
	if !slices.Equal(got, mergeSorted(nil, files)) {
		t.Errorf("Change paths = %q, want %q", got, mergeSorted(nil, files))
	}
	e.expectNone()
}

// TestMaxDelay: events keep coming faster than Debounce, yet a Change comes
// before they stop. The stream is a file in conf.d that is not read (a log
// someone put there): a file the loader reads that keeps being written in
// place is held until it is quiet (TestInPlaceWritesQuiet).
func TestMaxDelay(t *testing.T) {
	e := newEnv(t)
	e.start(300*time.Millisecond, 600*time.Millisecond)
	log := filepath.Join(e.confD, "app.log")
	var stopped atomic.Bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer stopped.Store(true)
		for i := range 100 { // 3s
			if err := os.WriteFile(log, fmt.Appendf(nil, "v: %d\n", i), 0o644); err != nil {
				t.Error(err)
				return
			}
			time.Sleep(30 * time.Millisecond)
		}
	}()
	defer func() { <-done }()
	e.expectChange(log)
	if stopped.Load() {
		t.Error("first Change came only after the stream of writes stopped")
	}
}

// TestUnreadChangesCoalesce: with no reader, later bursts merge into the
// pending Change instead of blocking the watcher.
func TestUnreadChangesCoalesce(t *testing.T) {
	w := &Watcher{changes: make(chan Change, 1)}
	w.emit([]string{"/a", "/c"})
	w.emit([]string{"/b", "/c"})
	w.emit(nil) // a lost-events burst adds no path but still signals
	got := <-w.changes
	if want := []string{"/a", "/b", "/c"}; !slices.Equal(got.Paths, want) {
		t.Errorf("merged paths = %q, want %q", got.Paths, want)
	}
	select {
	case c := <-w.changes:
		t.Errorf("second Change %q pending, want them merged", c.Paths)
	default:
	}
}

// TestCloseWithUnreadChanges: a daemon that stopped reading neither blocks
// the watcher nor Close, and Close closes Changes after at most one value.
func TestCloseWithUnreadChanges(t *testing.T) {
	e := newEnv(t)
	w := e.start(0, 0)
	for i := range 3 {
		e.write(filepath.Join(e.confD, fmt.Sprintf("n%d.yml", i)), "x: 1\n")
		time.Sleep(3 * testDebounce)
	}
	closed := make(chan error, 1)
	go func() { closed <- w.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatalf("Close: %v", err)
		}
	case <-time.After(waitFor):
		t.Fatal("Close blocked")
	}
	n := 0
	for range w.Changes() {
		n++
	}
	if n > 1 {
		t.Errorf("%d Changes were pending, want at most 1", n)
	}
	if err := w.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestNewRejects(t *testing.T) {
	for _, opts := range []Options{
		{},
		{ConfigPath: "/x.yml", Debounce: -1},
		{ConfigPath: "/x.yml", MaxDelay: -1},
	} {
		if w, err := New(opts); err == nil {
			w.Close()
			t.Errorf("New(%+v) succeeded", opts)
		}
	}
}

func TestResolve(t *testing.T) {
	dir := realTempDir(t)
	e := &env{t: t}
	vol := filepath.Join(dir, "vol")
	e.mkdir(vol)
	e.mkdir(filepath.Join(vol, "..t1"))
	e.write(filepath.Join(vol, "..t1", "a.yml"), "")
	e.symlink("..t1", filepath.Join(vol, "..data"))
	cfg := filepath.Join(dir, "cfg")
	e.mkdir(cfg)
	e.symlink(filepath.Join(vol, "..data"), filepath.Join(cfg, "conf.d"))
	e.symlink("loop", filepath.Join(cfg, "loop"))

	tests := []struct {
		path     string
		wantReal string
		wantDeps []dep
	}{{
		path:     filepath.Join(cfg, "conf.d", "a.yml"),
		wantReal: filepath.Join(vol, "..t1", "a.yml"),
		wantDeps: []dep{{cfg, "conf.d"}, {vol, "..data"}, {filepath.Join(vol, "..t1"), "a.yml"}},
	}, {
		path:     filepath.Join(cfg, "conf.d"),
		wantReal: filepath.Join(vol, "..t1"),
		wantDeps: []dep{{cfg, "conf.d"}, {vol, "..data"}, {vol, "..t1"}},
	}, {
		path:     filepath.Join(cfg, "missing", "x.yml"),
		wantDeps: []dep{{cfg, "missing"}},
	}, {
		path:     filepath.Join(cfg, "conf.d", "a.yml", "x"),
		wantDeps: []dep{{cfg, "conf.d"}, {vol, "..data"}, {filepath.Join(vol, "..t1"), "a.yml"}},
	}, {
		path:     cfg + "/conf.d/../..t1/a.yml", // not Join: that would drop the ".."
		wantReal: filepath.Join(vol, "..t1", "a.yml"),
		wantDeps: []dep{{cfg, "conf.d"}, {vol, "..data"}, {filepath.Join(vol, "..t1"), "a.yml"}},
	}}
	for _, tt := range tests {
		real, deps := resolve(tt.path)
		if real != tt.wantReal || !slices.Equal(deps, tt.wantDeps) {
			t.Errorf("resolve(%s) = %q, %v; want %q, %v", tt.path, real, deps, tt.wantReal, tt.wantDeps)
		}
	}
	if real, deps := resolve(filepath.Join(cfg, "loop")); real != "" || len(deps) != maxSymlinks+1 {
		t.Errorf("resolve(loop) = %q, %d deps; want unresolved after %d links", real, len(deps), maxSymlinks)
	}
}

// TestHeldWhileWriting: a file of the set written in place, slowly, by one
// writer is signalled once the writer closes it, never while it is open
// (SPEC §1: a drop-in being written is never applied half-written).
func TestHeldWhileWriting(t *testing.T) {
	for _, name := range []string{"main", "drop-in", "new drop-in"} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			e.start(0, 2*testDebounce)
			path := map[string]string{
				"main": e.main, "drop-in": filepath.Join(e.confD, "a.yml"), "new drop-in": filepath.Join(e.confD, "b.yml"),
			}[name]
			f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			// Chunks further apart than the debounce and MaxDelay.
			for i := range 3 {
				if _, err := fmt.Fprintf(f, "chunk%d: 1\n", i); err != nil {
					t.Fatal(err)
				}
				deadline := time.Now().Add(6 * testDebounce)
				for time.Now().Before(deadline) {
					e.expectNone()
				}
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			e.expectChange(path)
		})
	}
}

// TestOtherWritersDoNotHold: only the files the loader reads are asked
// about. An editor keeps its swap file open while the admin edits; other
// drop-ins' changes still reach the daemon.
func TestOtherWritersDoNotHold(t *testing.T) {
	e := newEnv(t)
	e.start(0, 0)
	swp, err := os.OpenFile(filepath.Join(e.confD, ".a.yml.swp"), os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer swp.Close()
	e.settle()
	e.write(filepath.Join(e.confD, "b.yml"), "b: 1\n")
	e.expectChange(filepath.Join(e.confD, "b.yml"))
}

// TestInPlaceWritesQuiet: a file the loader reads, written in place in
// several opens (`>` then `>>`), is signalled only once the writes have
// stopped for inPlaceQuiet; a file renamed into place is signalled at once,
// and so is a burst of account files alone.
func TestInPlaceWritesQuiet(t *testing.T) {
	e := newEnv(t)
	e.start(0, 0)
	drop := filepath.Join(e.confD, "a.yml")
	began := time.Now()
	e.write(drop, "endpoints:\n")
	time.Sleep(inPlaceQuiet / 2)
	e.appendTo(drop, "  - x: {}\n")
	lastWrite := time.Now()
	e.expectChange(drop)
	if quiet := time.Since(lastWrite); quiet < inPlaceQuiet {
		t.Errorf("Change %v after the last in-place write, want ≥ %v (first write %v ago)", quiet, inPlaceQuiet, time.Since(began))
	}
	e.settle()

	tmp := filepath.Join(e.confD, ".b.yml.tmp")
	e.write(tmp, "b: 1\n")
	e.rename(tmp, filepath.Join(e.confD, "b.yml"))
	renamed := time.Now()
	e.expectChange(filepath.Join(e.confD, "b.yml"))
	if d := time.Since(renamed); d >= inPlaceQuiet {
		t.Errorf("a rename into place was held %v", d)
	}
	e.settle()

	// An account file while a drop-in is open for writing: not held.
	f, err := os.OpenFile(drop, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	e.write(filepath.Join(e.acct, "passwd"), "root:x:0:0::/root:/bin/sh\nbob:x:1002:1002::/:/bin/sh\n")
	e.expectChange(filepath.Join(e.acct, "passwd"))
}
