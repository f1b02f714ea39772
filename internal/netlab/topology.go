// SPDX-License-Identifier: Apache-2.0

package netlab

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"sync"
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

	closers closers
}

// Options choose optional parts of a Topology.
type Options struct {
	Container bool // a third namespace routed through the client
	Tun       bool // tun0 in the client, TunNet4, read by the caller
}

const (
	clientMAC = "02:00:00:00:00:01"
	serverMAC = "02:00:00:00:00:02"
)

// NewTopology builds the namespaces; Close removes them. Neighbours are
// static, so that a deny-by-default policy does not have to allow root's
// neighbour discovery.
func NewTopology(opts Options) (*Topology, error) {
	tp := &Topology{
		Client4: LinkNet4.Addr().Next(),
		Server4: LinkNet4.Addr().Next().Next(),
		Client6: LinkNet6.Addr().Next(),
		Server6: LinkNet6.Addr().Next().Next(),
	}
	err := tp.build(opts)
	if err != nil {
		tp.Close()
		return nil, fmt.Errorf("topology: %w", err)
	}
	return tp, nil
}

func (tp *Topology) build(opts Options) error {
	var err error
	if tp.Client, err = tp.newNS("ntft-c"); err != nil {
		return err
	}
	if err := tp.link(); err != nil {
		return err
	}
	if opts.Container {
		if err := tp.addContainer(); err != nil {
			return err
		}
	}
	if opts.Tun {
		if err := tp.addTun(); err != nil {
			return err
		}
	}
	return nil
}

// newNS makes a namespace that Close removes.
func (tp *Topology) newNS(prefix string) (*NS, error) {
	n, err := NewNS(prefix)
	if err != nil {
		return nil, err
	}
	tp.closers.add(n.Close)
	return n, nil
}

// Close removes the namespaces and closes tun0.
func (tp *Topology) Close() error {
	err := tp.closers.close()
	tp.closers = nil
	return err
}

// ipSteps runs `ip -n NS args...` for each step, stopping at the first
// failure.
func ipSteps(steps ...ipStep) error {
	for _, s := range steps {
		if _, err := s.ns.IP(s.args...); err != nil {
			return err
		}
	}
	return nil
}

type ipStep struct {
	ns   *NS
	args []string
}

func step(ns *NS, args ...string) ipStep { return ipStep{ns, args} }

// link makes the server namespace, joins the client's and the server's
// eth0 (a veth pair) and makes the server answer for every address.
func (tp *Topology) link() error {
	var err error
	if tp.Server, err = tp.newNS("ntft-s"); err != nil {
		return err
	}
	c, s := tp.Client, tp.Server
	steps := []ipStep{step(c, "link", "add", "eth0", "address", clientMAC, "type", "veth",
		"peer", "name", "eth0", "netns", s.Name, "address", serverMAC)}
	for _, side := range []struct {
		ns               *NS
		a4, a6, p4, p6   netip.Addr
		peerMAC, selfMAC string
	}{
		{c, tp.Client4, tp.Client6, tp.Server4, tp.Server6, serverMAC, clientMAC},
		{s, tp.Server4, tp.Server6, tp.Client4, tp.Client6, clientMAC, serverMAC},
	} {
		steps = append(steps,
			step(side.ns, "addr", "add", side.a4.String()+"/30", "dev", "eth0"),
			step(side.ns, "addr", "add", side.a6.String()+"/64", "dev", "eth0", "nodad"),
			step(side.ns, "link", "set", "eth0", "up"),
			step(side.ns, "neigh", "replace", side.p4.String(), "lladdr", side.peerMAC, "dev", "eth0", "nud", "permanent"),
			step(side.ns, "neigh", "replace", side.p6.String(), "lladdr", side.peerMAC, "dev", "eth0", "nud", "permanent"))
	}
	steps = append(steps,
		step(c, "route", "add", "default", "via", tp.Server4.String()),
		step(c, "-6", "route", "add", "default", "via", tp.Server6.String()),
		// AnyIP on the server: every address is local, except the test
		// nets, which the replies must reach.
		step(s, "route", "add", "local", "0.0.0.0/0", "dev", "lo", "table", "local"),
		step(s, "-6", "route", "add", "local", "::/0", "dev", "lo", "table", "local"),
		step(s, "route", "add", LinkNet4.String(), "dev", "eth0", "table", "local"),
		step(s, "-6", "route", "add", LinkNet6.String(), "dev", "eth0", "table", "local"))
	return ipSteps(steps...)
}

