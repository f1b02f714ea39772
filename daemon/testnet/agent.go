// SPDX-License-Identifier: Apache-2.0

package testnet

import (
	"crypto/rand"
	"encoding/hex"
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

// Cgroup is a cgroup v2 directory a test made (see netlab.Cgroup).
type Cgroup = netlab.Cgroup

// NewCgroup makes a cgroup v2 directory of the test's own below the
// cgroup2 mount ("/ntft-1a2b3c4d"), removed with everything below it when
// the test ends. Its Path is what cgroup: names.
func NewCgroup(t testing.TB) *Cgroup {
	t.Helper()
	top, err := netlab.NewCgroup("ntft-" + randomHex())
	check(t, err)
	t.Cleanup(func() {
		if err := top.Remove(); err != nil {
			t.Error(err)
		}
	})
	return top
}

// SubCgroup makes the directory rel ("a/b") below c.
func SubCgroup(t testing.TB, c *Cgroup, rel string) *Cgroup {
	t.Helper()
	sub, err := netlab.NewCgroup(c.Path + "/" + rel)
	check(t, err)
	return sub
}

// StartAgentInCgroup starts an agent in ns as uid inside cgroup c from its
// first instruction. It is stopped when the test ends.
func StartAgentInCgroup(t testing.TB, ns *NS, uid uint32, c *Cgroup) *Agent {
	t.Helper()
	a, err := netlab.StartAgentInCgroup(ns.NS, uid, c)
	check(t, err)
	closeAtEnd(t, a)
	return a
}

func randomHex() string {
	b := make([]byte, 4)
	rand.Read(b)
	return hex.EncodeToString(b)
}
