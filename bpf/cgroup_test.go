// SPDX-License-Identifier: Apache-2.0

package bpf

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/nettcfilter/net-tc-filter/daemon/config"
	"github.com/nettcfilter/net-tc-filter/daemon/testnet"
	"github.com/nettcfilter/net-tc-filter/internal/netlab"
)

// TestEnforceCgroups sends real traffic from processes placed in cgroups
// the test makes below the cgroup2 mount: cgroup: allows the sockets made
// in a cgroup and below it, whatever their uid, combines with uids, and
// follows a watched path made after the policy went live (the tracepoint's
// work, not the walk's). Both attach modes.
func TestEnforceCgroups(t *testing.T) {
	eachMode(t, testEnforceCgroups)
}

func testEnforceCgroups(t *testing.T, mode Mode) {
	tp := testnet.NewTopology(t, testnet.Options{})
	tp.ServeTCP(t, port)
	tp.ServeUDPEcho(t, port)
	top := testnet.NewCgroup(t)
	a, ab, c := testnet.SubCgroup(t, top, "a"), testnet.SubCgroup(t, top, "a/b"), testnet.SubCgroup(t, top, "c")
	agents := map[string]*testnet.Agent{
		"1001 in a":   testnet.StartAgentInCgroup(t, tp.Client, 1001, a),
		"1001 in a/b": testnet.StartAgentInCgroup(t, tp.Client, 1001, ab),
		"1001 in c":   testnet.StartAgentInCgroup(t, tp.Client, 1001, c),
		"0 in c":      testnet.StartAgentInCgroup(t, tp.Client, 0, c),
		"1002 in top": testnet.StartAgentInCgroup(t, tp.Client, 1002, top),
		"1001 here":   testnet.StartAgent(t, tp.Client, 1001), // the test's own cgroup
	}
	f := openFilter(t, tp.Client, mode)
	deny := map[string]config.Action{"eth0": config.Deny}
	imds := func(allow ...string) ep {
		return ep{"imds", []string{"eth0"}, []string{"169.254.169.254/32", "fd00:ec2::254/128"}, allow}
	}
	T := "cgroup:" + top.Path

	cases := []struct {
		name    string
		eps     []ep
		allowed []string // the others are denied
	}{
		{"a cgroup and its descendants, whatever the uid", []ep{imds(T + "/a")}, []string{"1001 in a", "1001 in a/b"}},
		{"a descendant only", []ep{imds(T + "/a/b")}, []string{"1001 in a/b"}},
		{"a cgroup or a uid", []ep{imds(T+"/c", "bob")}, []string{"1001 in c", "0 in c", "1002 in top"}},
		{"the whole test tree", []ep{imds(T)}, []string{"1001 in a", "1001 in a/b", "1001 in c", "0 in c", "1002 in top"}},
		{"uids only, as before", []ep{imds("alice")}, []string{"1001 in a", "1001 in a/b", "1001 in c", "1001 here"}},
		{"two paths, merged from two endpoints", []ep{imds(T + "/a/b"), {"imds2", []string{"eth0"}, []string{"169.254.169.254/32", "fd00:ec2::254/128"}, []string{T + "/c"}}},
			[]string{"1001 in a/b", "1001 in c", "0 in c"}},
		{"nothing", []ep{imds()}, nil},
	}
	for _, cs := range cases {
		t.Run(cs.name, func(t *testing.T) {
			apply(t, tp.Client, f, compile(t, deny, cs.eps...), LogAll)
			// One agent's probes one after another, the agents' at
			// once: a denied probe waits for its timeout.
			for who, ag := range agents {
				allowed := slices.Contains(cs.allowed, who)
				t.Run(who, func(t *testing.T) {
					t.Parallel()
					for _, dst := range []netip.Addr{imds4, imds6} {
						testnet.Expect(t, ag, dst, port, allowed)
					}
				})
			}
		})
	}

	t.Run("a watched path made later", func(t *testing.T) {
		apply(t, tp.Client, f, compile(t, deny, imds(T+"/late/x")), LogAll)
		x := testnet.SubCgroup(t, top, "late/x") // makes late, then late/x
		late := testnet.SubCgroup(t, top, "late")
		y := testnet.SubCgroup(t, top, "late/x/y")
		testnet.Expect(t, testnet.StartAgentInCgroup(t, tp.Client, 1001, x), imds4, port, true)
		testnet.Expect(t, testnet.StartAgentInCgroup(t, tp.Client, 1001, y), imds4, port, true)
		testnet.Expect(t, testnet.StartAgentInCgroup(t, tp.Client, 1001, late), imds4, port, false)
	})
	if p := f.CgroupProblem(); p != "" {
		t.Errorf("cgroup problem: %s", p)
	}
}

