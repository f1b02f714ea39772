// SPDX-License-Identifier: Apache-2.0

package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"syscall"

	"golang.org/x/sys/unix"
)

// SetPaths lists the files a load of the set at mainPath reads: the main
// file, then conf.d's drop-ins in lexical order, as named (symlinks not
// resolved). It reads nothing and checks nothing; Load does both.
func SetPaths(mainPath string) []string {
	paths := []string{mainPath}
	dir := DropInDir(mainPath)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return paths
	}
	var names []string
	for _, e := range entries {
		if isDropInName(e.Name()) {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	for _, n := range names {
		paths = append(paths, filepath.Join(dir, n))
	}
	return paths
}

// IsDropIn reports whether a conf.d entry of that name is read as a drop-in.
func IsDropIn(name string) bool { return isDropInName(name) }

// ErrWriteUnknown is wrapped by Writing when the kernel cannot say whether a
// file is open for writing (a file system without leases, or leases turned
// off with the fs.leases-enable sysctl).
var ErrWriteUnknown = errors.New("cannot tell whether it is open for writing")

// Writing returns the first of paths that some process holds open for
// writing: a write in progress, however slow, so its contents are not the
// file its writer means yet. A missing path or a path that is not a regular
// file is not being written. When no path is being written but the kernel
// could not tell for some, the error wraps ErrWriteUnknown; other errors
// (a path that cannot be opened) are left for Load to report.
//
// The kernel keeps count of a file's writers; a read lease (F_SETLEASE
// F_RDLCK) is refused with EAGAIN while that count is not zero, which makes
// it the question "is anyone writing this?" with no race against a writer
// that closes. The lease is dropped at once; a writer that opens the file
// in that instant waits for it, microseconds. Taking a lease needs the
// caller to own the file (or CAP_LEASE): configuration files are owned by
// root, as the daemon is, and Load refuses any other owner.
func Writing(paths []string) (string, error) {
	var unknown []error
	for _, p := range paths {
		writing, err := openForWriting(p)
		if errors.Is(err, ErrWriteUnknown) {
			unknown = append(unknown, fmt.Errorf("%s: %w", p, err))
			continue
		}
		if writing {
			return p, nil
		}
	}
	return "", errors.Join(unknown...)
}

func openForWriting(path string) (bool, error) {
	// Looked at with O_PATH first, which opens nothing: whatever a path
	// leads to (a device node, a FIFO) is only opened for reading once
	// known to be a regular file, through the descriptor already held, so
	// it cannot be swapped in between.
	pfd, err := unix.Open(path, unix.O_PATH|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer unix.Close(pfd)
	var st unix.Stat_t
	if err := unix.Fstat(pfd, &st); err != nil {
		return false, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return false, nil
	}
	f, err := os.OpenFile(fmt.Sprintf("/proc/self/fd/%d", pfd), os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return false, err
	}
	defer f.Close()
	fd := int(f.Fd())
	err = fcntlInt(fd, unix.F_SETLEASE, unix.F_RDLCK)
	switch {
	case err == nil:
		if err := fcntlInt(fd, unix.F_SETLEASE, unix.F_UNLCK); err != nil {
			return false, fmt.Errorf("drop read lease: %w", err)
		}
		return false, nil
	case errors.Is(err, unix.EAGAIN):
		return true, nil
	case errors.Is(err, unix.EINVAL), errors.Is(err, unix.EACCES), errors.Is(err, unix.ENOLCK):
		return false, fmt.Errorf("%w (read lease: %v)", ErrWriteUnknown, err)
	}
	return false, fmt.Errorf("read lease: %w", err)
}

func fcntlInt(fd, cmd, arg int) error {
	_, err := unix.FcntlInt(uintptr(fd), cmd, arg)
	return err
}
