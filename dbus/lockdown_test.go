// SPDX-License-Identifier: Apache-2.0

package dbus

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/nettcfilter/net-tc-filter/daemon/testnet"
)

// SPEC §2 from the administrator's chair: a reload that locks eth0 down
// (the seed's meaning: no interfaces: entry) says so on stderr and exits
// 0; status lists it under warnings while it is live, without calling
// the daemon degraded; and the one-line fix the warning gives clears it.
func TestLockdownShown(t *testing.T) {
	testnet.RequireRoot(t)
	bus := testnet.StartBus(t, shippedConf)
	b := newBed(t, bus)
	const lockdown = "interface eth0 is filtered with default deny (no interfaces: entry sets its default, and deny is the default)"

	out, stderr, err := cli(t, bus, "status")
	if err != nil || strings.Contains(out, lockdown) {
		t.Fatalf("status before: %v\n%s%s", err, out, stderr)
	}
	write(t, b.main, fmt.Sprintf("endpoints:\n  - protected:\n      iface: [eth0]\n      range: [%s/32]\n      allow: [uid:1001]\n", prot4))
	out, stderr, err = cli(t, bus, "reload")
	if err != nil || !strings.HasPrefix(out, "reloaded: generation ") || !strings.Contains(stderr, "warning: "+lockdown) ||
		!strings.Contains(stderr, "Only these stay reachable: 192.0.2.7/32 for uid:1001 (endpoint protected)") {
		t.Errorf("reload of a set that locks eth0 down: %v\nstdout: %s\nstderr: %s", err, out, stderr)
	}
	out, stderr, err = cli(t, bus, "status")
	if err != nil || !strings.Contains(out, ": running") || !strings.Contains(out, "warnings") || !strings.Contains(out, lockdown) {
		t.Errorf("status while eth0 is locked down: exit %d\n%s%s", exitCode(err), out, stderr)
	}
	var st Status
	out, _, err = cli(t, bus, "status", "--json")
	if err != nil || json.Unmarshal([]byte(out), &st) != nil || len(st.Warnings) == 0 || !strings.HasPrefix(st.Warnings[0], lockdown) {
		t.Errorf("status --json: %v %+v\n%s", err, st, out)
	}
	testnet.Expect(t, b.bob, prot4, port, denied)

	// The fix the warning names.
	write(t, b.main, policyYAML("uid:1001"))
	out, stderr, err = cli(t, bus, "reload")
	if err != nil || stderr != "" {
		t.Errorf("reload with eth0 {default: allow}: %v\n%s%s", err, out, stderr)
	}
	out, _, err = cli(t, bus, "status")
	if err != nil || strings.Contains(out, lockdown) {
		t.Errorf("status after the fix still warns: %v\n%s", err, out)
	}
}
