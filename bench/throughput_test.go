// SPDX-License-Identifier: Apache-2.0

package bench

import (
	"math"
	"strings"
	"testing"
)

func TestBinomialTail(t *testing.T) {
	for _, tc := range []struct {
		n, k int
		want float64
	}{
		{7, 7, 1.0 / 128},
		{7, 6, 8.0 / 128},
		{7, 0, 1},
		{1, 1, 0.5},
		{0, 0, 1},
		{10, 9, 11.0 / 1024},
	} {
		if got := binomialTail(tc.n, tc.k); math.Abs(got-tc.want) > 1e-12 {
			t.Errorf("binomialTail(%d, %d) = %g, want %g", tc.n, tc.k, got, tc.want)
		}
	}
}

func TestSignTest(t *testing.T) {
	for _, tc := range []struct {
		ahead, behind int
		want          string
	}{
		{7, 0, VerdictAhead},
		{6, 1, VerdictTie}, // 8/128 > 0.05
		{0, 7, VerdictBehind},
		{4, 3, VerdictTie},
		{1, 0, VerdictTie}, // one round resolves nothing
		{9, 1, VerdictAhead},
		{0, 0, VerdictTie},
	} {
		if got := signTest(tc.ahead, tc.behind); got != tc.want {
			t.Errorf("signTest(%d, %d) = %s, want %s", tc.ahead, tc.behind, got, tc.want)
		}
	}
}

// samplesOf builds rounds of one size: per round, the given value of each
// filter for each test.
func samplesOf(size int, rounds []map[string][2]float64) []ThroughputSample {
	var s []ThroughputSample
	for rep, round := range rounds {
		for f, v := range round {
			s = append(s,
				ThroughputSample{Rep: rep, Filter: f, Size: size, Test: "tcp", Value: v[0]},
				ThroughputSample{Rep: rep, Filter: f, Size: size, Test: "udp64", Value: v[1], Arrived: 0.99})
		}
	}
	return s
}

func TestSummarize(t *testing.T) {
	// The machine drifts from round to round (none: 100, 200, 300 kpps);
	// ours keeps 0.95 of none in each round, iptables 0.9 and nft 0.8.
	// TCP: ours and iptables swap places.
	var rounds []map[string][2]float64
	for i, base := range []float64{100, 200, 300, 250, 150, 120, 180} {
		o, p := 0.99, 0.98
		if i%2 == 1 {
			o, p = p, o
		}
		rounds = append(rounds, map[string][2]float64{
			NameNone:     {10, base},
			NameOurs:     {10 * o, 0.95 * base},
			NameIptables: {10 * p, 0.9 * base},
			NameNft:      {10 * 0.97, 0.8 * base},
		})
	}
	rows, cmps := summarize(samplesOf(100, rounds), []int{100})
	if len(rows) != 4 || rows[0].Filter != NameNone || rows[3].Filter != NameOurs {
		t.Fatalf("rows %+v", rows)
	}
	ours := rows[3]
	if math.Abs(ours.UDPRatio-0.95) > 1e-9 || ours.UDPKpps != 0.95*180 || ours.UDPArrived != 0.99 {
		t.Errorf("ours %+v: want the median of the per-round ratios 0.95, of the values 171", ours)
	}
	want := map[string]string{
		"udp64/" + NameIptables: VerdictAhead,
		"udp64/" + NameNft:      VerdictAhead,
		"tcp/" + NameIptables:   VerdictTie,
		"tcp/" + NameNft:        VerdictAhead,
	}
	if len(cmps) != len(want) {
		t.Fatalf("comparisons %+v", cmps)
	}
	for _, c := range cmps {
		if w := want[c.Test+"/"+c.Peer]; c.Verdict != w || c.Size != 100 {
			t.Errorf("comparison %+v, want verdict %s", c, w)
		}
	}
	if c := cmps[2]; c.Test != "tcp" || c.Ahead != 4 || c.Behind != 3 {
		t.Errorf("tcp vs iptables %+v, want 4 rounds ahead and 3 behind", c)
	}
	lo, hi := ratioSpread(samplesOf(100, rounds), NameOurs, 100, "tcp")
	if math.Abs(lo-0.98) > 1e-9 || math.Abs(hi-0.99) > 1e-9 {
		t.Errorf("tcp ratio spread %g–%g, want 0.98–0.99", lo, hi)
	}
}

func TestJudgeComparisons(t *testing.T) {
	ok := []Comparison{
		{Test: "udp64", Size: 1, Peer: NameIptables, Ahead: 7, Verdict: VerdictAhead},
		{Test: "udp64", Size: 1, Peer: NameNft, Ahead: 7, Verdict: VerdictAhead},
		{Test: "tcp", Size: 1, Peer: NameIptables, Ahead: 4, Behind: 3, Verdict: VerdictTie},
		{Test: "tcp", Size: 1, Peer: NameNft, Ahead: 7, Verdict: VerdictAhead},
	}
	for _, tc := range []struct {
		name   string
		change func([]Comparison)
		status string
		say    string
	}{
		{"every UDP lead, TCP ahead or tied", func([]Comparison) {}, "PASS", "TCP: ahead in 1, tie in 1, behind in 0 of 2"},
		{"a UDP tie", func(c []Comparison) { c[1].Verdict = VerdictTie }, "FAIL", "UDP 64 B at 1 rules vs nft: tie"},
		{"TCP behind", func(c []Comparison) { c[2].Verdict = VerdictBehind }, "FAIL", "TCP at 1 rules vs iptables: behind"},
	} {
		cmps := append([]Comparison(nil), ok...)
		tc.change(cmps)
		value, status := judgeComparisons(cmps)
		if status != tc.status || !strings.Contains(value, tc.say) {
			t.Errorf("%s: %s %q, want %s and %q", tc.name, status, value, tc.status, tc.say)
		}
	}
}
