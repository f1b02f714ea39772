// SPDX-License-Identifier: Apache-2.0

package netlab

import (
	"errors"
	"fmt"
	"net"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// EmptyProgram is a tc egress program that does nothing but let the packet
// go on (TC_ACT_UNSPEC, which is TCX_NEXT for tcx): what any tc filter
// costs before it reads a byte of the packet (issue 23).
type EmptyProgram struct {
	Prog *ebpf.Program
	tcx  link.Link
}

// AttachEmpty attaches an empty program to iface's egress in ns: with the
// legacy clsact qdisc and a direct-action cls_bpf filter when clsact, else
// with tcx, as the daemon attaches where the kernel has it. The clsact
// qdisc, once made, goes with the namespace.
func AttachEmpty(ns *NS, iface string, clsact bool) (*EmptyProgram, error) {
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name: "ntfb_empty",
		Type: ebpf.SchedCLS,
		Instructions: asm.Instructions{
			asm.Mov.Imm(asm.R0, -1), // TC_ACT_UNSPEC / TCX_NEXT
			asm.Return(),
		},
		License: "Apache-2.0",
	})
	if err != nil {
		return nil, fmt.Errorf("empty program: %w", err)
	}
	e := &EmptyProgram{Prog: prog}
	err = ns.Do(func() error {
		ifc, err := net.InterfaceByName(iface)
		if err != nil {
			return err
		}
		if !clsact {
			e.tcx, err = link.AttachTCX(link.TCXOptions{Interface: ifc.Index, Program: prog, Attach: ebpf.AttachTCXEgress})
			return err
		}
		qdisc := &netlink.Clsact{QdiscAttrs: netlink.QdiscAttrs{LinkIndex: ifc.Index, Handle: netlink.MakeHandle(0xffff, 0), Parent: netlink.HANDLE_CLSACT}}
		if err := netlink.QdiscAdd(qdisc); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("clsact qdisc: %w", err)
		}
		return netlink.FilterReplace(&netlink.BpfFilter{
			FilterAttrs: netlink.FilterAttrs{LinkIndex: ifc.Index, Parent: netlink.HANDLE_MIN_EGRESS, Handle: 1, Protocol: unix.ETH_P_ALL, Priority: 1},
			Fd:          prog.FD(), Name: "ntfb_empty", DirectAction: true,
		})
	})
	if err != nil {
		prog.Close()
		return nil, fmt.Errorf("attach the empty program to %s: %w", iface, err)
	}
	return e, nil
}

// Close detaches a tcx program and closes it; a cls_bpf filter stays on
// its qdisc until the namespace goes.
func (e *EmptyProgram) Close() error {
	var err error
	if e.tcx != nil {
		err = e.tcx.Close()
	}
	return errors.Join(err, e.Prog.Close())
}
