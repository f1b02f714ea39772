package config

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
)

// dropInDir is the drop-in directory, relative to the main file's directory.
const dropInDir = "conf.d"

// openChecked opens path and checks what was opened, not what the path names,
// so that the object checked is the object read (no window between check and
// use). Symlinks are followed on purpose: Kubernetes mounts ConfigMap files as
// conf.d/x.yml -> ..data/x.yml, and the check then applies to the target.
// O_NONBLOCK keeps a FIFO planted under a .yml name from hanging the daemon;
// it is refused by the type check right after.
func openChecked(path string, owner uint32, wantDir bool) (*os.File, []string, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	if err := checkKind(fi, wantDir); err != nil {
		f.Close()
		return nil, nil, err
	}
	return f, refusals(path, fi, owner), nil
}

func checkKind(fi fs.FileInfo, wantDir bool) error {
	switch {
	case wantDir && !fi.IsDir():
		return fmt.Errorf("not a directory but a %s", kindName(fi.Mode()))
	case !wantDir && !fi.Mode().IsRegular():
		return fmt.Errorf("not a regular file but a %s", kindName(fi.Mode()))
	}
	return nil
}

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

// refusals applies sshd's StrictModes rule to an opened file or directory:
// whoever can write the configuration can grant itself access, so only the
// owner (root) may be able to.
func refusals(path string, fi fs.FileInfo, owner uint32) []string {
	what, harm := "", "could grant itself access"
	if fi.IsDir() {
		what, harm = "directory ", "could replace the files in it and grant itself access"
	}
	var out []string
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid != owner {
		out = append(out, fmt.Sprintf(
			"refusing: %sowned by uid %d, not %s; a user who owns it %s — chown %s %s",
			what, st.Uid, ownerName(owner), harm, ownerArg(owner), path))
	}
	if perm := fi.Mode().Perm(); perm&0o022 != 0 {
		out = append(out, fmt.Sprintf(
			"refusing: %swritable by group or others (mode %04o); a user who can write it %s — chmod go-w %s",
			what, perm, harm, path))
	}
	return out
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

// readChecked reads a configuration file through openChecked. A refused
// file is not read at all: its content means nothing until it is safe.
// The contents are read into buf and valid until its next use: a large set
// is mostly files that did not change, whose contents are only hashed.
func readChecked(path string, owner uint32, buf *bytes.Buffer) ([]byte, []string, error) {
	f, refused, err := openChecked(path, owner, false)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	if len(refused) > 0 {
		return nil, refused, nil
	}
	buf.Reset()
	if _, err := buf.ReadFrom(f); err != nil {
		return nil, nil, fmt.Errorf("reading: %w", err)
	}
	return buf.Bytes(), nil, nil
}

// dropIns lists the drop-in files of dir in lexical order. A missing dir
// means no drop-ins. The names are read from the same descriptor whose
// safety was checked; as the directory is then writable only by root, the
// entries cannot be swapped between listing and opening them.
func dropIns(dir string, owner uint32) (names []string, refused []string, err error) {
	f, refused, err := openChecked(dir, owner, true)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	entries, err := f.ReadDir(-1)
	if err != nil {
		return nil, refused, fmt.Errorf("listing: %w", err)
	}
	for _, e := range entries {
		if isDropInName(e.Name()) {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	return names, refused, nil
}

// isDropInName skips hidden names: Kubernetes' ..data and ..2024_* entries,
// editor swap and backup files, and anything an admin hid on purpose.
func isDropInName(name string) bool {
	return strings.HasSuffix(name, ".yml") && !strings.HasPrefix(name, ".")
}

// dropInWanted says whether a conf.d entry is to be read: regular files,
// through symlinks, only. A broken symlink is an error rather than skipped,
// because silently losing a drop-in can silently lose a deny.
func dropInWanted(path string) (bool, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return false, err
	}
	return fi.Mode().IsRegular(), nil
}

// ioProblem words an I/O error without repeating the path, which the
// Error's position already names.
func ioProblem(err error) string {
	if pe, ok := err.(*fs.PathError); ok {
		err = pe.Err
	}
	return "cannot read: " + err.Error()
}

// configDirs returns the directories whose safety guards the set.
func configDirs(mainPath string) (mainDir, confDir string) {
	return filepath.Dir(mainPath), DropInDir(mainPath)
}

// DropInDir is the directory whose *.yml files follow the main file.
func DropInDir(mainPath string) string {
	return filepath.Join(filepath.Dir(mainPath), dropInDir)
}
