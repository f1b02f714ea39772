// SPDX-License-Identifier: Apache-2.0

package dbus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	godbus "github.com/godbus/dbus/v5"

	"github.com/nettcfilter/net-tc-filter/daemon"
	"github.com/nettcfilter/net-tc-filter/daemon/nss"
	"github.com/nettcfilter/net-tc-filter/daemon/policy"
	"github.com/nettcfilter/net-tc-filter/daemon/testnet"
)

func TestMain(m *testing.M) { testnet.Main(m) }

const (
	port = 8080
	bob  = 1002
	// unpriv is the unprivileged bus client: dbus-daemon only lets in
	// uids that have a passwd entry, and nobody always has one.
	unpriv      = 65534
	shippedConf = "../packaging/dbus/org.nettcfilter1.conf"
)

// What a probe must find, for testnet.Expect.
const (
	allowed = true
	denied  = false
)

var prot4 = netip.MustParseAddr("192.0.2.7")

func policyYAML(allow string) string {
	return fmt.Sprintf(`endpoints:
  - protected:
      iface: [eth0]
      range: [%s/32]
      allow: [%s]
interfaces:
  eth0: {default: allow}
`, prot4, allow)
}

// bed is a daemon in a netns, on a bus of the test's own.
type bed struct {
	tp         *testnet.Topology
	bus        *testnet.Bus
	main, pins string
	d          *testnet.Daemon
	alice, bob *testnet.Agent
}

func newBed(t *testing.T, bus *testnet.Bus) *bed {
	t.Helper()
	tp := testnet.NewTopology(t, testnet.Options{})
	tp.ServeTCP(t, port)
	tp.ServeUDPEcho(t, port)
	dir := t.TempDir()
	b := &bed{
		tp: tp, bus: bus, main: filepath.Join(dir, "net-tc-filter.yml"), pins: testnet.PinDir(t),
		alice: testnet.StartAgent(t, tp.Client, 1001),
		bob:   testnet.StartAgent(t, tp.Client, bob),
	}
	write(t, b.main, policyYAML("uid:1001"))
	b.start(t)
	return b
}

func (b *bed) start(t *testing.T) {
	t.Helper()
	b.d = testnet.StartDaemon(t, b.tp.Client, testnet.DaemonOptions{
		Config: b.main, PinDir: b.pins, Env: []string{b.bus.Env()},
	})
	// The bus name is served while the daemon is still starting: wait
	// until the object says it runs.
	b.d.WaitLog(t, "serving org.nettcfilter1", 10*time.Second)
	if v, err := waitState(conn(t, b.bus), "running", 10*time.Second); v.Value() != "running" {
		t.Fatalf("State = %v (%v) 10 s after the daemon served its name, want running", v, err)
	}
}

