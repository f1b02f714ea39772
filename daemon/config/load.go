// SPDX-License-Identifier: Apache-2.0

package config

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash/maphash"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
)

// Load reads the configuration set: mainPath, then <dir of mainPath>/conf.d/*.yml
// in lexical order, merged as SPEC §2 says. The files, the directories
// they are in and every directory on their real paths (symlinks followed
// one hop at a time, see walk.go) must be owned by root and not writable
// by group or others. When the set is invalid, the error is an Errors
// listing every problem found in every file, sorted by file order then
// line, and the Config is nil. conf.d entries that are not read are named
// in Config.Warnings.
func Load(mainPath string) (*Config, error) {
	return load(mainPath, 0)
}

// LoadPartial is Load for reporting: it also returns what could be read of
// an invalid set, so that later stages (the policy compiler resolving
// names) can report their problems in the same run. A Config that comes
// with problems must never be applied.
func LoadPartial(mainPath string) (*Config, Errors) {
	return loadPartial(mainPath, 0)
}

// load is Load with the required owner as a parameter, for tests.
func load(mainPath string, owner uint32) (*Config, error) {
	cfg, errs := loadPartial(mainPath, owner)
	if len(errs) > 0 {
		return nil, errs
	}
	return cfg, nil
}

func loadPartial(mainPath string, owner uint32) (*Config, Errors) {
	var none *Cache
	return none.loadPartial(mainPath, owner)
}

// Cache remembers what files parsed to, by their contents, so that a load
// parses only the files that changed since the last one: a large generated
// drop-in costs its parse once, not on every edit of another file. The
// permission checks run on every load all the same. The zero Cache is
// ready; a nil *Cache parses every file.
type Cache struct {
	mu    sync.Mutex
	files map[string]parsedFile
	names nameCount // the names of the set merged last
}

type parsedFile struct {
	sum      [sha256.Size]byte
	settings fileSettings // never modified once parsed
	errs     Errors
}

// Load is the package's Load through the cache.
func (c *Cache) Load(mainPath string) (*Config, error) {
	cfg, errs := c.LoadPartial(mainPath)
	if len(errs) > 0 {
		return nil, errs
	}
	return cfg, nil
}

// LoadPartial is the package's LoadPartial through the cache.
func (c *Cache) LoadPartial(mainPath string) (*Config, Errors) {
	return c.loadPartial(mainPath, 0)
}

func (c *Cache) loadPartial(mainPath string, owner uint32) (*Config, Errors) {
	return c.loadReaders(mainPath, owner, 0)
}

// loadReaders is loadPartial with the number of goroutines that read
// drop-ins (0: as many as CPUs, up to maxReaders), for tests.
func (c *Cache) loadReaders(mainPath string, owner uint32, readers int) (*Config, Errors) {
	l := &loader{owner: owner, readers: readers}
	if c != nil {
		c.mu.Lock()
		defer c.mu.Unlock()
		l.cached, l.parsed, l.names = c.files, map[string]parsedFile{}, &c.names
	}
	cfg := l.run(mainPath)
	l.errs.Sort(l.order)
	if c != nil {
		c.files = l.parsed // forget the files that are gone
	}
	return cfg, l.errs
}

// loader collects the problems of one Load; every step keeps going after
// a problem so that the whole set is reported at once.
type loader struct {
	owner    uint32
	errs     Errors
	warnings []string
	reported map[problemKey]bool
	order    []string // directories and files in the order met, to sort errors
	placed   map[string]bool
	files    []string // every file read
	sums     [][sha256.Size]byte
	settings []fileSettings
	cached   map[string]parsedFile // by path, from the last load; nil: no cache
	parsed   map[string]parsedFile // this load's, for the next one
	names    *nameCount            // the cache's; nil: no cache
	reader   fileReader            // the main file's, and a drop-in reader's
	readers  int                   // goroutines reading drop-ins; 0: as many as CPUs, up to maxReaders
}

func (l *loader) fail(path, msg string) {
	l.place(path)
	l.errs = append(l.errs, Error{Pos: Pos{File: path}, Msg: msg})
}

// place puts path in the order errors are sorted by, where it is first met.
func (l *loader) place(path string) {
	if l.placed == nil {
		l.placed = map[string]bool{}
	}
	if !l.placed[path] {
		l.placed[path] = true
		l.order = append(l.order, path)
	}
}

// report adds a walk's problems, each once: a directory on the way to
// every file is named once, at the first.
func (l *loader) report(ps []problem) {
	if l.reported == nil {
		l.reported = map[problemKey]bool{}
	}
	for _, p := range ps {
		if !l.reported[p.key] {
			l.reported[p.key] = true
			l.fail(p.at, p.msg)
		}
	}
}

func (l *loader) run(mainPath string) *Config {
	confDir := DropInDir(mainPath)
	// The main file's directory as named, not only where a symlinked main
	// file leads: conf.d is found there.
	l.checkDir(filepath.Dir(mainPath))
	l.reader = fileReader{owner: l.owner, cached: l.cached}
	l.apply(mainPath, l.reader.read(mainPath, false))
	l.readDropIns(confDir, l.dropIns(confDir))
	cfg := merge(l.settings, l.files, l.names)
	cfg.Sums = l.sums
	sort.Strings(l.warnings)
	cfg.Warnings = l.warnings
	return cfg
}

