// SPDX-License-Identifier: Apache-2.0

package logging

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

const (
	// rewalkEvery bounds how often a miss walks the hierarchy again: a
	// decision from a service started since the last walk is the common
	// miss, and a flood of them must not turn into a flood of walks.
	rewalkEvery = time.Second
	// maxCached bounds the cache. Entries of removed cgroups are kept (a
	// decision can be read after its service exited), so without a bound a
	// host starting short-lived services would grow it forever.
	maxCached = 65536
)

// Units names the systemd unit that owns a cgroup v2 id, the id the kernel
// program reports with bpf_skb_cgroup_id().
//
// A Units is not safe for concurrent use: it is meant to be owned by the one
// goroutine that reads decisions. Its cache is what makes that cheap.
type Units struct {
	// mount is where the cgroup2 filesystem is mounted, and root the
	// hierarchy path of the mount's top directory ("/" unless only a
	// subtree is mounted, as in some containers).
	mount, root string

	// ids maps a cgroup's inode number, which is its cgroup id, to the unit
	// that owns it ("" for cgroups outside any unit).
	ids map[uint64]string
	// unknown holds the ids that a walk did not find: a cgroup removed
	// before the walk, or one outside the mounted subtree. Cgroup ids are
	// not reused, so a miss after a walk stays a miss.
	unknown map[uint64]struct{}

	now      func() time.Time
	lastWalk time.Time
	// newest is the highest id the last walk saw. The kernel hands out
	// cgroup ids in increasing order, so a higher one is a cgroup created
	// since: worth a walk at once, whatever the rate limit says — a new
	// service's first packets are the ones an auditor wants named.
	newest uint64
	limit  int // maxCached, but tests cannot make 65536 cgroups
	walks  int // for tests
}

// NewUnits finds the cgroup2 mount in /proc/self/mountinfo and indexes the
// hierarchy below it. It fails when no cgroup2 filesystem is mounted (a pure
// cgroup v1 host, where the kernel's cgroup id means nothing to systemd) or
// when the hierarchy cannot be read.
func NewUnits() (*Units, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("finding the cgroup2 mount: %w", err)
	}
	defer f.Close()
	mount, root, err := findCgroup2(f)
	if err != nil {
		return nil, fmt.Errorf("finding the cgroup2 mount in /proc/self/mountinfo: %w", err)
	}
	return newUnits(mount, root, time.Now)
}

func newUnits(mount, root string, now func() time.Time) (*Units, error) {
	u := &Units{
		mount:   mount,
		root:    root,
		ids:     make(map[uint64]string),
		unknown: make(map[uint64]struct{}),
		now:     now,
		limit:   maxCached,
	}
	// A first walk up front makes an unreadable hierarchy an error at
	// start-up rather than units silently missing from every decision.
	if err := u.walk(); err != nil {
		return nil, err
	}
	return u, nil
}

// Unit returns the systemd unit owning the cgroup with this id, like
// sd_pid_get_unit(3) would for a process in it, or "" when the cgroup
// belongs to no unit (a slice, the root) or is not found. A cgroup that is
// created and removed between two walks is never found.
func (u *Units) Unit(id uint64) string {
	if unit, ok := u.ids[id]; ok {
		return unit
	}
	if _, ok := u.unknown[id]; ok {
		return ""
	}
	if id <= u.newest && u.now().Sub(u.lastWalk) < rewalkEvery {
		// Not remembered as unknown: the next walk may find it.
		return ""
	}
	if err := u.walk(); err != nil {
		// The walk failed as a whole (the mount went away): nothing learnt,
		// and the next miss after rewalkEvery tries again.
		return ""
	}
	if unit, ok := u.ids[id]; ok {
		return unit
	}
	if len(u.unknown) >= u.limit {
		clear(u.unknown)
	}
	u.unknown[id] = struct{}{}
	return ""
}

