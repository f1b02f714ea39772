// SPDX-License-Identifier: Apache-2.0

package bpf

import (
	"fmt"
	"slices"
	"testing"
)

// TestRangeDelta: a policy's ranges as a change to a base's, for random
// bases and changes (inserts, updates, deletes; at the ends, in runs, all
// or none), give back exactly the new ranges, laid out fresh or in the
// base's own memory whatever its spare room, and the map writes the change
// needs are exactly the difference.
func TestRangeDelta(t *testing.T) {
	rng := seededRand(t)
	entryAt := func(i int, val uint32) rangeEntry {
		k := filterNtfRangeKey{Prefixlen: 64, Table: uint32(i >> 16)}
		k.Addr[0], k.Addr[1] = uint8(i>>8), uint8(i)
		return rangeEntry{key: k, val: filterNtfRange{Rule: val}}
	}
	for round := range 2000 {
		// Keys from a universe; each in the base, the new ranges, or both.
		universe := 1 + rng.IntN(200)
		pIn := []float64{0, 0.1, 0.5, 0.9, 1}[rng.IntN(5)]
		pChange := []float64{0, 0.01, 0.2, 1}[rng.IntN(4)]
		var base, want []rangeEntry
		for i := range universe {
			if i%7 == 3 && rng.IntN(2) == 0 {
				i <<= 16 // another table
			}
			inBase, inNew := rng.Float64() < pIn, rng.Float64() < pIn
			if rng.Float64() >= pChange { // mostly unchanged
				inNew = inBase
			}
			v := uint32(rng.IntN(3))
			if inBase {
				base = append(base, entryAt(i, v))
			}
			if inNew {
				if inBase && rng.Float64() < pChange {
					v++
				}
				want = append(want, entryAt(i, v))
			}
		}
		slices.SortFunc(base, func(a, b rangeEntry) int { return compareRangeKeys(a.key, b.key) })
		slices.SortFunc(want, func(a, b rangeEntry) int { return compareRangeKeys(a.key, b.key) })
		name := fmt.Sprintf("round %d (%d → %d ranges)", round, len(base), len(want))

		d := &differ[rangeEntry]{base: base, compare: compareRanges}
		for _, r := range want {
			d.add(r)
		}
		delta := d.finish()
		if delta.n != len(want) {
			t.Fatalf("%s: n = %d", name, delta.n)
		}
		// The writes are the difference: every key gone is deleted, every
		// new or changed entry put, nothing else.
		goneEntries, put := delta.writes()
		wantGone, wantPut := 0, 0
		old := map[filterNtfRangeKey]filterNtfRange{}
		for _, r := range base {
			old[r.key] = r.val
		}
		now := map[filterNtfRangeKey]bool{}
		for _, r := range want {
			now[r.key] = true
			if v, ok := old[r.key]; !ok || v != r.val {
				wantPut++
			}
		}
		for _, r := range base {
			if !now[r.key] {
				wantGone++
			}
		}
		if len(goneEntries) != wantGone || len(put) != wantPut {
			t.Fatalf("%s: %d deletes and %d puts, want %d and %d", name, len(goneEntries), len(put), wantGone, wantPut)
		}
		for _, r := range goneEntries {
			if now[r.key] {
				t.Fatalf("%s: deletes %+v, which stays", name, r.key)
			}
		}

		kept := slices.Clone(base)
		if got := delta.applied(base); !slices.Equal(got, want) {
			t.Fatalf("%s: applied\n%v\nwant\n%v", name, got, want)
		}
		if !slices.Equal(base, kept) {
			t.Fatalf("%s: applied() changed the base", name)
		}
		// In place, with no room to spare, some, or plenty.
		spare := []int{0, rng.IntN(4), len(want)}[rng.IntN(3)]
		own := make([]rangeEntry, len(base), len(base)+spare)
		copy(own, base)
		got := delta.applyInPlace(own)
		if !slices.Equal(got, want) {
			t.Fatalf("%s, %d spare: in place\n%v\nwant\n%v", name, spare, got, want)
		}
		if len(want) <= cap(own) && len(want) > 0 && &got[0] != &own[:1][0] {
			t.Fatalf("%s: laid out in fresh memory though the base had room", name)
		}
	}
}
