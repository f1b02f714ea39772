// SPDX-License-Identifier: Apache-2.0

// Package watch tells the daemon when its configuration must be reloaded.
//
// The configuration is the main file, the drop-ins in conf.d/ beside it, and
// the account databases (/etc/passwd, /etc/group) that user and group names
// resolve through. None of them can be watched as a file: editors, cp, sed -i,
// shadow-utils and Kubernetes all replace files by rename, which would leave a
// file watch on an inode nobody reads any more. So the Watcher watches
// directories, and after every burst of changes it recomputes which
// directories matter (conf.d may have been deleted, re-created, or be a
// symlink whose target was swapped) and moves its inotify watches to match.
//
// Create the Watcher before the first load: a change made while the daemon
// is loading is then reported afterwards rather than lost.
package watch

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/nettcfilter/net-tc-filter/daemon/config"
)

// Defaults for the zero values of Options. The debounce only has to join
// the events of one save: the daemon checks on its own that the files stood
// still while it read them.
const (
	DefaultDebounce = 20 * time.Millisecond
	DefaultMaxDelay = 2 * time.Second
)

// DefaultAccountFiles are the NSS files whose change can change what a user
// or group name in the configuration means.
var DefaultAccountFiles = []string{"/etc/passwd", "/etc/group"}

// Options configures a Watcher.
type Options struct {
	ConfigPath string // main config file; conf.d is beside it

	// AccountFiles default to DefaultAccountFiles when nil; an empty non-nil
	// slice watches none (for a daemon that does not resolve names).
	AccountFiles []string

	// Debounce is the quiet time after the last event before signalling: a
	// save is several events (create, write, rename), and reloading on the
	// first would read a half-written set. Default DefaultDebounce.
	Debounce time.Duration

	// MaxDelay bounds how long a continuous stream of events (a log file
	// someone placed in conf.d) can hold a reload back. Files the loader
	// reads are held while written, however long (see inPlaceQuiet).
	// Default DefaultMaxDelay.
	MaxDelay time.Duration

	Logger *slog.Logger // for watch errors (e.g. inotify limits); nil = slog.Default()
}

// Change is one debounced burst of relevant events.
type Change struct {
	// Paths are the distinct paths that changed, sorted, as the kernel
	// named them: under the directories actually watched, so with symlinks
	// resolved. Empty when the kernel dropped events (inotify queue
	// overflow): then what changed is unknown and the daemon must reload
	// anyway.
	Paths []string
}

// Watcher reports when the configuration must be reloaded. Its methods may
// be called from any goroutine.
type Watcher struct {
	fw       *fsnotify.Watcher
	log      *slog.Logger
	debounce time.Duration
	maxDelay time.Duration

	configPath string
	confD      string
	accounts   []string

	// Owned by New until the goroutine starts, then by the goroutine alone.
	filters map[string]*filter // watched directory -> which of its entries matter
	failed  map[string]string  // directory -> last Add error logged, so a persistent failure is logged once

	changes   chan Change
	done      chan struct{}
	exited    chan struct{}
	closeOnce sync.Once
	closeErr  error
}

// filter says which entries of a watched directory matter.
type filter struct {
	all   bool            // every entry, e.g. conf.d
	names map[string]bool // else only these base names
}

func (f *filter) match(name string) bool { return f.all || f.names[name] }

// New starts watching. It fails only when inotify cannot start (e.g. the
// fs.inotify.max_user_instances limit) or the options are invalid; a
// directory that cannot be watched is logged and retried at every later
// change, because the daemon is still correct without automatic reloads.
func New(opts Options) (*Watcher, error) {
	if opts.ConfigPath == "" {
		return nil, errors.New("watch: no config path")
	}
	if opts.Debounce < 0 || opts.MaxDelay < 0 {
		return nil, fmt.Errorf("watch: negative debounce %v or max delay %v", opts.Debounce, opts.MaxDelay)
	}
	main, err := filepath.Abs(opts.ConfigPath)
	if err != nil {
		return nil, fmt.Errorf("watch %s: %w", opts.ConfigPath, err)
	}
	accountFiles := opts.AccountFiles
	if accountFiles == nil {
		accountFiles = DefaultAccountFiles
	}
	accounts := make([]string, 0, len(accountFiles))
	for _, p := range accountFiles {
		abs, err := filepath.Abs(p)
		if err != nil {
			return nil, fmt.Errorf("watch %s: %w", p, err)
		}
		accounts = append(accounts, abs)
	}
	w := &Watcher{
		log:        opts.Logger,
		debounce:   opts.Debounce,
		maxDelay:   opts.MaxDelay,
		configPath: main,
		confD:      config.DropInDir(main),
		accounts:   accounts,
		failed:     map[string]string{},
		changes:    make(chan Change, 1),
		done:       make(chan struct{}),
		exited:     make(chan struct{}),
	}
	if w.log == nil {
		w.log = slog.Default()
	}
	if w.debounce == 0 {
		w.debounce = DefaultDebounce
	}
	if w.maxDelay == 0 {
		w.maxDelay = DefaultMaxDelay
	}
	w.fw, err = fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("watch: start inotify: %w", err)
	}
	w.reconcile()
	go w.run()
	return w, nil
}

