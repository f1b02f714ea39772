// SPDX-License-Identifier: Apache-2.0

package metrics

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func snapshot() Snapshot {
	return Snapshot{
		State:         "degraded",
		Generation:    7,
		ReloadsOK:     3,
		ReloadsFailed: 1,
		LastReload:    Reload{At: time.Unix(1795000000, 500_000_000), Duration: 25 * time.Millisecond, OK: false},
		RangesIPv4:    3,
		RangesIPv6:    1,
		Interfaces: []Interface{
			{Name: "eth0", Index: 2, Mode: "tcx"},
			{Name: "wg0", Index: 5, Mode: "clsact"},
		},
		Kernel:        &Kernel{NotIP: 12, Malformed: 1, Unfiltered: 30, NoPolicy: 2, EventsLost: 4, Rejected: 40, RejectLimited: 800, RejectFailed: 3},
		LogSuppressed: 9,
		IfaceTraffic: map[string]Verdicts{
			"eth0": {Allowed: 90, Denied: 6, Audited: 11},
			"wg0":  {Allowed: 10, Denied: 1},
		},
		EndpointTraffic: map[string]Verdicts{
			"imds":    {Allowed: 5, Denied: 7},
			"":        {Allowed: 95},
			"rollout": {Allowed: 2, Audited: 11},
		},
		StagedDifferences: map[StagedKey]uint64{
			{Endpoint: "imds-v2", Direction: "newly_denied"}: 40,
			{Endpoint: "", Direction: "newly_allowed"}:       3,
		},
	}
}

const wantFull = `
# HELP net_tc_filter_build_info The daemon's version; always 1.
# TYPE net_tc_filter_build_info gauge
net_tc_filter_build_info{version="1.2.3"} 1
# HELP net_tc_filter_endpoint_packets_total Packets the filter judged, by the endpoint whose range decided ("" for the interface default) and verdict (allow, deny, audit: not allowed, passed by mode: audit).
# TYPE net_tc_filter_endpoint_packets_total counter
net_tc_filter_endpoint_packets_total{action="allow",endpoint=""} 95
net_tc_filter_endpoint_packets_total{action="allow",endpoint="imds"} 5
net_tc_filter_endpoint_packets_total{action="allow",endpoint="rollout"} 2
net_tc_filter_endpoint_packets_total{action="audit",endpoint=""} 0
net_tc_filter_endpoint_packets_total{action="audit",endpoint="imds"} 0
net_tc_filter_endpoint_packets_total{action="audit",endpoint="rollout"} 11
net_tc_filter_endpoint_packets_total{action="deny",endpoint=""} 0
net_tc_filter_endpoint_packets_total{action="deny",endpoint="imds"} 7
net_tc_filter_endpoint_packets_total{action="deny",endpoint="rollout"} 0
# HELP net_tc_filter_events_lost_total Decisions the kernel could not queue for the decision log (ring buffer full).
# TYPE net_tc_filter_events_lost_total counter
net_tc_filter_events_lost_total 4
# HELP net_tc_filter_generation Generation of the live policy.
# TYPE net_tc_filter_generation gauge
net_tc_filter_generation 7
# HELP net_tc_filter_interface_info A filtered interface, with its ifindex and how the program is attached; always 1.
# TYPE net_tc_filter_interface_info gauge
net_tc_filter_interface_info{ifindex="2",interface="eth0",mode="tcx"} 1
net_tc_filter_interface_info{ifindex="5",interface="wg0",mode="clsact"} 1
# HELP net_tc_filter_kernel_packets_total Packets the policy did not judge, by reason: not_ip (non-IP frames; passed), malformed (IP packets whose destination cannot be read; dropped), unfiltered (on an interface the policy no longer filters, until detached; passed), no_policy (no policy written yet; dropped).
# TYPE net_tc_filter_kernel_packets_total counter
net_tc_filter_kernel_packets_total{reason="malformed"} 1
net_tc_filter_kernel_packets_total{reason="no_policy"} 2
net_tc_filter_kernel_packets_total{reason="not_ip"} 12
net_tc_filter_kernel_packets_total{reason="unfiltered"} 30
# HELP net_tc_filter_last_reload_duration_seconds How long the last load of the configuration set took.
# TYPE net_tc_filter_last_reload_duration_seconds gauge
net_tc_filter_last_reload_duration_seconds 0.025
# HELP net_tc_filter_last_reload_success 1 when the last load of the configuration set was applied, 0 when it failed and the previous policy stays.
# TYPE net_tc_filter_last_reload_success gauge
net_tc_filter_last_reload_success 0
# HELP net_tc_filter_last_reload_timestamp_seconds When the last load of the configuration set ended (the start's, until the first reload), seconds since the epoch.
# TYPE net_tc_filter_last_reload_timestamp_seconds gauge
net_tc_filter_last_reload_timestamp_seconds 1.7950000005e+09
# HELP net_tc_filter_log_suppressed_total Decision log entries left out by log.rate.
# TYPE net_tc_filter_log_suppressed_total counter
net_tc_filter_log_suppressed_total 9
# HELP net_tc_filter_packets_total Packets the filter judged on an interface, by verdict (allow, deny, audit: not allowed, passed by mode: audit).
# TYPE net_tc_filter_packets_total counter
net_tc_filter_packets_total{action="allow",interface="eth0"} 90
net_tc_filter_packets_total{action="allow",interface="wg0"} 10
net_tc_filter_packets_total{action="audit",interface="eth0"} 11
net_tc_filter_packets_total{action="audit",interface="wg0"} 0
net_tc_filter_packets_total{action="deny",interface="eth0"} 6
net_tc_filter_packets_total{action="deny",interface="wg0"} 1
# HELP net_tc_filter_ranges Address ranges of the live policy ((endpoint, range) pairs), by family.
# TYPE net_tc_filter_ranges gauge
net_tc_filter_ranges{family="ipv4"} 3
net_tc_filter_ranges{family="ipv6"} 1
# HELP net_tc_filter_rejects_total Denied packets of local sockets, by what became of their answer (ICMP administratively prohibited, deny: reject): sent, limited (not answered: the per-CPU budget of replies was spent; dropped silently), failed (not answered: the reply could not be made; dropped silently).
# TYPE net_tc_filter_rejects_total counter
net_tc_filter_rejects_total{result="failed"} 3
net_tc_filter_rejects_total{result="limited"} 800
net_tc_filter_rejects_total{result="sent"} 40
# HELP net_tc_filter_reloads_total Reloads of the configuration set since the daemon started, by result.
# TYPE net_tc_filter_reloads_total counter
net_tc_filter_reloads_total{result="failed"} 1
net_tc_filter_reloads_total{result="ok"} 3
# HELP net_tc_filter_staged_differences_total While a candidate is staged: packets it would decide otherwise than the live policy, by its endpoint that decides ("" for its interface default) and direction (newly_denied, newly_allowed, newly_audited, no_longer_audited). Since the stage began.
# TYPE net_tc_filter_staged_differences_total counter
net_tc_filter_staged_differences_total{direction="newly_allowed",endpoint=""} 3
net_tc_filter_staged_differences_total{direction="newly_denied",endpoint="imds-v2"} 40
# HELP net_tc_filter_state 1 for the daemon's current state, 0 for the others.
# TYPE net_tc_filter_state gauge
net_tc_filter_state{state="degraded"} 1
net_tc_filter_state{state="reloading"} 0
net_tc_filter_state{state="running"} 0
net_tc_filter_state{state="starting"} 0
net_tc_filter_state{state="stopping"} 0
`