// waitState reads the State property until it is want or within has
// passed, and returns what it read last.
func waitState(c *godbus.Conn, want string, within time.Duration) (godbus.Variant, error) {
	deadline := time.Now().Add(within)
	for {
		v, err := obj(c).GetProperty(Interface + ".State")
		if (err == nil && v.Value() == want) || time.Now().After(deadline) {
			return v, err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// conn is a bus connection as root (the test's uid).
func conn(t *testing.T, bus *testnet.Bus) *godbus.Conn {
	t.Helper()
	c, err := godbus.Connect(bus.Address)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// attachMode is what the daemon picks on this kernel by itself.
func attachMode(t *testing.T) string {
	if testnet.KernelHasTCX(t) {
		return "tcx"
	}
	return "clsact"
}

func obj(c *godbus.Conn) godbus.BusObject { return c.Object(BusName, Path) }

// cli runs the command line as root against the test's bus.
func cli(t *testing.T, bus *testnet.Bus, args ...string) (string, string, error) {
	t.Helper()
	cmd := exec.Command(testnet.Binary(t), args...)
	cmd.Env = append(os.Environ(), bus.Env())
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return out.String(), errb.String(), err
}

func generation(t *testing.T, c *godbus.Conn) uint64 {
	t.Helper()
	v, err := obj(c).GetProperty(Interface + ".Generation")
	if err != nil {
		t.Fatal(err)
	}
	return v.Value().(uint64)
}

// Root and an unprivileged user on a system-like bus with the shipped
// policy: both read properties and Status and introspect; only root
// reloads, and a reload changes the kernel policy.
func TestAccess(t *testing.T) {
	testnet.RequireRoot(t)
	bus := testnet.StartBus(t, shippedConf)
	b := newBed(t, bus)
	c := conn(t, bus)

	for name, want := range map[string]any{
		"State": "running", "Version": "dev", "RuleCount": uint32(1), "LastError": "",
	} {
		v, err := obj(c).GetProperty(Interface + "." + name)
		if err != nil || v.Value() != want {
			t.Errorf("%s = %v (%v), want %v", name, v, err, want)
		}
	}
	v, err := obj(c).GetProperty(Interface + ".Interfaces")
	if err != nil || !strings.HasPrefix(fmt.Sprint(v.Value()), "[[eth0 ") || !strings.HasSuffix(fmt.Sprint(v.Value()), " "+attachMode(t)+"]]") {
		t.Errorf("Interfaces = %v (%v)", v, err)
	}

	// busctl shows typed members, from the introspection data.
	out := testnet.Run(t, "busctl", "--address="+bus.Address, "introspect", BusName, string(Path), Interface)
	for _, want := range []string{".Reload ", "method", ".Check ", "sss", "bsss", ".Interfaces ", "a(sus)", ".Reloaded ", "signal", "tbs"} {
		if !strings.Contains(out, want) {
			t.Errorf("busctl introspect lacks %q:\n%s", want, out)
		}
	}

	// An unprivileged user reads everything...
	stdout, stderr, err := bus.AsUser(unpriv, testnet.Binary(t), "status", "--json")
	if err != nil {
		t.Fatalf("status as uid %d: %v\n%s", unpriv, err, stderr)
	}
	var st Status
	if err := json.Unmarshal([]byte(stdout), &st); err != nil || st.State != "running" || len(st.Interfaces) != 1 {
		t.Errorf("status --json as uid %d: %+v (%v)\n%s", unpriv, st, err, stdout)
	}
	if out, _, err := bus.AsUser(unpriv, "busctl", "--address="+bus.Address, "get-property", BusName, string(Path), Interface, "State"); err != nil || strings.TrimSpace(out) != `s "running"` {
		t.Errorf("busctl get-property as uid %d: %q %v", unpriv, out, err)
	}
	if out, _, err := bus.AsUser(unpriv, "busctl", "--address="+bus.Address, "call", BusName, string(Path), Interface, "Check", "sss", "uid:1002", prot4.String(), "eth0"); err != nil || !strings.HasPrefix(out, "bsss false") {
		t.Errorf("Check as uid %d: %q %v", unpriv, out, err)
	}

	// ...but may not reload: refused by the bus, policy unchanged.
	gen := generation(t, c)
	_, stderr, err = bus.AsUser(unpriv, testnet.Binary(t), "reload")
	if err == nil || !strings.Contains(stderr, "permission denied") {
		t.Errorf("reload as uid %d: err %v, stderr %q", unpriv, err, stderr)
	}
	if g := generation(t, c); g != gen {
		t.Errorf("generation moved from %d to %d on a refused reload", gen, g)
	}

	// Root reloads: synchronous, the new generation is live on return.
	write(t, b.main, policyYAML("uid:1001, uid:1002"))
	stdout, stderr, err = cli(t, bus, "reload")
	if err != nil {
		t.Fatalf("reload as root: %v\n%s", err, stderr)
	}
	testnet.Expect(t, b.bob, prot4, port, allowed)
	if !strings.HasPrefix(stdout, "reloaded: generation ") {
		t.Errorf("reload output: %q", stdout)
	}
}

// Without the bus policy file (a bus that lets anyone call anything), the
// daemon itself refuses Reload from anyone but root.
func TestDaemonChecksCaller(t *testing.T) {
	testnet.RequireRoot(t)
	bus := testnet.StartOpenBus(t)
	newBed(t, bus)
	c := conn(t, bus)
	gen := generation(t, c)
	out, stderr, err := bus.AsUser(unpriv, "dbus-send", "--bus="+bus.Address, "--print-reply", "--dest="+BusName, string(Path), Interface+".Reload")
	if err == nil || !strings.Contains(stderr, "org.freedesktop.DBus.Error.AccessDenied: only root may reload") {
		t.Errorf("Reload as uid %d on an open bus: %q %q %v", unpriv, out, stderr, err)
	}
	if g := generation(t, c); g != gen {
		t.Errorf("generation moved from %d to %d on a refused reload", gen, g)
	}
	// Root may.
	var g uint64
	if err := obj(c).Call(Interface+".Reload", 0).Store(&g); err != nil || g != gen+1 {
		t.Errorf("Reload as root: %d %v, want %d", g, err, gen+1)
	}
}

// An invalid set: InvalidConfig naming every problem, the old policy
// stays; subscribers see Reloaded and PropertiesChanged.
func TestReloadSignalsAndErrors(t *testing.T) {
	testnet.RequireRoot(t)
	bus := testnet.StartBus(t, shippedConf)
	b := newBed(t, bus)
	c := conn(t, bus)

	sub := conn(t, bus)
	if err := sub.AddMatchSignal(godbus.WithMatchSender(BusName), godbus.WithMatchObjectPath(Path)); err != nil {
		t.Fatal(err)
	}
	signals := make(chan *godbus.Signal, 64)
	sub.Signal(signals)

	gen := generation(t, c)
	var g uint64
	if err := obj(c).Call(Interface+".Reload", 0).Store(&g); err != nil || g != gen+1 {
		t.Fatalf("Reload: %d %v", g, err)
	}
	// Both arrive, in either order: Reloaded(gen, true, "") and a
	// PropertiesChanged carrying the new Generation.
	var reloaded, changed bool
	for !reloaded || !changed {
		sig := waitSignal(t, signals, "")
		switch sig.Name {
		case Interface + ".Reloaded":
			reloaded = true
			if fmt.Sprint(sig.Body) != fmt.Sprintf("[%d true ]", gen+1) {
				t.Errorf("Reloaded%v, want (%d, true, \"\")", sig.Body, gen+1)
			}
		case "org.freedesktop.DBus.Properties.PropertiesChanged":
			props, _ := sig.Body[1].(map[string]godbus.Variant)
			v, ok := props["Generation"]
			if !ok {
				break
			}
			// The start's own change (Generation gen) may still be on
			// its way when the subscription begins; anything else must
			// be the new generation.
			if g, _ := v.Value().(uint64); g == gen {
				break
			}
			changed = true
			if v.Value() != gen+1 {
				t.Errorf("PropertiesChanged%v: want Generation %d", sig.Body, gen+1)
			}
		}
	}

	write(t, b.main, `endpoints:
  - protected:
      iface: [eth0]
      range: [192.0.2.7/32]
      allow: [uid:1001, ntft-no-such-user]
  - broken:
      iface: [eth0]
      range: [192.0.2.300/32]
      allow: [uid:1]
`)
	err := obj(c).Call(Interface+".Reload", 0).Store(&g)
	var de godbus.Error
	if !errors.As(err, &de) || de.Name != ErrInvalidConfig {
		t.Fatalf("Reload of an invalid set: %v, want %s", err, ErrInvalidConfig)
	}
	msg := fmt.Sprint(de.Body...)
	for _, want := range []string{"ntft-no-such-user", "192.0.2.300", "net-tc-filter.yml:"} {
		if !strings.Contains(msg, want) {
			t.Errorf("InvalidConfig message lacks %q:\n%s", want, msg)
		}
	}
	failed := waitSignal(t, signals, Interface+".Reloaded")
	if failed.Body[1] != false || !strings.Contains(failed.Body[2].(string), "ntft-no-such-user") {
		t.Errorf("Reloaded after a failure: %v", failed.Body)
	}
	if g := generation(t, c); g != gen+1 {
		t.Errorf("generation %d after a failed reload, want %d", g, gen+1)
	}
	// The watcher may be reloading the same broken file just now; it
	// ends degraded as well.
	if v, _ := waitState(c, "degraded", 5*time.Second); v.Value() != "degraded" {
		t.Errorf("State after a failed reload = %v, want degraded", v)
	}
	// LastError has every problem of it too, one a line, not the first
	// with a count.
	v, gerr := obj(c).GetProperty(Interface + ".LastError")
	lastErr, _ := v.Value().(string)
	if gerr != nil || len(strings.Split(lastErr, "\n")) != 2 || !strings.Contains(lastErr, "ntft-no-such-user") || !strings.Contains(lastErr, "192.0.2.300") {
		t.Errorf("LastError after a failed reload = %q (%v), want both problems, one a line", lastErr, gerr)
	}
	testnet.Expect(t, b.bob, prot4, port, denied)
	testnet.Expect(t, b.alice, prot4, port, allowed)

	// The command line says the same, with exit status 1.
	_, stderr, err := cli(t, bus, "reload")
	if code := exitCode(err); code != 1 || !strings.Contains(stderr, "ntft-no-such-user") || !strings.Contains(stderr, "192.0.2.300") {
		t.Errorf("reload CLI on an invalid set: exit %d\n%s", code, stderr)
	}
}

func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

// waitSignal returns the next signal called name (any, for "").
func waitSignal(t *testing.T, ch <-chan *godbus.Signal, name string) *godbus.Signal {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case s := <-ch:
			if name == "" || s.Name == name {
				return s
			}
		case <-deadline:
			t.Fatalf("no %s signal", name)
		}
	}
}

// Check answers as the reference Decide() does on the same configuration.
func TestCheckAgreesWithDecide(t *testing.T) {
	testnet.RequireRoot(t)
	bus := testnet.StartBus(t, shippedConf)
	b := newBed(t, bus)
	write(t, b.main, `endpoints:
  - imds:
      iface: [eth0]
      range: [169.254.169.254/32, fd00:ec2::254/128]
      allow: [uid:1001, root, "cgroup:/system.slice/agent.service"]
  - link-local:
      iface: [eth0]
      range: [169.254.0.0/16]
      allow: ["*"]
  - forwarded:
      iface: [eth0]
      range: [10.0.0.0/8]
      allow: [unowned]
  - wire-dns:
      iface: [eth0]
      range: [168.63.129.16/32, fd00:ec2::254/128]
      proto: [udp, tcp]
      ports: [53]
      allow: ["*"]
  - wire-agent:
      iface: [eth0]
      range: [168.63.129.16/32]
      proto: [tcp]
      ports: [80, 32526, "8000-8100"]
      allow: [root]
  - wire:
      iface: [eth0]
      range: [168.63.129.16/32]
      allow: []
  - ping:
      iface: [eth0]
      range: [168.63.129.16/32]
      proto: [icmp]
      allow: [uid:1002]
interfaces:
  eth0: {default: deny}
`)
	c := conn(t, bus)
	var gen uint64
	if err := obj(c).Call(Interface+".Reload", 0).Store(&gen); err != nil {
		t.Fatal(err)
	}
	_, p, err := daemon.Load(b.main, nss.Resolver{})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, who := range []string{"uid:1001", "uid:1002", "root", "uid:0", "uid:65534", "unowned",
		"cgroup:/system.slice/agent.service", "uid:1002@cgroup:/system.slice/agent.service/helper", "uid:1002@cgroup:/system.slice",
		"cgroup:/system.slice/agent.services", "uid:1001@cgroup:/user.slice"} {
		owner, err := daemon.ParseOwner(who, nss.Resolver{})
		if err != nil {
			t.Fatal(err)
		}
		for _, dst := range []string{"169.254.169.254", "169.254.1.1", "10.1.2.3", "192.0.2.1", "fd00:ec2::254", "::ffff:169.254.169.254", "2001:db8::1",
			"168.63.129.16", "168.63.129.16:53/udp", "168.63.129.16:53/tcp", "168.63.129.16:80/tcp", "168.63.129.16:8100/tcp", "168.63.129.16:80/udp",
			"168.63.129.16:53/sctp", "168.63.129.16/icmp", "168.63.129.16/47", "[fd00:ec2::254]:53/udp", "[fd00:ec2::254]:80/tcp", "[::ffff:168.63.129.16]:80/6"} {
			k, err := policy.ParseDestination(dst)
			if err != nil {
				t.Fatal(err)
			}
			want := p.DecidePacket("eth0", owner, k)
			var d CheckResult
			err = obj(c).Call(Interface+".Check", 0, who, dst, "eth0").Store(&d.Allowed, &d.Endpoint, &d.Range, &d.Reason)
			if err != nil {
				t.Fatalf("Check(%s, %s): %v", who, dst, err)
			}
			wantRange := ""
			if want.Range.IsValid() {
				wantRange = want.Range.String()
			}
			if d.Allowed != want.Allowed || d.Range != wantRange || d.Endpoint != strings.Join(want.Endpoints, ",") || d.Reason != want.Reason {
				t.Errorf("Check(%s, %s) = %+v, Decide says %+v", who, dst, d, want)
			}
			n++
		}
	}
	// Bad input is refused with a clear error.
	for _, args := range [][]any{{"no-such-user-ntft", "192.0.2.1", "eth0"}, {"uid:1", "not-an-address", "eth0"},
		{"uid:1", "168.63.129.16:80", "eth0"}, {"uid:1", "168.63.129.16:0/tcp", "eth0"}, {"uid:1", "168.63.129.16:80/icmp", "eth0"},
		{"uid:1", "168.63.129.16/tcp", "eth0"}, {"uid:1", "[fd00::1]:70000/tcp", "eth0"}, {"uid:1", "168.63.129.16:80/tpc", "eth0"},
		{"uid:1", "fd00::1:80/tcp", "eth0"}, {"uid:1", "168.63.129.16:80/tcp/udp", "eth0"}} {
		err := obj(c).Call(Interface+".Check", 0, args...).Err
		var de godbus.Error
		if !errors.As(err, &de) || de.Name != "org.freedesktop.DBus.Error.InvalidArgs" {
			t.Errorf("Check%v: %v, want InvalidArgs", args, err)
		}
	}
	t.Logf("%d Check answers equal Decide()", n)

	// explain asks the same question through Check.
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--user", "uid:1001", "--dst", "168.63.129.16", "--proto", "udp", "--port", "53"}, 0, "eth0: allowed: uid:1001 is allowed to 168.63.129.16/32 udp/53 (endpoint wire-dns; allowed: *)"},
		{[]string{"--user", "uid:1001", "--dst", "168.63.129.16", "--proto", "tcp", "--port", "80"}, 3, "eth0: denied: uid:1001 is not allowed to 168.63.129.16/32 tcp/80 (endpoint wire-agent; allowed: root)"},
		{[]string{"--user", "root", "--dst", "168.63.129.16", "--proto", "tcp", "--port", "80"}, 0, "eth0: allowed: root is allowed to 168.63.129.16/32 tcp/80 (endpoint wire-agent"},
		{[]string{"--user", "uid:1002", "--dst", "168.63.129.16", "--proto", "icmp"}, 0, "eth0: allowed: uid:1002 is allowed to 168.63.129.16/32 icmp (endpoint ping"},
		{[]string{"--user", "root", "--dst", "fd00:ec2::254", "--proto", "tcp", "--port", "53"}, 0, "eth0: allowed: root is allowed to fd00:ec2::254/128 tcp/53 (endpoint wire-dns"},
	} {
		out, stderr, err := cli(t, bus, append([]string{"explain", "--iface", "eth0"}, c.args...)...)
		if exitCode(err) != c.code || !strings.HasPrefix(out, c.want) {
			t.Errorf("explain %v: exit %d, %q %q; want exit %d and %q", c.args, exitCode(err), out, stderr, c.code, c.want)
		}
	}
}

// The command line against the running daemon: status as a table,
// explain through Check; clear messages without a daemon or a bus.
func TestCLIOnline(t *testing.T) {
	testnet.RequireRoot(t)
	bus := testnet.StartBus(t, shippedConf)
	b := newBed(t, bus)

	out, stderr, err := cli(t, bus, "status")
	if err != nil {
		t.Fatalf("status: %v\n%s", err, stderr)
	}
	for _, want := range []string{"net-tc-filter dev: running", "generation", "1 ranges", "eth0 (ifindex ", ", " + attachMode(t) + ")", b.main} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	out, stderr, err = cli(t, bus, "explain", "--user", "uid:1002", "--dst", prot4.String())
	if exitCode(err) != 3 || !strings.HasPrefix(out, "eth0: denied: ") || !strings.Contains(out, " is not allowed to 192.0.2.7/32 (endpoint protected; allowed: ") {
		t.Errorf("explain online: %q %q %v", out, stderr, err)
	}

	b.d.Signal(15)
	if err := b.d.Wait(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	_, stderr, err = cli(t, bus, "status")
	if exitCode(err) != 3 || !strings.Contains(stderr, "net-tc-filter is not running") {
		t.Errorf("status without a daemon: %v %q", err, stderr)
	}
	out, stderr, err = cli(t, bus, "explain", "--pin-dir", b.pins, "--user", "uid:1002", "--dst", prot4.String())
	if err != nil || !strings.HasPrefix(out, "no daemon running: nothing is filtered (net-tc-filter is not running") {
		t.Errorf("explain without a daemon: %q %q %v", out, stderr, err)
	}
	bus.Stop()
	_, stderr, err = cli(t, bus, "reload")
	if exitCode(err) != 1 || !strings.Contains(stderr, "cannot reach the system bus") {
		t.Errorf("reload without a bus: %v %q", err, stderr)
	}
}

// Restarts on either side: a new daemon takes the name again and a
// subscriber's match (by the well-known name) sees its signals; after the
// bus itself restarts, the daemon comes back on it by itself.
func TestRestarts(t *testing.T) {
	testnet.RequireRoot(t)
	bus := testnet.StartBus(t, shippedConf)
	b := newBed(t, bus)
	sub := conn(t, bus)
	if err := sub.AddMatchSignal(godbus.WithMatchSender(BusName), godbus.WithMatchMember("Reloaded")); err != nil {
		t.Fatal(err)
	}
	signals := make(chan *godbus.Signal, 64)
	sub.Signal(signals)

	b.d.Kill()
	b.start(t)
	c := conn(t, bus)
	if err := obj(c).Call(Interface+".Reload", 0).Err; err != nil {
		t.Fatal(err)
	}
	waitSignal(t, signals, Interface+".Reloaded")

	bus.Stop()
	bus.Start(t)
	b.d.WaitLog(t, "lost the system bus connection", 10*time.Second)
	deadline := time.Now().Add(15 * time.Second)
	for {
		out, _, err := cli(t, bus, "status", "--json")
		if err == nil && strings.Contains(out, `"state": "running"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the daemon did not come back on the restarted bus:\n%s", b.d.Log())
		}
		time.Sleep(200 * time.Millisecond)
	}
	testnet.Expect(t, b.bob, prot4, port, denied) // enforcing all along
}

// nssDown resolves like NSS with its LDAP backend down: "ldap-user" cannot
// be looked up; "hung-user" is not answered until hung is closed (sssd
// stuck rather than down); every other name does not exist.
type nssDown struct{ hung chan struct{} }

func (r nssDown) User(name string) (uint32, error) {
	switch name {
	case "ldap-user":
		return 0, errors.New("look up user \"ldap-user\": connection refused")
	case "hung-user":
		<-r.hung
	}
	return 0, fmt.Errorf("%w user %q", policy.ErrUnknown, name)
}

func (nssDown) Group(name string) ([]uint32, error) {
	return nil, fmt.Errorf("%w group %q", policy.ErrUnknown, name)
}

// checkError calls Check and returns the D-Bus error's name and message.
func checkError(t *testing.T, c *godbus.Conn, args ...any) (string, string) {
	t.Helper()
	err := obj(c).Call(Interface+".Check", 0, args...).Err
	var de godbus.Error
	if !errors.As(err, &de) {
		t.Errorf("Check%v: %v, want a D-Bus error", args, err)
		return "", ""
	}
	return de.Name, fmt.Sprint(de.Body...)
}

// Check tells what the daemon cannot answer yet (NotReady) from bad input
// (InvalidArgs): nothing live yet, NSS down or hung for the principal's
// name. The object serves a service that has not started, on a real bus.
func TestCheckNotReadyBeforeStart(t *testing.T) {
	testnet.RequireRoot(t)
	bus := testnet.StartBus(t, shippedConf)
	t.Setenv("DBUS_SYSTEM_BUS_ADDRESS", bus.Address)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	nss := nssDown{hung: make(chan struct{})}
	t.Cleanup(func() { cancel(); close(nss.hung); <-done })
	go func() {
		defer close(done)
		Serve(ctx, ServerOptions{Manager: daemon.New(daemon.Options{}), Version: "test", Resolver: nss,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Retry: 100 * time.Millisecond})
	}()
	c := conn(t, bus)
	if v, err := waitState(c, "starting", 10*time.Second); v.Value() != "starting" {
		t.Fatalf("State = %v (%v), want starting", v, err)
	}
	for _, tc := range []struct {
		args      []any
		name, msg string
	}{
		{[]any{"uid:1", "192.0.2.1", "eth0"}, ErrNotReady, "no policy is live yet"},
		{[]any{"ldap-user", "192.0.2.1", "eth0"}, ErrNotReady, "connection refused"},
		{[]any{"hung-user", "192.0.2.1", "eth0"}, ErrNotReady, "NSS lookup timed out after " + policy.LookupBudget.String()},
		{[]any{"no-such-user-ntft", "192.0.2.1", "eth0"}, errInvalidArgs, "unknown user"},
		{[]any{"uid:1", "not-an-address", "eth0"}, errInvalidArgs, "destination"},
	} {
		name, msg := checkError(t, c, tc.args...)
		if name != tc.name || !strings.Contains(msg, tc.msg) {
			t.Errorf("Check%v: %s %q, want %s with %q", tc.args, name, msg, tc.name, tc.msg)
		}
	}
}

// A running daemon that filters no interface (the configured one does not
// exist yet) cannot say which one is meant: NotReady, not InvalidArgs.
func TestCheckNotReadyNoInterface(t *testing.T) {
	testnet.RequireRoot(t)
	bus := testnet.StartBus(t, shippedConf)
	b := newBed(t, bus)
	write(t, b.main, strings.ReplaceAll(policyYAML("uid:1001"), "eth0", "ntft-later"))
	c := conn(t, bus)
	if err := obj(c).Call(Interface+".Reload", 0).Err; err != nil {
		t.Fatal(err)
	}
	name, msg := checkError(t, c, "uid:1002", prot4.String(), "")
	if name != ErrNotReady || !strings.Contains(msg, "no interface is filtered") {
		t.Errorf("Check with no interface filtered: %s %q, want %s", name, msg, ErrNotReady)
	}
	// Naming one answers.
	var d CheckResult
	if err := obj(c).Call(Interface+".Check", 0, "uid:1002", prot4.String(), "ntft-later").Store(&d.Allowed, &d.Endpoint, &d.Range, &d.Reason); err != nil || d.Allowed {
		t.Errorf("Check naming the interface: %+v %v, want denied", d, err)
	}
}

// A name that does not resolve and a file in conf.d that is not read, as
// D-Bus, `status` and `check` show them: State degraded with the name in
// LastError, Warnings naming the file.
func TestDegradedAndWarningsShown(t *testing.T) {
	testnet.RequireRoot(t)
	bus := testnet.StartBus(t, shippedConf)
	b := newBed(t, bus)
	confd := filepath.Join(filepath.Dir(b.main), "conf.d")
	if err := os.Mkdir(confd, 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(confd, "50-x.yaml"), policyYAML("uid:1002"))
	write(t, b.main, policyYAML("uid:1001, group:ntft-no-such-group"))
	c := conn(t, bus)
	sub := conn(t, bus)
	if err := sub.AddMatchSignal(godbus.WithMatchSender(BusName), godbus.WithMatchMember("PropertiesChanged")); err != nil {
		t.Fatal(err)
	}
	signals := make(chan *godbus.Signal, 64)
	sub.Signal(signals)
	if err := obj(c).Call(Interface+".Reload", 0).Err; err != nil {
		t.Fatalf("Reload with a name that does not resolve: %v", err)
	}
	if v, _ := waitState(c, "degraded", 5*time.Second); v.Value() != "degraded" {
		t.Errorf("State = %v, want degraded", v)
	}
	why := "group:ntft-no-such-group (" + b.main + ":5) does not exist"
	v, err := obj(c).GetProperty(Interface + ".LastError")
	if s, _ := v.Value().(string); err != nil || !strings.Contains(s, why) {
		t.Errorf("LastError = %v (%v)", v, err)
	}
	// Whoever sees the state change has been told why already: the
	// properties that say so change first (a slow guest once read
	// "degraded" and an empty LastError in between).
	for toldWhy := false; ; {
		props, _ := waitSignal(t, signals, "").Body[1].(map[string]godbus.Variant)
		if e, ok := props["LastError"]; ok {
			toldWhy = strings.Contains(fmt.Sprint(e.Value()), why)
		}
		if st, ok := props["State"]; ok && st.Value() == "degraded" {
			if !toldWhy {
				t.Error("PropertiesChanged said degraded before it said why")
			}
			break
		}
	}
	testnet.Expect(t, b.alice, prot4, port, allowed)
	testnet.Expect(t, b.bob, prot4, port, denied)

	out, stderr, err := cli(t, bus, "status")
	if exitCode(err) != 4 { // degraded
		t.Fatalf("status: %v\n%s", err, stderr)
	}
	for _, want := range []string{": degraded", "group:ntft-no-such-group", "warnings", "50-x.yaml"} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	out, stderr, err = cli(t, bus, "status", "--json")
	var st Status
	if exitCode(err) != 4 || json.Unmarshal([]byte(out), &st) != nil || st.State != "degraded" || len(st.Warnings) != 1 || !strings.Contains(st.Warnings[0], "50-x.yaml") {
		t.Errorf("status --json: %+v %v\n%s%s", st, err, out, stderr)
	}
	var all map[string]godbus.Variant
	if err := obj(c).Call(Interface+".Status", 0).Store(&all); err != nil || !strings.Contains(fmt.Sprint(all["Warnings"].Value()), "50-x.yaml") {
		t.Errorf("Status()[Warnings] = %v (%v)", all["Warnings"], err)
	}

	// check calls the name an error, with its position, and warns of
	// the file.
	_, stderr, err = cli(t, bus, "check", "--config", b.main)
	if exitCode(err) != 1 || !strings.Contains(stderr, b.main+":5: allow \"group:ntft-no-such-group\": unknown group") || !strings.Contains(stderr, "warning: ") || !strings.Contains(stderr, "50-x.yaml") {
		t.Errorf("check: exit %d\n%s", exitCode(err), stderr)
	}

	// The name fixed, the set is valid: running, the warning stays.
	write(t, b.main, policyYAML("uid:1001"))
	if err := obj(c).Call(Interface+".Reload", 0).Err; err != nil {
		t.Fatal(err)
	}
	if v, _ := waitState(c, "running", 5*time.Second); v.Value() != "running" {
		t.Errorf("State after the fix = %v, want running", v)
	}
	out, stderr, err = cli(t, bus, "check", "--config", b.main)
	if err != nil || !strings.Contains(stderr, "warning: ") || !strings.Contains(stderr, "50-x.yaml") || !strings.Contains(out, "OK: ") {
		t.Errorf("check of a valid set: %v\n%s%s", err, out, stderr)
	}
	if !strings.Contains(b.d.Log(), "50-x.yaml") {
		t.Errorf("the daemon did not log the warning:\n%s", b.d.Log())
	}

	// An editor's backup left in conf.d changes no policy; it is logged
	// and listed all the same.
	write(t, filepath.Join(confd, "50-x.yml~"), policyYAML("uid:1002"))
	b.d.WaitLog(t, "50-x.yml~", 10*time.Second)
	deadline := time.Now().Add(5 * time.Second)
	for {
		st := Status{}
		out, _, err := cli(t, bus, "status", "--json")
		if err == nil && json.Unmarshal([]byte(out), &st) == nil && len(st.Warnings) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status does not list both files not read: %+v %v\n%s", st, err, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
	testnet.Expect(t, b.bob, prot4, port, denied)
}

// The Audited property (and Status, and the status command) count what
// mode: audit let pass: bob's packets to an audited endpoint pass, and
// move Audited, not Denied.
func TestAuditedProperty(t *testing.T) {
	testnet.RequireRoot(t)
	bus := testnet.StartBus(t, shippedConf)
	b := newBed(t, bus)
	c := conn(t, bus)
	write(t, b.main, fmt.Sprintf(`endpoints:
  - protected:
      iface: [eth0]
      range: [%s/32]
      allow: [uid:1001]
      mode: audit
interfaces:
  eth0: {default: allow}
`, prot4))
	if err := obj(c).Call(Interface+".Reload", 0).Err; err != nil {
		t.Fatalf("Reload: %v", err)
	}
	get := func(name string) uint64 {
		v, err := obj(c).GetProperty(Interface + "." + name)
		if err != nil {
			t.Fatal(err)
		}
		return v.Value().(uint64)
	}
	audited, denied := get("Audited"), get("Denied")
	testnet.Expect(t, b.bob, prot4, port, allowed)
	deadline := time.Now().Add(5 * time.Second)
	for get("Audited") < audited+2 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if got := get("Audited"); got < audited+2 {
		t.Errorf("Audited = %d after bob's TCP and UDP to the audited endpoint, was %d", got, audited)
	}
	if got := get("Denied"); got != denied {
		t.Errorf("Denied moved from %d to %d with only audited traffic", denied, got)
	}
	var st map[string]godbus.Variant
	if err := obj(c).Call(Interface+".Status", 0).Store(&st); err != nil {
		t.Fatal(err)
	}
	if v, ok := st["Audited"]; !ok || v.Value().(uint64) < audited+2 {
		t.Errorf("Status Audited = %v (present %v)", v, ok)
	}
	out, stderr, err := cli(t, bus, "status")
	if err != nil || !strings.Contains(out, " audited (passed by mode: audit)") {
		t.Errorf("status: %v %q\n%s", err, stderr, out)
	}
}
