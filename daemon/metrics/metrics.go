// SPDX-License-Identifier: Apache-2.0

// Package metrics exposes the daemon's state and the kernel's counters to
// Prometheus. It reads a Snapshot from a Source at every scrape (no state
// of its own to keep in step) and serves it on /metrics, on listeners
// handed over by systemd and on the configured address. It does not know
// the daemon: the daemon provides the Source.
package metrics

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Source provides what a scrape reports.
type Source interface {
	Metrics() Snapshot
}

// SourceFunc makes a function a Source.
type SourceFunc func() Snapshot

// Metrics calls f.
func (f SourceFunc) Metrics() Snapshot { return f() }

// Verdicts counts the packets a filter let go and dropped, and those that
// mode: audit let go although the policy does not allow their owner.
type Verdicts struct {
	Allowed, Denied, Audited uint64
}

// Kernel are the filter program's counters of packets it did not judge
// (bpf.Counters).
type Kernel struct {
	NotIP, Malformed, Unfiltered, NoPolicy uint64
	EventsLost                             uint64 // decisions the ring buffer had no room for
	// Denied packets of local sockets answered with ICMP "administratively
	// prohibited", and those left unanswered because the per-CPU budget of
	// replies was spent or the reply could not be made (SPEC §1 rule 4).
	Rejected, RejectLimited, RejectFailed uint64
}

// Interface is one filtered interface.
type Interface struct {
	Name  string
	Index int
	Mode  string // tcx or clsact
}

// Reload is the outcome of the last load of the configuration set.
type Reload struct {
	At       time.Time // when it ended; zero: none yet
	Duration time.Duration
	OK       bool
}

// Snapshot is the daemon at one moment.
type Snapshot struct {
	State      string // one of States()
	Generation uint32
	// ReloadsOK and ReloadsFailed count reloads (SIGHUP, D-Bus, file
	// changes) since the daemon started; the start's own load is not one.
	ReloadsOK, ReloadsFailed uint64
	LastReload               Reload // the start's load until the first reload
	RangesIPv4, RangesIPv6   int
	Interfaces               []Interface
	// Kernel is nil when the counters cannot be read (not loaded yet,
	// stopping): their series are then left out, not reported as 0.
	Kernel *Kernel
	// LogSuppressed counts decision log entries the rate limit left out.
	LogSuppressed uint64
	// IfaceTraffic (by interface name) and EndpointTraffic (by endpoint
	// name; "" for the interface default) are nil when the kernel does not
	// count them: their series are then left out.
	IfaceTraffic    map[string]Verdicts
	EndpointTraffic map[string]Verdicts
	// StagedDifferences counts, while a candidate is staged, the packets
	// it would decide otherwise, by its endpoint that decides ("" : its
	// default) and direction (newly_denied, newly_allowed, newly_audited,
	// no_longer_audited); nil: nothing staged, no series.
	StagedDifferences map[StagedKey]uint64
}

// StagedKey labels a staged difference.
type StagedKey struct {
	Endpoint, Direction string
}

// States are the values of net_tc_filter_state's state label, in the
// order the daemon goes through them.
func States() []string {
	return []string{"starting", "running", "reloading", "degraded", "stopping"}
}

// Collector turns a Source's Snapshot into metrics at scrape time.
type Collector struct {
	src     Source
	version string
	d       descs
}

type descs struct {
	packets, endpointPackets, kernelPackets, eventsLost, suppressed, reloads *prometheus.Desc
	rejects                                                                  *prometheus.Desc
	generation, lastReloadTime, lastReloadDuration, lastReloadSuccess        *prometheus.Desc
	ranges, ifaceInfo, state, buildInfo                                      *prometheus.Desc
	stagedDifferences                                                        *prometheus.Desc
}

const ns = "net_tc_filter_"