func TestCollectorFull(t *testing.T) {
	c := NewCollector(SourceFunc(snapshot), "1.2.3")
	if err := testutil.CollectAndCompare(c, strings.NewReader(wantFull)); err != nil {
		t.Error(err)
	}
	// The registry's own consistency checks (help, types, label names).
	if probs, err := testutil.CollectAndLint(c); err != nil || len(probs) > 0 {
		t.Errorf("lint: %v %+v", err, probs)
	}
}

// What the daemon does not know is left out, never reported as 0: no
// kernel counters (not loaded yet), no per-interface or per-endpoint
// counts (the kernel does not count them), no load yet.
func TestCollectorUnknownLeftOut(t *testing.T) {
	c := NewCollector(SourceFunc(func() Snapshot { return Snapshot{State: "starting"} }), "dev")
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, mf := range mfs {
		got[mf.GetName()] = true
	}
	for _, name := range []string{"packets_total", "endpoint_packets_total", "kernel_packets_total",
		"events_lost_total", "rejects_total", "last_reload_timestamp_seconds", "last_reload_duration_seconds", "last_reload_success", "interface_info"} {
		if got[ns+name] {
			t.Errorf("%s reported without data", ns+name)
		}
	}
	for _, name := range []string{"reloads_total", "generation", "ranges", "state", "build_info", "log_suppressed_total"} {
		if !got[ns+name] {
			t.Errorf("%s missing", ns+name)
		}
	}
	if n := testutil.CollectAndCount(c, ns+"state"); n != len(States()) {
		t.Errorf("%d state series, want %d", n, len(States()))
	}
}

