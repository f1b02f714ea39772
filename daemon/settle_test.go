// SPDX-License-Identifier: Apache-2.0

package daemon

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nettcfilter/net-tc-filter/daemon/testnet"
)

// A file written in place by a slow writer is never applied half-written
// (SPEC §1 Failing closed). The first chunk alone is a valid set that
// protects nothing: applied, it would let bob through. The writer pauses
// far longer than the watcher's debounce and the settle check's window
// (the review saw 600 ms suffice), with bob probing all along; only the
// whole file, once closed, goes live.
func TestSlowWriterNeverHalfApplied(t *testing.T) {
	testnet.RequireRoot(t)
	ifaces := "interfaces:\n  eth0: {default: allow}\n"
	for _, tc := range []struct {
		name        string
		main        string // the main file at start
		file        string // the file rewritten, relative to the config directory
		before      string // its contents at start
		first, rest string // written in two chunks; the first alone protects nothing
	}{
		{"main file", ifaces + dropInYAML("uid:1001"), "net-tc-filter.yml", "",
			ifaces, dropInYAML("uid:1001, uid:1003")},
		{"drop-in", ifaces, "conf.d/50-x.yml", dropInYAML("uid:1001"),
			"# rewritten\n", dropInYAML("uid:1001, uid:1003")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBed(t, tc.main)
			mkdir(t, filepath.Join(b.dir, "conf.d"))
			path := filepath.Join(b.dir, tc.file)
			if tc.before != "" {
				writeFile(t, path, tc.before)
			}
			d := b.start(t, testnet.DaemonOptions{})
			gen := parseGeneration(t, statusOf(d.Ready))
			b.expect(t, b.bob, denied)

			f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.WriteString(tc.first); err != nil {
				t.Fatal(err)
			}

			// A SIGHUP while the file is open waits for the writer a while,
			// then fails and keeps the running policy.
			d.Signal(syscall.SIGHUP)
			status := b.reloaded(t)
			if !strings.Contains(status, "last reload failed") || !strings.Contains(status, "open for writing") {
				t.Errorf("SIGHUP during the write: STATUS=%q, want a failed reload naming the write in progress", status)
			}
			if got := parseGeneration(t, status); got != gen {
				t.Errorf("generation %d → %d while the file was half-written", gen, got)
			}
			// The watcher holds its change meanwhile: no reload at all.
			pause := time.After(3 * time.Second)
			for waiting := true; waiting; {
				b.expect(t, b.bob, denied)
				select {
				case msg := <-d.Notify.C:
					if strings.Contains(msg, "RELOADING=1") {
						t.Errorf("reload while the file was open for writing: %q", msg)
					}
				case <-pause:
					waiting = false
				default:
					time.Sleep(100 * time.Millisecond)
				}
			}

			if _, err := f.WriteString(tc.rest); err != nil {
				t.Fatal(err)
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			status = b.reloaded(t)
			if strings.Contains(status, "failed") || parseGeneration(t, status) != gen+1 {
				t.Errorf("after the writer closed: STATUS=%q, want generation %d live", status, gen+1)
			}
			if !strings.Contains(status, "enforcing 2 ranges") {
				t.Errorf("after the writer closed: STATUS=%q, want the whole file's 2 ranges", status)
			}
			b.expect(t, b.bob, denied)
			b.expect(t, b.alice, allowed)
		})
	}
}

// dropInYAML replaces the base configuration's endpoint whole.
func dropInYAML(allow string) string {
	return fmt.Sprintf("endpoints:\n  - protected:\n      iface: [eth0]\n      range: [%s/32, %s/128]\n      allow: [%s]\n", prot4, prot6, allow)
}

// A writer that closes between its chunks (`>` then, 1.5 s later, `>>`)
// is waited for as well: a file written in place goes live only once the
// set had no write for 2 s, and bob, probing all along, is never let
// through by the first chunk alone.
func TestChunkedWriterNeverHalfApplied(t *testing.T) {
	testnet.RequireRoot(t)
	ifaces := "interfaces:\n  eth0: {default: allow}\n"
	b := newBed(t, ifaces+dropInYAML("uid:1001"))
	d := b.start(t, testnet.DaemonOptions{})
	gen := parseGeneration(t, statusOf(d.Ready))

	// The writer keeps its own time; bob probes meanwhile.
	wrote := make(chan error, 1)
	go func() {
		if err := os.WriteFile(b.main, []byte(ifaces), 0o644); err != nil { // closed: valid alone, protecting nothing
			wrote <- err
			return
		}
		time.Sleep(1500 * time.Millisecond)
		f, err := os.OpenFile(b.main, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			wrote <- err
			return
		}
		_, err = f.WriteString(dropInYAML("uid:1001, uid:1003"))
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		wrote <- err
	}()
	for writing := true; writing; {
		b.expect(t, b.bob, denied)
		select {
		case err := <-wrote:
			if err != nil {
				t.Fatal(err)
			}
			writing = false
		default:
		}
		select {
		case msg := <-d.Notify.C:
			if strings.Contains(msg, "RELOADING=1") {
				t.Errorf("reload between the chunks: %q", msg)
			}
		default:
		}
	}
	status := b.reloaded(t)
	if strings.Contains(status, "failed") || parseGeneration(t, status) != gen+1 || !strings.Contains(status, "enforcing 2 ranges") {
		t.Errorf("after the second chunk: STATUS=%q, want generation %d with the whole file's 2 ranges", status, gen+1)
	}
	b.expect(t, b.bob, denied)
	b.expect(t, b.alice, allowed)
}
