// SPDX-License-Identifier: Apache-2.0

package logging

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nettcfilter/net-tc-filter/daemon/testnet"
)

func TestUnitOfCgroup(t *testing.T) {
	tests := []struct{ path, want string }{
		{"/system.slice/cloud-agent.service", "cloud-agent.service"},
		{"/system.slice/cloud-agent.service/", "cloud-agent.service"},
		{"/system.slice/docker-0123abcd.scope", "docker-0123abcd.scope"},
		{"/user.slice/user-1000.slice/session-3.scope", "session-3.scope"},
		{"/user.slice/user-1000.slice/user@1000.service/app.slice/foo.service", "user@1000.service"},
		{"/system.slice/getty.slice/getty@tty1.service", "getty@tty1.service"},
		{"/system.slice/sshd.service/payload/sub", "sshd.service"},
		{"/machine.slice/machine-vm1.scope/payload/system.slice/x.service", "machine-vm1.scope"},
		{"/init.scope", "init.scope"},
		{"/ntft-1a2b3c4d.scope", "ntft-1a2b3c4d.scope"},
		{"/system.slice/foo.socket", "foo.socket"},
		{"/system.slice/home.mount", "home.mount"},
		{"/system.slice/dev-zram0.swap", "dev-zram0.swap"},
		{`/system.slice/system-serial\x2dgetty.slice/serial-getty@ttyS0.service`, "serial-getty@ttyS0.service"},
		{"/system.slice/_cpu.foo.service", "cpu.foo.service"},
		{"/_cpu.slice/a.service", "a.service"},
		// No unit: slices, the root, and cgroups not made by systemd.
		{"/system.slice", ""},
		{"/user.slice/user-1000.slice", ""},
		{"/", ""},
		{"", ""},
		{"/docker/0123abcd", ""},
		{"/docker/0123abcd/x.service", ""},
		{"/system.slice/.service", ""},
		{"/system.slice/foo.target", ""},
		{"/system.slice/foo bar.service", ""},
		{"/.slice/a.service", ""},
	}
	for _, tt := range tests {
		if got := unitOfCgroup(tt.path); got != tt.want {
			t.Errorf("unitOfCgroup(%q) = %q, want %q", tt.path, got, tt.want)
		}
	}
}

func TestFindCgroup2(t *testing.T) {
	const (
		hybrid = `22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate
`
		pure = `22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
35 24 0:30 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
`
		v1 = `31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
`
		// A container's bind mount of its own subtree, listed before a
		// mount of the whole hierarchy.
		subtreeFirst = `50 40 0:30 /system.slice/c1.scope /sys/fs/cgroup rw master:9 - cgroup2 cgroup2 rw
51 40 0:30 / /mnt/cgroup\040all rw - cgroup2 none rw
`
		subtreeOnly = `50 40 0:30 /machine.slice/c1.scope /sys/fs/cgroup rw - cgroup2 cgroup2 rw
`
		// The fields a naive parser would take for the type: optional
		// fields, and a mount point named like the type.
		tricky = `60 22 0:40 / /cgroup2 rw shared:3 master:4 - tmpfs cgroup2 rw
61 22 0:30 / /srv/my\134cg rw - cgroup2 cgroup2 rw
`
	)
	tests := []struct {
		name, mountinfo, mount, root string
		wantErr                      bool
	}{
		{name: "hybrid", mountinfo: hybrid, mount: "/sys/fs/cgroup/unified", root: "/"},
		{name: "pure v2", mountinfo: pure, mount: "/sys/fs/cgroup", root: "/"},
		{name: "v1 only", mountinfo: v1, wantErr: true},
		{name: "empty", mountinfo: "", wantErr: true},
		{name: "whole hierarchy over subtree", mountinfo: subtreeFirst, mount: "/mnt/cgroup all", root: "/"},
		{name: "subtree only", mountinfo: subtreeOnly, mount: "/sys/fs/cgroup", root: "/machine.slice/c1.scope"},
		{name: "type is after the separator", mountinfo: tricky, mount: `/srv/my\cg`, root: "/"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mount, root, err := findCgroup2(strings.NewReader(tt.mountinfo))
			if (err != nil) != tt.wantErr || mount != tt.mount || root != tt.root {
				t.Errorf("findCgroup2 = %q, %q, %v; want %q, %q, error %v", mount, root, err, tt.mount, tt.root, tt.wantErr)
			}
		})
	}
}

// fakeClock is a clock the test moves.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

func mkdirIno(t *testing.T, dir string) uint64 {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return ino(t, dir)
}

