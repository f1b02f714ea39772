// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	ntfdbus "github.com/nettcfilter/net-tc-filter/dbus"
	"github.com/spf13/pflag"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden with what the commands print now")

// golden compares got with testdata/NAME.golden (or writes it with -update).
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test -run %s -update writes it)", err, t.Name())
	}
	if got != string(want) {
		t.Errorf("%s differs (go test -update rewrites it after a deliberate change)\n--- got:\n%s\n--- want:\n%s", path, got, want)
	}
}

// addUser makes a user (with a group of its own) for the test, removed
// when it ends; its uid is fixed so that the golden files are too.
func addUser(t *testing.T, name string, uid int, groups ...string) {
	t.Helper()
	if _, err := user.Lookup(name); err == nil {
		t.Fatalf("user %s exists already: left by a killed run? (userdel %s)", name, name)
	}
	args := []string{"--no-create-home", "--uid", strconv.Itoa(uid), "--user-group"}
	if len(groups) > 0 {
		args = append(args, "--groups", strings.Join(groups, ","))
	}
	if out, err := exec.Command("useradd", append(args, name)...).CombinedOutput(); err != nil {
		t.Fatalf("useradd %s: %v %s", name, err, out)
	}
	t.Cleanup(func() { exec.Command("userdel", name).Run() })
}

func addGroup(t *testing.T, name string, gid int) {
	t.Helper()
	if out, err := exec.Command("groupadd", "--gid", strconv.Itoa(gid), name).CombinedOutput(); err != nil {
		t.Fatalf("groupadd %s: %v %s", name, err, out)
	}
	t.Cleanup(func() { exec.Command("groupdel", name).Run() })
}

// What explain prints, names and all. The users are made here, with
// fixed ids, so that the files hold names rather than what this host has.
func TestExplainGolden(t *testing.T) {
	cfg := writeConfig(t, `endpoints:
  - imdsv2:
      iface: [eth0]
      range: [169.254.169.254/32, fd00:ec2::254/128]
      allow: [root, ntfcli-agent]
  - credentials:
      iface: [eth0]
      range: [169.254.170.0/24]
      allow: ["group:ntfcli-readers"]
interfaces:
  eth0: {default: allow}
`, nil)
	addGroup(t, "ntfcli-readers", 64210)
	addUser(t, "ntfcli-agent", 64201, "ntfcli-readers")
	addUser(t, "ntfcli-www", 64202, "ntfcli-readers")
	addUser(t, "ntfcli-bob", 64203)
	t.Setenv("DBUS_SYSTEM_BUS_ADDRESS", "unix:path="+filepath.Join(t.TempDir(), "no-bus"))
	pins := t.TempDir()
	bus := filepath.Dir(os.Getenv("DBUS_SYSTEM_BUS_ADDRESS")[len("unix:path="):])
	files := func(args ...string) []string { return append([]string{"--config", cfg}, args...) }

	tests := []struct {
		name string
		args []string
		code int
	}{
		{"explain-denied-by-name", files("--user", "ntfcli-bob", "--dst", "169.254.169.254"), explainDenied},
		// An address, however spelled: no "resolves to".
		{"explain-uid-named", files("--user", "uid:64201", "--dst", "FD00:EC2::254"), exitOK},
		{"explain-uid-without-name", files("--user", "uid:64299", "--dst", "169.254.169.254"), explainDenied},
		{"explain-group-mixed", files("--user", "group:ntfcli-readers", "--dst", "169.254.169.254"), explainMixed},
		{"explain-group-allowed", files("--user", "group:ntfcli-readers", "--dst", "169.254.170.2"), exitOK},
		{"explain-no-daemon", []string{"--user", "ntfcli-bob", "--dst", "169.254.169.254", "--pin-dir", pins}, exitOK},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"explain", "--iface", "eth0"}, tc.args...)
			var out, errOut bytes.Buffer
			code := run(args, &out, &errOut)
			if code != tc.code {
				t.Errorf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.code, out.String(), errOut.String())
			}
			got := strings.NewReplacer(pins, "$PINS", bus, "$BUS").Replace(out.String() + errOut.String())
			golden(t, tc.name, got)
		})
	}
}

// unshared runs the CLI (this test binary, as net-tc-filter) under
// unshare(1) with flags, after setup, a shell script run with $0 = arg0:
// what it printed and its exit status.
func unshared(t *testing.T, flags []string, setup, arg0 string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	argv := append(append(flags, "--", "sh", "-c", setup+` && exec "$@"`, arg0, os.Args[0]), args...)
	cmd := exec.Command("unshare", argv...)
	cmd.Env = append(os.Environ(), cliEnv+"=1")
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		t.Fatal(err)
	}
	return out.String(), errOut.String(), code
}

// isolated runs the CLI in a network namespace of its own (nothing to ask
// a name server through) with hosts as its /etc/hosts.
func isolated(t *testing.T, hosts string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "hosts")
	if err := os.WriteFile(path, []byte(hosts), 0o644); err != nil {
		t.Fatal(err)
	}
	return unshared(t, []string{"--mount", "--net"}, `mount --bind "$0" /etc/hosts`, path, args...)
}

