// SPDX-License-Identifier: Apache-2.0

package config

import "testing"

// metrics.listen: an IP address and a port, or "" for none; every bad
// value is reported at its line, with the others of the file.
func TestMetricsListenErrors(t *testing.T) {
	tests := []struct {
		name    string
		content string
		want    []want
	}{{
		name:    "host name",
		content: lines("metrics:", "  listen: localhost:9963"),
		want:    []want{{m(2), `metrics.listen "localhost:9963": "localhost" is not an IP address (like "127.0.0.1:9963"`}},
	}, {
		name:    "no port",
		content: lines("metrics: {listen: 127.0.0.1}"),
		want:    []want{{m(1), `metrics.listen "127.0.0.1" is not address:port (like "127.0.0.1:9963"`}},
	}, {
		name:    "no address",
		content: lines("metrics:", "  listen: \":9963\""),
		want:    []want{{m(2), `metrics.listen ":9963": the address is missing (like`}},
	}, {
		name:    "port out of range, with a second document",
		content: lines("metrics:", "  listen: 127.0.0.1:65536", "---"),
		want: []want{
			{m(2), `metrics.listen "127.0.0.1:65536": port "65536" is not a number from 1 to 65535`},
			{m(3), `a second YAML document`},
		},
	}, {
		name:    "port zero",
		content: lines("log: {rate: 5}", "metrics: {listen: \"[::1]:0\"}"),
		want:    []want{{m(2), `metrics.listen "[::1]:0": port "0" is not a number from 1 to 65535`}},
	}, {
		name:    "named port",
		content: lines("metrics: {listen: \"127.0.0.1:http\"}"),
		want:    []want{{m(1), `port "http" is not a number`}},
	}, {
		name:    "IPv6 without brackets",
		content: lines("metrics: {listen: \"::1:9963\"}"),
		want:    []want{{m(1), `metrics.listen "::1:9963" is not address:port`}},
	}, {
		name:    "a number",
		content: lines("metrics:", "  listen: 9963"),
		want:    []want{{m(2), `metrics.listen must be a string like "127.0.0.1:9963", not the number 9963`}},
	}, {
		name:    "a list",
		content: lines("metrics:", "  listen: [127.0.0.1:9963]"),
		want:    []want{{m(2), `metrics.listen must be a string like "127.0.0.1:9963", not a list`}},
	}, {
		name:    "not a mapping",
		content: lines("metrics: 127.0.0.1:9963"),
		want:    []want{{m(1), `metrics must be a mapping like {listen: "127.0.0.1:9963"}, not the string "127.0.0.1:9963"`}},
	}, {
		name:    "unknown key, with another problem",
		content: lines("metrics:", "  listen: 127.0.0.1:99999", "  path: /metrics"),
		want: []want{
			{m(2), `port "99999"`},
			{m(3), `unknown key "path" in metrics; known: listen`},
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeSet(t, map[string]string{mainName: tt.content})
			cfg, err := loadSet(t, dir)
			checkErrors(t, dir, cfg, err, tt.want)
		})
	}
}

func TestMetricsListenValid(t *testing.T) {
	for _, tt := range []struct{ content, want string }{
		{"", ""},
		{"metrics:\n", ""},
		{"metrics: {}\n", ""},
		{"metrics: {listen: \"\"}\n", ""},
		{"metrics: {listen: 127.0.0.1:9963}\n", "127.0.0.1:9963"},
		{"metrics:\n  listen: 0.0.0.0:1\n", "0.0.0.0:1"},
		{"metrics: {listen: \"[::1]:65535\"}\n", "[::1]:65535"},
		{"metrics: {listen: \"[fe80::1%eth0]:9963\"}\n", "[fe80::1%eth0]:9963"},
	} {
		dir := writeSet(t, map[string]string{mainName: tt.content})
		if got := mustLoad(t, dir).Metrics.Listen; got != tt.want {
			t.Errorf("%q: listen %q, want %q", tt.content, got, tt.want)
		}
	}
}

// A drop-in sets, moves or clears (listen: "") the address like any other
// scalar; a drop-in that does not mention it leaves it as it was.
func TestMetricsListenMerge(t *testing.T) {
	for _, tt := range []struct {
		name  string
		files map[string]string
		want  string
	}{
		{"main only", map[string]string{mainName: "metrics: {listen: 127.0.0.1:9963}\n", "conf.d/a.yml": "log: {rate: 3}\n"}, "127.0.0.1:9963"},
		{"drop-in sets", map[string]string{mainName: "on_stop: keep\n", "conf.d/a.yml": "metrics: {listen: 127.0.0.1:9100}\n"}, "127.0.0.1:9100"},
		{"later drop-in wins", map[string]string{
			mainName:       "metrics: {listen: 127.0.0.1:9963}\n",
			"conf.d/a.yml": "metrics: {listen: 127.0.0.1:1000}\n",
			"conf.d/b.yml": "metrics: {listen: \"[::1]:2000\"}\n",
		}, "[::1]:2000"},
		{"drop-in clears", map[string]string{mainName: "metrics: {listen: 127.0.0.1:9963}\n", "conf.d/z.yml": "metrics: {listen: \"\"}\n"}, ""},
		{"empty metrics: in a drop-in changes nothing", map[string]string{mainName: "metrics: {listen: 127.0.0.1:9963}\n", "conf.d/z.yml": "metrics: {}\n"}, "127.0.0.1:9963"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := mustLoad(t, writeSet(t, tt.files)).Metrics.Listen; got != tt.want {
				t.Errorf("listen %q, want %q", got, tt.want)
			}
		})
	}
}
