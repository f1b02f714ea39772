package testnet

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
	"testing"
	"time"
)

const (
	agentEnv     = "NTF_TESTNET_AGENT"
	hostNetnsEnv = "NTF_TESTNET_HOST_NETNS"
)

// Main is TestMain for packages that start agents: a test binary started as
// an agent serves probes instead of running tests.
func Main(m *testing.M) {
	if uid := os.Getenv(agentEnv); uid != "" {
		if err := runAgent(uid, os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "agent:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	code := m.Run()
	if build.dir != "" {
		os.RemoveAll(build.dir) // the daemon Binary built, never a prebuilt one
	}
	os.Exit(code)
}

// Agent is a process inside a namespace running as a given uid; it opens
// sockets on request. Its sockets belong to that uid, as a real user's would.
type Agent struct {
	UID uint32
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Scanner
}

// StartAgent starts an agent in ns as uid (its gid is the same number).
// It is stopped when the test ends.
func StartAgent(t testing.TB, ns *NS, uid uint32) *Agent {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// Started as root inside the namespace; the agent drops to uid itself
	// before it opens any socket (the owner is fixed at socket creation).
	return startAgent(t, ns.Command(exe), uid)
}

// startAgent starts cmd, the test binary, as an agent that drops to uid.
func startAgent(t testing.TB, cmd *exec.Cmd, uid uint32) *Agent {
	t.Helper()
	host, err := HostNetnsEnv()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Env = append(os.Environ(), agentEnv+"="+strconv.FormatUint(uint64(uid), 10), host)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	a := &Agent{UID: uid, cmd: cmd, in: in, out: bufio.NewScanner(out)}
	t.Cleanup(func() {
		in.Close()
		cmd.Wait()
	})
	if _, err := a.call("hello"); err != nil {
		t.Fatalf("agent uid %d: %v", uid, err)
	}
	return a
}

// ErrTimeout means nothing came back: the packet was dropped on the way.
var ErrTimeout = errors.New("timeout")

// ErrDropped means the sending device refused the packet: a packet socket
// learns so when tc drops its frame.
var ErrDropped = errors.New("dropped on transmit")

// ErrRefused means the peer answered with a reset or ICMP error: the packet
// got through.
var ErrRefused = errors.New("refused")

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
	if err := syscall.Setgroups(nil); err != nil {
		return fmt.Errorf("setgroups: %w", err)
	}
	if err := syscall.Setresgid(uid, uid, uid); err != nil {
		return fmt.Errorf("setresgid: %w", err)
	}
	if err := syscall.Setresuid(uid, uid, uid); err != nil {
		return fmt.Errorf("setresuid: %w", err)
	}
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		fmt.Fprintln(out, serve(sc.Text()))
	}
	return sc.Err()
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
	if err := checkSource(dst); err != nil {
		return "error " + err.Error()
	}
	timeout := time.Duration(ms) * time.Millisecond
	switch op {
	case "stream":
		return stream(dst, ms, 100*time.Microsecond)
	case "burst":
		return stream(dst, ms, 0)
	case "tcp":
		return result(probeTCP(dst, timeout))
	case "udp":
		return result(probeUDP(dst, timeout))
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

// checkSource refuses a destination the kernel would reach from an address
// outside the test ranges: such a packet could leave the machine.
func checkSource(dst netip.AddrPort) error {
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(dst))
	if err != nil {
		return fmt.Errorf("no route to %s: %w", dst, err)
	}
	defer c.Close()
	src := c.LocalAddr().(*net.UDPAddr).AddrPort().Addr()
	if !InSourceRange(src) {
		return fmt.Errorf("refusing: source %s for %s is outside the test ranges", src, dst)
	}
	return nil
}

func result(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
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
