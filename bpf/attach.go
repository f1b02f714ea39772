// SPDX-License-Identifier: Apache-2.0

package bpf

import (
	"errors"
	"fmt"
	"os"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// Attachment is a filtered interface and how the program sits on it.
type Attachment struct {
	Iface Iface
	Mode  Mode
}

type attachment struct {
	Attachment
	tcx link.Link // ModeTCX only
}

// attach puts the program on an interface, unless it is there already: by
// moving a tcx link an earlier run pinned, else as a new tcx link (pinned,
// so it outlives this process), else, on kernels without tcx, as a cls_bpf
// filter.
func (f *Filter) attach(ifc Iface) error {
	if a, ok := f.attached[ifc.Index]; ok {
		a.Iface = ifc // renamed, maybe: the program is on the device, not the name
		return nil
	}
	if l, ok := f.adopted[ifc.Index]; ok {
		delete(f.adopted, ifc.Index)
		if err := l.Update(f.objs.NtfEgress); err == nil {
			f.attached[ifc.Index] = &attachment{Attachment{ifc, ModeTCX}, l}
			f.mode = ModeTCX
			return nil
		}
		// The interface behind the link is gone (same index reused):
		// drop the dead link and attach anew.
		l.Unpin()
		l.Close()
	}
	if f.mode == ModeAuto || f.mode == ModeTCX {
		l, err := f.attachTCX(ifc)
		if err == nil {
			f.mode = ModeTCX
			f.attached[ifc.Index] = &attachment{Attachment{ifc, ModeTCX}, l}
			return nil
		}
		if f.mode == ModeTCX || !errors.Is(err, ebpf.ErrNotSupported) {
			return err
		}
		f.mode = ModeClsact // kernel before 6.6
	}
	if err := f.attachClsact(ifc); err != nil {
		return err
	}
	f.attached[ifc.Index] = &attachment{Attachment: Attachment{ifc, ModeClsact}}
	return nil
}

// attachTCX attaches the program at the head of the interface's tcx egress
// hook and pins the link.
func (f *Filter) attachTCX(ifc Iface) (link.Link, error) {
	l, err := link.AttachTCX(link.TCXOptions{
		Interface: ifc.Index,
		Program:   f.objs.NtfEgress,
		Attach:    ebpf.AttachTCXEgress,
		Anchor:    link.Head(), // judge before other programs can redirect
	})
	if err != nil {
		return nil, fmt.Errorf("attach tcx to %s: %w", ifc.Name, err)
	}
	if err := pinReplace(f.linkPin(ifc.Index), l.Pin); err != nil {
		l.Close()
		return nil, fmt.Errorf("pin link of %s: %w", ifc.Name, err)
	}
	return l, nil
}

// detach takes the program off an interface.
func (f *Filter) detach(a *attachment) error {
	delete(f.attached, a.Iface.Index)
	if a.tcx != nil {
		// The pin holds the link (and so the program on the interface)
		// as much as our descriptor does. It was renamed into place, so
		// the link does not know its path: remove it by name.
		err := os.Remove(f.linkPin(a.Iface.Index))
		if errors.Is(err, os.ErrNotExist) {
			err = nil
		}
		return errors.Join(err, a.tcx.Close())
	}
	return detachClsact(a.Iface.Index, f.objs.NtfClsact)
}

// Forget drops what attached the program to an interface that was deleted,
// so that a new device with the same index is attached to afresh.
func (f *Filter) Forget(ifindex int) {
	if a, ok := f.attached[ifindex]; ok {
		f.detach(a) // the device is gone: errors say only that
	}
	if l, ok := f.adopted[ifindex]; ok {
		delete(f.adopted, ifindex)
		l.Unpin()
		l.Close()
	}
}

// releaseAdopted drops pinned links of an earlier run that this policy does
// not filter any more, detaching them.
func (f *Filter) releaseAdopted() error {
	var errs []error
	for idx, l := range f.adopted {
		delete(f.adopted, idx)
		if err := l.Unpin(); err != nil {
			errs = append(errs, fmt.Errorf("unpin link of ifindex %d: %w", idx, err))
		}
		l.Close()
	}
	return errors.Join(errs...)
}
