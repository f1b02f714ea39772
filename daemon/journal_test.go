// SPDX-License-Identifier: Apache-2.0

package daemon

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nettcfilter/net-tc-filter/daemon/testnet"
)

// cgroup2Root is where the unified hierarchy is mounted: /sys/fs/cgroup on
// a pure v2 system, /sys/fs/cgroup/unified on a hybrid one.
func cgroup2Root(t *testing.T) string {
	t.Helper()
	for _, dir := range []string{"/sys/fs/cgroup", "/sys/fs/cgroup/unified"} {
		var st unix.Statfs_t
		if unix.Statfs(dir, &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
			return dir
		}
	}
	t.Fatal("no cgroup2 hierarchy mounted")
	return ""
}

// scope makes a cgroup named like a systemd scope and moves pid into it.
func scope(t *testing.T, pid int) string {
	t.Helper()
	b := make([]byte, 4)
	rand.Read(b)
	name := "ntft-" + hex.EncodeToString(b) + ".scope"
	dir := filepath.Join(cgroup2Root(t), name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Move what is left back to the root so the cgroup can go.
		root := filepath.Join(cgroup2Root(t), "cgroup.procs")
		os.WriteFile(root, []byte(strconv.Itoa(pid)), 0)
		os.Remove(dir)
	})
	writeFile(t, filepath.Join(dir, "cgroup.procs"), strconv.Itoa(pid))
	return name
}

