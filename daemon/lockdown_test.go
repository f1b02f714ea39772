// SPDX-License-Identifier: Apache-2.0

package daemon

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	godbus "github.com/godbus/dbus/v5"

	"github.com/nettcfilter/net-tc-filter/daemon/testnet"
	"github.com/nettcfilter/net-tc-filter/internal/netlab"
)

// entries keeps every journal entry the daemon sent, so that a test can
// both wait for one and count them all.
type entries struct {
	j    *testnet.Journal
	seen []map[string]string
}

// waitFor returns the first entry, seen or still to come, that match
// accepts.
func (es *entries) waitFor(t *testing.T, what string, match func(map[string]string) bool) map[string]string {
	t.Helper()
	for _, e := range es.seen {
		if match(e) {
			return e
		}
	}
	deadline := time.After(netlab.Slowed(10 * time.Second))
	for {
		select {
		case e := <-es.j.C:
			es.seen = append(es.seen, e)
			if match(e) {
				return e
			}
		case <-deadline:
			t.Fatalf("no journal entry with %s in time", what)
		}
	}
}

// drain takes what comes until nothing did for quiet.
func (es *entries) drain(quiet time.Duration) {
	es.seen = append(es.seen, drainFor(es.j, quiet)...)
}

func (es *entries) count(match func(map[string]string) bool) int {
	n := 0
	for _, e := range es.seen {
		if match(e) {
			n++
		}
	}
	return n
}

// message matches the daemon's entries of a priority whose MESSAGE starts
// with prefix.
func message(priority, prefix string) func(map[string]string) bool {
	return func(e map[string]string) bool {
		return e["SYSLOG_IDENTIFIER"] == "net-tc-filter" && e["PRIORITY"] == priority && strings.HasPrefix(e["MESSAGE"], prefix)
	}
}

// warnings reads the daemon's Warnings property until ok accepts it.
func warningsProperty(t *testing.T, bus *testnet.Bus, what string, ok func([]string) bool) []string {
	t.Helper()
	c, err := godbus.Connect(bus.Address)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	deadline := time.Now().Add(netlab.Slowed(10 * time.Second))
	for {
		var got []string
		v, err := c.Object("org.nettcfilter1", "/org/nettcfilter1").GetProperty("org.nettcfilter1.Manager.Warnings")
		if err == nil {
			err = v.Store(&got)
		}
		if err == nil && ok(got) {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("Warnings property without %s in time: %q (%v)", what, got, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// SPEC §2: the seed's meaning, an endpoint's interface without an
// `interfaces:` entry is default-deny, is said at start in plain words, at
// warning priority, in the journal and the Warnings property; so is an
// endpoint whose iface matches no interface of the host. When such an
// interface appears, that warning clears and the new interface's lock-down
// is said instead; neither the periodic resolution of names nor the
// interface change repeats what was said already.
func TestLockdownWarned(t *testing.T) {
	testnet.RequireRoot(t)
	b := newBed(t, fmt.Sprintf(`endpoints:
  - protected:
      iface: [eth0]
      range: [%s/32]
      allow: [uid:1001, root]
  - later:
      iface: ["hp*"]
      range: [%s/32]
      allow: [uid:1001]
`, prot4, hp4))
	bus := testnet.StartOpenBus(t)
	// root is a name: it is resolved again this often, and must not
	// repeat the warnings each time.
	j, d := b.startJournaled(t, testnet.DaemonOptions{Env: []string{bus.Env()}, Args: []string{"--resolve-interval", "100ms"}})
	es := &entries{j: j}
	const (
		eth0Locked  = "interface eth0 is filtered with default deny (no interfaces: entry sets its default, and deny is the default): every destination on it that no endpoint lists is dropped for every user, root included"
		laterUnused = `endpoint later protects nothing: its iface "hp*" matches no interface of this host, so 192.0.2.99/32 stays reachable by everyone`
		hp0Locked   = "interface hp0 is filtered with default deny (no interfaces: entry sets its default, and deny is the default)"
	)
	e := es.waitFor(t, "eth0's lock-down", message("4", eth0Locked))
	for _, want := range []string{"Only these stay reachable: 192.0.2.7/32 for uid:1001, root (endpoint protected)", `interfaces: {"eth0": {default: allow}}`} {
		if !strings.Contains(e["MESSAGE"], want) {
			t.Errorf("the warning lacks %q: %s", want, e["MESSAGE"])
		}
	}
	es.waitFor(t, "the endpoint that protects nothing", message("4", laterUnused))
	// What the warning says is what the kernel does: alice reaches her
	// range and nothing else on eth0.
	testnet.Expect(t, b.alice, prot4, port, allowed)
	testnet.Expect(t, b.alice, prot6, port, denied)
	testnet.Expect(t, b.bob, prot4, port, denied)
	has := func(prefix string) func(string) bool {
		return func(w string) bool { return strings.HasPrefix(w, prefix) }
	}
	warningsProperty(t, bus, "both warnings", func(ws []string) bool {
		return slices.ContainsFunc(ws, has(eth0Locked)) && slices.ContainsFunc(ws, has(laterUnused))
	})

	hotplug(t, b.tp, "hp0")
	waitStatus(t, d, "eth0, hp0", func(s string) bool { return slices.Equal(ifacesOf(s), []string{"eth0", "hp0"}) })
	es.waitFor(t, "the cleared warning", message("6", "no longer so, the interfaces changed: "+laterUnused))
	es.waitFor(t, "hp0's lock-down", message("4", hp0Locked))
	warningsProperty(t, bus, "hp0's lock-down and not the cleared one", func(ws []string) bool {
		return slices.ContainsFunc(ws, has(eth0Locked)) && slices.ContainsFunc(ws, has(hp0Locked)) && !slices.ContainsFunc(ws, has(laterUnused))
	})
	testnet.Expect(t, b.bob, hp4, port, denied)

	// Many resolutions and attachment checks later: each said once.
	es.drain(time.Second)
	for _, w := range []string{eth0Locked, laterUnused, hp0Locked} {
		if n := es.count(message("4", w)); n != 1 {
			t.Errorf("logged %d times, want once: %s", n, w)
		}
	}
}
