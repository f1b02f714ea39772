// SPDX-License-Identifier: Apache-2.0

package daemon

import (
	"crypto/sha256"
	"log/slog"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nettcfilter/net-tc-filter/daemon/config"
	"github.com/nettcfilter/net-tc-filter/daemon/lastgood"
	"github.com/nettcfilter/net-tc-filter/daemon/testnet"
	"github.com/nettcfilter/net-tc-filter/internal/netlab"
)

const brokenYAML = "endpoints: [\n"

// saved waits until the last good set the daemons of b saved in dir has
// main as its main file, and returns it. The daemon saves a set once it
// has sent READY=1, so the set that just went live may not be saved yet.
func (b *bed) saved(t *testing.T, dir, main string) lastgood.Set {
	t.Helper()
	store, err := lastgood.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(netlab.Slowed(10 * time.Second))
	for {
		set, err := store.Latest(b.main)
		switch {
		case err == nil && fileText(t, set.Main) == main:
			return set
		case time.Now().After(deadline) && err != nil:
			t.Fatalf("no last good set in %s: %v", dir, err)
		case time.Now().After(deadline):
			t.Fatalf("the saved main file is not the one that went live:\n%s", fileText(t, set.Main))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func fileText(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// readyWith waits for a READY=1 whose STATUS= satisfies ok. Reloads the
// test did not cause may come first: the watcher follows /etc/passwd and
// /etc/group too, which other tests on the host change.
func readyWith(t *testing.T, d *testnet.Daemon, what string, ok func(status string) bool) {
	t.Helper()
	deadline := time.After(15 * time.Second)
	var seen []string
	for {
		select {
		case msg, open := <-d.Notify.C:
			if !open {
				t.Fatalf("notify socket closed while waiting for %s; STATUS= seen: %q", what, seen)
			}
			if !strings.Contains(msg, "READY=1") {
				continue
			}
			st := statusOf(msg)
			if ok(st) {
				return
			}
			seen = append(seen, st)
		case <-deadline:
			t.Fatalf("no READY=1 with %s within 15s; STATUS= seen: %q", what, seen)
		}
	}
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
	b.expect(t, b.bob, denied)
	b.saved(t, state, good)

	// A clean stop with on_stop: detach leaves nothing pinned, as a
	// reboot does.
	d.Signal(syscall.SIGTERM)
	if err := d.Wait(10 * time.Second); err != nil {
		t.Fatalf("clean stop: %v", err)
	}
	if _, err := os.Stat(b.pins); !os.IsNotExist(err) {
		t.Fatalf("pins left after on_stop: detach (%v)", err)
	}
	b.expect(t, b.bob, allowed)

	writeFile(t, b.main, brokenYAML)
	d = b.start(t, testnet.DaemonOptions{StateDir: state})
	st := statusOf(d.Ready)
	for _, want := range []string{"enforcing 2 ranges", "the configuration files are invalid", "net-tc-filter.yml:", "enforcing the last good set of "} {
		if !strings.Contains(st, want) {
			t.Errorf("STATUS= at a start on the last good set lacks %q: %q", want, st)
		}
	}
	d.WaitLog(t, "enforcing the last good set of", 5*time.Second)
	b.expect(t, b.bob, denied)
	b.expect(t, b.alice, allowed)

	// Broken again another way: the failed reload still says what is
	// enforced meanwhile.
	writeFile(t, b.main, brokenYAML+"# still broken\n")
	readyWith(t, d, "a failed reload on the last good set", func(st string) bool {
		return strings.Contains(st, "failed") && strings.Contains(st, "enforcing the last good set of ")
	})

	// Fixed back to the set that is enforced: the same policy, but now
	// the files' own, and the service is no longer degraded.
	writeFile(t, b.main, good)
	readyWith(t, d, "no failure after the files were fixed", func(st string) bool {
		return !strings.Contains(st, "failed") && !strings.Contains(st, "invalid")
	})
	d.WaitLog(t, "files=["+b.main+"]", 5*time.Second)

	// A new valid set is applied and becomes the last good set.
	both := policyYAML([]string{"uid:1001", "uid:1002"}, "")
	writeFile(t, b.main, both)
	readyWith(t, d, "the new set live", func(st string) bool {
		return strings.Contains(st, "for 2 users") && !strings.Contains(st, "failed")
	})
	b.expect(t, b.bob, allowed)
	b.saved(t, state, both)
}

// With a filter still pinned (a crash, a restart) and broken files, the
// start enforces the last good set as well, rather than exiting into a
// restart loop that leaves the pins without a daemon.
func TestLastGoodWithPins(t *testing.T) {
	testnet.RequireRoot(t)
	good := policyYAML([]string{"uid:1001"}, "")
	b := newBed(t, good)
	state := t.TempDir() // root's, mode 0700, as systemd makes it
	d := b.start(t, testnet.DaemonOptions{StateDir: state})
	b.saved(t, state, good) // right after READY=1
	d.Kill()
	writeFile(t, b.main, brokenYAML)
	d = b.start(t, testnet.DaemonOptions{StateDir: state})
	if st := statusOf(d.Ready); !strings.Contains(st, "enforcing the last good set of ") {
		t.Errorf("STATUS= at a start on the last good set: %q", st)
	}
	b.expect(t, b.bob, denied)
	b.expect(t, b.alice, allowed)
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
		{"owned by a user", func(dir string) error { return os.Chown(dir, bob, bob) }, "directory owned by uid 1002, not root"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			good := policyYAML([]string{"uid:1001"}, "")
			b := newBed(t, good)
			state := t.TempDir() // root's, mode 0700, as systemd makes it
			d := b.start(t, testnet.DaemonOptions{StateDir: state})
			saved := b.saved(t, state, good)
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

// loadedAs is a Config as a load of files, as they stand, records them.
func loadedAs(t *testing.T, files []string) *config.Config {
	t.Helper()
	cfg := &config.Config{Files: files}
	for _, f := range files {
		cfg.Sums = append(cfg.Sums, sha256.Sum256([]byte(fileText(t, f))))
	}
	return cfg
}

// What is saved when a set goes live: the files as they were loaded, but
// never a version written since (it was never validated), nor while one is
// open for writing (the copy could be half of a new version), never the
// last good set itself when it is what went live, and nothing into a state
// directory that is not root's alone.
func TestSaveLastGood(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, main, state string) (files []string)
		after func(t *testing.T, main string) // between the load and the save
		saved bool                            // a new set is current
		log   string                          // "": nothing logged
	}{
		{"files as loaded", func(t *testing.T, main, state string) []string {
			return []string{main}
		}, nil, true, ""},
		{"a whole new version written after the load", func(t *testing.T, main, state string) []string {
			return []string{main}
		}, func(t *testing.T, main string) {
			writeFile(t, main, brokenYAML)
		}, false, "changed since it was loaded"},
		{"a file open for writing", func(t *testing.T, main, state string) []string {
			f, err := os.OpenFile(main, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { f.Close() })
			return []string{main}
		}, nil, false, "is open for writing"},
		{"the last good set itself", func(t *testing.T, main, state string) []string {
			store, err := lastgood.Open(state)
			if err != nil {
				t.Fatal(err)
			}
			files := []string{main}
			set, _, err := store.Save(main, files, loadedAs(t, files).Sums, time.Now(), func(string) error { return nil })
			if err != nil {
				t.Fatal(err)
			}
			return set.Paths()
		}, nil, false, ""},
		{"an unsafe state directory", func(t *testing.T, main, state string) []string {
			if err := os.Chmod(state, 0o757); err != nil {
				t.Fatal(err)
			}
			return []string{main}
		}, nil, false, "refusing state directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			main := t.TempDir() + "/net-tc-filter.yml"
			writeFile(t, main, policyYAML([]string{"uid:1001"}, ""))
			state := t.TempDir()
			var log testnet.SyncBuffer
			s := New(Options{ConfigPath: main, StateDir: state, Logger: slog.New(slog.NewTextHandler(&log, nil))})
			// A set saved before: the one that must stay when the save
			// is refused.
			store, err := lastgood.Open(state)
			if err != nil {
				t.Fatal(err)
			}
			writeFile(t, main, policyYAML([]string{"uid:1002"}, ""))
			if _, _, err := store.Save(main, []string{main}, loadedAs(t, []string{main}).Sums, time.Now(), func(string) error { return nil }); err != nil {
				t.Fatal(err)
			}
			writeFile(t, main, policyYAML([]string{"uid:1001"}, ""))
			files := tc.setup(t, main, state)
			cfg := loadedAs(t, files)
			if tc.after != nil {
				tc.after(t, main)
			}
			before, _ := os.Readlink(state + "/last-good")
			s.saveLastGood(cfg)

			after, _ := os.Readlink(state + "/last-good")
			if saved := after != before; saved != tc.saved {
				t.Errorf("a new set saved: %v, want %v; log:\n%s", saved, tc.saved, log.String())
			}
			if tc.log == "" && log.String() != "" || !strings.Contains(log.String(), tc.log) {
				t.Errorf("logged %q, want %q", log.String(), tc.log)
			}
		})
	}
}