func ino(t *testing.T, path string) uint64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

// The cache on an ordinary directory tree, which indexes by inode the same
// way: no root needed.
func TestUnitsCache(t *testing.T) {
	mount := t.TempDir()
	agent := mkdirIno(t, filepath.Join(mount, "system.slice", "cloud-agent.service"))
	session := mkdirIno(t, filepath.Join(mount, "user.slice", "user-1000.slice", "session-3.scope"))
	slice := ino(t, filepath.Join(mount, "system.slice"))
	root := ino(t, mount)
	// Files in a cgroup are its control files, not cgroups.
	if err := os.WriteFile(filepath.Join(mount, "system.slice", "cgroup.procs"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	file := ino(t, filepath.Join(mount, "system.slice", "cgroup.procs"))

	clock := &fakeClock{t: time.Unix(1e9, 0)}
	u, err := newUnits(mount, "/", clock.now)
	if err != nil {
		t.Fatal(err)
	}
	step := func(what string, id uint64, want string, walks int) {
		t.Helper()
		if got := u.Unit(id); got != want || u.walks != walks {
			t.Errorf("%s: Unit = %q after %d walks, want %q after %d", what, got, u.walks, want, walks)
		}
	}
	step("service", agent, "cloud-agent.service", 1)
	step("scope", session, "session-3.scope", 1)
	step("slice", slice, "", 1)
	step("root", root, "", 1)

	// A unit started after the walk, with an id no higher than the
	// walk's newest (as if the kernel's ids were not increasing): not
	// found until a second has passed since that walk, found then.
	later := mkdirIno(t, filepath.Join(mount, "system.slice", "later.service"))
	u.newest = ^uint64(0)
	step("new unit, too soon", later, "", 1)
	step("new unit, too soon again", later, "", 1)
	clock.t = clock.t.Add(999 * time.Millisecond)
	step("new unit, still too soon", later, "", 1)
	clock.t = clock.t.Add(time.Millisecond)
	step("new unit after a second", later, "later.service", 2)
	step("new unit, cached", later, "later.service", 2)

	// A cgroup with an id above the last walk's newest is newer than the
	// walk: walked for at once, rate limit or not.
	newer := mkdirIno(t, filepath.Join(mount, "system.slice", "newer.service"))
	u.newest = newer - 1
	step("newer unit at once", newer, "newer.service", 3)

	// An id no walk finds is remembered as unknown: no walk per decision.
	clock.t = clock.t.Add(time.Hour)
	step("unknown", file, "", 4)
	clock.t = clock.t.Add(time.Hour)
	step("unknown, cached", file, "", 4)

	// A removed unit stays known after the next walk: its last decisions
	// may still be queued.
	if err := os.Remove(filepath.Join(mount, "system.slice", "later.service")); err != nil {
		t.Fatal(err)
	}
	clock.t = clock.t.Add(time.Hour)
	step("another unknown", ^uint64(0), "", 5)
	step("removed unit", later, "later.service", 5)
}

func TestUnitsBound(t *testing.T) {
	mount := t.TempDir()
	clock := &fakeClock{t: time.Unix(1e9, 0)}
	u, err := newUnits(mount, "/", clock.now)
	if err != nil {
		t.Fatal(err)
	}
	u.limit = 4
	for i := range 3 {
		mkdirIno(t, filepath.Join(mount, fmt.Sprintf("u%d.service", i)))
	}
	for id := uint64(1); id <= 20; id++ {
		clock.t = clock.t.Add(time.Second)
		u.Unit(^id) // no such inode
		if len(u.unknown) > u.limit {
			t.Fatalf("%d unknown ids cached, limit %d", len(u.unknown), u.limit)
		}
	}
	// Walks of a hierarchy with more cgroups than the limit keep the
	// present ones and forget the removed ones.
	old := mkdirIno(t, filepath.Join(mount, "old.service"))
	clock.t = clock.t.Add(time.Second)
	if got := u.Unit(old); got != "old.service" {
		t.Fatalf("Unit(old) = %q", got)
	}
	// Made before the removal, or the file system may reuse the inode, which
	// cgroupfs does not do.
	fresh := mkdirIno(t, filepath.Join(mount, "fresh.service"))
	if err := os.Remove(filepath.Join(mount, "old.service")); err != nil {
		t.Fatal(err)
	}
	clock.t = clock.t.Add(time.Second)
	if got := u.Unit(fresh); got != "fresh.service" {
		t.Fatalf("Unit(fresh) = %q", got)
	}
	if _, ok := u.ids[old]; ok || len(u.ids) != 5 {
		t.Errorf("after a walk over the limit the cache has %d ids, old one kept %v; want the 5 present", len(u.ids), ok)
	}
}

// A mount of a subtree names cgroups by their path in the whole hierarchy.
func TestUnitsSubtree(t *testing.T) {
	mount := t.TempDir()
	payload := mkdirIno(t, filepath.Join(mount, "payload"))
	u, err := newUnits(mount, "/machine.slice/machine-vm1.scope", time.Now)
	if err != nil {
		t.Fatal(err)
	}
	if got := u.Unit(payload); got != "machine-vm1.scope" {
		t.Errorf("Unit = %q, want machine-vm1.scope", got)
	}
	if got := u.Unit(ino(t, mount)); got != "machine-vm1.scope" {
		t.Errorf("Unit of the mount's top = %q, want machine-vm1.scope", got)
	}
}

func TestNewUnitsUnreadable(t *testing.T) {
	if _, err := newUnits(filepath.Join(t.TempDir(), "absent"), "/", time.Now); err == nil ||
		!strings.Contains(err.Error(), "indexing cgroups under") {
		t.Errorf("newUnits on a missing mount = %v, want an error saying what failed", err)
	}
}

// The real thing: cgroups made in the kernel's cgroup2 hierarchy, looked up
// by the id the kernel gives them.
func TestUnitsKernel(t *testing.T) {
	testnet.RequireRoot(t)
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	mount, root, err := findCgroup2(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	var fs unix.Statfs_t
	if err := unix.Statfs(mount, &fs); err != nil || fs.Type != unix.CGROUP2_SUPER_MAGIC {
		t.Fatalf("found %s in mountinfo, which is not cgroup2 (%v)", mount, err)
	}

	pid := os.Getpid()
	slice := filepath.Join(mount, fmt.Sprintf("ntf-test-%d.slice", pid))
	probe := filepath.Join(slice, fmt.Sprintf("probe-%d.scope", pid))
	probe2 := filepath.Join(slice, fmt.Sprintf("probe2-%d.service", pid))
	t.Cleanup(func() {
		for _, dir := range []string{probe2, probe, slice} { // deepest first
			if err := os.Remove(dir); err != nil && !os.IsNotExist(err) {
				t.Errorf("cleanup: %v", err)
			}
		}
	})
	if err := os.Mkdir(slice, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(probe, 0o755); err != nil {
		t.Fatal(err)
	}
	id := cgroupID(t, probe)

	u, err := NewUnits()
	if err != nil {
		t.Fatal(err)
	}
	if u.mount != mount || u.root != root {
		t.Fatalf("NewUnits uses %s (root %s), want %s (%s)", u.mount, u.root, mount, root)
	}
	clock := &fakeClock{t: time.Now()}
	u.now = clock.now
	u.lastWalk = clock.t

	want := fmt.Sprintf("probe-%d.scope", pid)
	if got := u.Unit(id); got != want {
		t.Errorf("Unit(%d) = %q, want %q", id, got, want)
	}
	if got := u.Unit(cgroupID(t, slice)); got != "" {
		t.Errorf("Unit of the slice = %q, want none", got)
	}

	if err := os.Mkdir(probe2, 0o755); err != nil {
		t.Fatal(err)
	}
	id2 := cgroupID(t, probe2)
	walks := u.walks
	want2 := fmt.Sprintf("probe2-%d.service", pid)
	if got := u.Unit(id2); got != want2 || u.walks != walks+1 {
		t.Errorf("a cgroup made after the walk is %q after %d more walks; want %q at once, after one walk (kernel ids increase)", got, u.walks-walks, want2)
	}
}

// cgroupID is the id of the cgroup at dir the way the kernel hands it out
// (the file handle of its directory, as bpf_skb_cgroup_id and systemd's
// cg_path_get_cgroupid use it), checked against the inode number Units uses.
func cgroupID(t *testing.T, dir string) uint64 {
	t.Helper()
	h, _, err := unix.NameToHandleAt(unix.AT_FDCWD, dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(h.Bytes()) != 8 {
		t.Fatalf("file handle of %s has %d bytes, want a 64-bit cgroup id", dir, len(h.Bytes()))
	}
	id := binary.NativeEndian.Uint64(h.Bytes())
	if i := ino(t, dir); i != id {
		t.Fatalf("%s: cgroup id %d, inode %d: Units would not find it", dir, id, i)
	}
	return id
}