// Changes delivers one Change per debounced burst. It holds at most one:
// a reload reads the whole set, so a burst that happens while an earlier
// Change is still unread is merged into it instead of queued behind it.
// The channel is closed by Close.
func (w *Watcher) Changes() <-chan Change { return w.changes }

// Close stops watching, waits for the watching goroutine to end and closes
// the Changes channel. Calling it again returns the first result.
func (w *Watcher) Close() error {
	w.closeOnce.Do(func() {
		close(w.done)
		<-w.exited
		if err := w.fw.Close(); err != nil {
			w.closeErr = fmt.Errorf("watch: close inotify: %w", err)
		}
	})
	return w.closeErr
}

func (w *Watcher) run() {
	defer close(w.exited)
	defer close(w.changes)

	// Stopped until the first relevant event. Reset without draining is
	// safe since Go 1.23 timers (go.mod says 1.26): no stale tick survives.
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	var (
		paths   = map[string]struct{}{}
		pending bool      // a burst has started and not been signalled yet
		first   time.Time // when it started, for MaxDelay
		held    hold      // the burst's signal waits for a writer to close
		// lastInPlace is the last write into a file the loader reads
		// (zero: none yet; renames into place are not such writes).
		lastInPlace time.Time
	)
	arm := func() {
		now := time.Now()
		if !pending {
			pending, first = true, now
		}
		deadline := now.Add(w.debounce)
		if limit := first.Add(w.maxDelay); limit.Before(deadline) {
			deadline = limit
		}
		timer.Reset(time.Until(deadline))
	}

	for {
		select {
		case <-w.done:
			return
		case ev, ok := <-w.fw.Events:
			if !ok {
				return
			}
			if !w.relevant(ev) {
				continue
			}
			paths[ev.Name] = struct{}{}
			if ev.Has(fsnotify.Write) && w.readsFile(ev.Name) {
				lastInPlace = time.Now()
			}
			// Re-watch now rather than at the end of the burst: a re-created
			// conf.d is typically filled right after mkdir, and the sooner it
			// is watched, the fewer of those writes go unseen. (Unseen ones
			// are not lost: the reload after this burst reads them.)
			if ev.Has(fsnotify.Create | fsnotify.Remove | fsnotify.Rename) {
				w.reconcile()
			}
			// A held change is polled already; a slow writer's every
			// write must not make it ask again at once.
			if held.file == "" {
				arm()
			}
		case err, ok := <-w.fw.Errors:
			if !ok {
				return
			}
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				// Some events were dropped, maybe relevant ones: reload to be sure.
				w.log.Warn("config watch: kernel dropped events; reloading to be safe",
					"error", err, "hint", "raise fs.inotify.max_queued_events")
				arm()
				continue
			}
			w.log.Warn("config watch: inotify error", "error", err)
		case <-timer.C:
			// Re-resolve before signalling, so that anything changed after
			// the daemon starts reading is reported by the next Change.
			w.reconcile()
			// Every reload reads the whole set: none while a file
			// written in place may still get its next chunk.
			if wait := time.Until(lastInPlace.Add(inPlaceQuiet)); wait > 0 {
				timer.Reset(wait)
				continue
			}
			// A burst of account files alone (a deleted user's names to
			// resolve again) does not wait for a writer of the set: the
			// load waits for it a while, and a failed reload still
			// resolves the live policy's names.
			if !w.accountsOnly(paths) && held.hold(w.writing(), w.log) {
				// Long held: tell the daemon once, whose load then
				// fails naming the file (the running policy stays),
				// and keep waiting for the writer to close.
				if held.report() {
					w.emit(sortedKeys(paths))
				}
				timer.Reset(writePoll)
				continue
			}
			w.emit(sortedKeys(paths))
			clear(paths)
			pending = false
		}
	}
}

