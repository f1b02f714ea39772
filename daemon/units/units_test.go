// SPDX-License-Identifier: Apache-2.0

package units

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSlicePath(t *testing.T) {
	tests := []struct{ in, want, err string }{
		{"-.slice", "/", ""},
		{"system.slice", "/system.slice", ""},
		{"user-1000.slice", "/user.slice/user-1000.slice", ""},
		{"a-b-c.slice", "/a.slice/a-b.slice/a-b-c.slice", ""},
		{"cpu.slice", "/_cpu.slice", ""}, // cpu is a controller: escaped
		{"a--b.slice", "", "not a valid slice name"},
		{"-a.slice", "", "not a valid slice name"},
		{"a-.slice", "", "not a valid slice name"},
		{"x.service", "", "not a valid slice name"},
	}
	for _, tt := range tests {
		got, err := SlicePath(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("SlicePath(%q) = %q, %v; want error %q", tt.in, got, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("SlicePath(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestEscape(t *testing.T) {
	for in, want := range map[string]string{
		"amazon-ssm-agent.service": "amazon-ssm-agent.service",
		"_x.service":               "__x.service",
		".hidden.service":          "_.hidden.service",
		"tasks":                    "_tasks",
		"cgroup.procs":             "_cgroup.procs",
		"cpu.service":              "_cpu.service",
		"memory.slice":             "_memory.slice",
		"bpf-firewall.service":     "_bpf-firewall.service",
		"cpu.x.service":            "cpu.x.service", // before the last dot: "cpu.x", no controller
		"pids-x.service":           "pids-x.service",
	} {
		if got := Escape(in); got != want {
			t.Errorf("Escape(%q) = %q, want %q", in, got, want)
		}
	}
}

// Without systemd as PID 1 (a container, another init), unit: says why it
// cannot resolve, before any bus is asked.
func TestNoSystemd(t *testing.T) {
	dir := t.TempDir()
	for comm, want := range map[string]string{
		"tini\n":   `PID 1 is not systemd (it is "tini"): use cgroup:PATH`,
		"bash\n":   `PID 1 is not systemd (it is "bash")`,
		"systemd2": `it is "systemd2"`,
	} {
		p := filepath.Join(dir, "comm")
		if err := os.WriteFile(p, []byte(comm), 0o644); err != nil {
			t.Fatal(err)
		}
		s := &Systemd{pid1: p}
		_, err := s.UnitCgroup("amazon-ssm-agent.service")
		if err == nil || !errors.Is(err, ErrNoSystemd) || !strings.Contains(err.Error(), want) || !strings.HasPrefix(err.Error(), "cannot be resolved: ") {
			t.Errorf("PID 1 %q: %v; want ErrNoSystemd with %q", comm, err, want)
		}
	}
}
