// SPDX-License-Identifier: Apache-2.0

package daemon

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nettcfilter/net-tc-filter/daemon/testnet"
)

// Every reload trigger must change what the kernel enforces: bob is denied
// before, allowed after, proved by traffic.
func TestReloadTriggers(t *testing.T) {
	testnet.RequireRoot(t)
	denyBob := policyYAML([]string{"uid:1001"}, "")
	allowBob := policyYAML([]string{"uid:1001", "uid:1002"}, "")
	// A drop-in that replaces the endpoint whole.
	dropIn := func(allow string) string {
		return fmt.Sprintf("endpoints:\n  - protected:\n      iface: [eth0]\n      range: [%s/32, %s/128]\n      allow: [%s]\n", prot4, prot6, allow)
	}

	for _, tc := range []struct {
		name   string
		before func(t *testing.T, b *bed) // set-up before the daemon starts
		change func(t *testing.T, b *bed)
	}{
		{"main file rewritten", nil, func(t *testing.T, b *bed) {
			writeFile(t, b.main, allowBob)
		}},
		{"new drop-in", nil, func(t *testing.T, b *bed) {
			mkdir(t, filepath.Join(b.dir, "conf.d"))
			writeFile(t, filepath.Join(b.dir, "conf.d", "50-bob.yml"), dropIn("uid:1001, uid:1002"))
		}},
		{"cp over a drop-in", func(t *testing.T, b *bed) {
			mkdir(t, filepath.Join(b.dir, "conf.d"))
			writeFile(t, filepath.Join(b.dir, "conf.d", "50-x.yml"), dropIn("uid:1001"))
		}, func(t *testing.T, b *bed) {
			src := filepath.Join(t.TempDir(), "new.yml")
			writeFile(t, src, dropIn("uid:1001, uid:1002"))
			testnet.Run(t, "cp", src, filepath.Join(b.dir, "conf.d", "50-x.yml"))
		}},
		{"editor writes a temporary file and renames it", func(t *testing.T, b *bed) {
			mkdir(t, filepath.Join(b.dir, "conf.d"))
			writeFile(t, filepath.Join(b.dir, "conf.d", "50-x.yml"), dropIn("uid:1001"))
		}, func(t *testing.T, b *bed) {
			tmp := filepath.Join(b.dir, "conf.d", ".50-x.yml.swp")
			writeFile(t, tmp, dropIn("uid:1001, uid:1002"))
			if err := os.Rename(tmp, filepath.Join(b.dir, "conf.d", "50-x.yml")); err != nil {
				t.Fatal(err)
			}
		}},
		{"conf.d deleted and re-created", func(t *testing.T, b *bed) {
			writeFile(t, b.main, allowBob)
			mkdir(t, filepath.Join(b.dir, "conf.d"))
			writeFile(t, filepath.Join(b.dir, "conf.d", "50-x.yml"), dropIn("uid:1001"))
		}, func(t *testing.T, b *bed) {
			// Without conf.d the main file allows bob; re-created with
			// the denying drop-in, it denies him again; a later write
			// into the new directory is seen too (allowing him).
			if err := os.RemoveAll(filepath.Join(b.dir, "conf.d")); err != nil {
				t.Fatal(err)
			}
			b.reloadedUntil(t, "for 2 users")
			b.expect(t, b.bob, allowed)
			mkdir(t, filepath.Join(b.dir, "conf.d"))
			writeFile(t, filepath.Join(b.dir, "conf.d", "50-x.yml"), dropIn("uid:1001"))
			b.reloadedUntil(t, "for 1 users")
			b.expect(t, b.bob, denied)
			writeFile(t, filepath.Join(b.dir, "conf.d", "50-x.yml"), dropIn("uid:1001, uid:1002"))
		}},
		{"ConfigMap symlink swap", func(t *testing.T, b *bed) {
			configMap(t, filepath.Join(b.dir, "conf.d"), "v1", "50-x.yml", dropIn("uid:1001"))
		}, func(t *testing.T, b *bed) {
			configMap(t, filepath.Join(b.dir, "conf.d"), "v2", "50-x.yml", dropIn("uid:1001, uid:1002"))
		}},
		{"group membership in /etc/group", func(t *testing.T, b *bed) {
			name := tempAccounts(t, bob)
			writeFile(t, b.main, policyYAML([]string{"uid:1001", "group:" + name}, ""))
		}, func(t *testing.T, b *bed) {
			name := "ntft-" + strconv.Itoa(bob)
			testnet.Run(t, "gpasswd", "-a", name, name+"-g")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBed(t, denyBob)
			if tc.before != nil {
				tc.before(t, b)
			}
			b.start(t, testnet.DaemonOptions{})
			b.expect(t, b.alice, allowed)
			b.expect(t, b.bob, denied)
			tc.change(t, b)
			// The change's reload, not one that may come first: a change
			// of the account files (another test adding a user) is a
			// reload too, of an unchanged set.
			status := b.reloadedUntil(t, "for 2 users")
			if strings.Contains(status, "failed") {
				t.Fatalf("reload failed: %s", status)
			}
			b.expect(t, b.bob, allowed)
			b.expect(t, b.alice, allowed)
		})
	}
}

