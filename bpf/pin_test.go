// SPDX-License-Identifier: Apache-2.0

package bpf

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"

	"github.com/nettcfilter/net-tc-filter/daemon/config"
	"github.com/nettcfilter/net-tc-filter/daemon/policy"
	"github.com/nettcfilter/net-tc-filter/daemon/testnet"
)

// A filter whose process went away (Close without Detach, as after kill -9)
// keeps enforcing; a new Open adopts the pins in both attach modes: the
// generation goes on, and a new policy replaces the old one in place, with
// one program on the interface, not two.
func TestAdoptPinned(t *testing.T) {
	eachMode(t, func(t *testing.T, mode Mode) {
		tp := testnet.NewTopology(t, testnet.Options{})
		tp.ServeTCP(t, port)
		tp.ServeUDPEcho(t, port)
		alice := testnet.StartAgent(t, tp.Client, 1001)
		bob := testnet.StartAgent(t, tp.Client, 1002)
		allow := map[string]config.Action{"eth0": config.Allow}
		onlyAlice := compile(t, allow, ep{"imds", []string{"eth0"}, []string{"169.254.169.254/32"}, []string{"alice"}})
		onlyBob := compile(t, allow, ep{"imds", []string{"eth0"}, []string{"169.254.169.254/32"}, []string{"bob"}})

		dir := testPinDir()
		var f *Filter
		tp.Client.MustDo(t, func() (err error) {
			f, err = Open(Options{PinDir: dir, Mode: mode})
			return err
		})
		gen := apply(t, tp.Client, f, onlyAlice, LogNone)
		f.Close() // the process is gone; the pins stay

		testnet.Expect(t, bob, imds4, port, false)
		testnet.Expect(t, alice, imds4, port, true)

		var g *Filter
		tp.Client.MustDo(t, func() (err error) {
			g, err = Open(Options{PinDir: dir, Mode: mode})
			return err
		})
		t.Cleanup(func() { tp.Client.Do(func() error { return g.Detach() }) })
		if g.Generation() != gen {
			t.Errorf("adopted generation %d, want %d", g.Generation(), gen)
		}
		// Adopted but not applied yet: the old policy still holds.
		testnet.Expect(t, bob, imds4, port, false)
		if got := apply(t, tp.Client, g, onlyBob, LogNone); got != gen+1 {
			t.Errorf("generation after adoption %d, want %d", got, gen+1)
		}
		testnet.Expect(t, bob, imds4, port, true)
		testnet.Expect(t, alice, imds4, port, false)
		if n := programsOnEth0(t, tp.Client, mode); n != 1 {
			t.Errorf("%d programs on eth0 after adoption, want 1", n)
		}
	})
}

// Pins an older, incompatible version left behind (other map layouts, its
// own program on the interface: a pinned tcx link, or our cls_bpf filter in
// clsact mode) are replaced: the new program takes the attachment over in
// place, and its maps take the pins' names.
func TestReplaceStalePins(t *testing.T) {
	eachMode(t, testReplaceStalePins)
}

