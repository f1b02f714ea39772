// SPDX-License-Identifier: Apache-2.0

package dbus

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	godbus "github.com/godbus/dbus/v5"

	"github.com/nettcfilter/net-tc-filter/daemon"
	"github.com/nettcfilter/net-tc-filter/daemon/testnet"
)

// candidate writes a candidate set in a root-owned directory of its own.
func candidate(t *testing.T, content string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "candidate")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "net-tc-filter.yml")
	write(t, path, content)
	return path
}

// staged reads the Staged property.
func stagedNow(t *testing.T, c *godbus.Conn) map[string]godbus.Variant {
	t.Helper()
	v, err := obj(c).GetProperty(Interface + ".Staged")
	if err != nil {
		t.Fatal(err)
	}
	return v.Value().(map[string]godbus.Variant)
}

// TestStage stages candidates over a real bus, as root and as another
// user, against a daemon enforcing real traffic: SPEC §5 and §8.
func TestStage(t *testing.T) {
	testnet.RequireRoot(t)
	bus := testnet.StartBus(t, shippedConf)
	b := newBed(t, bus)
	c := conn(t, bus)
	// Live: alice and bob may reach the protected address.
	write(t, b.main, policyYAML("uid:1001, uid:1002"))
	if err := obj(c).Call(Interface+".Reload", 0).Err; err != nil {
		t.Fatal(err)
	}
	aliceOnly := candidate(t, policyYAML("uid:1001"))

	// Only root stages: the bus refuses others, and so does the daemon
	// on a bus that would let them (TestStageChecksCaller).
	if _, stderr, err := bus.AsUser(unpriv, testnet.Binary(t), "stage", "--config", aliceOnly); err == nil || !strings.Contains(stderr, "permission denied") {
		t.Errorf("stage as uid %d: %v %q", unpriv, err, stderr)
	}
	if len(stagedNow(t, c)) != 0 {
		t.Fatal("staged after a refused Stage")
	}

	// An invalid candidate: every problem, nothing staged.
	bad := candidate(t, "endpoints:\n  - x: {iface: [eth0], range: [10.0.0.1/8], allow: [uid:1001], mode: audti}\n")
	_, stderr, err := cli(t, bus, "stage", "--config", bad)
	if exitCode(err) != 1 || !strings.Contains(stderr, "the candidate is invalid; nothing is staged") ||
		!strings.Contains(stderr, "range 10.0.0.1/8 has host bits set") || !strings.Contains(stderr, `mode must be one of enforce, audit, not the string "audti"`) {
		t.Errorf("stage of an invalid candidate: %v\n%s", err, stderr)
	}
	if len(stagedNow(t, c)) != 0 {
		t.Fatal("staged after an invalid candidate")
	}
	if _, _, err := cli(t, bus, "staged"); exitCode(err) != 3 {
		t.Errorf("staged with nothing staged: %v, want exit 3", err)
	}

	// A candidate that denies bob, allowed today: his traffic still
	// passes; the difference is counted, with examples, for bob only.
	out, stderr, err := cli(t, bus, "stage", "--config", aliceOnly)
	if err != nil || !strings.HasPrefix(out, "staged "+aliceOnly+" beside the live policy, until net-tc-filter unstage") {
		t.Fatalf("stage: %v %q %q", err, out, stderr)
	}
	since := stagedNow(t, c)["Since"].Value().(uint64)
	testnet.Expect(t, b.bob, prot4, port, allowed)
	testnet.Expect(t, b.alice, prot4, port, allowed)
	var sum daemon.StageSummary
	deadline := time.Now().Add(5 * time.Second)
	for {
		out, _, err := cli(t, bus, "staged", "--json")
		if err != nil {
			t.Fatalf("staged --json: %v", err)
		}
		if err := json.Unmarshal([]byte(out), &sum); err != nil {
			t.Fatalf("staged --json: %v\n%s", err, out)
		}
		if (sum.NewlyDenied >= 2 && len(sum.Differences) > 0 && len(sum.Differences[0].Examples) > 0) || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if sum.NewlyDenied < 2 || sum.NewlyAllowed != 0 || len(sum.Differences) != 1 {
		t.Fatalf("staged: %+v, want bob's packets newly denied", sum)
	}
	d := sum.Differences[0]
	if d.UID != bob || d.Change != daemon.NewlyDenied || d.StagedEndpoint != "protected" || d.LiveEndpoint != "protected" ||
		len(d.Examples) == 0 || !strings.HasPrefix(d.Examples[0], prot4.String()+":8080/") || sum.Config != aliceOnly {
		t.Errorf("difference %+v of %+v", d, sum)
	}
	out, _, err = cli(t, bus, "staged")
	if err != nil || !strings.Contains(out, "newly denied: ") || !strings.Contains(out, fmt.Sprintf("uid=%d", bob)) || !strings.Contains(out, "-> endpoint protected (now endpoint protected): ") {
		t.Errorf("staged: %v\n%s", err, out)
	}

	// A reload of the live set keeps the stage.
	if err := obj(c).Call(Interface+".Reload", 0).Err; err != nil {
		t.Fatal(err)
	}
	if s := stagedNow(t, c); len(s) == 0 || s["Since"].Value().(uint64) != since {
		t.Errorf("after a reload, Staged = %v, want the stage since %d", s, since)
	}

	// Unstage: the summary's totals, which add up, and nothing staged
	// any more.
	out, stderr, err = cli(t, bus, "unstage", "--json")
	var final daemon.StageSummary
	if err != nil || json.Unmarshal([]byte(out), &final) != nil {
		t.Fatalf("unstage --json: %v %q\n%s", err, stderr, out)
	}
	var packets uint64
	for _, d := range final.Differences {
		packets += d.Packets
	}
	if final.NewlyDenied < sum.NewlyDenied || final.NewlyDenied != packets || final.Config != aliceOnly {
		t.Errorf("unstage: %+v; newly denied %d, want at least %d and the sum of its differences (%d)", final, final.NewlyDenied, sum.NewlyDenied, packets)
	}
	if len(stagedNow(t, c)) != 0 {
		t.Error("still staged after unstage")
	}
	if _, stderr, err := cli(t, bus, "unstage"); exitCode(err) != 1 || !strings.Contains(stderr, "nothing is staged") {
		t.Errorf("unstage of nothing: %v %q", err, stderr)
	}

	// A candidate that allows bob, denied today: still dropped, counted;
	// --for ends it.
	write(t, b.main, policyYAML("uid:1001"))
	if err := obj(c).Call(Interface+".Reload", 0).Err; err != nil {
		t.Fatal(err)
	}
	both := candidate(t, policyYAML("uid:1001, uid:1002"))
	if err := obj(c).Call(Interface+".Stage", 0, both, uint64(2)).Err; err != nil {
		t.Fatal(err)
	}
	testnet.Expect(t, b.bob, prot4, port, denied)
	var newlyAllowed uint64
	for range 20 {
		if s := stagedNow(t, c); len(s) > 0 {
			newlyAllowed = s["NewlyAllowed"].Value().(uint64)
		}
		if newlyAllowed >= 2 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if newlyAllowed < 2 {
		t.Errorf("NewlyAllowed = %d after bob's dropped TCP and UDP", newlyAllowed)
	}
	deadline = time.Now().Add(5 * time.Second)
	for len(stagedNow(t, c)) != 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if len(stagedNow(t, c)) != 0 {
		t.Error("the stage outlived its --for of 2 s")
	}
	b.d.WaitLog(t, "(its time ran out)", 5*time.Second)
}

// On a bus that lets anyone call anything, the daemon itself refuses
// Stage and Unstage from anyone but root.
func TestStageChecksCaller(t *testing.T) {
	testnet.RequireRoot(t)
	bus := testnet.StartOpenBus(t)
	newBed(t, bus)
	c := conn(t, bus)
	path := candidate(t, policyYAML("uid:1001"))
	for _, args := range [][]string{
		{Interface + ".Stage", "string:" + path, "uint64:0"},
		{Interface + ".Unstage"},
	} {
		out, stderr, err := bus.AsUser(unpriv, "dbus-send", append([]string{"--bus=" + bus.Address, "--print-reply", "--dest=" + BusName, string(Path)}, args...)...)
		if err == nil || !strings.Contains(stderr, "org.freedesktop.DBus.Error.AccessDenied: only root may") {
			t.Errorf("%s as uid %d on an open bus: %q %q %v", args[0], unpriv, out, stderr, err)
		}
	}
	if len(stagedNow(t, c)) != 0 {
		t.Error("staged by another user")
	}
}

// The journal of a stage: entries where the candidate differs carry
// NTF_STAGED_ACTION and NTF_STAGED_ENDPOINT; the metrics count the
// difference; a daemon killed while staged leaves no stage to the next
// one, which says so.
func TestStagedJournalAndRestart(t *testing.T) {
	testnet.RequireRoot(t)
	bus := testnet.StartBus(t, shippedConf)
	tp := testnet.NewTopology(t, testnet.Options{})
	tp.ServeTCP(t, port)
	tp.ServeUDPEcho(t, port)
	bobAgent := testnet.StartAgent(t, tp.Client, bob)
	main := filepath.Join(t.TempDir(), "net-tc-filter.yml")
	const metricsAddr = "127.0.0.1:9966"
	write(t, main, policyYAML("uid:1001, uid:1002")+"metrics: {listen: \""+metricsAddr+"\"}\n")
	pins := testnet.PinDir(t)
	j := testnet.ListenJournal(t)
	stderr, err := os.Create(filepath.Join(t.TempDir(), "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stderr.Close() })
	d := testnet.StartDaemon(t, tp.Client, testnet.DaemonOptions{
		Config: main, PinDir: pins, Wrap: j.Wrap(), Stderr: stderr,
		Env: []string{bus.Env(), "JOURNAL_STREAM=" + testnet.JournalStream(t, stderr)},
	})
	c := conn(t, bus)
	if v, err := waitState(c, "running", 10*time.Second); v.Value() != "running" {
		t.Fatalf("State = %v (%v)", v, err)
	}
	sub := conn(t, bus)
	if err := sub.AddMatchSignal(godbus.WithMatchSender(BusName), godbus.WithMatchMember("PropertiesChanged")); err != nil {
		t.Fatal(err)
	}
	signals := make(chan *godbus.Signal, 64)
	sub.Signal(signals)
	cand := candidate(t, policyYAML("uid:1001"))
	if err := obj(c).Call(Interface+".Stage", 0, cand, uint64(0)).Err; err != nil {
		t.Fatal(err)
	}
	// Subscribers learn of the stage: PropertiesChanged with Staged.
	for {
		sig := waitSignal(t, signals, "org.freedesktop.DBus.Properties.PropertiesChanged")
		props, _ := sig.Body[1].(map[string]godbus.Variant)
		if v, ok := props["Staged"]; ok {
			if m, _ := v.Value().(map[string]godbus.Variant); m["Config"].Value() != cand {
				t.Errorf("PropertiesChanged Staged = %v, want the stage of %s", v, cand)
			}
			break
		}
	}
	sport, err := bobAgent.Send(prot4, port)
	if err != nil {
		t.Fatal(err)
	}
	e := j.WaitFor(t, 5*time.Second, "bob's newly denied packet", func(e map[string]string) bool {
		return e["NTF_STAGED_ACTION"] == "deny" && e["NTF_SPORT"] == fmt.Sprint(sport)
	})
	if e["NTF_ACTION"] != "allow" || e["NTF_STAGED_ENDPOINT"] != "protected" || e["NTF_UID"] != fmt.Sprint(bob) ||
		!strings.HasSuffix(e["MESSAGE"], "; the staged policy would deny it (endpoint protected)") {
		t.Errorf("staged entry: %v", e)
	}
	out, err := getMetrics(tp.Client, metricsAddr)
	if err != nil || !strings.Contains(out, `net_tc_filter_staged_differences_total{direction="newly_denied",endpoint="protected"} `) {
		t.Errorf("metrics while staged (%v):\n%s", err, grepLines(out, "staged"))
	}

	// kill -9 while staged; the next daemon ends the pinned stage.
	d.Kill()
	d2 := testnet.StartDaemon(t, tp.Client, testnet.DaemonOptions{Config: main, PinDir: pins, Env: []string{bus.Env()}})
	d2.WaitLog(t, "stage ended: the daemon restarted", 10*time.Second)
	if v, err := waitState(c, "running", 10*time.Second); v.Value() != "running" {
		t.Fatalf("State = %v (%v)", v, err)
	}
	if len(stagedNow(t, c)) != 0 {
		t.Error("the restarted daemon reports a stage")
	}
	testnet.Expect(t, bobAgent, prot4, port, allowed)

	// A stop ends the stage, and says so.
	if err := obj(c).Call(Interface+".Stage", 0, cand, uint64(0)).Err; err != nil {
		t.Fatal(err)
	}
	d2.Signal(syscall.SIGTERM)
	if err := d2.Wait(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if log := d2.Log(); !strings.Contains(log, "stage of "+cand+" ended (the daemon stops)") {
		t.Errorf("the stop did not end the stage:\n%s", log)
	}
}

func grepLines(text, sub string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// getMetrics fetches /metrics from addr inside ns: the connection is made
// there, the request is plain HTTP/1.0.
func getMetrics(ns *testnet.NS, addr string) (string, error) {
	var conn net.Conn
	err := ns.Do(func() (err error) {
		conn, err = net.DialTimeout("tcp", addr, 5*time.Second)
		return err
	})
	if err != nil {
		return "", err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, "GET /metrics HTTP/1.0\r\nHost: "+addr+"\r\n\r\n"); err != nil {
		return "", err
	}
	b, err := io.ReadAll(conn)
	return string(b), err
}
