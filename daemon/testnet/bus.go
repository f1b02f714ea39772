// SPDX-License-Identifier: Apache-2.0

package testnet

import (
	"testing"

	"github.com/nettcfilter/net-tc-filter/internal/netlab"
)

// Bus is a dbus-daemon of the test's own, configured like Debian's system
// bus (see netlab.Bus).
type Bus struct {
	*netlab.Bus
}

// StartBus starts a system-like bus that includes the given policy files
// (the shipped one, normally). It stops when the test ends.
func StartBus(t testing.TB, policyFiles ...string) *Bus {
	t.Helper()
	b, err := netlab.StartBus(policyFiles...)
	check(t, err)
	closeAtEnd(t, b)
	return &Bus{b}
}

// StartOpenBus starts a bus without any access control, to test what the
// service does on its own. It stops when the test ends.
func StartOpenBus(t testing.TB) *Bus {
	t.Helper()
	b, err := netlab.StartOpenBus()
	check(t, err)
	closeAtEnd(t, b)
	return &Bus{b}
}

// Start starts the bus daemon again, after Stop, and waits until it
// listens.
func (b *Bus) Start(t testing.TB) {
	t.Helper()
	if err := b.Bus.Start(); err != nil {
		t.Fatal(err)
	}
}
