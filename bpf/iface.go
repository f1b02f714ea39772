// SPDX-License-Identifier: Apache-2.0

package bpf

import (
	"fmt"

	"github.com/vishvananda/netlink"
)

// Interfaces lists the interfaces of the current network namespace.
func Interfaces() ([]Iface, error) {
	links, err := netlink.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list interfaces: %w", err)
	}
	out := make([]Iface, 0, len(links))
	for _, l := range links {
		out = append(out, IfaceOf(l))
	}
	return out, nil
}

// IfaceOf describes a netlink link. Only Ethernet-like and loopback devices
// put a link-layer header in front of the packet at tc egress.
func IfaceOf(l netlink.Link) Iface {
	a := l.Attrs()
	switch a.EncapType {
	case "ether", "loopback":
		return Iface{Name: a.Name, Index: a.Index}
	}
	return Iface{Name: a.Name, Index: a.Index, L3: true}
}