// A file of the set that is open for writing is being written: a burst's
// change is held until every writer closed, polled at writePoll, however
// long that takes (the daemon's own load would otherwise give up after a
// while and keep the running policy, and nothing would tell it to read the
// file once closed). After writeWarn the daemon is told once, so that its
// failing load names the file, and the change is signalled again when the
// writer closes. Only files the loader reads are asked about: an editor
// keeps its swap file open for the whole session.
//
// A file written in place (not renamed into place) may also be written in
// several opens (`>` then `>>`, a script appending line by line): its
// change is signalled only once the set's files have had no write for
// inPlaceQuiet. A writer that pauses longer than that between closing and
// reopening writes two versions, each applied like any edit. Renames into
// place (editors, cp to a temporary name, ConfigMaps) are whole at once
// and wait for nothing.
const (
	writePoll    = 50 * time.Millisecond
	writeWarn    = 10 * time.Second
	inPlaceQuiet = 2 * time.Second
)

// readsFile reports whether path, as an event names it (real directories),
// is a file the loader reads: the main file or a drop-in.
func (w *Watcher) readsFile(path string) bool {
	if real, _ := resolve(w.configPath); path == real {
		return true
	}
	confD, _ := resolve(w.confD)
	return confD != "" && filepath.Dir(path) == confD && config.IsDropIn(filepath.Base(path))
}

// accountsOnly reports whether every path of a burst is an account file.
func (w *Watcher) accountsOnly(paths map[string]struct{}) bool {
	if len(paths) == 0 {
		return false // events were lost: anything may have changed
	}
	accounts := map[string]bool{}
	for _, a := range w.accounts {
		if real, _ := resolve(a); real != "" {
			accounts[real] = true
		}
		accounts[a] = true
	}
	for p := range paths {
		if !accounts[p] {
			return false
		}
	}
	return true
}

// writing names a file of the configuration set that is open for writing,
// or "" when none is, or when the kernel cannot tell (the daemon's load
// then waits for the files to be quiet instead).
func (w *Watcher) writing() string {
	f, _ := config.Writing(config.SetPaths(w.configPath))
	return f
}

// hold tracks a held change, to say so once when it lasts.
type hold struct {
	since    time.Time
	file     string
	warned   bool
	reported bool
}

// report says, once per hold, when a hold has lasted writeWarn.
func (h *hold) report() bool {
	if h.warned && !h.reported {
		h.reported = true
		return true
	}
	return false
}

// hold reports whether the change must wait for file's writer, and logs
// when the wait gets long. An empty file ends the hold.
func (h *hold) hold(file string, log *slog.Logger) bool {
	if file == "" {
		*h = hold{}
		return false
	}
	now := time.Now()
	if h.file != file {
		*h = hold{since: now, file: file}
		log.Debug("config watch: waiting for a writer to close the file", "file", file)
	}
	if !h.warned && now.Sub(h.since) >= writeWarn {
		h.warned = true
		log.Warn("config watch: a configuration file has been open for writing for a while; the running policy stays, and its change is applied once it is closed",
			"file", file, "for", now.Sub(h.since).Round(time.Second))
	}
	return true
}

// emit never blocks: the watcher must keep draining inotify whatever the
// daemon is doing. Only this goroutine sends, so the loop ends at the latest
// on its second pass.
func (w *Watcher) emit(paths []string) {
	for {
		select {
		case w.changes <- Change{Paths: paths}:
			return
		default:
		}
		select {
		case old := <-w.changes:
			paths = mergeSorted(old.Paths, paths)
		default: // the daemon took it meanwhile; the send now succeeds
		}
	}
}

// relevant reports whether ev concerns something the configuration is read
// from. Every entry of conf.d counts, including an editor's swap file or
// backup: telling those from drop-ins would duplicate the loader's rules, and
// a needless reload is cheap since the daemon keeps an unchanged policy as
// it is. Elsewhere only the named entries count, because those directories
// (the config directory, /etc, a Kubernetes volume) hold files that change
// for reasons of their own.
func (w *Watcher) relevant(ev fsnotify.Event) bool {
	// The watched directory itself: removed or moved away means its watch
	// is gone and the watch set must be recomputed.
	if f, ok := w.filters[ev.Name]; ok && (f.all || ev.Has(fsnotify.Remove|fsnotify.Rename)) {
		return true
	}
	f, ok := w.filters[filepath.Dir(ev.Name)]
	return ok && f.match(filepath.Base(ev.Name))
}

