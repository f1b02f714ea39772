package daemon

import (
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nettcfilter/net-tc-filter/daemon/lastgood"
	"github.com/nettcfilter/net-tc-filter/daemon/testnet"
)

const brokenYAML = "endpoints: [\n"

// latest is the last good set the daemons of b saved in dir.
func (b *bed) latest(t *testing.T, dir string) lastgood.Set {
	t.Helper()
	store, err := lastgood.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	set, err := store.Latest(b.main)
	if err != nil {
		t.Fatalf("no last good set in %s: %v", dir, err)
	}
	return set
}

func fileText(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// After a reboot nothing is pinned. A start whose files are broken then
// enforces the last set that went live, says so (degraded, both facts in
// STATUS=), and applies the files once they are valid, without a command.
func TestLastGoodAfterReboot(t *testing.T) {
	testnet.RequireRoot(t)
	good := policyYAML([]string{"uid:1001"}, "")
	b := newBed(t, good)
	state := t.TempDir() // root's, mode 0700, as systemd makes it
	d := b.start(t, testnet.DaemonOptions{StateDir: state})
	b.expect(t, b.bob, false)
	if set := b.latest(t, state); fileText(t, set.Main) != good {
		t.Fatalf("the saved main file is not the one that went live:\n%s", fileText(t, set.Main))
	}

	// A clean stop with on_stop: detach leaves nothing pinned, as a
	// reboot does.
	d.Signal(syscall.SIGTERM)
	if err := d.Wait(10 * time.Second); err != nil {
		t.Fatalf("clean stop: %v", err)
	}
	if _, err := os.Stat(b.pins); !os.IsNotExist(err) {
		t.Fatalf("pins left after on_stop: detach (%v)", err)
	}
	b.expect(t, b.bob, true)

	writeFile(t, b.main, brokenYAML)
	d = b.start(t, testnet.DaemonOptions{StateDir: state})
	st := statusOf(d.Ready)
	for _, want := range []string{"enforcing 2 ranges", "the configuration files are invalid", "net-tc-filter.yml:", "enforcing the last good set of "} {
		if !strings.Contains(st, want) {
			t.Errorf("STATUS= at a start on the last good set lacks %q: %q", want, st)
		}
	}
	d.WaitLog(t, "enforcing the last good set of", 5*time.Second)
	b.expect(t, b.bob, false)
	b.expect(t, b.alice, true)

	// Fixed back to the set that is enforced: nothing to apply, but the
	// service is no longer degraded.
	writeFile(t, b.main, good)
	if st := b.reloaded(t); strings.Contains(st, "failed") || strings.Contains(st, "invalid") {
		t.Errorf("STATUS= after the files were fixed: %q", st)
	}

	// A new valid set is applied and becomes the last good set.
	both := policyYAML([]string{"uid:1001", "uid:1002"}, "")
	writeFile(t, b.main, both)
	if st := b.reloaded(t); strings.Contains(st, "failed") {
		t.Errorf("STATUS= after a valid change: %q", st)
	}
	b.expect(t, b.bob, true)
	if set := b.latest(t, state); fileText(t, set.Main) != both {
		t.Errorf("the saved main file is not the one that went live:\n%s", fileText(t, set.Main))
	}
}

// With a filter still pinned (a crash, a restart) and broken files, the
// start enforces the last good set as well, rather than exiting into a
// restart loop that leaves the pins without a daemon.
func TestLastGoodWithPins(t *testing.T) {
	testnet.RequireRoot(t)
	b := newBed(t, policyYAML([]string{"uid:1001"}, ""))
	state := t.TempDir() // root's, mode 0700, as systemd makes it
	d := b.start(t, testnet.DaemonOptions{StateDir: state})
	d.Kill()
	writeFile(t, b.main, brokenYAML)
	d = b.start(t, testnet.DaemonOptions{StateDir: state})
	if st := statusOf(d.Ready); !strings.Contains(st, "enforcing the last good set of ") {
		t.Errorf("STATUS= at a start on the last good set: %q", st)
	}
	b.expect(t, b.bob, false)
	b.expect(t, b.alice, true)
}

// Without a last good set, broken files still stop the start, and the
// refusal names both.
func TestNoLastGood(t *testing.T) {
	testnet.RequireRoot(t)
	b := newBed(t, brokenYAML)
	d := testnet.StartDaemonNoWait(t, b.tp.Client, testnet.DaemonOptions{Config: b.main, PinDir: b.pins})
	if err := d.Wait(10 * time.Second); err == nil {
		t.Fatal("daemon started with invalid files and no last good set")
	}
	for _, want := range []string{"net-tc-filter.yml:", "no last good set to enforce instead: no last good set saved in"} {
		if !strings.Contains(d.Log(), want) {
			t.Errorf("the refusal lacks %q:\n%s", want, d.Log())
		}
	}
}

// A state directory that someone other than root could write is never
// trusted: nothing is saved into it, a set saved there before is not
// enforced, and the daemon says why.
func TestUnsafeStateDir(t *testing.T) {
	testnet.RequireRoot(t)
	for _, tc := range []struct {
		name string
		harm func(dir string) error
		want string
	}{
		{"writable by group", func(dir string) error { return os.Chmod(dir, 0o770) }, "writable by group or others (mode 0770)"},
		{"owned by a user", func(dir string) error { return os.Chown(dir, bob, bob) }, "is owned by uid 1002, not root"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			good := policyYAML([]string{"uid:1001"}, "")
			b := newBed(t, good)
			state := t.TempDir() // root's, mode 0700, as systemd makes it
			d := b.start(t, testnet.DaemonOptions{StateDir: state})
			saved := b.latest(t, state)
			if err := tc.harm(state); err != nil {
				t.Fatal(err)
			}

			// Running: a new set goes live but is not saved.
			writeFile(t, b.main, policyYAML([]string{"uid:1001", "uid:1002"}, ""))
			b.reloaded(t)
			d.WaitLog(t, "refusing state directory "+state, 5*time.Second)
			if !strings.Contains(d.Log(), tc.want) {
				t.Errorf("the refusal does not say why (%q):\n%s", tc.want, d.Log())
			}
			if set, _ := os.Readlink(state + "/last-good"); set != strings.TrimPrefix(saved.Dir, state+"/") {
				t.Errorf("a set was saved into the unsafe directory: last-good -> %s", set)
			}

			// Starting with broken files: the saved set is not trusted.
			d.Kill()
			writeFile(t, b.main, brokenYAML)
			d = testnet.StartDaemonNoWait(t, b.tp.Client, testnet.DaemonOptions{Config: b.main, PinDir: b.pins, StateDir: state})
			if err := d.Wait(10 * time.Second); err == nil {
				t.Fatal("daemon started on a set from an unsafe state directory")
			}
			for _, want := range []string{"refusing state directory " + state, tc.want} {
				if !strings.Contains(d.Log(), want) {
					t.Errorf("the refusal lacks %q:\n%s", want, d.Log())
				}
			}
		})
	}
}
