// SPDX-License-Identifier: Apache-2.0

package netlab

import (
	"strings"
)

// Rename renames an interface of the namespace. Before Linux 6.2 the kernel
// refuses to rename an interface that is up (EBUSY; Debian 12 runs 6.1), so
// there it does what an administrator has to: down, rename, up. Going down
// drops the interface's routes and neighbour entries; the static ones (what
// the labs configure) are put back on the renamed interface.
func (n *NS) Rename(from, to string) error {
	_, err := n.IP("link", "set", from, "name", to)
	if err == nil || !strings.Contains(err.Error(), "Device or resource busy") {
		return err
	}
	var routes [][]string
	for _, family := range []string{"-4", "-6"} {
		out, err := n.IP(family, "-o", "route", "show", "dev", from)
		if err != nil {
			return err
		}
		for _, line := range strings.Split(out, "\n") {
			f := strings.Fields(line)
			if len(f) == 0 || strings.Contains(line, "proto kernel") {
				continue // the kernel makes these again when the link is up
			}
			routes = append(routes, append([]string{family, "route", "replace"}, f...))
		}
	}
	out, err := n.IP("neigh", "show", "dev", from, "nud", "permanent")
	if err != nil {
		return err
	}
	var neighs [][]string
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 && f[1] == "lladdr" {
			neighs = append(neighs, []string{"neigh", "replace", f[0], "lladdr", f[2], "nud", "permanent"})
		}
	}
	steps := []ipStep{
		step(n, "link", "set", from, "down"),
		step(n, "link", "set", from, "name", to),
		step(n, "link", "set", to, "up"),
	}
	for _, args := range neighs {
		steps = append(steps, step(n, append(args, "dev", to)...))
	}
	for _, args := range routes {
		steps = append(steps, step(n, append(args, "dev", to)...))
	}
	return ipSteps(steps...)
}
