// SPDX-License-Identifier: Apache-2.0

package bench

import (
	"bufio"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
)

// GoBench is one line of `go test -bench` output.
type GoBench struct {
	Name       string             `json:"name"` // without the -GOMAXPROCS suffix
	Iterations int64              `json:"iterations"`
	Metrics    map[string]float64 `json:"metrics"` // unit → value: "ns/op", "ns/pkt", ...
}

var procsSuffix = regexp.MustCompile(`-\d+$`)

// ParseGoBench reads the benchmark result lines of `go test -bench`
// output: NAME[-PROCS] ITERATIONS (VALUE UNIT)+. Other lines are skipped.
func ParseGoBench(r io.Reader) ([]GoBench, error) {
	var out []GoBench
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") || len(f)%2 != 0 {
			continue
		}
		iters, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			continue
		}
		b := GoBench{Name: procsSuffix.ReplaceAllString(f[0], ""), Iterations: iters, Metrics: map[string]float64{}}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				return nil, fmt.Errorf("benchmark line %q: value %q: %w", sc.Text(), f[i], err)
			}
			b.Metrics[f[i+1]] = v
		}
		out = append(out, b)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read benchmark output: %w", err)
	}
	return out, nil
}

// ClassifyRow is one classifier case with its cost above the floor.
type ClassifyRow struct {
	Name       string  `json:"name"`
	NsPerPkt   float64 `json:"ns_per_pkt"`
	AboveFloor float64 `json:"ns_above_floor"`
	Ranges     int     `json:"ranges"` // from "ranges=N" in the name; 0 when absent
	NoCache    bool    `json:"nocache"`
}

// FloorName is the empty program's benchmark: the floor.
const FloorName = "BenchmarkClassify/empty"

// Classify turns the parsed lines into rows relative to the floor. When a
// name appears several times (-count), the median of its ns/pkt is taken.
func Classify(lines []GoBench) (floor float64, rows []ClassifyRow, err error) {
	byName := map[string][]float64{}
	var order []string
	for _, l := range lines {
		if !strings.HasPrefix(l.Name, "BenchmarkClassify/") {
			continue
		}
		v, ok := l.Metrics["ns/pkt"]
		if !ok {
			return 0, nil, fmt.Errorf("%s: no ns/pkt metric", l.Name)
		}
		if _, seen := byName[l.Name]; !seen {
			order = append(order, l.Name)
		}
		byName[l.Name] = append(byName[l.Name], v)
	}
	fl, ok := byName[FloorName]
	if !ok {
		return 0, nil, fmt.Errorf("no %s (the floor) among %d classifier results", FloorName, len(order))
	}
	floor = Median(fl)
	for _, name := range order {
		if name == FloorName {
			continue
		}
		v := Median(byName[name])
		row := ClassifyRow{Name: name, NsPerPkt: v, AboveFloor: v - floor}
		for _, part := range strings.Split(name, "/") {
			if n, ok := strings.CutPrefix(part, "ranges="); ok {
				row.Ranges, _ = strconv.Atoi(n)
			}
			if part == "nocache" {
				row.NoCache = true
			}
		}
		rows = append(rows, row)
	}
	return floor, rows, nil
}
