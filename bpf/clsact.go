// SPDX-License-Identifier: Apache-2.0

package bpf

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Our cls_bpf filter is recognised by its priority and handle; replacing it
// in place swaps the program atomically.
const (
	clsactPriority = 1
	clsactHandle   = 0x4e54 // "NT"
)

func clsactFilter(ifindex, fd int) *netlink.BpfFilter {
	return &netlink.BpfFilter{
		FilterAttrs: netlink.FilterAttrs{
			LinkIndex: ifindex,
			Parent:    netlink.HANDLE_MIN_EGRESS,
			Handle:    clsactHandle,
			Protocol:  unix.ETH_P_ALL,
			Priority:  clsactPriority,
		},
		Fd:           fd,
		Name:         filterProgNtfEgress, // what `tc filter show` calls it
		DirectAction: true,
	}
}

func (f *Filter) attachClsact(ifc Iface) error {
	qdisc := &netlink.Clsact{QdiscAttrs: netlink.QdiscAttrs{
		LinkIndex: ifc.Index,
		Handle:    netlink.MakeHandle(0xffff, 0),
		Parent:    netlink.HANDLE_CLSACT,
	}}
	switch err := netlink.QdiscAdd(qdisc); {
	case err == nil:
		// Ours: remember it, so detach removes it and only it.
		if err := f.objs.NtfClsact.Put(uint32(ifc.Index), uint8(1)); err != nil {
			return fmt.Errorf("record clsact qdisc of %s: %w", ifc.Name, err)
		}
	case errors.Is(err, unix.EEXIST):
		// Somebody's clsact qdisc (or ours from an earlier run): share it.
	default:
		return fmt.Errorf("add clsact qdisc to %s: %w", ifc.Name, err)
	}
	if err := netlink.FilterReplace(clsactFilter(ifc.Index, f.objs.NtfEgress.FD())); err != nil {
		return fmt.Errorf("attach cls_bpf filter to %s: %w", ifc.Name, err)
	}
	return nil
}

func isOurs(flt netlink.Filter) bool {
	b, ok := flt.(*netlink.BpfFilter)
	return ok && b.Handle == clsactHandle && b.Priority == clsactPriority
}

// detachClsact removes our filter and, when this program created the clsact
// qdisc and nothing else uses it, the qdisc.
func detachClsact(ifindex int, owned *ebpf.Map) error {
	err := netlink.FilterDel(clsactFilter(ifindex, 0))
	if errors.Is(err, unix.ENODEV) || errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EINVAL) {
		err = nil // interface or filter already gone
	}
	if err != nil {
		return fmt.Errorf("delete cls_bpf filter on ifindex %d: %w", ifindex, err)
	}
	return releaseQdisc(ifindex, owned)
}

func releaseQdisc(ifindex int, owned *ebpf.Map) error {
	if owned == nil {
		return nil
	}
	var one uint8
	if err := owned.Lookup(uint32(ifindex), &one); err != nil {
		return nil // not ours
	}
	owned.Delete(uint32(ifindex))
	l, err := netlink.LinkByIndex(ifindex)
	if err != nil {
		return nil // interface gone, and its qdisc with it
	}
	for _, parent := range []uint32{netlink.HANDLE_MIN_EGRESS, netlink.HANDLE_MIN_INGRESS} {
		flts, err := netlink.FilterList(l, parent)
		if err != nil {
			return fmt.Errorf("list filters of %s: %w", l.Attrs().Name, err)
		}
		if len(flts) > 0 {
			return nil // somebody else has filters on it now: leave it
		}
	}
	qdisc := &netlink.Clsact{QdiscAttrs: netlink.QdiscAttrs{
		LinkIndex: ifindex,
		Handle:    netlink.MakeHandle(0xffff, 0),
		Parent:    netlink.HANDLE_CLSACT,
	}}
	if err := netlink.QdiscDel(qdisc); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("delete clsact qdisc of %s: %w", l.Attrs().Name, err)
	}
	return nil
}

// removeClsactFilters finds our filters on every interface of the namespace
// and removes them: after a restart nothing else remembers where they are.
func removeClsactFilters(owned *ebpf.Map) error {
	links, err := netlink.LinkList()
	if err != nil {
		return fmt.Errorf("list interfaces: %w", err)
	}
	var errs []error
	for _, l := range links {
		flts, err := netlink.FilterList(l, netlink.HANDLE_MIN_EGRESS)
		if err != nil {
			continue // no clsact qdisc
		}
		for _, flt := range flts {
			if isOurs(flt) {
				if err := detachClsact(l.Attrs().Index, owned); err != nil {
					errs = append(errs, err)
				}
			}
		}
	}
	return errors.Join(errs...)
}
