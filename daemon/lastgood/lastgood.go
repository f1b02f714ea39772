// SPDX-License-Identifier: Apache-2.0

// Package lastgood keeps the last configuration set that went live, so that
// a daemon started with broken files (after a reboot, when nothing is
// pinned any more) can enforce it instead of leaving the host unfiltered.
//
// A saved set is a directory holding copies of the files exactly as they
// were read, under their own names, laid out like the original:
//
//	STATE/last-good -> set-20261206T015637Z-1234   (symbolic link)
//	STATE/set-20261206T015637Z-1234/saved.json      (when, from where, checksums)
//	STATE/set-20261206T015637Z-1234/config/net-tc-filter.yml
//	STATE/set-20261206T015637Z-1234/config/conf.d/50-imds.yml
//
// So the set is read back by the same loader, with the same checks, as the
// files it came from; an error in it names a file and line that exist; and
// an administrator can check or diff it (`net-tc-filter check --config
// STATE/last-good/config/net-tc-filter.yml`). A new set is written beside
// the old one and made current by renaming a new symbolic link over
// last-good: a crash at any moment leaves last-good naming a complete set.
package lastgood

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/nettcfilter/net-tc-filter/daemon/config"
)

const (
	current   = "last-good"  // the link naming the current set
	setPrefix = "set-"       // a set's directory
	metaName  = "saved.json" // a set's description
	configDir = "config"     // a set's copy of the configuration directory
	version   = 1            // of saved.json
)

// ErrNone is returned by Latest when no set was saved yet.
var ErrNone = errors.New("no last good set saved")

// Store is a state directory holding the last good set.
type Store struct {
	dir   string
	owner uint32 // who must own it: root, but for tests
}

// Set is a saved configuration set.
type Set struct {
	Dir   string    // the set's directory
	Main  string    // the saved main file: load it like the original
	From  string    // the main file it is a copy of
	Saved time.Time // when it was saved, right after it went live
	Files []File    // main file first, then the drop-ins in lexical order
}

// File is one saved file.
type File struct {
	Name   string `json:"name"` // relative to the set's config directory: "net-tc-filter.yml", "conf.d/50-x.yml"
	SHA256 string `json:"sha256"`
}

// meta is saved.json.
type meta struct {
	Version int       `json:"version"`
	From    string    `json:"from"`
	Saved   time.Time `json:"saved"`
	Files   []File    `json:"files"`
}

// Open makes the state directory if it is missing (mode 0700) and checks
// that only root can write it. A directory anyone else could write is
// refused, as the loader refuses such a configuration file: whoever could
// replace the saved set could have it enforced at the next start.
func Open(dir string) (*Store, error) {
	return open(dir, 0)
}

func open(dir string, owner uint32) (*Store, error) {
	if !filepath.IsAbs(dir) {
		return nil, fmt.Errorf("state directory %s: not an absolute path", dir)
	}
	s := &Store{dir: filepath.Clean(dir), owner: owner}
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	}
	if err := s.check(); err != nil {
		return nil, err
	}
	return s, nil
}

// Dir is the state directory.
func (s *Store) Dir() string { return s.dir }