// desired computes the directories to watch and what matters in each.
func (w *Watcher) desired() map[string]*filter {
	want := map[string]*filter{}
	get := func(dir string) *filter {
		f := want[dir]
		if f == nil {
			f = &filter{names: map[string]bool{}}
			want[dir] = f
		}
		return f
	}
	add := func(deps []dep) {
		for _, d := range deps {
			get(d.dir).names[d.name] = true
		}
	}
	for _, p := range append([]string{w.configPath}, w.accounts...) {
		_, deps := resolve(p)
		add(deps)
	}
	confD, deps := resolve(w.confD)
	add(deps)
	if confD == "" {
		return want
	}
	if fi, err := os.Stat(confD); err != nil || !fi.IsDir() {
		return want
	}
	get(confD).all = true
	entries, err := os.ReadDir(confD)
	if err != nil {
		w.log.Debug("config watch: listing conf.d", "dir", confD, "error", err)
	}
	// A drop-in symlink (Kubernetes: x.yml -> ..data/x.yml) reads a file
	// elsewhere; that file can change, and so can any link on the way.
	for _, e := range entries {
		if e.Type()&fs.ModeSymlink != 0 {
			_, deps := resolve(filepath.Join(confD, e.Name()))
			add(deps)
		}
	}
	return want
}

// reconcile moves the inotify watches to the desired directories. Adding a
// directory already watched is cheap and also repairs a watch on a directory
// that was replaced (rm -rf conf.d; mkdir conf.d) before its removal event
// was processed, so every desired directory is added each time.
func (w *Watcher) reconcile() {
	want := w.desired()
	for dir := range want {
		err := w.fw.Add(dir)
		if err == nil {
			delete(w.failed, dir)
			continue
		}
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
			// Gone since desired() looked; whatever removed it is an event
			// in a watched parent, which reconciles again.
			continue
		}
		err = fmt.Errorf("watch %s: %w", dir, err)
		if w.failed[dir] != err.Error() {
			w.failed[dir] = err.Error()
			attrs := []any{"error", err}
			if errors.Is(err, syscall.ENOSPC) {
				attrs = append(attrs, "hint", "raise fs.inotify.max_user_watches")
			}
			w.log.Warn("config watch: changes there will not trigger a reload", attrs...)
		}
	}
	for _, dir := range w.fw.WatchList() {
		if _, ok := want[dir]; ok {
			continue
		}
		// Errors mean the watch already died with its directory.
		if err := w.fw.Remove(dir); err != nil {
			w.log.Debug("config watch: unwatch", "dir", dir, "error", err)
		}
	}
	for dir := range w.failed {
		if _, ok := want[dir]; !ok {
			delete(w.failed, dir)
		}
	}
	w.filters = want
}

// dep is a directory entry that a path's meaning depends on.
type dep struct{ dir, name string }

// maxSymlinks matches Linux's limit before ELOOP.
const maxSymlinks = 40

// resolve follows the absolute path one component at a time, like
// filepath.EvalSymlinks, and also returns where every symlink met on the way
// lives, plus the final entry in its real directory: replacing any of those
// (the Kubernetes ..data swap) changes what path reads without touching the
// file it used to read. When path does not resolve, real is "" and the last
// dep names the missing entry in the deepest existing directory: that is
// where it will appear.
func resolve(path string) (real string, deps []dep) {
	dest, rest := "/", path
	links := 0
	for rest != "" {
		var comp string
		comp, rest, _ = strings.Cut(strings.TrimLeft(rest, "/"), "/")
		switch comp {
		case "", ".":
			continue
		case "..":
			dest = filepath.Dir(dest)
			continue
		}
		next := filepath.Join(dest, comp)
		fi, err := os.Lstat(next)
		if err != nil {
			return "", append(deps, dep{dest, comp})
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			last := strings.Trim(rest, "/") == ""
			if last {
				deps = append(deps, dep{dest, comp})
			} else if !fi.IsDir() {
				return "", append(deps, dep{dest, comp})
			}
			dest = next
			continue
		}
		deps = append(deps, dep{dest, comp})
		if links++; links > maxSymlinks {
			return "", deps
		}
		target, err := os.Readlink(next)
		if err != nil {
			return "", deps
		}
		if filepath.IsAbs(target) {
			dest = "/"
		}
		rest = target + "/" + rest
	}
	return dest, deps
}

func sortedKeys(m map[string]struct{}) []string {
	if len(m) == 0 {
		return nil
	}
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func mergeSorted(a, b []string) []string {
	out := slices.Concat(a, b)
	slices.Sort(out)
	return slices.Compact(out)
}
