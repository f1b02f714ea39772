// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bytes"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nettcfilter/net-tc-filter/daemon"
	"github.com/nettcfilter/net-tc-filter/daemon/testnet"
)

// cliEnv makes the test binary the command itself, for what must exec it
// (a shell completing, a network namespace of its own).
const cliEnv = "NTF_TEST_CLI"

func TestMain(m *testing.M) {
	if os.Getenv(cliEnv) == "1" {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// writeConfig makes a root-owned configuration set (the tests run as root;
// elsewhere the loader refuses files not owned by root, as it should).
func writeConfig(t *testing.T, main string, dropIns map[string]string) string {
	t.Helper()
	testnet.RequireRoot(t)
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	os.Mkdir(filepath.Join(dir, "conf.d"), 0o755)
	path := filepath.Join(dir, "net-tc-filter.yml")
	if err := os.WriteFile(path, []byte(main), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, body := range dropIns {
		if err := os.WriteFile(filepath.Join(dir, "conf.d", name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return path
}

const seed = `endpoints:
    - imdsv2:
        iface: [eth0]
        range: [169.254.169.254/32, fd00:ec2::254/128]
        allow:
          - root
`

func TestCLI(t *testing.T) {
	good := writeConfig(t, seed, map[string]string{"10-more.yml": "endpoints:\n  - wide:\n      iface: [eth0]\n      range: [169.254.0.0/16]\n      allow: [\"*\"]\n"})
	wire := writeConfig(t, seed, map[string]string{"10-wire.yml": "endpoints:\n" +
		"  - wire-dns: {iface: [eth0], range: [168.63.129.16], proto: [udp, tcp], ports: [53], allow: [\"*\"]}\n" +
		"  - wire-agent: {iface: [eth0], range: [168.63.129.16], proto: tcp, ports: [80, 32526, \"8000-8100\"], allow: [root]}\n" +
		"  - wire: {iface: [eth0], range: [168.63.129.16], allow: []}\n"})
	bad := writeConfig(t, seed, map[string]string{"20-bad.yml": "endpoints:\n  - x:\n      iface: [eth0]\n      range: [10.0.0.1/8]\n      allow: [ntf-no-such-user]\n"})
	unknown := writeConfig(t, seed, map[string]string{
		"20-ghost.yml": "endpoints:\n  - wide:\n      iface: [eth0]\n      range: [169.254.0.0/16]\n      allow: [uid:1005, \"group:ntf-no-such-group\"]\n",
		"30-x.yaml":    "endpoints: []\n",
	})
	audit := writeConfig(t, seed, map[string]string{"10-audit.yml": "endpoints:\n" +
		"  - rollout: {iface: [eth0], range: [169.254.0.0/16], allow: [root], mode: audit}\n" +
		"interfaces:\n  eth0: {default: deny, mode: audit}\n  eth9: {default: allow, mode: audit}\n"})
	notRead := writeConfig(t, seed, map[string]string{"30-x.yaml": "endpoints: []\n", "40-bad.yml": "endpoints: [\n"})
	emptyPins, leftPins := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(leftPins, "link_2"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		args   []string
		code   int
		stdout []string
		stderr []string
	}{
		{"no command", nil, 2, nil, []string{"a command is needed", "Usage: net-tc-filter COMMAND"}},
		{"unknown command", []string{"frobnicate"}, 2, nil, []string{`unknown command "frobnicate"`}},
		{"help", []string{"--help"}, 0, []string{"explain", "Usage: net-tc-filter COMMAND"}, nil},
		{"help command", []string{"help", "explain"}, 0, []string{"Usage: net-tc-filter explain --user USER"}, nil},
		{"short help", []string{"-h"}, 0, []string{"Usage: net-tc-filter COMMAND"}, nil},
		{"--version", []string{"--version"}, 0, []string{"net-tc-filter dev\n"}, nil},
		{"command help", []string{"check", "--help"}, 0, []string{"Usage: net-tc-filter check [--config FILE]", "--config FILE"}, nil},
		{"bad flag", []string{"check", "--nope"}, 2, nil, []string{"net-tc-filter check: unknown flag: --nope", "Usage: net-tc-filter check [--config FILE]"}},
		{"single-dash long flag", []string{"check", "-config", good}, 2, nil, []string{"unknown shorthand flag: 'c' in -config: long options take two dashes: --config"}},
		{"single-dash long flag with =", []string{"explain", "-user=root", "--dst", "192.0.2.1"}, 2, nil, []string{"long options take two dashes: --user"}},
		{"single-dash unknown", []string{"check", "-nope"}, 2, nil, []string{"unknown shorthand flag: 'n' in -nope\n"}},
		{"flag without its value", []string{"explain", "--user"}, 2, nil, []string{"flag needs an argument: --user"}},
		{"stray argument", []string{"version", "extra"}, 2, nil, []string{`unexpected argument "extra"`}},
		{"version", []string{"version"}, 0, []string{"net-tc-filter dev"}, nil},
		{"check ok", []string{"check", "--config", good}, 0,
			[]string{"imdsv2 on eth0", "wide on eth0", "169.254.0.0/16", "OK: 2 endpoints, 3 ranges"},
			[]string{"warning: interface eth0: default deny"}},
		{"check prints proto and ports", []string{"check", "--config", wire}, 0,
			[]string{"wire-dns on eth0\n    allow: * => *\n    only: tcp,udp/53\n", "wire-agent on eth0\n    allow: root => uid:0\n    only: tcp/80,8000-8100,32526\n", "wire on eth0\n    allow:  => nobody\n    168.63.129.16/32\n"}, nil},
		{"explain tcp/80 of a narrowed address: root's", []string{"explain", "--config", wire, "--user", "root", "--dst", "168.63.129.16", "--proto", "tcp", "--port", "80", "--iface", "eth0"}, 0,
			[]string{"eth0: allowed: root is allowed to 168.63.129.16/32 tcp/80 (endpoint wire-agent; allowed: root)"}, nil},
		{"explain tcp/80 of a narrowed address: not another user's", []string{"explain", "--config", wire, "--user", "uid:1005", "--dst", "168.63.129.16", "--proto", "tcp", "--port", "80", "--iface", "eth0"}, 3,
			[]string{"eth0: denied: uid:1005 is not allowed to 168.63.129.16/32 tcp/80 (endpoint wire-agent; allowed: root)"}, nil},
		{"explain udp/53 of a narrowed address: everyone's", []string{"explain", "--config", wire, "--user", "uid:1005", "--dst", "168.63.129.16", "--proto", "udp", "--port", "53", "--iface", "eth0"}, 0,
			[]string{"eth0: allowed: uid:1005 is allowed to 168.63.129.16/32 udp/53 (endpoint wire-dns; allowed: *)"}, nil},
		{"explain icmp: the un-narrowed endpoint", []string{"explain", "--config", wire, "--user", "root", "--dst", "168.63.129.16", "--proto", "icmp", "--iface", "eth0"}, 3,
			[]string{"eth0: denied: root is not allowed to 168.63.129.16/32 icmp (endpoint wire; allowed: nobody)"}, nil},
		{"explain without a transport: only un-narrowed endpoints", []string{"explain", "--config", wire, "--user", "root", "--dst", "168.63.129.16", "--iface", "eth0"}, 3,
			[]string{"eth0: denied: root is not allowed to 168.63.129.16/32 (endpoint wire; allowed: nobody)"}, nil},
		{"explain --port without --proto", []string{"explain", "--config", wire, "--user", "root", "--dst", "168.63.129.16", "--port", "80"}, 2, nil, []string{"--port needs --proto"}},
		{"explain tcp without a port", []string{"explain", "--config", wire, "--user", "root", "--dst", "168.63.129.16", "--proto", "tcp"}, 2, nil, []string{"--proto tcp --port: tcp needs a port from 1 to 65535"}},
		{"explain a port on icmp", []string{"explain", "--config", wire, "--user", "root", "--dst", "168.63.129.16", "--proto", "icmp", "--port", "7"}, 2, nil, []string{"icmp has no ports"}},
		{"explain an unknown protocol", []string{"explain", "--config", wire, "--user", "root", "--dst", "168.63.129.16", "--proto", "tpc", "--port", "80"}, 2, nil, []string{`--proto: proto "tpc": unknown protocol`, "did you mean tcp?"}},
		{"explain port 65536", []string{"explain", "--config", wire, "--user", "root", "--dst", "168.63.129.16", "--proto", "tcp", "--port", "65536"}, 2, nil, []string{"--port"}},
		{"check says which endpoints and interfaces audit", []string{"check", "--config", audit}, 0,
			[]string{"rollout on eth0 (audit: logs what it would drop, drops nothing)\n", "eth0             default deny (audit: logs what it would drop, drops nothing)\n", "eth9             default allow\n"},
			[]string{"warning: interface eth9: mode: audit has no effect: its default is allow"}},
		{"explain an audited endpoint: denied, passes as audit", []string{"explain", "--config", audit, "--user", "uid:1005", "--dst", "169.254.1.1", "--iface", "eth0"}, 3,
			[]string{"eth0: denied: uid:1005 is not allowed to 169.254.0.0/16 (endpoint rollout; allowed: root) [mode: audit: passes, logged as audit]"}, nil},
		{"explain an audited default", []string{"explain", "--config", audit, "--user", "root", "--dst", "192.0.2.1", "--iface", "eth0"}, 3,
			[]string{"eth0: denied: no configured range contains 192.0.2.1; default deny on eth0 [mode: audit: passes, logged as audit]"}, nil},
		{"check with = ", []string{"check", "--config=" + good}, 0, []string{"OK: 2 endpoints, 3 ranges"}, nil},
		{"check reports every problem at once", []string{"check", "--config", bad}, 1, nil,
			[]string{"20-bad.yml:4: endpoint \"x\": range 10.0.0.1/8 has host bits set", `20-bad.yml:5: allow "ntf-no-such-user": unknown user`}},
		{"check calls a name that does not resolve an error, and warns of files not read", []string{"check", "--config", unknown}, 1, nil,
			[]string{`20-ghost.yml:5: allow "group:ntf-no-such-group": unknown group`, "warning: ", "30-x.yaml"}},
		{"check of an invalid set warns of files not read", []string{"check", "--config", notRead}, 1, nil,
			[]string{"40-bad.yml:", "warning: ", "30-x.yaml"}},
		{"explain judges a name that does not resolve as the daemon does", []string{"explain", "--config", unknown, "--user", "uid:1005", "--dst", "169.254.1.1", "--iface", "eth0"}, 0,
			[]string{"eth0: allowed: "},
			[]string{"warning: group:ntf-no-such-group (", "20-ghost.yml:5) does not exist: it matches no one"}},
		{"run with a resolve interval of 0", []string{"run", "--resolve-interval", "0s"}, 2, nil, []string{"--resolve-interval 0s: must be more than 0"}},
		{"explain allowed by the narrower range", []string{"explain", "--config", good, "--user", "root", "--dst", "169.254.169.254", "--iface", "eth0"}, 0,
			[]string{"eth0: allowed: root is allowed to 169.254.169.254/32 (endpoint imdsv2"}, nil},
		{"explain denied", []string{"explain", "--config", good, "--user", "uid:1005", "--dst", "169.254.169.254", "--iface", "eth0"}, 3,
			[]string{"eth0: denied: ", " is not allowed to 169.254.169.254/32 (endpoint imdsv2; allowed: root)"}, nil},
		{"explain a uid out of range", []string{"explain", "--config", good, "--user", "uid:4294967296", "--dst", "169.254.169.254", "--iface", "eth0"}, 1,
			nil, []string{"--user: \"4294967296\" is not a uid"}},
		{"explain wider range", []string{"explain", "--config", good, "--user", "unowned", "--dst", "169.254.1.1", "--iface", "eth0"}, 3,
			[]string{"eth0: denied: unowned is not allowed to 169.254.0.0/16 (endpoint wide; allowed: *)"}, nil},
		{"explain default", []string{"explain", "--config", good, "--user", "unowned", "--dst", "192.0.2.1", "--iface", "eth0"}, 3,
			[]string{"eth0: denied: no configured range contains 192.0.2.1; default deny on eth0"}, nil},
		{"explain needs user and dst", []string{"explain", "--config", good, "--dst", "192.0.2.1"}, 2, nil, []string{"--user (or --unit) and --dst are required"}},
		{"explain bad address", []string{"explain", "--config", good, "--user", "root", "--dst", "999.1.1.1"}, 2, nil, []string{"--dst: ParseAddr(\"999.1.1.1\")"}},
		{"explain bad v6 address", []string{"explain", "--config", good, "--user", "root", "--dst", "fd00::1::2"}, 2, nil, []string{"--dst: ParseAddr("}},
		{"explain unknown user", []string{"explain", "--config", good, "--user", "ntf-no-such-user", "--dst", "192.0.2.1", "--iface", "eth0"}, 1, nil, []string{"unknown user"}},
		{"explain unknown group", []string{"explain", "--config", good, "--user", "group:ntf-no-such-group", "--dst", "192.0.2.1", "--iface", "eth0"}, 1, nil, []string{"--user: ", "ntf-no-such-group"}},
		{"run bad attach mode", []string{"run", "--attach-mode", "xdp"}, 2, nil, []string{`unknown attach mode "xdp"`}},
		{"status help", []string{"status", "--help"}, 0, []string{"Usage: net-tc-filter status [--json]", "4  degraded"}, nil},
		{"reload takes no argument", []string{"reload", "now"}, 2, nil, []string{`unexpected argument "now"`}},
		{"status without a bus", []string{"status"}, 1, nil, []string{"net-tc-filter status: cannot reach the system bus"}},
		{"reload without a bus", []string{"reload"}, 1, nil, []string{"net-tc-filter reload: cannot reach the system bus"}},
		{"explain without a daemon, nothing pinned: nothing is filtered", []string{"explain", "--pin-dir", emptyPins, "--user", "root", "--dst", "169.254.169.254", "--iface", "eth0"}, 0,
			[]string{"no daemon running: nothing is filtered (cannot reach the system bus", "nothing is pinned in " + emptyPins}, nil},
		{"explain without a daemon, nothing pinned, no pin dir", []string{"explain", "--pin-dir", filepath.Join(emptyPins, "none"), "--user", "root", "--dst", "169.254.169.254"}, 0,
			[]string{"no daemon running: nothing is filtered"}, nil},
		{"explain without a daemon but a filter pinned falls back to the files", []string{"explain", "--pin-dir", leftPins, "--user", "root", "--dst", "169.254.169.254", "--iface", "eth0"}, 1,
			nil, []string{"cannot reach the system bus", "but a filter is pinned in " + leftPins + ": judging by the configuration files instead", daemon.DefaultConfigPath}},
	}
	// The online commands must find no bus here; the D-Bus package tests
	// them against a real one.
	t.Setenv("DBUS_SYSTEM_BUS_ADDRESS", "unix:path="+filepath.Join(t.TempDir(), "no-bus"))
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := run(tc.args, &out, &errOut)
			if code != tc.code {
				t.Errorf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.code, out.String(), errOut.String())
			}
			for _, want := range tc.stdout {
				if !strings.Contains(out.String(), want) {
					t.Errorf("stdout lacks %q:\n%s", want, out.String())
				}
			}
			for _, want := range tc.stderr {
				if !strings.Contains(errOut.String(), want) {
					t.Errorf("stderr lacks %q:\n%s", want, errOut.String())
				}
			}
		})
	}
}

// The configuration the package installs is valid and filters nothing; each
// shipped example is valid as a drop-in beside it (once its group exists).
func TestShippedConfigs(t *testing.T) {
	main, err := os.ReadFile("../../conf/net-tc-filter.yml")
	if err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	path := writeConfig(t, string(main), nil)
	if code := run([]string{"check", "--config", path}, &out, &errOut); code != 0 || !strings.Contains(out.String(), "OK: 0 endpoints, 0 ranges") {
		t.Errorf("default configuration: exit %d\n%s%s", code, out.String(), errOut.String())
	}
	if _, err := user.LookupGroup("imds-readers"); err != nil {
		if out, err := exec.Command("groupadd", "imds-readers").CombinedOutput(); err != nil {
			t.Fatalf("groupadd: %v %s", err, out)
		}
		t.Cleanup(func() { exec.Command("groupdel", "imds-readers").Run() })
	}
	examples, _ := filepath.Glob("../../conf/examples/*.yml")
	if len(examples) != 3 {
		t.Fatalf("examples: %v", examples)
	}
	for _, ex := range examples {
		body, err := os.ReadFile(ex)
		if err != nil {
			t.Fatal(err)
		}
		path := writeConfig(t, string(main), map[string]string{filepath.Base(ex): string(body)})
		out.Reset()
		errOut.Reset()
		if code := run([]string{"check", "--config", path}, &out, &errOut); code != 0 || strings.Contains(out.String(), "OK: 0 endpoints") {
			t.Errorf("%s: exit %d\n%s%s", ex, code, out.String(), errOut.String())
		}
	}
}
