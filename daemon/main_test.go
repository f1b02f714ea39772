// SPDX-License-Identifier: Apache-2.0

package daemon

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nettcfilter/net-tc-filter/daemon/testnet"
	"github.com/nettcfilter/net-tc-filter/internal/netlab"
)

func TestMain(m *testing.M) { testnet.Main(m) }

// The protected addresses: the server takes every address as its own, so
// these are answered there; nothing leaves the test namespaces.
var (
	prot4 = netip.MustParseAddr("192.0.2.7")
	prot6 = netip.MustParseAddr("fd77:ffff::7")
)

const (
	alice = 1001 // allowed by the base configuration
	bob   = 1002 // denied by it
	port  = 8080
)

// What a probe must find, for expect and testnet.Expect.
const (
	allowed = true
	denied  = false
)

// policyYAML protects prot4/prot6 on eth0 for the listed principals;
// everything else on eth0 is allowed. endpoints are more entries of the
// endpoints list, as written.
func policyYAML(allow []string, endpoints string) string {
	return fmt.Sprintf(`endpoints:
  - protected:
      iface: [eth0]
      range: [%s/32, %s/128]
      allow: [%s]
%sinterfaces:
  eth0: {default: allow}
`, prot4, prot6, strings.Join(allow, ", "), endpoints)
}

// bed is a daemon on the client of a topology with one agent per user.
type bed struct {
	tp         *testnet.Topology
	dir, main  string
	pins       string
	d          *testnet.Daemon
	alice, bob *testnet.Agent
}

// newBed writes the main configuration, starts the servers and agents, and
// leaves starting the daemon to the test (start).
func newBed(t *testing.T, mainYAML string) *bed {
	t.Helper()
	tp := testnet.NewTopology(t, testnet.Options{})
	tp.ServeTCP(t, port)
	tp.ServeUDPEcho(t, port)
	dir := filepath.Join(t.TempDir(), "etc")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	b := &bed{
		tp: tp, dir: dir, main: filepath.Join(dir, "net-tc-filter.yml"),
		pins:  testnet.PinDir(t),
		alice: testnet.StartAgent(t, tp.Client, alice),
		bob:   testnet.StartAgent(t, tp.Client, bob),
	}
	writeFile(t, b.main, mainYAML)
	return b
}

func (b *bed) start(t *testing.T, opts testnet.DaemonOptions) *testnet.Daemon {
	t.Helper()
	opts.Config, opts.PinDir = b.main, b.pins
	b.d = testnet.StartDaemon(t, b.tp.Client, opts)
	return b.d
}

// expect probes the protected addresses, both families, TCP and UDP.
func (b *bed) expect(t *testing.T, a *testnet.Agent, want bool) {
	t.Helper()
	testnet.Expect(t, a, prot4, port, want)
	testnet.Expect(t, a, prot6, port, want)
}

// reloaded waits for the daemon to announce a reload and be ready again,
// and returns the STATUS= line it ends with.
func (b *bed) reloaded(t *testing.T) string {
	t.Helper()
	b.d.Notify.WaitFor(t, "RELOADING=1", 10*time.Second)
	msg, _ := b.d.Notify.WaitFor(t, "READY=1", 10*time.Second)
	return statusOf(msg)
}

// reloadedUntil waits for reloads until one's STATUS= contains want, and
// returns it. Other reloads may come first: one that a change of the
// account files starts (another test adding a user), or one more of a
// broken set that a change follows.
func (b *bed) reloadedUntil(t *testing.T, want string) string {
	t.Helper()
	deadline := time.Now().Add(netlab.Slowed(30 * time.Second))
	for {
		status := b.reloaded(t)
		if strings.Contains(status, want) {
			return status
		}
		if time.Now().After(deadline) {
			t.Fatalf("no reload to a status with %q; the last: %s", want, status)
		}
	}
}

func statusOf(msg string) string {
	for _, line := range strings.Split(msg, "\n") {
		if s, ok := strings.CutPrefix(line, "STATUS="); ok {
			return s
		}
	}
	return ""
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
