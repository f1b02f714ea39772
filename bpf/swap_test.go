// SPDX-License-Identifier: Apache-2.0

package bpf

import (
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/nettcfilter/net-tc-filter/daemon/config"
	"github.com/nettcfilter/net-tc-filter/daemon/policy"
	"github.com/nettcfilter/net-tc-filter/daemon/testnet"
)

// TestSwapInPlace edits a policy step by step, as reloads after small
// changes do, and checks after every swap that the live slot, written in
// place with only the difference, holds exactly the policy: the same
// entries as a fresh encoding, rule ids that name their range and
// endpoints, and longest-prefix answers equal to Decide().
func TestSwapInPlace(t *testing.T) {
	testnet.RequireRoot(t)
	rng := seededRand(t)
	ns := testnet.NewNS(t, "w")
	f := openFilter(t, ns, ModeAuto)
	defaults := map[string]config.Action{"lo": config.Deny}
	who := []string{"uid:0", "uid:1001", "uid:1002", "*", "unowned", "group:imds"}

	var eps []ep
	for i := range 30 {
		e := ep{name: fmt.Sprintf("e%02d", i), ifaces: []string{"lo"}, allow: []string{who[rng.IntN(len(who))]}}
		for range 1 + rng.IntN(6) {
			e.ranges = append(e.ranges, randomRange(rng))
		}
		eps = append(eps, e)
	}
	// After a start, Mirror gives the idle slot the live policy: from the
	// first reload on, every swap writes in place.
	apply(t, ns, f, compile(t, defaults, eps...), LogNone)
	if err := f.Mirror(); err != nil {
		t.Fatal(err)
	}
	inPlace, changes := 0, 0
	for step := range 40 {
		switch step % 4 {
		case 0: // a range more
			e := &eps[rng.IntN(len(eps))]
			e.ranges = append(slices.Clip(e.ranges), randomRange(rng))
		case 1: // a range less
			e := &eps[rng.IntN(len(eps))]
			if len(e.ranges) > 1 {
				i := rng.IntN(len(e.ranges))
				e.ranges = slices.Delete(slices.Clone(e.ranges), i, i+1)
			}
		case 2: // other principals
			eps[rng.IntN(len(eps))].allow = []string{who[rng.IntN(len(who))], who[rng.IntN(len(who))]}
		case 3: // another endpoint naming a range of an existing one
			src := eps[rng.IntN(len(eps))]
			eps = append(eps, ep{name: fmt.Sprintf("x%02d", step), ifaces: []string{"lo"},
				ranges: src.ranges[:1], allow: []string{who[rng.IntN(len(who))]}})
		}
		p := compile(t, defaults, eps...)
		before := f.inner[1-f.slot].ranges
		gen := apply(t, ns, f, p, LogNone)
		if f.inner[f.slot].ranges == before {
			inPlace++
		}
		// Encoded as a change to the last policy (Apply mirrors it first
		// when the daemon has not), until Mirror lays it out.
		if f.contents[f.slot].delta != nil {
			changes++
		}
		checkSlot(t, f, f.slot, p, gen, rng)
		// Every other step, as the daemon after each swap: Mirror
		// writes the difference into the idle slot, in place, and
		// both slots then hold the live policy (one copy of it here);
		// the next swap diffs against it.
		if step%2 == 1 {
			idle := 1 - f.slot
			before := f.inner[idle].ranges
			if err := f.Mirror(); err != nil {
				t.Fatal(err)
			}
			if f.inner[idle].ranges != before {
				t.Errorf("step %d: Mirror replaced the idle slot's maps instead of writing the difference", step)
			}
			if f.contents[idle] != f.contents[f.slot] {
				t.Fatalf("step %d: after Mirror the slots hold different contents", step)
			}
			checkSlot(t, f, idle, p, gen, rng)
		}
	}
	if inPlace != 40 || changes != 40 {
		t.Errorf("%d of 40 swaps wrote the idle slot in place, %d were encoded as a change", inPlace, changes)
	}
}

