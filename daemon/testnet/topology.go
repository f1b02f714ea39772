// SPDX-License-Identifier: Apache-2.0

package testnet

import (
	"errors"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nettcfilter/net-tc-filter/internal/netlab"
)

// Topology is netlab.Topology whose namespaces are this package's: a
// client namespace whose eth0 is a veth to a server namespace that answers
// for every address.
type Topology struct {
	*netlab.Topology
	Client, Server *NS
	Container      *NS // nil unless Options.Container
}

// Options choose optional parts of a Topology.
type Options = netlab.Options

// NewTopology builds the namespaces, removed when the test ends.
func NewTopology(t testing.TB, opts Options) *Topology {
	t.Helper()
	RequireRoot(t)
	tp, err := netlab.NewTopology(opts)
	check(t, err)
	closeAtEnd(t, tp)
	return wrapTopology(tp)
}

func wrapTopology(tp *netlab.Topology) *Topology {
	w := &Topology{Topology: tp, Client: &NS{tp.Client}, Server: &NS{tp.Server}}
	if tp.Container != nil {
		w.Container = &NS{tp.Container}
	}
	return w
}

// ServeTCP accepts and closes connections on port, on every server address.
func (tp *Topology) ServeTCP(t testing.TB, port uint16) {
	t.Helper()
	tp.Server.ServeTCP(t, port)
}

// ServeUDPEcho echoes datagrams on port, on every server address.
func (tp *Topology) ServeUDPEcho(t testing.TB, port uint16) {
	t.Helper()
	c, err := tp.Server.NS.ServeUDPEcho(port)
	check(t, err)
	closeAtEnd(t, c)
}

// CountUDP counts the datagrams that reach port on the server.
func (tp *Topology) CountUDP(t testing.TB, port uint16) *atomic.Int64 {
	t.Helper()
	var n atomic.Int64
	c, err := tp.Server.NS.ServeUDP(port, func(net.PacketConn, []byte, net.Addr) { n.Add(1) })
	check(t, err)
	closeAtEnd(t, c)
	return &n
}

// Timeouts for probes: an allowed probe answers in microseconds here (its
// wait is stretched under emulation, netlab.Slowed: it must answer); a
// denied one is waited for only as long as needed to be sure nothing came.
const (
	AllowTimeout = 3 * time.Second
	DenyTimeout  = 300 * time.Millisecond
)

// Expect probes dst:port by TCP and UDP from agent a and fails the test
// unless both are allowed (answered) or both denied: dropped silently, or
// answered with "administratively prohibited" (SPEC §1 rule 4: the TCP
// connect fails with EHOSTUNREACH or EACCES where the answer reaches it
// within DenyTimeout; the UDP probe's socket does not ask for errors).
func Expect(t testing.TB, a *Agent, dst netip.Addr, port uint16, allowed bool) {
	t.Helper()
	for _, probe := range []struct {
		name string
		fn   func(netip.Addr, uint16, time.Duration) error
	}{{"tcp", a.TCP}, {"udp", a.UDP}} {
		if allowed {
			if err := probe.fn(dst, port, netlab.Slowed(AllowTimeout)); err != nil {
				t.Errorf("uid %d %s to %s:%d: want allowed, got %v", a.UID, probe.name, dst, port, err)
			}
			continue
		}
		err := probe.fn(dst, port, DenyTimeout)
		if !errors.Is(err, netlab.ErrTimeout) && !errors.Is(err, netlab.ErrRejected) {
			t.Errorf("uid %d %s to %s:%d: want denied (timeout or rejected), got %v", a.UID, probe.name, dst, port, err)
		}
	}
}

// UserNSTopology is netlab.UserNSTopology whose namespaces are this
// package's: the client namespace belongs to a user namespace whose root
// is HostUID on the host, and Agent runs there as that root.
type UserNSTopology struct {
	*Topology
	HostUID uint32
	Agent   *Agent
}

// NewUserNSTopology makes the user and network namespaces (see
// netlab.NewUserNSTopology), removed when the test ends.
func NewUserNSTopology(t testing.TB, hostUID uint32) *UserNSTopology {
	t.Helper()
	RequireRoot(t)
	u, err := netlab.NewUserNSTopology(hostUID)
	check(t, err)
	closeAtEnd(t, u)
	return &UserNSTopology{Topology: wrapTopology(u.Topology), HostUID: u.HostUID, Agent: u.Agent}
}
