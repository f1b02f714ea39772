// SPDX-License-Identifier: Apache-2.0

package bpf

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// Cgroup principals in the kernel (filter.h): every distinct cgroup path of
// the policies in the slots has a bit; ntf_cgroups says, per live cgroup,
// which watched paths it is at or below, and the cgroup_mkdir tracepoint
// keeps it so for every directory made from then on, before anything can
// run in it. This file keeps the watched paths (ntf_cg_watch) and fills
// ntf_cgroups in for the directories that exist already.

// cgroupRootStep is the watch entry of the root directory itself: its bits
// are those of cgroup:/. The tracepoints never look node 0 up.
var cgroupRootStep = filterNtfCgStep{}

// maxCgroupPaths is NTF_CG_PRINCIPALS: the bits of a mask.
const maxCgroupPaths = 64

// linkCgroupMkdir and linkCgroupRelease are the pins of the tracepoint
// links; under linkPrefix, so that `detach` removes them with the rest.
const (
	linkCgroupMkdir   = linkPrefix + "cgroup_mkdir"
	linkCgroupRelease = linkPrefix + "cgroup_release"
)

// Cgroup2Mount is where the cgroup v2 hierarchy is mounted: the first
// cgroup2 entry of /proc/self/mountinfo (/sys/fs/cgroup, or
// /sys/fs/cgroup/unified on hybrid hosts). Paths of cgroup principals are
// relative to it.
func Cgroup2Mount() (string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", fmt.Errorf("find the cgroup2 mount: %w", err)
	}
	defer f.Close()
	return cgroup2MountIn(f)
}

// cgroup2MountIn reads mountinfo lines: "ID PARENT MAJ:MIN ROOT MOUNTPOINT
// OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTIONS".
func cgroup2MountIn(r io.Reader) (string, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		sep := slices.Index(fields, "-")
		if sep < 5 || sep+1 >= len(fields) || fields[sep+1] != "cgroup2" {
			continue
		}
		return unescapeMountinfo(fields[4]), nil
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("read mountinfo: %w", err)
	}
	return "", errors.New("no cgroup2 filesystem is mounted (a cgroup v1-only host): unit: and cgroup: principals match nothing")
}

