// SPDX-License-Identifier: Apache-2.0

package netlab_test

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/nettcfilter/net-tc-filter/daemon/testnet"
	"github.com/nettcfilter/net-tc-filter/internal/netlab"
)

func TestMain(m *testing.M) { testnet.Main(m) }

// A lab without testing.TB: what it builds carries traffic as the user it
// claims, and Close leaves nothing behind, which a program (the bench)
// depends on since no test cleans up after it.
func TestTopologyCarriesTrafficAndCloses(t *testing.T) {
	testnet.RequireRoot(t)
	tp, err := netlab.NewTopology(netlab.Options{Container: true, Tun: true})
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Close()
	names := []string{tp.Client.Name, tp.Server.Name, tp.Container.Name}
	const port = 7070
	tcp, err := tp.Server.ServeTCP(port)
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	count, err := tp.Server.CountUDP(port)
	if err != nil {
		t.Fatal(err)
	}
	defer count.Close()

	a, err := netlab.StartAgent(tp.Client, 1001)
	if err != nil {
		t.Fatal(err)
	}
	// AnyIP: any address is the server's.
	for _, dst := range []netip.Addr{tp.Server4, tp.Server6, netip.MustParseAddr("203.0.113.9")} {
		if err := a.TCP(dst, port, 3*time.Second); err != nil {
			t.Errorf("tcp to %s: %v", dst, err)
		}
	}
	sent, err := a.Stream(tp.Server4, port, 50)
	if err != nil || sent != 50 {
		t.Fatalf("stream: %d sent, %v", sent, err)
	}
	deadline := time.Now().Add(3 * time.Second)
	for count.Count() < 50 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := count.Count(); got != 50 || count.First().IsZero() {
		t.Errorf("counted %d datagrams (first at %v), want 50", got, count.First())
	}
	// The agent refuses a destination it would reach from a source outside
	// the test ranges (here the container's veth, which stays in the lab
	// either way).
	if _, err := tp.Client.IP("addr", "add", "100.64.9.1/24", "dev", "ctr0"); err != nil {
		t.Fatal(err)
	}
	if err := a.TCP(netip.MustParseAddr("100.64.9.2"), port, time.Second); err == nil || !strings.Contains(err.Error(), "refusing: source 100.64.9.1") {
		t.Errorf("tcp from 100.64.9.1: %v, want a refusal", err)
	}
	if err := a.Close(); err != nil {
		t.Errorf("agent exit: %v", err)
	}

	if err := tp.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	list, err := netlab.Output("ip", "netns", "list")
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if strings.Contains(list, n) {
			t.Errorf("namespace %s left after Close:\n%s", n, list)
		}
	}
}
