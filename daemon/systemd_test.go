// SPDX-License-Identifier: Apache-2.0

package daemon

import (
	"fmt"
	"os"
	"syscall"
	"testing"
	"time"

	godbus "github.com/godbus/dbus/v5"

	"github.com/nettcfilter/net-tc-filter/daemon/testnet"
)

// fakeSystemd answers the two questions restarting asks, on a test bus:
// which unit runs us, and that unit's job, of the type the test sets.
type fakeSystemd struct {
	jobType string // "" when the unit has no job
}

const fakeUnit = "net-tc-filter.service"

func (fakeSystemd) GetUnitByPID(pid uint32) (godbus.ObjectPath, *godbus.Error) {
	return "/org/freedesktop/systemd1/unit/net_2dtc_2dfilter_2eservice", nil
}

// unitStatus is one row of ListUnitsByNames, signature (ssssssouso).
type unitStatus struct {
	Name, Description, LoadState, ActiveState, SubState, Followed string
	Path                                                          godbus.ObjectPath
	JobID                                                         uint32
	JobType                                                       string
	JobPath                                                       godbus.ObjectPath
}

func (f fakeSystemd) ListUnitsByNames(names []string) ([]unitStatus, *godbus.Error) {
	if len(names) != 1 || names[0] != fakeUnit {
		// The unit name must come back unescaped from GetUnitByPID's path.
		return nil, godbus.MakeFailedError(fmt.Errorf("no unit %q here", names))
	}
	u := unitStatus{
		Name: fakeUnit, LoadState: "loaded", ActiveState: "deactivating", SubState: "stop-sigterm",
		Path:    "/org/freedesktop/systemd1/unit/net_2dtc_2dfilter_2eservice",
		JobPath: "/", // what systemd says when there is no job
	}
	if f.jobType != "" {
		u.JobID, u.JobType, u.JobPath = 42, f.jobType, "/org/freedesktop/systemd1/job/42"
	}
	return []unitStatus{u}, nil
}

func startFakeSystemd(t *testing.T, bus *testnet.Bus, jobType string) {
	t.Helper()
	conn, err := godbus.Connect(bus.Address)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	const dest = "org.freedesktop.systemd1"
	if err := conn.Export(fakeSystemd{jobType: jobType}, "/org/freedesktop/systemd1", dest+".Manager"); err != nil {
		t.Fatal(err)
	}
	if reply, err := conn.RequestName(dest, godbus.NameFlagDoNotQueue); err != nil || reply != godbus.RequestNameReplyPrimaryOwner {
		t.Fatalf("own %s on the test bus: %v %v", dest, reply, err)
	}
}

// Under systemd, a restart keeps the filter for the next start to adopt
// (no moment unfiltered, even with on_stop: detach); a stop detaches.
func TestRestartKeepsFilter(t *testing.T) {
	testnet.RequireRoot(t)
	for _, tc := range []struct {
		job  string
		keep bool
	}{{"restart", true}, {"try-restart", true}, {"stop", false}, {"", false}} {
		t.Run("job "+tc.job, func(t *testing.T) {
			bus := testnet.StartOpenBus(t)
			startFakeSystemd(t, bus, tc.job)
			b := newBed(t, policyYAML([]string{"uid:1001"}, ""))
			opts := testnet.DaemonOptions{Env: []string{bus.Env(), "INVOCATION_ID=ntftest"}}
			d := b.start(t, opts)
			d.Signal(syscall.SIGTERM)
			if err := d.Wait(10 * time.Second); err != nil {
				t.Fatalf("stop: %v\n%s", err, d.Log())
			}
			_, err := os.Stat(b.pins)
			if kept := err == nil; kept != tc.keep {
				t.Fatalf("pins kept = %v, want %v\n%s", kept, tc.keep, d.Log())
			}
			b.expect(t, b.bob, !tc.keep)
			if tc.keep {
				// The next start adopts what the restart left.
				d = b.start(t, opts)
				if g := parseGeneration(t, statusOf(d.Ready)); g != 2 {
					t.Errorf("generation after the restart %d, want 2 (adopted)", g)
				}
				b.expect(t, b.bob, false)
			}
		})
	}
}