// SIGHUP reloads even when no file changed (users from LDAP/SSSD change
// without any file event): a new generation, RELOADING=1 then READY=1.
func TestReloadOnSIGHUP(t *testing.T) {
	testnet.RequireRoot(t)
	b := newBed(t, policyYAML([]string{"uid:1001"}, ""))
	d := b.start(t, testnet.DaemonOptions{})
	before := parseGeneration(t, statusOf(d.Ready))
	d.Signal(syscall.SIGHUP)
	reloading, _ := d.Notify.WaitFor(t, "RELOADING=1", 10*time.Second)
	if !strings.Contains(reloading, "MONOTONIC_USEC=") {
		t.Errorf("RELOADING=1 without MONOTONIC_USEC: %q", reloading)
	}
	ready, _ := d.Notify.WaitFor(t, "READY=1", 10*time.Second)
	if got := parseGeneration(t, statusOf(ready)); got != before+1 {
		t.Errorf("generation after SIGHUP = %d, want %d (%q)", got, before+1, statusOf(ready))
	}
	d.WaitLog(t, "reload requested", 5*time.Second)
	b.expect(t, b.alice, allowed)
	b.expect(t, b.bob, denied)
}

// An invalid set never replaces the running policy: the old one stays in
// the kernel, every problem is logged, STATUS= says so; fixing the set
// recovers.
func TestInvalidReloadKeepsPolicy(t *testing.T) {
	testnet.RequireRoot(t)
	good := policyYAML([]string{"uid:1001"}, "")
	for _, tc := range []struct {
		name  string
		spoil func(t *testing.T, b *bed)
		want  []string // in the log, with the file name
	}{
		{"syntax", func(t *testing.T, b *bed) {
			writeFile(t, b.main, good+"endpoints: [\n")
		}, []string{"net-tc-filter.yml:"}},
		{"unknown user and bad CIDR at once", func(t *testing.T, b *bed) {
			writeFile(t, b.main, policyYAML([]string{"uid:1001", "ntft-no-such-user"},
				"  - other:\n      iface: [eth0]\n      range: [192.0.2.300/32]\n      allow: [uid:1]\n"))
		}, []string{"ntft-no-such-user", "192.0.2.300"}},
		{"unsafe permissions", func(t *testing.T, b *bed) {
			mkdir(t, filepath.Join(b.dir, "conf.d"))
			p := filepath.Join(b.dir, "conf.d", "50-open.yml")
			writeFile(t, p, "endpoints:\n  - protected:\n      iface: [eth0]\n      range: [192.0.2.7/32]\n      allow: ['*']\n")
			if err := os.Chmod(p, 0o666); err != nil {
				t.Fatal(err)
			}
		}, []string{"50-open.yml"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBed(t, good)
			d := b.start(t, testnet.DaemonOptions{})
			gen := parseGeneration(t, statusOf(d.Ready))
			tc.spoil(t, b)
			status := b.reloaded(t)
			if !strings.Contains(status, "last reload failed") {
				t.Errorf("STATUS= does not show the failure: %q", status)
			}
			if got := parseGeneration(t, status); got != gen {
				t.Errorf("generation changed from %d to %d by an invalid set", gen, got)
			}
			d.WaitLog(t, "reload failed", 5*time.Second)
			for _, w := range tc.want {
				if !strings.Contains(d.Log(), w) {
					t.Errorf("log does not mention %q:\n%s", w, d.Log())
				}
			}
			b.expect(t, b.alice, allowed)
			b.expect(t, b.bob, denied)

			os.RemoveAll(filepath.Join(b.dir, "conf.d"))
			writeFile(t, b.main, policyYAML([]string{"uid:1001", "uid:1002"}, ""))
			if status := b.reloadedUntil(t, "for 2 users"); strings.Contains(status, "failed") {
				t.Errorf("fixed set still reported as failed: %q", status)
			}
			b.expect(t, b.bob, allowed)
		})
	}
}

