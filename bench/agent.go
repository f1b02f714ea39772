// SPDX-License-Identifier: Apache-2.0

package bench

import (
	"errors"
	"flag"
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

	"github.com/nettcfilter/net-tc-filter/internal/netlab"
)

// The harness runs its senders as real users in the client namespace by
// starting itself again ("agent" mode) under nsenter. The agent refuses to
// run in the harness's own or PID 1's network namespace and refuses any
// destination the kernel would send from outside LinkNet, then drops to the
// user before it opens a socket (a socket's owner is fixed when it is made).
// Its alternate operation, which needs a socket in each of several
// namespaces, makes them with the user's file system ids (what the kernel
// records as the owner) and then drops to the user before it sends.

// AgentCommand is the first argument that makes the harness an agent.
const AgentCommand = "agent"

// User is a local account the benchmark sends as.
type User struct {
	Name     string
	UID, GID int
}

// agentCmd prepares the harness itself as an agent in ns, as u.
func agentCmd(ns *netlab.NS, u User, args ...string) (*exec.Cmd, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find the harness executable: %w", err)
	}
	host, err := netlab.HostNetnsEnv()
	if err != nil {
		return nil, err
	}
	all := append([]string{AgentCommand, "-uid", strconv.Itoa(u.UID), "-gid", strconv.Itoa(u.GID)}, args...)
	cmd := ns.Command(exe, all...)
	cmd.Env = append(os.Environ(), host)
	return cmd, nil
}

// AgentMain is the agent: `agent -uid U -gid G send -dst A:P ...` sends
// datagrams and prints how many the socket took; `agent -uid U -gid G exec
// -dst A -- PROG ARGS` checks dst, drops to the user and execs PROG (iperf3);
// `agent -uid U -gid G alternate -dst A:P -netns N1,N2,...` sends from one
// socket in each namespace in turn (see alternate).
func AgentMain(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("agent", flag.ContinueOnError)
	uid := fs.Int("uid", -1, "user id to send as")
	gid := fs.Int("gid", -1, "group id to send as")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *uid < 0 || *gid < 0 || fs.NArg() == 0 {
		return errors.New("agent: need -uid, -gid and an operation")
	}
	if err := netlab.RefuseHostNetns(); err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	op, rest := fs.Arg(0), fs.Args()[1:]
	ofs := flag.NewFlagSet("agent "+op, flag.ContinueOnError)
	dstText := ofs.String("dst", "", "destination address:port (exec: address)")
	n := ofs.Int("n", 0, "send: datagrams to send at most (0: until -dur)")
	gap := ofs.Duration("gap", 0, "send: pause between datagrams (0: as fast as the socket takes them)")
	dur := ofs.Duration("dur", 0, "send: stop after this long (0: after -n)")
	size := ofs.Int("size", 64, "send: UDP payload bytes")
	ports := ofs.Int("ports", 1, "send: cycle the destination port over this many ports from -dst's (distinct decisions for the log)")
	netnsList := ofs.String("netns", "", "alternate: comma-separated client namespaces, one socket in each")
	slice := ofs.Duration("slice", 20*time.Millisecond, "alternate: how long each socket sends before the next one's turn")
	cpu := ofs.Int("cpu", -1, "alternate: CPU to send from (-1: any)")
	if err := ofs.Parse(rest); err != nil {
		return err
	}
	dst, err := parseDst(*dstText)
	if err != nil {
		return err
	}
	if op == "alternate" {
		if *dur <= 0 || *slice <= 0 || *netnsList == "" {
			return errors.New("agent alternate: need -netns, -dur and -slice")
		}
		return alternate(stdout, strings.Split(*netnsList, ","), dst, *uid, *gid, *size, *slice, *dur, *cpu)
	}
	if err := checkSource(dst); err != nil {
		return err
	}
	if err := netlab.DropTo(*uid, *gid); err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	switch op {
	case "send":
		if *n <= 0 && *dur <= 0 {
			return errors.New("agent send: need -n or -dur")
		}
		tried, sent, err := send(dst, *n, *gap, *dur, *size, *ports)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "tried %d sent %d\n", tried, sent)
		return nil
	case "exec":
		if ofs.NArg() == 0 {
			return errors.New("agent exec: no program")
		}
		path, err := exec.LookPath(ofs.Arg(0))
		if err != nil {
			return fmt.Errorf("agent exec: %w", err)
		}
		return syscall.Exec(path, ofs.Args(), os.Environ())
	}
	return fmt.Errorf("agent: unknown operation %q", op)
}

func parseDst(s string) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("agent: bad -dst %q", s)
	}
	return netip.AddrPortFrom(a, 9), nil
}

// checkSource refuses a destination outside the protected block, or one
// the kernel would reach from an address outside LinkNet.
func checkSource(dst netip.AddrPort) error {
	if !ProtectedNet.Contains(dst.Addr()) {
		return fmt.Errorf("agent: refusing destination %s outside %s", dst.Addr(), ProtectedNet)
	}
	if err := netlab.CheckSource(dst, LinkNet); err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	return nil
}

// send writes datagrams to dst (cycling over ports destination ports)
// from one socket and returns how many writes it tried and how many the
// socket took; ENOBUFS and EPERM (netfilter's drop, reported to the
// sender) do not stop it.
func send(dst netip.AddrPort, n int, gap, dur time.Duration, size, ports int) (tried, sent int, err error) {
	c, err := net.ListenUDP("udp", nil)
	if err != nil {
		return 0, 0, fmt.Errorf("agent send: %w", err)
	}
	defer c.Close()
	ports = max(ports, 1)
	if int(dst.Port())+ports > 65536 {
		return 0, 0, fmt.Errorf("agent send: %d ports from %d", ports, dst.Port())
	}
	buf := make([]byte, max(size, 8))
	var deadline time.Time
	if dur > 0 {
		deadline = time.Now().Add(dur)
	}
	for i := 0; n <= 0 || i < n; i++ {
		if dur > 0 && i%64 == 0 && time.Now().After(deadline) {
			break
		}
		tried++
		to := netip.AddrPortFrom(dst.Addr(), dst.Port()+uint16(i%ports))
		if _, err := c.WriteToUDPAddrPort(buf, to); err == nil {
			sent++
		}
		if gap > 0 {
			time.Sleep(gap)
		}
	}
	return tried, sent, nil
}
