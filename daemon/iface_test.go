// SPDX-License-Identifier: Apache-2.0

package daemon

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nettcfilter/net-tc-filter/daemon/testnet"
)

// hotplug adds a veth "name" from the client to the server carrying the
// test's VLAN net (unused otherwise here) and routes hp4 through it.
func hotplug(t *testing.T, tp *testnet.Topology, name string) {
	t.Helper()
	hotplugIndex(t, tp, name, "")
}

// hotplugIndex is hotplug with a chosen ifindex ("": the kernel's choice).
func hotplugIndex(t *testing.T, tp *testnet.Topology, name, index string) {
	t.Helper()
	c, s := tp.Client, tp.Server
	args := []string{"link", "add", name}
	if index != "" {
		args = append(args, "index", index)
	}
	c.IP(t, append(args, "address", "02:00:00:00:02:01", "type", "veth",
		"peer", "name", "hp-peer", "netns", s.Name, "address", "02:00:00:00:02:02")...)
	c.IP(t, "addr", "add", "198.18.2.1/30", "dev", name)
	c.IP(t, "link", "set", name, "up")
	c.IP(t, "neigh", "replace", "198.18.2.2", "lladdr", "02:00:00:00:02:02", "dev", name, "nud", "permanent")
	c.IP(t, "route", "replace", hp4.String()+"/32", "via", "198.18.2.2", "dev", name)
	s.IP(t, "addr", "add", "198.18.2.2/30", "dev", "hp-peer")
	s.IP(t, "link", "set", "hp-peer", "up")
	s.IP(t, "route", "replace", "198.18.2.0/30", "dev", "hp-peer", "table", "local")
	s.IP(t, "neigh", "replace", "198.18.2.1", "lladdr", "02:00:00:00:02:01", "dev", "hp-peer", "nud", "permanent")
}

var hp4 = netip.MustParseAddr("192.0.2.99")

// ifacesOf lists the interfaces a STATUS= line names.
func ifacesOf(status string) []string {
	_, rest, _ := strings.Cut(status, " on ")
	list, _, _ := strings.Cut(rest, ";")
	return strings.Split(list, ", ")
}

// waitStatus waits for a STATUS= line that satisfies ok.
func waitStatus(t *testing.T, d *testnet.Daemon, what string, ok func(string) bool) string {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case msg := <-d.Notify.C:
			if s := statusOf(msg); s != "" && ok(s) {
				return s
			}
		case <-deadline:
			t.Fatalf("no STATUS= with %s within 10s", what)
		}
	}
}

// Interfaces are followed as they come and go: a glob picks up an
// interface created after the start at once; a rename out of the glob
// releases it, back into it filters it again; deleted and re-created (a new
// ifindex) it is filtered again.
func TestInterfacesFollowed(t *testing.T) {
	testnet.RequireRoot(t)
	b := newBed(t, `endpoints:
  - protected:
      iface: ["hp*", eth0]
      range: [192.0.2.99/32]
      allow: [uid:1001]
interfaces:
  eth0: {default: allow}
  "hp*": {default: allow}
`)
	d := b.start(t, testnet.DaemonOptions{})
	if got := ifacesOf(statusOf(d.Ready)); !slices.Equal(got, []string{"eth0"}) {
		t.Errorf("filtered at start: %q", got)
	}
	filtering := func(names ...string) func(string) bool {
		return func(s string) bool { return slices.Equal(ifacesOf(s), names) }
	}

	hotplug(t, b.tp, "hp0")
	waitStatus(t, d, "eth0, hp0", filtering("eth0", "hp0"))
	testnet.Expect(t, b.bob, hp4, port, denied)
	testnet.Expect(t, b.alice, hp4, port, allowed)

	b.tp.Client.Rename(t, "hp0", "xx0")
	waitStatus(t, d, "eth0 only", filtering("eth0"))
	testnet.Expect(t, b.bob, hp4, port, allowed)

	b.tp.Client.Rename(t, "xx0", "hp1")
	waitStatus(t, d, "eth0, hp1", filtering("eth0", "hp1"))
	testnet.Expect(t, b.bob, hp4, port, denied)

	b.tp.Client.IP(t, "link", "del", "hp1")
	waitStatus(t, d, "hp1 gone", filtering("eth0"))
	hotplug(t, b.tp, "hp1")
	waitStatus(t, d, "hp1 back", filtering("eth0", "hp1"))
	testnet.Expect(t, b.bob, hp4, port, denied)
	testnet.Expect(t, b.alice, hp4, port, allowed)

	// Deleted and re-created with the same ifindex at once: the same
	// name and index, but a new device that must get the program again.
	idx, _, _ := strings.Cut(b.tp.Client.IP(t, "-o", "link", "show", "hp1"), ":")
	b.tp.Client.IP(t, "link", "del", "hp1")
	hotplugIndex(t, b.tp, "hp1", idx)
	time.Sleep(500 * time.Millisecond) // no status change to wait for: same name, same index
	testnet.Expect(t, b.bob, hp4, port, denied)
	testnet.Expect(t, b.alice, hp4, port, allowed)
}

// "*" takes every interface but lo, including ones that come later; an
// interface renamed while still matched stays filtered.
func TestGlobNeverLo(t *testing.T) {
	testnet.RequireRoot(t)
	b := newBed(t, `endpoints:
  - protected:
      iface: ["*"]
      range: [192.0.2.99/32]
      allow: [uid:1001]
interfaces:
  "*": {default: allow}
`)
	d := b.start(t, testnet.DaemonOptions{})
	if got := ifacesOf(statusOf(d.Ready)); !slices.Equal(got, []string{"eth0"}) {
		t.Errorf(`"*" must take eth0 and never lo; filtered: %q`, got)
	}
	hotplug(t, b.tp, "hp0")
	waitStatus(t, d, "eth0, hp0", func(s string) bool { return slices.Equal(ifacesOf(s), []string{"eth0", "hp0"}) })
	b.tp.Client.Rename(t, "hp0", "xx0")
	waitStatus(t, d, "eth0, xx0", func(s string) bool { return slices.Equal(ifacesOf(s), []string{"eth0", "xx0"}) })
	testnet.Expect(t, b.bob, hp4, port, denied)
	testnet.Expect(t, b.alice, hp4, port, allowed)
	if strings.Contains(d.Log(), "level=ERROR") {
		t.Errorf("errors while following the rename:\n%s", d.Log())
	}
}