// The snapshot is read at every scrape, not once.
func TestCollectorReadsAtScrape(t *testing.T) {
	var gen atomic.Uint32
	c := NewCollector(SourceFunc(func() Snapshot { return Snapshot{State: "running", Generation: gen.Load()} }), "dev")
	for _, want := range []uint32{1, 2, 9} {
		gen.Store(want)
		if got := testutil.ToFloat64(collectorOnly{c, ns + "generation"}); got != float64(want) {
			t.Errorf("generation %v, want %d", got, want)
		}
	}
}

// collectorOnly narrows a collector to one metric family, for ToFloat64.
type collectorOnly struct {
	c    prometheus.Collector
	name string
}

func (o collectorOnly) Describe(ch chan<- *prometheus.Desc) { prometheus.DescribeByCollect(o, ch) }
func (o collectorOnly) Collect(ch chan<- prometheus.Metric) {
	all := make(chan prometheus.Metric)
	go func() { o.c.Collect(all); close(all) }()
	for m := range all {
		if strings.Contains(m.Desc().String(), `fqName: "`+o.name+`"`) {
			ch <- m
		}
	}
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// A listener handed over (as by systemd) serves /metrics with the
// daemon's, the Go runtime's and the process's metrics, 404 elsewhere, and
// closes when the context ends.
func TestServeHandedOver(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv, err := NewServer(ctx, SourceFunc(snapshot), Options{Version: "1.2.3", Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	ln := listen(t)
	srv.Serve(ln)
	base := "http://" + ln.Addr().String()
	code, body := get(t, base+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("GET /metrics: %d", code)
	}
	for _, want := range []string{
		`net_tc_filter_generation 7`,
		`net_tc_filter_packets_total{action="deny",interface="eth0"} 6`,
		`net_tc_filter_build_info{version="1.2.3"} 1`,
		`go_goroutines `,
		`process_resident_memory_bytes `,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	for _, path := range []string{"/", "/metrics/", "/debug/pprof/", "/metricsx"} {
		if code, _ := get(t, base+path); code != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", path, code)
		}
	}
	cancel()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second)
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("still listening after the context ended")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The configured address: bound on Listen, moved by a Listen with another
// address (the old one closed), kept when the new one cannot be bound,
// closed by Listen("").
func TestListenMoves(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv, err := NewServer(ctx, SourceFunc(snapshot), Options{Version: "dev", Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	free := func() string {
		ln := listen(t)
		defer ln.Close()
		return ln.Addr().String()
	}
	a1 := free()
	if err := srv.Listen(a1); err != nil {
		t.Fatal(err)
	}
	if code, _ := get(t, "http://"+a1+"/metrics"); code != http.StatusOK {
		t.Fatalf("GET %s: %d", a1, code)
	}
	// An address in use: refused, the old one still served.
	busy := listen(t)
	defer busy.Close()
	if err := srv.Listen(busy.Addr().String()); err == nil || !strings.Contains(err.Error(), busy.Addr().String()) {
		t.Errorf("Listen on a busy address: %v", err)
	}
	if srv.Addr() != a1 {
		t.Errorf("after a failed move: serving %q, want %q", srv.Addr(), a1)
	}
	if code, _ := get(t, "http://"+a1+"/metrics"); code != http.StatusOK {
		t.Fatalf("after a failed move, GET %s: %d", a1, code)
	}
	a2 := free()
	if err := srv.Listen(a2); err != nil {
		t.Fatal(err)
	}
	if code, _ := get(t, "http://"+a2+"/metrics"); code != http.StatusOK {
		t.Fatalf("GET %s: %d", a2, code)
	}
	if refused(a1) != nil {
		t.Errorf("%s still accepts after the move", a1)
	}
	// Moving onto an overlapping address (same port, all addresses).
	_, port, _ := net.SplitHostPort(a2)
	a3 := "0.0.0.0:" + port
	if err := srv.Listen(a3); err != nil {
		t.Fatalf("move %s -> %s: %v", a2, a3, err)
	}
	if code, _ := get(t, "http://"+a2+"/metrics"); code != http.StatusOK {
		t.Fatalf("GET via %s: %d", a3, code)
	}
	if err := srv.Listen(""); err != nil {
		t.Fatal(err)
	}
	if refused(a2) != nil {
		t.Errorf("%s still accepts after Listen(\"\")", a2)
	}
}

// refused is nil when nothing accepts on addr.
func refused(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return nil
	}
	c.Close()
	return fmt.Errorf("%s accepted a connection", addr)
}
