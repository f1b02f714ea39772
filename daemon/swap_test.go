// SPDX-License-Identifier: Apache-2.0

package daemon

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nettcfilter/net-tc-filter/daemon/testnet"
)

// flow is a pair of streams to the protected address while a test does
// something to the daemon: bob's datagrams (denied) and alice's (allowed),
// each to a port of its own, counted where they arrive. Each stream goes on
// in chunks until stop.
type flow struct {
	wg                 sync.WaitGroup
	stop               chan struct{}
	aliceSent, bobSent int
	aliceErr, bobErr   error
	aliceGot, bobGot   func() int64
	// rcvbufErrors reads the server namespace's count of datagrams its
	// sockets' full buffers dropped, and rcvbufAtStart its value when
	// the streams began: a loss there is the receiver's, not the filter's.
	rcvbufErrors  func() (uint64, error)
	rcvbufAtStart uint64
}

const (
	alicePort = 9001
	bobPort   = 9002
)

func startFlow(t *testing.T, b *bed) *flow {
	t.Helper()
	fl := &flow{stop: make(chan struct{})}
	ac, bc := b.tp.CountUDP(t, alicePort), b.tp.CountUDP(t, bobPort)
	fl.aliceGot, fl.bobGot = ac.Load, bc.Load
	fl.rcvbufErrors = b.tp.Server.NS.UDPRcvbufErrors
	var err error
	if fl.rcvbufAtStart, err = fl.rcvbufErrors(); err != nil {
		t.Fatal(err)
	}
	stream := func(a *testnet.Agent, port uint16, sent *int, errp *error) {
		defer fl.wg.Done()
		for {
			select {
			case <-fl.stop:
				return
			default:
			}
			n, err := a.Stream(prot4, port, 2000)
			*sent += n
			if err != nil {
				*errp = err
				return
			}
		}
	}
	fl.wg.Add(2)
	go stream(b.alice, alicePort, &fl.aliceSent, &fl.aliceErr)
	go stream(b.bob, bobPort, &fl.bobSent, &fl.bobErr)
	return fl
}

// check stops the streams, waits for alice's last datagrams to arrive,
// then asserts: none of bob's reached the server, all of alice's did.
func (fl *flow) check(t *testing.T) {
	t.Helper()
	close(fl.stop)
	fl.wg.Wait()
	if fl.aliceErr != nil || fl.bobErr != nil {
		t.Fatalf("streams: alice %v, bob %v", fl.aliceErr, fl.bobErr)
	}
	deadline := time.Now().Add(3 * time.Second)
	for fl.aliceGot() < int64(fl.aliceSent) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("alice: %d sent, %d arrived; bob: %d sent, %d arrived", fl.aliceSent, fl.aliceGot(), fl.bobSent, fl.bobGot())
	if fl.aliceSent == 0 || fl.bobSent == 0 {
		t.Fatal("a stream sent nothing")
	}
	if got := fl.bobGot(); got != 0 {
		t.Errorf("%d of bob's datagrams reached the protected address", got)
	}
	if got := fl.aliceGot(); got != int64(fl.aliceSent) {
		rcvbuf, err := fl.rcvbufErrors()
		if err != nil {
			t.Fatal(err)
		}
		t.Errorf("alice sent %d datagrams, %d arrived: allowed packets were dropped (%d of all datagrams were dropped by the server's full socket buffers meanwhile)",
			fl.aliceSent, got, rcvbuf-fl.rcvbufAtStart)
	}
}

// Hundreds of reloads while packets flow: no denied packet gets through,
// no allowed one is lost, because every packet meets one whole policy.
func TestReloadUnderLoad(t *testing.T) {
	testnet.RequireRoot(t)
	// Each version adds a different unrelated range, so that every
	// reload is a real swap of the whole policy.
	version := func(i int) string {
		return policyYAML([]string{"uid:1001"}, fmt.Sprintf(
			"  - filler:\n      iface: [eth0]\n      range: [10.%d.%d.0/24]\n      allow: ['*']\n", i/250, i%250))
	}
	b := newBed(t, version(0))
	d := b.start(t, testnet.DaemonOptions{})
	start := parseGeneration(t, statusOf(d.Ready))

	fl := startFlow(t, b)
	const reloads = 300
	for i := 1; i <= reloads; i++ {
		// Written as editors and ConfigMaps do (rename into place), so
		// the watcher reloads too; the SIGHUP makes each version a
		// generation of its own.
		tmp := b.main + ".tmp"
		writeFile(t, tmp, version(i))
		if err := os.Rename(tmp, b.main); err != nil {
			t.Fatal(err)
		}
		d.Signal(syscall.SIGHUP)
		// The watcher's reload of the same file may finish first (it
		// finds nothing new); wait for the SIGHUP's generation, so that
		// signals never pile up and merge.
		for {
			status := b.reloaded(t)
			if strings.Contains(status, "failed") {
				t.Fatalf("reload %d: %s", i, status)
			}
			if parseGeneration(t, status) >= start+uint32(i) {
				break
			}
		}
	}
	fl.check(t)

	gens := parseGeneration(t, lastStatus(t, b)) - start
	t.Logf("%d policy generations swapped in while the streams ran", gens)
	if gens < reloads {
		t.Errorf("only %d generations for %d asked-for reloads", gens, reloads)
	}
}

// lastStatus asks for one more reload and returns its STATUS= line.
func lastStatus(t *testing.T, b *bed) string {
	t.Helper()
	b.d.Signal(syscall.SIGHUP)
	return b.reloaded(t)
}

// unitCapabilities runs the daemon with the bounding set of
// packaging/net-tc-filter.service: root, but only these capabilities.
var unitCapabilities = []string{"setpriv", "--bounding-set=-all,+bpf,+net_admin,+perfmon", "--"}

// kill -9 leaves the last policy enforced; a new daemon adopts the pinned
// state and takes over without a moment unfiltered, in both attach modes.
func TestKillAndRestart(t *testing.T) {
	testnet.RequireRoot(t)
	for _, tc := range []struct {
		name, mode string
		wrap       []string
	}{
		{"tcx", "tcx", nil},
		{"clsact", "clsact", nil},
		// With only the capabilities the shipped unit leaves it: the
		// adoption must not need CAP_SYS_ADMIN.
		{"auto with the unit's capabilities", "auto", unitCapabilities},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.mode == "tcx" && !testnet.KernelHasTCX(t) {
				// Asked for by name where the kernel has none, tcx is
				// refused with a clear error, not replaced silently.
				b := newBed(t, policyYAML([]string{"uid:1001"}, ""))
				d := testnet.StartDaemonNoWait(t, b.tp.Client, testnet.DaemonOptions{Config: b.main, PinDir: b.pins, Args: []string{"--attach-mode", "tcx"}})
				if err := d.Wait(30 * time.Second); err == nil || !strings.Contains(d.Log(), "tcx") {
					t.Errorf("--attach-mode tcx on a kernel without tcx: %v\n%s", err, d.Log())
				}
				return
			}
			b := newBed(t, policyYAML([]string{"uid:1001"}, ""))
			opts := testnet.DaemonOptions{Args: []string{"--attach-mode", tc.mode}, Wrap: tc.wrap}
			d := b.start(t, opts)
			fl := startFlow(t, b)
			for range 3 {
				time.Sleep(300 * time.Millisecond)
				d.Kill()
				time.Sleep(300 * time.Millisecond) // no daemon at all
				d = b.start(t, opts)
			}
			fl.check(t)
			b.expect(t, b.bob, denied)
		})
	}
}
