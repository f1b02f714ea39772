// SPDX-License-Identifier: Apache-2.0

package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/nettcfilter/net-tc-filter/daemon/policy"
	"github.com/nettcfilter/net-tc-filter/daemon/testnet"
)

// stuckResolver is NSS with a backend that hangs (LDAP unreachable, each
// lookup waiting out its timeout): once armed, the next lookup waits
// until released; every other one answers at once.
type stuckResolver struct {
	mu      sync.Mutex
	armed   bool
	stuck   chan struct{} // closed when the armed lookup begins
	release chan struct{}
}

func (r *stuckResolver) User(name string) (uint32, error) {
	r.mu.Lock()
	armed := r.armed
	r.armed = false
	r.mu.Unlock()
	if armed {
		close(r.stuck)
		<-r.release
	}
	return 4242, nil
}

func (r *stuckResolver) Group(name string) ([]uint32, error) {
	return nil, fmt.Errorf("%w group %q", policy.ErrUnknown, name)
}

// The periodic resolution asks NSS off the service's own goroutine: while
// it hangs, a reload (and with it the watchdog and interface changes,
// served by the same loop) still goes through, and the hung answer, for a
// policy that a reload has replaced since, is dropped. The service runs in
// this process, with a fake resolver, on an interface name that no
// interface has: the program is loaded and attached nowhere.
func TestResolutionDoesNotHoldTheService(t *testing.T) {
	testnet.RequireRoot(t)
	r := &stuckResolver{stuck: make(chan struct{}), release: make(chan struct{})}
	svc, ctx, _ := runInProcess(t, "endpoints:\n  - x:\n      iface: [ntft-none0]\n      range: [192.0.2.7/32]\n      allow: [someone]\non_stop: keep\n",
		r, 20*time.Millisecond, nil)
	waitRunning(t, svc)

	r.mu.Lock()
	r.armed = true
	r.mu.Unlock()
	select {
	case <-r.stuck:
	case <-time.After(5 * time.Second):
		t.Fatal("no resolution within 5 s at a 20 ms interval")
	}
	rctx, rcancel := context.WithTimeout(ctx, 5*time.Second)
	gen, err := svc.Reload(rctx)
	rcancel()
	close(r.release)
	if err != nil {
		t.Fatalf("Reload while NSS hangs in the periodic resolution: %v", err)
	}
	time.Sleep(200 * time.Millisecond) // the hung answer, and more resolutions, come in
	if st := svc.Status(); st.Generation != gen || st.State != StateRunning {
		t.Errorf("after the hung resolution ended: generation %d (reload made %d), state %s", st.Generation, gen, st.State)
	}
}

// waitRunning waits until svc is running: started, and with nothing wrong.
func waitRunning(t *testing.T, svc *Service) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for svc.Status().State != StateRunning {
		if time.Now().After(deadline) {
			t.Fatalf("not running after 10 s: %+v", svc.Status())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// runInProcess writes the configuration yml as the main file of a new
// configuration directory and runs a Service on it in this process, with
// resolver r, for the tests that need a resolver the real binary cannot
// have; it returns the main file's path too. When the test ends, Run's
// context ends, Run must return (in time, even with NSS hung), then
// cleanup runs; a failed test shows the service's log.
func runInProcess(t *testing.T, yml string, r policy.Resolver, interval time.Duration, cleanup func()) (*Service, context.Context, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "etc")
	mkdir(t, dir)
	main := filepath.Join(dir, "net-tc-filter.yml")
	writeFile(t, main, yml)
	var logs testnet.SyncBuffer
	svc := New(Options{
		ConfigPath: main, PinDir: testnet.PinDir(t), Resolver: r, ResolveInterval: interval,
		// Not the host's /etc/passwd and /etc/group: other tests change
		// them, and a reload that starts could meet a hang of r that
		// the test meant for the periodic resolution.
		AccountFiles: []string{},
		Logger:       slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(policy.LookupBudget + 10*time.Second):
			t.Errorf("Run did not return after its context ended")
		}
		if cleanup != nil {
			cleanup()
		}
		if t.Failed() {
			t.Logf("service log:\n%s", logs.String())
		}
	})
	return svc, ctx, main
}
