// SPDX-License-Identifier: Apache-2.0

package config

import (
	"net/netip"
	"strings"
	"testing"
	"unsafe"
)

func TestParseRange(t *testing.T) {
	tests := []struct {
		in   string
		want string // prefix, or "error: <part of the message>"
	}{
		{"169.254.169.254/32", "169.254.169.254/32"},
		{"169.254.169.254", "169.254.169.254/32"},
		{"fd00:ec2::254/128", "fd00:ec2::254/128"},
		{"fd00:ec2::254", "fd00:ec2::254/128"},
		{"0.0.0.0/0", "0.0.0.0/0"},
		{"::/0", "::/0"},
		{"::ffff:10.0.0.0/104", "10.0.0.0/8"},
		{"::ffff:a00:0/104", "10.0.0.0/8"},
		{"::ffff:1.2.3.4", "1.2.3.4/32"},
		{"::ffff:0.0.0.0/96", "0.0.0.0/0"},
		{"::/80", "::/80"},
		{"10.0.0.1/8", "error: range 10.0.0.1/8 has host bits set; did you mean 10.0.0.0/8?"},
		{"fd00::1/64", "error: did you mean fd00::/64?"},
		{"::ffff:10.0.0.1/104", "error: did you mean ::ffff:10.0.0.0/104?"},
		{"fe80::1%eth0", `error: range "fe80::1%eth0" has a zone (%eth0)`},
		{"fe80::%eth0/64", "error: has a zone (%eth0/64)"},
		{"10.0.0.0/33", "error: is not a valid CIDR prefix"},
		{"10.0.0.0/", "error: is not a valid CIDR prefix"},
		{"10.0.0/8", "error: is not a valid CIDR prefix"},
		{"example.com", "error: is not an IP address or CIDR prefix"},
		{"", "error: is not an IP address or CIDR prefix"},
		{" 10.0.0.1", "error: is not an IP address or CIDR prefix"},
	}
	for _, tt := range tests {
		got, err := parseRange(tt.in)
		if msg, isErr := strings.CutPrefix(tt.want, "error: "); isErr {
			if err == nil || !strings.Contains(err.Error(), msg) {
				t.Errorf("parseRange(%q) = %v, %v; want an error with %q", tt.in, got, err, msg)
			}
			continue
		}
		if err != nil || got != netip.MustParsePrefix(tt.want) {
			t.Errorf("parseRange(%q) = %v, %v; want %s", tt.in, got, err, tt.want)
		}
	}
}

