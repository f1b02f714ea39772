// SPDX-License-Identifier: Apache-2.0

// Package netlab builds throwaway network labs: named network namespaces,
// veth pairs, probe agents that send as real users, a daemon under test
// with its notify socket, a journald and a system bus of its own. The
// privileged tests (through daemon/testnet, a thin testing.TB layer on
// top) and the benchmark (bench) both build on it.
//
// It does not import testing, so that a shipped program may use it: every
// function returns its error and every resource has a Close that the
// caller owns.
//
// Safety: traffic only ever flows between namespaces created here. The
// probe agent refuses to run in the initial network namespace and refuses
// a source address outside the test ranges, so a mistake cannot leak
// packets off the machine.
package netlab

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"

	"github.com/vishvananda/netns"
)

// Test address ranges. Link nets use the benchmarking block (RFC 2544) and a
// ULA; nothing here is routable off the machine.
var (
	LinkNet4      = netip.MustParsePrefix("198.18.0.0/30")
	LinkNet6      = netip.MustParsePrefix("fd77::/64")
	ContainerNet4 = netip.MustParsePrefix("198.18.1.0/30")
	ContainerNet6 = netip.MustParsePrefix("fd77:1::/64")
	VLANNet4      = netip.MustParsePrefix("198.18.2.0/30")
	VLANNet6      = netip.MustParsePrefix("fd77:2::/64")
	TunNet4       = netip.MustParsePrefix("198.18.3.0/30")
)

// SourceRanges are the addresses the probe agent may send from: every
// test range above.
func SourceRanges() []netip.Prefix {
	return []netip.Prefix{LinkNet4, LinkNet6, ContainerNet4, ContainerNet6, VLANNet4, VLANNet6, TunNet4}
}

// CheckSource refuses a destination the kernel would reach from a source
// address outside ranges: such a packet could leave the machine. It asks
// the routing of the calling thread's network namespace.
func CheckSource(dst netip.AddrPort, ranges ...netip.Prefix) error {
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(dst))
	if err != nil {
		return fmt.Errorf("no route to %s: %w", dst, err)
	}
	defer c.Close()
	src := c.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap()
	for _, p := range ranges {
		if p.Contains(src) {
			return nil
		}
	}
	return fmt.Errorf("refusing: source %s for %s is outside %v", src, dst, ranges)
}

// ErrNotRoot says that the caller lacks the privileges a lab needs.
var ErrNotRoot = errors.New("needs root (CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN)")

// CheckRoot returns ErrNotRoot unless the process runs as root: namespaces,
// users, bpffs and BPF programs all need it.
func CheckRoot() error {
	if os.Geteuid() != 0 {
		return ErrNotRoot
	}
	return nil
}

// NS is a named network namespace.
type NS struct {
	Name string
}

// randomID is a short random name part, so that labs of concurrent runs
// never meet.
func randomID() string {
	b := make([]byte, 4)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// NewNS creates a network namespace named prefix-RANDOM with its loopback
// up. Close removes it.
func NewNS(prefix string) (*NS, error) {
	n := &NS{Name: prefix + "-" + randomID()}
	if _, err := Output("ip", "netns", "add", n.Name); err != nil {
		return nil, err
	}
	if _, err := n.IP("link", "set", "lo", "up"); err != nil {
		n.Close()
		return nil, err
	}
	return n, nil
}

// Close removes the namespace, and with it its interfaces, routes and
// rules.
func (n *NS) Close() error {
	_, err := Output("ip", "netns", "del", n.Name)
	return err
}

// Path is the namespace's bind mount, for nsenter --net=.
func (n *NS) Path() string { return "/run/netns/" + n.Name }

// IP runs `ip -n NS args...` and returns its output.
func (n *NS) IP(args ...string) (string, error) {
	return Output("ip", append([]string{"-n", n.Name}, args...)...)
}

// Exec runs a command inside the namespace and returns its output.
func (n *NS) Exec(name string, args ...string) (string, error) {
	return Run(n.Command(name, args...))
}

// Command prepares a command that runs inside the namespace. nsenter keeps
// /sys and bpffs as they are; `ip netns exec` would remount /sys and hide
// bpffs pins.
func (n *NS) Command(name string, args ...string) *exec.Cmd {
	return exec.Command("nsenter", append([]string{"--net=" + n.Path(), "--", name}, args...)...)
}

// Do runs fn on an OS thread that has entered the namespace. Sockets made
// and netlink/BPF calls done in fn act inside the namespace.
func (n *NS) Do(fn func() error) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return err
	}
	defer orig.Close()
	target, err := netns.GetFromName(n.Name)
	if err != nil {
		return fmt.Errorf("open netns %s: %w", n.Name, err)
	}
	defer target.Close()
	if err := netns.Set(target); err != nil {
		return fmt.Errorf("enter netns %s: %w", n.Name, err)
	}
	defer func() {
		if err := netns.Set(orig); err != nil {
			// A thread stuck in the wrong namespace must not be reused.
			panic(fmt.Sprintf("return from netns %s: %v", n.Name, err))
		}
	}()
	return fn()
}

// Output runs a command and returns its standard output.
func Output(name string, args ...string) (string, error) {
	return Run(exec.Command(name, args...))
}

// Run runs cmd and returns its standard output; the error says what ran
// and what it printed on stderr.
func Run(cmd *exec.Cmd) (string, error) {
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s: %w: %s", strings.Join(cmd.Args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// closers closes what a constructor made so far when a later step fails,
// last first.
type closers []func() error

func (c *closers) add(fn func() error) { *c = append(*c, fn) }

func (c closers) close() error {
	var errs []error
	for i := len(c) - 1; i >= 0; i-- {
		errs = append(errs, c[i]())
	}
	return errors.Join(errs...)
}
