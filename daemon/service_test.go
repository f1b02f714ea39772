// SPDX-License-Identifier: Apache-2.0

package daemon

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nettcfilter/net-tc-filter/daemon/testnet"
)

// The sd_notify conversation, as systemd sees it on a real NOTIFY_SOCKET:
// READY=1 with STATUS= once enforcing, WATCHDOG=1 at half of WATCHDOG_USEC,
// RELOADING=1 + MONOTONIC_USEC= then READY=1 around a reload, STOPPING=1,
// and a clean stop with on_stop: detach removes the pins.
func TestNotify(t *testing.T) {
	testnet.RequireRoot(t)
	b := newBed(t, policyYAML([]string{"uid:1001"}, ""))
	d := b.start(t, testnet.DaemonOptions{Env: []string{"WATCHDOG_USEC=400000"}})
	if s := statusOf(d.Ready); !strings.HasPrefix(s, "enforcing 2 ranges for 1 users on eth0; generation ") {
		t.Errorf("STATUS= at start: %q", s)
	}
	b.expect(t, b.bob, denied) // READY=1 means enforcing already

	start := time.Now()
	for range 3 {
		d.Notify.WaitFor(t, "WATCHDOG=1", 2*time.Second)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("3 watchdog pings took %v with WATCHDOG_USEC=400ms", el)
	}

	d.Signal(syscall.SIGHUP)
	msg, _ := d.Notify.WaitFor(t, "RELOADING=1", 5*time.Second)
	usec := ""
	for _, l := range strings.Split(msg, "\n") {
		if v, ok := strings.CutPrefix(l, "MONOTONIC_USEC="); ok {
			usec = v
		}
	}
	if n, err := strconv.ParseUint(usec, 10, 64); err != nil || n == 0 {
		t.Errorf("RELOADING=1 without a MONOTONIC_USEC=: %q", msg)
	}
	ready, _ := d.Notify.WaitFor(t, "READY=1", 5*time.Second)
	if !strings.Contains(ready, "STATUS=enforcing") {
		t.Errorf("READY=1 after reload without the STATUS= line: %q", ready)
	}

	d.Signal(syscall.SIGTERM)
	d.Notify.WaitFor(t, "STOPPING=1", 5*time.Second)
	if err := d.Wait(10 * time.Second); err != nil {
		t.Fatalf("clean stop: %v\n%s", err, d.Log())
	}
	if _, err := os.Stat(b.pins); !os.IsNotExist(err) {
		t.Errorf("on_stop: detach left %s behind (%v)", b.pins, err)
	}
	b.expect(t, b.bob, allowed)
}

// on_stop: keep leaves the filter enforcing after a clean stop; `detach`
// removes it by hand.
func TestStopKeepThenDetach(t *testing.T) {
	testnet.RequireRoot(t)
	b := newBed(t, policyYAML([]string{"uid:1001"}, "")+"on_stop: keep\n")
	d := b.start(t, testnet.DaemonOptions{})
	d.Signal(syscall.SIGTERM)
	if err := d.Wait(10 * time.Second); err != nil {
		t.Fatalf("clean stop: %v", err)
	}
	b.expect(t, b.bob, denied)
	b.expect(t, b.alice, allowed)
	b.tp.Client.Exec(t, testnet.Binary(t), "detach", "--pin-dir", b.pins)
	b.expect(t, b.bob, allowed)
	if _, err := os.Stat(b.pins); !os.IsNotExist(err) {
		t.Errorf("detach left %s behind (%v)", b.pins, err)
	}
}

// A configuration that is invalid at start, with no last good set to fall
// back on (each test daemon has a state directory of its own, and this one
// never saved a set): the daemon refuses to start and says why, and a
// filter an earlier run left pinned stays enforced.
func TestInvalidAtStartKeepsPinned(t *testing.T) {
	testnet.RequireRoot(t)
	b := newBed(t, policyYAML([]string{"uid:1001"}, ""))
	d := b.start(t, testnet.DaemonOptions{})
	d.Kill()
	writeFile(t, b.main, "endpoints: [\n")
	d2 := testnet.StartDaemonNoWait(t, b.tp.Client, testnet.DaemonOptions{Config: b.main, PinDir: b.pins})
	if err := d2.Wait(10 * time.Second); err == nil {
		t.Fatal("daemon started with an invalid configuration")
	}
	if !strings.Contains(d2.Log(), filepath.Base(b.main)) {
		t.Errorf("the refusal does not name the file:\n%s", d2.Log())
	}
	b.expect(t, b.bob, denied)
	b.expect(t, b.alice, allowed)
}
