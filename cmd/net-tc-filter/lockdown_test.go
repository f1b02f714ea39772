// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nettcfilter/net-tc-filter/daemon/testnet"
)

// inNetns runs the command (this test binary as it) in a network namespace
// of its own that has lo and an interface (a bridge, as dummy may be
// missing) for each of links: the interfaces of "this host" are the
// test's, whatever the machine has.
func inNetns(t *testing.T, links []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	script := "set -e; ip link set lo up"
	for _, l := range links {
		script += fmt.Sprintf("; ip link add %s type bridge", l)
	}
	return unshared(t, []string{"--net"}, script, "sh", args...)
}

// What check says of a set that locks an interface down (SPEC §2): the
// seed alone on an eth0 host, written-out deny, a "*" endpoint over
// several interfaces, an ens* endpoint on an eth0 host; and nothing of
// the kind where the default is allow.
func TestCheckLockdownGolden(t *testing.T) {
	tests := []struct {
		name  string
		yaml  string
		links []string
	}{
		{"check-lockdown-seed", seed, []string{"eth0"}},
		{"check-lockdown-explicit", seed + "interfaces:\n  eth0: {default: deny}\n", []string{"eth0"}},
		{"check-lockdown-glob", `endpoints:
  - imdsv2:
      iface: ["*"]
      range: [169.254.169.254/32]
      allow: [root, "uid:998"]
`, []string{"eth0", "eth1", "docker0"}},
		{"check-lockdown-no-iface", `endpoints:
  - imdsv2:
      iface: ["ens*"]
      range: [169.254.169.254/32, fd00:ec2::254/128]
      allow: [root]
interfaces:
  "*": {default: allow}
`, []string{"eth0"}},
		{"check-lockdown-none", seed + "interfaces:\n  \"*\": {default: allow}\n", []string{"eth0"}},
		// deny: is printed where it is set (SPEC §1 rule 4).
		{"check-deny", `endpoints:
  - imdsv2:
      iface: [eth0]
      range: [169.254.169.254/32]
      allow: [root]
  - wireserver:
      iface: [eth0]
      range: [168.63.129.16/32]
      allow: []
      deny: reject
interfaces:
  eth0: {default: allow, deny: drop}
`, []string{"eth0"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := writeConfig(t, tc.yaml, nil)
			out, errOut, code := inNetns(t, tc.links, "check", "--config", cfg)
			if code != exitOK {
				t.Errorf("exit %d, want 0\n%s%s", code, out, errOut)
			}
			golden(t, tc.name, strings.ReplaceAll("--- stdout\n"+out+"--- stderr\n"+errOut, filepath.Dir(cfg), "$DIR"))
		})
	}
}

// What reload prints after a set that locks eth0 down went live: the
// generation on stdout, the daemon's warnings of it on stderr, exit 0. A
// real daemon in a network namespace, on a bus of the test's own.
func TestReloadLockdownGolden(t *testing.T) {
	testnet.RequireRoot(t)
	tp := testnet.NewTopology(t, testnet.Options{})
	bus := testnet.StartOpenBus(t)
	cfg := writeConfig(t, seed+"interfaces:\n  eth0: {default: allow}\n", nil)
	d := testnet.StartDaemon(t, tp.Client, testnet.DaemonOptions{Config: cfg, PinDir: testnet.PinDir(t), Env: []string{bus.Env()}})
	d.WaitLog(t, "serving org.nettcfilter1", 10*time.Second)
	t.Setenv("DBUS_SYSTEM_BUS_ADDRESS", bus.Address)

	var out, errOut bytes.Buffer
	if code := run([]string{"reload"}, &out, &errOut); code != exitOK || errOut.Len() > 0 {
		t.Fatalf("reload of a set without warnings: exit %d\n%s%s", code, out.String(), errOut.String())
	}
	if err := os.WriteFile(cfg, []byte(seed), 0o644); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	code := run([]string{"reload"}, &out, &errOut)
	if code != exitOK {
		t.Errorf("exit %d, want 0", code)
	}
	// The file's change may have been reloaded already: which
	// generation this reload made is not the point.
	got := regexp.MustCompile(`generation \d+`).ReplaceAllString("--- stdout\n"+out.String()+"--- stderr\n"+errOut.String(), "generation N")
	golden(t, "reload-lockdown", got)
}
