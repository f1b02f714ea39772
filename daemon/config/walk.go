// SPDX-License-Identifier: Apache-2.0

package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Whoever can change what a configuration path leads to can grant itself
// access, and that is not only the file's owner: anyone who can write a
// directory on the way can put another file or another symlink in place.
// So a path is walked one component at a time, as the kernel would
// resolve it, and every directory it goes through and every symlink it
// follows is checked (sshd's StrictModes, extended to symlinks). Each
// component is opened (O_PATH|O_NOFOLLOW) relative to the descriptor of
// the directory just checked, so what is checked is what the path
// resolves through, and the file itself is opened from its checked
// directory and compared by device and inode with what was checked.

// maxHops is the kernel's own limit on symlinks followed in one lookup.
const maxHops = 40

// problem is one refusal found on a path: at is the file, directory or
// symlink to fix.
type problem struct {
	at  string
	msg string
	key problemKey
}

// problemKey identifies a problem by the object it is about, so that a
// directory on the way to every drop-in is reported once, not once per
// drop-in.
type problemKey struct {
	dev, ino uint64
	what     string
}

// kindError is a path that leads to something other than what is read
// there (a directory where a file is wanted, a named pipe...).
type kindError struct {
	mode    fs.FileMode
	wantDir bool
	// viaSymlink: the path's own name is a symlink (or a chain of them)
	// that led there, so what it leads to is a choice somebody made, and
	// maybe somebody else's: a drop-in that should be read and is not.
	viaSymlink bool
}

func (e *kindError) Error() string {
	if e.wantDir {
		return "not a directory but a " + kindName(e.mode)
	}
	return "not a regular file but a " + kindName(e.mode)
}

// node is a directory (or, last, the object) the walk has reached.
type node struct {
	fd   int
	name string // as looked up in the previous node
	path string // its real path
	st   unix.Stat_t
}

// opened is what walkOpen found at the end of a path.
type opened struct {
	f *os.File // for reading; nil when refused
	// problems: the object itself (refused: it is not read) and the
	// directories and symlinks on its way (reported, but the object is
	// read all the same, so that the administrator gets every problem of
	// the set in one go; a set with a problem is never applied).
	problems []problem
	refused  bool
}

// walkOpen opens path for reading after checking it and everything it is
// reached through. owner is who, besides root, may own all of it. With an
// error, the problems found on the way so far are returned all the same:
// whoever can change what the path leads to can also make it lead to
// something unreadable, and a refusal to read must not hide that.
func walkOpen(path string, owner uint32, wantDir bool) (opened, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return opened{}, err
	}
	w := walker{owner: owner, target: path}
	defer w.closeAll()
	if err := w.start(); err != nil {
		return opened{}, err
	}
	if err := w.resolve(abs); err != nil {
		return opened{problems: w.problems, refused: true}, err
	}
	last := w.stack[len(w.stack)-1]
	mode := fileMode(last.st.Mode)
	if wantDir != mode.IsDir() || (!wantDir && !mode.IsRegular()) {
		return opened{problems: w.problems, refused: true}, &kindError{mode: mode, wantDir: wantDir, viaSymlink: w.lastLinked}
	}
	own := w.final(path, last, wantDir)
	out := opened{problems: append(w.problems, own...), refused: len(own) > 0}
	if out.refused && !wantDir {
		return out, nil // a refused file is not read at all
	}
	f, err := w.openLast(path, wantDir)
	if err != nil {
		return opened{problems: out.problems, refused: true}, err
	}
	out.f = f
	return out, nil
}

type walker struct {
	owner    uint32
	target   string // the path as given, for messages
	stack    []node // the real path so far: "/" first
	problems []problem
	// lastLinked: the path's last name was a symlink, followed.
	lastLinked bool
}

func (w *walker) trusted(uid uint32) bool { return uid == 0 || uid == w.owner }

func (w *walker) start() error {
	fd, err := unix.Open("/", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &fs.PathError{Op: "open", Path: "/", Err: err}
	}
	n := node{fd: fd, name: "/", path: "/"}
	if err := unix.Fstat(fd, &n.st); err != nil {
		unix.Close(fd)
		return &fs.PathError{Op: "stat", Path: "/", Err: err}
	}
	w.stack = []node{n}
	return nil
}

func (w *walker) closeAll() {
	for _, n := range w.stack {
		unix.Close(n.fd)
	}
	w.stack = nil
}