// CheckDir checks a directory as the loader checks the ones a set lives
// in: it and every directory on its real path (symlinks followed one hop
// at a time) must be owned by root, or by owner, and not writable by group
// or others (above it, a sticky directory like /tmp is fine). The error is
// an Errors naming every problem, each with the command that fixes it.
// For a directory whose contents are trusted like a configuration's: the
// daemon's state directory.
func CheckDir(dir string, owner uint32) error {
	l := &loader{owner: owner}
	l.checkDir(dir)
	if len(l.errs) > 0 {
		l.errs.Sort(l.order)
		return l.errs
	}
	return nil
}

// checkDir guards a directory the set lives in: whoever can write it can
// replace the files regardless of their own modes.
func (l *loader) checkDir(dir string) {
	o, err := walkOpen(dir, l.owner, true)
	l.report(o.problems)
	if err != nil {
		l.fail(dir, ioProblem(err))
		return
	}
	l.place(dir)
	o.f.Close()
}

// dropIns lists conf.d. A refused conf.d does not stop its files from
// being checked: the set is rejected anyway, and the administrator gets
// every problem in one go. The names are read from the descriptor whose
// safety was checked; as the directory is then writable only by root, the
// entries cannot be swapped between listing and opening them.
func (l *loader) dropIns(dir string) []string {
	o, err := walkOpen(dir, l.owner, true)
	l.report(o.problems)
	if errors.Is(err, fs.ErrNotExist) {
		// No conf.d means no drop-ins; a conf.d symlink that leads
		// nowhere (a volume not mounted) is an error, not "no drop-ins":
		// losing them silently could lose a deny.
		if _, lerr := os.Lstat(dir); errors.Is(lerr, fs.ErrNotExist) {
			return nil
		}
	}
	if err != nil {
		l.fail(dir, ioProblem(err))
		return nil
	}
	defer o.f.Close()
	l.place(dir)
	names, warnings, err := dropIns(o.f, dir)
	if err != nil {
		l.fail(dir, ioProblem(err))
	}
	l.warnings = append(l.warnings, warnings...)
	return names
}

// readDropIns reads the drop-ins, on as many goroutines as there are
// CPUs to run them (at most maxReaders): each file's checks, read and
// parse need nothing from another's, and a large set's start is mostly
// these. What each found is applied in the files' order, so the result,
// its errors and their order are those of reading one file after another.
func (l *loader) readDropIns(dir string, names []string) {
	if len(names) == 0 {
		return
	}
	paths := make([]string, len(names))
	for i, name := range names {
		paths[i] = filepath.Join(dir, name)
	}
	workers := l.readers
	if workers == 0 {
		workers = min(runtime.GOMAXPROCS(0), maxReaders)
	}
	workers = min(workers, len(paths))
	if workers <= 1 {
		for _, path := range paths {
			l.apply(path, l.reader.read(path, true))
		}
		return
	}
	found := make([]fileRead, len(paths))
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		r := &l.reader
		if w > 0 {
			r = &fileReader{owner: l.owner, cached: l.cached}
		}
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < len(paths); i = int(next.Add(1) - 1) {
				found[i] = r.read(paths[i], true)
			}
		})
	}
	wg.Wait()
	for i, path := range paths {
		l.apply(path, found[i])
	}
}

// maxReaders bounds the goroutines that read a set's drop-ins: past a few
// the walks' system calls contend on the same directories' locks.
const maxReaders = 4

// fileReader reads files of a set: one for each goroutine that reads,
// with its own buffer and parser memory, and only reads of the loader's
// state (the cache of the last load).
type fileReader struct {
	owner  uint32
	cached map[string]parsedFile // by path, from the last load
	buf    bytes.Buffer          // the file being read
	fast   fastParser            // reused from one file to the next
}

// fileRead is what reading one file found, for the loader to apply.
type fileRead struct {
	problems []problem // on its way, reported whatever is found at the end
	warning  string    // not read, and named in a warning
	opened   bool      // passed the checks
	fail     string    // refused or unreadable
	parsed   *parsedFile
}

