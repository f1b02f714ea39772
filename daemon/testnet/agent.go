// SPDX-License-Identifier: Apache-2.0

package testnet

import (
	"os"
	"testing"

	"github.com/nettcfilter/net-tc-filter/internal/netlab"
)

// Main is TestMain for packages that start agents: a test binary started as
// an agent serves probes instead of running tests.
func Main(m *testing.M) {
	netlab.ServeAgent()
	code := m.Run()
	removeBinary()
	os.Exit(code)
}

// Agent is a process inside a namespace running as a given uid, opening
// sockets on request (see netlab.Agent).
type Agent = netlab.Agent

// ErrDropped means the sending device refused the packet (see
// netlab.ErrDropped).
var ErrDropped = netlab.ErrDropped

// StartAgent starts an agent in ns as uid (its gid is the same number).
// It is stopped when the test ends.
func StartAgent(t testing.TB, ns *NS, uid uint32) *Agent {
	t.Helper()
	a, err := netlab.StartAgent(ns.NS, uid)
	check(t, err)
	closeAtEnd(t, a)
	return a
}

// Capture receives every frame that arrives on iface in ns, until the test
// ends: proof that a frame got through.
func Capture(t testing.TB, ns *NS, iface string) <-chan []byte {
	t.Helper()
	ch, c, err := netlab.Capture(ns.NS, iface)
	if err != nil {
		t.Fatal(err)
	}
	closeAtEnd(t, c)
	return ch
}