// resolve walks abs, following symlinks component by component, and
// leaves the real path's nodes on the stack.
func (w *walker) resolve(abs string) error {
	todo := strings.Split(abs, "/")
	hops := 0
	for len(todo) > 0 {
		name := todo[0]
		todo = todo[1:]
		switch name {
		case "", ".":
			continue
		case "..":
			// The real parent: a symlink's ".." is taken from where it
			// led, as the kernel does.
			if len(w.stack) > 1 {
				unix.Close(w.stack[len(w.stack)-1].fd)
				w.stack = w.stack[:len(w.stack)-1]
			}
			continue
		}
		parent := w.stack[len(w.stack)-1]
		n := node{name: name, path: filepath.Join(parent.path, name)}
		fd, err := unix.Openat(parent.fd, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return &fs.PathError{Op: "open", Path: n.path, Err: err}
		}
		n.fd = fd
		if err := unix.Fstat(fd, &n.st); err != nil {
			unix.Close(fd)
			return &fs.PathError{Op: "stat", Path: n.path, Err: err}
		}
		w.step(parent, n)
		if n.st.Mode&unix.S_IFMT != unix.S_IFLNK {
			w.stack = append(w.stack, n)
			continue
		}
		target, err := readlink(fd)
		unix.Close(fd)
		if err != nil {
			return &fs.PathError{Op: "readlink", Path: n.path, Err: err}
		}
		// Nothing left after it: this symlink is what the last name
		// resolves through (the name itself, or where it led).
		if len(todo) == 0 {
			w.lastLinked = true
		}
		if hops++; hops > maxHops {
			return &fs.PathError{Op: "open", Path: w.target, Err: unix.ELOOP}
		}
		if strings.HasPrefix(target, "/") {
			for _, n := range w.stack[1:] {
				unix.Close(n.fd)
			}
			w.stack = w.stack[:1]
		}
		todo = append(strings.Split(target, "/"), todo...)
	}
	return nil
}

func readlink(fd int) (string, error) {
	for size := 256; ; size *= 2 {
		buf := make([]byte, size)
		// An empty path reads the link the O_PATH descriptor is on.
		n, err := unix.Readlinkat(fd, "", buf)
		if err != nil {
			return "", err
		}
		if n < size {
			return string(buf[:n]), nil
		}
	}
}

// step checks that nobody but root (or the owner) can change what name
// in parent leads to.
func (w *walker) step(parent, n node) {
	p := &parent.st
	if !w.trusted(p.Uid) {
		w.problems = append(w.problems, problem{
			at: parent.path,
			msg: fmt.Sprintf("refusing: directory owned by uid %d, not %s, on the way to %s; a user who owns it could swap what that path leads to and grant itself access — chown %s %s",
				p.Uid, ownerName(w.owner), w.target, ownerArg(w.owner), parent.path),
			key: problemKey{p.Dev, p.Ino, "owner"},
		})
	}
	perm := fileMode(p.Mode).Perm()
	if perm&0o022 == 0 {
		return
	}
	// Sticky (like /tmp): others may add entries but cannot rename or
	// remove one they do not own, so an entry of root's stays what it is.
	// A directory or file they own is refused on its own check; a symlink
	// is checked here.
	if p.Mode&unix.S_ISVTX != 0 && w.trusted(p.Uid) {
		if !w.trusted(n.st.Uid) && n.st.Mode&unix.S_IFMT == unix.S_IFLNK {
			w.problems = append(w.problems, problem{
				at: n.path,
				msg: fmt.Sprintf("refusing: symlink owned by uid %d in a directory others can write to (mode %04o), on the way to %s; its owner could point it elsewhere — chown -h %s %s",
					n.st.Uid, p.Mode&0o7777, w.target, ownerArg(w.owner), n.path),
				key: problemKey{n.st.Dev, n.st.Ino, "owner"},
			})
		}
		return
	}
	if w.configMapData(parent, n) {
		return
	}
	w.problems = append(w.problems, problem{
		at: parent.path,
		msg: fmt.Sprintf("refusing: directory writable by group or others (mode %04o), on the way to %s; a user who can write it could swap what that path leads to and grant itself access — chmod go-w %s",
			perm, w.target, parent.path),
		key: problemKey{p.Dev, p.Ino, "mode"},
	})
}