// NewCollector makes a collector reporting src; version is the daemon's,
// for net_tc_filter_build_info.
func NewCollector(src Source, version string) *Collector {
	desc := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(ns+name, help, labels, nil)
	}
	return &Collector{src: src, version: version, d: descs{
		packets:            desc("packets_total", "Packets the filter judged on an interface, by verdict (allow, deny, audit: not allowed, passed by mode: audit).", "interface", "action"),
		endpointPackets:    desc("endpoint_packets_total", "Packets the filter judged, by the endpoint whose range decided (\"\" for the interface default) and verdict (allow, deny, audit: not allowed, passed by mode: audit).", "endpoint", "action"),
		kernelPackets:      desc("kernel_packets_total", "Packets the policy did not judge, by reason: not_ip (non-IP frames; passed), malformed (IP packets whose destination cannot be read; dropped), unfiltered (on an interface the policy no longer filters, until detached; passed), no_policy (no policy written yet; dropped).", "reason"),
		eventsLost:         desc("events_lost_total", "Decisions the kernel could not queue for the decision log (ring buffer full)."),
		rejects:            desc("rejects_total", "Denied packets of local sockets, by what became of their answer (ICMP administratively prohibited, deny: reject): sent, limited (not answered: the per-CPU budget of replies was spent; dropped silently), failed (not answered: the reply could not be made; dropped silently).", "result"),
		suppressed:         desc("log_suppressed_total", "Decision log entries left out by log.rate."),
		reloads:            desc("reloads_total", "Reloads of the configuration set since the daemon started, by result.", "result"),
		generation:         desc("generation", "Generation of the live policy."),
		lastReloadTime:     desc("last_reload_timestamp_seconds", "When the last load of the configuration set ended (the start's, until the first reload), seconds since the epoch."),
		lastReloadDuration: desc("last_reload_duration_seconds", "How long the last load of the configuration set took."),
		lastReloadSuccess:  desc("last_reload_success", "1 when the last load of the configuration set was applied, 0 when it failed and the previous policy stays."),
		ranges:             desc("ranges", "Address ranges of the live policy ((endpoint, range) pairs), by family.", "family"),
		ifaceInfo:          desc("interface_info", "A filtered interface, with its ifindex and how the program is attached; always 1.", "interface", "ifindex", "mode"),
		state:              desc("state", "1 for the daemon's current state, 0 for the others.", "state"),
		buildInfo:          desc("build_info", "The daemon's version; always 1.", "version"),
		stagedDifferences:  desc("staged_differences_total", "While a candidate is staged: packets it would decide otherwise than the live policy, by its endpoint that decides (\"\" for its interface default) and direction (newly_denied, newly_allowed, newly_audited, no_longer_audited). Since the stage began.", "endpoint", "direction"),
	}}
}

// Describe sends every metric's description.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	d := c.d
	for _, x := range []*prometheus.Desc{d.packets, d.endpointPackets, d.kernelPackets, d.eventsLost, d.rejects, d.suppressed, d.reloads,
		d.generation, d.lastReloadTime, d.lastReloadDuration, d.lastReloadSuccess, d.ranges, d.ifaceInfo, d.state, d.buildInfo, d.stagedDifferences} {
		ch <- x
	}
}

// Collect reads one Snapshot and sends it as constant metrics.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	s := c.src.Metrics()
	d := c.d
	counter := func(desc *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(desc, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(desc *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, v, labels...)
	}
	verdicts := func(desc *prometheus.Desc, by map[string]Verdicts) {
		for name, v := range by {
			counter(desc, v.Allowed, name, "allow")
			counter(desc, v.Denied, name, "deny")
			counter(desc, v.Audited, name, "audit")
		}
	}
	for k, n := range s.StagedDifferences {
		counter(d.stagedDifferences, n, k.Endpoint, k.Direction)
	}
	verdicts(d.packets, s.IfaceTraffic)
	verdicts(d.endpointPackets, s.EndpointTraffic)
	if k := s.Kernel; k != nil {
		counter(d.kernelPackets, k.NotIP, "not_ip")
		counter(d.kernelPackets, k.Malformed, "malformed")
		counter(d.kernelPackets, k.Unfiltered, "unfiltered")
		counter(d.kernelPackets, k.NoPolicy, "no_policy")
		counter(d.eventsLost, k.EventsLost)
		counter(d.rejects, k.Rejected, "sent")
		counter(d.rejects, k.RejectLimited, "limited")
		counter(d.rejects, k.RejectFailed, "failed")
	}
	counter(d.suppressed, s.LogSuppressed)
	counter(d.reloads, s.ReloadsOK, "ok")
	counter(d.reloads, s.ReloadsFailed, "failed")
	gauge(d.generation, float64(s.Generation))
	if !s.LastReload.At.IsZero() {
		gauge(d.lastReloadTime, float64(s.LastReload.At.UnixNano())/1e9)
		gauge(d.lastReloadDuration, s.LastReload.Duration.Seconds())
		gauge(d.lastReloadSuccess, boolValue(s.LastReload.OK))
	}
	gauge(d.ranges, float64(s.RangesIPv4), "ipv4")
	gauge(d.ranges, float64(s.RangesIPv6), "ipv6")
	for _, i := range s.Interfaces {
		gauge(d.ifaceInfo, 1, i.Name, strconv.Itoa(i.Index), i.Mode)
	}
	for _, st := range States() {
		gauge(d.state, boolValue(st == s.State), st)
	}
	gauge(d.buildInfo, 1, c.version)
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