func testReplaceStalePins(t *testing.T, mode Mode) {
	tp := testnet.NewTopology(t, testnet.Options{})
	tp.ServeTCP(t, port)
	tp.ServeUDPEcho(t, port)
	alice := testnet.StartAgent(t, tp.Client, 1001)
	bob := testnet.StartAgent(t, tp.Client, 1002)
	dir := testPinDir()

	// The "old version": a map named like ours with another layout, and a
	// pass-everything program on eth0.
	idx := tp.Client.Index(t, "eth0")
	tp.Client.MustDo(t, func() error {
		if err := ensurePinDir(dir); err != nil {
			return err
		}
		old, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: 3})
		if err != nil {
			return err
		}
		defer old.Close()
		if err := old.Pin(filepath.Join(dir, filterMapNtfActive)); err != nil {
			return err
		}
		// And a map this version does without (the counters before
		// ntf_traffic), under a name of its own.
		if err := old.Pin(filepath.Join(dir, "ntf_iface_counters")); err != nil {
			return err
		}
		prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
			Type: ebpf.SchedCLS, License: "GPL",
			Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, -1), asm.Return()},
		})
		if err != nil {
			return err
		}
		defer prog.Close()
		if mode == ModeClsact {
			// What an older version's clsact mode leaves: its
			// filter (our handle and priority) on a clsact qdisc.
			qdisc := &netlink.Clsact{QdiscAttrs: netlink.QdiscAttrs{
				LinkIndex: idx, Handle: netlink.MakeHandle(0xffff, 0), Parent: netlink.HANDLE_CLSACT,
			}}
			if err := netlink.QdiscAdd(qdisc); err != nil {
				return err
			}
			return netlink.FilterAdd(clsactFilter(idx, prog.FD()))
		}
		l, err := link.AttachTCX(link.TCXOptions{Interface: idx, Program: prog, Attach: ebpf.AttachTCXEgress})
		if err != nil {
			return err
		}
		defer l.Close()
		return l.Pin(filepath.Join(dir, linkPrefix+strconv.Itoa(idx)))
	})
	testnet.Expect(t, bob, imds4, port, true)

	// The daemon's default, auto, takes a pinned tcx link over; an old
	// cls_bpf filter is replaced by clsact mode (auto's choice before 6.6).
	openMode := ModeAuto
	if mode == ModeClsact {
		openMode = ModeClsact
	}
	var f *Filter
	tp.Client.MustDo(t, func() (err error) {
		f, err = Open(Options{PinDir: dir, Mode: openMode})
		return err
	})
	t.Cleanup(func() { tp.Client.Do(func() error { return f.Detach() }) })
	if f.Generation() != 0 {
		t.Errorf("incompatible pins adopted: generation %d", f.Generation())
	}
	p := compile(t, map[string]config.Action{"eth0": config.Allow},
		ep{"imds", []string{"eth0"}, []string{"169.254.169.254/32"}, []string{"alice"}})
	apply(t, tp.Client, f, p, LogNone)
	testnet.Expect(t, bob, imds4, port, false)
	testnet.Expect(t, alice, imds4, port, true)
	if n := programsOnEth0(t, tp.Client, mode); n != 1 {
		t.Errorf("%d programs on eth0, want 1: the old %s attachment was not taken over", n, mode)
	}
	pinned, err := ebpf.LoadPinnedMap(filepath.Join(dir, filterMapNtfActive), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer pinned.Close()
	if err := f.spec.Maps[filterMapNtfActive].Compatible(pinned); err != nil {
		t.Errorf("the stale map is still pinned: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "ntf_iface_counters")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("an older version's map is still pinned: %v", err)
	}
}

// programsOnEth0 counts the programs on eth0's egress hook for a mode.
func programsOnEth0(t *testing.T, ns *testnet.NS, mode Mode) int {
	t.Helper()
	idx := ns.Index(t, "eth0")
	n := 0
	ns.MustDo(t, func() (err error) {
		if mode == ModeClsact {
			n, err = clsactFilterCount(idx)
			return err
		}
		res, err := link.QueryPrograms(link.QueryOptions{Target: idx, Attach: ebpf.AttachTCXEgress})
		if err != nil {
			return err
		}
		n = len(res.Programs)
		return nil
	})
	return n
}

func clsactFilterCount(ifindex int) (int, error) {
	l, err := netlink.LinkByIndex(ifindex)
	if err != nil {
		return 0, err
	}
	flts, err := netlink.FilterList(l, netlink.HANDLE_MIN_EGRESS)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, f := range flts {
		if _, ok := f.(*netlink.BpfFilter); ok {
			n++
		}
	}
	return n, nil
}

// An interface the policy stops filtering loses the program for real (the
// pinned link too), and can be filtered again later.
func TestDetachInterface(t *testing.T) {
	eachMode(t, func(t *testing.T, mode Mode) {
		tp := testnet.NewTopology(t, testnet.Options{})
		f := openFilter(t, tp.Client, mode)
		on := compile(t, nil, ep{"imds", []string{"eth0"}, []string{"169.254.169.254/32"}, []string{"alice"}})
		off := compile(t, nil, ep{"imds", []string{"eth9"}, []string{"169.254.169.254/32"}, []string{"alice"}})
		for i, p := range []struct {
			p    *policy.Policy
			want int
		}{{on, 1}, {off, 0}, {on, 1}} {
			apply(t, tp.Client, f, p.p, LogNone)
			if n := programsOnEth0(t, tp.Client, mode); n != p.want {
				t.Errorf("step %d: %d programs on eth0, want %d", i, n, p.want)
			}
		}
	})
}

// Every map and the program of the spec are pinned once a policy is live,
// and a new Open adopts every map: the pinned kernel objects, not new ones.
// Every map-in-map of the spec is a part of the slots, whose inner maps are
// pinned too. The spec is the list, so a map added to the C source is
// pinned and adopted without a change here.
func TestPinnedMaps(t *testing.T) {
	ns := testnet.NewNS(t, "pin")
	dir := testPinDir()
	t.Cleanup(func() { removePinDir(dir) })
	var f *Filter
	ns.MustDo(t, func() (err error) {
		f, err = Open(Options{PinDir: dir})
		return err
	})
	p := compile(t, map[string]config.Action{"lo": config.Allow},
		ep{"imds", []string{"lo"}, []string{"169.254.169.254/32"}, []string{"alice"}})
	apply(t, ns, f, p, LogNone)

	parts := map[string]bool{}
	for _, sp := range f.slotParts(&f.inner[f.slot]) {
		parts[sp.name] = true
	}
	ids := map[string]ebpf.MapID{}
	for name, ms := range f.spec.Maps {
		if strings.HasPrefix(name, ".") {
			continue // the compiler's sections for globals: one load's own
		}
		id, err := pinnedMapID(filepath.Join(dir, name))
		if err != nil {
			t.Errorf("map %s of the spec is not pinned: %v", name, err)
			continue
		}
		ids[name] = id
		if ms.InnerMap == nil {
			continue
		}
		if !parts[name] {
			t.Errorf("map-in-map %s of the spec is not a part of the slots", name)
		} else if _, err := os.Stat(f.slotPin(f.slot, name)); err != nil {
			t.Errorf("the live slot's inner map of %s is not pinned: %v", name, err)
		}
	}
	for name := range f.spec.Programs {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Errorf("program %s of the spec is not pinned: %v", name, err)
		}
	}
	f.Close()

	var g *Filter
	ns.MustDo(t, func() (err error) {
		g, err = Open(Options{PinDir: dir})
		return err
	})
	t.Cleanup(func() { ns.Do(func() error { return g.Detach() }) })
	if g.fresh {
		t.Error("the pins were not adopted")
	}
	loaded := byName[*ebpf.Map](&g.objs.filterMaps)
	for name, want := range ids {
		m := loaded[name]
		if m == nil {
			t.Errorf("map %s of the spec was not loaded", name)
			continue
		}
		info, err := m.Info()
		if err != nil {
			t.Fatal(err)
		}
		if id, _ := info.ID(); id != want {
			t.Errorf("map %s is a new map (id %d), not the pinned one (id %d)", name, id, want)
		}
	}
}

func pinnedMapID(path string) (ebpf.MapID, error) {
	m, err := ebpf.LoadPinnedMap(path, nil)
	if err != nil {
		return 0, err
	}
	defer m.Close()
	info, err := m.Info()
	if err != nil {
		return 0, err
	}
	id, _ := info.ID()
	return id, nil
}