// TestCgroupRestartRace is a service restart, 20 times over, with nothing
// in user space watching: the cgroup is removed and made again (a new id),
// and a new process in it sends its first and only datagram at once, while
// a process of the same uid in a cgroup that is not allowed sends too. The
// cgroup_mkdir tracepoint must have recorded the new cgroup before the
// process could enter it: every first datagram of the allowed one passes,
// every one of the other is dropped.
func TestCgroupRestartRace(t *testing.T) {
	tp := testnet.NewTopology(t, testnet.Options{})
	tp.ServeUDPEcho(t, port)
	top := testnet.NewCgroup(t)
	other := testnet.SubCgroup(t, top, "other")
	f := openFilter(t, tp.Client, ModeAuto)
	svc := top.Path + "/svc.service"
	apply(t, tp.Client, f, compile(t, map[string]config.Action{"eth0": config.Allow},
		ep{"imds", []string{"eth0"}, []string{"169.254.169.254/32"}, []string{"cgroup:" + svc}}), LogAll)

	const restarts = 20
	wronglyDropped, wronglyPassed := 0, 0
	var ids []uint64
	for i := range restarts {
		dir := testnet.SubCgroup(t, top, "svc.service")
		id, err := dir.ID()
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
		var wg sync.WaitGroup
		var twinErr error
		wg.Go(func() {
			twin := testnet.StartAgentInCgroup(t, tp.Client, 1001, other)
			twinErr = twin.UDP(imds4, port, testnet.DenyTimeout)
			twin.Close()
		})
		agent := testnet.StartAgentInCgroup(t, tp.Client, 1001, dir)
		if err := agent.UDP(imds4, port, netlab.Slowed(testnet.AllowTimeout)); err != nil {
			wronglyDropped++
			t.Errorf("restart %d: the service's first datagram: %v", i, err)
		}
		agent.Close()
		wg.Wait()
		if !errors.Is(twinErr, netlab.ErrTimeout) {
			wronglyPassed++
			t.Errorf("restart %d: the other cgroup's datagram: want dropped, got %v", i, twinErr)
		}
		// systemd removes a stopped unit's cgroup; it is made anew on
		// start.
		if err := os.Remove(dir.Dir()); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d restarts: %d first datagrams wrongly dropped, %d wrongly passed; cgroup ids %v", restarts, wronglyDropped, wronglyPassed, ids)
	for i := 1; i < len(ids); i++ {
		if ids[i] == ids[i-1] {
			t.Fatalf("the re-made cgroup kept its id %d: the test does not test re-creation", ids[i])
		}
	}
	// The released cgroups are forgotten: what is tracked is the test
	// tree on the way to svc.service, not 20 dead ids.
	n := 0
	var id uint64
	var v filterNtfCg
	it := f.objs.NtfCgroups.Iterate()
	for it.Next(&id, &v) {
		for _, dead := range ids {
			if id == dead {
				n++
			}
		}
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	if n > 0 {
		// Released asynchronously (a work queue), so one may linger.
		t.Logf("%d removed cgroups still tracked", n)
		if n > 2 {
			t.Errorf("%d of %d removed cgroups still tracked: cgroup_release does not forget them", n, restarts)
		}
	}
}

// TestCgroup2Mount reads the cgroup2 mount from mountinfo lines, hybrid
// layouts and escaped paths included.
func TestCgroup2Mount(t *testing.T) {
	tests := []struct {
		name, in, want, err string
	}{
		{"unified", "30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate\n", "/sys/fs/cgroup", ""},
		{"hybrid", strings.Join([]string{
			"30 23 0:26 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:4 - tmpfs tmpfs ro,mode=755",
			"31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:5 - cgroup2 cgroup2 rw,nsdelegate",
			"32 30 0:28 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:6 - cgroup cgroup rw,xattr,name=systemd",
		}, "\n"), "/sys/fs/cgroup/unified", ""},
		{"no optional fields", "31 30 0:27 / /cg rw - cgroup2 none rw\n", "/cg", ""},
		{"escaped", `31 30 0:27 / /mnt/my\040cgroups rw shared:1 - cgroup2 none rw` + "\n", "/mnt/my cgroups", ""},
		{"v1 only", "32 30 0:28 / /sys/fs/cgroup/cpu rw shared:6 - cgroup cgroup rw,cpu\n", "", "no cgroup2 filesystem is mounted"},
	}
	for _, tt := range tests {
		got, err := cgroup2MountIn(strings.NewReader(tt.in))
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%s: %q, %v; want error %q", tt.name, got, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("%s: %q, %v; want %q", tt.name, got, err, tt.want)
		}
	}
}

// The cgroup tracking outlives the process (kill -9: Close without
// Detach): the pinned tracepoint keeps recording new cgroups, a new Open
// takes the bits and nodes back from the pinned maps, a changed policy
// keeps the bit of a path it still names and gives a new path a free one,
// and what no policy names any more is forgotten, bits and watch steps.
func TestCgroupAdoptAndRelease(t *testing.T) {
	tp := testnet.NewTopology(t, testnet.Options{})
	tp.ServeTCP(t, port)
	tp.ServeUDPEcho(t, port)
	top := testnet.NewCgroup(t)
	a, b, c := testnet.SubCgroup(t, top, "a"), testnet.SubCgroup(t, top, "b"), testnet.SubCgroup(t, top, "c")
	inA := testnet.StartAgentInCgroup(t, tp.Client, 1001, a)
	inC := testnet.StartAgentInCgroup(t, tp.Client, 1001, c)
	allow := map[string]config.Action{"eth0": config.Allow}
	policyOf := func(paths ...string) ep {
		var allow []string
		for _, p := range paths {
			allow = append(allow, "cgroup:"+p)
		}
		return ep{"imds", []string{"eth0"}, []string{"169.254.169.254/32"}, allow}
	}

	dir := testPinDir()
	var f *Filter
	tp.Client.MustDo(t, func() (err error) {
		f, err = Open(Options{PinDir: dir})
		return err
	})
	apply(t, tp.Client, f, compile(t, allow, policyOf(a.Path, b.Path)), LogNone)
	before := maps.Clone(f.cg.bits)
	f.Close() // the process is gone; the pins stay

	// Nobody in user space: a cgroup made now below b is the kernel's
	// to record.
	late := testnet.SubCgroup(t, top, "b/late")
	testnet.Expect(t, testnet.StartAgentInCgroup(t, tp.Client, 1001, late), imds4, port, true)
	testnet.Expect(t, inA, imds4, port, true)
	testnet.Expect(t, inC, imds4, port, false)

	var g *Filter
	tp.Client.MustDo(t, func() (err error) {
		g, err = Open(Options{PinDir: dir})
		return err
	})
	t.Cleanup(func() { tp.Client.Do(func() error { return g.Detach() }) })
	if !maps.Equal(g.cg.bits, before) {
		t.Fatalf("adopted bits %v, want %v", g.cg.bits, before)
	}
	apply(t, tp.Client, g, compile(t, allow, policyOf(b.Path, c.Path)), LogNone)
	if g.cg.bits[b.Path] != before[b.Path] {
		t.Errorf("the bit of %s changed from %d to %d: the live policy's ranges name the old one", b.Path, before[b.Path], g.cg.bits[b.Path])
	}
	if g.cg.bits[c.Path] == g.cg.bits[b.Path] {
		t.Errorf("%s and %s share bit %d", b.Path, c.Path, g.cg.bits[b.Path])
	}
	if _, ok := g.cg.bits[a.Path]; ok {
		t.Errorf("%s still has a bit after the policy dropped it", a.Path)
	}
	testnet.Expect(t, inA, imds4, port, false)
	testnet.Expect(t, inC, imds4, port, true)
	testnet.Expect(t, testnet.StartAgentInCgroup(t, tp.Client, 1001, late), imds4, port, true)

	// No cgroup principal left: nothing watched, no bit on any cgroup.
	apply(t, tp.Client, g, compile(t, allow, ep{"imds", []string{"eth0"}, []string{"169.254.169.254/32"}, []string{"alice"}}), LogNone)
	var k filterNtfCgStep
	var v filterNtfCg
	if n := count(t, g.objs.NtfCgWatch.Iterate(), &k, &v, func() bool { return true }); n != 0 {
		t.Errorf("%d watch steps left without cgroup principals", n)
	}
	var id uint64
	if n := count(t, g.objs.NtfCgroups.Iterate(), &id, &v, func() bool { return v.Bits != 0 }); n != 0 {
		t.Errorf("%d tracked cgroups keep bits without cgroup principals", n)
	}
	testnet.Expect(t, inA, imds4, port, true) // alice's uid
}

// count counts the entries of an iteration for which match holds.
func count(t *testing.T, it *ebpf.MapIterator, k, v any, match func() bool) int {
	t.Helper()
	n := 0
	for it.Next(k, v) {
		if match() {
			n++
		}
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	return n
}

// Where the kernel cannot know a cgroup (no cgroup2 mount: a cgroup v1
// host), cgroup principals match no one and the filter says why, while the
// rest of the policy is enforced.
func TestCgroupsUnknowable(t *testing.T) {
	tp := testnet.NewTopology(t, testnet.Options{})
	tp.ServeTCP(t, port)
	tp.ServeUDPEcho(t, port)
	top := testnet.NewCgroup(t)
	a := testnet.SubCgroup(t, top, "a")
	f := openFilter(t, tp.Client, ModeAuto)
	// As on a host without cgroup2 (Cgroup2Mount's error there).
	_, f.cg.mountErr = cgroup2MountIn(strings.NewReader(""))
	f.cg.mount = ""
	apply(t, tp.Client, f, compile(t, map[string]config.Action{"eth0": config.Allow},
		ep{"imds", []string{"eth0"}, []string{"169.254.169.254/32"}, []string{"cgroup:" + a.Path, "bob"}}), LogNone)
	if p := f.CgroupProblem(); !strings.Contains(p, "no cgroup2 filesystem is mounted") {
		t.Errorf("cgroup problem %q, want it to say there is no cgroup2 mount", p)
	}
	testnet.Expect(t, testnet.StartAgentInCgroup(t, tp.Client, 1001, a), imds4, port, false)
	testnet.Expect(t, testnet.StartAgent(t, tp.Client, 1002), imds4, port, true) // bob, by uid
	// A cgroup made below it now is not known either.
	b := testnet.SubCgroup(t, top, "a/b")
	testnet.Expect(t, testnet.StartAgentInCgroup(t, tp.Client, 1001, b), imds4, port, false)
}

// More cgroups below the policy's paths than the kernel tracks: those it
// could not record match no cgroup principal (fail closed), the filter
// says so, and the tracepoint counts the new ones it had no room for.
func TestCgroupsFull(t *testing.T) {
	tp := testnet.NewTopology(t, testnet.Options{})
	tp.ServeTCP(t, port)
	tp.ServeUDPEcho(t, port)
	top := testnet.NewCgroup(t)
	var dirs []*testnet.Cgroup
	for i := range 10 {
		dirs = append(dirs, testnet.SubCgroup(t, top, fmt.Sprintf("d%d", i)))
	}
	const room = 8 // the root, top and 6 of its 10 directories
	var f *Filter
	tp.Client.MustDo(t, func() (err error) {
		f, err = Open(Options{PinDir: testPinDir(), maxCgroups: room})
		return err
	})
	t.Cleanup(func() { tp.Client.Do(func() error { return f.Detach() }) })
	apply(t, tp.Client, f, compile(t, map[string]config.Action{"eth0": config.Allow},
		ep{"imds", []string{"eth0"}, []string{"169.254.169.254/32"}, []string{"cgroup:" + top.Path}}), LogNone)
	if p := f.CgroupProblem(); !strings.Contains(p, "more cgroups at or below the policy's cgroup paths than the kernel program tracks (8)") {
		t.Errorf("cgroup problem %q", p)
	}
	var tracked, untracked *testnet.Cgroup
	for _, d := range dirs {
		id, err := d.ID()
		if err != nil {
			t.Fatal(err)
		}
		var v filterNtfCg
		if f.objs.NtfCgroups.Lookup(id, &v) == nil {
			tracked = d
		} else {
			untracked = d
		}
	}
	if tracked == nil || untracked == nil {
		t.Fatalf("with room for %d, tracked %v, untracked %v", room, tracked, untracked)
	}
	testnet.Expect(t, testnet.StartAgentInCgroup(t, tp.Client, 1001, tracked), imds4, port, true)
	testnet.Expect(t, testnet.StartAgentInCgroup(t, tp.Client, 1001, untracked), imds4, port, false)
	before, err := f.Counters()
	if err != nil {
		t.Fatal(err)
	}
	late := testnet.SubCgroup(t, top, "late")
	testnet.Expect(t, testnet.StartAgentInCgroup(t, tp.Client, 1001, late), imds4, port, false)
	after, err := f.Counters()
	if err != nil {
		t.Fatal(err)
	}
	if after.CgroupsFull != before.CgroupsFull+1 {
		t.Errorf("cgroups-full counter %d -> %d, want one more", before.CgroupsFull, after.CgroupsFull)
	}
}
