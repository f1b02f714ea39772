// SPDX-License-Identifier: Apache-2.0

package netlab

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

const (
	agentEnv     = "NTF_NETLAB_AGENT"
	hostNetnsEnv = "NTF_NETLAB_HOST_NETNS"
)

// ServeAgent makes a program that starts agents (StartAgent starts the
// running executable again) serve as one: when this process was started as
// an agent, it serves probes on stdin and stdout and exits; otherwise it
// returns at once. Call it first thing in main or TestMain.
func ServeAgent() {
	uid := os.Getenv(agentEnv)
	if uid == "" {
		return
	}
	if err := runAgent(uid, os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "agent:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// Agent is a process inside a namespace running as a given uid; it opens
// sockets on request. Its sockets belong to that uid, as a real user's would.
type Agent struct {
	UID uint32
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Scanner
}

// StartAgent starts an agent in ns as uid (its gid is the same number):
// the running executable again, which must call ServeAgent first. Close
// stops it.
func StartAgent(ns *NS, uid uint32) (*Agent, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	// Started as root inside the namespace; the agent drops to uid itself
	// before it opens any socket (the owner is fixed at socket creation).
	return startAgent(ns.Command(exe), uid)
}

// startAgent starts cmd, the running executable, as an agent that drops
// to uid.
func startAgent(cmd *exec.Cmd, uid uint32) (*Agent, error) {
	host, err := HostNetnsEnv()
	if err != nil {
		return nil, err
	}
	cmd.Env = append(os.Environ(), agentEnv+"="+strconv.FormatUint(uint64(uid), 10), host)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("agent uid %d: %w", uid, err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("agent uid %d: %w", uid, err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("agent uid %d: %w", uid, err)
	}
	a := &Agent{UID: uid, cmd: cmd, in: in, out: bufio.NewScanner(out)}
	if _, err := a.call("hello"); err != nil {
		a.Close()
		return nil, fmt.Errorf("agent uid %d: %w", uid, err)
	}
	return a, nil
}

// Close ends the agent (its input closes) and waits for it to exit.
func (a *Agent) Close() error {
	a.in.Close()
	return a.cmd.Wait()
}

// ErrTimeout means nothing came back: the packet was dropped on the way.
var ErrTimeout = errors.New("timeout")

// ErrDropped means the sending device refused the packet: a packet socket
// learns so when tc drops its frame.
var ErrDropped = errors.New("dropped on transmit")

// ErrRefused means the peer answered with a reset or ICMP error: the packet
// got through.
var ErrRefused = errors.New("refused")

// ErrRejected means the sender was told that its packet is administratively
// prohibited (EHOSTUNREACH, or EACCES over IPv6): the filter refused it and
// answered (SPEC §1 rule 4).
var ErrRejected = errors.New("rejected")

func (a *Agent) call(req string) (string, error) {
	if _, err := fmt.Fprintln(a.in, req); err != nil {
		return "", fmt.Errorf("agent: %w", err)
	}
	if !a.out.Scan() {
		return "", fmt.Errorf("agent uid %d exited: %v", a.UID, a.out.Err())
	}
	resp := a.out.Text()
	switch {
	case strings.HasPrefix(resp, "ok"):
		return strings.TrimSpace(strings.TrimPrefix(resp, "ok")), nil
	case resp == "timeout":
		return "", ErrTimeout
	case resp == "refused":
		return "", ErrRefused
	case resp == "dropped":
		return "", ErrDropped
	case resp == "rejected":
		return "", ErrRejected
	}
	return "", fmt.Errorf("agent uid %d: %s", a.UID, resp)
}

// TCP connects to dst:port and closes.
func (a *Agent) TCP(dst netip.Addr, port uint16, timeout time.Duration) error {
	_, err := a.call(fmt.Sprintf("tcp %s %d", netip.AddrPortFrom(dst, port), timeout.Milliseconds()))
	return err
}

// UDP sends a datagram to dst:port and waits for it to be echoed.
func (a *Agent) UDP(dst netip.Addr, port uint16, timeout time.Duration) error {
	_, err := a.call(fmt.Sprintf("udp %s %d", netip.AddrPortFrom(dst, port), timeout.Milliseconds()))
	return err
}

// Stream sends n datagrams to dst:port, paced, and returns how many left
// the socket. A filter drops silently, so the receiver's count tells.
func (a *Agent) Stream(dst netip.Addr, port uint16, n int) (int, error) {
	resp, err := a.call(fmt.Sprintf("stream %s %d", netip.AddrPortFrom(dst, port), n))
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(resp)
}

// Burst sends n datagrams to dst:port as fast as the socket takes them and
// returns how many it took: a flood, for what must hold under one.
func (a *Agent) Burst(dst netip.Addr, port uint16, n int) (int, error) {
	resp, err := a.call(fmt.Sprintf("burst %s %d", netip.AddrPortFrom(dst, port), n))
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(resp)
}

// BurstBatched sends n 64-byte datagrams to dst:port as fast as the
// socket takes them, batch (1 or 64) to a sendmmsg(2) call, and returns how
// many it took. A batch of 1 enters the kernel once a datagram, like
// iperf3's writes; one of 64, once for 64 datagrams.
func (a *Agent) BurstBatched(dst netip.Addr, port uint16, n, batch int) (int, error) {
	resp, err := a.call(fmt.Sprintf("mburst%d %s %d", batch, netip.AddrPortFrom(dst, port), n))
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(resp)
}

// Pid is the agent's process id, e.g. to move it into a cgroup before it
// opens sockets.
func (a *Agent) Pid() int { return a.cmd.Process.Pid }

// Send sends one datagram to dst:port without waiting for anything and
// returns the source port it left from.
func (a *Agent) Send(dst netip.Addr, port uint16) (uint16, error) {
	resp, err := a.call(fmt.Sprintf("send %s 0", netip.AddrPortFrom(dst, port)))
	if err != nil {
		return 0, err
	}
	p, err := strconv.ParseUint(resp, 10, 16)
	return uint16(p), err
}

func runAgent(uidText string, in io.Reader, out io.Writer) error {
	uid, err := strconv.Atoi(uidText)
	if err != nil {
		return err
	}
	if err := RefuseHostNetns(); err != nil {
		return err
	}
	if err := DropTo(uid, uid); err != nil {
		return err
	}
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		fmt.Fprintln(out, serve(sc.Text()))
	}
	return sc.Err()
}

// DropTo makes the process uid and gid for good, with no supplementary
// groups, and checks that it is. Senders call it before they open a
// socket: a socket's owner is fixed when it is made.
func DropTo(uid, gid int) error {
	if err := syscall.Setgroups(nil); err != nil {
		return fmt.Errorf("setgroups: %w", err)
	}
	if err := syscall.Setresgid(gid, gid, gid); err != nil {
		return fmt.Errorf("setresgid %d: %w", gid, err)
	}
	if err := syscall.Setresuid(uid, uid, uid); err != nil {
		return fmt.Errorf("setresuid %d: %w", uid, err)
	}
	if os.Getuid() != uid || os.Geteuid() != uid {
		return fmt.Errorf("still uid %d after dropping to %d", os.Geteuid(), uid)
	}
	return nil
}

// HostNetnsEnv is the environment entry that hands a sender started from
// this process the network namespace it must refuse: this process's.
func HostNetnsEnv() (string, error) {
	host, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		return "", fmt.Errorf("cannot tell network namespace: %w", err)
	}
	return hostNetnsEnv + "=" + host, nil
}

// RefuseHostNetns refuses to run in the network namespace of the process
// that started this sender (handed over by HostNetnsEnv: the host's,
// normally) or in PID 1's, where that can be read. Senders call it first,
// so that a mistake cannot put test traffic on the host. It judges the
// calling thread's namespace: a sender may enter others (setns) on a
// locked thread.
func RefuseHostNetns() error {
	self, err := os.Readlink("/proc/thread-self/ns/net")
	if err != nil {
		return fmt.Errorf("cannot tell network namespace: %w", err)
	}
	host := os.Getenv(hostNetnsEnv)
	if host == "" {
		return errors.New("refusing to run: the starting process's network namespace is unknown")
	}
	init, _ := os.Readlink("/proc/1/ns/net")
	if self == host || self == init {
		return errors.New("refusing to send test traffic from the host's network namespace")
	}
	return nil
}

func serve(req string) string {
	var op, target string
	var ms int
	if req == "hello" {
		return "ok"
	}
	if strings.HasPrefix(req, "raw ") {
		var iface string
		var frame []byte
		if _, err := fmt.Sscanf(req, "raw %s %x", &iface, &frame); err != nil {
			return "error bad request: " + err.Error()
		}
		return result(sendRaw(iface, frame))
	}
	if _, err := fmt.Sscanf(req, "%s %s %d", &op, &target, &ms); err != nil {
		return "error bad request: " + err.Error()
	}
	dst, err := netip.ParseAddrPort(target)
	if err != nil {
		return "error " + err.Error()
	}
	if err := CheckSource(dst, SourceRanges()...); err != nil {
		return "error " + err.Error()
	}
	timeout := time.Duration(ms) * time.Millisecond
	switch op {
	case "stream":
		return stream(dst, ms, 100*time.Microsecond)
	case "burst":
		return stream(dst, ms, 0)
	case "mburst1":
		return burstBatched(dst, ms, 1)
	case "mburst64":
		return burstBatched(dst, ms, 64)
	case "connecterr", "udperr", "pingerr":
		return serveAnswer(op, dst, timeout)
	case "tcp":
		return result(probeTCP(dst, timeout))
	case "udp":
		return result(probeUDP(dst, timeout))
	case "sendtcp":
		return sendTCP(dst)
	case "sendicmp":
		return sendICMP(dst.Addr())
	case "sendbig":
		return sendBig(dst, ms)
	case "send":
		c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(dst))
		if err != nil {
			return "error " + err.Error()
		}
		defer c.Close()
		if _, err := c.Write([]byte("probe")); err != nil {
			return "error " + err.Error()
		}
		return fmt.Sprintf("ok %d", c.LocalAddr().(*net.UDPAddr).Port)
	}
	return "error unknown op " + op
}