// TestSwapChangeOutgrowsMaps: a change that no longer fits the slots' maps
// (which are sized for twice the policy they were made for) is written
// into new maps whole, in both slots, and the policy is what Decide says
// at every step; then changes go back to being written in place.
func TestSwapChangeOutgrowsMaps(t *testing.T) {
	testnet.RequireRoot(t)
	rng := seededRand(t)
	ns := testnet.NewNS(t, "g")
	f := openFilter(t, ns, ModeAuto)
	defaults := map[string]config.Action{"lo": config.Deny}
	eps := []ep{{name: "a", ifaces: []string{"lo"}, ranges: []string{"10.0.0.0/24"}, allow: []string{"uid:1001"}}}
	p := compile(t, defaults, eps...)
	apply(t, ns, f, p, LogNone)
	if err := f.Mirror(); err != nil {
		t.Fatal(err)
	}
	for step, more := range []int{3000, 1, 0} {
		var ranges []string
		for i := range more {
			ranges = append(ranges, fmt.Sprintf("10.%d.%d.0/24", 1+i/256, i%256))
		}
		eps = append(eps, ep{name: fmt.Sprintf("s%d", step), ifaces: []string{"lo"}, ranges: append(ranges, fmt.Sprintf("192.0.2.%d/32", step)), allow: []string{"uid:1002"}})
		p := compile(t, defaults, eps...)
		before := f.inner[1-f.slot].ranges
		gen := apply(t, ns, f, p, LogNone)
		if f.contents[f.slot].delta == nil {
			t.Errorf("step %d: not encoded as a change", step)
		}
		if grown := f.inner[f.slot].ranges != before; grown != (step == 0) {
			t.Errorf("step %d: new maps %t, want %t", step, grown, step == 0)
		}
		checkSlot(t, f, f.slot, p, gen, rng)
		idle := 1 - f.slot
		if err := f.Mirror(); err != nil {
			t.Fatal(err)
		}
		if f.contents[idle] != f.contents[f.slot] || f.contents[f.slot].delta != nil || f.contents[f.slot].Ranges == nil {
			t.Fatalf("step %d: after Mirror the slots do not hold one laid-out policy", step)
		}
		checkSlot(t, f, idle, p, gen, rng)
		checkSlot(t, f, f.slot, p, gen, rng)
	}
}

func randomRange(rng *rand.Rand) string {
	if rng.IntN(2) == 0 {
		return jitter(rng, bases4[rng.IntN(len(bases4))], 8+rng.IntN(25)).String()
	}
	return jitter(rng, bases6[rng.IntN(len(bases6))], 16+rng.IntN(113)).String()
}

