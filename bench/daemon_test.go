// SPDX-License-Identifier: Apache-2.0

package bench

import "testing"

func TestMaxInOneSecond(t *testing.T) {
	line := func(stamp, msg string) string { return "time=" + stamp + " level=INFO msg=\"" + msg + "\"\n" }
	for _, tc := range []struct {
		name string
		log  string
		want int
	}{
		{"empty", "", 0},
		{"other lines do not count", line("2026-12-07T04:31:41.000Z", "reloaded"), 0},
		{"a second holds both ends of a half-open second", line("2026-12-07T04:31:41.000Z", "denied egress") +
			line("2026-12-07T04:31:41.999Z", "denied egress") +
			line("2026-12-07T04:31:42.000Z", "allowed egress"), 2},
		{"the busiest second wins, wherever it starts", line("2026-12-07T04:31:41.000Z", "denied egress") +
			line("2026-12-07T04:31:41.600Z", "denied egress") +
			line("2026-12-07T04:31:42.100Z", "denied egress") +
			line("2026-12-07T04:31:42.500Z", "denied egress") +
			line("2026-12-07T04:31:43.200Z", "denied egress"), 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := maxInOneSecond([]byte(tc.log), "denied egress", "allowed egress")
			if err != nil || got != tc.want {
				t.Errorf("maxInOneSecond = %d, %v; want %d", got, err, tc.want)
			}
		})
	}
	if _, err := maxInOneSecond([]byte("denied egress without a stamp\n"), "denied egress"); err == nil {
		t.Error("a decision line without a time stamp went unnoticed")
	}
}
