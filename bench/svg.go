// SPDX-License-Identifier: Apache-2.0

package bench

import (
	"fmt"
	"html"
	"math"
	"strings"
)

type bar struct {
	label string
	value float64
	color string
}

// SVG draws the throughput ratios and the classifier's cost above the
// floor as horizontal bar charts: bench/results.svg.
func SVG(r *Results) string {
	var panels []string
	var heights []int
	if t := r.Throughput; t != nil && len(t.Rows) > 0 {
		var bars []bar
		for _, row := range t.Rows {
			if row.Filter == NameNone {
				continue // 1 by definition
			}
			name := fmt.Sprintf("%s, %d rules", row.Filter, row.Size)
			bars = append(bars, bar{name + " — TCP", row.TCPRatio, "#4e79a7"}, bar{name + " — UDP 64 B", row.UDPRatio, "#f28e2b"})
		}
		s, h := panel("Throughput, ratio to no filter in the same round (median; goal ≥ 0.97 at 10000 rules)", bars, 1.0, GoalRatioAt10k, "%.3f")
		panels, heights = append(panels, s), append(heights, h)
	}
	if c := r.Classify; c != nil && c.Error == "" && len(c.Rows) > 0 {
		var bars []bar
		for _, row := range c.Rows {
			color := "#59a14f"
			if row.NoCache {
				color = "#bab0ac"
			}
			bars = append(bars, bar{strings.TrimPrefix(row.Name, "BenchmarkClassify/"), row.AboveFloor, color})
		}
		s, h := panel(fmt.Sprintf("Classifier, ns/packet above the empty program (%.1f ns; goal ≤ 40 at 100000 ranges)", c.Floor), bars, 0, GoalAboveFloorNs, "%.1f")
		panels, heights = append(panels, s), append(heights, h)
	}
	if len(panels) == 0 {
		panels, heights = []string{`<text x="10" y="30">no throughput or classifier results in this run</text>`}, []int{50}
	}
	total := 0
	var b strings.Builder
	for i, p := range panels {
		fmt.Fprintf(&b, `<g transform="translate(0,%d)">%s</g>`+"\n", total, p)
		total += heights[i]
	}
	return fmt.Sprintf(`<svg xmlns="http://www.w3.org/2000/svg" width="900" height="%d" font-family="sans-serif" font-size="12">`+"\n"+
		`<rect width="100%%" height="100%%" fill="white"/>`+"\n%s</svg>\n", total+10, b.String())
}

// panel draws bars scaled to the largest value (at least ref), with a
// dashed line at goal.
func panel(title string, bars []bar, ref, goal float64, format string) (string, int) {
	const left, width, rowH, top = 260, 560, 18, 30
	maxV := math.Max(ref, goal)
	minV := 0.0
	for _, b := range bars {
		maxV = math.Max(maxV, b.value)
		minV = math.Min(minV, b.value)
	}
	span := maxV - minV
	if span <= 0 {
		span = 1
	}
	x := func(v float64) float64 { return left + (v-minV)/span*width }
	var s strings.Builder
	fmt.Fprintf(&s, `<text x="10" y="20" font-weight="bold">%s</text>`+"\n", html.EscapeString(title))
	for i, b := range bars {
		y := top + i*rowH
		x0, x1 := x(math.Min(0, b.value)), x(math.Max(0, b.value))
		fmt.Fprintf(&s, `<text x="%d" y="%d" text-anchor="end">%s</text>`, left-6, y+12, html.EscapeString(b.label))
		fmt.Fprintf(&s, `<rect x="%.1f" y="%d" width="%.1f" height="%d" fill="%s"/>`, x0, y+2, math.Max(x1-x0, 0.5), rowH-4, b.color)
		fmt.Fprintf(&s, `<text x="%.1f" y="%d">%s</text>`+"\n", x1+4, y+12, fmt.Sprintf(format, b.value))
	}
	bottom := top + len(bars)*rowH
	fmt.Fprintf(&s, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#e15759" stroke-dasharray="4 3"/>`+"\n", x(goal), top, x(goal), bottom)
	fmt.Fprintf(&s, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="black"/>`+"\n", x(0), top, x(0), bottom)
	return s.String(), bottom + 20
}