// A host name is judged at every address it resolves to; one that does
// not resolve is a failure with its reason.
func TestExplainHostName(t *testing.T) {
	cfg := writeConfig(t, seed, nil)
	const hosts = "127.0.0.1 localhost\n169.254.169.254 imds.test\nfd00:ec2::254 imds.test\n192.0.2.1 imds.test\n"
	out, errOut, code := isolated(t, hosts, "explain", "--config", cfg, "--iface", "eth0", "--user", "root", "--dst", "imds.test")
	if code != explainMixed || errOut != "" {
		t.Errorf("exit %d, want %d\n%s", code, explainMixed, errOut)
	}
	golden(t, "explain-host-name", out)

	out, errOut, code = isolated(t, hosts, "explain", "--config", cfg, "--iface", "eth0", "--user", "root", "--dst", "ntf-no-such-host.test")
	if want := "net-tc-filter explain: --dst ntf-no-such-host.test: the host name does not resolve: "; code != exitFailure || !strings.HasPrefix(errOut, want) || out != "" {
		t.Errorf("exit %d, want %d; stderr %q, want it to start with %q; stdout %q", code, exitFailure, errOut, want, out)
	}
}

// --help of the commands whose text the man page repeats.
func TestHelpGolden(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"explain", "--help"}, {"status", "--help"}, {"check", "--help"}, {"completion", "--help"}} {
		name := "help-" + strings.Join(args[:len(args)-1], "-")
		if len(args) == 1 {
			name = "help"
		}
		t.Run(name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			if code := run(args, &out, &errOut); code != 0 || errOut.Len() > 0 {
				t.Fatalf("exit %d\n%s", code, errOut.String())
			}
			golden(t, name, out.String())
		})
	}
}

func TestStatusGolden(t *testing.T) {
	tests := []struct {
		name string
		st   ntfdbus.Status
	}{
		{"status-running", ntfdbus.Status{
			Version: "1.4.0", State: "running", Generation: 3,
			ConfigFiles: []string{"/etc/net-tc-filter/net-tc-filter.yml", "/etc/net-tc-filter/conf.d/10-aws.yml"},
			Interfaces:  []ntfdbus.Attachment{{Name: "eth0", Index: 2, Mode: "tcx"}, {Name: "ens5", Index: 3, Mode: "tcx"}},
			RuleCount:   2, Allowed: 17, Denied: 4,
		}},
		{"status-audit", ntfdbus.Status{
			Version: "1.4.0", State: "running", Generation: 4,
			ConfigFiles: []string{"/etc/net-tc-filter/net-tc-filter.yml"},
			Interfaces:  []ntfdbus.Attachment{{Name: "eth0", Index: 2, Mode: "tcx"}},
			RuleCount:   1, Allowed: 17, Denied: 4, Audited: 9,
		}},
		// Every problem of the failed reload, the cause first: not
		// "(and 1 more)" hiding it behind what follows from it.
		{"status-degraded", ntfdbus.Status{
			Version: "1.4.0", State: "degraded", Generation: 3,
			LastError:   "/etc/net-tc-filter/conf.d/10-aws.yml:5: unknown key \"alow\" (did you mean \"allow\"?)\n/etc/net-tc-filter/conf.d/10-aws.yml:2: endpoint \"imdsv2\": missing allow",
			ConfigFiles: []string{"/etc/net-tc-filter/net-tc-filter.yml", "/etc/net-tc-filter/conf.d/10-aws.yml"},
			Warnings:    []string{"conf.d/10-aws.yaml is not read: only *.yml files are"},
			RuleCount:   2,
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			printStatus(&out, tc.st)
			golden(t, tc.name, out.String())
		})
	}
}

func TestStatusCode(t *testing.T) {
	for state, want := range map[string]int{
		"running": 0, "reloading": 0, "degraded": statusDegraded,
		"starting": statusNotRunning, "stopping": statusNotRunning, "": statusNotRunning,
	} {
		if got := statusCode(state); got != want {
			t.Errorf("statusCode(%q) = %d, want %d", state, got, want)
		}
	}
}

// The man page's synopsis is each command's usage line, and the man page
// and the README name every option: they cannot drift from --help.
func TestDocsAgree(t *testing.T) {
	man, err := os.ReadFile("../../packaging/man/net-tc-filter.8.md")
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	plain := strings.NewReplacer("**", "", "*", "", "\\", "").Replace(string(man))
	synopsis := plain[strings.Index(plain, "# SYNOPSIS"):strings.Index(plain, "# DESCRIPTION")]
	root := newRoot(parts{}, io.Discard, io.Discard)
	for _, c := range root.Commands() {
		if !c.IsAvailableCommand() || c.Name() == "completion" {
			continue
		}
		if !strings.Contains(synopsis, "\n"+c.UseLine()+"\n") {
			t.Errorf("the man page's SYNOPSIS lacks %q", c.UseLine())
		}
		c.Flags().VisitAll(func(f *pflag.Flag) {
			for doc, text := range map[string]string{"man page": plain, "README": string(readme)} {
				if !strings.Contains(text, "--"+f.Name) {
					t.Errorf("the %s does not mention %s --%s", doc, c.Name(), f.Name)
				}
			}
		})
	}
}