// unescapeMountinfo undoes the octal escapes (\040 for a space) of a
// mountinfo path.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var v byte
			ok := true
			for _, c := range []byte(s[i+1 : i+4]) {
				if c < '0' || c > '7' {
					ok = false
					break
				}
				v = v*8 + c - '0'
			}
			if ok {
				b.WriteByte(v)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// cgroupTracker keeps the kernel's cgroup maps in step with the cgroup
// paths of the policies in the slots. Bits and watch node ids are kept
// while a path or directory is watched, so that what the tracepoint writes
// never needs rewriting; node ids are never reused, so that an entry left
// with an old node can never match a new path's steps.
type cgroupTracker struct {
	mount    string // the cgroup2 mount; "" when none
	mountErr error  // why there is none
	cgroups  *ebpf.Map
	watch    *ebpf.Map
	bits     map[string]int    // watched path → its bit
	nodes    map[string]uint32 // directory on the way to, or at, a watched path → its node
	nextNode uint32
	steps    map[filterNtfCgStep]filterNtfCg // as in ntf_cg_watch
	links    []link.Link
	problem  string // the last walk's, for the daemon's status; "" none
}

// newCgroupTracker takes over what the maps hold: a restart keeps the bits
// and nodes an earlier run gave out, which the live policy's ranges and
// the tracked cgroups refer to.
func newCgroupTracker(cgroups, watch *ebpf.Map) (*cgroupTracker, error) {
	t := &cgroupTracker{cgroups: cgroups, watch: watch, bits: map[string]int{}, nodes: map[string]uint32{"/": ntfCgRoot},
		nextNode: ntfCgRoot + 1, steps: map[filterNtfCgStep]filterNtfCg{}}
	t.mount, t.mountErr = Cgroup2Mount()
	var k filterNtfCgStep
	var v filterNtfCg
	it := watch.Iterate()
	for it.Next(&k, &v) {
		t.steps[k] = v
		t.nextNode = max(t.nextNode, v.Node+1)
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("read watched cgroups: %w", err)
	}
	var id uint64
	it = cgroups.Iterate()
	for it.Next(&id, &v) {
		t.nextNode = max(t.nextNode, v.Node+1)
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("read tracked cgroups: %w", err)
	}
	// Paths from steps, top-down from the root.
	var walk func(dir string, node uint32)
	walk = func(dir string, node uint32) {
		for k, v := range t.steps {
			if k.Node != node || k == cgroupRootStep {
				continue
			}
			p := path.Join(dir, stepName(k))
			t.adoptBits(p, v.Bits)
			if v.Node != 0 {
				t.nodes[p] = v.Node
				walk(p, v.Node)
			}
		}
	}
	if v, ok := t.steps[cgroupRootStep]; ok {
		t.adoptBits("/", v.Bits)
	}
	walk("/", ntfCgRoot)
	return t, nil
}

func (t *cgroupTracker) adoptBits(p string, mask uint64) {
	for mask != 0 {
		b := bits.TrailingZeros64(mask)
		t.bits[p] = b
		mask &^= 1 << b
	}
}

const ntfCgRoot = 1 // NTF_CG_ROOT

func stepName(k filterNtfCgStep) string {
	b := make([]byte, 0, len(k.Name))
	for _, c := range k.Name {
		if c == 0 {
			break
		}
		b = append(b, byte(c))
	}
	return string(b)
}

func makeStep(node uint32, name string) filterNtfCgStep {
	k := filterNtfCgStep{Node: node}
	for i := 0; i < len(name) && i < len(k.Name)-1; i++ {
		k.Name[i] = int8(name[i])
	}
	return k
}

// masks is the bit mask of every watched path, for the encoder.
func (t *cgroupTracker) masks() map[string]uint64 {
	m := make(map[string]uint64, len(t.bits))
	for p, b := range t.bits {
		m[p] = 1 << b
	}
	return m
}

// attach attaches the tracepoint programs, pinned so that cgroups are
// tracked while no daemon runs. Links an earlier run pinned stay attached
// until the new ones are in place: between the two, both write the same
// facts.
func (t *cgroupTracker) attach(mkdir, release *ebpf.Program, pinDir string) error {
	if t.links != nil {
		return nil
	}
	for _, tp := range []struct {
		name, pin string
		prog      *ebpf.Program
	}{{"cgroup_mkdir", linkCgroupMkdir, mkdir}, {"cgroup_release", linkCgroupRelease, release}} {
		l, err := link.AttachRawTracepoint(link.RawTracepointOptions{Name: tp.name, Program: tp.prog})
		if err != nil {
			t.closeLinks()
			return fmt.Errorf("attach to the %s tracepoint (needs CAP_BPF and CAP_PERFMON): %w", tp.name, err)
		}
		t.links = append(t.links, l)
		if err := pinReplace(filepath.Join(pinDir, tp.pin), l.Pin); err != nil {
			t.closeLinks()
			return fmt.Errorf("pin the %s tracepoint link: %w", tp.name, err)
		}
	}
	return nil
}

func (t *cgroupTracker) closeLinks() {
	for _, l := range t.links {
		l.Close()
	}
	t.links = nil
}

// prepare gives every path of the next policy a bit, watches it, and
// records every existing directory at or below it, so that the policy can
// go live: the paths of the live policy stay watched until release.
func (t *cgroupTracker) prepare(paths []string) error {
	var fresh []string
	for _, p := range paths {
		if _, ok := t.bits[p]; !ok {
			fresh = append(fresh, p)
		}
	}
	if len(t.bits)+len(fresh) > maxCgroupPaths {
		return fmt.Errorf("%d distinct cgroup paths in the live and the new policy together; the kernel program has room for %d", len(t.bits)+len(fresh), maxCgroupPaths)
	}
	var taken uint64
	for _, b := range t.bits {
		taken |= 1 << b
	}
	for _, p := range fresh {
		b := bits.TrailingZeros64(^taken)
		t.bits[p] = b
		taken |= 1 << b
	}
	if err := t.sync(); err != nil {
		return err
	}
	return t.populate()
}

// release forgets the paths that the live policy (paths) no longer names:
// their bits are cleared from every tracked cgroup before they can be
// given to another path.
func (t *cgroupTracker) release(paths []string) error {
	var freed uint64
	for p, b := range t.bits {
		if !slices.Contains(paths, p) {
			freed |= 1 << b
			delete(t.bits, p)
		}
	}
	if freed == 0 {
		return nil
	}
	if err := t.sync(); err != nil {
		return err
	}
	live := map[uint32]bool{}
	for _, n := range t.nodes {
		live[n] = true
	}
	// A directory made while the first sweep runs may inherit a bit from
	// a parent not swept yet; once every mkdir in flight is done (the
	// barrier), the second sweep finds it.
	if err := t.sweep(freed, live); err != nil {
		return err
	}
	if err := cgroupBarrier(); err != nil {
		return err
	}
	return t.sweep(freed, live)
}

// sweep clears bits from every tracked cgroup and forgets nodes no longer
// watched; an entry left with neither is deleted.
func (t *cgroupTracker) sweep(freed uint64, live map[uint32]bool) error {
	var id uint64
	var v filterNtfCg
	type change struct {
		id uint64
		v  filterNtfCg
	}
	var changes []change
	it := t.cgroups.Iterate()
	for it.Next(&id, &v) {
		n := filterNtfCg{Bits: v.Bits &^ freed, Node: v.Node}
		if n.Node != 0 && !live[n.Node] {
			n.Node = 0
		}
		if n != v {
			changes = append(changes, change{id, n})
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("read tracked cgroups: %w", err)
	}
	for _, c := range changes {
		var err error
		if c.v.Bits == 0 && c.v.Node == 0 {
			err = t.cgroups.Delete(c.id)
			if errors.Is(err, ebpf.ErrKeyNotExist) {
				err = nil
			}
		} else {
			// Only where it is still there: a released cgroup's id is
			// never written back.
			err = t.cgroups.Update(c.id, c.v, ebpf.UpdateExist)
			if errors.Is(err, ebpf.ErrKeyNotExist) {
				err = nil
			}
		}
		if err != nil {
			return fmt.Errorf("update tracked cgroup %d: %w", c.id, err)
		}
	}
	return nil
}

// sync writes the watch steps of the watched paths and removes those of
// paths no longer watched. A directory's node is kept while any watched
// path is at or below it.
func (t *cgroupTracker) sync() error {
	want := map[filterNtfCgStep]filterNtfCg{}
	used := map[string]bool{"/": true}
	for p, b := range t.bits {
		if p == "/" {
			v := want[cgroupRootStep]
			want[cgroupRootStep] = filterNtfCg{Bits: v.Bits | 1<<b, Node: ntfCgRoot}
			continue
		}
		parts := strings.Split(strings.TrimPrefix(p, "/"), "/")
		dir := "/"
		for i, name := range parts {
			child := path.Join(dir, name)
			k := makeStep(t.nodes[dir], name)
			v := want[k]
			if i == len(parts)-1 {
				v.Bits |= 1 << b
			} else {
				used[child] = true
				if t.nodes[child] == 0 {
					t.nodes[child] = t.nextNode
					t.nextNode++
				}
				v.Node = t.nodes[child]
			}
			want[k] = v
			dir = child
		}
	}
	for dir := range t.nodes {
		if !used[dir] {
			delete(t.nodes, dir)
		}
	}
	if _, ok := want[cgroupRootStep]; !ok && len(t.bits) > 0 {
		want[cgroupRootStep] = filterNtfCg{Node: ntfCgRoot}
	}
	for k, v := range want {
		if old, ok := t.steps[k]; ok && old == v {
			continue
		}
		if err := t.watch.Put(k, v); err != nil {
			return fmt.Errorf("watch cgroup step %q: %w", stepName(k), err)
		}
		t.steps[k] = v
	}
	for k := range t.steps {
		if _, ok := want[k]; ok {
			continue
		}
		if err := t.watch.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("unwatch cgroup step %q: %w", stepName(k), err)
		}
		delete(t.steps, k)
	}
	return nil
}

// populate records the directories that exist: twice, around a barrier. A
// mkdir whose tracepoint ran before its parent was recorded left nothing;
// the first walk may miss its directory (not visible yet), the second,
// after every mkdir in flight has finished, finds it. A mkdir after its
// parent was recorded is the tracepoint's.
func (t *cgroupTracker) populate() error {
	t.problem = ""
	if len(t.bits) == 0 {
		return nil
	}
	if t.mount == "" {
		t.problem = t.mountErr.Error()
		return nil
	}
	if err := t.walk(); err != nil {
		return err
	}
	if err := cgroupBarrier(); err != nil {
		return err
	}
	return t.walk()
}

// walk records the root, the directories on the way to each watched path,
// and every directory at or below one, as the tracepoint would have.
func (t *cgroupTracker) walk() error {
	rootID, err := inode(t.mount)
	if err != nil {
		return fmt.Errorf("cgroup2 mount: %w", err)
	}
	root := t.steps[cgroupRootStep]
	var full bool
	var visit func(dir string, id uint64, v filterNtfCg) error
	visit = func(dir string, id uint64, v filterNtfCg) error {
		if err := t.cgroups.Put(id, v); err != nil {
			if !errors.Is(err, syscall.E2BIG) { // E2BIG: the hash map is full
				return fmt.Errorf("track cgroup %s: %w", dir, err)
			}
			full = true
			return nil
		}
		var names []string
		if v.Bits != 0 {
			entries, err := os.ReadDir(filepath.Join(t.mount, dir))
			if err != nil {
				return nil // removed meanwhile: its release has run or will
			}
			for _, e := range entries {
				if e.IsDir() {
					names = append(names, e.Name())
				}
			}
		} else {
			for k := range t.steps {
				if k.Node == v.Node && k != cgroupRootStep {
					names = append(names, stepName(k))
				}
			}
		}
		for _, name := range names {
			child := path.Join(dir, name)
			id, err := inode(filepath.Join(t.mount, child))
			if err != nil {
				continue // not there (yet): the tracepoint records it when it is made
			}
			c := filterNtfCg{Bits: v.Bits}
			if v.Node != 0 {
				if s, ok := t.steps[makeStep(v.Node, name)]; ok {
					c.Bits |= s.Bits
					c.Node = s.Node
				}
			}
			if c.Bits == 0 && c.Node == 0 {
				continue
			}
			if err := visit(child, id, c); err != nil {
				return err
			}
		}
		return nil
	}
	if err := visit("/", rootID, filterNtfCg{Bits: root.Bits, Node: ntfCgRoot}); err != nil {
		return err
	}
	if full {
		t.problem = fmt.Sprintf("more cgroups at or below the policy's cgroup paths than the kernel program tracks (%d): the others match no cgroup principal", t.cgroups.MaxEntries())
	}
	return nil
}

// inode is a cgroup directory's id: kernfs numbers its inodes with the
// node ids that bpf_skb_cgroup_id answers.
func inode(p string) (uint64, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(p, &st); err != nil {
		return 0, err
	}
	return st.Ino, nil
}

// cgroupBarrier returns once every cgroup mkdir in flight has finished:
// reading /proc/self/cgroup takes cgroup_mutex (proc_cgroup_show), which
// cgroup_mkdir holds from its tracepoint until the directory is visible.
func cgroupBarrier() error {
	if _, err := os.ReadFile("/proc/self/cgroup"); err != nil {
		return fmt.Errorf("cgroup barrier: %w", err)
	}
	return nil
}
