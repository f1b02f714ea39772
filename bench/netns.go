package bench

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"

	"github.com/nettcfilter/net-tc-filter/daemon/testnet"
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

// InSourceRange reports whether a sender may use a as its source address.
func InSourceRange(a netip.Addr) bool { return LinkNet.Contains(a.Unmap()) }

// NS is a named network namespace made by this program: testnet's, with
// errors returned instead of failing a test.
type NS struct{ testnet.NS }

// Command prepares a command that runs inside the namespace. nsenter
// keeps /sys (and bpffs pins) as they are, unlike `ip netns exec`.
func (n *NS) Command(name string, args ...string) *exec.Cmd {
	return n.NS.Command(append([]string{name}, args...)...)
}

// Run runs a command inside the namespace.
func (n *NS) Run(name string, args ...string) (string, error) {
	return output(n.Command(name, args...))
}

// Topology is a client namespace whose Iface is a veth to a server
// namespace that takes every address of ProtectedNet as its own.
type Topology struct {
	Client, Server *NS
}

// NewTopology creates the namespaces and the veth pair. Remove it with Close.
func NewTopology() (*Topology, error) {
	b := make([]byte, 3)
	rand.Read(b)
	id := hex.EncodeToString(b)
	tp := &Topology{Client: &NS{testnet.NS{Name: "ntfb-c-" + id}}, Server: &NS{testnet.NS{Name: "ntfb-s-" + id}}}
	if err := tp.build(); err != nil {
		tp.Close()
		return nil, fmt.Errorf("topology: %w", err)
	}
	return tp, nil
}

func (tp *Topology) build() error {
	c, s := tp.Client, tp.Server
	for _, ns := range []*NS{c, s} {
		if _, err := Output("ip", "netns", "add", ns.Name); err != nil {
			return err
		}
	}
	// No IPv6 on either side: no router solicitations or MLD reports that
	// would count as traffic while the flood's leak check watches.
	for _, ns := range []*NS{c, s} {
		if _, err := ns.Run("sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"); err != nil {
			return err
		}
	}
	steps := [][]string{
		{c.Name, "link", "set", "lo", "up"},
		{s.Name, "link", "set", "lo", "up"},
		{c.Name, "link", "add", Iface, "address", clientMAC, "type", "veth", "peer", "name", Iface, "netns", s.Name, "address", serverMAC},
		{c.Name, "addr", "add", ClientAddr.String() + "/30", "dev", Iface},
		{s.Name, "addr", "add", ServerAddr.String() + "/30", "dev", Iface},
		{c.Name, "link", "set", Iface, "up"},
		{s.Name, "link", "set", Iface, "up"},
		// Static neighbours: no ARP traffic, no dependence on the filter letting it out.
		{c.Name, "neigh", "replace", ServerAddr.String(), "lladdr", serverMAC, "dev", Iface, "nud", "permanent"},
		{s.Name, "neigh", "replace", ClientAddr.String(), "lladdr", clientMAC, "dev", Iface, "nud", "permanent"},
		// The client reaches the protected block through the server, and nothing else.
		{c.Name, "route", "add", ProtectedNet.String(), "via", ServerAddr.String(), "dev", Iface},
		// AnyIP: every protected address is local on the server.
		{s.Name, "route", "add", "local", ProtectedNet.String(), "dev", "lo", "table", "local"},
	}
	for _, st := range steps {
		if _, err := Output("ip", append([]string{"-n", st[0]}, st[1:]...)...); err != nil {
			return err
		}
	}
	return nil
}

// Close removes both namespaces (and with them the veth, rules and sets).
func (tp *Topology) Close() {
	for _, ns := range []*NS{tp.Client, tp.Server} {
		if ns != nil {
			exec.Command("ip", "netns", "del", ns.Name).Run()
		}
	}
}

// Output runs a command and returns its standard output; the error says
// what ran and what it printed on stderr.
func Output(name string, args ...string) (string, error) {
	return output(exec.Command(name, args...))
}

func output(cmd *exec.Cmd) (string, error) {
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s: %w: %s", strings.Join(cmd.Args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}
