// SPDX-License-Identifier: Apache-2.0

package bench

// Results is everything one run measured; bench/results.json.
type Results struct {
	Machine     Machine           `json:"machine"`
	Config      Config            `json:"config"`
	Classify    *ClassifyResult   `json:"classify,omitempty"`
	Throughput  *ThroughputResult `json:"throughput,omitempty"`
	PerPacket   *PerPacketResult  `json:"per_packet,omitempty"`
	Reload      *ReloadResult     `json:"reload,omitempty"`
	Footprint   *FootprintResult  `json:"footprint,omitempty"`
	Scale       *ScaleResult      `json:"scale,omitempty"`
	Correctness []Check           `json:"correctness"`
	Goals       []Goal            `json:"goals"`
	Notes       []string          `json:"notes,omitempty"`
	WallSeconds float64           `json:"wall_seconds"`
}

// Machine describes where the run happened.
type Machine struct {
	Kernel   string `json:"kernel"`
	CPU      string `json:"cpu"`
	Cores    int    `json:"cores"`
	MemKiB   int64  `json:"mem_kib"`
	Date     string `json:"date"`
	Commit   string `json:"commit"`
	Go       string `json:"go"`
	Iptables string `json:"iptables"`
	Nft      string `json:"nft"`
	Iperf3   string `json:"iperf3"`
	Daemon   string `json:"daemon"`
	// Load averages (/proc/loadavg) when the run started and ended: other
	// work on the machine shows here, and in the samples' spread.
	LoadStart string `json:"loadavg_start"`
	LoadEnd   string `json:"loadavg_end"`
}

// Config is how the run was set up.
type Config struct {
	Quick              bool    `json:"quick"`
	Reps               int     `json:"reps"`
	Seconds            float64 `json:"seconds_per_throughput_sample"`
	ThroughputSizes    []int   `json:"throughput_sizes"`
	ReloadSizes        []int   `json:"reload_sizes"`
	ReloadReps         int     `json:"reload_reps"`
	FootprintRanges    int     `json:"footprint_ranges"`
	FootprintReloads   int     `json:"footprint_reloads"` // one-drop-in reloads before the RSS after reloads
	ScaleRanges        int     `json:"scale_ranges"`      // part 5; 0: not run
	FloodSeconds       float64 `json:"flood_seconds"`
	ClassifyBenchtime  string  `json:"classify_benchtime"`
	ClassifyCount      int     `json:"classify_count"`
	ReloadProbeEveryMs float64 `json:"reload_probe_every_ms"`
	PerPacketDatagrams int     `json:"per_packet_datagrams"` // per run of each BenchmarkPerPacket case
	PerPacketCount     int     `json:"per_packet_count"`
}

// ClassifyResult is part 1: the classifier under BPF_PROG_TEST_RUN.
type ClassifyResult struct {
	Command string        `json:"command"`
	Raw     []GoBench     `json:"raw"`
	Floor   float64       `json:"floor_ns_per_pkt"`
	Rows    []ClassifyRow `json:"rows"`
	Error   string        `json:"error,omitempty"`
}

// ThroughputSample is one lane's figure in one round: an iperf3 run (TCP),
// or its share of the alternating sender's datagrams (UDP). Rounds of the
// same size and rep ran side by side; "none" is measured at every size.
type ThroughputSample struct {
	Rep    int     `json:"rep"`
	Filter string  `json:"filter"`
	Size   int     `json:"rules"`
	Test   string  `json:"test"` // tcp | udp64
	Value  float64 `json:"value"`
	Unit   string  `json:"unit"` // Gbit/s | kpps
	// Arrived is the share of the datagrams that reached the server (UDP).
	Arrived float64 `json:"arrived,omitempty"`
}

// ThroughputRow is one filter at one size: the medians of its rounds, and
// the medians of its rounds' ratios to no filter in the same round.
type ThroughputRow struct {
	Filter     string  `json:"filter"`
	Size       int     `json:"rules"`
	TCPGbps    float64 `json:"tcp_gbps_median"`
	UDPKpps    float64 `json:"udp64_kpps_median"`
	TCPRatio   float64 `json:"tcp_ratio"`
	UDPRatio   float64 `json:"udp64_ratio"`
	UDPArrived float64 `json:"udp64_arrived"`
	// Cost of a 64-byte datagram to the sender above the no-filter lane
	// and above each empty program (issue 23's floor), in ns (medians of
	// the rounds' differences), and the UDP ratio to each empty program.
	AboveNone   float64 `json:"udp64_ns_above_none"`
	AboveTCX    float64 `json:"udp64_ns_above_empty_tcx"`
	RatioTCX    float64 `json:"udp64_ratio_to_empty_tcx"`
	AboveClsact float64 `json:"udp64_ns_above_empty_clsact"`
	RatioClsact float64 `json:"udp64_ratio_to_empty_clsact"`
}

// Comparison is net-tc-filter against a peer at one size in one test: the
// rounds in which it was ahead and behind, and the sign test's verdict.
type Comparison struct {
	Test    string `json:"test"`
	Size    int    `json:"rules"`
	Peer    string `json:"peer"`
	Ahead   int    `json:"rounds_ahead"`
	Behind  int    `json:"rounds_behind"`
	Verdict string `json:"verdict"` // ahead | behind | tie
}