// walk indexes every cgroup below the mount by inode number.
func (u *Units) walk() error {
	u.lastWalk = u.now()
	u.walks++
	found := make(map[uint64]string)
	var newest uint64
	err := filepath.WalkDir(u.mount, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == u.mount {
				return err
			}
			// A cgroup removed while walking, or one we may not read: a
			// hole in the index, not a reason to lose the rest of it.
			if d != nil && d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if !d.IsDir() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			if p == u.mount {
				return err
			}
			return fs.SkipDir
		}
		st, ok := info.Sys().(*syscall.Stat_t)
		if !ok {
			return fmt.Errorf("no inode number for %s", p)
		}
		rel, err := filepath.Rel(u.mount, p)
		if err != nil {
			return err
		}
		found[st.Ino] = unitOfCgroup(path.Join(u.root, filepath.ToSlash(rel)))
		newest = max(newest, st.Ino)
		return nil
	})
	if err != nil {
		return fmt.Errorf("indexing cgroups under %s: %w", u.mount, err)
	}
	u.newest = max(u.newest, newest)
	if len(u.ids)+len(found) > u.limit {
		u.ids = found
		return nil
	}
	for id, unit := range found {
		u.ids[id] = unit
	}
	return nil
}

// unitOfCgroup names the unit that owns a cgroup, given its path from the
// hierarchy root, the way systemd's cg_path_get_unit does: skip the slices
// from the root down, and the next component is the unit, if it is named
// like one. Going no deeper is what makes a user's session or user manager
// the answer rather than whatever they started: /user.slice/user-1000.slice/
// user@1000.service/app.slice/foo.service is user@1000.service, a system
// unit, while foo.service only exists for that user's manager.
func unitOfCgroup(p string) string {
	for c := range strings.SplitSeq(strings.Trim(p, "/"), "/") {
		// systemd prefixes _ to a unit's cgroup name when the name could be
		// mistaken for a kernel file (cpu.foo.service → _cpu.foo.service).
		name := strings.TrimPrefix(c, "_")
		if isUnitName(name, ".slice") {
			continue
		}
		// The unit types with a cgroup of their own: services and scopes,
		// but also sockets, mounts and swaps while their commands run.
		for _, suffix := range [...]string{".service", ".scope", ".socket", ".mount", ".swap"} {
			if isUnitName(name, suffix) {
				return name
			}
		}
		return ""
	}
	return ""
}

// isUnitName reports whether name is a plausible unit name of the type given
// by suffix. It is looser than systemd's unit_name_is_valid, but enough to
// tell units from the cgroups that containers and others make by hand.
func isUnitName(name, suffix string) bool {
	prefix, ok := strings.CutSuffix(name, suffix)
	if !ok || prefix == "" || len(name) > 255 {
		return false
	}
	for _, c := range prefix {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.ContainsRune(":-_.\\@", c):
		default:
			return false
		}
	}
	return true
}

// findCgroup2 returns the mount point of the cgroup2 filesystem in a
// mountinfo file and the hierarchy path mounted there. A mount of the whole
// hierarchy wins over a mount of a subtree, since only it sees every cgroup.
func findCgroup2(r io.Reader) (mount, root string, err error) {
	s := bufio.NewScanner(r)
	s.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for s.Scan() {
		// 36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw
		// (proc_pid_mountinfo(5)): optional fields up to "-", then the type.
		fields := strings.Fields(s.Text())
		sep := -1
		for i := 6; i < len(fields); i++ {
			if fields[i] == "-" {
				sep = i
				break
			}
		}
		if sep < 0 || sep+1 >= len(fields) || fields[sep+1] != "cgroup2" {
			continue
		}
		r, m := unescapeMountinfo(fields[3]), unescapeMountinfo(fields[4])
		if r == "/" {
			return m, r, nil
		}
		if mount == "" {
			mount, root = m, r
		}
	}
	if err := s.Err(); err != nil {
		return "", "", err
	}
	if mount == "" {
		return "", "", errors.New("no cgroup2 filesystem mounted")
	}
	return mount, root, nil
}

// unescapeMountinfo undoes the kernel's octal escapes of space, tab, newline
// and backslash in mountinfo paths.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOctal(s[i+1]) && isOctal(s[i+2]) && isOctal(s[i+3]) {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(c byte) bool { return '0' <= c && c <= '7' }