// configMapData recognises the one writable directory a Kubernetes pod
// reads its ConfigMaps through: kubelet makes a ConfigMap volume's
// directory mode 0777 and the container runtime bind-mounts it read-only,
// so nobody in the pod can write it; its ..data symlink points at the
// root-owned 0755 directory of the current version (..2024_01_01_...),
// swapped by kubelet. All of it is required: the entry is one of kubelet's
// (named "..", which it refuses as a key; the ..data symlink or a version
// directory) and root's, the directory is the root of its own mount, and
// that mount is read-only. A read-only mount alone
// proves nothing: under systemd's ProtectSystem=strict every mount is
// read-only to the daemon, while users still write the same directories
// on the host. Only on the way: the directory a file is read from is
// checked as strictly as sshd would (final). On the host, kubelet's pod
// directories are root's alone.
func (w *walker) configMapData(parent, n node) bool {
	if !strings.HasPrefix(n.name, kubePrefix) || len(w.stack) < 2 || !w.trusted(n.st.Uid) {
		return false
	}
	switch n.st.Mode & unix.S_IFMT {
	case unix.S_IFLNK:
		if n.name != kubeData {
			return false
		}
	case unix.S_IFDIR:
	default:
		return false
	}
	var s unix.Statfs_t
	if unix.Fstatfs(parent.fd, &s) != nil || s.Flags&unix.ST_RDONLY == 0 {
		return false
	}
	own, ok := mountID(parent.fd)
	if !ok {
		return false
	}
	above, ok := mountID(w.stack[len(w.stack)-2].fd)
	return ok && own != above
}

// mountID is the id of the mount fd is on; false where the kernel cannot
// say (before 5.8), which then counts as no mount of its own.
func mountID(fd int) (uint64, bool) {
	var st unix.Statx_t
	if unix.Statx(fd, "", unix.AT_EMPTY_PATH, unix.STATX_MNT_ID, &st) != nil || st.Mask&unix.STATX_MNT_ID == 0 {
		return 0, false
	}
	return st.Mnt_id, true
}

// final applies sshd's StrictModes rule to the object read itself, a file
// or a directory the files are listed from: whoever can write it can
// grant itself access, so only root (or the owner) may be able to.
// Messages name the path as given: chown and chmod follow symlinks.
func (w *walker) final(path string, n node, dir bool) []problem {
	what, harm := "", "could grant itself access"
	if dir {
		what, harm = "directory ", "could replace the files in it and grant itself access"
	}
	var out []problem
	if st := &n.st; !w.trusted(st.Uid) {
		out = append(out, problem{
			at: path,
			msg: fmt.Sprintf("refusing: %sowned by uid %d, not %s; a user who owns it %s — chown %s %s",
				what, st.Uid, ownerName(w.owner), harm, ownerArg(w.owner), path),
			key: problemKey{st.Dev, st.Ino, "owner"},
		})
	}
	if perm := fileMode(n.st.Mode).Perm(); perm&0o022 != 0 {
		out = append(out, problem{
			at: path,
			msg: fmt.Sprintf("refusing: %swritable by group or others (mode %04o); a user who can write it %s — chmod go-w %s",
				what, perm, harm, path),
			key: problemKey{n.st.Dev, n.st.Ino, "mode"},
		})
	}
	return out
}

// openLast opens the walk's last node for reading, from its directory and
// without following a symlink, and makes sure it is the object checked.
// O_NONBLOCK: the type was checked on the O_PATH descriptor, but a FIFO
// swapped in since must not hang the daemon either.
func (w *walker) openLast(path string, dir bool) (*os.File, error) {
	last := w.stack[len(w.stack)-1]
	flags := unix.O_RDONLY | unix.O_NONBLOCK | unix.O_NOFOLLOW | unix.O_CLOEXEC
	if dir {
		flags |= unix.O_DIRECTORY
	}
	var fd int
	var err error
	if len(w.stack) == 1 {
		fd, err = unix.Open("/", flags, 0)
	} else {
		fd, err = unix.Openat(w.stack[len(w.stack)-2].fd, last.name, flags, 0)
	}
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, &fs.PathError{Op: "stat", Path: path, Err: err}
	}
	if st.Dev != last.st.Dev || st.Ino != last.st.Ino {
		unix.Close(fd)
		return nil, &fs.PathError{Op: "open", Path: path, Err: errors.New("replaced while being opened")}
	}
	return os.NewFile(uintptr(fd), path), nil
}

// fileMode converts a stat mode to an fs.FileMode (type and permission
// bits, and sticky).
func fileMode(m uint32) fs.FileMode {
	mode := fs.FileMode(m & 0o777)
	if m&unix.S_ISVTX != 0 {
		mode |= fs.ModeSticky
	}
	switch m & unix.S_IFMT {
	case unix.S_IFDIR:
		mode |= fs.ModeDir
	case unix.S_IFLNK:
		mode |= fs.ModeSymlink
	case unix.S_IFIFO:
		mode |= fs.ModeNamedPipe
	case unix.S_IFSOCK:
		mode |= fs.ModeSocket
	case unix.S_IFCHR:
		mode |= fs.ModeDevice | fs.ModeCharDevice
	case unix.S_IFBLK:
		mode |= fs.ModeDevice
	}
	return mode
}