// ThroughputResult is part 2.
type ThroughputResult struct {
	SenderCPU   int                `json:"sender_cpu"` // -1: not pinned
	SliceMs     float64            `json:"udp_slice_ms"`
	Samples     []ThroughputSample `json:"samples"`
	Rows        []ThroughputRow    `json:"rows"` // per size: none, iptables, nft, net-tc-filter, empty-tcx, empty-clsact
	Comparisons []Comparison       `json:"comparisons"`
	// ProgStats: per size, the tc programs' own ns per packet (bpf_stats)
	// in one more round, not counted with the others.
	ProgStats []ProgStat `json:"prog_stats,omitempty"`
}

// ReloadSample is one load (cold) or reload of one filter.
type ReloadSample struct {
	Filter string `json:"filter"`
	Size   int    `json:"ranges"`
	Kind   string `json:"kind"` // cold | reload
	Rep    int    `json:"rep"`
	// CommandMs: iptables-restore / nft -f run time; ours: start (or
	// config rename) to READY=1.
	CommandMs float64 `json:"command_ms"`
	// LiveMs: start of the change to the first probe datagram that the
	// new policy lets through (reload only).
	LiveMs float64 `json:"live_ms,omitempty"`
	// ReloadingMs: ours only, config rename to RELOADING=1 (the file
	// watcher's debounce and settle time).
	ReloadingMs float64 `json:"reloading_ms,omitempty"`
}

// ReloadRow is the medians of one filter at one size.
type ReloadRow struct {
	Filter      string  `json:"filter"`
	Size        int     `json:"ranges"`
	ColdMs      float64 `json:"cold_ms"`
	ReloadCmdMs float64 `json:"reload_command_ms"`
	ReloadLive  float64 `json:"reload_live_ms"`
	ReloadingMs float64 `json:"reloading_ms,omitempty"`
	CheckMs     float64 `json:"check_ms,omitempty"` // ours: `net-tc-filter check` of the same file
}

// ReloadResult is part 3.
type ReloadResult struct {
	Samples []ReloadSample `json:"samples"`
	Rows    []ReloadRow    `json:"rows"`
}

// Snapshot is the daemon's memory and CPU over a window.
type Snapshot struct {
	Ranges     int     `json:"ranges"`
	RSSKiB     int64   `json:"rss_kib"`
	PeakKiB    int64   `json:"peak_rss_kib,omitempty"` // VmHWM: the most the process held so far
	CPUPercent float64 `json:"cpu_percent"`            // of one core
	WindowS    float64 `json:"window_s"`
}

// Flood is the daemon while a denied user floods a protected address.
type Flood struct {
	Ranges        int     `json:"ranges"`
	Seconds       float64 `json:"seconds"`
	Sent          int64   `json:"datagrams_sent"`
	SentPps       float64 `json:"sent_pps"`
	ServerRx      int64   `json:"server_rx_packets"` // must be 0
	Ports         int     `json:"distinct_dst_ports"`
	CPUPercent    float64 `json:"daemon_cpu_percent"`
	RSSKiB        int64   `json:"daemon_rss_kib"`
	DecisionLines int     `json:"decision_lines"`
	OtherLines    int     `json:"other_lines"`
	LinesPerSec   float64 `json:"decision_lines_per_s"`
	// The most decision lines any one second of the log holds (by their
	// time= stamps): what log.rate bounds.
	MaxLinesInSecond int     `json:"decision_lines_max_in_1s"`
	LogWindowS       float64 `json:"log_window_s"`
	LogRate          int     `json:"log_rate"`
	Warnings         string  `json:"warnings,omitempty"` // the accounting lines (suppressed, lost)
}

// FootprintResult is part 4.
type FootprintResult struct {
	Idle   Snapshot `json:"idle"`
	Loaded Snapshot `json:"loaded"`
	// AfterReloads: idle again after Config.FootprintReloads one-drop-in
	// reloads of the loaded set.
	AfterReloads Snapshot `json:"after_reloads"`
	Flood        Flood    `json:"flood"`
}

// ScaleResult is part 5: the daemon alone at ScaleRanges ranges (drop-ins
// of PerDropIn endpoints).
type ScaleResult struct {
	Ranges int `json:"ranges"`
	// StartMs: start to READY=1, which the daemon sends once the policy
	// is live on the interface; the check follows it.
	StartMs float64 `json:"start_to_live_ms"`
	// Checked: the allowed user's datagrams all arrived, and the denied
	// user's none, to the allowed user's range and to two others.
	Checked bool         `json:"checked"`
	Idle    Snapshot     `json:"idle"`
	Reload  ReloadSample `json:"reload"` // one drop-in changed, to live (probe)
	After   Snapshot     `json:"after_reload"`
}

// Check is one correctness probe: the allowed user's datagrams all arrive,
// the denied user's none (with a filter; without one, all).
type Check struct {
	Part        string `json:"part"`
	Filter      string `json:"filter"`
	Size        int    `json:"rules"`
	AllowedSent int64  `json:"allowed_sent"`
	AllowedGot  int64  `json:"allowed_received"`
	DeniedSent  int64  `json:"denied_sent"`
	DeniedGot   int64  `json:"denied_received"`
	OK          bool   `json:"ok"`
}

// Goal is one of the speed goals with what this run measured.
type Goal struct {
	Part   int    `json:"part"`
	Name   string `json:"name"`
	Target string `json:"target"`
	Value  string `json:"value"`
	Status string `json:"status"` // PASS | FAIL | MISSING
}
