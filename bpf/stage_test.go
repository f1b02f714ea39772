// SPDX-License-Identifier: Apache-2.0

package bpf

import (
	"errors"
	"fmt"
	"runtime"
	"slices"
	"testing"

	"github.com/nettcfilter/net-tc-filter/daemon/config"
	"github.com/nettcfilter/net-tc-filter/daemon/policy"
	"github.com/nettcfilter/net-tc-filter/daemon/testnet"
)

const (
	passes  = true
	dropped = false
)

// sumDiffs adds up the counts of one owner's difference of one kind.
func sumDiffs(diffs map[DiffKey]uint64, uid uint32, live, staged Action) uint64 {
	var n uint64
	for k, c := range diffs {
		if !k.Unowned && k.UID == uid && k.Live == live && k.Staged == staged {
			n += c
		}
	}
	return n
}

// TestStage stages candidates beside a live policy and sends real traffic
// as real uids: the live verdict alone decides what passes, the kernel
// counts what the candidate decides otherwise and reports it in events;
// a live reload keeps the stage, unstage ends it.
func TestStage(t *testing.T) {
	tp := testnet.NewTopology(t, testnet.Options{})
	tp.ServeTCP(t, port)
	tp.ServeUDPEcho(t, port)
	alice := testnet.StartAgent(t, tp.Client, 1001)
	bob := testnet.StartAgent(t, tp.Client, 1002)
	f := openFilter(t, tp.Client, ModeAuto)
	events := openEvents(t, f)
	allow := map[string]config.Action{"eth0": config.Allow}
	imds := []string{"169.254.169.254/32", "fd00:ec2::254/128"}
	both := compile(t, allow, ep{"imds", []string{"eth0"}, imds, []string{"alice", "bob"}})
	aliceOnly := compile(t, allow, ep{"imds-v2", []string{"eth0"}, imds, []string{"alice"}})
	ifaces := func() []Iface {
		var out []Iface
		tp.Client.MustDo(t, func() (err error) { out, err = Interfaces(); return err })
		return out
	}
	stage := func(t *testing.T, p *policy.Policy) {
		t.Helper()
		tp.Client.MustDo(t, func() error { return f.Stage(p, ifaces()) })
	}

	t.Run("candidate denies a user allowed today", func(t *testing.T) {
		apply(t, tp.Client, f, both, LogDenied)
		stage(t, aliceOnly)
		drain(events)
		testnet.Expect(t, bob, imds4, port, passes) // still passes
		testnet.Expect(t, alice, imds4, port, passes)
		diffs, err := f.StagedDiffs()
		if err != nil {
			t.Fatal(err)
		}
		if n := sumDiffs(diffs, 1002, ActionAllow, ActionDeny); n < 2 {
			t.Errorf("bob newly denied: %d packets counted, want his TCP and UDP (%v)", n, diffs)
		}
		if n := sumDiffs(diffs, 1001, ActionAllow, ActionDeny) + sumDiffs(diffs, 1001, ActionDeny, ActionAllow); n != 0 {
			t.Errorf("alice: %d differences counted, want none", n)
		}
		for k := range diffs {
			r, ok := f.StagedRule(k.StagedRule)
			if k.UID == 1002 && (!ok || r.Endpoints[0] != "imds-v2") {
				t.Errorf("staged rule %d of %+v: %+v %v, want imds-v2's", k.StagedRule, k, r, ok)
			}
		}
		got := ownEvents(t, events, 1002, imds4)
		if len(got) == 0 {
			t.Fatal("no event for bob's newly denied packets")
		}
		for _, ev := range got {
			if !ev.Allowed || !ev.Staged || ev.StagedAction != ActionDeny {
				t.Errorf("bob's event %+v, want allowed, staged deny", ev)
			}
		}
	})

	t.Run("a live reload keeps the stage", func(t *testing.T) {
		before, _ := f.StagedDiffs()
		apply(t, tp.Client, f, compile(t, allow,
			ep{"imds", []string{"eth0"}, imds, []string{"alice", "bob"}},
			ep{"other", []string{"eth0"}, []string{"192.0.2.0/24"}, []string{"alice"}}), LogDenied)
		if !f.Staged() {
			t.Fatal("the stage ended with a live reload")
		}
		testnet.Expect(t, bob, imds4, port, passes)
		after, err := f.StagedDiffs()
		if err != nil {
			t.Fatal(err)
		}
		if b, a := sumDiffs(before, 1002, ActionAllow, ActionDeny), sumDiffs(after, 1002, ActionAllow, ActionDeny); a < b+2 {
			t.Errorf("bob newly denied: %d counted before the reload, %d after it and more traffic", b, a)
		}
	})

	t.Run("unstage", func(t *testing.T) {
		totals, err := f.Unstage()
		if err != nil {
			t.Fatal(err)
		}
		if sumDiffs(totals, 1002, ActionAllow, ActionDeny) < 4 {
			t.Errorf("Unstage totals %v, want bob's newly denied packets", totals)
		}
		if f.Staged() {
			t.Error("still staged")
		}
		drain(events)
		testnet.Expect(t, bob, imds4, port, passes)
		if diffs, err := f.StagedDiffs(); err != nil || len(diffs) != 0 {
			t.Errorf("after unstage: %v %v, want nothing counted", diffs, err)
		}
		var active uint64
		if err := f.objs.NtfActive.Lookup(uint32(0), &active); err != nil || active>>stagedSlotShift != 0 {
			t.Errorf("ntf_active[0] = %#x (%v), want no staged slot", active, err)
		}
	})

	t.Run("candidate allows someone denied today", func(t *testing.T) {
		apply(t, tp.Client, f, aliceOnly, LogDenied)
		stage(t, both)
		drain(events)
		testnet.Expect(t, bob, imds4, port, dropped) // still dropped
		diffs, err := f.StagedDiffs()
		if err != nil {
			t.Fatal(err)
		}
		if n := sumDiffs(diffs, 1002, ActionDeny, ActionAllow); n < 2 {
			t.Errorf("bob newly allowed: %d packets counted (%v)", n, diffs)
		}
		for _, ev := range ownEvents(t, events, 1002, imds4) {
			if ev.Allowed || !ev.Staged || ev.StagedAction != ActionAllow {
				t.Errorf("bob's event %+v, want denied, staged allow", ev)
			}
		}
	})

	// An interface that only the candidate filters: the program goes on
	// it for the stage, every packet there passes (the live policy does
	// not filter it), and the candidate's differences are counted
	// against that pass. Unstaging takes the program off again.
	t.Run("candidate alone filters an interface", func(t *testing.T) {
		if _, err := f.Unstage(); err != nil { // the one above filters eth0
			t.Fatal(err)
		}
		loOnly := compile(t, map[string]config.Action{"lo": config.Allow})
		apply(t, tp.Client, f, loOnly, LogDenied)
		eth0 := -1
		for _, ifc := range ifaces() {
			if ifc.Name == "eth0" {
				eth0 = ifc.Index
			}
		}
		if _, ok := f.attached[eth0]; ok || eth0 < 0 {
			t.Fatalf("eth0 (index %d) attached with a live policy that filters lo alone", eth0)
		}
		stage(t, aliceOnly)
		if _, ok := f.attached[eth0]; !ok {
			t.Fatal("the candidate filters eth0, the program is not on it")
		}
		if got := attachedNames(f); !slices.Equal(got, []string{"lo/" + string(f.Mode())}) {
			t.Errorf("Attachments %v, want the live policy's lo alone", got)
		}
		drain(events)
		testnet.Expect(t, bob, imds4, port, passes)
		testnet.Expect(t, alice, imds4, port, passes)
		diffs, err := f.StagedDiffs()
		if err != nil {
			t.Fatal(err)
		}
		if n := sumDiffs(diffs, 1002, ActionAllow, ActionDeny); n < 2 {
			t.Errorf("bob newly denied on eth0: %d packets counted, want his TCP and UDP (%v)", n, diffs)
		}
		if n := sumDiffs(diffs, 1001, ActionAllow, ActionDeny); n != 0 {
			t.Errorf("alice: %d differences counted, want none", n)
		}
		evs := ownEvents(t, events, 1002, imds4)
		if len(evs) == 0 {
			t.Error("no event for bob's packets on eth0")
		}
		for _, ev := range evs {
			if !ev.Allowed || !ev.Staged || ev.StagedAction != ActionDeny || ev.Rule != 0 {
				t.Errorf("bob's event %+v, want allowed (live: unfiltered, rule 0), staged deny", ev)
			}
		}
		// A live reload keeps the program where the candidate filters.
		apply(t, tp.Client, f, loOnly, LogDenied)
		if _, ok := f.attached[eth0]; !ok {
			t.Error("a live reload took the program off eth0 while the candidate filters it")
		}
		if _, err := f.Unstage(); err != nil {
			t.Fatal(err)
		}
		if _, ok := f.attached[eth0]; ok {
			t.Error("unstaged, the program is still on eth0, which the live policy does not filter")
		}
		testnet.Expect(t, bob, imds4, port, passes)
	})

	// A flood of one difference: counted exactly, reported in events at
	// 1, 2, 4, ... per CPU only. Its sender sends nothing else: a
	// connection of bob's above may still send its last segments (a FIN
	// retransmitted once the live policy lets it out again), and those
	// would be counted too.
	t.Run("flood", func(t *testing.T) {
		const carol = 1003
		flooder := testnet.StartAgent(t, tp.Client, carol)
		all := compile(t, allow, ep{"imds", []string{"eth0"}, imds, []string{"alice", "bob", fmt.Sprintf("uid:%d", carol)}})
		apply(t, tp.Client, f, all, LogDenied)
		stage(t, aliceOnly) // counts start again
		drain(events)
		const n = 5000
		sent, err := flooder.Burst(imds4, port, n)
		if err != nil {
			t.Fatal(err)
		}
		var diffs map[DiffKey]uint64
		settled(t, func() (uint64, error) {
			var err error
			diffs, err = f.StagedDiffs()
			return sumDiffs(diffs, carol, ActionAllow, ActionDeny), err
		})
		if got := sumDiffs(diffs, carol, ActionAllow, ActionDeny); got != uint64(sent) {
			t.Errorf("%d newly denied packets counted, %d sent", got, sent)
		}
		evs := ownEvents(t, events, carol, imds4)
		t.Logf("%d packets sent, %d counted, %d events", sent, sumDiffs(diffs, carol, ActionAllow, ActionDeny), len(evs))
		// log2(5000) < 13 events per CPU for the one kind.
		if limit := 13 * runtime.NumCPU(); len(evs) == 0 || len(evs) > limit {
			t.Errorf("%d events for %d differing packets, want 1 to %d", len(evs), sent, limit)
		}
		if _, err := f.Unstage(); err != nil {
			t.Fatal(err)
		}
	})
}

