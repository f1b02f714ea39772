// SPDX-License-Identifier: Apache-2.0

package daemon

import (
	"errors"
	"log/slog"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nettcfilter/net-tc-filter/daemon/policy"
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
		if err := a.UDP(prot4, port, netlab.Slowed(testnet.AllowTimeout)); err != nil {
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

// unitsAt resolves every unit to a directory below dir, as systemd would
// put it in a slice; users do not resolve.
type unitsAt struct{ dir string }

func (unitsAt) User(name string) (uint32, error) { return 0, policy.ErrUnknown }

func (unitsAt) Group(name string) ([]uint32, error) { return nil, policy.ErrUnknown }

func (u unitsAt) UnitCgroup(name string) (policy.UnitCgroup, error) {
	return policy.UnitCgroup{Path: u.dir + "/" + name, Exists: true}, nil
}

// Status lists the units of the live policy with the id their cgroup has
// now: a restart (the cgroup made again) shows as a new id, a stopped unit
// as none. In process, with a unit resolver of the test's.
func TestStatusUnits(t *testing.T) {
	testnet.RequireRoot(t)
	top := testnet.NewCgroup(t)
	svc, _, _ := runInProcess(t, "endpoints:\n  - x:\n      iface: [ntft-none0]\n      range: [192.0.2.7/32]\n      allow: [unit:agent.service]\non_stop: detach\n",
		unitsAt{top.Path}, time.Hour, nil)
	waitRunning(t, svc)
	unitID := func() uint64 {
		t.Helper()
		st := svc.Status()
		if len(st.Units) != 1 || st.Units[0].Name != "agent.service" || st.Units[0].Path != top.Path+"/agent.service" {
			t.Fatalf("status units %+v, want agent.service in %s", st.Units, top.Path)
		}
		return st.Units[0].ID
	}
	if id := unitID(); id != 0 {
		t.Errorf("agent.service not started: cgroup id %d, want 0", id)
	}
	var ids []uint64
	for range 2 {
		dir := testnet.SubCgroup(t, top, "agent.service")
		want, err := dir.ID()
		if err != nil {
			t.Fatal(err)
		}
		if got := unitID(); got != want {
			t.Errorf("cgroup id %d, want %d", got, want)
		}
		ids = append(ids, want)
		if err := os.Remove(dir.Dir()); err != nil {
			t.Fatal(err)
		}
	}
	if ids[0] == ids[1] {
		t.Errorf("a re-made cgroup kept its id %d", ids[0])
	}
	if st := svc.Status(); st.State != StateRunning || st.Problem() != "" {
		t.Errorf("state %s, problem %q", st.State, st.Problem())
	}
}

// When the kernel cannot track cgroups, the service is degraded and says
// why, as for a name that does not resolve; once it can, it is running.
func TestCgroupProblemDegrades(t *testing.T) {
	var logs testnet.SyncBuffer
	s := New(Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	s.noteCgroups("no cgroup2 filesystem is mounted (a cgroup v1-only host): unit: and cgroup: principals match nothing")
	s.setState(StateRunning)
	st := s.Status()
	if st.State != StateDegraded || !strings.Contains(st.Problem(), "cgroup principals match no one: no cgroup2 filesystem is mounted") {
		t.Errorf("state %s, problem %q", st.State, st.Problem())
	}
	if !strings.Contains(logs.String(), "degraded: unit: and cgroup: principals match no one") {
		t.Errorf("not logged: %s", logs.String())
	}
	if line := statusLine(st, ""); !strings.Contains(line, "; degraded: unit: and cgroup: principals match no one: no cgroup2 filesystem is mounted") {
		t.Errorf("STATUS= %q does not say why", line)
	}
	s.noteCgroups("")
	s.setState(StateRunning)
	if st := s.Status(); st.State != StateRunning || st.Problem() != "" {
		t.Errorf("after the problem cleared: state %s, problem %q", st.State, st.Problem())
	}
}

// A unit that does not resolve is called a unit in the status, not a
// user or group name.
func TestProblemNamesUnits(t *testing.T) {
	st := Status{Unresolved: []string{`unit:agent.service (/etc/net-tc-filter/conf.d/50-imds.yml:3) cannot be resolved: PID 1 is not systemd (it is "tini"): use cgroup:PATH`, "carol (/etc/net-tc-filter/net-tc-filter.yml:5) does not exist"}}
	want := "unit matches no one: unit:agent.service (/etc/net-tc-filter/conf.d/50-imds.yml:3) cannot be resolved: PID 1 is not systemd (it is \"tini\"): use cgroup:PATH\n" +
		"user/group name matches no one: carol (/etc/net-tc-filter/net-tc-filter.yml:5) does not exist"
	if got := st.Problem(); got != want {
		t.Errorf("Problem() =\n%s\nwant\n%s", got, want)
	}
}