// Contains says whether path lies inside the state directory: a set loaded
// from there is a saved one, not to be saved again.
func (s *Store) Contains(path string) bool {
	rel, err := filepath.Rel(s.dir, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}

// check applies the loader's checks to the state directory: it and every
// directory on its real path owned by root and not writable by group or
// others (above it, a sticky directory such as /tmp is fine): whoever
// could replace the saved set could have it enforced at the next start.
func (s *Store) check() error {
	err := config.CheckDir(s.dir, s.owner)
	var errs config.Errors
	if errors.As(err, &errs) {
		msgs := make([]string, len(errs))
		for i, e := range errs {
			msgs[i] = e.Pos.File + ": " + strings.TrimPrefix(e.Msg, "refusing: ")
		}
		return fmt.Errorf("refusing state directory %s: a user who can write it could have a set of its own enforced at the next start: %s",
			s.dir, strings.Join(msgs, "; "))
	}
	if err != nil {
		return fmt.Errorf("state directory %s: %w", s.dir, err)
	}
	return nil
}

// Save keeps a set that went live: mainPath and the files that were read
// with it (files[0] is mainPath; the others are its drop-ins), sums[i]
// being the SHA-256 of files[i] as the loader read it. A file the saved
// set does not hold as loaded is read again to be copied, and a copy whose
// bytes are not the ones loaded is refused, keeping the saved set: a new
// version written since the load was never validated, and saving it could
// leave a start with broken files and no fallback. verify is called last, with the copy's main file,
// for the caller's own checks. Nothing is written when the saved set
// already holds the same contents; saved says whether a new set was made.
func (s *Store) Save(mainPath string, files []string, sums [][sha256.Size]byte, now time.Time, verify func(savedMain string) error) (set Set, saved bool, err error) {
	if err := s.check(); err != nil {
		return Set{}, false, err
	}
	names, err := savedNames(mainPath, files)
	if err != nil {
		return Set{}, false, err
	}
	if len(sums) != len(files) {
		return Set{}, false, fmt.Errorf("%d checksums for %d files", len(sums), len(files))
	}
	m := meta{Version: version, From: mainPath, Saved: now.UTC(), Files: make([]File, len(files))}
	for i := range files {
		m.Files[i] = File{Name: names[i], SHA256: hex.EncodeToString(sums[i][:])}
	}
	// A file the current set holds with the same name and the contents
	// that were loaded is linked into the new set rather than read, written
	// and synced again: a reload of one drop-in of a thousand copies one
	// file, and what is linked is the version loaded, whatever the file
	// holds by now. Latest has checked the current set's files against
	// their checksums; a damaged set lends nothing.
	var same map[File]string
	if old, err := s.Latest(mainPath); err == nil {
		if slices.Equal(old.Files, m.Files) {
			return old, false, nil
		}
		same = make(map[File]string, len(old.Files))
		for i, p := range old.Paths() {
			same[old.Files[i]] = p
		}
	}

	dir, err := os.MkdirTemp(s.dir, setPrefix+now.UTC().Format("20060102T150405Z")+"-")
	if err != nil {
		return Set{}, false, err
	}
	done := false
	defer func() {
		if !done {
			os.RemoveAll(dir)
		}
	}()
	if err := writeSet(dir, m, files, same); err != nil {
		return Set{}, false, fmt.Errorf("write %s: %w", dir, err)
	}
	set = m.set(dir)
	if err := verify(set.Main); err != nil {
		return Set{}, false, err
	}
	if err := s.makeCurrent(filepath.Base(dir)); err != nil {
		return Set{}, false, err
	}
	done = true
	s.removeOld(filepath.Base(dir))
	return set, true, nil
}

// savedNames are the names the files get in a set: the main file's own
// name, and conf.d/NAME for the drop-ins, as the loader finds them.
func savedNames(mainPath string, files []string) ([]string, error) {
	if len(files) == 0 || files[0] != mainPath {
		return nil, fmt.Errorf("the files of a set begin with its main file %s", mainPath)
	}
	confDir := config.DropInDir(mainPath)
	names := []string{filepath.Base(mainPath)}
	for _, f := range files[1:] {
		if filepath.Dir(f) != confDir {
			return nil, fmt.Errorf("%s is not a drop-in of %s", f, mainPath)
		}
		names = append(names, config.DropInDirName+"/"+filepath.Base(f))
	}
	return names, nil
}

// writeSet writes a set's files (copies of files, which must still hold
// the bytes m's checksums say) and description into dir, each synced to
// disk before the set can become current. A file of same (the saved copy
// of a file of m, by name and checksum) is linked instead: saved files are
// never written once made, and its data was synced when it was.
func writeSet(dir string, m meta, files []string, same map[File]string) error {
	cdir := filepath.Join(dir, configDir)
	for _, d := range []string{cdir, filepath.Join(cdir, config.DropInDirName)} {
		if err := os.Mkdir(d, 0o700); err != nil {
			return err
		}
	}
	for i, f := range m.Files {
		path := filepath.Join(cdir, f.Name)
		if from, ok := same[f]; ok && os.Link(from, path) == nil {
			continue
		}
		data, err := os.ReadFile(files[i])
		if err != nil {
			return err
		}
		// Read again to be copied: it must still be what was loaded.
		if sum := sha256.Sum256(data); hex.EncodeToString(sum[:]) != f.SHA256 {
			return fmt.Errorf("%s changed since it was loaded: a version that was never validated is not saved", files[i])
		}
		if err := writeSynced(path, data); err != nil {
			return err
		}
	}
	js, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	if err := writeSynced(filepath.Join(dir, metaName), append(js, '\n')); err != nil {
		return err
	}
	for _, d := range []string{filepath.Join(cdir, config.DropInDirName), cdir, dir} {
		if err := syncDir(d); err != nil {
			return err
		}
	}
	return nil
}

func writeSynced(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// makeCurrent points last-good at the set named name: a new link renamed
// over the old one, so that last-good is always one set or the other.
func (s *Store) makeCurrent(name string) error {
	tmp := filepath.Join(s.dir, current+".new")
	if err := os.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := os.Symlink(name, tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(s.dir, current)); err != nil {
		os.Remove(tmp)
		return err
	}
	return syncDir(s.dir)
}

// removeOld removes the sets that are not current: the one just replaced,
// and any that a crash left half-written. A failure only costs space.
func (s *Store) removeOld(keep string) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), setPrefix) && e.Name() != keep {
			os.RemoveAll(filepath.Join(s.dir, e.Name()))
		}
	}
}

