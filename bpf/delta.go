// SPDX-License-Identifier: Apache-2.0

package bpf

import "slices"

// A reload's policy is mostly the last one. Laid out whole, a million
// ranges are 48 MB of fresh memory on every reload (on a VM, a page fault
// each 4 KiB costs more than the rest of the encoding), only to be diffed
// against the last layout and dropped. So the live policy's ranges are
// encoded as a change to the last encoding's: the swap writes the change
// into the idle slot, Mirror into the other, and only then are the last
// encoding's ranges patched in place into the new ones, when no slot
// holds them any more.

// rangeOp is one change to the ranges: an entry put (inserted, or its
// value updated) or deleted.
type rangeOp struct {
	entry rangeEntry
	at    int // the index in the base of the entry updated or deleted, or that an insert goes before
	kind  opKind
}

type opKind uint8

const (
	opInsert opKind = iota
	opUpdate
	opDelete
)

// rangeDelta is a policy's ranges as a change to base's.
type rangeDelta struct {
	base *Contents
	ops  []rangeOp // sorted by key
	n    int       // the number of ranges once changed
}

// rangeSink takes the entries of a policy in key order.
type rangeSink interface {
	add(rangeEntry)
}

// rangeList lays the entries out whole.
type rangeList struct{ entries []rangeEntry }

func (l *rangeList) add(r rangeEntry) { l.entries = append(l.entries, r) }

// rangeDiffer turns the entries into a change to a base's, walking the
// base's alongside.
type rangeDiffer struct {
	base []rangeEntry
	i    int
	d    rangeDelta
}

func (d *rangeDiffer) add(r rangeEntry) {
	for d.i < len(d.base) && compareRangeKeys(d.base[d.i].key, r.key) < 0 {
		d.d.ops = append(d.d.ops, rangeOp{entry: d.base[d.i], at: d.i, kind: opDelete})
		d.i++
	}
	switch {
	case d.i < len(d.base) && d.base[d.i].key == r.key:
		if d.base[d.i].val != r.val {
			d.d.ops = append(d.d.ops, rangeOp{entry: r, at: d.i, kind: opUpdate})
		}
		d.i++
	default:
		d.d.ops = append(d.d.ops, rangeOp{entry: r, at: d.i, kind: opInsert})
	}
	d.d.n++
}

// finish deletes what is left of the base.
func (d *rangeDiffer) finish() rangeDelta {
	for ; d.i < len(d.base); d.i++ {
		d.d.ops = append(d.d.ops, rangeOp{entry: d.base[d.i], at: d.i, kind: opDelete})
	}
	return d.d
}

// changes splits a delta into what a map write needs: the keys to delete
// and the entries to put.
func (d *rangeDelta) changes() (gone []filterNtfRangeKey, keys []filterNtfRangeKey, vals []filterNtfRange) {
	for _, op := range d.ops {
		if op.kind == opDelete {
			gone = append(gone, op.entry.key)
		} else {
			keys, vals = append(keys, op.entry.key), append(vals, op.entry.val)
		}
	}
	return gone, keys, vals
}

// applied returns the base's ranges changed, in fresh memory: the base
// stays as it is.
func (d *rangeDelta) applied() []rangeEntry {
	return d.patch(make([]rangeEntry, 0, d.n), d.base.Ranges)
}

// applyInPlace changes the base's ranges into the new ones, in their own
// memory where it has room, and returns them; the base's are gone.
func (d *rangeDelta) applyInPlace() []rangeEntry {
	r := d.base.Ranges
	d.base.Ranges = nil
	if d.n > cap(r) {
		return d.patch(make([]rangeEntry, 0, d.n+d.n/16), r)
	}
	// Deletes and updates first, front to back: what is written never
	// overtakes what is still to be read. Then inserts, back to front,
	// for the same reason.
	w, from := 0, 0
	inserts := 0
	for _, op := range d.ops {
		if op.kind == opInsert {
			inserts++
			continue
		}
		w += copy(r[w:], r[from:op.at])
		from = op.at + 1
		if op.kind == opUpdate {
			r[w] = op.entry
			w++
		}
	}
	w += copy(r[w:], r[from:])
	if inserts == 0 {
		return r[:w]
	}
	// The entries now run from 0 to w; each insert's position counts the
	// base's entries before it, less those deleted before it.
	out := r[:w+inserts]
	end := w // the entries not yet moved are out[:end]
	deleted := 0
	pos := make([]int, 0, inserts) // where each insert goes among the compacted entries
	for _, op := range d.ops {
		switch op.kind {
		case opDelete:
			deleted++
		case opInsert:
			pos = append(pos, op.at-deleted)
		}
	}
	k := len(pos) - 1
	dst := len(out)
	for _, op := range slices.Backward(d.ops) {
		if op.kind != opInsert {
			continue
		}
		at := pos[k]
		k--
		// Move the entries at and after at, then put the insert before them.
		n := end - at
		copy(out[dst-n:dst], out[at:end])
		dst -= n
		end = at
		dst--
		out[dst] = op.entry
	}
	return out
}

// patch appends the base's ranges, changed, to dst.
func (d *rangeDelta) patch(dst, base []rangeEntry) []rangeEntry {
	from := 0
	for _, op := range d.ops {
		dst = append(dst, base[from:op.at]...)
		from = op.at
		switch op.kind {
		case opInsert:
			dst = append(dst, op.entry)
		case opUpdate:
			dst = append(dst, op.entry)
			from++
		case opDelete:
			from++
		}
	}
	return append(dst, base[from:]...)
}
