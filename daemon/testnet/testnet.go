// SPDX-License-Identifier: Apache-2.0

// Package testnet is the testing.TB layer over internal/netlab for the
// privileged tests: it skips or fails a test that lacks root, closes what
// it makes when the test ends and fails the test on a setup error, so that
// a test reads as what it checks. Everything that builds namespaces,
// veths, agents, daemons, journals and buses is netlab's; programs that
// ship (the benchmark) use netlab and never this package, which imports
// testing.
package testnet

import (
	"io"
	"net"
	"os"
	"testing"

	"github.com/nettcfilter/net-tc-filter/internal/netlab"
)

// RequireRoot skips a privileged test when not root, except in CI, where a
// missing privilege is a failure: privileged tests must run there.
func RequireRoot(t testing.TB) {
	t.Helper()
	err := netlab.CheckRoot()
	if err == nil {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("privileged test %v, and CI=true forbids skipping it", err)
	}
	t.Skip(err)
}

// check fails the test on a setup error.
func check(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// closeAtEnd closes c when the test ends.
func closeAtEnd(t testing.TB, c io.Closer) {
	t.Cleanup(func() { c.Close() })
}

// NS is a named network namespace.
type NS struct {
	*netlab.NS
}

// NewNS creates a network namespace, removed when the test ends.
func NewNS(t testing.TB, role string) *NS {
	t.Helper()
	n, err := netlab.NewNS("ntft-" + role)
	check(t, err)
	closeAtEnd(t, n)
	return &NS{n}
}

// IP runs `ip -n NS args...`.
func (n *NS) IP(t testing.TB, args ...string) string {
	t.Helper()
	out, err := n.NS.IP(args...)
	check(t, err)
	return out
}

// Exec runs a command inside the namespace.
func (n *NS) Exec(t testing.TB, args ...string) string {
	t.Helper()
	out, err := n.NS.Exec(args[0], args[1:]...)
	check(t, err)
	return out
}

// MustDo is Do that fails the test on error.
func (n *NS) MustDo(t testing.TB, fn func() error) {
	t.Helper()
	if err := n.Do(fn); err != nil {
		t.Fatal(err)
	}
}

// Index is the ifindex of the namespace's interface name.
func (n *NS) Index(t testing.TB, name string) int {
	t.Helper()
	var idx int
	n.MustDo(t, func() error {
		ifc, err := net.InterfaceByName(name)
		if err != nil {
			return err
		}
		idx = ifc.Index
		return nil
	})
	return idx
}

// Rename renames an interface of the namespace (see netlab.NS.Rename).
func (n *NS) Rename(t testing.TB, from, to string) {
	t.Helper()
	if err := n.NS.Rename(from, to); err != nil {
		t.Fatal(err)
	}
}

// ServeTCP accepts TCP connections on port in the namespace and closes each
// at once, until the test ends.
func (n *NS) ServeTCP(t testing.TB, port uint16) {
	t.Helper()
	c, err := n.NS.ServeTCP(port)
	check(t, err)
	closeAtEnd(t, c)
}

// Run runs a command and fails the test when it fails.
func Run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := netlab.Output(name, args...)
	check(t, err)
	return out
}

// KernelRelease is `uname -r` and its major and minor numbers.
func KernelRelease(t testing.TB) (string, int, int) {
	t.Helper()
	rel, major, minor, err := netlab.KernelRelease()
	if err != nil {
		t.Fatal(err)
	}
	return rel, major, minor
}

// KernelHasTCX says whether this kernel has tcx (see netlab.KernelHasTCX).
func KernelHasTCX(t testing.TB) bool {
	t.Helper()
	has, err := netlab.KernelHasTCX()
	check(t, err)
	return has
}
