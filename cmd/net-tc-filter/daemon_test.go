// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nettcfilter/net-tc-filter/daemon/testnet"
	ntfdbus "github.com/nettcfilter/net-tc-filter/dbus"
	"github.com/nettcfilter/net-tc-filter/internal/netlab"
)

// run ends the goroutines it starts beside the service (D-Bus, SIGHUP)
// before it returns: none is left using a service that has stopped. The
// D-Bus object is the real one, made slow to finish, so that a run that
// does not wait for it returns first.
func TestRunEndsItsGoroutines(t *testing.T) {
	testnet.RequireRoot(t)
	shipped, err := os.ReadFile("../../conf/net-tc-filter.yml")
	if err != nil {
		t.Fatal(err)
	}
	cfg := writeConfig(t, string(shipped), nil) // filters no interface
	t.Setenv("DBUS_SYSTEM_BUS_ADDRESS", "unix:path="+filepath.Join(t.TempDir(), "no-bus"))
	os.Unsetenv("NOTIFY_SOCKET")
	var stderr netlab.SyncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var served atomic.Bool
	slowBus := func(ctx context.Context, opts ntfdbus.ServerOptions) {
		ntfdbus.Serve(ctx, opts)
		time.Sleep(300 * time.Millisecond)
		served.Store(true)
	}
	done := make(chan int, 1)
	go func() {
		done <- execute(ctx, parts{serveBus: slowBus}, []string{"run", "--config", cfg, "--pin-dir", testnet.PinDir(t), "--state-dir", t.TempDir()}, io.Discard, &stderr)
	}()
	// Both goroutines are under way once D-Bus has failed to connect;
	// the service stops at once once it has started.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if log := stderr.String(); strings.Contains(log, "D-Bus: ") && strings.Contains(log, "started: ") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the daemon did not start:\n%s", stderr.String())
		}
	}
	cancel()
	select {
	case code := <-done:
		if code != exitOK {
			t.Errorf("exit %d\n%s", code, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("run did not return after its context ended:\n%s", stderr.String())
	}
	if !served.Load() {
		t.Error("run returned before the D-Bus object was done")
	}
	buf := make([]byte, 1<<20)
	stacks := string(buf[:runtime.Stack(buf, true)])
	for _, fn := range []string{"main.reloadOnHangup(", "dbus.Serve("} {
		if strings.Contains(stacks, fn) {
			t.Errorf("%s still runs after run returned:\n%s", fn, stacks)
		}
	}
}
