// SPDX-License-Identifier: Apache-2.0

package netlab

import (
	"fmt"
	"net/netip"
	"strconv"

	"golang.org/x/sys/unix"
)

// SendTCP sends one TCP SYN to dst:port and returns the source port it
// left from, without waiting for an answer: the socket is closed at once,
// so a dropped SYN is never sent again.
func (a *Agent) SendTCP(dst netip.Addr, port uint16) (uint16, error) {
	return a.sendOp("sendtcp", netip.AddrPortFrom(dst, port), 0)
}

// SendICMP sends one ICMP (ICMPv6 to an IPv6 address) echo request to dst
// from an unprivileged ping socket (net.ipv4.ping_group_range must hold
// the agent's gid), without waiting for the reply.
func (a *Agent) SendICMP(dst netip.Addr) error {
	_, err := a.sendOp("sendicmp", netip.AddrPortFrom(dst, 0), 0)
	return err
}

// SendBig sends one UDP datagram of size bytes to dst:port, fragmented by
// the sender where it exceeds the path's MTU, and returns the source port.
func (a *Agent) SendBig(dst netip.Addr, port uint16, size int) (uint16, error) {
	return a.sendOp("sendbig", netip.AddrPortFrom(dst, port), size)
}

func (a *Agent) sendOp(op string, dst netip.AddrPort, n int) (uint16, error) {
	resp, err := a.call(fmt.Sprintf("%s %s %d", op, dst, n))
	if err != nil {
		return 0, err
	}
	if resp == "" {
		return 0, nil
	}
	p, err := strconv.ParseUint(resp, 10, 16)
	return uint16(p), err
}

// sockaddr is dst as a socket address of the family its socket needs: an
// IPv4-mapped address stays IPv6 (an IPv6 socket sending to IPv4).
func sockaddr(dst netip.AddrPort) (int, unix.Sockaddr) {
	if dst.Addr().Is4() {
		return unix.AF_INET, &unix.SockaddrInet4{Addr: dst.Addr().As4(), Port: int(dst.Port())}
	}
	return unix.AF_INET6, &unix.SockaddrInet6{Addr: dst.Addr().As16(), Port: int(dst.Port())}
}

func localPort(fd int) (int, error) {
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return 0, err
	}
	switch s := sa.(type) {
	case *unix.SockaddrInet4:
		return s.Port, nil
	case *unix.SockaddrInet6:
		return s.Port, nil
	}
	return 0, fmt.Errorf("unexpected local address %T", sa)
}

// sendTCP starts a connection and abandons it: the SYN leaves (or is
// dropped by tc) inside connect().
func sendTCP(dst netip.AddrPort) string {
	fam, sa := sockaddr(dst)
	fd, err := unix.Socket(fam, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return "error " + err.Error()
	}
	defer unix.Close(fd)
	if fam == unix.AF_INET {
		err = unix.Bind(fd, &unix.SockaddrInet4{})
	} else {
		err = unix.Bind(fd, &unix.SockaddrInet6{})
	}
	if err != nil {
		return "error bind: " + err.Error()
	}
	port, err := localPort(fd)
	if err != nil {
		return "error " + err.Error()
	}
	// A dropped SYN fails connect() at once (ENOBUFS) or leaves it in
	// progress: either way the SYN was judged.
	if err := unix.Connect(fd, sa); err != nil && err != unix.EINPROGRESS && err != unix.ENOBUFS && err != unix.EPERM {
		return "error connect: " + err.Error()
	}
	return fmt.Sprintf("ok %d", port)
}

// sendICMP sends an echo request from a ping socket.
func sendICMP(dst netip.Addr) string {
	fam, proto := unix.AF_INET, unix.IPPROTO_ICMP
	req := []byte{8, 0, 0, 0, 0, 0, 0, 1}
	var sa unix.Sockaddr
	if dst.Unmap().Is4() {
		sa = &unix.SockaddrInet4{Addr: dst.Unmap().As4()}
	} else {
		fam, proto = unix.AF_INET6, unix.IPPROTO_ICMPV6
		req[0] = 128
		sa = &unix.SockaddrInet6{Addr: dst.As16()}
	}
	fd, err := unix.Socket(fam, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, proto)
	if err != nil {
		return "error ping socket (net.ipv4.ping_group_range?): " + err.Error()
	}
	defer unix.Close(fd)
	if err := unix.Sendto(fd, req, unix.MSG_DONTWAIT, sa); err != nil && err != unix.EPERM && err != unix.ENOBUFS {
		return "error " + err.Error()
	}
	return "ok"
}

// sendBig sends one datagram of size bytes that the sender may fragment.
func sendBig(dst netip.AddrPort, size int) string {
	fam, sa := sockaddr(dst)
	fd, err := unix.Socket(fam, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return "error " + err.Error()
	}
	defer unix.Close(fd)
	if fam == unix.AF_INET {
		err = unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_DONT)
	} else {
		err = unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_DONTFRAG, 0)
	}
	if err != nil {
		return "error " + err.Error()
	}
	if err := unix.Connect(fd, sa); err != nil {
		return "error connect: " + err.Error()
	}
	port, err := localPort(fd)
	if err != nil {
		return "error " + err.Error()
	}
	if _, err := unix.Write(fd, make([]byte, size)); err != nil && err != unix.EPERM && err != unix.ENOBUFS {
		return "error " + err.Error()
	}
	return fmt.Sprintf("ok %d", port)
}
