// SPDX-License-Identifier: Apache-2.0

package testnet

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nettcfilter/net-tc-filter/internal/netlab"
)

// The daemon this test process built, once for all its tests; Main
// removes it.
var build struct {
	once   sync.Once
	path   string
	remove func() error // nil for $NTF_TEST_BINARY
	err    error
}

// BinaryEnv names a prebuilt net-tc-filter command for Binary to use
// instead of building one: test binaries made with `go test -c` run where
// there is no Go toolchain (the kernel matrix's guests, .ci/kernels).
const BinaryEnv = "NTF_TEST_BINARY"

// Binary builds the net-tc-filter command once per test process and
// returns its path: service tests run the real program, as systemd would.
// With $NTF_TEST_BINARY set, that program is used as it is.
func Binary(t testing.TB) string {
	t.Helper()
	build.once.Do(func() {
		if p := os.Getenv(BinaryEnv); p != "" {
			build.path = p
			if err := netlab.CheckProgram(p); err != nil {
				build.err = fmt.Errorf("%s: %w", BinaryEnv, err)
			}
			return
		}
		build.path, build.remove, build.err = netlab.BuildDaemon(raceEnabled)
	})
	if build.err != nil {
		t.Fatal(build.err)
	}
	return build.path
}

func removeBinary() {
	if build.remove != nil {
		build.remove() // the daemon Binary built, never a prebuilt one
	}
}

// PinDir returns a fresh bpffs directory for one daemon's pins, removed
// (with whatever is pinned in it) when the test ends.
func PinDir(t testing.TB) string {
	dir := netlab.PinDir("ntf-test")
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// Notifications receives what a service sends to $NOTIFY_SOCKET, as
// systemd would, one datagram's text at a time.
type Notifications struct {
	Path string
	C    <-chan string // one datagram each
}

// listenNotify hands the text of what n receives on to the test.
func listenNotify(n *netlab.Notifications) *Notifications {
	c := make(chan string, cap(n.C))
	go func() {
		defer close(c)
		for m := range n.C {
			c <- m.Text
		}
	}()
	return &Notifications{Path: n.Path, C: c}
}

// WaitFor returns the first datagram with a line starting with prefix
// (e.g. "READY=1"), failing the test after timeout (stretched on an
// emulated CPU: netlab.Slowed). Datagrams before it are returned too, in
// order, for tests of the sequence.
func (n *Notifications) WaitFor(t testing.TB, prefix string, timeout time.Duration) (string, []string) {
	t.Helper()
	var seen []string
	timeout = netlab.Slowed(timeout)
	deadline := time.After(timeout)
	for {
		select {
		case msg, ok := <-n.C:
			if !ok {
				t.Fatalf("notify socket closed while waiting for %s; got %q", prefix, seen)
			}
			seen = append(seen, msg)
			if netlab.HasLine(msg, prefix) {
				return msg, seen
			}
		case <-deadline:
			t.Fatalf("no %s within %v; got %q", prefix, timeout, seen)
		}
	}
}

// Daemon is `net-tc-filter run` inside a network namespace.
type Daemon struct {
	*netlab.Daemon
	Notify *Notifications
	Ready  string // the READY=1 datagram of the start, with its STATUS=
	output *netlab.SyncBuffer
}

// DaemonOptions say how to run the daemon.
type DaemonOptions struct {
	Config string // main configuration file
	PinDir string // bpffs pin directory
	// StateDir is where the daemon keeps the last good set; "": a fresh
	// one for this daemon alone (never the host's /var/lib). Tests of a
	// restart that must find the set again pass the same one twice.
	StateDir string
	Args     []string // more arguments to run
	Env      []string // more environment (NOTIFY_SOCKET is set)
	// Wrap is a command prefix the daemon runs under inside the
	// namespace, e.g. Journal.Wrap. It must exec, not fork, so signals
	// reach the daemon.
	Wrap []string
	// Stderr, when set, is the daemon's stderr (else a buffer, see Log).
	Stderr *os.File
}

// StartDaemon starts the daemon in ns and waits for READY=1. It is
// stopped with SIGTERM when the test ends, unless the test did.
func StartDaemon(t testing.TB, ns *NS, opts DaemonOptions) *Daemon {
	t.Helper()
	d := startDaemon(t, ns, opts)
	d.Ready, _ = d.Notify.WaitFor(t, "READY=1", 30*time.Second)
	return d
}

// StartDaemonNoWait starts the daemon without waiting for anything, for
// tests of a daemon that must refuse to start.
func StartDaemonNoWait(t testing.TB, ns *NS, opts DaemonOptions) *Daemon {
	t.Helper()
	return startDaemon(t, ns, opts)
}

func startDaemon(t testing.TB, ns *NS, opts DaemonOptions) *Daemon {
	t.Helper()
	if opts.StateDir == "" {
		opts.StateDir = t.TempDir()
	}
	d := &Daemon{output: &netlab.SyncBuffer{}}
	lab := netlab.DaemonOptions{
		Binary: Binary(t), Config: opts.Config, PinDir: opts.PinDir, StateDir: opts.StateDir,
		Args: opts.Args, Env: opts.Env, Wrap: opts.Wrap, Stdout: d.output, Stderr: d.output,
	}
	if opts.Stderr != nil {
		lab.Stderr = opts.Stderr
	}
	var err error
	d.Daemon, err = netlab.StartDaemon(ns.NS, lab)
	check(t, err)
	d.Notify = listenNotify(d.Daemon.Notify)
	t.Cleanup(func() {
		d.Close()
		if t.Failed() {
			t.Logf("daemon output:\n%s", d.Log())
		}
	})
	return d
}

// Log is what the daemon wrote to stderr and stdout so far.
func (d *Daemon) Log() string { return d.output.String() }

// WaitLog waits until the daemon's output contains s.
func (d *Daemon) WaitLog(t testing.TB, s string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(d.Log(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("daemon did not log %q within %v", s, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// SyncBuffer is a bytes.Buffer that several goroutines may write and read
// at once (see netlab.SyncBuffer).
type SyncBuffer = netlab.SyncBuffer
