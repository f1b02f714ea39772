// SPDX-License-Identifier: Apache-2.0

package daemon

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/nettcfilter/net-tc-filter/bpf"
	"github.com/nettcfilter/net-tc-filter/daemon/metrics"
	"github.com/nettcfilter/net-tc-filter/daemon/testnet"
)

// The daemon's states are the metrics' states.
func TestMetricsStates(t *testing.T) {
	for _, st := range []State{StateStarting, StateRunning, StateReloading, StateDegraded, StateStopping} {
		if !slices.Contains(metrics.States(), string(st)) {
			t.Errorf("state %q missing from metrics.States()", st)
		}
	}
	if len(metrics.States()) != 5 {
		t.Errorf("metrics.States() = %v: states the daemon does not have", metrics.States())
	}
}

// samples are one scrape: "name{label="value",...}" (labels sorted) →
// value.
type samples map[string]float64

func (s samples) get(t *testing.T, key string) float64 {
	t.Helper()
	v, ok := s[key]
	if !ok {
		t.Fatalf("no sample %s in the scrape", key)
	}
	return v
}

// scrape fetches /metrics from addr over a TCP connection made inside ns
// (the daemon's network namespace).
func scrape(t *testing.T, ns *testnet.NS, addr string) samples {
	t.Helper()
	s, err := scrapeErr(ns, addr, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func scrapeErr(ns *testnet.NS, addr string, timeout time.Duration) (samples, error) {
	var conn net.Conn
	err := ns.Do(func() error {
		var err error
		conn, err = net.DialTimeout("tcp", addr, 5*time.Second)
		return err
	})
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(timeout))
	req, err := http.NewRequest("GET", "http://"+addr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	req.Close = true
	if err := req.Write(conn); err != nil {
		return nil, fmt.Errorf("scrape %s: %w", addr, err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), req)
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", addr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scrape %s: %s", addr, resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("scrape %s: parse: %w", addr, err)
	}
	out := samples{}
	for name, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			sort.Strings(labels)
			key := name
			if len(labels) > 0 {
				key += "{" + strings.Join(labels, ",") + "}"
			}
			out[key] = value(m)
		}
	}
	return out, nil
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Untyped != nil:
		return m.Untyped.GetValue()
	}
	return -1
}

// tcpListeners lists the listening TCP sockets a process holds, as "local
// address:port 0A" from its network namespace's /proc tables. Accepted
// connections are left out: a scrape's can linger in LAST_ACK on a slow
// machine.
func tcpListeners(t *testing.T, pid int) []string {
	t.Helper()
	inodes := map[string]bool{}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range fds {
		target, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if ino, ok := strings.CutPrefix(target, "socket:["); err == nil && ok {
			inodes[strings.TrimSuffix(ino, "]")] = true
		}
	}
	var out []string
	for _, table := range []string{"tcp", "tcp6"} {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", pid, table))
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(data), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) < 10 || !inodes[f[9]] || f[3] != "0A" {
				continue
			}
			out = append(out, table+" "+hexAddr(f[1])+" "+f[3])
		}
	}
	return out
}

// hexAddr turns /proc/net/tcp's "0100007F:26E3" into "127.0.0.1:9955"
// (IPv4 only; IPv6 stays hex).
func hexAddr(s string) string {
	a, p, _ := strings.Cut(s, ":")
	port, _ := strconv.ParseUint(p, 16, 16)
	if len(a) == 8 {
		n, _ := strconv.ParseUint(a, 16, 32)
		return fmt.Sprintf("%d.%d.%d.%d:%d", n&0xff, n>>8&0xff, n>>16&0xff, n>>24, port)
	}
	return fmt.Sprintf("[%s]:%d", a, port)
}

var statusGen = regexp.MustCompile(`generation (\d+) \((\w+)\)`)

// genMode reads generation and attach mode from a STATUS= line.
func genMode(t *testing.T, status string) (float64, string) {
	t.Helper()
	m := statusGen.FindStringSubmatch(status)
	if m == nil {
		t.Fatalf("no generation in STATUS=%q", status)
	}
	g, _ := strconv.ParseFloat(m[1], 64)
	return g, m[2]
}