func (tp *Topology) addContainer() error {
	k, err := tp.newNS("ntft-k")
	if err != nil {
		return err
	}
	c, s := tp.Client, tp.Server
	tp.Container = k
	tp.Container4 = ContainerNet4.Addr().Next().Next()
	tp.Container6 = ContainerNet6.Addr().Next().Next()
	gw4, gw6 := ContainerNet4.Addr().Next(), ContainerNet6.Addr().Next()
	const kMAC, gwMAC = "02:00:00:00:01:02", "02:00:00:00:01:01"
	err = ipSteps(
		step(c, "link", "add", "ctr0", "address", gwMAC, "type", "veth", "peer", "name", "eth0", "netns", k.Name, "address", kMAC),
		step(c, "addr", "add", gw4.String()+"/30", "dev", "ctr0"),
		step(c, "addr", "add", gw6.String()+"/64", "dev", "ctr0", "nodad"),
		step(c, "link", "set", "ctr0", "up"),
		step(c, "neigh", "replace", tp.Container4.String(), "lladdr", kMAC, "dev", "ctr0", "nud", "permanent"),
		step(c, "neigh", "replace", tp.Container6.String(), "lladdr", kMAC, "dev", "ctr0", "nud", "permanent"))
	if err != nil {
		return err
	}
	if _, err := c.Exec("sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"); err != nil {
		return err
	}
	return ipSteps(
		step(k, "addr", "add", tp.Container4.String()+"/30", "dev", "eth0"),
		step(k, "addr", "add", tp.Container6.String()+"/64", "dev", "eth0", "nodad"),
		step(k, "link", "set", "eth0", "up"),
		step(k, "neigh", "replace", gw4.String(), "lladdr", gwMAC, "dev", "eth0", "nud", "permanent"),
		step(k, "neigh", "replace", gw6.String(), "lladdr", gwMAC, "dev", "eth0", "nud", "permanent"),
		step(k, "route", "add", "default", "via", gw4.String()),
		step(k, "-6", "route", "add", "default", "via", gw6.String()),
		step(s, "route", "add", ContainerNet4.String(), "via", tp.Client4.String(), "dev", "eth0", "table", "local"),
		step(s, "-6", "route", "add", ContainerNet6.String(), "via", tp.Client6.String(), "dev", "eth0", "table", "local"))
}

// ServeTCP accepts TCP connections on port in the namespace and closes each
// at once, until the returned Closer is closed.
func (n *NS) ServeTCP(port uint16) (io.Closer, error) {
	var ln net.Listener
	err := n.Do(func() (err error) {
		ln, err = net.Listen("tcp", ":"+strconv.Itoa(int(port)))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("tcp server on port %d: %w", port, err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return ln, nil
}

// ServeUDP hands every datagram that reaches port in the namespace to fn,
// until the returned Closer is closed; Close returns once fn has returned
// for the last time.
func (n *NS) ServeUDP(port uint16, fn func(pc net.PacketConn, b []byte, from net.Addr)) (io.Closer, error) {
	var pc net.PacketConn
	err := n.Do(func() (err error) {
		pc, err = net.ListenPacket("udp", ":"+strconv.Itoa(int(port)))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("udp server on port %d: %w", port, err)
	}
	if err := forceReadBuffer(pc, udpReadBuffer); err != nil {
		pc.Close()
		return nil, fmt.Errorf("udp server on port %d: %w", port, err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
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
	return closerFunc(func() error {
		err := pc.Close()
		<-done
		return err
	}), nil
}

type closerFunc func() error

func (f closerFunc) Close() error { return f() }

// ServeUDPEcho echoes datagrams on port in the namespace.
func (n *NS) ServeUDPEcho(port uint16) (io.Closer, error) {
	return n.ServeUDP(port, func(pc net.PacketConn, b []byte, from net.Addr) { pc.WriteTo(b, from) })
}

// Counter counts the datagrams that reach a UDP port, with the time of the
// first.
type Counter struct {
	io.Closer // stops counting

	mu    sync.Mutex
	n     int64
	first time.Time
}

// CountUDP counts the datagrams that reach port in the namespace, until
// the Counter is closed.
func (n *NS) CountUDP(port uint16) (*Counter, error) {
	c := &Counter{}
	var err error
	c.Closer, err = n.ServeUDP(port, func(net.PacketConn, []byte, net.Addr) {
		now := time.Now()
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.n == 0 {
			c.first = now
		}
		c.n++
	})
	if err != nil {
		return nil, err
	}
	return c, nil
}

// Reset forgets what arrived so far.
func (c *Counter) Reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n, c.first = 0, time.Time{}
}

// Count is how many datagrams arrived since the last Reset.
func (c *Counter) Count() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

// First is when the first datagram since the last Reset arrived (zero: none).
func (c *Counter) First() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.first
}
