// SPDX-License-Identifier: Apache-2.0

package bench

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// PerPacketResult is part 2's per-packet measurement (issue 23): bpf's
// BenchmarkPerPacket, the program and an empty one on real traffic at
// GoalPerPacketRanges ranges, by the kernel's run-time statistics.
type PerPacketResult struct {
	Command string         `json:"command"`
	Raw     []GoBench      `json:"raw"`
	Rows    []PerPacketRow `json:"rows"`
	Error   string         `json:"error,omitempty"`
}

// PerPacketRow is one attach mode, family and sender: the medians over the
// runs of each program's own ns per packet and of the sender's ns per
// datagram, and net-tc-filter's cost above the empty program.
type PerPacketRow struct {
	Mode        string  `json:"mode"`   // tcx | clsact
	Family      string  `json:"family"` // ipv4 | ipv6
	Batch       int     `json:"batch"`  // datagrams per sendmmsg call
	EmptyNs     float64 `json:"empty_ns_per_pkt"`
	OursNs      float64 `json:"ours_ns_per_pkt"`
	AboveNs     float64 `json:"ns_above_empty"`
	EmptySender float64 `json:"empty_sender_ns_per_datagram"`
	OursSender  float64 `json:"ours_sender_ns_per_datagram"`
}

// perPacketBenchmark is the benchmark's name in package bpf.
const perPacketBenchmark = "BenchmarkPerPacket"

// perPacket runs BenchmarkPerPacket (its own namespaces, senders and
// policy) and records its rows.
func (h *Harness) perPacket(ctx context.Context) error {
	r := &PerPacketResult{}
	h.res.PerPacket = r
	var err error
	if r.Raw, err = h.benchBPF(ctx, perPacketBenchmark, strconv.Itoa(h.opts.PerPacketDatagrams)+"x", h.opts.PerPacketCount, &r.Command); err != nil {
		return err
	}
	if r.Rows, err = PerPacket(r.Raw); err != nil {
		r.Error = err.Error()
		h.logf("   no per-packet results: %v", err)
		return nil
	}
	for _, row := range r.Rows {
		h.logf("   %-6s %s batch %-2d: empty %6.1f ns, net-tc-filter %6.1f ns (%+.1f); sender %5.0f / %5.0f ns per datagram",
			row.Mode, row.Family, row.Batch, row.EmptyNs, row.OursNs, row.AboveNs, row.EmptySender, row.OursSender)
	}
	return nil
}

// PerPacket pairs BenchmarkPerPacket/MODE/{empty,ntf}/FAMILY/batchN lines
// into rows, the medians of repeated runs (-count).
func PerPacket(lines []GoBench) ([]PerPacketRow, error) {
	type key struct {
		mode, family string
		batch        int
	}
	prog := map[key]map[string][]float64{} // "empty" | "ntf" → prog-ns/pkt
	sender := map[key]map[string][]float64{}
	var order []key
	for _, l := range lines {
		parts := strings.Split(l.Name, "/")
		if len(parts) != 5 || parts[0] != perPacketBenchmark {
			continue
		}
		batch, err := strconv.Atoi(strings.TrimPrefix(parts[4], "batch"))
		if err != nil {
			return nil, fmt.Errorf("%s: no batch size", l.Name)
		}
		k := key{parts[1], parts[3], batch}
		v, ok := l.Metrics["prog-ns/pkt"]
		if !ok {
			return nil, fmt.Errorf("%s: no prog-ns/pkt metric", l.Name)
		}
		if prog[k] == nil {
			prog[k], sender[k] = map[string][]float64{}, map[string][]float64{}
			order = append(order, k)
		}
		prog[k][parts[2]] = append(prog[k][parts[2]], v)
		sender[k][parts[2]] = append(sender[k][parts[2]], l.Metrics["ns/op"])
	}
	var rows []PerPacketRow
	for _, k := range order {
		if len(prog[k]["empty"]) == 0 || len(prog[k]["ntf"]) == 0 {
			return nil, fmt.Errorf("%s/%s/batch%d: the empty program and net-tc-filter are not both measured", k.mode, k.family, k.batch)
		}
		row := PerPacketRow{Mode: k.mode, Family: k.family, Batch: k.batch,
			EmptyNs: Median(prog[k]["empty"]), OursNs: Median(prog[k]["ntf"]),
			EmptySender: Median(sender[k]["empty"]), OursSender: Median(sender[k]["ntf"])}
		row.AboveNs = row.OursNs - row.EmptyNs
		rows = append(rows, row)
	}
	if len(rows) == 0 {
		return nil, fmt.Errorf("no %s results", perPacketBenchmark)
	}
	slices.SortStableFunc(rows, func(a, b PerPacketRow) int { return a.Batch - b.Batch })
	return rows, nil
}