// A candidate that cannot follow a live swap ends; the live policy stays
// in force and StageLost says why, once.
func TestLoseStage(t *testing.T) {
	testnet.RequireRoot(t)
	ns := testnet.NewNS(t, "s")
	f := openFilter(t, ns, ModeAuto)
	lo := []string{"lo"}
	live := compile(t, map[string]config.Action{"lo": config.Allow}, ep{"x", lo, []string{"10.0.0.0/8"}, []string{"root"}})
	apply(t, ns, f, live, LogNone)
	ns.MustDo(t, func() error {
		ifaces, err := Interfaces()
		if err != nil {
			return err
		}
		return f.Stage(live, ifaces)
	})
	why := errors.New("no room")
	f.loseStage(why)
	var active uint64
	if err := f.objs.NtfActive.Lookup(uint32(0), &active); err != nil || active != uint64(f.slot) {
		t.Errorf("ntf_active[0] = %#x (%v), want the live slot %d alone", active, err, f.slot)
	}
	if f.Staged() {
		t.Error("still staged")
	}
	if err := f.StageLost(); !errors.Is(err, why) {
		t.Errorf("StageLost() = %v, want %v", err, why)
	}
	if err := f.StageLost(); err != nil {
		t.Errorf("StageLost() again = %v, want nil", err)
	}
	apply(t, ns, f, live, LogNone) // nothing to restage
	if f.Staged() || f.StageLost() != nil {
		t.Error("a swap after the loss staged something")
	}
}
