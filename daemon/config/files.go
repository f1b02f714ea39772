// SPDX-License-Identifier: Apache-2.0

package config

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
)

// DropInDirName is the drop-in directory's name, beside the main file.
const DropInDirName = "conf.d"

func kindName(m fs.FileMode) string {
	switch {
	case m.IsRegular():
		return "regular file"
	case m.IsDir():
		return "directory"
	case m&fs.ModeNamedPipe != 0:
		return "named pipe"
	case m&fs.ModeSocket != 0:
		return "socket"
	case m&fs.ModeDevice != 0:
		return "device"
	}
	return "special file"
}

func ownerName(owner uint32) string {
	if owner == 0 {
		return "root"
	}
	return fmt.Sprintf("uid %d", owner)
}

func ownerArg(owner uint32) string {
	if owner == 0 {
		return "root"
	}
	return fmt.Sprint(owner)
}

// kubePrefix starts the names kubelet's AtomicWriter keeps for itself in a
// ConfigMap volume (..data, ..data_tmp, ..2024_01_01_00_00_00.1): it
// refuses keys that start with it, so in a conf.d laid out by kubelet
// (kubeData present) such an entry is never a drop-in somebody wrote, and
// naming it in a warning would only be noise. Elsewhere it is named like
// any other entry that is not read.
const kubePrefix = ".."

// kubeData is the symlink to the current version of a ConfigMap volume.
const kubeData = "..data"

// isDropInName says whether a conf.d entry is read: *.yml, as the shell
// glob, which skips hidden names.
func isDropInName(name string) bool {
	return strings.HasSuffix(name, ".yml") && !strings.HasPrefix(name, ".")
}

// dropIns lists the entries of an opened conf.d: the *.yml names to read,
// in lexical order, and a warning for every other entry.
func dropIns(dir *os.File, path string) (names, warnings []string, err error) {
	entries, err := dir.ReadDir(-1)
	if err != nil {
		return nil, nil, fmt.Errorf("listing: %w", err)
	}
	kubelet := slices.ContainsFunc(entries, func(e fs.DirEntry) bool {
		return e.Name() == kubeData && e.Type() == fs.ModeSymlink
	})
	for _, e := range entries {
		name := e.Name()
		switch {
		case isDropInName(name):
			names = append(names, name)
		case kubelet && strings.HasPrefix(name, kubePrefix):
		default:
			p := filepath.Join(path, name)
			mode := e.Type()
			if fi, err := os.Stat(p); err == nil {
				mode = fi.Mode() // what a symlink leads to, for the wording only
			}
			warnings = append(warnings, notRead(p, mode))
		}
	}
	sort.Strings(names)
	return names, warnings, nil
}

// notRead says, in a sentence naming it, why a conf.d entry is not read
// and what to do if it should be: a file that looks like a drop-in but is
// silently skipped can silently lose a deny.
func notRead(path string, mode fs.FileMode) string {
	name := filepath.Base(path)
	if mode.IsDir() {
		return fmt.Sprintf("%s is not read: it is a directory, and only the *.yml files directly in %s are read; move the files in it up if they should be.", path, filepath.Dir(path))
	}
	if isDropInName(name) {
		return fmt.Sprintf("%s is not read: it is a %s, and only regular *.yml files are read.", path, kindName(mode))
	}
	if of, ok := copyOf(name); ok {
		return fmt.Sprintf("%s is not read: only *.yml files are read, and it looks like a backup, an editor's or the package manager's copy of %s; merge what it should change into %s.", path, of, of)
	}
	if stem, ok := strings.CutSuffix(name, ".yaml"); ok && !strings.HasPrefix(name, ".") {
		return fmt.Sprintf("%s is not read: only *.yml files are read; rename it to %s.yml if it should be.", path, stem)
	}
	if strings.HasPrefix(name, ".") && strings.HasSuffix(name, ".yml") {
		return fmt.Sprintf("%s is not read: names starting with \".\" are hidden; rename it to %s if it should be read.", path, strings.TrimLeft(name, "."))
	}
	return fmt.Sprintf("%s is not read: only *.yml files are read; rename it to end in .yml if it should be.", path)
}

// copyOf recognises the names backups and editors give a copy of x.yml:
// x.yml~, x.yml.dpkg-dist (and every other x.yml.SUFFIX: .dpkg-old,
// .ucf-dist, .rpmnew, .orig, .bak ...), #x.yml# (Emacs), .#x.yml (an Emacs
// lock) and .x.yml.swp (vim).
func copyOf(name string) (string, bool) {
	rest, marked := name, false
	for _, p := range []string{".#", "#", "."} {
		if r, ok := strings.CutPrefix(rest, p); ok {
			rest, marked = r, p != "."
			break
		}
	}
	for _, s := range []string{"#", "~"} {
		if r, ok := strings.CutSuffix(rest, s); ok {
			rest, marked = r, true
		}
	}
	i := strings.Index(rest, ".yml")
	if i <= 0 {
		return "", false
	}
	of := rest[:i+len(".yml")]
	if of == rest && !marked {
		return "", false
	}
	return of, true
}

// ioProblem words an I/O error without repeating the path, which the
// Error's position already names.
func ioProblem(err error) string {
	if pe, ok := err.(*fs.PathError); ok {
		err = pe.Err
	}
	return "cannot read: " + err.Error()
}

// DropInDir is the directory whose *.yml files follow the main file.
func DropInDir(mainPath string) string {
	return filepath.Join(filepath.Dir(mainPath), DropInDirName)
}
