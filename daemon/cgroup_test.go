// SPDX-License-Identifier: Apache-2.0

package daemon

import (
	"errors"
	"os"
	"sync"
	"syscall"
	"testing"

	"github.com/nettcfilter/net-tc-filter/daemon/testnet"
	"github.com/nettcfilter/net-tc-filter/internal/netlab"
)

// A service restarted 20 times while the daemon is frozen (SIGSTOP): the
// kernel alone must judge each new cgroup's first datagram as the
// service's, and a process of the same uid in another cgroup stays
// denied. The real binary, a cgroup: principal.
func TestCgroupRestartWhileDaemonStopped(t *testing.T) {
	testnet.RequireRoot(t)
	top := testnet.NewCgroup(t)
	other := testnet.SubCgroup(t, top, "other.service")
	svc := top.Path + "/svc.service"
	b := newBed(t, policyYAML([]string{"cgroup:" + svc}, ""))
	d := b.start(t, testnet.DaemonOptions{})
	if err := d.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer d.Signal(syscall.SIGCONT)

	const restarts = 20
	dropped, passed := 0, 0
	for i := range restarts {
		dir := testnet.SubCgroup(t, top, "svc.service")
		var wg sync.WaitGroup
		var twinErr error
		wg.Go(func() {
			twin := testnet.StartAgentInCgroup(t, b.tp.Client, alice, other)
			twinErr = twin.UDP(prot4, port, testnet.DenyTimeout)
			twin.Close()
		})
		a := testnet.StartAgentInCgroup(t, b.tp.Client, alice, dir)
		if err := a.UDP(prot4, port, testnet.AllowTimeout); err != nil {
			dropped++
			t.Errorf("restart %d: the service's first datagram: %v", i, err)
		}
		a.Close()
		wg.Wait()
		if !errors.Is(twinErr, netlab.ErrTimeout) {
			passed++
			t.Errorf("restart %d: the other service's datagram: want dropped, got %v", i, twinErr)
		}
		if err := os.Remove(dir.Dir()); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d restarts with the daemon stopped: %d first datagrams wrongly dropped, %d wrongly passed", restarts, dropped, passed)
	if err := d.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	// Thawed, it still enforces: the cgroup made while it was stopped
	// is the service's.
	dir := testnet.SubCgroup(t, top, "svc.service")
	testnet.Expect(t, testnet.StartAgentInCgroup(t, b.tp.Client, alice, dir), prot4, port, allowed)
	testnet.Expect(t, testnet.StartAgentInCgroup(t, b.tp.Client, alice, other), prot4, port, denied)
}
