// SPDX-License-Identifier: Apache-2.0

package bpf

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/cilium/ebpf"
)

// Under PinDir: every map of the program's spec and the program under their
// own names, the inner maps of the slots as slot<N>_<outer map without
// ntf_>, and the tcx links as link_<ifindex>.
const linkPrefix = "link_"

// pinnedMapNames are the maps of the spec that are pinned and adopted: all
// that the C source declares. The compiler's sections for globals (.rodata,
// .bss) are left out: they belong to one load of the program, and a new
// version's may differ.
func pinnedMapNames(spec *ebpf.CollectionSpec) []string {
	var names []string
	for name := range spec.Maps {
		if !strings.HasPrefix(name, ".") {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

// byName indexes the fields of type T of a struct bpf2go generated (s
// points to it) by their ebpf tags, which are the spec's names: the names
// are never typed twice, so a new map cannot be left out.
func byName[T any](s any) map[string]T {
	v := reflect.ValueOf(s).Elem()
	out := map[string]T{}
	for i := range v.NumField() {
		name := v.Type().Field(i).Tag.Get("ebpf")
		if x, ok := v.Field(i).Interface().(T); ok && name != "" {
			out[name] = x
		}
	}
	return out
}

// pinAll pins the program and the maps of its spec, replacing what an
// earlier run pinned.
func (f *Filter) pinAll() error {
	pins := map[string]func(string) error{}
	progs := byName[*ebpf.Program](&f.objs.filterPrograms)
	for name := range f.spec.Programs {
		p := progs[name]
		if p == nil {
			return fmt.Errorf("pin %s: the program was not loaded", name)
		}
		pins[name] = p.Pin
	}
	maps := byName[*ebpf.Map](&f.objs.filterMaps)
	for _, name := range pinnedMapNames(f.spec) {
		m := maps[name]
		if m == nil {
			return fmt.Errorf("pin %s: the map was not loaded", name)
		}
		pins[name] = m.Pin
	}
	for name, pin := range pins {
		if err := pinReplace(filepath.Join(f.opts.PinDir, name), pin); err != nil {
			return fmt.Errorf("pin %s: %w", name, err)
		}
	}
	// An older version's maps that this one does without (renamed,
	// merged) go with it: nothing adopts them, and each holds kernel
	// memory for as long as it is pinned.
	old, err := filepath.Glob(filepath.Join(f.opts.PinDir, "ntf_*"))
	if err != nil {
		return err
	}
	for _, p := range old {
		if _, ours := pins[filepath.Base(p)]; !ours {
			if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("remove an older version's pin: %w", err)
			}
		}
	}
	return nil
}

// pinSlot pins a slot's inner maps, so a restart can open them.
func (f *Filter) pinSlot(slot uint32) error {
	for _, p := range f.slotParts(&f.inner[slot]) {
		if err := pinReplace(f.slotPin(slot, p.name), (*p.inner).Pin); err != nil {
			return err
		}
	}
	return nil
}

// slotPin is where a slot's inner map of an outer map is pinned.
func (f *Filter) slotPin(slot uint32, outer string) string {
	return filepath.Join(f.opts.PinDir, fmt.Sprintf("slot%d_%s", slot, strings.TrimPrefix(outer, "ntf_")))
}

// linkPin is where the tcx link on an interface is pinned.
func (f *Filter) linkPin(idx int) string {
	return filepath.Join(f.opts.PinDir, linkPrefix+strconv.Itoa(idx))
}

// pinReplace pins beside the target and renames over it, so the path never
// stops naming a live object.
func pinReplace(path string, pin func(string) error) error {
	tmp := path + "_new" // bpffs refuses dots in names
	os.Remove(tmp)
	if err := pin(tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}