// stream sends n datagrams to dst from one socket, paced by gap so that a
// veth's backlog never overflows: a datagram lost on the way must mean the
// filter dropped it. It returns how many the kernel accepted.
func stream(dst netip.AddrPort, n int, gap time.Duration) string {
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(dst))
	if err != nil {
		return "error " + err.Error()
	}
	defer c.Close()
	sent := 0
	for i := range n {
		if _, err := c.Write([]byte(fmt.Sprintf("stream %d", i))); err == nil {
			sent++
		}
		if gap > 0 {
			time.Sleep(gap)
		}
	}
	return fmt.Sprintf("ok %d", sent)
}

// mmsghdr is struct mmsghdr of sendmmsg(2), which x/sys/unix lacks.
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
	_   [4]byte
}

// burstBatched sends n 64-byte datagrams to dst from one socket, batch to
// each sendmmsg(2) call: the kernel is entered once a batch. It returns how
// many the kernel accepted.
func burstBatched(dst netip.AddrPort, n, batch int) string {
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(dst))
	if err != nil {
		return "error " + err.Error()
	}
	defer c.Close()
	raw, err := c.SyscallConn()
	if err != nil {
		return "error " + err.Error()
	}
	payload := make([]byte, 64)
	iov := unix.Iovec{Base: &payload[0]}
	iov.SetLen(len(payload))
	msgs := make([]mmsghdr, batch)
	for i := range msgs {
		msgs[i].hdr.Iov = &iov
		msgs[i].hdr.SetIovlen(1)
	}
	sent := 0
	var serr error
	err = raw.Write(func(fd uintptr) bool {
		for sent < n {
			batch := min(len(msgs), n-sent)
			r, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&msgs[0])), uintptr(batch), 0, 0, 0)
			if errno == unix.EAGAIN {
				return false // wait until the socket takes more
			}
			if errno != 0 {
				serr = errno
				return true
			}
			sent += int(r)
		}
		return true
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		return "error " + err.Error()
	}
	return fmt.Sprintf("ok %d", sent)
}

func result(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.EACCES):
		return "rejected"
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ENETUNREACH):
		return "refused"
	case errors.Is(err, syscall.ENOBUFS):
		return "dropped"
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "timeout"
	}
	return "error " + err.Error()
}

func probeTCP(dst netip.AddrPort, timeout time.Duration) error {
	c, err := net.DialTimeout("tcp", dst.String(), timeout)
	if err != nil {
		return err
	}
	return c.Close()
}

// probeUDP sends a datagram and waits for the echo. The socket is not
// connected: the echo comes from the server's own address, not from the
// (AnyIP) address it was sent to.
func probeUDP(dst netip.AddrPort, timeout time.Duration) error {
	c, err := net.ListenUDP("udp", nil)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.WriteToUDPAddrPort([]byte("echo"), dst); err != nil {
		return err
	}
	buf := make([]byte, 16)
	n, _, err := c.ReadFromUDPAddrPort(buf)
	if err != nil {
		return err
	}
	if string(buf[:n]) != "echo" {
		return fmt.Errorf("unexpected reply %q", buf[:n])
	}
	return nil
}