// A failed reload's status lists every problem, not the first: the
// "missing allow" that a misspelt key leads to must not hide the
// misspelling (unknown key "alow"), which is the one to fix. The
// STATUS= line stays one line, with the first problem and a count. The
// service runs in this process, for its Status, on an interface name no
// interface has.
func TestFailedReloadListsEveryProblem(t *testing.T) {
	testnet.RequireRoot(t)
	svc, ctx, main := runInProcess(t, "endpoints:\n  - x:\n      iface: [ntft-none0]\n      range: [192.0.2.7/32]\n      allow: [uid:0]\non_stop: keep\n",
		nil, time.Minute, nil)
	waitRunning(t, svc)
	dropIn := filepath.Join(filepath.Dir(main), "conf.d", "50-y.yml")
	mkdir(t, filepath.Dir(dropIn))
	writeFile(t, dropIn, "endpoints:\n  - y:\n      iface: [ntft-none0]\n      range: [192.0.2.8/32]\n      alow: [uid:0]\n")
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := svc.Reload(rctx); err == nil {
		t.Fatal("Reload of a drop-in with alow: succeeded")
	}
	want := []string{
		dropIn + `:2: endpoint "y": missing allow`,
		dropIn + `:5: unknown key "alow" in endpoint "y"`,
	}
	st := svc.Status()
	lines := strings.Split(st.LastError, "\n")
	if len(lines) != len(want) {
		t.Errorf("LastError has %d lines, want one a problem (%d):\n%s", len(lines), len(want), st.LastError)
	}
	for i, w := range want {
		if i >= len(lines) || !strings.HasPrefix(lines[i], w) {
			t.Errorf("LastError line %d does not begin %q:\n%s", i+1, w, st.LastError)
		}
		if !strings.Contains(st.Problem(), w) {
			t.Errorf("Problem() lacks %q:\n%s", w, st.Problem())
		}
	}
	if st.State != StateDegraded {
		t.Errorf("state %s after a failed reload, want degraded", st.State)
	}
	if !strings.Contains(st.Summary, "; last reload failed: "+want[0]) || !strings.Contains(st.Summary, " (and 1 more)") || strings.Contains(st.Summary, "\n") {
		t.Errorf("STATUS= is not one line with the first problem and a count: %q", st.Summary)
	}
}

func parseGeneration(t *testing.T, status string) uint32 {
	t.Helper()
	_, rest, ok := strings.Cut(status, "generation ")
	if !ok {
		t.Fatalf("no generation in %q", status)
	}
	var g uint32
	if _, err := fmt.Sscanf(rest, "%d", &g); err != nil {
		t.Fatalf("no generation in %q", status)
	}
	return g
}

func mkdir(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
}

// configMap lays out dir as the kubelet does for a ConfigMap volume and
// swaps its ..data link atomically to a new version.
func configMap(t *testing.T, dir, version, name, content string) {
	t.Helper()
	mkdir(t, dir)
	ts := "..2026_11_24_" + version
	mkdir(t, filepath.Join(dir, ts))
	writeFile(t, filepath.Join(dir, ts, name), content)
	old, _ := os.Readlink(filepath.Join(dir, "..data"))
	tmp := filepath.Join(dir, "..data_tmp")
	if err := os.Symlink(ts, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, name)
	if _, err := os.Lstat(link); os.IsNotExist(err) {
		if err := os.Symlink(filepath.Join("..data", name), link); err != nil {
			t.Fatal(err)
		}
	}
	if old != "" {
		os.RemoveAll(filepath.Join(dir, old))
	}
}

// tempAccounts creates a user ntft-<uid> with that uid and an empty group
// ntft-<uid>-g, removed when the test ends; it returns the group's name.
func tempAccounts(t *testing.T, uid int) string {
	t.Helper()
	name := "ntft-" + strconv.Itoa(uid)
	group := name + "-g"
	exec.Command("userdel", "-f", name).Run()
	exec.Command("groupdel", group).Run()
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		t.Fatalf("uid %d is taken by %s on this machine; the test needs it free", uid, u.Username)
	}
	testnet.Run(t, "groupadd", group)
	testnet.Run(t, "useradd", "--no-create-home", "--uid", strconv.Itoa(uid), "--user-group", name)
	t.Cleanup(func() {
		// -f: the test's agent may still run as the user.
		exec.Command("userdel", "-f", name).Run()
		exec.Command("groupdel", group).Run()
	})
	return group
}
