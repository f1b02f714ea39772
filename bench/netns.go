// SPDX-License-Identifier: Apache-2.0

package bench

import (
	"fmt"
	"net/netip"

	"github.com/nettcfilter/net-tc-filter/internal/netlab"
)

// Address plan. Nothing here is routed off the machine: the client
// namespace has a route to the protected block through the server and no
// other route at all, and every sender refuses a source address outside
// LinkNet.
var (
	// LinkNet is the veth between the client and the server namespace.
	LinkNet = netip.MustParsePrefix("10.200.0.0/30")
	// ClientAddr and ServerAddr are the two ends of the veth.
	ClientAddr = netip.MustParseAddr("10.200.0.1")
	ServerAddr = netip.MustParseAddr("10.200.0.2")
	// ProtectedNet holds the benchmark's ranges (/30 each, in order); the
	// server answers for every address in it (AnyIP).
	ProtectedNet = netip.MustParsePrefix("10.64.0.0/10")
)

// Iface is the veth's name on both sides; the filters run on the client's.
const Iface = "ntfb0"

const (
	clientMAC = "02:00:00:00:b0:01"
	serverMAC = "02:00:00:00:b0:02"
)

// Topology is a client namespace whose Iface is a veth to a server
// namespace that takes every address of ProtectedNet as its own. It is
// not netlab.Topology: the flood's leak check counts every packet on the
// server's side, so there is no IPv6 at all, and the client has a route to
// ProtectedNet alone.
type Topology struct {
	Client, Server *netlab.NS
}

// NewTopology creates the namespaces and the veth pair. Remove it with Close.
func NewTopology() (*Topology, error) {
	tp := &Topology{}
	if err := tp.build(); err != nil {
		tp.Close()
		return nil, fmt.Errorf("topology: %w", err)
	}
	return tp, nil
}

func (tp *Topology) build() error {
	var err error
	if tp.Client, err = netlab.NewNS("ntfb-c"); err != nil {
		return err
	}
	if tp.Server, err = netlab.NewNS("ntfb-s"); err != nil {
		return err
	}
	c, s := tp.Client, tp.Server
	// No IPv6 on either side: no router solicitations or MLD reports that
	// would count as traffic while the flood's leak check watches.
	for _, ns := range []*netlab.NS{c, s} {
		if _, err := ns.Exec("sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"); err != nil {
			return err
		}
	}
	steps := []struct {
		ns   *netlab.NS
		args []string
	}{
		{c, []string{"link", "add", Iface, "address", clientMAC, "type", "veth", "peer", "name", Iface, "netns", s.Name, "address", serverMAC}},
		{c, []string{"addr", "add", ClientAddr.String() + "/30", "dev", Iface}},
		{s, []string{"addr", "add", ServerAddr.String() + "/30", "dev", Iface}},
		{c, []string{"link", "set", Iface, "up"}},
		{s, []string{"link", "set", Iface, "up"}},
		// Static neighbours: no ARP traffic, no dependence on the filter letting it out.
		{c, []string{"neigh", "replace", ServerAddr.String(), "lladdr", serverMAC, "dev", Iface, "nud", "permanent"}},
		{s, []string{"neigh", "replace", ClientAddr.String(), "lladdr", clientMAC, "dev", Iface, "nud", "permanent"}},
		// The client reaches the protected block through the server, and nothing else.
		{c, []string{"route", "add", ProtectedNet.String(), "via", ServerAddr.String(), "dev", Iface}},
		// AnyIP: every protected address is local on the server.
		{s, []string{"route", "add", "local", ProtectedNet.String(), "dev", "lo", "table", "local"}},
	}
	for _, st := range steps {
		if _, err := st.ns.IP(st.args...); err != nil {
			return err
		}
	}
	return nil
}

// Close removes both namespaces (and with them the veth, rules and sets).
func (tp *Topology) Close() {
	for _, ns := range []*netlab.NS{tp.Client, tp.Server} {
		if ns != nil {
			ns.Close()
		}
	}
}