// Latest returns the current set, which must have been saved from mainPath
// (a set of another configuration is no fallback for this one), after
// checking that its files are the ones saved: each matches its checksum
// and no other file would be read with them.
func (s *Store) Latest(mainPath string) (Set, error) {
	if err := s.check(); err != nil {
		return Set{}, err
	}
	name, err := os.Readlink(filepath.Join(s.dir, current))
	if errors.Is(err, fs.ErrNotExist) {
		return Set{}, fmt.Errorf("%w in %s", ErrNone, s.dir)
	}
	if err != nil {
		return Set{}, err
	}
	if !strings.HasPrefix(name, setPrefix) || strings.Contains(name, "/") {
		return Set{}, fmt.Errorf("%s points to %q, not to a set in %s", filepath.Join(s.dir, current), name, s.dir)
	}
	dir := filepath.Join(s.dir, name)
	js, err := os.ReadFile(filepath.Join(dir, metaName))
	if err != nil {
		return Set{}, err
	}
	var m meta
	if err := json.Unmarshal(js, &m); err != nil {
		return Set{}, fmt.Errorf("%s: %w", filepath.Join(dir, metaName), err)
	}
	if m.Version != version || len(m.Files) == 0 {
		return Set{}, fmt.Errorf("%s: not a set this version saves (version %d, %d files)", filepath.Join(dir, metaName), m.Version, len(m.Files))
	}
	if m.From != mainPath {
		return Set{}, fmt.Errorf("the last good set in %s is of %s, not of %s", dir, m.From, mainPath)
	}
	set := m.set(dir)
	if err := set.verify(); err != nil {
		return Set{}, fmt.Errorf("the last good set in %s is damaged: %w", dir, err)
	}
	return set, nil
}

func (m meta) set(dir string) Set {
	return Set{
		Dir:   dir,
		Main:  filepath.Join(dir, configDir, m.Files[0].Name),
		From:  m.From,
		Saved: m.Saved,
		Files: m.Files,
	}
}

// Paths are the saved files as the loader reads them.
func (set Set) Paths() []string {
	out := make([]string, len(set.Files))
	for i, f := range set.Files {
		out[i] = filepath.Join(set.Dir, configDir, f.Name)
	}
	return out
}

// savedName says whether name is one savedNames gives the i-th file: the
// main file's own name first, then conf.d/NAME, each NAME one component
// that stays where it is put ("50-imds..v2.yml" is fine, ".." is not).
func savedName(i int, name string) bool {
	if i > 0 {
		var ok bool
		if name, ok = strings.CutPrefix(name, config.DropInDirName+"/"); !ok {
			return false
		}
	}
	return filepath.IsLocal(name) && name != "." && !strings.Contains(name, "/")
}

// verify checks the saved files against their checksums, and that conf.d
// holds no other drop-in the loader would read with them.
func (set Set) verify() error {
	want := map[string]bool{}
	for i, f := range set.Files {
		if !savedName(i, f.Name) {
			return fmt.Errorf("bad file name %q", f.Name)
		}
		want[f.Name] = true
		data, err := os.ReadFile(filepath.Join(set.Dir, configDir, f.Name))
		if err != nil {
			return err
		}
		sum := sha256.Sum256(data)
		if got := hex.EncodeToString(sum[:]); got != f.SHA256 {
			return fmt.Errorf("%s does not match its checksum", f.Name)
		}
	}
	entries, err := os.ReadDir(filepath.Join(set.Dir, configDir, config.DropInDirName))
	if err != nil {
		return err
	}
	for _, e := range entries {
		if name := config.DropInDirName + "/" + e.Name(); !want[name] {
			return fmt.Errorf("%s was not saved with the set", name)
		}
	}
	return nil
}
