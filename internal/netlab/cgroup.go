// SPDX-License-Identifier: Apache-2.0

package netlab

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// Cgroup2Mount is where this host mounts cgroup v2: /sys/fs/cgroup, or
// /sys/fs/cgroup/unified on hybrid hosts (never assumed: read from
// /proc/self/mountinfo).
func Cgroup2Mount() (string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		for i, fld := range fields {
			if fld == "-" && i+1 < len(fields) && fields[i+1] == "cgroup2" && i > 4 {
				return fields[4], nil
			}
		}
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	return "", errors.New("no cgroup2 filesystem is mounted")
}

// Cgroup is a cgroup v2 directory a test made: Path is below the cgroup2
// mount ("/ntft-1a2b/a"), as cgroup: principals name it.
type Cgroup struct {
	Path  string
	mount string
}

// NewCgroup makes the directory rel (slash-separated, parents made as
// needed) below the cgroup2 mount.
func NewCgroup(rel string) (*Cgroup, error) {
	mount, err := Cgroup2Mount()
	if err != nil {
		return nil, err
	}
	c := &Cgroup{Path: "/" + strings.Trim(rel, "/"), mount: mount}
	if err := os.MkdirAll(c.Dir(), 0o755); err != nil {
		return nil, fmt.Errorf("make cgroup: %w", err)
	}
	return c, nil
}

// Dir is the directory in the file system.
func (c *Cgroup) Dir() string { return filepath.Join(c.mount, c.Path) }

// ID is the cgroup's id: its directory's inode number.
func (c *Cgroup) ID() (uint64, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(c.Dir(), &st); err != nil {
		return 0, err
	}
	return st.Ino, nil
}

// Remove removes the directory and those below it, deepest first; they
// must hold no process.
func (c *Cgroup) Remove() error {
	var dirs []string
	err := filepath.WalkDir(c.Dir(), func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		}
		return err
	})
	if err != nil {
		return err
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := syscall.Rmdir(dirs[i]); err != nil && !errors.Is(err, syscall.ENOENT) {
			return fmt.Errorf("remove cgroup %s: %w", dirs[i], err)
		}
	}
	return nil
}

// StartAgentInCgroup is StartAgent with the agent created in the cgroup
// (clone3 CLONE_INTO_CGROUP): it is in it from its first instruction, as a
// service's process is in its unit's cgroup.
func StartAgentInCgroup(ns *NS, uid uint32, c *Cgroup) (*Agent, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	dir, err := os.Open(c.Dir())
	if err != nil {
		return nil, fmt.Errorf("agent: open cgroup: %w", err)
	}
	defer dir.Close()
	cmd := ns.Command(exe)
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(dir.Fd())}
	return startAgent(cmd, uid)
}