// startJournaled starts the daemon with journald's native socket and its
// stderr as the journal stream, as systemd runs it, and returns the
// journal that receives both. opts adds to the environment and arguments.
func (b *bed) startJournaled(t *testing.T, opts testnet.DaemonOptions) (*testnet.Journal, *testnet.Daemon) {
	t.Helper()
	j := testnet.ListenJournal(t)
	stderr, err := os.Create(filepath.Join(t.TempDir(), "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stderr.Close() })
	d := b.start(t, testnet.DaemonOptions{
		Wrap:   j.Wrap(),
		Stderr: stderr,
		Env:    append([]string{"JOURNAL_STREAM=" + testnet.JournalStream(t, stderr)}, opts.Env...),
		Args:   opts.Args,
	})
	return j, d
}

// The decision log on journald's native protocol, as journald receives it:
// every field of SPEC §4, the unit of the sender's cgroup, aggregation of
// identical decisions into NTF_COUNT, and log.rate holding under a flood
// with what it left out counted.
func TestJournalFields(t *testing.T) {
	testnet.RequireRoot(t)
	b := newBed(t, policyYAML([]string{"uid:1001"},
		"  - floodnet:\n      iface: [eth0]\n      range: [192.0.3.0/24]\n      allow: [uid:1001]\n")+
		"log: {decisions: all, rate: 20}\n")
	j, _ := b.startJournaled(t, testnet.DaemonOptions{})
	// The daemon's own messages go to the journal too.
	j.WaitFor(t, 5*time.Second, "started", func(e map[string]string) bool {
		return e["SYSLOG_IDENTIFIER"] == "net-tc-filter" && e["PRIORITY"] == "6" && len(e["MESSAGE"]) > 8 && e["MESSAGE"][:8] == "started:"
	})

	unit := scope(t, b.bob.Pid())
	sport, err := b.bob.Send(prot4, port)
	if err != nil {
		t.Fatal(err)
	}
	e := j.WaitFor(t, 5*time.Second, "bob's denial", func(e map[string]string) bool {
		return e["NTF_ACTION"] == "deny" && e["NTF_SPORT"] == strconv.Itoa(int(sport))
	})
	want := map[string]string{
		"SYSLOG_IDENTIFIER": "net-tc-filter",
		"PRIORITY":          "4",
		"MESSAGE_ID":        DeniedMessageID,
		"MESSAGE":           "denied egress uid=1002 unit=" + unit + " 198.18.0.1:" + strconv.Itoa(int(sport)) + " -> 192.0.2.7:8080/udp on eth0 (endpoint protected)",
		"NTF_ACTION":        "deny",
		"NTF_UID":           "1002",
		"NTF_USER":          userName(bob),
		"NTF_UNIT":          unit,
		"NTF_IFACE":         "eth0",
		"NTF_SRC":           "198.18.0.1",
		"NTF_DST":           "192.0.2.7",
		"NTF_PROTO":         "udp",
		"NTF_SPORT":         strconv.Itoa(int(sport)),
		"NTF_DPORT":         "8080",
		"NTF_ENDPOINT":      "protected",
		"NTF_RANGE":         "192.0.2.7/32",
		"NTF_COUNT":         "1",
	}
	if u := userName(bob); u != "" {
		want["MESSAGE"] = "denied egress uid=1002(" + u + ") unit=" + unit + " 198.18.0.1:" + strconv.Itoa(int(sport)) + " -> 192.0.2.7:8080/udp on eth0 (endpoint protected)"
	}
	for k, v := range want {
		if e[k] != v {
			t.Errorf("%s = %q, want %q", k, e[k], v)
		}
	}

	// Allowed, logged with decisions: all, at priority 6, no MESSAGE_ID.
	if _, err := b.alice.Send(prot6, port); err != nil {
		t.Fatal(err)
	}
	e = j.WaitFor(t, 5*time.Second, "alice's allowed packet", func(e map[string]string) bool {
		return e["NTF_ACTION"] == "allow" && e["NTF_UID"] == "1001" && e["NTF_DST"] == prot6.String()
	})
	if e["PRIORITY"] != "6" || e["MESSAGE_ID"] != "" || e["NTF_RANGE"] != prot6.String()+"/128" {
		t.Errorf("allowed entry: %v", e)
	}

	// Identical decisions (bob, same destination, other source ports):
	// the first of a kind was logged above; the rest come as one entry
	// with their count once the second ends (two, when sending them took
	// longer than a second, as on a loaded emulated CPU). Every one is
	// counted, none is logged alone.
	const repeats = 50
	for range repeats {
		if _, err := b.bob.Send(prot4, port); err != nil {
			t.Fatal(err)
		}
	}
	var counts []string
	for total := 0; total < repeats; {
		e = j.WaitFor(t, 5*time.Second, "aggregated denials", func(e map[string]string) bool {
			return e["NTF_ACTION"] == "deny" && e["NTF_UID"] == "1002" && e["NTF_DST"] == prot4.String()
		})
		n, err := strconv.Atoi(e["NTF_COUNT"])
		if err != nil || n < 2 {
			t.Fatalf("entry of the repeated denials with NTF_COUNT %q (so far %v), want them aggregated", e["NTF_COUNT"], counts)
		}
		counts = append(counts, e["NTF_COUNT"])
		total += n
		if total > repeats || len(counts) > 2 {
			t.Fatalf("aggregated entries' NTF_COUNT %v, want %d in one or two entries", counts, repeats)
		}
	}

	// A flood of distinct denials (one destination each): at most
	// log.rate entries a second, and what they leave out counted in
	// warnings: logged + suppressed account for every decision (give or
	// take the kernel's own few packets, logged with decisions: all).
	drainFor(j, 1500*time.Millisecond)
	const flood = 250
	start := time.Now()
	for i := range flood {
		dst := netip.AddrFrom4([4]byte{192, 0, 3, byte(1 + i)})
		if _, err := b.bob.Send(dst, port); err != nil {
			t.Fatal(err)
		}
	}
	var logged, suppressed int
	var entries int
	for _, x := range drainFor(j, 2500*time.Millisecond) {
		if x["NTF_ACTION"] != "" {
			entries++
		}
		if x["NTF_UID"] == "1002" {
			n, _ := strconv.Atoi(x["NTF_COUNT"])
			logged += n
		}
		n, _ := strconv.Atoi(x["NTF_SUPPRESSED"])
		suppressed += n
	}
	elapsed := time.Since(start)
	t.Logf("flood of %d decisions: %d logged in %d entries, %d suppressed, in %v", flood, logged, entries, suppressed, elapsed)
	if limit := int(20 * elapsed.Seconds()); entries > limit {
		t.Errorf("%d decision entries in %v exceed log.rate 20/s", entries, elapsed)
	}
	if logged+suppressed < flood || logged+suppressed > flood+10 {
		t.Errorf("logged %d + suppressed %d does not account for %d decisions", logged, suppressed, flood)
	}
}

// drainFor collects journal entries until none came for quiet.
func drainFor(j *testnet.Journal, quiet time.Duration) []map[string]string {
	var out []map[string]string
	for {
		select {
		case e := <-j.C:
			out = append(out, e)
		case <-time.After(quiet):
			return out
		}
	}
}

func userName(uid int) string {
	u, err := user.LookupId(strconv.Itoa(uid))
	if err != nil {
		return ""
	}
	return u.Username
}

// A flood the daemon cannot keep up with (here: stopped while the kernel
// fills the ring buffer) never blocks the datapath, and no decision goes
// unaccounted: logged (NTF_COUNT) + suppressed by log.rate + lost in the
// ring buffer (NTF_EVENTS_LOST) is every packet sent.
func TestRingBufferDrops(t *testing.T) {
	testnet.RequireRoot(t)
	b := newBed(t, policyYAML([]string{"uid:1001"}, "")+"log: {decisions: denied, rate: 50}\n")
	j, d := b.startJournaled(t, testnet.DaemonOptions{})
	d.Signal(syscall.SIGSTOP)
	// 1 MiB of ring buffer holds about 11,900 decisions.
	const flood = 30000
	sent, err := b.bob.Burst(prot4, port, flood)
	if err != nil {
		t.Fatal(err)
	}
	d.Signal(syscall.SIGCONT)

	var logged, suppressed, lost int
	for _, e := range drainFor(j, 2500*time.Millisecond) {
		if e["NTF_UID"] == "1002" {
			n, _ := strconv.Atoi(e["NTF_COUNT"])
			logged += n
		}
		n, _ := strconv.Atoi(e["NTF_SUPPRESSED"])
		suppressed += n
		n, _ = strconv.Atoi(e["NTF_EVENTS_LOST"])
		lost += n
	}
	t.Logf("%d sent: %d logged, %d suppressed, %d lost in the ring buffer", sent, logged, suppressed, lost)
	if lost == 0 {
		t.Errorf("no ring-buffer loss reported for %d decisions while the reader was stopped", sent)
	}
	if logged+suppressed+lost != sent {
		t.Errorf("logged %d + suppressed %d + lost %d != %d sent", logged, suppressed, lost, sent)
	}
}

// mode: audit in the journal: a packet that an audited endpoint or an
// audited deny default does not allow passes and is logged with
// NTF_ACTION=audit, its own MESSAGE_ID and PRIORITY 5, aggregated like
// every entry; an allowed owner's packets are not logged as audit.
func TestJournalAudit(t *testing.T) {
	testnet.RequireRoot(t)
	b := newBed(t, fmt.Sprintf(`endpoints:
  - protected:
      iface: [eth0]
      range: [%s/32, %s/128]
      allow: [uid:1001]
      mode: audit
interfaces:
  eth0: {default: deny, mode: audit}
log: {decisions: denied, rate: 50}
`, prot4, prot6))
	j, _ := b.startJournaled(t, testnet.DaemonOptions{})
	// Every probe passes; their entries are looked at below.
	b.expect(t, b.bob, allowed)
	b.expect(t, b.alice, allowed)
	drainFor(j, 1500*time.Millisecond)
	// A new kind of decision (bob to another port) is logged at once.
	sport, err := b.bob.Send(prot4, port+1)
	if err != nil {
		t.Fatal(err)
	}
	e := j.WaitFor(t, 5*time.Second, "bob's audited packet", func(e map[string]string) bool {
		return e["NTF_ACTION"] == "audit" && e["NTF_SPORT"] == strconv.Itoa(int(sport))
	})
	who := "uid=1002"
	if u := userName(bob); u != "" {
		who += "(" + u + ")"
	}
	want := map[string]string{
		"PRIORITY":     "5",
		"MESSAGE_ID":   AuditMessageID,
		"MESSAGE":      "audit: would deny egress " + who + " 198.18.0.1:" + strconv.Itoa(int(sport)) + " -> 192.0.2.7:8081/udp on eth0 (endpoint protected, mode: audit, passed)",
		"NTF_UID":      "1002",
		"NTF_ENDPOINT": "protected",
		"NTF_RANGE":    "192.0.2.7/32",
		"NTF_COUNT":    "1",
	}
	for k, v := range want {
		if e[k] != v {
			t.Errorf("%s = %q, want %q", k, e[k], v)
		}
	}

	// Aggregated like every entry.
	const repeats = 30
	for range repeats {
		if _, err := b.bob.Send(prot4, port+2); err != nil {
			t.Fatal(err)
		}
	}
	// However the seconds fall, a few entries stand for every packet.
	total, entries := 0, 0
	for _, x := range drainFor(j, 2500*time.Millisecond) {
		if x["NTF_ACTION"] == "audit" && x["NTF_DPORT"] == strconv.Itoa(port+2) {
			n, _ := strconv.Atoi(x["NTF_COUNT"])
			total += n
			entries++
		}
	}
	if total != repeats || entries > 3 {
		t.Errorf("%d audited packets in %d entries, want %d in at most 3 (the first at once, the rest aggregated)", total, entries, repeats)
	}

	// The audited deny default: a destination outside every range.
	outside := netip.MustParseAddr("192.0.2.99")
	testnet.Expect(t, b.bob, outside, port, allowed)
	e = j.WaitFor(t, 5*time.Second, "the audited default", func(e map[string]string) bool {
		return e["NTF_ACTION"] == "audit" && e["NTF_DST"] == outside.String()
	})
	if e["PRIORITY"] != "5" || e["MESSAGE_ID"] != AuditMessageID || e["NTF_ENDPOINT"] != "" || !strings.HasSuffix(e["MESSAGE"], "(default, mode: audit, passed)") {
		t.Errorf("audited default entry: %v", e)
	}

	// alice is allowed to the endpoint: nothing of hers to it is audit.
	if _, err := b.alice.Send(prot4, port); err != nil {
		t.Fatal(err)
	}
	for _, x := range drainFor(j, 1500*time.Millisecond) {
		if x["NTF_UID"] == "1001" && x["NTF_ENDPOINT"] == "protected" {
			t.Errorf("alice's allowed packet logged: %v", x)
		}
	}
}
