package testnet

import (
	"errors"
	"net"
	"net/netip"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// Topology is a client namespace whose eth0 (the interface under test) is a
// veth to a server namespace. The server takes every destination address as
// its own (AnyIP), so a probe to any address is answered there and nothing
// is ever forwarded further.
//
//	container ns (optional) --ctr0-- client ns --eth0==eth0-- server ns
//	                                            \-tun0 (optional) -> Topology.Tun
type Topology struct {
	Client, Server *NS
	Container      *NS // forwarded through the client: unowned traffic

	Client4, Client6       netip.Addr
	Server4, Server6       netip.Addr
	Container4, Container6 netip.Addr
	// Tun carries what the client sends through tun0 (an L3 device, no
	// link-layer header), when Options.Tun is set: a packet arrives here
	// only if the filter on tun0 let it go.
	Tun <-chan []byte
}

// Options choose optional parts of a Topology.
type Options struct {
	Container bool // a third namespace routed through the client
	Tun       bool // tun0 in the client, TunNet4, read by the test
}

var (
	clientMAC = "02:00:00:00:00:01"
	serverMAC = "02:00:00:00:00:02"
)

// NewTopology builds the namespaces. Neighbours are static, so that a
// deny-by-default policy does not have to allow root's neighbour discovery.
func NewTopology(t testing.TB, opts Options) *Topology {
	t.Helper()
	RequireRoot(t)
	tp := &Topology{
		Client:  NewNS(t, "c"),
		Server:  NewNS(t, "s"),
		Client4: netip.MustParseAddr("198.18.0.1"),
		Server4: netip.MustParseAddr("198.18.0.2"),
		Client6: netip.MustParseAddr("fd77::1"),
		Server6: netip.MustParseAddr("fd77::2"),
	}
	tp.link(t)
	if opts.Container {
		tp.addContainer(t)
	}
	if opts.Tun {
		tp.addTun(t)
	}
	return tp
}

// link joins the client's and the server's eth0 (a veth pair) and makes
// the server answer for every address.
func (tp *Topology) link(t testing.TB) {
	t.Helper()
	c, s := tp.Client, tp.Server
	c.IP(t, "link", "add", "eth0", "address", clientMAC, "type", "veth",
		"peer", "name", "eth0", "netns", s.Name, "address", serverMAC)
	for _, side := range []struct {
		ns               *NS
		a4, a6, p4, p6   netip.Addr
		peerMAC, selfMAC string
	}{
		{c, tp.Client4, tp.Client6, tp.Server4, tp.Server6, serverMAC, clientMAC},
		{s, tp.Server4, tp.Server6, tp.Client4, tp.Client6, clientMAC, serverMAC},
	} {
		side.ns.IP(t, "addr", "add", side.a4.String()+"/30", "dev", "eth0")
		side.ns.IP(t, "addr", "add", side.a6.String()+"/64", "dev", "eth0", "nodad")
		side.ns.IP(t, "link", "set", "eth0", "up")
		side.ns.IP(t, "neigh", "replace", side.p4.String(), "lladdr", side.peerMAC, "dev", "eth0", "nud", "permanent")
		side.ns.IP(t, "neigh", "replace", side.p6.String(), "lladdr", side.peerMAC, "dev", "eth0", "nud", "permanent")
	}
	c.IP(t, "route", "add", "default", "via", tp.Server4.String())
	c.IP(t, "-6", "route", "add", "default", "via", tp.Server6.String())

	// AnyIP on the server: every address is local, except the test nets,
	// which the replies must reach.
	s.IP(t, "route", "add", "local", "0.0.0.0/0", "dev", "lo", "table", "local")
	s.IP(t, "-6", "route", "add", "local", "::/0", "dev", "lo", "table", "local")
	s.IP(t, "route", "add", LinkNet4.String(), "dev", "eth0", "table", "local")
	s.IP(t, "-6", "route", "add", LinkNet6.String(), "dev", "eth0", "table", "local")
}

func (tp *Topology) addContainer(t testing.TB) {
	k, c, s := NewNS(t, "k"), tp.Client, tp.Server
	tp.Container = k
	tp.Container4 = netip.MustParseAddr("198.18.1.2")
	tp.Container6 = netip.MustParseAddr("fd77:1::2")
	gw4, gw6 := netip.MustParseAddr("198.18.1.1"), netip.MustParseAddr("fd77:1::1")
	const kMAC, gwMAC = "02:00:00:00:01:02", "02:00:00:00:01:01"
	c.IP(t, "link", "add", "ctr0", "address", gwMAC, "type", "veth", "peer", "name", "eth0", "netns", k.Name, "address", kMAC)
	c.IP(t, "addr", "add", gw4.String()+"/30", "dev", "ctr0")
	c.IP(t, "addr", "add", gw6.String()+"/64", "dev", "ctr0", "nodad")
	c.IP(t, "link", "set", "ctr0", "up")
	c.IP(t, "neigh", "replace", tp.Container4.String(), "lladdr", kMAC, "dev", "ctr0", "nud", "permanent")
	c.IP(t, "neigh", "replace", tp.Container6.String(), "lladdr", kMAC, "dev", "ctr0", "nud", "permanent")
	c.Exec(t, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1")
	k.IP(t, "addr", "add", tp.Container4.String()+"/30", "dev", "eth0")
	k.IP(t, "addr", "add", tp.Container6.String()+"/64", "dev", "eth0", "nodad")
	k.IP(t, "link", "set", "eth0", "up")
	k.IP(t, "neigh", "replace", gw4.String(), "lladdr", gwMAC, "dev", "eth0", "nud", "permanent")
	k.IP(t, "neigh", "replace", gw6.String(), "lladdr", gwMAC, "dev", "eth0", "nud", "permanent")
	k.IP(t, "route", "add", "default", "via", gw4.String())
	k.IP(t, "-6", "route", "add", "default", "via", gw6.String())
	s.IP(t, "route", "add", ContainerNet4.String(), "via", tp.Client4.String(), "dev", "eth0", "table", "local")
	s.IP(t, "-6", "route", "add", ContainerNet6.String(), "via", tp.Client6.String(), "dev", "eth0", "table", "local")
}

// ServeTCP accepts and closes connections on port, on every server address.
func (tp *Topology) ServeTCP(t testing.TB, port uint16) {
	t.Helper()
	tp.Server.ServeTCP(t, port)
}

// ServeTCP accepts TCP connections on port in the namespace and closes each
// at once, until the test ends.
func (n *NS) ServeTCP(t testing.TB, port uint16) {
	t.Helper()
	var ln net.Listener
	n.MustDo(t, func() (err error) {
		ln, err = net.Listen("tcp", ":"+strconv.Itoa(int(port)))
		return err
	})
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
}

// ServeUDPEcho echoes datagrams on port, on every server address.
func (tp *Topology) ServeUDPEcho(t testing.TB, port uint16) {
	t.Helper()
	tp.serveUDP(t, port, func(pc net.PacketConn, b []byte, from net.Addr) { pc.WriteTo(b, from) })
}

// CountUDP counts the datagrams that reach port on the server.
func (tp *Topology) CountUDP(t testing.TB, port uint16) *atomic.Int64 {
	t.Helper()
	var n atomic.Int64
	tp.serveUDP(t, port, func(net.PacketConn, []byte, net.Addr) { n.Add(1) })
	return &n
}

// serveUDP hands every datagram that reaches port on the server to fn,
// until the test ends.
func (tp *Topology) serveUDP(t testing.TB, port uint16, fn func(pc net.PacketConn, b []byte, from net.Addr)) {
	t.Helper()
	var pc net.PacketConn
	tp.Server.MustDo(t, func() (err error) {
		pc, err = net.ListenPacket("udp", ":"+strconv.Itoa(int(port)))
		return err
	})
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFrom(buf)
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if err == nil {
				fn(pc, buf[:n], from)
			}
		}
	}()
}

// Timeouts for probes: an allowed probe answers in microseconds here; a
// denied one is waited for only as long as needed to be sure nothing came.
const (
	AllowTimeout = 3 * time.Second
	DenyTimeout  = 300 * time.Millisecond
)

// Expect probes dst:port by TCP and UDP from agent a and fails the test
// unless both are allowed (answered) or both denied (silently dropped).
func Expect(t testing.TB, a *Agent, dst netip.Addr, port uint16, allowed bool) {
	t.Helper()
	for _, probe := range []struct {
		name string
		fn   func(netip.Addr, uint16, time.Duration) error
	}{{"tcp", a.TCP}, {"udp", a.UDP}} {
		if allowed {
			if err := probe.fn(dst, port, AllowTimeout); err != nil {
				t.Errorf("uid %d %s to %s:%d: want allowed, got %v", a.UID, probe.name, dst, port, err)
			}
			continue
		}
		err := probe.fn(dst, port, DenyTimeout)
		if !errors.Is(err, ErrTimeout) {
			t.Errorf("uid %d %s to %s:%d: want dropped (timeout), got %v", a.UID, probe.name, dst, port, err)
		}
	}
}