func TestCheckIface(t *testing.T) {
	tests := []struct {
		in string
		ok bool
	}{
		{"eth0", true},
		{"eth0.100", true},
		{"wg-vpn_1", true},
		{"abcdefghijklmno", true}, // 15 bytes
		{"abcdefghijklmnop", false},
		{"", false},
		{".", false},
		{"..", false},
		{"...", true},
		{"a/b", false},
		{"eth0:1", false},
		{"a b", false},
		{"a\tb", false},
		{"*", true},
		{"eth*", true},
		{"veth?", true},
		{"eth[0-3]", true},
		{"eth[!0]", true},
		{"eth[", false},
		{"eth[]", false},
		{`eth\`, false},
		{"very-long-glob-pattern*", true}, // globs are not length-limited
		{"*/x", false},
		{"* x", false},
	}
	for _, tt := range tests {
		if err := checkIface(tt.in); (err == nil) != tt.ok {
			t.Errorf("checkIface(%q) = %v, want ok=%v", tt.in, err, tt.ok)
		}
	}
}

func TestParsePrincipal(t *testing.T) {
	tests := []struct {
		in   string
		want Principal
		name string // its Name
		err  string
	}{
		{in: "alice", want: Principal{Kind: PrincipalUser}, name: "alice"},
		{in: "svc-agent.1", want: Principal{Kind: PrincipalUser}, name: "svc-agent.1"},
		{in: "nobody", want: Principal{Kind: PrincipalUser}, name: "nobody"},
		{in: "uid:0", want: Principal{Kind: PrincipalUID, UID: 0}},
		{in: "uid:1005", want: Principal{Kind: PrincipalUID, UID: 1005}},
		{in: "uid:4294967293", want: Principal{Kind: PrincipalUID, UID: 4294967293}},
		{in: "uid:4294967294", err: "uid 4294967294 is reserved: net-tc-filter uses it for an owner it could not read"},
		{in: "group:imds-readers", want: Principal{Kind: PrincipalGroup}, name: "imds-readers"},
		{in: "*", want: Principal{Kind: PrincipalEveryone}},
		{in: "unowned", want: Principal{Kind: PrincipalUnowned}},
		{in: "uid:4294967295", err: "out of range"},
		{in: "uid:-1", err: "is not a uid"},
		{in: "uid:+5", err: "is not a uid"},
		{in: "uid: 5", err: "is not a uid"},
		{in: "uid:0x10", err: "is not a uid"},
		{in: "uid:", err: "is not a uid"},
		{in: "group:", err: "empty group name"},
		{in: "group:a b", err: `group name "a b" contains whitespace`},
		{in: "group:a:b", err: `group name "a:b" contains ':'`},
		{in: "gid:5", err: "unknown form"},
		{in: "user:alice", err: "unknown form"},
		{in: "", err: "empty user name"},
		{in: "al ice", err: "contains whitespace"},
		{in: "1005", err: "write uid:1005"},
		{in: "ali\x00ce", err: "unprintable"},
		{in: "**", want: Principal{Kind: PrincipalUser}, name: "**"},
		{in: "unit:amazon-ssm-agent.service", want: Principal{Kind: PrincipalUnit}, name: "amazon-ssm-agent.service"},
		{in: "unit:user-1000.slice", want: Principal{Kind: PrincipalUnit}, name: "user-1000.slice"},
		{in: "unit:-.slice", want: Principal{Kind: PrincipalUnit}, name: "-.slice"},
		{in: "unit:session-3.scope", want: Principal{Kind: PrincipalUnit}, name: "session-3.scope"},
		{in: `unit:getty@tty1.service`, want: Principal{Kind: PrincipalUnit}, name: "getty@tty1.service"},
		{in: `unit:dev-disk-by\x2duuid.swap`, want: Principal{Kind: PrincipalUnit}, name: `dev-disk-by\x2duuid.swap`},
		{in: "unit:", err: "empty unit name"},
		{in: "unit:foo", err: `unit name "foo" has no type suffix (.service, .scope, .slice, .socket, .mount, .swap)`},
		{in: "unit:.service", err: "has no type suffix"},
		{in: "unit:foo.target", err: "a .target unit has no cgroup of its own"},
		{in: "unit:foo.timer", err: "a .timer unit has no cgroup of its own"},
		{in: "unit:getty@.service", err: "is a template; name its instances (getty@INSTANCE.service)"},
		{in: "unit:foo bar.service", err: "characters systemd does not allow"},
		{in: "unit:foo/bar.service", err: "characters systemd does not allow"},
		{in: "unit:a--b.slice", err: "empty part between dashes"},
		{in: "unit:-a.slice", err: "empty part between dashes"},
		{in: "unit:" + strings.Repeat("a", 250) + ".service", err: "systemd allows at most 255"},
		{in: "cgroup:/", want: Principal{Kind: PrincipalCgroup}, name: "/"},
		{in: "cgroup:/system.slice/foo.service", want: Principal{Kind: PrincipalCgroup}, name: "/system.slice/foo.service"},
		{in: "cgroup:/kubepods.slice/pod 1", want: Principal{Kind: PrincipalCgroup}, name: "/kubepods.slice/pod 1"},
		{in: "cgroup:", err: "empty cgroup path"},
		{in: "cgroup:system.slice", err: `cgroup path "system.slice" must be absolute: /system.slice`},
		{in: "cgroup:/a/../b", err: `cgroup path "/a/../b" must be clean: write "/b"`},
		{in: "cgroup:/a/", err: "must be clean"},
		{in: "cgroup://a", err: "must be clean"},
		{in: "cgroup:/a\x00b\x01", err: "unprintable"},
		{in: "cgroup:/" + strings.Repeat("a", 256), err: "a directory name has at most 255"},
	}
	for _, tt := range tests {
		got, err := parsePrincipal(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("parsePrincipal(%q) = %+v, %v; want an error with %q", tt.in, got, err, tt.err)
			}
			continue
		}
		tt.want.Text = tt.in
		if err != nil || got != tt.want {
			t.Errorf("parsePrincipal(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
		if got.Name() != tt.name {
			t.Errorf("parsePrincipal(%q).Name() = %q, want %q", tt.in, got.Name(), tt.name)
		}
	}
}

func TestCheckEndpointName(t *testing.T) {
	for in, ok := range map[string]bool{
		"imdsv2": true, "metadata.gcp": true, "été": true, "123": true,
		"": false, "a b": false, "a\tb": false, "a\nb": false, "a\x7fb": false, "a\u00a0b": false,
	} {
		if err := checkEndpointName(in); (err == nil) != ok {
			t.Errorf("checkEndpointName(%q) = %v, want ok=%v", in, err, ok)
		}
	}
}

func TestSplitYAMLLine(t *testing.T) {
	tests := []struct {
		in   string
		line int
		msg  string
	}{
		{"line 3: could not find expected ':'", 3, "could not find expected ':'"},
		{"did not find expected node content", 0, "did not find expected node content"},
		{"line x: y", 0, "line x: y"},
	}
	for _, tt := range tests {
		if line, msg := splitYAMLLine(tt.in); line != tt.line || msg != tt.msg {
			t.Errorf("splitYAMLLine(%q) = %d, %q; want %d, %q", tt.in, line, msg, tt.line, tt.msg)
		}
	}
}

// TestSizes: the parse cache keeps an Endpoint and a Principal for every
// endpoint and allow entry of the set, a million of each at the scale
// issue 19 measures; a field added to either costs that much again.
func TestSizes(t *testing.T) {
	if n := unsafe.Sizeof(Principal{}); n != 32 {
		t.Errorf("Principal is %d bytes, want 32", n)
	}
	if n := unsafe.Sizeof(Endpoint{}); n != 88 {
		t.Errorf("Endpoint is %d bytes, want 88", n)
	}
}
