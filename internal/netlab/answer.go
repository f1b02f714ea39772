// SPDX-License-Identifier: Apache-2.0

package netlab

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Answer is what the kernel told a sender about one packet it sent: the
// error its socket reported, and for sockets that ask for them
// (IP_RECVERR, IPV6_RECVERR) the ICMP error as the error queue holds it.
// Errno 0: nothing within the probe's time.
type Answer struct {
	Errno syscall.Errno
	// Queued: the error came from the socket's error queue, with what
	// follows; otherwise only Errno is known.
	Queued     bool
	Origin     uint8 // SO_EE_ORIGIN_ICMP or SO_EE_ORIGIN_ICMP6
	Type, Code uint8
	Offender   netip.Addr // the source of the ICMP error
	Elapsed    time.Duration
}

func (a Answer) String() string {
	if a.Errno == 0 {
		return fmt.Sprintf("no error after %v", a.Elapsed)
	}
	s := fmt.Sprintf("%v (%s) after %v", a.Errno, unix.ErrnoName(a.Errno), a.Elapsed.Round(time.Microsecond))
	if a.Queued {
		s += fmt.Sprintf(", ICMP origin %d type %d code %d from %s", a.Origin, a.Type, a.Code, a.Offender)
	}
	return s
}

// ConnectAnswer starts a TCP connection to dst:port as curl does (a
// non-blocking connect, then waiting for it to complete) and reports how
// it ended within timeout: 0 for a connection made, else its error. The
// SYN is retried at most twice (TCP_SYNCNT), so that a SYN that nothing
// answers ends in ETIMEDOUT within a few seconds, not two minutes.
func (a *Agent) ConnectAnswer(dst netip.Addr, port uint16, timeout time.Duration) (Answer, error) {
	return a.answer("connecterr", netip.AddrPortFrom(dst, port), timeout)
}

// UDPAnswer sends one datagram to dst:port from an unconnected socket
// with IP_RECVERR (IPV6_RECVERR) set and reports the first error queued
// within timeout.
func (a *Agent) UDPAnswer(dst netip.Addr, port uint16, timeout time.Duration) (Answer, error) {
	return a.answer("udperr", netip.AddrPortFrom(dst, port), timeout)
}

// PingAnswer sends one echo request to dst from an unprivileged ping
// socket with IP_RECVERR (IPV6_RECVERR) set, as iputils ping does, and
// reports the first error queued within timeout; an echo reply is no
// error (Errno 0, and Elapsed below timeout). net.ipv4.ping_group_range
// must hold the agent's gid.
func (a *Agent) PingAnswer(dst netip.Addr, timeout time.Duration) (Answer, error) {
	return a.answer("pingerr", netip.AddrPortFrom(dst, 0), timeout)
}

func (a *Agent) answer(op string, dst netip.AddrPort, timeout time.Duration) (Answer, error) {
	resp, err := a.call(fmt.Sprintf("%s %s %d", op, dst, timeout.Milliseconds()))
	if err != nil {
		return Answer{}, err
	}
	return parseAnswer(resp)
}

func (ans Answer) encode() string {
	off := "-"
	if ans.Offender.IsValid() {
		off = ans.Offender.String()
	}
	return fmt.Sprintf("ok %d %t %d %d %d %s %d", ans.Errno, ans.Queued, ans.Origin, ans.Type, ans.Code, off, ans.Elapsed.Microseconds())
}

func parseAnswer(s string) (Answer, error) {
	var ans Answer
	var errno, us int64
	var off string
	if _, err := fmt.Sscanf(s, "%d %t %d %d %d %s %d", &errno, &ans.Queued, &ans.Origin, &ans.Type, &ans.Code, &off, &us); err != nil {
		return ans, fmt.Errorf("agent answer %q: %w", s, err)
	}
	ans.Errno = syscall.Errno(errno)
	ans.Elapsed = time.Duration(us) * time.Microsecond
	if off != "-" {
		a, err := netip.ParseAddr(off)
		if err != nil {
			return ans, fmt.Errorf("agent answer %q: %w", s, err)
		}
		ans.Offender = a
	}
	return ans, nil
}

// serveAnswer runs the probes of ConnectAnswer, UDPAnswer and PingAnswer.
func serveAnswer(op string, dst netip.AddrPort, timeout time.Duration) string {
	var ans Answer
	var err error
	switch op {
	case "connecterr":
		ans, err = connectAnswer(dst, timeout)
	case "udperr":
		ans, err = queuedAnswer(dst, unix.SOCK_DGRAM, 0, []byte("probe"), timeout)
	case "pingerr":
		req := []byte{8, 0, 0, 0, 0, 0, 0, 1}
		proto := unix.IPPROTO_ICMP
		if !dst.Addr().Is4() {
			req[0], proto = 128, unix.IPPROTO_ICMPV6
		}
		ans, err = queuedAnswer(dst, unix.SOCK_DGRAM, proto, req, timeout)
	default:
		return "error unknown op " + op
	}
	if err != nil {
		return "error " + op + ": " + err.Error()
	}
	return ans.encode()
}