// read checks, reads and parses a file of the set. A file that is itself
// refused is not read at all: its content means nothing until it is safe.
// A drop-in entry that is itself a directory or a named pipe called x.yml
// is not read and named in a warning: only root could have put it in
// conf.d, and it never held a deny. A drop-in that is a symlink leading to
// one (or nowhere) is an error: it is meant to be read, and what it leads
// to can be swapped for something unreadable by whoever owns that, so
// silently skipping it could silently lose a deny.
func (r *fileReader) read(path string, dropIn bool) fileRead {
	o, err := walkOpen(path, r.owner, false)
	out := fileRead{problems: o.problems}
	var ke *kindError
	if dropIn && errors.As(err, &ke) && !ke.viaSymlink {
		out.warning = notRead(path, ke.mode)
		return out
	}
	if ke != nil && ke.viaSymlink {
		out.fail = fmt.Sprintf("cannot read: a symlink to a %s, not to a regular file; a drop-in it should lead to is lost, and with it maybe a deny — point it at the file, or remove it", kindName(ke.mode))
		return out
	}
	if err != nil {
		out.fail = ioProblem(err)
		return out
	}
	out.opened = true
	if o.f == nil {
		return out
	}
	defer o.f.Close()
	r.buf.Reset()
	if _, err := r.buf.ReadFrom(o.f); err != nil {
		out.fail = ioProblem(fmt.Errorf("reading: %w", err))
		return out
	}
	sum := sha256.Sum256(r.buf.Bytes())
	if f, ok := r.cached[path]; ok && f.sum == sum {
		out.parsed = &f
		return out
	}
	s, errs := parseFile(path, r.buf.Bytes(), &r.fast)
	out.parsed = &parsedFile{sum: sum, settings: s, errs: errs}
	return out
}

// apply takes what reading a file found into the load.
func (l *loader) apply(path string, r fileRead) {
	l.report(r.problems)
	if r.warning != "" {
		l.warnings = append(l.warnings, r.warning)
		return
	}
	if r.opened {
		l.place(path)
	}
	if r.fail != "" {
		l.fail(path, r.fail)
		return
	}
	if r.parsed == nil {
		return
	}
	if l.parsed != nil {
		l.parsed[path] = *r.parsed
	}
	l.errs = append(l.errs, r.parsed.errs...)
	l.files = append(l.files, path)
	l.sums = append(l.sums, r.parsed.sum)
	l.settings = append(l.settings, r.parsed.settings)
}

// merge applies the drop-in rules: an endpoint named again replaces the
// earlier one whole but keeps its place in the order; interfaces merge key
// by key; each scalar takes the last value set. The endpoints are not
// copied: cfg points into what each file parsed to. names (nil without a
// cache) counts the names of the last merge: when it finds no name given
// twice, the endpoints are the files' in order, and no index of a million
// names is made.
func merge(files []fileSettings, paths []string, names *nameCount) *Config {
	cfg := &Config{
		Interfaces: make(map[string]Interface),
		Log:        Log{Level: DefaultLogLevel, Decisions: DefaultLogDecisions, Rate: DefaultLogRate},
		OnStop:     DefaultOnStop,
		Files:      paths,
	}
	n := 0
	for _, f := range files {
		n += len(f.endpoints)
	}
	cfg.Endpoints = make([]*Endpoint, 0, n)
	if names != nil && names.update(files, paths) {
		for _, f := range files {
			for i := range f.endpoints {
				cfg.Endpoints = append(cfg.Endpoints, &f.endpoints[i])
			}
		}
	} else {
		index := newNameIndex(n)
		for _, f := range files {
			for i := range f.endpoints {
				ep := &f.endpoints[i]
				if at, ok := index.add(ep.Name, len(cfg.Endpoints), cfg.Endpoints); !ok {
					cfg.Endpoints[at] = ep
					continue
				}
				cfg.Endpoints = append(cfg.Endpoints, ep)
			}
		}
	}
	for _, f := range files {
		maps.Copy(cfg.Interfaces, f.interfaces)
		mergeScalars(cfg, f)
	}
	return cfg
}

// nameIndex finds an endpoint's position in a merge by its name. A merge
// of 1 000 000 endpoints runs on every reload, and a map of strings that
// size costs more than the rest of the merge (its memory is fresh pages
// each time): this is an open-addressed table of 8-byte slots that holds
// 32 bits of each name's hash and its position, and compares names only
// when those bits match.
type nameIndex struct {
	seed  maphash.Seed
	slots []nameSlot
	mask  uint64
}

type nameSlot struct {
	tag uint32 // the hash's top 32 bits
	at  uint32 // position + 1; 0: empty
}

func newNameIndex(n int) *nameIndex {
	size := 16
	for size < 2*n {
		size *= 2
	}
	return &nameIndex{seed: maphash.MakeSeed(), slots: make([]nameSlot, size), mask: uint64(size - 1)}
}

// add records that name is at position at of eps, unless an endpoint of
// that name is in eps already: then it returns that one's position and
// false.
func (x *nameIndex) add(name string, at int, eps []*Endpoint) (int, bool) {
	h := maphash.String(x.seed, name)
	tag := uint32(h >> 32)
	for i := h & x.mask; ; i = (i + 1) & x.mask {
		s := &x.slots[i]
		if s.at == 0 {
			*s = nameSlot{tag: tag, at: uint32(at) + 1}
			return at, true
		}
		if s.tag == tag && eps[s.at-1].Name == name {
			return int(s.at - 1), false
		}
	}
}

func mergeScalars(cfg *Config, f fileSettings) {
	set(&cfg.Log.Level, f.level)
	set(&cfg.Log.Decisions, f.decisions)
	set(&cfg.Log.Rate, f.rate)
	set(&cfg.OnStop, f.onStop)
	set(&cfg.Metrics.Listen, f.listen)
}

func set[T any](dst *T, v *T) {
	if v != nil {
		*dst = *v
	}
}
