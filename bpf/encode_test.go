// SPDX-License-Identifier: Apache-2.0

package bpf

import (
	"maps"
	"net/netip"
	"slices"
	"testing"

	"github.com/nettcfilter/net-tc-filter/daemon/config"
)

// TestOwnerSetTable: thousands of lists through the table of set ids, as
// it grows, with hashes that spread and hashes that collide: an equal
// list always finds its id, a different one never does, and the table is
// never more than half full.
func TestOwnerSetTable(t *testing.T) {
	for _, tt := range []struct {
		name string
		hash func([]uint32) uint64
	}{
		{"maphash", nil},
		// Three hashes in all; the top bits (the slots' tags) equal.
		{"few hashes", func(u []uint32) uint64 { return uint64(u[0] % 3) }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newEncoder(newCounterNames(16))
			if tt.hash != nil {
				e.hash = tt.hash
			}
			n := 3000
			if tt.hash != nil {
				n = 300 // every lookup walks a third of the lists
			}
			list := func(i int) []uint32 { return []uint32{uint32(i), uint32(i * 7)} }
			ids := map[uint32]int{}
			for i := range n {
				id := e.set(list(i))
				if j, dup := ids[id]; dup {
					t.Fatalf("lists %d and %d share set %d", j, i, id)
				}
				ids[id] = i
				if 2*len(e.setList) > len(e.sets) {
					t.Fatalf("%d sets in a table of %d", len(e.setList), len(e.sets))
				}
			}
			for i := range n {
				if id := e.set(slices.Clone(list(i))); ids[id] != i {
					t.Fatalf("list %d again: set %d, which is list %d's", i, id, ids[id])
				}
			}
			if len(e.setList) != n {
				t.Errorf("%d sets for %d lists", len(e.setList), n)
			}
		})
	}
}

// TestOwnerSets: allow lists with the same uids share one owner set, what
// else they allow (everyone, cgroups) being the range's; lists with other
// uids get sets of their own, also when every list's hash collides (the
// encoder probes past a taken hash); a list without uids has none; and a
// reload keeps the ids of the sets that did not change.
func TestOwnerSets(t *testing.T) {
	eps := []ep{
		{name: "a", ifaces: []string{"lo"}, ranges: []string{"10.1.0.0/16"}, allow: []string{"uid:1", "uid:2"}},
		{name: "b", ifaces: []string{"lo"}, ranges: []string{"10.2.0.0/16"}, allow: []string{"uid:2", "cgroup:/t", "uid:1"}},
		{name: "c", ifaces: []string{"lo"}, ranges: []string{"10.3.0.0/16"}, allow: []string{"*", "uid:1", "uid:2"}},
		{name: "d", ifaces: []string{"lo"}, ranges: []string{"10.4.0.0/16"}, allow: []string{"uid:3"}},
		{name: "e", ifaces: []string{"lo"}, ranges: []string{"10.5.0.0/16"}, allow: []string{"cgroup:/t"}},
		{name: "f", ifaces: []string{"lo"}, ranges: []string{"10.6.0.0/16"}, allow: []string{"uid:1", "uid:2", "uid:3"}},
	}
	defaults := map[string]config.Action{"lo": config.Deny}
	ifaces := []Iface{{Name: "lo", Index: 1}}
	for _, tt := range []struct {
		name string
		hash func([]uint32) uint64
	}{
		{"maphash", nil},
		{"every hash collides", func([]uint32) uint64 { return 7 }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newEncoder(newCounterNames(4096))
			if tt.hash != nil {
				e.hash = tt.hash
			}
			// sets returns each endpoint's owner set, and checks the
			// owner entries: each set holds its endpoints' uids.
			sets := func(c *Contents, uidsOf map[string][]uint32) map[string]uint32 {
				t.Helper()
				out := map[string]uint32{}
				for _, r := range c.Ranges {
					for _, x := range eps {
						if keyPrefix(r.key) == netip.MustParsePrefix(x.ranges[0]) {
							out[x.name] = r.val.Owners
						}
					}
				}
				uids := map[uint32][]uint32{}
				for _, o := range c.Owners {
					uids[o.Set] = append(uids[o.Set], o.Uid)
				}
				want := map[uint32][]uint32{}
				for name, u := range uidsOf {
					want[out[name]] = u
				}
				if !maps.EqualFunc(uids, want, slices.Equal) {
					t.Errorf("owner entries %v, want %v", uids, want)
				}
				return out
			}
			first := sets(e.encode(compile(t, defaults, eps...), ifaces, 1, LogNone),
				map[string][]uint32{"a": {1, 2}, "b": {1, 2}, "c": {1, 2}, "d": {3}, "f": {1, 2, 3}})
			if first["a"] == 0 || first["b"] != first["a"] || first["c"] != first["a"] {
				t.Errorf("a, b and c allow uids 1 and 2 but have sets %d, %d, %d", first["a"], first["b"], first["c"])
			}
			if first["d"] == 0 || first["f"] == 0 || first["d"] == first["a"] || first["f"] == first["a"] || first["f"] == first["d"] {
				t.Errorf("a, d and f allow other uids but have sets %d, %d, %d", first["a"], first["d"], first["f"])
			}
			if first["e"] != 0 {
				t.Errorf("e allows no uid but has set %d", first["e"])
			}
			// d now allows what a does; f's list is unchanged.
			changed := slices.Clone(eps)
			changed[3].allow = []string{"uid:1", "uid:2"}
			changed[5].allow = []string{"uid:3", "uid:1", "uid:2"}
			second := sets(e.encode(compile(t, defaults, changed...), ifaces, 2, LogNone),
				map[string][]uint32{"a": {1, 2}, "b": {1, 2}, "c": {1, 2}, "d": {1, 2}, "f": {1, 2, 3}})
			if second["d"] != first["a"] || second["a"] != first["a"] || second["f"] != first["f"] {
				t.Errorf("after the reload: sets %v, want d to share a's %d and a and f to keep theirs (%v before)", second, first["a"], first)
			}
		})
	}
}