// replaceFile writes path in one step (a rename), so the watcher sees the
// whole file at once.
func replaceFile(t *testing.T, path, content string) {
	t.Helper()
	tmp := filepath.Join(t.TempDir(), "new.yml")
	writeFile(t, tmp, content)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// metrics.listen: the daemon serves /metrics on the configured address in
// its network namespace, and the numbers follow what happens: real
// traffic from real uids moves the kernel's verdict counters, SIGHUP
// counts an ok reload and makes a generation, a broken drop-in counts a
// failed one and last_reload_success drops to 0, a reload that moves
// metrics.listen moves the listener.
func TestMetricsListen(t *testing.T) {
	testnet.RequireRoot(t)
	const addr1, addr2 = "127.0.0.1:9963", "127.0.0.1:9964"
	// uid 0 and unowned are allowed too: the kernel sends some packets of
	// alice's connections itself, as root (an RST, or an ACK from TIME_WAIT
	// through its control socket; MACHINE-NOTES), or with no owner (a
	// TIME_WAIT socket's ACK of a FIN the server sent again: seen on the
	// 6.1 and 6.12 guests under load), when a close races the server's.
	// They are not the denied traffic the counters below must tell apart.
	b := newBed(t, policyYAML([]string{"uid:1001", "uid:0", "unowned"}, "")+"log: {level: debug}\nmetrics: {listen: \""+addr1+"\"}\n")
	mkdir(t, filepath.Join(b.dir, "conf.d"))
	d := b.start(t, testnet.DaemonOptions{})
	gen, mode := genMode(t, statusOf(d.Ready))
	eth0 := fmt.Sprintf(`net_tc_filter_interface_info{ifindex="%d",interface="eth0",mode="%s"}`, b.tp.Client.Index(t, "eth0"), mode)

	s := scrape(t, b.tp.Client, addr1)
	for key, want := range map[string]float64{
		`net_tc_filter_generation`:                                gen,
		`net_tc_filter_ranges{family="ipv4"}`:                     1,
		`net_tc_filter_ranges{family="ipv6"}`:                     1,
		eth0:                                                      1,
		`net_tc_filter_state{state="running"}`:                    1,
		`net_tc_filter_state{state="degraded"}`:                   0,
		`net_tc_filter_reloads_total{result="ok"}`:                0,
		`net_tc_filter_reloads_total{result="failed"}`:            0,
		`net_tc_filter_last_reload_success`:                       1,
		`net_tc_filter_build_info{version="dev"}`:                 1,
		`net_tc_filter_log_suppressed_total`:                      0,
		`net_tc_filter_kernel_packets_total{reason="malformed"}`:  0,
		`net_tc_filter_kernel_packets_total{reason="no_policy"}`:  0,
		`net_tc_filter_kernel_packets_total{reason="not_ip"}`:     s[`net_tc_filter_kernel_packets_total{reason="not_ip"}`],
		`net_tc_filter_kernel_packets_total{reason="unfiltered"}`: s[`net_tc_filter_kernel_packets_total{reason="unfiltered"}`],
		`net_tc_filter_events_lost_total`:                         0,
		`net_tc_filter_rejects_total{result="limited"}`:           0,
		`net_tc_filter_rejects_total{result="failed"}`:            0,
	} {
		if got := s.get(t, key); got != want {
			t.Errorf("%s = %v, want %v", key, got, want)
		}
	}
	if n := len(s.keys("net_tc_filter_interface_info")); n != 1 {
		t.Errorf("%d interface_info series, want 1 (eth0)", n)
	}
	if k := s.keys("net_tc_filter_packets_total"); len(k) != 3 {
		t.Errorf("packets_total series %v, want eth0's allow, deny and audit", k)
	}
	if _, ok := s["go_goroutines"]; !ok {
		t.Error("no Go runtime metrics")
	}
	if _, ok := s["process_open_fds"]; !ok {
		t.Error("no process metrics")
	}
	started := s.get(t, "net_tc_filter_last_reload_timestamp_seconds")
	if now := float64(time.Now().Unix()); started < now-60 || started > now+1 {
		t.Errorf("last_reload_timestamp_seconds %v, now %v", started, now)
	}
	if got := tcpListeners(t, d.Pid()); !slices.Equal(got, []string{"tcp " + addr1 + " 0A"}) {
		t.Errorf("daemon's TCP sockets %v, want one listening on %s", got, addr1)
	}

	// Allowed traffic moves allow, not deny; denied traffic moves deny,
	// on eth0 and for the endpoint whose range decided.
	series := func(s samples, metric, label, action string) float64 {
		return s[fmt.Sprintf(`net_tc_filter_%s{action="%s",%s}`, metric, action, label)]
	}
	labels := map[string]string{"packets_total": `interface="eth0"`, "endpoint_packets_total": `endpoint="protected"`}
	b.expect(t, b.alice, allowed)
	s2 := scrape(t, b.tp.Client, addr1)
	for metric, label := range labels {
		if got := series(s2, metric, label, "allow") - series(s, metric, label, "allow"); got < 4 {
			t.Errorf("%s{%s} allow moved by %v after alice's TCP+UDP over IPv4+IPv6, want >= 4", metric, label, got)
		}
		if got := series(s2, metric, label, "deny") - series(s, metric, label, "deny"); got != 0 {
			t.Errorf("%s{%s} deny moved by %v with only allowed traffic", metric, label, got)
		}
	}
	b.expect(t, b.bob, denied)
	s3 := scrape(t, b.tp.Client, addr1)
	for metric, label := range labels {
		if got := series(s3, metric, label, "deny") - series(s2, metric, label, "deny"); got < 4 {
			t.Errorf("%s{%s} deny moved by %v after bob's TCP+UDP over IPv4+IPv6, want >= 4", metric, label, got)
		}
	}
	// Bob's packets were answered (deny: reject, the default), one
	// reply per denied packet within the budget.
	sent := `net_tc_filter_rejects_total{result="sent"}`
	if got := s3.get(t, sent) - s2.get(t, sent); got < 4 {
		t.Errorf("%s moved by %v after bob's four denied probes, want >= 4", sent, got)
	}

	// SIGHUP: an ok reload and a new generation. (Other reloads may
	// come in between: a change of /etc/passwd by anything else on the
	// machine reloads too, and counts.)
	// The generation goes live a moment before the reload is counted (a
	// scrape can fall in between), so wait for both.
	d.Signal(syscall.SIGHUP)
	s4 := scrapeUntil(t, b.tp.Client, addr1, "generation "+fmt.Sprint(gen+1)+" and an ok reload", func(s samples) bool {
		return s[`net_tc_filter_generation`] == gen+1 && s[`net_tc_filter_reloads_total{result="ok"}`] >= 1
	})
	for key, want := range map[string]float64{
		`net_tc_filter_reloads_total{result="failed"}`: 0,
		`net_tc_filter_last_reload_success`:            1,
	} {
		if got := s4.get(t, key); got != want {
			t.Errorf("after SIGHUP: %s = %v, want %v", key, got, want)
		}
	}
	if s4.get(t, "net_tc_filter_last_reload_timestamp_seconds") <= started {
		t.Error("last_reload_timestamp_seconds did not move with the reload")
	}
	if dur := s4.get(t, "net_tc_filter_last_reload_duration_seconds"); dur <= 0 || dur > 10 {
		t.Errorf("last_reload_duration_seconds %v", dur)
	}

	// A broken drop-in: a failed reload, the running policy stays.
	broken := filepath.Join(b.dir, "conf.d", "50-x.yml")
	replaceFile(t, broken, "endpoints: [\n")
	s5 := scrapeUntil(t, b.tp.Client, addr1, "a failed reload", func(s samples) bool {
		return s[`net_tc_filter_reloads_total{result="failed"}`] >= 1
	})
	for key, want := range map[string]float64{
		`net_tc_filter_generation`:                 gen + 1,
		`net_tc_filter_reloads_total{result="ok"}`: s4[`net_tc_filter_reloads_total{result="ok"}`],
		`net_tc_filter_last_reload_success`:        0,
		`net_tc_filter_state{state="degraded"}`:    1,
		`net_tc_filter_state{state="running"}`:     0,
	} {
		if got := s5.get(t, key); got != want {
			t.Errorf("after a broken drop-in: %s = %v, want %v", key, got, want)
		}
	}
	b.expect(t, b.bob, denied)

	// The drop-in fixed, and moving the address: served on the new one
	// only.
	replaceFile(t, broken, "metrics: {listen: \""+addr2+"\"}\n")
	s6 := scrapeUntil(t, b.tp.Client, addr2, "metrics on "+addr2, func(samples) bool { return true })
	if ok := s6.get(t, `net_tc_filter_reloads_total{result="ok"}`); ok <= s5.get(t, `net_tc_filter_reloads_total{result="ok"}`) {
		t.Errorf("ok reloads %v after the fix, %v before", ok, s5[`net_tc_filter_reloads_total{result="ok"}`])
	}
	for key, want := range map[string]float64{
		`net_tc_filter_last_reload_success`:    1,
		`net_tc_filter_state{state="running"}`: 1,
	} {
		if got := s6.get(t, key); got != want {
			t.Errorf("after moving the address: %s = %v, want %v", key, got, want)
		}
	}
	if _, err := scrapeErr(b.tp.Client, addr1, 5*time.Second); err == nil {
		t.Errorf("%s still served after metrics.listen moved to %s", addr1, addr2)
	}
	if got := tcpListeners(t, d.Pid()); !slices.Equal(got, []string{"tcp " + addr2 + " 0A"}) {
		t.Errorf("daemon's TCP sockets %v, want one listening on %s", got, addr2)
	}
	d.WaitLog(t, "metrics: serving http://"+addr2+"/metrics", 5*time.Second)
}

// scrapeUntil scrapes until cond holds, for at most 15 s.
func scrapeUntil(t *testing.T, ns *testnet.NS, addr, what string, cond func(samples) bool) samples {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		s, err := scrapeErr(ns, addr, 10*time.Second)
		if err == nil && cond(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s on %s within 15s (last scrape: %v)", what, addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// keys lists the samples of one metric name.
func (s samples) keys(name string) []string {
	var out []string
	for k := range s {
		if k == name || strings.HasPrefix(k, name+"{") {
			out = append(out, k)
		}
	}
	return out
}

// Socket activation as systemd does it (systemd-socket-activate opens the
// listening socket, sets LISTEN_FDS and LISTEN_PID and execs the daemon on
// the first connection): the daemon serves that socket without any
// metrics.listen. And with neither, the daemon holds no TCP socket at all.
func TestMetricsSocketActivation(t *testing.T) {
	testnet.RequireRoot(t)
	if _, err := os.Stat("/usr/bin/systemd-socket-activate"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("systemd-socket-activate (package systemd) is missing, and CI=true forbids skipping: %v", err)
		}
		t.Skip("needs systemd-socket-activate (package systemd)")
	}
	const addr = "127.0.0.1:9963"
	b := newBed(t, policyYAML([]string{"uid:1001"}, ""))
	d := testnet.StartDaemonNoWait(t, b.tp.Client, testnet.DaemonOptions{
		Config: b.main, PinDir: b.pins,
		// It passes only the environment named with -E.
		Wrap: []string{"/usr/bin/systemd-socket-activate", "-l", addr, "-E", "NOTIFY_SOCKET"},
	})
	b.d = d
	d.WaitLog(t, "Listening on "+addr, 10*time.Second)
	// The first connection starts the daemon, which then answers it.
	s := scrape(t, b.tp.Client, addr)
	if got := s.get(t, `net_tc_filter_build_info{version="dev"}`); got != 1 {
		t.Errorf("build_info %v", got)
	}
	ready, _ := d.Notify.WaitFor(t, "READY=1", 30*time.Second)
	gen, mode := genMode(t, statusOf(ready))
	s = scrape(t, b.tp.Client, addr)
	for key, want := range map[string]float64{
		`net_tc_filter_generation`:             gen,
		`net_tc_filter_state{state="running"}`: 1,
		fmt.Sprintf(`net_tc_filter_interface_info{ifindex="%d",interface="eth0",mode="%s"}`, b.tp.Client.Index(t, "eth0"), mode): 1,
	} {
		if got := s.get(t, key); got != want {
			t.Errorf("%s = %v, want %v", key, got, want)
		}
	}
	if got := tcpListeners(t, d.Pid()); !slices.Equal(got, []string{"tcp " + addr + " 0A"}) {
		t.Errorf("daemon's TCP sockets %v, want the one from systemd, listening on %s", got, addr)
	}
	if !strings.Contains(d.Log(), "serving http://"+addr+"/metrics (socket from systemd)") {
		t.Errorf("the start log does not say where metrics are served:\n%s", d.Log())
	}
	b.expect(t, b.bob, denied)

	// Neither configured nor handed over: nothing listens.
	d.Signal(syscall.SIGTERM)
	if err := d.Wait(10 * time.Second); err != nil {
		t.Fatalf("stop: %v", err)
	}
	d2 := b.start(t, testnet.DaemonOptions{})
	if got := tcpListeners(t, d2.Pid()); len(got) != 0 {
		t.Errorf("without metrics configured the daemon listens on TCP: %v", got)
	}
	if _, err := scrapeErr(b.tp.Client, addr, 5*time.Second); err == nil {
		t.Errorf("%s answers without metrics configured", addr)
	}
	if strings.Contains(d2.Log(), "metrics:") {
		t.Errorf("the daemon talks about metrics it does not serve:\n%s", d2.Log())
	}
}

// Audited packets (mode: audit) move the audit series of their interface
// and endpoint, and neither allow nor deny.
func TestMetricsAudit(t *testing.T) {
	testnet.RequireRoot(t)
	const addr = "127.0.0.1:9965"
	b := newBed(t, fmt.Sprintf(`endpoints:
  - protected:
      iface: [eth0]
      range: [%s/32, %s/128]
      allow: [uid:1001]
      mode: audit
interfaces:
  eth0: {default: allow}
metrics: {listen: "%s"}
`, prot4, prot6, addr))
	b.start(t, testnet.DaemonOptions{})
	series := func(s samples, metric, label, action string) float64 {
		return s[fmt.Sprintf(`net_tc_filter_%s{action="%s",%s}`, metric, action, label)]
	}
	labels := map[string]string{"packets_total": `interface="eth0"`, "endpoint_packets_total": `endpoint="protected"`}
	s := scrape(t, b.tp.Client, addr)
	b.expect(t, b.bob, allowed) // passes: audited
	s2 := scrape(t, b.tp.Client, addr)
	for metric, label := range labels {
		if got := series(s2, metric, label, "audit") - series(s, metric, label, "audit"); got < 4 {
			t.Errorf("%s{%s} audit moved by %v after bob's TCP+UDP over IPv4+IPv6, want >= 4", metric, label, got)
		}
		if got := series(s2, metric, label, "deny") - series(s, metric, label, "deny"); got != 0 {
			t.Errorf("%s{%s} deny moved by %v with only audited traffic", metric, label, got)
		}
	}
	if got := series(s2, "endpoint_packets_total", `endpoint="protected"`, "allow") - series(s, "endpoint_packets_total", `endpoint="protected"`, "allow"); got != 0 {
		t.Errorf("endpoint protected: allow moved by %v with only bob's audited traffic (the server's answers go to no endpoint)", got)
	}
}

// A reload's outcome is counted before the step that moves the metrics
// listener runs: the first scrape of a new address must not report the
// reload before it as the last one. A failed reload moves nothing.
func TestReloadSettledAfterCounted(t *testing.T) {
	s := New(Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	s.filter = new(bpf.Filter)
	var seen []metrics.Snapshot
	settled := func() { seen = append(seen, s.Metrics()) }

	fail := errors.New("a broken drop-in")
	if err := s.asReload(func() (bool, error) { return true, fail }, settled); err != fail {
		t.Fatalf("asReload returned %v, want %v", err, fail)
	}
	if len(seen) != 0 {
		t.Fatalf("settled ran after a failed reload")
	}
	if err := s.asReload(func() (bool, error) { return true, nil }, settled); err != nil {
		t.Fatal(err)
	}
	if len(seen) != 1 {
		t.Fatalf("settled ran %d times after one good reload", len(seen))
	}
	if m := seen[0]; m.ReloadsOK != 1 || m.ReloadsFailed != 1 || !m.LastReload.OK {
		t.Errorf("settled saw ok %d, failed %d, last ok %v: want the good reload counted", m.ReloadsOK, m.ReloadsFailed, m.LastReload.OK)
	}
}