func connectAnswer(dst netip.AddrPort, timeout time.Duration) (Answer, error) {
	fam, sa := sockaddr(dst)
	fd, err := unix.Socket(fam, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return Answer{}, err
	}
	defer unix.Close(fd)
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_SYNCNT, 2); err != nil {
		return Answer{}, fmt.Errorf("TCP_SYNCNT: %w", err)
	}
	start := time.Now()
	err = unix.Connect(fd, sa)
	if err == nil {
		return Answer{Elapsed: time.Since(start)}, nil
	}
	if err != unix.EINPROGRESS {
		return Answer{Errno: err.(syscall.Errno), Elapsed: time.Since(start)}, nil
	}
	if _, err := poll(fd, unix.POLLOUT, start.Add(timeout)); err != nil {
		return Answer{}, err
	}
	ans := Answer{Elapsed: time.Since(start)}
	soErr, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
	if err != nil {
		return Answer{}, fmt.Errorf("SO_ERROR: %w", err)
	}
	ans.Errno = syscall.Errno(soErr)
	return ans, nil
}

// poll waits for events on fd until deadline; it reports whether they came.
func poll(fd int, events int16, deadline time.Time) (bool, error) {
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return false, nil
		}
		fds := []unix.PollFd{{Fd: int32(fd), Events: events}}
		n, err := unix.Poll(fds, int(left.Milliseconds())+1)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return false, fmt.Errorf("poll: %w", err)
		}
		if n > 0 {
			return true, nil
		}
	}
}

// queuedAnswer sends payload to dst from a datagram socket of proto with
// the error queue on, and reads the first error queued (or, from a ping
// socket, notes the echo reply) within timeout.
func queuedAnswer(dst netip.AddrPort, typ, proto int, payload []byte, timeout time.Duration) (Answer, error) {
	fam, sa := sockaddr(dst)
	fd, err := unix.Socket(fam, typ|unix.SOCK_CLOEXEC, proto)
	if err != nil {
		return Answer{}, err
	}
	defer unix.Close(fd)
	if fam == unix.AF_INET {
		err = unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_RECVERR, 1)
	} else {
		err = unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_RECVERR, 1)
	}
	if err != nil {
		return Answer{}, fmt.Errorf("RECVERR: %w", err)
	}
	start := time.Now()
	if err := unix.Sendto(fd, payload, 0, sa); err != nil {
		if errno, ok := err.(syscall.Errno); ok && errno != unix.EAGAIN {
			// The error of the send itself (ENOBUFS for a drop
			// reported back, EHOSTUNREACH from an earlier error).
			return Answer{Errno: errno, Elapsed: time.Since(start)}, nil
		}
		return Answer{}, fmt.Errorf("sendto: %w", err)
	}
	ready, err := poll(fd, unix.POLLIN|unix.POLLERR, start.Add(timeout))
	if err != nil {
		return Answer{}, err
	}
	if !ready {
		return Answer{Elapsed: time.Since(start)}, nil
	}
	if ans, ok, err := readErrQueue(fd); err != nil || ok {
		ans.Elapsed = time.Since(start)
		return ans, err
	}
	// Data, not an error: an echo reply (or the UDP echo).
	buf := make([]byte, 1500)
	if _, _, err := unix.Recvfrom(fd, buf, unix.MSG_DONTWAIT); err != nil && err != unix.EAGAIN {
		if errno, ok := err.(syscall.Errno); ok {
			return Answer{Errno: errno, Elapsed: time.Since(start)}, nil
		}
		return Answer{}, err
	}
	return Answer{Elapsed: time.Since(start)}, nil
}

// readErrQueue takes one entry off the socket's error queue; ok false when
// it is empty.
func readErrQueue(fd int) (Answer, bool, error) {
	buf := make([]byte, 1500)
	oob := make([]byte, 512)
	_, oobn, _, _, err := unix.Recvmsg(fd, buf, oob, unix.MSG_ERRQUEUE|unix.MSG_DONTWAIT)
	if err == unix.EAGAIN {
		return Answer{}, false, nil
	}
	if err != nil {
		return Answer{}, false, fmt.Errorf("recvmsg MSG_ERRQUEUE: %w", err)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil {
		return Answer{}, false, fmt.Errorf("error queue: %w", err)
	}
	for _, m := range msgs {
		if !(m.Header.Level == unix.SOL_IP && m.Header.Type == unix.IP_RECVERR) &&
			!(m.Header.Level == unix.SOL_IPV6 && m.Header.Type == unix.IPV6_RECVERR) {
			continue
		}
		return parseExtendedErr(m.Data)
	}
	return Answer{}, false, errors.New("error queue entry without an extended error")
}

// parseExtendedErr reads struct sock_extended_err and the offender's
// address behind it (SO_EE_OFFENDER).
func parseExtendedErr(d []byte) (Answer, bool, error) {
	const size = 16 // sizeof(struct sock_extended_err)
	if len(d) < size {
		return Answer{}, false, fmt.Errorf("extended error of %d bytes", len(d))
	}
	ans := Answer{
		Errno:  syscall.Errno(binary.NativeEndian.Uint32(d[0:])),
		Queued: true,
		Origin: d[4],
		Type:   d[5],
		Code:   d[6],
	}
	off := d[size:]
	if len(off) >= 2 {
		switch binary.NativeEndian.Uint16(off) {
		case unix.AF_INET:
			if len(off) >= 8 {
				ans.Offender = netip.AddrFrom4([4]byte(off[4:8]))
			}
		case unix.AF_INET6:
			if len(off) >= 24 {
				ans.Offender = netip.AddrFrom16([16]byte(off[8:24]))
			}
		}
	}
	return ans, true, nil
}
