// SPDX-License-Identifier: Apache-2.0

package netlab

import (
	"testing"
	"time"
)

func TestSlowed(t *testing.T) {
	for _, tt := range []struct {
		env  string
		want time.Duration
	}{
		{"", 30 * time.Second},
		{"4", 120 * time.Second},
		{"1.5", 45 * time.Second},
		{"0.5", 30 * time.Second}, // never shorter
		{"1000", 30 * time.Second},
		{"four", 30 * time.Second},
		{"NaN", 30 * time.Second},
	} {
		t.Setenv(TimeScaleEnv, tt.env)
		if got := Slowed(30 * time.Second); got != tt.want {
			t.Errorf("%s=%q: Slowed(30s) = %v, want %v", TimeScaleEnv, tt.env, got, tt.want)
		}
	}
}