// checkSlot compares a slot's maps with the policy.
func checkSlot(t *testing.T, f *Filter, slot uint32, p *policy.Policy, gen uint32, rng *rand.Rand) {
	t.Helper()
	sm := f.inner[slot]
	want := newEncoder(newCounterNames(4096)).encode(p, []Iface{{Name: "lo", Index: 1}}, gen, LogNone)

	ranges := dump[filterNtfRangeKey, filterNtfRange](t, sm.ranges)
	held := map[filterNtfRangeKey]filterNtfRange{}
	for _, r := range f.contents[slot].entries() {
		held[r.key] = r.val
	}
	if !maps.Equal(held, ranges) {
		for k, v := range held {
			if kv, ok := ranges[k]; !ok || kv != v {
				t.Logf("missing/different in kernel: %s %+v (kernel %+v)", keyPrefix(k), v, kv)
			}
		}
		for k, v := range ranges {
			if _, ok := held[k]; !ok {
				t.Logf("extra in kernel: %s %+v", keyPrefix(k), v)
			}
		}
		t.Fatalf("generation %d: the kernel's ranges differ from what the slot should hold", gen)
	}
	if len(ranges) != len(want.Ranges) {
		t.Fatalf("generation %d: %d ranges in the kernel, want %d", gen, len(ranges), len(want.Ranges))
	}
	tbl, _ := p.Table("lo")
	byPrefix := map[netip.Prefix]policy.Entry{}
	for _, e := range tbl.Entries {
		byPrefix[e.Prefix] = e
	}
	for k, v := range ranges {
		pfx := keyPrefix(k)
		ent, ok := byPrefix[pfx]
		if !ok {
			t.Fatalf("generation %d: kernel range %s is not in the policy", gen, pfx)
		}
		r, ok := f.Rule(gen, v.Rule)
		if !ok || r.Range != pfx || !slices.Equal(r.Endpoints, ent.Endpoints) {
			t.Fatalf("generation %d: %s has rule %d = %+v, want %s %v", gen, pfx, v.Rule, r, pfx, ent.Endpoints)
		}
	}
	owners := dump[filterNtfOwnerKey, uint8](t, sm.owners)
	if len(owners) != len(want.Owners) {
		t.Fatalf("generation %d: %d owner entries in the kernel, want %d", gen, len(owners), len(want.Owners))
	}
	members := f.contents[slot].owners()
	for _, o := range members {
		if owners[o] != 1 {
			t.Fatalf("generation %d: owner %+v is not in the kernel", gen, o)
		}
	}
	if len(members) != len(owners) {
		t.Fatalf("generation %d: %d owner entries in the kernel, the slot should hold %d", gen, len(owners), len(members))
	}
	// Longest-prefix lookups from user space against Decide().
	for range 300 {
		dst := randomDestinationOf(rng, tbl)
		for _, o := range []policy.Owner{{UID: 0}, {UID: 1001}, {UID: 1002}, {UID: 1003}, {Unowned: true}} {
			d := p.Decide("lo", o, dst)
			var got bool
			var v filterNtfRange
			err := sm.ranges.Lookup(rangeKey(f.contents[slot].Ifaces[1].Table, netip.PrefixFrom(dst.Unmap(), dst.Unmap().BitLen())), &v)
			switch {
			case errors.Is(err, ebpf.ErrKeyNotExist):
				got = false // lo's default is deny
			case err != nil:
				t.Fatal(err)
			case o.Unowned:
				got = v.Flags&uint32(filterNtfRangeFlagsNTF_RANGE_UNOWNED) != 0
			case v.Flags&uint32(filterNtfRangeFlagsNTF_RANGE_EVERYONE) != 0:
				got = true
			default:
				var one uint8
				got = sm.owners.Lookup(filterNtfOwnerKey{Set: v.Owners, Uid: o.UID}, &one) == nil
			}
			if got != d.Allowed {
				t.Fatalf("generation %d: %s -> %s: kernel maps say %t, Decide %t (%s)", gen, o, dst, got, d.Allowed, d.Reason)
			}
		}
	}
}

func dump[K comparable, V any](t *testing.T, m *ebpf.Map) map[K]V {
	t.Helper()
	out := map[K]V{}
	var k K
	var v V
	it := m.Iterate()
	for it.Next(&k, &v) {
		out[k] = v
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func keyPrefix(k filterNtfRangeKey) netip.Prefix {
	bits := int(k.Prefixlen) - 32
	if k.Table%2 == 0 {
		return netip.PrefixFrom(netip.AddrFrom4([4]byte(k.Addr[:4])), bits)
	}
	return netip.PrefixFrom(netip.AddrFrom16(k.Addr), bits)
}

// randomDestinationOf picks an address inside a random range of the table,
// or anywhere near the bases.
func randomDestinationOf(rng *rand.Rand, t policy.Table) netip.Addr {
	var prefixes []netip.Prefix
	for _, e := range t.Entries {
		prefixes = append(prefixes, e.Prefix)
	}
	return randomDestination(rng, prefixes)
}
