package testnet

import (
	"strings"
	"testing"
)

// Rename renames an interface of the namespace. Before Linux 6.2 the kernel
// refuses to rename an interface that is up (EBUSY; Debian 12 runs 6.1), so
// there it does what an administrator has to: down, rename, up. Going down
// drops the interface's routes and neighbour entries; the static ones (what
// the tests configure) are put back on the renamed interface.
func (n *NS) Rename(t testing.TB, from, to string) {
	t.Helper()
	_, err := Output("ip", "-n", n.Name, "link", "set", from, "name", to)
	if err == nil {
		return
	}
	if !strings.Contains(err.Error(), "Device or resource busy") {
		t.Fatal(err)
	}
	var routes [][]string
	for _, family := range []string{"-4", "-6"} {
		for _, line := range strings.Split(n.IP(t, family, "-o", "route", "show", "dev", from), "\n") {
			f := strings.Fields(line)
			if len(f) == 0 || strings.Contains(line, "proto kernel") {
				continue // the kernel makes these again when the link is up
			}
			routes = append(routes, append([]string{family, "route", "replace"}, f...))
		}
	}
	var neighs [][]string
	for _, line := range strings.Split(n.IP(t, "neigh", "show", "dev", from, "nud", "permanent"), "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 && f[1] == "lladdr" {
			neighs = append(neighs, []string{"neigh", "replace", f[0], "lladdr", f[2], "nud", "permanent"})
		}
	}
	n.IP(t, "link", "set", from, "down")
	n.IP(t, "link", "set", from, "name", to)
	n.IP(t, "link", "set", to, "up")
	for _, args := range neighs {
		n.IP(t, append(args, "dev", to)...)
	}
	for _, args := range routes {
		n.IP(t, append(args, "dev", to)...)
	}
}
