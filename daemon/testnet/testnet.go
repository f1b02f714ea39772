// Package testnet builds throwaway network namespaces, veth pairs, users and
// traffic for the privileged tests, so that no test re-implements them.
//
// Safety: traffic only ever flows between namespaces created here. The probe
// agent refuses to run in the initial network namespace and refuses a source
// address outside the test ranges, so a mistake cannot leak packets off the
// machine.
package testnet

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

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

var sourceRanges = []netip.Prefix{LinkNet4, LinkNet6, ContainerNet4, ContainerNet6, VLANNet4, VLANNet6, TunNet4}

// InSourceRange reports whether a source address belongs to the test ranges.
func InSourceRange(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range sourceRanges {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// RequireRoot skips a privileged test when not root, except in CI, where a
// missing privilege is a failure: privileged tests must run there.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("privileged test needs root, and CI=true forbids skipping it")
	}
	t.Skip("needs root (CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN)")
}

// NS is a named network namespace.
type NS struct {
	Name string
}

// Path is the namespace's bind mount, for nsenter --net=.
func (n *NS) Path() string { return "/run/netns/" + n.Name }

// NewNS creates a network namespace, removed when the test ends.
func NewNS(t testing.TB, role string) *NS {
	t.Helper()
	b := make([]byte, 4)
	rand.Read(b)
	n := &NS{Name: fmt.Sprintf("ntft-%s-%s", role, hex.EncodeToString(b))}
	Run(t, "ip", "netns", "add", n.Name)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", n.Name).Run() })
	n.IP(t, "link", "set", "lo", "up")
	return n
}

// IP runs `ip -n NS args...`.
func (n *NS) IP(t testing.TB, args ...string) string {
	t.Helper()
	return Run(t, "ip", append([]string{"-n", n.Name}, args...)...)
}

// Exec runs a command inside the namespace (nsenter keeps /sys and bpffs as
// they are; `ip netns exec` would remount /sys and hide bpffs pins).
func (n *NS) Exec(t testing.TB, args ...string) string {
	t.Helper()
	return Run(t, "nsenter", append([]string{"--net=" + n.Path(), "--"}, args...)...)
}

// Command prepares a command that runs inside the namespace.
func (n *NS) Command(args ...string) *exec.Cmd {
	return exec.Command("nsenter", append([]string{"--net=" + n.Path(), "--"}, args...)...)
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

// MustDo is Do that fails the test on error.
func (n *NS) MustDo(t testing.TB, fn func() error) {
	t.Helper()
	if err := n.Do(fn); err != nil {
		t.Fatal(err)
	}
}

// Run runs a command and fails the test when it fails.
func Run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := Output(name, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Output runs a command and returns its standard output.
func Output(name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}
